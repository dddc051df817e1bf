//! Who may ask what, and the answer: every request of the control API is decided here.
//!
//! - Requests that change nothing and reveal no configuration ([`Request::is_open`])
//!   are answered for anyone who may connect (the socket admits root and, with
//!   `--control-group`, the web console's group).
//! - Every other request needs an administrator: a root client (the node's own
//!   console and CLI; the kernel tells the socket's peer credentials), or the token
//!   of a session opened here at login. The web console's unprivileged process has
//!   no other way in: it never sees a password hash, and a token it did not get from a
//!   login opens nothing.
//! - A recovery session (opened on an unconfigured node) opens the recovery requests
//!   only, a cluster session the cluster requests only; root opens both.
//! - In recovery mode (no cluster loop: the node is not a member) the requests that
//!   need the cluster are refused as such; on a configured node the recovery requests
//!   are closed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem_api::wire::RequestLine;
use tandem_api::{
    ADMIN_USER, DataChoice, HwJson, Mode, Refusal, Reply, Request, SessionInfo, SessionKind, Token,
};
use tokio::sync::oneshot;

use super::session::Sessions;
use super::throttle::Throttle;
use crate::admin::archive::Checked;
use crate::admin::{Admin, archive, password, settings, ve_backup};
use crate::events::EventFeed;

/// What the control server asks the cluster loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterCall {
    /// The cluster's state.
    Status,
    /// Start a switchover.
    Switchover,
    /// Put the committed configuration in effect.
    ReloadConfig,
    /// This node's and the other node's facts.
    Facts,
    /// The operator confirms that this silent peer is down (its fence failed).
    FenceConfirm(tandem_config::NodeId),
    /// Start from this node's own copy (the cluster name was checked).
    ForcePrimary,
    /// DRBD's split-brain handler reports a split brain.
    SplitBrainDetected,
    /// DRBD's fence-peer handler: the replication lost the peer while this node holds
    /// the data (fence a silent peer before writes resume, where fencing is required).
    ReplicationPeerLost,
    /// This node's part of resolving the split brain in this survivor's favour (the
    /// cluster name was checked).
    ResolveSplitBrain(tandem_config::NodeId),
}

/// The way to the cluster loop of a member node.
pub struct ClusterLink {
    /// Sends a call to the loop; the answer comes on the receiver (dropped when the
    /// loop ended).
    pub ask: Arc<dyn Fn(ClusterCall) -> oneshot::Receiver<Reply> + Send + Sync>,
    /// The node's events.
    pub events: Arc<EventFeed>,
    /// The latest hardware readings.
    pub hw: Arc<Mutex<HwJson>>,
    /// The e-mail side: the outbox's state and the test message (reads a few small
    /// files or sends on a channel; never waits for a delivery).
    pub mail: Arc<dyn Fn(crate::mail::MailCall) -> Reply + Send + Sync>,
    /// The remote-support tunnel.
    pub support: crate::support::Handle,
    /// The rolling update of the pair.
    pub rolling: crate::update::rolling::Handle,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink").finish_non_exhaustive()
    }
}

impl ClusterLink {
    /// A link to a cluster loop of node `node` that has ended: every call is answered
    /// "the cluster loop is down", no events come, the hardware is unknown, the mail
    /// side answers as the loop would, and neither a support tunnel nor a rolling
    /// update can start. The control plane then still serves what it does itself
    /// (VEs, templates, backups, settings): tests replace the sides they need with
    /// `ClusterLink { ask: …, ..ClusterLink::ended("node1") }`.
    #[must_use]
    pub fn ended(node: &str) -> ClusterLink {
        ClusterLink {
            ask: Arc::new(|_| oneshot::channel().1),
            events: Arc::new(EventFeed::new(node)),
            hw: Arc::new(Mutex::new(crate::hw::initial_snapshot(
                &crate::hw::Board::None,
            ))),
            mail: Arc::new(|_| Reply::Refused(Refusal::ClusterDown("it has ended".into()))),
            support: crate::support::Handle::none(),
            rolling: crate::update::rolling::Handle::none(),
        }
    }

    /// The loop's answer to `call`.
    pub async fn call(&self, call: ClusterCall) -> Reply {
        (self.ask)(call)
            .await
            .unwrap_or_else(|_| Reply::Refused(Refusal::ClusterDown("it has ended".into())))
    }
}

/// What a request asks of the connection.
#[derive(Debug)]
pub enum Handled {
    /// One reply, and its payload.
    One(Reply, Vec<u8>),
    /// The event stream (the backlog, then with `follow` every new event).
    Events {
        /// Keep streaming.
        follow: bool,
    },
}

/// Who asks.
enum Who {
    /// Anyone who may connect (open requests).
    Anyone,
    /// Root on the node, in this process when the kernel named it.
    Root {
        /// The client's process.
        pid: Option<i32>,
    },
    /// A session.
    Session(SessionInfo),
}

/// What the operator asks of a VE.
#[derive(Debug, Clone, Copy)]
enum VeAction {
    Start,
    Stop(Duration),
    Restart,
}

/// The control API's server side: sessions, the login throttle, the privileged
/// actions, and (on a member) the way to the cluster loop.
pub struct Service {
    admin: Arc<Admin>,
    cluster: Option<ClusterLink>,
    sessions: Mutex<Sessions<Option<Arc<Checked>>>>,
    throttle: Mutex<Throttle>,
    /// Requests refused as malformed (shown in the status counters).
    pub bad_requests: Arc<AtomicU64>,
    now: Box<dyn Fn() -> Instant + Send + Sync>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("admin", &self.admin)
            .field("member", &self.cluster.is_some())
            .finish_non_exhaustive()
    }
}

fn one(r: Reply) -> Handled {
    Handled::One(r, Vec::new())
}

fn refused(r: Refusal) -> Handled {
    one(Reply::Refused(r))
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the system's random source");
    b
}

impl Service {
    /// The service of `admin`; `cluster` is the way to the cluster loop (none in
    /// recovery mode).
    #[must_use]
    pub fn new(admin: Admin, cluster: Option<ClusterLink>) -> Service {
        Service::with_clock(admin, cluster, Box::new(Instant::now))
    }

    /// As [`Service::new`] with an injected clock (tests).
    #[must_use]
    pub fn with_clock(
        admin: Admin,
        cluster: Option<ClusterLink>,
        now: Box<dyn Fn() -> Instant + Send + Sync>,
    ) -> Service {
        Service {
            admin: Arc::new(admin),
            cluster,
            sessions: Mutex::new(Sessions::default()),
            throttle: Mutex::new(Throttle::default()),
            bad_requests: Arc::new(AtomicU64::new(0)),
            now,
        }
    }

    /// The way to the cluster loop, on a member.
    #[must_use]
    pub fn cluster(&self) -> Option<&ClusterLink> {
        self.cluster.as_ref()
    }

    /// Ends every session (the management password changed, here or on the other
    /// node).
    pub fn end_sessions(&self) {
        if let Ok(mut s) = self.sessions.lock() {
            s.end_all();
        }
    }

    /// Counts a request refused as malformed.
    pub fn count_bad_request(&self) {
        self.bad_requests.fetch_add(1, Ordering::Relaxed);
    }

    fn session(&self, token: &Token) -> Option<SessionInfo> {
        let now = (self.now)();
        self.sessions.lock().ok()?.check(now, token).map(|(i, _)| i)
    }

    fn checked(&self, token: Option<&Token>) -> Option<Arc<Checked>> {
        let now = (self.now)();
        let mut s = self.sessions.lock().ok()?;
        s.check(now, token?).and_then(|(_, c)| c.clone())
    }

    fn keep_checked(&self, token: Option<&Token>, checked: Option<Arc<Checked>>) {
        let now = (self.now)();
        if let (Some(t), Ok(mut s)) = (token, self.sessions.lock())
            && let Some((_, c)) = s.check(now, t)
        {
            *c = checked;
        }
    }

    /// Runs `f` with the privileged actions on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Admin) -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        let admin = Arc::clone(&self.admin);
        tokio::task::spawn_blocking(move || f(&admin))
            .await
            .map_err(|e| Refusal::Failed(format!("the request's work failed: {e}")))
    }

    /// Answers one request of a client with user id `uid`.
    pub async fn handle(
        self: &Arc<Self>,
        uid: u32,
        line: RequestLine,
        payload: Vec<u8>,
    ) -> Handled {
        self.handle_from(uid, None, line, payload).await
    }

    /// Answers one request of a client with user id `uid` in process `pid` (as the
    /// kernel names them: root's origin is read from that process).
    pub async fn handle_from(
        self: &Arc<Self>,
        uid: u32,
        pid: Option<i32>,
        line: RequestLine,
        payload: Vec<u8>,
    ) -> Handled {
        let RequestLine { token, request, .. } = line;
        if request.is_root_only() && uid != 0 {
            return refused(Refusal::RootOnly);
        }
        let who = if request.is_open() {
            Who::Anyone
        } else if uid == 0 {
            Who::Root { pid }
        } else {
            match token.as_ref().and_then(|t| self.session(t)) {
                Some(s) => Who::Session(s),
                None => return refused(Refusal::NoSession),
            }
        };
        if let Some(r) = self.refuse_for_mode(&request, &who) {
            return refused(r);
        }
        match request {
            Request::Status => match self.cluster_call(ClusterCall::Status, "status").await {
                Handled::One(Reply::Status(mut st), extra) => {
                    st.ves = self.ve_health_json();
                    Handled::One(Reply::Status(st), extra)
                }
                other => other,
            },
            Request::Facts => self.cluster_call(ClusterCall::Facts, "facts").await,
            Request::Switchover => {
                self.cluster_call(ClusterCall::Switchover, "switchover")
                    .await
            }
            Request::ReloadConfig => {
                self.cluster_call(ClusterCall::ReloadConfig, "reload-config")
                    .await
            }
            Request::Hw => match &self.cluster {
                Some(c) => match c.hw.lock() {
                    Ok(h) => one(Reply::Hw(Box::new(h.clone()))),
                    Err(_) => refused(Refusal::Failed("hardware snapshot unavailable".into())),
                },
                None => refused(Refusal::RecoveryMode("hw".into())),
            },
            Request::Events { follow } => Handled::Events { follow },
            Request::Mode => one(Reply::Mode(Mode {
                configured: self.admin.configured(),
                recovery: self.cluster.is_none(),
            })),
            Request::Login {
                user,
                password,
                source,
            } => one(self.login(&user, password.0, source).await),
            Request::Session => match token.as_ref().and_then(|t| self.session(t)) {
                Some(s) => one(Reply::Session(s)),
                None => refused(Refusal::NoSession),
            },
            Request::Logout => {
                if let (Some(t), Ok(mut s)) = (&token, self.sessions.lock()) {
                    s.end(t);
                }
                one(Reply::Done)
            }
            Request::LoginLockout { source } => {
                let now = (self.now)();
                one(Reply::Lockout(
                    self.throttle
                        .lock()
                        .ok()
                        .and_then(|t| t.lockout_for(now, source)),
                ))
            }
            Request::LiftLockout => {
                if let Ok(mut t) = self.throttle.lock() {
                    t.lift();
                }
                one(Reply::Done)
            }
            Request::SetConsolePassword { password } => {
                let r = self
                    .blocking(move |a| password::set(&a.store, password.expose()))
                    .await;
                match r {
                    Ok(Ok(())) => {
                        self.end_sessions();
                        one(Reply::Done)
                    }
                    Ok(Err(e)) => refused(Refusal::Failed(crate::error_chain(&e))),
                    Err(r) => refused(r),
                }
            }
            Request::CheckArchive { passphrase } => {
                let r = self
                    .blocking(move |a| {
                        archive::check(&a.store, &payload, passphrase.as_ref().map(|p| p.expose()))
                    })
                    .await
                    .and_then(|r| r);
                match r {
                    Ok(c) => {
                        let summary = c.summary.clone();
                        self.keep_checked(token.as_ref(), Some(Arc::new(c)));
                        one(Reply::Checked(summary))
                    }
                    Err(r) => {
                        // What is shown for activation is always the last upload.
                        self.keep_checked(token.as_ref(), None);
                        refused(r)
                    }
                }
            }
            Request::Activate {
                choice,
                confirm_name,
            } => self.activate(token.as_ref(), choice, confirm_name).await,
            Request::Activation => one(Reply::Activation(self.admin.activation.view_shown())),
            Request::CheckedArchive => match self.checked(token.as_ref()) {
                Some(c) => one(Reply::Checked(c.summary.clone())),
                None => refused(Refusal::NoArchive),
            },
            Request::Settings => {
                self.admin_reply(|a| {
                    crate::admin::current(&a.store)
                        .map(|c| Reply::Settings(Box::new(settings::view(&c))))
                })
                .await
            }
            Request::VeList => {
                let health = self.ve_health_json();
                self.admin_reply(move |a| {
                    let c = crate::admin::current(&a.store)?;
                    let mut ves = a.ve.list(&c)?;
                    for v in &mut ves {
                        if let Some(h) = health.iter().find(|h| h.id == v.id) {
                            v.health.clone_from(&h.state);
                        }
                    }
                    Ok(Reply::Ves(ves))
                })
                .await
            }
            Request::VeStart { id } => self.ve_action(id, VeAction::Start).await,
            Request::VeStop { id, grace_secs } => {
                let grace = Duration::from_secs(grace_secs.unwrap_or(10).min(600));
                self.ve_action(id, VeAction::Stop(grace)).await
            }
            Request::VeRestart { id } => self.ve_action(id, VeAction::Restart).await,
            Request::VeSet { id, changes } => {
                self.admin_reply(move |a| {
                    let c = crate::admin::current(&a.store)?;
                    a.ve.set(&c, id, &changes).map(|()| Reply::Done)
                })
                .await
            }
            Request::Export { passphrase } => self.export(passphrase.0).await,
            Request::Power { action } => {
                self.admin_reply(move |a| a.power(action).map(|()| Reply::PowerSignalled(action)))
                    .await
            }
            Request::VeTemplates => {
                self.admin_reply(|a| {
                    crate::admin::current(&a.store)?;
                    a.ve.templates().map(Reply::Templates)
                })
                .await
            }
            Request::InstallVe101 { template } => {
                self.admin_reply(move |a| {
                    let c = crate::admin::current(&a.store)?;
                    a.ve.install_ve101(&c, &template, &a.install)
                        .map(|()| Reply::InstallStarted)
                })
                .await
            }
            Request::Ve101Install => one(Reply::Install(self.admin.install.view())),
            Request::Ve101Password { new, confirm } => {
                self.admin_reply(move |a| {
                    crate::admin::current(&a.store)?;
                    Ok(a.ve.ve101_password(new.expose(), confirm.expose()))
                })
                .await
            }
            Request::VePassword {
                id,
                user,
                new,
                confirm,
            } => {
                self.admin_reply(move |a| {
                    crate::admin::current(&a.store)?;
                    Ok(a.ve.ve_password(id, &user, new.expose(), confirm.expose()))
                })
                .await
            }
            Request::FenceConfirm { node } => match node.trim().parse::<tandem_config::NodeId>() {
                Ok(n) => {
                    self.cluster_call(ClusterCall::FenceConfirm(n), "fence-confirm")
                        .await
                }
                Err(_) => refused(Refusal::Failed(format!(
                    "{node:?} is not a node name: type the silent node's name, node1 or node2; nothing was changed"
                ))),
            },
            Request::ReplicationPeerLost => {
                self.cluster_call(ClusterCall::ReplicationPeerLost, "replication-peer-lost")
                    .await
            }
            Request::SplitBrainDetected => {
                self.cluster_call(ClusterCall::SplitBrainDetected, "split-brain-detected")
                    .await
            }
            Request::ResolveSplitBrain {
                survivor,
                confirm_name,
            } => {
                let Ok(survivor) = survivor.trim().parse::<tandem_config::NodeId>() else {
                    return refused(Refusal::Failed(format!(
                        "{survivor:?} is not a node name: type node1 or node2; nothing was changed"
                    )));
                };
                match self.check_cluster_name(confirm_name).await {
                    Ok(()) => {
                        self.cluster_call(
                            ClusterCall::ResolveSplitBrain(survivor),
                            "resolve-split-brain",
                        )
                        .await
                    }
                    Err(r) => refused(r),
                }
            }
            Request::ForcePrimary { confirm_name } => {
                let checked = self.check_cluster_name(confirm_name).await;
                match checked {
                    Ok(()) => {
                        self.cluster_call(ClusterCall::ForcePrimary, "force-primary")
                            .await
                    }
                    Err(r) => refused(r),
                }
            }
            Request::BackupTemplates => {
                self.admin_reply(|a| {
                    crate::admin::current(&a.store)?;
                    a.ve.backup_templates().map(Reply::TemplatesBackedUp)
                })
                .await
            }
            Request::VeBackup { id } => {
                self.admin_reply(move |a| {
                    let c = crate::admin::current(&a.store)?;
                    let site = ve_backup::site_of(&a.ve);
                    a.ve_backup
                        .start_backup(site, id, ve_backup::CopyOff::of(&c))
                        .map(|()| Reply::VeJobStarted)
                })
                .await
            }
            Request::VeRestore { file, to } => {
                let any_path = matches!(who, Who::Root { .. });
                self.admin_reply(move |a| {
                    crate::admin::current(&a.store)?;
                    let site = ve_backup::site_of(&a.ve);
                    let path = ve_backup::backup_file(&site, &file, any_path)?;
                    let running = ve_backup::running_check(&site);
                    a.ve_backup
                        .start_restore(site, path, to, running)
                        .map(|()| Reply::VeJobStarted)
                })
                .await
            }
            Request::VeBackupJob => one(Reply::VeJob(Box::new(self.admin.ve_backup.view()))),
            Request::TemplateAdd { file, name } => {
                self.admin_reply(move |a| {
                    crate::admin::current(&a.store)?;
                    a.ve.template_add(std::path::Path::new(&file), name.as_deref())
                        .map(Reply::TemplateAdded)
                })
                .await
            }
            Request::TemplateFetch { url, name } => {
                self.admin_reply(move |a| {
                    crate::admin::current(&a.store)?;
                    a.ve.template_fetch(&url, name.as_deref())
                        .map(Reply::TemplateAdded)
                })
                .await
            }
            Request::TemplateDelete { name } => {
                self.admin_reply(move |a| {
                    crate::admin::current(&a.store)?;
                    a.ve.template_delete(&name).map(|()| Reply::Done)
                })
                .await
            }
            Request::VeBackupsPrune { id, keep } => {
                self.admin_reply(move |a| {
                    crate::admin::current(&a.store)?;
                    ve_backup::prune(&ve_backup::site_of(&a.ve), id, keep)
                        .map(Reply::VeBackupsPruned)
                })
                .await
            }
            Request::MailOutbox | Request::MailTest => match &self.cluster {
                Some(c) => {
                    let call = if matches!(request, Request::MailTest) {
                        crate::mail::MailCall::Test
                    } else {
                        crate::mail::MailCall::Outbox
                    };
                    let mail = Arc::clone(&c.mail);
                    match tokio::task::spawn_blocking(move || mail(call)).await {
                        Ok(r) => one(r),
                        Err(e) => {
                            refused(Refusal::Failed(format!("the e-mail request failed: {e}")))
                        }
                    }
                }
                None => refused(Refusal::RecoveryMode(request.name())),
            },
            Request::SupportOn { .. } | Request::SupportOff | Request::SupportStatus => {
                let Some(c) = &self.cluster else {
                    return refused(Refusal::RecoveryMode(request.name()));
                };
                let by = match &who {
                    Who::Session(s) => match s.source {
                        Some(ip) => format!("admin (web console, from {ip})"),
                        None => "admin (web console)".to_owned(),
                    },
                    Who::Root { pid: Some(pid) } => super::origin::Origin::of_process(*pid).root(),
                    _ => super::origin::Origin::Node.root(),
                };
                let call = match request {
                    Request::SupportOn { hours } => crate::support::Call::On { hours, by },
                    Request::SupportOff => crate::support::Call::Off { by },
                    _ => crate::support::Call::Status,
                };
                one(c.support.call(call).await)
            }
            Request::UpdateStatus => {
                self.admin_reply(|a| Ok(Reply::Update(Box::new(a.update.view()))))
                    .await
            }
            Request::UpdateCheck => {
                self.admin_reply(|a| {
                    let c = crate::admin::current(&a.store)?;
                    match a.update.check_server(&c.updates) {
                        None => Err(Refusal::Failed(format!(
                            "no update server is configured ({} is an example address): set updates.url, updates.user and updates.password",
                            c.updates.url
                        ))),
                        Some(_) => Ok(Reply::Update(Box::new(a.update.view()))),
                    }
                })
                .await
            }
            Request::UpdateDownload => {
                self.admin_reply(|a| {
                    let c = crate::admin::current(&a.store)?;
                    a.update
                        .start_download(&c.updates)
                        .map(|_| Reply::UpdateStarted)
                })
                .await
            }
            Request::UpdateInstall {
                file,
                force_downgrade,
            } => {
                if let Err(r) = self.not_serving("update this node").await {
                    return refused(r);
                }
                self.admin_reply(move |a| {
                    let restart = crate::admin::update::restart_via_init(a.init_pid);
                    a.update
                        .start_install(file.into(), force_downgrade, restart)
                        .map(|()| Reply::UpdateStarted)
                })
                .await
            }
            Request::UpdateRolling {
                file,
                switch_back,
                force_downgrade,
            } => {
                let Some(c) = &self.cluster else {
                    return refused(Refusal::RecoveryMode("update-rolling".into()));
                };
                one(c
                    .rolling
                    .call(crate::update::rolling::Call::Start {
                        file,
                        switch_back,
                        force_downgrade,
                    })
                    .await)
            }
            Request::UpdateRollingDownloaded => {
                let Some(c) = &self.cluster else {
                    return refused(Refusal::RecoveryMode("update-rolling".into()));
                };
                let Some(file) = self.admin.update.downloaded() else {
                    return refused(Refusal::Failed(
                        "no bundle is downloaded on this node: download the update server's offer first (tandem update download, or the Updates page)".into(),
                    ));
                };
                one(c
                    .rolling
                    .call(crate::update::rolling::Call::Start {
                        file: file.display().to_string(),
                        switch_back: false,
                        force_downgrade: false,
                    })
                    .await)
            }
            Request::UpdateRollback => {
                if let Err(r) = self.not_serving("go back to the previous system").await {
                    return refused(r);
                }
                self.admin_reply(|a| {
                    let restart = crate::admin::update::restart_via_init(a.init_pid);
                    a.update
                        .rollback(restart)
                        .map(|_| Reply::PowerSignalled(tandem_api::PowerAction::Reboot))
                })
                .await
            }
            Request::VeBackups => {
                self.admin_reply(|a| {
                    let c = crate::admin::current(&a.store)?;
                    ve_backup::list(&ve_backup::site_of(&a.ve), &c)
                        .map(|v| Reply::VeBackups(Box::new(v)))
                })
                .await
            }
            Request::ChangeSettings {
                change,
                revision,
                this_node_only,
            } => {
                let reload = self.reloader();
                let r = self
                    .admin_reply(move |a| {
                        Ok(settings::change(
                            &a.store,
                            a.node,
                            &change,
                            revision,
                            this_node_only,
                            &reload,
                        ))
                    })
                    .await;
                self.after_change(r)
            }
            Request::ApplyConfig { this_node_only } => {
                let Ok(text) = String::from_utf8(payload) else {
                    return refused(Refusal::Payload(
                        "the configuration is not UTF-8 text".into(),
                    ));
                };
                let reload = self.reloader();
                let r = self
                    .admin_reply(move |a| {
                        Ok(settings::apply(
                            &a.store,
                            a.node,
                            &text,
                            this_node_only,
                            &reload,
                        ))
                    })
                    .await;
                self.after_change(r)
            }
        }
    }

    /// The refusal for a request that the session's kind or clusterd's mode does not
    /// open.
    fn refuse_for_mode(&self, request: &Request, who: &Who) -> Option<Refusal> {
        let recovery_request = matches!(
            request,
            Request::CheckArchive { .. }
                | Request::CheckedArchive
                | Request::Activate { .. }
                | Request::Activation
        );
        if let Who::Session(s) = who {
            let fits = match s.kind {
                SessionKind::Recovery => recovery_request,
                SessionKind::Cluster => !recovery_request,
            };
            if !fits {
                return Some(Refusal::WrongSession);
            }
        }
        if matches!(
            request,
            Request::CheckArchive { .. } | Request::Activate { .. }
        ) && self.admin.configured()
        {
            return Some(Refusal::Configured);
        }
        let needs_member = !recovery_request
            && !matches!(
                request,
                Request::Mode
                    | Request::Login { .. }
                    | Request::Session
                    | Request::Logout
                    | Request::LoginLockout { .. }
                    | Request::LiftLockout
                    | Request::SetConsolePassword { .. }
            );
        if needs_member && self.cluster.is_none() {
            return Some(Refusal::RecoveryMode(request.name()));
        }
        None
    }

    /// Whether `typed` is the committed configuration's cluster name.
    async fn check_cluster_name(&self, typed: String) -> Result<(), Refusal> {
        self.blocking(move |a| {
            let cfg = crate::admin::current(&a.store)?;
            let name = cfg.cluster.name.as_str().to_owned();
            if typed.trim() == name {
                Ok(())
            } else {
                Err(Refusal::Failed(format!(
                    "the name typed is not the cluster's name ({name}); nothing was changed"
                )))
            }
        })
        .await
        .and_then(|r| r)
    }

    /// The VEs' watch, as status shows it.
    fn ve_health_json(&self) -> Vec<tandem_api::VeHealthJson> {
        self.admin
            .ve_health
            .as_ref()
            .map(|h| {
                h.views()
                    .into_iter()
                    .map(|v| tandem_api::VeHealthJson {
                        id: v.id,
                        state: v.state,
                        crashes: v.crashes,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The operator starts, stops or restarts a VE through the watch, so that a stop
    /// is never answered by a restart and a start is watched.
    async fn ve_action(&self, id: u32, action: VeAction) -> Handled {
        use tandem_core::ve_health::StopCause;
        let Some(health) = self.admin.ve_health.clone() else {
            return refused(Refusal::Failed(
                "this clusterd runs no VEs (it holds no data area): VEs run on the active node, tandem status shows which".to_owned(),
            ));
        };
        if let Err(r) = self.admin.ve.data_area() {
            return refused(r);
        }
        let grace = match action {
            VeAction::Stop(g) => g,
            VeAction::Start | VeAction::Restart => Duration::from_secs(10),
        };
        let stopped = match action {
            VeAction::Start => Ok(()),
            VeAction::Stop(_) => health.stop(id, grace, StopCause::Operator).await,
            VeAction::Restart => health.stop(id, grace, StopCause::Restart).await,
        };
        let done = match (stopped, action) {
            (Err(e), _) => Err(e),
            (Ok(()), VeAction::Stop(_)) => Ok(()),
            (Ok(()), VeAction::Start | VeAction::Restart) => health.start(id).await,
        };
        match done {
            Ok(()) => one(Reply::Done),
            Err(e) => refused(Refusal::Failed(crate::error_chain(&e))),
        }
    }

    /// Refuses `what` on the node that runs the services (or is taking them): an
    /// update restarts the node, so the services move first.
    async fn not_serving(&self, what: &str) -> Result<(), Refusal> {
        let Some(c) = &self.cluster else {
            return Err(Refusal::RecoveryMode(what.to_owned()));
        };
        match c.call(ClusterCall::Status).await {
            Reply::Status(st) if st.role == "passive" && st.resources == "stopped" => Ok(()),
            Reply::Status(st) => Err(Refusal::Failed(format!(
                "this node is {} with its services {}: move them to the other node first \
                 (tandem switchover), then {what}; nothing was changed",
                st.role, st.resources
            ))),
            Reply::Refused(r) => Err(r),
            other => Err(Refusal::Failed(format!(
                "unexpected status answer {other:?}"
            ))),
        }
    }

    async fn cluster_call(&self, call: ClusterCall, name: &str) -> Handled {
        match &self.cluster {
            Some(c) => one(c.call(call).await),
            None => refused(Refusal::RecoveryMode(name.to_owned())),
        }
    }

    async fn admin_reply(
        &self,
        f: impl FnOnce(&Admin) -> Result<Reply, Refusal> + Send + 'static,
    ) -> Handled {
        match self.blocking(f).await.and_then(|r| r) {
            Ok(r) => one(r),
            Err(r) => refused(r),
        }
    }

    /// Puts a committed change in effect in the cluster loop, from a blocking thread.
    fn reloader(&self) -> impl Fn() -> Result<(), String> + Send + 'static {
        let ask = self.cluster.as_ref().map(|c| Arc::clone(&c.ask));
        move || {
            let Some(ask) = &ask else {
                return Err("clusterd runs in recovery mode".to_owned());
            };
            match ask(ClusterCall::ReloadConfig).blocking_recv() {
                Ok(Reply::Done) => Ok(()),
                Ok(Reply::Refused(r)) => Err(r.to_string()),
                Ok(other) => Err(format!("unexpected answer {other:?}")),
                Err(_) => Err("the cluster loop has ended".to_owned()),
            }
        }
    }

    fn after_change(&self, r: Handled) -> Handled {
        if let Handled::One(Reply::Changed(c), _) = &r
            && c.sessions_ended
        {
            self.end_sessions();
        }
        r
    }

    async fn login(&self, user: &str, password: String, source: IpAddr) -> Reply {
        let now = (self.now)();
        let begun = match self.throttle.lock() {
            Ok(mut t) => t.begin(now, source),
            Err(_) => return Reply::Refused(Refusal::Failed("login throttle lost".into())),
        };
        if let Err(r) = begun {
            return Reply::LoginRefused(r);
        }
        // Always check the password, also for a wrong user name: the answer takes as
        // long either way.
        let user_ok = password::same(user, ADMIN_USER);
        let opens = self
            .blocking(move |a| password::opens(&a.store, &password))
            .await
            .unwrap_or(false);
        let now = (self.now)();
        if user_ok && opens {
            if let Ok(mut t) = self.throttle.lock() {
                t.succeeded(source);
            }
            let kind = if self.admin.configured() {
                SessionKind::Cluster
            } else {
                SessionKind::Recovery
            };
            let Ok(mut s) = self.sessions.lock() else {
                return Reply::Refused(Refusal::Failed("sessions lost".into()));
            };
            return Reply::LoggedIn(s.open(now, kind, source, &random32(), &random32()));
        }
        match self.throttle.lock() {
            Ok(t) => Reply::LoginRefused(t.wrong(now, source)),
            Err(_) => Reply::Refused(Refusal::Failed("login throttle lost".into())),
        }
    }

    async fn activate(
        &self,
        token: Option<&Token>,
        choice: DataChoice,
        confirm_name: String,
    ) -> Handled {
        let Some(checked) = self.checked(token) else {
            return refused(Refusal::NoArchive);
        };
        if self.admin.activation.running() {
            return refused(Refusal::Running);
        }
        let name = checked.summary.cluster_name.clone();
        if choice == DataChoice::DestroyData && confirm_name.trim() != name {
            return refused(Refusal::NameMismatch { expected: name });
        }
        self.admin_reply(move |a| {
            archive::stage(&a.store, &checked)?;
            a.activation
                .start(choice)
                .map(|()| Reply::ActivationStarted)
        })
        .await
    }

    async fn export(&self, passphrase: String) -> Handled {
        // R3.1: only while both nodes run normally, so the archive holds what both use.
        match self.cluster_call(ClusterCall::Status, "export").await {
            Handled::One(Reply::Status(s), _)
                if s.peer.alive && s.peer.config_matches != Some(false) => {}
            Handled::One(Reply::Status(_), _) => return refused(Refusal::PeerNotNormal),
            other => return other,
        }
        match self
            .blocking(move |a| archive::export(&a.store, &passphrase, a.work_factor))
            .await
            .and_then(|r| r)
        {
            Ok((file_name, bytes)) => Handled::One(Reply::Exported { file_name }, bytes),
            Err(r) => refused(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use tandem_api::{ChangeRefusal, JobState, LockoutScope, LoginRefusal, Secret, SettingsChange};

    use super::*;
    use crate::admin::activation::Engine;

    const WEB: u32 = 101;

    fn line(token: Option<&Token>, request: Request) -> RequestLine {
        RequestLine {
            version: tandem_api::API_VERSION,
            token: token.cloned(),
            payload: 0,
            request,
        }
    }

    fn reply(h: Handled) -> Reply {
        match h {
            Handled::One(r, _) => r,
            Handled::Events { .. } => panic!("events"),
        }
    }

    /// A cluster loop that takes every reload and has a peer running normally.
    fn loop_double() -> ClusterLink {
        ClusterLink {
            ask: Arc::new(|call| {
                let (tx, rx) = oneshot::channel();
                let _ = tx.send(match call {
                    ClusterCall::ReloadConfig => Reply::Done,
                    other => Reply::Refused(Refusal::Failed(format!("{other:?} not simulated"))),
                });
                rx
            }),
            mail: Arc::new(|call| {
                Reply::Refused(Refusal::Failed(format!("{call:?} not simulated")))
            }),
            ..ClusterLink::ended("node1")
        }
    }

    struct Clock(Arc<Mutex<Instant>>);

    impl Clock {
        fn step(&self, d: Duration) {
            *self.0.lock().unwrap() += d;
        }
    }

    fn service(store: &Path, cluster: Option<ClusterLink>) -> (Arc<Service>, Clock) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let n = Arc::clone(&now);
        let engine = Engine::Sim {
            delay: Duration::from_millis(100),
            fail: false,
        };
        let mut admin = Admin::new(store.to_owned(), tandem_api::NodeId::Node1, engine);
        admin.work_factor = 10;
        let s = Service::with_clock(admin, cluster, Box::new(move || *n.lock().unwrap()));
        (Arc::new(s), Clock(now))
    }

    fn configured(dir: &Path) -> String {
        let (cfg, pw) =
            tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
        let s = tandem_config::Store::open(dir).unwrap();
        s.stage(&cfg).unwrap();
        s.commit().unwrap();
        pw.admin
    }

    async fn login(s: &Arc<Service>, pw: &str, from: u8) -> Reply {
        let req = Request::Login {
            user: "admin".into(),
            password: Secret::from(pw),
            source: IpAddr::from([192, 168, 100, from]),
        };
        reply(s.handle(WEB, line(None, req), Vec::new()).await)
    }

    async fn logged_in(s: &Arc<Service>, pw: &str) -> SessionInfo {
        match login(s, pw, 100).await {
            // The session remembers where its login came from (shown as who
            // switched the support tunnel on).
            Reply::LoggedIn(i) if i.source == Some(IpAddr::from([192, 168, 100, 100])) => i,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_web_process_needs_a_session_root_does_not() {
        let dir = tempfile::tempdir().unwrap();
        configured(dir.path());
        let (s, _) = service(dir.path(), Some(loop_double()));
        let settings = |t: Option<&Token>| line(t, Request::Settings);
        assert_eq!(
            reply(s.handle(WEB, settings(None), Vec::new()).await),
            Reply::Refused(Refusal::NoSession)
        );
        let forged = Token::from_bytes(&[1; 32]);
        assert_eq!(
            reply(s.handle(WEB, settings(Some(&forged)), Vec::new()).await),
            Reply::Refused(Refusal::NoSession)
        );
        assert!(matches!(
            reply(s.handle(0, settings(None), Vec::new()).await),
            Reply::Settings(_)
        ));
        assert_eq!(
            reply(
                s.handle(WEB, line(None, Request::LiftLockout), Vec::new())
                    .await
            ),
            Reply::Refused(Refusal::RootOnly)
        );
        // Open requests need nothing.
        assert!(matches!(
            reply(s.handle(WEB, line(None, Request::Mode), Vec::new()).await),
            Reply::Mode(Mode {
                configured: true,
                recovery: false
            })
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn twenty_concurrent_wrong_logins_count_as_twenty_and_lock_out() {
        let dir = tempfile::tempdir().unwrap();
        let (s, clock) = service(dir.path(), None);
        let tries: Vec<_> = (0..20)
            .map(|_| {
                let s = Arc::clone(&s);
                tokio::spawn(async move { login(&s, "wrong password", 100).await })
            })
            .collect();
        let mut waits = 0;
        for t in tries {
            match t.await.unwrap() {
                Reply::LoginRefused(LoginRefusal::Wait { .. }) => waits += 1,
                Reply::LoginRefused(_) => {}
                other => panic!("{other:?}"),
            }
        }
        // One was checked; the others came too early (or once locked out, were locked).
        assert!(waits >= 1, "attempts at once are throttled");
        let lockout = match reply(
            s.handle(
                WEB,
                line(None, Request::LoginLockout { source: None }),
                Vec::new(),
            )
            .await,
        ) {
            Reply::Lockout(Some(l)) => l,
            other => panic!("{other:?}"),
        };
        assert_eq!(lockout.failures, 20);
        assert_eq!(
            lockout.scope,
            LockoutScope::Address(IpAddr::from([192, 168, 100, 100]))
        );
        // Even the right password does not open while locked out ...
        clock.step(Duration::from_secs(120));
        assert!(matches!(
            login(&s, "relation", 100).await,
            Reply::LoginRefused(LoginRefusal::Locked(_))
        ));
        // ... until the node's console (root) lifts it.
        assert_eq!(
            reply(
                s.handle(0, line(None, Request::LiftLockout), Vec::new())
                    .await
            ),
            Reply::Done
        );
        assert!(matches!(
            login(&s, "relation", 100).await,
            Reply::LoggedIn(_)
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sessions_end_after_their_lifetime_and_at_logout() {
        let dir = tempfile::tempdir().unwrap();
        let (s, clock) = service(dir.path(), None);
        let a = logged_in(&s, "relation").await;
        assert_eq!(a.kind, SessionKind::Recovery);
        let check = |t: &Token| line(Some(t), Request::Session);
        for _ in 0..16 {
            clock.step(Duration::from_secs(29 * 60));
            assert!(matches!(
                reply(s.handle(WEB, check(&a.token), Vec::new()).await),
                Reply::Session(_)
            ));
        }
        clock.step(Duration::from_secs(29 * 60));
        assert_eq!(
            reply(s.handle(WEB, check(&a.token), Vec::new()).await),
            Reply::Refused(Refusal::NoSession),
            "eight hours at most, however busy"
        );
        let b = logged_in(&s, "relation").await;
        reply(
            s.handle(WEB, line(Some(&b.token), Request::Logout), Vec::new())
                .await,
        );
        assert_eq!(
            reply(s.handle(WEB, check(&b.token), Vec::new()).await),
            Reply::Refused(Refusal::NoSession)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_password_change_needs_the_current_one_and_ends_every_session() {
        let dir = tempfile::tempdir().unwrap();
        let pw = configured(dir.path());
        let (s, _) = service(dir.path(), Some(loop_double()));
        let a = logged_in(&s, &pw).await;
        let other = logged_in(&s, &pw).await;
        assert_eq!(a.kind, SessionKind::Cluster);
        let rev = tandem_config::Store::open(dir.path())
            .unwrap()
            .current()
            .unwrap()
            .unwrap()
            .cluster
            .revision;
        let change = |current: &str| Request::ChangeSettings {
            change: Box::new(SettingsChange::AdminPassword {
                current: Secret::from(current),
                new: Secret::from("a new password 1"),
                confirm: Secret::from("a new password 1"),
            }),
            revision: rev,
            this_node_only: true,
        };
        match reply(
            s.handle(WEB, line(Some(&a.token), change("wrong")), Vec::new())
                .await,
        ) {
            Reply::ChangeRefused(ChangeRefusal::Fields(f)) => assert_eq!(f[0].field, "current"),
            other => panic!("{other:?}"),
        }
        match reply(
            s.handle(WEB, line(Some(&a.token), change(&pw)), Vec::new())
                .await,
        ) {
            Reply::Changed(c) => assert!(c.sessions_ended, "{c:?}"),
            other => panic!("{other:?}"),
        }
        for t in [&a.token, &other.token] {
            assert_eq!(
                reply(
                    s.handle(WEB, line(Some(t), Request::Session), Vec::new())
                        .await
                ),
                Reply::Refused(Refusal::NoSession)
            );
        }
        assert!(matches!(
            login(&s, "a new password 1", 100).await,
            Reply::LoggedIn(_)
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_archive_is_checked_once_and_activated_from_the_sessions_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = service(dir.path(), None);
        let (cfg, _) =
            tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
        let bytes = tandem_config::archive::export(
            &cfg,
            &tandem_config::archive::ExportOptions {
                passphrase: Some("archive pass".into()),
                created_unix: 1_700_000_000,
                work_factor: 10,
            },
        )
        .unwrap();
        let a = logged_in(&s, "relation").await;
        let t = Some(&a.token);
        // A cluster request is not for a recovery session.
        assert_eq!(
            reply(s.handle(WEB, line(t, Request::Settings), Vec::new()).await),
            Reply::Refused(Refusal::WrongSession)
        );
        let activate = |name: &str| Request::Activate {
            choice: DataChoice::DestroyData,
            confirm_name: name.into(),
        };
        assert_eq!(
            reply(s.handle(WEB, line(t, activate("x")), Vec::new()).await),
            Reply::Refused(Refusal::NoArchive)
        );
        let mut check = line(
            t,
            Request::CheckArchive {
                passphrase: Some(Secret::from("archive pass")),
            },
        );
        check.payload = bytes.len() as u64;
        match reply(s.handle(WEB, check, bytes).await) {
            Reply::Checked(c) => assert_eq!(c.cluster_name, cfg.cluster.name.to_string()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            reply(s.handle(WEB, line(t, activate("not-it")), Vec::new()).await),
            Reply::Refused(Refusal::NameMismatch { .. })
        ));
        assert!(!dir.path().join("pending.toml").exists());
        let name = cfg.cluster.name.to_string();
        assert_eq!(
            reply(s.handle(WEB, line(t, activate(&name)), Vec::new()).await),
            Reply::ActivationStarted
        );
        let start = Instant::now();
        let view = loop {
            match reply(
                s.handle(WEB, line(t, Request::Activation), Vec::new())
                    .await,
            ) {
                Reply::Activation(v) if v.state == JobState::Running => {}
                Reply::Activation(v) => break v,
                other => panic!("{other:?}"),
            }
            assert!(start.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(view.state, JobState::Succeeded, "{view:?}");
        assert!(tandem_config::store::is_configured(dir.path()));
        // Configured now: recovery requests are closed.
        let check = line(t, Request::CheckArchive { passphrase: None });
        assert_eq!(
            reply(s.handle(WEB, check, Vec::new()).await),
            Reply::Refused(Refusal::Configured)
        );
    }

    /// The VE backup requests end to end on a stopped VE: root starts a backup, follows
    /// the job, lists the file (not copied off: no target), restores it to a new ID;
    /// the web process needs a session.
    #[tokio::test(flavor = "current_thread")]
    async fn ve_backups_are_typed_requests_with_a_job_to_follow() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::create_dir_all(data.join("private/905/etc")).unwrap();
        std::fs::write(data.join("private/905/etc/hostname"), "ve905\n").unwrap();
        let confs = dir.path().join("ves");
        std::fs::create_dir_all(&confs).unwrap();
        std::fs::write(
            confs.join("ve-905.conf"),
            "HOSTNAME=\"ve905\"\nIP_ADDRESS=\"198.18.0.5\"\n",
        )
        .unwrap();
        let pw = configured(&store);
        let now = Arc::new(Mutex::new(Instant::now()));
        let n = Arc::clone(&now);
        let engine = Engine::Sim {
            delay: Duration::from_millis(100),
            fail: false,
        };
        let mut admin = Admin::new(store.clone(), tandem_api::NodeId::Node1, engine);
        admin.ve = crate::admin::ve::VeSite::at(&data, confs.clone(), "/bin/false".into());
        // `/` is a mount point everywhere: the data area counts as mounted.
        admin.ve.data_mount = "/".into();
        let s = Arc::new(Service::with_clock(
            admin,
            Some(loop_double()),
            Box::new(move || *n.lock().unwrap()),
        ));
        let ask = |uid: u32, r: Request| {
            let s = Arc::clone(&s);
            async move { reply(s.handle(uid, line(None, r), Vec::new()).await) }
        };
        assert_eq!(
            ask(WEB, Request::VeBackup { id: 905 }).await,
            Reply::Refused(Refusal::NoSession)
        );
        let wait = || async {
            loop {
                match ask(0, Request::VeBackupJob).await {
                    Reply::VeJob(v) if v.state == JobState::Running => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Reply::VeJob(v) => return v,
                    other => panic!("{other:?}"),
                }
            }
        };
        assert!(matches!(
            ask(0, Request::VeBackup { id: 999 }).await,
            Reply::Refused(Refusal::Failed(m)) if m.contains("VE 999 does not exist")
        ));
        assert_eq!(
            ask(0, Request::VeBackup { id: 905 }).await,
            Reply::VeJobStarted
        );
        let v = wait().await;
        assert_eq!(v.state, JobState::Succeeded, "{v:?}");
        let r = v.report.unwrap();
        assert_eq!(
            (r.freeze_us, &r.copied_to, &r.copy_error),
            (None, &None, &None)
        );
        let Reply::VeBackups(list) = ask(0, Request::VeBackups).await else {
            panic!("no list");
        };
        assert_eq!(list.files.len(), 1);
        assert_eq!(list.files[0].copied_to, None);
        assert!(list.target.is_none() && list.client_key.starts_with("ssh-ed25519 "));
        let file = list.files[0].name.clone();
        assert!(matches!(
            ask(
                0,
                Request::VeRestore {
                    file: "../x".into(),
                    to: None
                }
            )
            .await,
            Reply::Refused(Refusal::Failed(_))
        ));
        // A session names backups of the backup directory only, not paths of the node.
        let session = logged_in(&s, &pw).await;
        let from_web = line(
            Some(&session.token),
            Request::VeRestore {
                file: "/etc/shadow".into(),
                to: Some(907),
            },
        );
        assert!(matches!(
            reply(s.handle(WEB, from_web, Vec::new()).await),
            Reply::Refused(Refusal::Failed(m)) if m.contains("root on the node")
        ));
        assert_eq!(
            ask(
                0,
                Request::VeRestore {
                    file,
                    to: Some(906)
                }
            )
            .await,
            Reply::VeJobStarted
        );
        let v = wait().await;
        assert_eq!(v.state, JobState::Succeeded, "{v:?}");
        assert_eq!(v.report.unwrap().restored_to, Some(906));
        assert_eq!(
            std::fs::read_to_string(data.join("private/906/etc/hostname")).unwrap(),
            "ve905\n"
        );
        assert!(confs.join("ve-906.conf").exists());
    }
}
