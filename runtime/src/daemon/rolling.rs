//! The rolling update this node leads ([`tandem_core::rolling`] decides): the other
//! node is reached over SSH on the crossover ([`crate::update::peer`]), this node's
//! own steps are requests to its control plane as root (the same road as `tandem
//! switchover` and `tandem update install`). Where it stands is written to the update
//! record before each phase, so a restarted clusterd goes on where it was, and the
//! last phase (this node's own restart into the new system) is finished by the
//! trial of that system ([`super::update`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tandem_api::{Reply, Request, UpdateView};
use tandem_config::NodeId;
use tandem_core::rolling::Stop;
use tandem_core::{PeerSeen, Phase, Roles, Rolling, RollingRule, RollingStep};
use tokio::sync::{mpsc, oneshot};

use super::In;
use super::clock::Clock;
use super::config::committed_config;
use super::control::status_now;
use super::hub::EventHub;
use crate::admin::update::UpdateJob;
use crate::alerts::Alert;
use crate::confsync::SyncSetup;
use crate::control::Service;
use crate::update::peer::{BUNDLE, Peer, PeerCommand};
use crate::update::record::RollingRecord;
use crate::update::rolling::Call;
use crate::update::{UpdateError, now_secs};

/// How often the other node and the roles are looked at.
const LOOK: Duration = Duration::from_secs(3);
/// Beyond the trial's deadline: the other node's install and two restarts.
const PEER_MARGIN: Duration = Duration::from_secs(15 * 60);
/// How long the services may take to move.
const SWITCHOVER: Duration = Duration::from_secs(5 * 60);

/// What the task needs.
pub(super) struct Ctx {
    pub(super) job: UpdateJob,
    pub(super) service: Arc<Service>,
    pub(super) tx: mpsc::Sender<In>,
    pub(super) hub: Arc<EventHub>,
    pub(super) sync: SyncSetup,
    pub(super) node: NodeId,
    pub(super) clock: Clock,
    /// The SSH client's files (key, known hosts).
    pub(super) dir: PathBuf,
}

/// Starts the task that reads `rx` (with a configuration store: the other node is
/// known from it).
pub(super) fn start(ctx: Option<Ctx>, mut rx: mpsc::Receiver<(Call, oneshot::Sender<Reply>)>) {
    tokio::spawn(async move {
        let Some(ctx) = ctx else {
            while let Some((_, reply)) = rx.recv().await {
                let _ = reply.send(refused(
                    "this clusterd runs without a cluster configuration: no rolling update",
                ));
            }
            return;
        };
        let ctx = Arc::new(ctx);
        let mut running: Option<tokio::task::JoinHandle<()>> = None;
        while let Some((call, reply)) = rx.recv().await {
            if running.as_ref().is_some_and(|h| !h.is_finished()) {
                let _ = reply.send(refused(
                    "a rolling update runs already: follow it with `tandem update status`",
                ));
                continue;
            }
            let plan = match call {
                Call::Start {
                    file,
                    switch_back,
                    force_downgrade,
                } => match begin(&ctx, file, switch_back, force_downgrade).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = reply.send(refused(&e));
                        continue;
                    }
                },
                Call::Resume(r) => r,
            };
            // Said before the answer, so that a client following the status never
            // sees the update not begun.
            ctx.job.set_rolling(Some(format!(
                "to {}: begins ({} phase)",
                plan.to_version, plan.phase
            )));
            let _ = reply.send(Reply::UpdateStarted);
            let c = Arc::clone(&ctx);
            running = Some(tokio::spawn(async move { lead(&c, plan).await }));
        }
    });
}

fn refused(text: &str) -> Reply {
    Reply::Refused(tandem_api::Refusal::Failed(text.to_owned()))
}

/// Checks that a rolling update can begin here now and records it.
async fn begin(
    ctx: &Ctx,
    file: String,
    switch_back: bool,
    force_downgrade: bool,
) -> Result<RollingRecord, String> {
    let peer = ctx.node.peer().name();
    let Some(status) = status_now(&ctx.tx).await else {
        return Err("clusterd is stopping".into());
    };
    if status.role != "active" {
        return Err(format!(
            "this node does not run the services: start the rolling update on {peer}, which does; nothing was changed"
        ));
    }
    if !status.peer.alive || status.peer.role.as_deref() != Some("passive") {
        return Err(format!(
            "{peer} is not heard as the passive node: both nodes must be up and formed before a rolling update; nothing was changed"
        ));
    }
    if ctx.job.installing() {
        return Err("an update is being installed on this node: wait for it to end".into());
    }
    let job = ctx.job.clone();
    let path = PathBuf::from(&file);
    let checked = tokio::task::spawn_blocking(move || {
        let record = job.updater.record().map_err(|e| e.0)?;
        if let Some(p) = &record.pending {
            return Err(format!(
                "this node's own update to {} is not decided yet: wait for it (tandem update status)",
                p.to_version
            ));
        }
        let info = job.updater.check(&path, force_downgrade).map_err(|e| e.0)?;
        let plan = RollingRecord {
            file: path.display().to_string(),
            to_version: info.version.unwrap_or_default(),
            from_version: job.updater.running_version(),
            phase: Phase::Peer.name().to_owned(),
            force_downgrade,
            started_at: now_secs(),
            switch_back,
        };
        save(&job, Some(&plan), None)?;
        Ok(plan)
    })
    .await
    .map_err(|e| e.to_string())??;
    ctx.hub.publish(
        "update",
        format!(
            "rolling update to {} begins: {peer} first, then the services move to it, then this node",
            checked.to_version
        ),
    );
    Ok(checked)
}

/// Writes `plan` as the record's rolling update (`None`: it ended), with `note` in
/// the history.
fn save(
    job: &UpdateJob,
    plan: Option<&RollingRecord>,
    note: Option<(String, bool)>,
) -> Result<(), String> {
    let mut record = job.updater.record().map_err(|e| e.0)?;
    record.rolling = plan.cloned();
    if let Some((text, ok)) = note {
        record.note(now_secs(), text, ok);
    }
    record
        .save(&job.updater.state_dir)
        .map_err(|e| e.to_string())
}

/// Leads `plan` from its phase on; a stop is recorded, alerted and shown.
async fn lead(ctx: &Ctx, mut plan: RollingRecord) {
    let to = plan.to_version.clone();
    match run(ctx, &mut plan).await {
        Ok(()) => {}
        Err(why) => {
            let text = format!("rolling update to {to} stopped: {why}");
            ctx.job.set_rolling(Some(format!("stopped: {why}")));
            let job = ctx.job.clone();
            let t = text.clone();
            let _ = tokio::task::spawn_blocking(move || save(&job, None, Some((t, false)))).await;
            ctx.hub.alert(
                "update",
                format!("{text} (the services run on {})", where_services(ctx).await),
                &Alert::Update {
                    old: plan.from_version.clone(),
                    new: to,
                },
            );
        }
    }
}

/// Which node runs the services, in words.
async fn where_services(ctx: &Ctx) -> String {
    match status_now(&ctx.tx).await {
        Some(s) if s.role == "active" => ctx.node.name().to_owned(),
        Some(s) if s.peer.role.as_deref() == Some("active") => ctx.node.peer().name().to_owned(),
        _ => "neither node as far as this node sees".to_owned(),
    }
}

fn rule(ctx: &Ctx) -> RollingRule {
    let trial = committed_config(&ctx.sync).map_or(
        Duration::from(tandem_config::schema::DEFAULT_TRIAL_DEADLINE),
        |c| Duration::from(c.updates.trial_deadline()),
    );
    RollingRule {
        peer: trial + PEER_MARGIN,
        switchover: SWITCHOVER,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UpdateError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.0)
}

async fn run(ctx: &Ctx, plan: &mut RollingRecord) -> Result<(), String> {
    let peer_name = ctx.node.peer().name();
    let to = plan.to_version.clone();
    let cfg = committed_config(&ctx.sync).map_err(|e| e.to_string())?;
    let peer = Peer::new(&cfg, ctx.node, &ctx.dir).map_err(|e| e.0)?;
    let mut rolling = Rolling::new(
        rule(ctx),
        Phase::from_name(&plan.phase).unwrap_or(Phase::Peer),
        ctx.clock.now(),
    );
    if rolling.phase() == Phase::Peer {
        update_peer(ctx, &peer, plan, &rolling).await?;
        rolling.enter(Phase::Switchover, ctx.clock.now());
        enter(ctx, plan, Phase::Switchover).await?;
    }
    if rolling.phase() == Phase::Switchover {
        ctx.job.set_rolling(Some(format!(
            "{peer_name} runs {to}: the services move to it"
        )));
        if status_now(&ctx.tx)
            .await
            .is_some_and(|s| s.role == "active")
        {
            match crate::ve::scheduled::ask(&ctx.service, Request::Switchover).await {
                Reply::Refused(r) => return Err(format!("the switchover was refused: {r}")),
                _ => ctx.hub.publish(
                    "update",
                    format!("rolling update to {to}: the services move to {peer_name}"),
                ),
            }
        }
        loop {
            let roles = match status_now(&ctx.tx).await {
                Some(s) => Roles {
                    here_active: s.role == "active",
                    peer_active: s.peer.role.as_deref() == Some("active"),
                },
                None => return Err("clusterd is stopping".into()),
            };
            match rolling.roles_seen(ctx.clock.now(), roles) {
                RollingStep::Next(_) => break,
                RollingStep::Stop(s) => return Err(stop_text(s, ctx, plan)),
                RollingStep::Wait(_) => tokio::time::sleep(LOOK).await,
            }
        }
        rolling.enter(Phase::Here, ctx.clock.now());
        enter(ctx, plan, Phase::Here).await?;
    }
    // This node's turn: its install restarts it, and its trial ends the rolling
    // update (see `finish`).
    let pending = {
        let job = ctx.job.clone();
        blocking(move || job.updater.record().map(|r| r.pending.is_some())).await?
    };
    if pending {
        return Ok(());
    }
    ctx.job.set_rolling(Some(format!(
        "the services run on {peer_name} with {to}: this node installs {to} and restarts into it"
    )));
    match crate::ve::scheduled::ask(
        &ctx.service,
        Request::UpdateInstall {
            file: plan.file.clone(),
            force_downgrade: plan.force_downgrade,
        },
    )
    .await
    {
        Reply::Refused(r) => Err(format!(
            "this node's install was refused ({r}); {peer_name} runs {to} with the services"
        )),
        _ => Ok(()),
    }
}

/// Records `phase` as the one the rolling update is in.
async fn enter(ctx: &Ctx, plan: &mut RollingRecord, phase: Phase) -> Result<(), String> {
    phase.name().clone_into(&mut plan.phase);
    let (job, p) = (ctx.job.clone(), plan.clone());
    tokio::task::spawn_blocking(move || save(&job, Some(&p), None))
        .await
        .map_err(|e| e.to_string())?
}

fn stop_text(s: Stop, ctx: &Ctx, plan: &RollingRecord) -> String {
    let peer = ctx.node.peer().name();
    match s {
        Stop::PeerWentBack => format!(
            "{peer} went back to its previous system instead of keeping {}; this node keeps the services on {}",
            plan.to_version, plan.from_version
        ),
        Stop::PeerTimedOut => format!(
            "{peer} did not run {} healthy and kept in time; this node keeps the services on {}: see {peer}'s update status",
            plan.to_version, plan.from_version
        ),
        Stop::SwitchoverTimedOut => format!(
            "the services did not move to {peer} in time: see `tandem status` on both nodes"
        ),
    }
}

/// What the other node's update status says of `to`, with what this node hears of
/// it (`heard`, `data_good`).
///
/// It went back only when its history says so (its last entry a failure, as the
/// rollback records it): a node on its way down may answer before it restarts, or
/// without its record (the configuration partition unmounted), which proves nothing.
fn seen(v: &UpdateView, to: &str, heard: bool, data_good: bool) -> PeerSeen {
    if v.pending.as_deref() == Some(to) || v.trial.is_some() {
        PeerSeen::Pending
    } else if v.version == to {
        PeerSeen::Kept { heard, data_good }
    } else if v.history.last().is_some_and(|h| !h.ok) {
        PeerSeen::WentBack
    } else {
        PeerSeen::Pending
    }
}

/// Phase 1: the bundle to the other node, its install, and the wait for its new
/// system to be kept.
async fn update_peer(
    ctx: &Ctx,
    peer: &Peer,
    plan: &RollingRecord,
    rolling: &Rolling,
) -> Result<(), String> {
    let name = peer.node.name();
    let to = plan.to_version.clone();
    let status = |peer: Peer| async move {
        blocking(move || peer.run(PeerCommand::Status, None))
            .await
            .ok()
            .and_then(|out| serde_json::from_str::<UpdateView>(out.trim()).ok())
    };
    // Resumed after the install was started: only the wait is left.
    let started = status(peer.clone())
        .await
        .is_some_and(|v| v.pending.as_deref() == Some(to.as_str()) || v.version == to);
    if !started {
        ctx.job
            .set_rolling(Some(format!("copying the bundle to {name} ({BUNDLE})")));
        let (p, file) = (peer.clone(), PathBuf::from(&plan.file));
        blocking(move || p.run(PeerCommand::ReceiveBundle, Some(&file))).await?;
        ctx.job
            .set_rolling(Some(format!("{name} installs {to} and restarts into it")));
        let p = peer.clone();
        let force = plan.force_downgrade;
        let installed = blocking(move || {
            p.run(
                PeerCommand::Install {
                    force_downgrade: force,
                },
                None,
            )
        })
        .await;
        if let Err(e) = installed {
            // The node may have gone down for its restart before the command ended:
            // only a failed install job there is a failure.
            if let Some(tandem_api::JobState::Failed { error }) =
                status(peer.clone()).await.map(|v| v.job.state)
            {
                return Err(format!("{name} did not install {to}: {error} ({e})"));
            }
        }
        ctx.hub.publish(
            "update",
            format!("rolling update to {to}: {name} installed it and restarts into it"),
        );
    }
    loop {
        let view = status(peer.clone()).await;
        let (heard, data_good) = status_now(&ctx.tx)
            .await
            .map_or((false, false), |s| (s.peer.alive, s.peer.data_good));
        let s = view
            .as_ref()
            .map_or(PeerSeen::Unreachable, |v| seen(v, &to, heard, data_good));
        ctx.job.set_rolling(Some(match (s, view.as_ref()) {
            (PeerSeen::Unreachable, _) => format!("{name} restarts (installing {to})"),
            (PeerSeen::Kept { .. }, _) => format!(
                "{name} runs {to}, kept; waiting until it is heard with its copy of the data up to date"
            ),
            (_, Some(v)) if v.trial.is_some() => {
                format!("{name}: {}", v.trial.as_deref().unwrap_or_default())
            }
            _ => format!("{name} installs {to}"),
        }));
        match rolling.peer_seen(ctx.clock.now(), s) {
            RollingStep::Next(_) => {
                ctx.hub.publish(
                    "update",
                    format!("rolling update to {to}: {name} runs it, kept"),
                );
                return Ok(());
            }
            RollingStep::Stop(st) => {
                let last = view
                    .and_then(|v| v.history.last().map(|h| h.text.clone()))
                    .map(|t| format!(" ({name}: {t})"))
                    .unwrap_or_default();
                return Err(format!("{}{last}", stop_text(st, ctx, plan)));
            }
            RollingStep::Wait(_) => tokio::time::sleep(LOOK).await,
        }
    }
}

/// The end of the rolling update on this node, at the decision of its own trial:
/// `kept` (the new system stays; the services stay on `other`, the other node, or
/// come back here when the update was asked with `switch_back`: returns the plan
/// then) or not (this node went back; the services stay on the other node with the
/// new system).
pub(super) fn finish(
    job: &UpdateJob,
    hub: &EventHub,
    other: &str,
    kept: bool,
) -> Option<RollingRecord> {
    let record = job.updater.record().ok()?;
    let plan = record.rolling?;
    if plan.phase != Phase::Here.name() {
        return None;
    }
    let back = kept && plan.switch_back;
    let (text, ok) = if kept {
        (
            if back {
                format!(
                    "rolling update to {} done: both nodes run it; the services move back to this node",
                    plan.to_version
                )
            } else {
                format!(
                    "rolling update to {} done: both nodes run it; the services stay on {other}",
                    plan.to_version
                )
            },
            true,
        )
    } else {
        (
            format!(
                "rolling update to {} stopped: this node went back to {}; {other} runs {} with the services",
                plan.to_version, plan.from_version, plan.to_version
            ),
            false,
        )
    };
    job.set_rolling(None);
    if let Err(e) = save(job, None, Some((text.clone(), ok))) {
        hub.publish("update", e);
    }
    hub.alert(
        "update",
        text,
        &Alert::Update {
            old: plan.from_version.clone(),
            new: plan.to_version.clone(),
        },
    );
    back.then_some(plan)
}

/// The `switch_back` of a finished rolling update: once this node is passive with
/// its copy current and the other node active, a switchover brings the services
/// here; said in the history, by e-mail when it does not happen within
/// [`SWITCHOVER`].
pub(super) async fn switch_back(
    plan: RollingRecord,
    job: UpdateJob,
    service: Arc<Service>,
    tx: mpsc::Sender<In>,
    hub: Arc<EventHub>,
    here: NodeId,
) {
    let peer = here.peer().name();
    let started = std::time::Instant::now();
    let mut asked = false;
    let text = loop {
        if started.elapsed() >= SWITCHOVER {
            break Err(format!(
                "the services did not move back to {here} within {} min: they run on {peer}; move them with `tandem switchover`",
                SWITCHOVER.as_secs() / 60
            ));
        }
        let Some(s) = status_now(&tx).await else {
            return;
        };
        if s.role == "active" {
            break Ok(format!(
                "the services moved back to {here} after the rolling update"
            ));
        }
        let ready = s.role == "passive"
            && s.data_good
            && s.peer.alive
            && s.peer.role.as_deref() == Some("active");
        if ready && !asked {
            match crate::ve::scheduled::ask(&service, Request::Switchover).await {
                Reply::Refused(r) => {
                    job.set_rolling(Some(format!("switching back: refused ({r}); asking again")));
                }
                _ => {
                    asked = true;
                    job.set_rolling(Some(format!("the services move back to {here}")));
                }
            }
        }
        tokio::time::sleep(LOOK).await;
    };
    job.set_rolling(None);
    let (text, ok) = match text {
        Ok(t) => (t, true),
        Err(t) => (t, false),
    };
    let j = job.clone();
    let t = text.clone();
    let _ = tokio::task::spawn_blocking(move || save(&j, None, Some((t, ok)))).await;
    if ok {
        hub.publish("update", text);
    } else {
        hub.alert(
            "update",
            text,
            &Alert::Update {
                old: plan.from_version,
                new: plan.to_version,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_api::{JobState, UpdateJobView};

    fn view(version: &str, pending: Option<&str>, trial: bool) -> UpdateView {
        UpdateView {
            version: version.into(),
            booted: None,
            slots: Vec::new(),
            slots_error: None,
            job: UpdateJobView {
                state: JobState::Idle,
                file: None,
                to_version: None,
                percent: 0,
                step: String::new(),
            },
            trial: trial.then(|| "trying".to_owned()),
            history: Vec::new(),
            pending: pending.map(Into::into),
            rolling: None,
            server: None,
        }
    }

    #[test]
    fn the_other_nodes_status_is_read_as_pending_kept_or_gone_back() {
        let s = |v, heard, good| seen(&v, "2", heard, good);
        assert_eq!(
            s(view("1", Some("2"), false), true, true),
            PeerSeen::Pending
        );
        assert_eq!(s(view("2", Some("2"), true), true, true), PeerSeen::Pending);
        assert_eq!(s(view("2", None, true), true, true), PeerSeen::Pending);
        assert_eq!(
            s(view("2", None, false), false, true),
            PeerSeen::Kept {
                heard: false,
                data_good: true
            }
        );
        assert_eq!(
            s(view("2", None, false), true, false),
            PeerSeen::Kept {
                heard: true,
                data_good: false
            }
        );
        // Its history says it went back.
        let mut back = view("1", None, false);
        back.history.push(tandem_api::UpdateHistoryEntry {
            at: 1,
            text: "update to 2 failed, rolled back to 1".into(),
            ok: false,
        });
        assert_eq!(s(back, true, true), PeerSeen::WentBack);
        // Still on the old version, nothing pending and nothing failed: a node on
        // its way down, or without its record; not a rollback.
        assert_eq!(s(view("1", None, false), true, true), PeerSeen::Pending);
    }
}
