//! The system update at start: what this boot is ([`crate::update::record`]), and
//! for the first boot of a new system the trial ([`tandem_core::Trial`]): committed
//! when the node is healthy, given up (marked bad, node restarted into the previous
//! system) when it is not by the deadline. A rolled-back update is reported.

use std::sync::Arc;
use std::time::Duration;

use tandem_core::{Trial, TrialHealth, TrialRule, TrialStep};
use tokio::sync::mpsc;

use super::In;
use super::core_loop::Shell;
use super::hub::EventHub;
use crate::admin::update::UpdateJob;
use crate::alerts::Alert;
use crate::update::record::{Boot, Pending};

/// How long every health fact must hold before a new system is kept.
pub const SETTLE: Duration = Duration::from_secs(10);

/// How long the start waits for the update service to answer.
const SERVICE_WAIT: Duration = Duration::from_secs(60);

/// The update side of the loop.
pub(super) struct Updates {
    pub(super) job: UpdateJob,
    pub(super) init_pid: i32,
    pub(super) trial: Option<(Trial, Pending)>,
}

/// Reads what this boot is, off the loop: an ordinary boot is committed at once, a
/// rollback reported and committed, a trial handed to the loop. Each question to
/// RAUC runs on a blocking thread of its own; the waits between them are the loop's
/// timers, so a shutdown never waits for the update service.
pub(super) fn start(
    job: UpdateJob,
    tx: mpsc::Sender<In>,
    hub: Arc<EventHub>,
    rolling: crate::update::rolling::Handle,
) {
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let boot = loop {
            let j = job.clone();
            match tokio::task::spawn_blocking(move || j.updater.boot()).await {
                Ok(Ok(b)) => break b,
                Ok(Err(e)) if e.engine_missing() => {
                    hub.publish("update", format!("updates are not possible here: {e}"));
                    return;
                }
                Ok(Err(e)) if started.elapsed() >= SERVICE_WAIT => {
                    hub.publish(
                        "update",
                        format!("the system slots are unknown, nothing is committed: {e}"),
                    );
                    return;
                }
                Ok(Err(_)) => tokio::time::sleep(Duration::from_secs(2)).await,
                Err(_) => return,
            }
        };
        let after = tokio::task::spawn_blocking(move || after_boot(&job, boot, &hub)).await;
        match after {
            Ok(After::Trial(p)) => {
                let _ = tx.send(In::UpdateTrial(p)).await;
            }
            Ok(After::Resume(r)) => {
                let _ = rolling.call(crate::update::rolling::Call::Resume(*r)).await;
            }
            Ok(After::Nothing) | Err(_) => {}
        }
    });
}

/// What follows the start's look at the update record.
enum After {
    /// Nothing.
    Nothing,
    /// The trial of this new system begins.
    Trial(Pending),
    /// The rolling update this node leads goes on.
    Resume(Box<crate::update::record::RollingRecord>),
}

/// Acts on what this boot is; returns what follows.
fn after_boot(job: &UpdateJob, boot: Boot, hub: &EventHub) -> After {
    match boot {
        Boot::Ordinary => {
            if let Err(e) = job.updater.commit(None) {
                hub.publish("update", e.0);
            }
            match job.updater.record().map(|r| r.rolling) {
                Ok(Some(r)) => After::Resume(Box::new(r)),
                _ => After::Nothing,
            }
        }
        Boot::RolledBack(p) => {
            let text = job
                .updater
                .rolled_back(&p)
                .unwrap_or_else(|e| format!("update to {} failed: {e}", p.to_version));
            hub.alert(
                "update",
                text,
                &Alert::Update {
                    old: p.from_version.clone(),
                    new: p.to_version.clone(),
                },
            );
            if let Err(e) = job.updater.commit(None) {
                hub.publish("update", e.0);
            }
            // This node went back during the last phase of a rolling update it led.
            let _ = super::rolling::finish(job, hub, "the other node", false);
            After::Nothing
        }
        Boot::Trial(p) => After::Trial(p),
    }
}

impl Shell {
    /// The first boot of a new system begins its trial.
    pub(super) fn trial_begins(&mut self, p: Pending) {
        let now = self.clock.now();
        let rule = TrialRule {
            settle: SETTLE,
            deadline: self.running_cfg.as_ref().map_or(
                Duration::from(tandem_config::schema::DEFAULT_TRIAL_DEADLINE),
                |c| Duration::from(c.updates.trial_deadline()),
            ),
        };
        self.hub.publish(
            "update",
            format!(
                "trying {} (slot {}): it is kept once this node is healthy, otherwise it goes back to {} in {} min",
                p.to_version,
                p.to_slot,
                p.from_version,
                rule.deadline.as_secs() / 60
            ),
        );
        self.updates.trial = Some((Trial::new(rule, now), p));
    }

    /// The trial's check, at each replication reading (every second).
    pub(super) fn trial_check(&mut self, linked: bool) {
        let now = self.clock.now();
        let Some((trial, p)) = &mut self.updates.trial else {
            return;
        };
        let health = TrialHealth {
            config_loaded: self.running_cfg.is_some(),
            peer_heard: self.core.status(now).peer.alive,
            replica_connected: linked || self.settings.replication.is_none(),
        };
        let p = p.clone();
        let minutes = trial.rule().deadline.as_secs() / 60;
        let step = trial.step(now, health);
        if trial.decided() {
            // Decided once: the record and the slot marks say the rest.
            self.updates.trial = None;
        }
        match step {
            TrialStep::Wait(_) => {
                let Some((trial, _)) = &self.updates.trial else {
                    return;
                };
                let left = trial.deadline().since(now).as_secs();
                let missing = health.missing();
                self.updates.job.set_trial(Some(if missing.is_empty() {
                    format!("trying {}: healthy, kept shortly", p.to_version)
                } else {
                    format!(
                        "trying {}: waiting for {} (goes back to {} in {left} s)",
                        p.to_version,
                        missing.join(", "),
                        p.from_version
                    )
                }));
            }
            TrialStep::Commit => {
                self.updates.job.set_trial(None);
                let (job, hub) = (self.updates.job.clone(), Arc::clone(&self.hub));
                let other = self.settings.node.peer().name();
                let back = (
                    job.clone(),
                    Arc::clone(&self.service),
                    self.tx.clone(),
                    Arc::clone(&hub),
                    self.settings.node,
                );
                let committed = tokio::task::spawn_blocking(move || {
                    let (text, ok) = match job.updater.commit(Some(&p)) {
                        Ok(()) => (
                            format!(
                                "updated from {} to {}: the new system is healthy and kept",
                                p.from_version, p.to_version
                            ),
                            true,
                        ),
                        Err(e) => (format!("update to {}: {e}", p.to_version), false),
                    };
                    let alert = Alert::Update {
                        old: p.from_version.clone(),
                        new: p.to_version.clone(),
                    };
                    if ok {
                        hub.alert("update", text, &alert);
                        super::rolling::finish(&job, &hub, other, true)
                    } else {
                        hub.publish("update", text);
                        None
                    }
                });
                tokio::spawn(async move {
                    if let Ok(Some(plan)) = committed.await {
                        let (job, service, tx, hub, node) = back;
                        super::rolling::switch_back(plan, job, service, tx, hub, node).await;
                    }
                });
            }
            TrialStep::GiveUp
                if self.core.status(now).resources != tandem_core::ResourceState::Stopped =>
            {
                self.updates.job.set_trial(None);
                // Restarting would stop the services: the slot stays untried-out; the
                // next restart of this node goes back by itself.
                self.hub.alert(
                    "update",
                    format!(
                        "update to {} did not become healthy within {} min ({}), but this node runs the services: it stays on {} until the services are moved (tandem switchover) and it is restarted, which goes back to {}",
                        p.to_version,
                        minutes,
                        health.missing().join(", "),
                        p.to_version,
                        p.from_version
                    ),
                    &Alert::Update {
                        old: p.from_version.clone(),
                        new: p.to_version.clone(),
                    },
                );
                let (job, hub) = (self.updates.job.clone(), Arc::clone(&self.hub));
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = job.updater.hold() {
                        hub.publish("update", e.0);
                    }
                });
            }
            TrialStep::GiveUp => {
                self.updates.job.set_trial(None);
                let text = format!(
                    "update to {} did not become healthy within {} min ({}): going back to {}",
                    p.to_version,
                    minutes,
                    health.missing().join(", "),
                    p.from_version
                );
                self.hub.alert(
                    "update",
                    text,
                    &Alert::Update {
                        old: p.from_version.clone(),
                        new: p.to_version.clone(),
                    },
                );
                let (job, hub, pid) = (
                    self.updates.job.clone(),
                    Arc::clone(&self.hub),
                    self.updates.init_pid,
                );
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = job.updater.give_up() {
                        hub.publish("update", e.0);
                    }
                    if let Err(e) = crate::admin::update::restart_via_init(pid)() {
                        hub.publish(
                            "update",
                            format!("restarting into the previous system: {e}"),
                        );
                    }
                });
            }
        }
    }
}
