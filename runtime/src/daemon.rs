//! clusterd's event loop: the IO shell around [`tandem_core::Core`].
//!
//! One current-thread tokio runtime owns the core. UDP sockets are tokio sockets; the
//! serial port (blocking, serialport crate) has a reader and a writer thread; ICMP
//! replies are read on the loop's thread like the UDP frames. Everything inbound
//! reaches the loop through one channel, so the core is only ever touched from the
//! loop. The loop's timer is a timerfd (see [`Timer`]).

use std::io::{Read, Write};
use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tandem_api::{
    CountersJson, FactsJson, PathJson, PeerJson, PingJson, Refusal, Reply, StatusJson,
};
use tandem_core::{
    ClusterKey, Core, Event, Input, Instant, Output, PathId, Reason, Rejection, Role,
};
use tandem_notify::UnixSecs;
use tandem_proto::SerialDeframer;
use tokio::net::UdpSocket;
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};

use crate::admin::Admin;
use crate::alerts::{Alert, Alerts};
use crate::confsync::SyncSetup;
use crate::control::{ClusterCall, ClusterLink, Service};
use crate::events::EventFeed;
use crate::hw::{HwConfig, HwEvent};
use crate::mail::{MailSettings, Mailer};
use crate::net::Pinger;
use crate::resources::Chain;
use crate::settings::Settings;

/// Frames queued for the serial writer before new ones are dropped (a frozen cable
/// must not block the loop).
const SERIAL_QUEUE: usize = 4;

enum In {
    Frame {
        path: PathId,
        bytes: Vec<u8>,
    },
    Noise(PathId),
    PingReply(usize),
    ChainUp(Result<(), String>),
    ChainDown(Result<(), String>),
    /// A fence ended: the BMC's answer, or why it failed (and whether it ran out of time).
    Fenced(Result<String, (bool, String)>),
    Announced(Result<(), String>),
    Control(ClusterCall, oneshot::Sender<Reply>),
    Transport(String),
    /// The replication device's state, every second (`None`: not set up or unreadable).
    Replication(Option<crate::drbd::DeviceStatus>),
    /// A configuration was committed on this node (by the other node's offer).
    ConfigCommitted,
    /// DRBD was told to take this node's copy as current (operator's force-primary).
    Forced(Result<(), String>, oneshot::Sender<Reply>),
    /// This node's part of a split-brain resolution ran (what was done, or why not).
    Resolved(Result<String, String>, oneshot::Sender<Reply>),
}

struct EventHub {
    feed: Arc<EventFeed>,
    /// What becomes e-mail, and the mail thread; `None` when clusterd runs without
    /// e-mail settings at all.
    mail: Option<Mutex<MailState>>,
}

/// The e-mail side of the hub.
struct MailState {
    alerts: Alerts,
    /// The thread, once there is somebody to mail.
    mailer: Option<Mailer>,
    settings: MailSettings,
    /// Where the thread reports its own trouble.
    reports: mpsc::UnboundedSender<String>,
}

impl MailState {
    fn start(&mut self) {
        if self.mailer.is_some() || !crate::mail::has_recipients(&self.settings.notification) {
            return;
        }
        let reports = self.reports.clone();
        match crate::mail::start(
            self.settings.clone(),
            Box::new(move |text| {
                let _ = reports.send(text);
            }),
        ) {
            Ok(m) => self.mailer = m,
            Err(e) => {
                let _ = self.reports.send(format!(
                    "e-mail alerts are off: {}",
                    crate::error_chain(&*e)
                ));
            }
        }
    }
}

impl EventHub {
    /// Publishes an event and, when it deserves one, queues an e-mail about it. Never
    /// waits for the mail thread.
    fn alert(&self, kind: &str, text: String, alert: &Alert) {
        if let Some(mail) = &self.mail {
            let at = UnixSecs(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            );
            if let Ok(mut m) = mail.lock() {
                let m = &mut *m;
                if let Some(mailer) = &m.mailer
                    && crate::mail::has_recipients(&m.settings.notification)
                    && let Some(e) = m.alerts.mail(alert, &text, at)
                {
                    mailer.queue(e);
                }
            }
        }
        self.publish(kind, text);
    }

    /// New notification settings (a configuration change): the mail thread starts
    /// when there was nobody to mail before, or sends with the new ones.
    fn set_notification(&self, n: &tandem_config::schema::NotificationConfig) {
        if let Some(mail) = &self.mail
            && let Ok(mut m) = mail.lock()
        {
            m.settings.notification = n.clone();
            match &m.mailer {
                Some(mailer) => mailer.set_notification(n.clone()),
                None => m.start(),
            }
        }
    }

    fn publish(&self, kind: &str, text: String) {
        self.feed.publish(kind, text);
    }
}

fn describe(e: &Event) -> (&'static str, String) {
    match e {
        Event::PathUp(p) => ("path_up", format!("{} heartbeat path up", p.name())),
        Event::PathLate(p) => ("path_late", format!("{} heartbeat path late", p.name())),
        Event::PathDown(p) => ("path_down", format!("{} heartbeat path down", p.name())),
        Event::PeerAlive => ("peer_alive", "peer heard".into()),
        Event::PeerDead => ("peer_dead", "peer silent on every enabled path".into()),
        Event::PeerRestarted => ("peer_restarted", "peer restarted".into()),
        Event::RoleChanged { from, to, reason } => (
            "role_changed",
            format!(
                "{} -> {}{}",
                from.name(),
                to.name(),
                reason.map_or(String::new(), |r: Reason| format!(" ({})", r.text()))
            ),
        ),
        Event::Waiting(w) => ("waiting", w.text().into()),
        Event::PingReach { reach, total } => (
            "ping_reach",
            format!("{reach} of {total} ping nodes reachable"),
        ),
        Event::ConfigMismatch => (
            "config_mismatch",
            "peer runs a different configuration".into(),
        ),
        Event::SplitBrain { survivor } => (
            "split_brain",
            format!(
                "both nodes were active; {} stays active by policy",
                survivor.name()
            ),
        ),
        Event::FrameRejected { path, why } => (
            "frame_rejected",
            format!(
                "frame on {} path refused: {}",
                path.name(),
                match why {
                    Rejection::Decode(d) => d.to_string(),
                    Rejection::OwnFrame => "own frame".into(),
                    Rejection::WrongPath(p) => format!("marked for {} path", p.name()),
                    Rejection::Replay => "replayed or stale".into(),
                }
            ),
        ),
        Event::SwitchoverStarted => ("switchover", "switchover started".into()),
        Event::HandoverNotTaken => (
            "handover_not_taken",
            "peer did not take over after handover".into(),
        ),
        Event::ResourcesFailed => ("resources_failed", "resource chain failed".into()),
        Event::ReleaseFailed => (
            "release_failed",
            "resources could not be released: this node may still hold the data".into(),
        ),
        Event::FenceStarted => (
            "fence",
            "peer silent: powering it off through its BMC before taking over".into(),
        ),
        Event::Fenced => ("fenced", "peer powered off".into()),
        Event::FenceFailed { peer, why } => (
            "fence_failed",
            format!(
                "{} silent and could not be powered off: check it and confirm ({why})",
                peer.name()
            ),
        ),
        Event::FenceConfirmed => (
            "fence_confirmed",
            "operator confirmed the silent peer is down".into(),
        ),
        Event::CopyStale => (
            "replication",
            "this node's copy of the data is stale: replication was lost while the other node kept running; it will not take over until the two nodes are connected and resynchronised (check the crossover cable)".into(),
        ),
    }
}

/// Real-time scheduling for the calling thread (`SCHED_FIFO` at the lowest priority):
/// on a node busy with its VEs, heartbeats still go out and deadlines are still
/// noticed on time, as no normal process can delay them. Threads and programs it
/// starts run as usual (`SCHED_RESET_ON_FORK`). Needs `CAP_SYS_NICE`.
pub(crate) fn realtime_thread() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the
    // calling thread.
    let r = unsafe {
        libc::sched_setscheduler(
            0,
            libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK,
            &raw const param,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The core's clock: CLOCK_MONOTONIC in microseconds since clusterd started.
struct Clock {
    base_ns: u64,
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}

impl Clock {
    fn start() -> Clock {
        Clock {
            base_ns: monotonic_ns(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(monotonic_ns().saturating_sub(self.base_ns) / 1000)
    }

    /// `at` on CLOCK_MONOTONIC, for an absolute timer.
    fn timespec(&self, at: Instant) -> rustix::time::Timespec {
        let ns = self
            .base_ns
            .saturating_add(at.as_micros().saturating_mul(1000));
        rustix::time::Timespec {
            tv_sec: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
            tv_nsec: i64::try_from(ns % 1_000_000_000).unwrap_or(0),
        }
    }
}

/// The loop's timer: a timerfd on CLOCK_MONOTONIC, armed at the core's next deadline
/// to the microsecond (tokio's timers round up to whole milliseconds, and its poll
/// waits in milliseconds again), and re-armed only when that deadline moves.
struct Timer {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    armed: Option<Instant>,
}

impl Timer {
    fn new() -> std::io::Result<Timer> {
        use rustix::time::{TimerfdClockId, TimerfdFlags, timerfd_create};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        Ok(Timer {
            fd: crate::net::register_readable(fd)?,
            armed: None,
        })
    }

    fn arm(&mut self, clock: &Clock, at: Instant) {
        use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
        if self.armed == Some(at) {
            return;
        }
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: clock.timespec(at),
        };
        // An absolute time in the past expires at once, which is what a due deadline
        // needs; the call itself cannot fail on a valid timerfd and value.
        if timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::ABSTIME, &spec).is_ok() {
            self.armed = Some(at);
        }
    }

    /// Until the armed deadline has passed.
    async fn expired(&mut self) {
        loop {
            let Ok(mut ready) = self.fd.readable().await else {
                // Not reachable with a registered timerfd; never spin on it.
                return std::future::pending().await;
            };
            let mut count = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut count) {
                Ok(_) => {
                    // Read: nothing more until the next expiry, which the kernel
                    // reports afresh.
                    ready.clear_ready();
                    self.armed = None;
                    return;
                }
                Err(_) => ready.clear_ready(),
            }
        }
    }
}

struct Udp {
    sock: Arc<UdpSocket>,
    peer: SocketAddrV4,
}

/// Runs clusterd until `shutdown` completes; on shutdown an active node releases its
/// resources first. With `mail`, the events of R8.2 are also sent as e-mail. With
/// `sync`, configuration changes are exchanged with the other node (see
/// [`crate::confsync`]) and put in effect here. The control API ([`crate::control`])
/// serves `admin`'s privileged actions beside the cluster's state.
///
/// # Errors
/// Start-up failures (sockets, serial device, control socket, mail outbox), with
/// context.
pub async fn run(
    settings: Settings,
    chain: Chain,
    hw: HwConfig,
    mail: Option<MailSettings>,
    sync: Option<SyncSetup>,
    admin: Admin,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let realtime = realtime_thread();
    let clock = Clock::start();
    let mut timer = Timer::new().context("creating the loop's timer")?;
    // Stored durably here, before the core exists and so before any frame is sent.
    let wall_micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let generation = crate::generation::next(&settings.state_dir, wall_micros)
        .context("choosing the boot generation")?;
    let key = ClusterKey::new(&settings.key).context("cluster key")?;
    let mut core =
        Core::new(clock.now(), settings.params(generation), key).context("heartbeat timings")?;
    if settings.replication.is_none() {
        // No replicated data area on this node: there is no copy that could be stale.
        // With one, DRBD's state decides (In::Replication).
        core.handle(clock.now(), Input::DataGood(true));
    }
    // Frames of a run of the peer older than the last one heard are replays.
    let mut peer_generation = crate::generation::peer_floor(&settings.state_dir)
        .context("reading the peer's boot generation")?;
    if let Some(g) = peer_generation {
        core.handle(clock.now(), Input::PeerGenerationFloor(g));
    }

    let (tx, mut rx) = mpsc::unbounded_channel::<In>();
    // The mail thread reports its own trouble as events; those are never mailed.
    let (mail_reports_tx, mut mail_reports) = mpsc::unbounded_channel::<String>();
    let mail = mail.map(|ms| {
        let mut m = MailState {
            alerts: Alerts::new(settings.node),
            mailer: None,
            settings: ms,
            reports: mail_reports_tx,
        };
        m.start();
        Mutex::new(m)
    });
    let hub = Arc::new(EventHub {
        feed: Arc::new(EventFeed::new(settings.node.name())),
        mail,
    });
    if let Err(e) = realtime {
        hub.publish(
            "warning",
            format!("running without real-time priority ({e}): a busy node may delay heartbeats"),
        );
    }
    let mail_hub = Arc::clone(&hub);
    tokio::spawn(async move {
        while let Some(text) = mail_reports.recv().await {
            mail_hub.publish("mail", text);
        }
    });

    // Started before any socket so a bad scenario file changes nothing. Hardware
    // polling runs on its own thread; its events join the same stream and its
    // readings are served from this snapshot without involving the loop.
    let hw_snapshot = Arc::new(Mutex::new(crate::hw::initial_snapshot(&hw.board)));
    let hw_hub = Arc::clone(&hub);
    let _hw_poller = crate::hw::start(
        &hw,
        Arc::clone(&hw_snapshot),
        Box::new(move |e: HwEvent| match e.change {
            Some(c) => hw_hub.alert(
                e.kind,
                e.text,
                &Alert::Hardware {
                    kind: e.kind.to_owned(),
                    name: c.name,
                    old: c.from,
                    new: c.to,
                },
            ),
            None => hw_hub.publish(e.kind, e.text),
        }),
    )
    .context("starting hardware polling")?;

    // The replicated data area: its state is "data known good" for the core, a line
    // in the status and an event when it changes (R5.3).
    let replication_line = Arc::new(Mutex::new(None::<String>));
    if let Some(repl) = settings.replication.clone() {
        let (rtx, rhub, line) = (tx.clone(), Arc::clone(&hub), Arc::clone(&replication_line));
        tokio::spawn(async move {
            let mut last: Option<String> = None;
            loop {
                let r = repl.clone();
                let st = tokio::task::spawn_blocking(move || r.status()).await;
                let (device, text, state) = match st {
                    Ok(Ok(Some(s))) => {
                        let (text, state) = (
                            crate::replication::summary(&s),
                            crate::replication::state_line(&s),
                        );
                        (Some(s), text, state)
                    }
                    Ok(Ok(None)) => (None, "not set up".to_owned(), "not set up".to_owned()),
                    Ok(Err(e)) => (None, format!("unreadable: {e:#}"), "unreadable".to_owned()),
                    Err(_) => return,
                };
                if let Ok(mut l) = line.lock() {
                    *l = Some(text);
                }
                // Resync progress alone is no event; a change of state is.
                if last.as_ref() != Some(&state) {
                    rhub.alert(
                        "replication",
                        state.clone(),
                        &Alert::Replication {
                            old: last.clone(),
                            new: state.clone(),
                        },
                    );
                    last = Some(state);
                }
                // Every second: whether the data is good also depends on
                // when the peer was last heard.
                if rtx.send(In::Replication(device)).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    let mut udp: [Option<Udp>; 3] = [None, None, None];
    for (path, cfg) in [
        (PathId::Internal, settings.internal),
        (PathId::External, settings.external),
    ] {
        let Some(cfg) = cfg else { continue };
        let sock = UdpSocket::bind(SocketAddrV4::new(cfg.local, settings.udp_port))
            .await
            .with_context(|| {
                format!(
                    "binding {} heartbeat socket {}:{}",
                    path.name(),
                    cfg.local,
                    settings.udp_port
                )
            })?;
        let sock = Arc::new(sock);
        let rsock = Arc::clone(&sock);
        let rtx = tx.clone();
        tokio::spawn(async move {
            // Larger than any frame so oversized datagrams are seen as such.
            let mut buf = vec![0u8; 2048];
            loop {
                match rsock.recv_from(&mut buf).await {
                    Ok((n, _)) => {
                        let bytes = buf[..n].to_vec();
                        if rtx.send(In::Frame { path, bytes }).is_err() {
                            return;
                        }
                    }
                    // ICMP errors from a peer that is down surface here; keep going.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
        udp[path.index()] = Some(Udp {
            sock,
            peer: SocketAddrV4::new(cfg.peer, settings.udp_port),
        });
    }

    let serial_tx = match &settings.serial {
        Some(s) => Some(start_serial(&s.device, s.baud, tx.clone())?),
        None => None,
    };

    let mut pinger = if settings.ping_nodes.is_empty() {
        None
    } else {
        let ptx = tx.clone();
        Some(
            Pinger::start(settings.ping_nodes.clone(), move |i| {
                ptx.send(In::PingReply(i)).is_ok()
            })
            .context("opening the ICMP socket for ping nodes")?,
        )
    };

    let listener = crate::control::bind(&settings.control, settings.control_group)?;
    let link = {
        let (tx, sync) = (tx.clone(), sync.clone());
        ClusterLink {
            ask: Arc::new(move |call| {
                let (otx, orx) = oneshot::channel();
                match call {
                    // Facts wait for the other node: not in the loop.
                    ClusterCall::Facts => {
                        let (tx, sync) = (tx.clone(), sync.clone());
                        tokio::spawn(async move {
                            let _ = otx.send(facts(sync, &tx).await);
                        });
                    }
                    other => {
                        let _ = tx.send(In::Control(other, otx));
                    }
                }
                orx
            }),
            events: Arc::clone(&hub.feed),
            hw: Arc::clone(&hw_snapshot),
        }
    };
    let service = Arc::new(Service::new(admin, Some(link)));
    let bad_requests = Arc::clone(&service.bad_requests);
    tokio::spawn(crate::control::serve(listener, Arc::clone(&service)));

    let mut running_cfg = match &sync {
        Some(setup) => Some(committed_config(setup)?),
        None => None,
    };
    if let Some(fw) = &settings.firewall {
        let cfg = running_cfg.as_ref().unwrap_or(&fw.initial);
        put_firewall_in_effect(fw, cfg, &hub);
    }
    if let Some(setup) = &sync {
        start_config_exchange(setup.clone(), tx.clone(), Arc::clone(&hub)).await;
    }

    let chain_names = chain.names();
    let chain = Arc::new(AsyncMutex::new(chain));
    hub.publish(
        "started",
        format!(
            "clusterd {} started, generation {generation}",
            settings.node.name()
        ),
    );
    for w in core.status(clock.now()).warnings {
        if w.contains("disabled") {
            hub.publish("warning", w);
        }
    }

    tokio::pin!(shutdown);
    // Set when a shutdown hands the services over: the loop runs on until the peer
    // holds them (or this instant), so the peer takes over from a clean release
    // instead of from silence, which would make it fence this node.
    let mut leaving_until: Option<Instant> = None;
    // A DRBD split brain stays announced until the replication connects again, also
    // across restarts.
    let split_brain_marker = settings.state_dir.join("split-brain");
    let mut split_brain = split_brain_marker.exists();
    // The operator asked for a resolution on this node (else DRBD's own after-sb
    // policy resolved it when the nodes connect again).
    let mut split_brain_resolving = false;
    loop {
        if let Some(until) = leaving_until {
            let now = clock.now();
            let st = core.status(now);
            let peer_holds = st.peer.role.is_some_and(Role::holds_resources);
            if now >= until || (st.role == Role::Passive && peer_holds) {
                break;
            }
        }
        while let Some(o) = core.poll_output() {
            match o {
                Output::Transmit { path, frame } => match path {
                    PathId::Serial => {
                        if let Some(stx) = &serial_tx {
                            // Full queue: the cable is stuck; losing a heartbeat is
                            // what a stuck cable means.
                            let _ = stx.try_send(frame);
                        }
                    }
                    _ => {
                        if let Some(u) = &udp[path.index()] {
                            let _ = u.sock.try_send_to(&frame, u.peer.into());
                        }
                    }
                },
                Output::Ping { index } => {
                    if let Some(p) = pinger.as_mut() {
                        p.send(index);
                    }
                }
                Output::Acquire => {
                    let (c, t) = (Arc::clone(&chain), tx.clone());
                    let h = Arc::clone(&hub);
                    tokio::spawn(async move {
                        let mut chain = c.lock().await;
                        let r = chain.acquire().await.map_err(|e| crate::error_chain(&e));
                        if r.is_ok() {
                            h.publish("acquired", format!("resources up in {}", chain.timings()));
                        }
                        drop(chain);
                        let _ = t.send(In::ChainUp(r));
                    });
                }
                Output::Release => {
                    let (c, t) = (Arc::clone(&chain), tx.clone());
                    let h = Arc::clone(&hub);
                    tokio::spawn(async move {
                        let mut chain = c.lock().await;
                        let r = chain.release().await.map_err(|e| crate::error_chain(&e));
                        h.publish("released", format!("resources down in {}", chain.timings()));
                        drop(chain);
                        let _ = t.send(In::ChainDown(r));
                    });
                }
                Output::Announce(why) => {
                    // The periodic refresh is routine: it would fill the event log.
                    if why != tandem_core::AnnounceReason::Refresh {
                        hub.publish("announce", why.text().into());
                    }
                    let (c, t) = (Arc::clone(&chain), tx.clone());
                    tokio::spawn(async move {
                        let r = c
                            .lock()
                            .await
                            .announce()
                            .await
                            .map_err(|e| crate::error_chain(&e));
                        let _ = t.send(In::Announced(r));
                    });
                }
                Output::Fence => match settings.fencing.as_ref() {
                    Some(f) => {
                        let fencer = f.fencer.clone();
                        hub.publish(
                            "fence",
                            format!(
                                "{} silent: powering it off through its BMC {} before taking over",
                                fencer.peer, fencer.addr
                            ),
                        );
                        let t = tx.clone();
                        tokio::spawn(async move {
                            // The fencer keeps its own bound; this one only guards against
                            // a thread that never returns.
                            let bound = fencer.timeout + Duration::from_secs(5);
                            let work = tokio::task::spawn_blocking(move || fencer.fence());
                            let r = match tokio::time::timeout(bound, work).await {
                                Ok(Ok(Ok(text))) => Ok(text),
                                Ok(Ok(Err(e))) => Err((e.timed_out(), crate::error_chain(&e))),
                                Ok(Err(e)) => Err((false, format!("the fence task failed: {e}"))),
                                Err(_) => {
                                    Err((true, "the fence did not end within its bound".into()))
                                }
                            };
                            let _ = t.send(In::Fenced(r));
                        });
                    }
                    None => core.handle(
                        clock.now(),
                        Input::FenceResult(tandem_core::FenceResult::Failed(
                            "no fencing device is configured",
                        )),
                    ),
                },
                Output::Outdate => {
                    if let Some(repl) = settings.replication.clone() {
                        let h = Arc::clone(&hub);
                        tokio::spawn(async move {
                            let text = match tokio::task::spawn_blocking(move || repl.outdate()).await {
                                Ok(Ok(())) => "this node's copy is recorded as outdated in DRBD's metadata: it is refused for primary, also after a restart, until it was resynchronised".to_owned(),
                                Ok(Err(e)) => format!("recording this node's copy as outdated failed: {}", crate::error_chain(&e)),
                                Err(e) => format!("recording this node's copy as outdated failed: {e}"),
                            };
                            h.publish("replication", text);
                        });
                    }
                }
                Output::Event(e) => {
                    let (kind, text) = describe(&e);
                    hub.alert(kind, text, &Alert::Core(e));
                }
            }
        }
        timer.arm(&clock, core.poll_timeout());
        tokio::select! {
            () = &mut shutdown, if leaving_until.is_none() => {
                let now = clock.now();
                if core.role() == Role::Active && core.switchover(now).is_ok() {
                    hub.publish("shutdown", "handing the services over to the peer before exit".into());
                    // Before the core would take the services back (handover not taken
                    // within deadtime of the release), and within init's grace.
                    leaving_until = Some(now.saturating_add(settings.deadtime));
                } else {
                    break;
                }
            }
            () = timer.expired() => core.handle_timeout(clock.now()),
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                let now = clock.now();
                match msg {
                    In::Frame { path, bytes } => {
                        core.handle(now, Input::Frame { path, bytes: &bytes });
                        if let Some(g) = core.peer_generation().filter(|g| peer_generation < Some(*g)) {
                            // Rare (the peer restarted): an fsync in the loop is fine.
                            if let Err(e) = crate::generation::keep_peer(&settings.state_dir, g) {
                                hub.publish("warning", format!("keeping the peer's boot generation: {}", crate::error_chain(&e)));
                            }
                            peer_generation = Some(g);
                        }
                    }
                    In::Noise(path) => core.handle(now, Input::LineNoise { path }),
                    In::PingReply(index) => core.handle(now, Input::PingReply { index }),
                    In::ChainUp(Ok(())) => core.handle(now, Input::ResourcesUp),
                    In::ChainUp(Err(e)) => {
                        hub.alert("resource_error", e, &Alert::ResourceError);
                        core.handle(now, Input::ResourcesFailed);
                    }
                    In::ChainDown(Ok(())) => core.handle(now, Input::ResourcesDown),
                    In::ChainDown(Err(e)) => {
                        // Not released: this node may still hold the data. The core keeps
                        // saying so; the peer takes over only after fencing this node.
                        hub.alert("resource_error", format!("release failed: {e}"), &Alert::ResourceError);
                        core.handle(now, Input::ReleaseFailed);
                    }
                    In::Fenced(Ok(text)) => {
                        hub.publish("fence", text);
                        core.handle(now, Input::FenceResult(tandem_core::FenceResult::PoweredOff));
                    }
                    In::Fenced(Err((timed_out, text))) => {
                        hub.publish("fence", text.clone());
                        let r = if timed_out {
                            tandem_core::FenceResult::TimedOut
                        } else {
                            tandem_core::FenceResult::Failed(&text)
                        };
                        core.handle(now, Input::FenceResult(r));
                    }
                    In::Announced(Ok(())) => {}
                    // Nothing for the core to decide: the addresses are held, only the
                    // routers' view may stay stale until their entries expire.
                    In::Announced(Err(e)) => hub.publish("resource_error", e),
                    In::Transport(text) => hub.publish("transport", text),
                    In::Replication(device) => {
                        // The core judges freshness from DRBD's state and from when the
                        // peer was last heard; an outdated copy stays refused because DRBD
                        // keeps the mark in its metadata.
                        let input = match &device {
                            Some(d) => Input::Replica(replica_of(d)),
                            None => Input::DataGood(false),
                        };
                        core.handle(now, input);
                        if split_brain && device.as_ref().is_some_and(|d| d.connection.is_linked()) {
                            split_brain = false;
                            let _ = std::fs::remove_file(&split_brain_marker);
                            let by = if std::mem::take(&mut split_brain_resolving) {
                                "by the operator's choice"
                            } else {
                                "by the replication's split-brain policy (replication.split-brain): the changes of the node it discarded since the split are gone"
                            };
                            hub.alert(
                                "split_brain",
                                format!("split brain of the replicated data resolved {by}; the two nodes are connected again (resynchronising)"),
                                &Alert::Replication {
                                    old: Some("split brain".into()),
                                    new: "connected".into(),
                                },
                            );
                        }
                    }
                    In::Resolved(r, reply) => {
                        let resp = match r {
                            Ok(text) => {
                                split_brain_resolving = true;
                                hub.publish("split_brain", text);
                                Reply::Done
                            }
                            Err(e) => Reply::Refused(Refusal::Failed(e)),
                        };
                        let _ = reply.send(resp);
                    }
                    In::Forced(r, reply) => {
                        let resp = match r.map_err(|e| format!("making this node's copy current failed: {e}")).and_then(|()| core.force_copy_good(now).map_err(|e| e.to_string())) {
                            Ok(()) => {
                                hub.publish(
                                    "replication",
                                    "the operator declared this node's copy the one to start from: it takes over (after fencing the other node, where configured); the other node's changes since the two parted are lost".into(),
                                );
                                Reply::Done
                            }
                            Err(e) => Reply::Refused(Refusal::Failed(e)),
                        };
                        let _ = reply.send(resp);
                    }
                    In::ConfigCommitted => {
                        if let Err(e) = reload_config(sync.as_ref(), &mut running_cfg, &mut core, now, &hub, &service, (settings.firewall.as_ref(), settings.sshd.as_ref())) {
                            hub.publish("config", e);
                        }
                    }
                    In::Control(call, reply) => {
                        let resp = match call {
                            ClusterCall::ReloadConfig => {
                                match reload_config(sync.as_ref(), &mut running_cfg, &mut core, now, &hub, &service, (settings.firewall.as_ref(), settings.sshd.as_ref())) {
                                    Ok(()) => Reply::Done,
                                    Err(e) => Reply::Refused(Refusal::Failed(e)),
                                }
                            }
                            ClusterCall::Status => {
                                let mut st = status_json(
                                    &core,
                                    now,
                                    &settings,
                                    &chain_names,
                                    bad_requests.load(Ordering::Relaxed),
                                );
                                st.hardware = hw_snapshot.lock().ok().map(|h| h.summary.clone());
                                st.replication = replication_line.lock().ok().and_then(|l| l.clone());
                                st.split_brain = split_brain;
                                if split_brain {
                                    st.warnings.push(SPLIT_BRAIN_TEXT.to_owned());
                                }
                                Reply::Status(Box::new(st))
                            }
                            ClusterCall::Switchover => match core.switchover(now) {
                                Ok(()) => Reply::Done,
                                Err(e) => Reply::Refused(Refusal::Switchover(e.to_string())),
                            },
                            // Answered outside the loop (see the link).
                            ClusterCall::Facts => Reply::Refused(Refusal::Failed("facts are not asked of the loop".into())),
                            ClusterCall::FenceConfirm(n) if n != settings.node.peer() => Reply::Refused(Refusal::Failed(format!(
                                "{} is this node: type the name of the silent node, {}; nothing was changed",
                                n.name(),
                                settings.node.peer().name()
                            ))),
                            ClusterCall::FenceConfirm(n) => match core.confirm_fence(now) {
                                Ok(()) => {
                                    hub.publish(
                                        "fence_confirmed",
                                        format!("the operator confirmed that {} is down: taking over", n.name()),
                                    );
                                    Reply::Done
                                }
                                Err(e) => Reply::Refused(Refusal::Failed(format!("{e}; nothing was changed"))),
                            },
                            ClusterCall::ReplicationPeerLost => {
                                let first = core.status(now).fence.is_none();
                                if core.fence_for_data(now) && first {
                                    hub.publish(
                                        "replication",
                                        "the replication lost the other node, which is silent on every path: writes wait until it is powered off".to_owned(),
                                    );
                                }
                                Reply::Done
                            }
                            ClusterCall::SplitBrainDetected => {
                                if !split_brain {
                                    split_brain = true;
                                    if let Err(e) = crate::write_atomic(&split_brain_marker, b"split brain\n", 0o600) {
                                        hub.publish("warning", format!("keeping the split-brain mark: {e}"));
                                    }
                                    hub.alert(
                                        "split_brain",
                                        SPLIT_BRAIN_TEXT.to_owned(),
                                        &Alert::Replication {
                                            old: Some("connected".into()),
                                            new: "split brain".into(),
                                        },
                                    );
                                }
                                Reply::Done
                            }
                            ClusterCall::ResolveSplitBrain(survivor) => {
                                let victim = survivor != settings.node;
                                match &settings.replication {
                                    None => Reply::Refused(Refusal::Failed("this node runs no replicated data area; nothing was changed".into())),
                                    Some(_) if victim && core.role().holds_resources() => Reply::Refused(Refusal::Failed(format!(
                                        "this node holds the services: move them to {} first (switchover), or name this node as the survivor; nothing was changed",
                                        survivor.name()
                                    ))),
                                    Some(repl) => {
                                        let (repl, t) = (repl.clone(), tx.clone());
                                        tokio::spawn(async move {
                                            let r = tokio::task::spawn_blocking(move || resolve_split_brain(&repl, victim))
                                                .await
                                                .map_err(|e| e.to_string())
                                                .and_then(|r| r);
                                            let _ = t.send(In::Resolved(r, reply));
                                        });
                                        continue;
                                    }
                                }
                            }
                            ClusterCall::ForcePrimary => {
                                let st = core.status(now);
                                match (&settings.replication, st.peer.alive, st.role.holds_resources()) {
                                    (None, _, _) => Reply::Refused(Refusal::Failed("this node runs no replicated data area; nothing was changed".into())),
                                    (_, true, _) => Reply::Refused(Refusal::Failed(format!("{}; nothing was changed", tandem_core::ForceError::PeerAlive))),
                                    (_, _, true) => Reply::Refused(Refusal::Failed(format!("{}; nothing was changed", tandem_core::ForceError::Holding))),
                                    (Some(repl), false, false) => {
                                        let (repl, t) = (repl.clone(), tx.clone());
                                        tokio::spawn(async move {
                                            // DRBD marks the copy current only as primary;
                                            // the takeover then promotes it in its turn.
                                            let r = tokio::task::spawn_blocking(move || {
                                                repl.initial_primary().and_then(|()| repl.secondary())
                                            })
                                            .await
                                            .map_err(|e| e.to_string())
                                            .and_then(|r| r.map_err(|e| crate::error_chain(&e)));
                                            let _ = t.send(In::Forced(r, reply));
                                        });
                                        continue;
                                    }
                                }
                            }
                        };
                        let _ = reply.send(resp);
                    }
                }
            }
        }
    }

    if core.role().holds_resources() || core.role() == Role::Acquiring {
        hub.publish("shutdown", "releasing resources before exit".into());
        if let Err(e) = chain.lock().await.release().await {
            hub.publish("resource_error", crate::error_chain(&e));
        }
    }
    if let Some(repl) = settings.replication.clone() {
        // Leave the replication cleanly: the other node's DRBD then sees this copy
        // disconnected (and outdated) on purpose, not a lost link, so it neither
        // suspends writes for its fence-peer handler nor has this node powered off.
        // DRBD refuses while the device is in use (a release that failed): it stays.
        match tokio::task::spawn_blocking(move || repl.down()).await {
            Ok(Ok(())) => hub.publish(
                "replication",
                "left the replication cleanly (this node's copy is outdated until it resynchronises)".into(),
            ),
            Ok(Err(e)) => hub.publish(
                "warning",
                format!("leaving the replication: {}", crate::error_chain(&e)),
            ),
            Err(_) => {}
        }
    }
    let _ = std::fs::remove_file(&settings.control);
    hub.publish("stopped", "clusterd stopped".into());
    Ok(())
}

/// What a DRBD split brain is called in alerts, the status and the console.
const SPLIT_BRAIN_TEXT: &str = "split brain of the replicated data: both nodes changed it while apart; nothing was discarded by this node. Compare both sides with tandem split-brain and choose the survivor (tandem split-brain resolve); an automatic split-brain policy, where configured, is reported when the nodes connect again";

/// This node's part of DRBD's own split-brain resolution: the victim becomes secondary
/// and connects discarding its changes since the split; the survivor connects.
fn resolve_split_brain(
    repl: &crate::replication::Replication,
    victim: bool,
) -> Result<String, String> {
    use crate::drbd::{Connection, Role as DrbdRole};
    let err = |e: crate::replication::ReplicationError| crate::error_chain(&e);
    let st = repl
        .status()
        .map_err(err)?
        .ok_or("the replicated device is not set up on this node")?;
    if victim {
        if st.role == DrbdRole::Primary {
            repl.secondary().map_err(err)?;
        }
        if st.connection != Connection::StandAlone {
            repl.disconnect().map_err(err)?;
        }
        repl.connect(true).map_err(err)?;
        Ok("split brain: this node is the victim: secondary, connecting with --discard-my-data (its changes since the split are discarded; it resynchronises from the survivor)".into())
    } else {
        if st.connection == Connection::StandAlone {
            repl.connect(false).map_err(err)?;
        }
        Ok("split brain: this node is the survivor: connecting (its data stays and is copied to the victim)".into())
    }
}

/// The replicated device's state in the core's terms.
fn replica_of(d: &crate::drbd::DeviceStatus) -> tandem_core::Replica {
    use crate::drbd::{DiskState, Role as DrbdRole};
    tandem_core::Replica {
        disk: match d.disk {
            DiskState::UpToDate => tandem_core::ReplicaDisk::UpToDate,
            DiskState::Outdated => tandem_core::ReplicaDisk::Outdated,
            _ => tandem_core::ReplicaDisk::Other,
        },
        connected: d.connection.is_linked(),
        primary: d.role == DrbdRole::Primary,
        peer_secondary: d.connection.is_linked() && d.peer_role == DrbdRole::Secondary,
    }
}

/// The cluster loop's status; `None` once the loop has ended.
async fn status_now(tx: &mpsc::UnboundedSender<In>) -> Option<StatusJson> {
    let (otx, orx) = oneshot::channel();
    tx.send(In::Control(ClusterCall::Status, otx)).ok()?;
    match orx.await.ok()? {
        Reply::Status(s) => Some(*s),
        _ => None,
    }
}

/// How long `facts` waits for the other node.
const FACTS_TIMEOUT: Duration = Duration::from_secs(3);

/// This node's facts and, over the configuration exchange, the other node's (asked
/// only while its heartbeat is heard, so that a dead node costs no wait).
async fn facts(sync: Option<SyncSetup>, tx: &mpsc::UnboundedSender<In>) -> Reply {
    let Some(setup) = sync else {
        return Reply::Refused(Refusal::Failed(
            "this clusterd runs without a configuration store (--store): no facts to exchange"
                .into(),
        ));
    };
    let heard = status_now(tx).await.is_some_and(|s| s.peer.alive);
    let answer = tokio::task::spawn_blocking(move || {
        let cfg = committed_config(&setup).ok();
        let own = crate::confsync::local_facts(setup.node, cfg.as_ref());
        let (peer, peer_error) = if heard {
            match crate::confsync::describe(&setup.key, setup.node, setup.peer, FACTS_TIMEOUT) {
                Ok(f) => (Some(f), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, Some("the other node is not heard".to_owned()))
        };
        FactsJson {
            own,
            peer,
            peer_error,
        }
    })
    .await;
    match answer {
        Ok(f) => Reply::Facts(Box::new(f)),
        Err(e) => Reply::Refused(Refusal::Failed(format!("facts: {e}"))),
    }
}

/// How often a node whose configuration differs from the other node's offers its own.
const CATCH_UP_EVERY: Duration = Duration::from_secs(10);

/// The configuration committed in the store of `setup`.
fn committed_config(setup: &SyncSetup) -> anyhow::Result<tandem_config::ApplianceConfig> {
    tandem_config::Store::open(&setup.store)
        .and_then(|s| s.current())
        .map_err(|e| anyhow::anyhow!("{}", crate::error_chain(&e)))?
        .with_context(|| format!("no configuration is committed in {}", setup.store.display()))
}

/// Listens for the other node's offers and starts the task that offers this node's
/// configuration while the two differ. A listener that cannot start is reported and
/// leaves clusterd running: changes then reach this node when it starts again.
async fn start_config_exchange(
    setup: SyncSetup,
    tx: mpsc::UnboundedSender<In>,
    hub: Arc<EventHub>,
) {
    match tokio::net::TcpListener::bind(setup.listen).await {
        Ok(listener) => {
            let (t, h) = (tx.clone(), Arc::clone(&hub));
            tokio::spawn(crate::confsync::serve(
                listener,
                setup.clone(),
                move |_| {
                    let _ = t.send(In::ConfigCommitted);
                },
                move |text| h.publish("config", text),
            ));
        }
        Err(e) => hub.publish(
            "config",
            format!(
                "configuration exchange off: cannot listen on {}: {e}; changes made on the other node reach this one when it starts again",
                setup.listen
            ),
        ),
    }
    tokio::spawn(catch_up(setup, tx, hub));
}

/// While the other node's heartbeat carries another configuration digest, offers this
/// node's configuration to it every [`CATCH_UP_EVERY`]; the node with the higher
/// revision wins. Reports what happens, each different outcome once.
async fn catch_up(setup: SyncSetup, tx: mpsc::UnboundedSender<In>, hub: Arc<EventHub>) {
    use crate::confsync::{OFFER_TIMEOUT, Outcome, offer};
    let mut last: Option<String> = None;
    loop {
        tokio::time::sleep(CATCH_UP_EVERY).await;
        let Some(st) = status_now(&tx).await else {
            return;
        };
        if st.peer.config_matches != Some(false) {
            last = None;
            continue;
        }
        let s = setup.clone();
        let answer = tokio::task::spawn_blocking(move || {
            let cfg = committed_config(&s).map_err(|e| format!("{e:#}"))?;
            offer(&s.key, s.node, s.peer, &cfg.to_toml(), OFFER_TIMEOUT)
                .map(|o| (cfg.cluster.revision, o))
                .map_err(|e| e.to_string())
        })
        .await;
        let text = match answer {
            Ok(Ok((_, Outcome::Accepted { revision }))) => {
                hub.publish(
                    "config",
                    format!("the other node took this node's configuration revision {revision}"),
                );
                last = None;
                continue;
            }
            Ok(Ok((mine, Outcome::NotNewer { have, same: false }))) if have == mine => format!(
                "both nodes have configuration revision {mine}, with different contents: make the change again on one node"
            ),
            // The other node is newer (it offers its own) or the same.
            Ok(Ok((_, Outcome::NotNewer { .. }))) => continue,
            Ok(Ok((_, Outcome::Refused { reason }))) => {
                format!("the other node refused this node's configuration: {reason}")
            }
            Ok(Err(e)) => format!("cannot offer this node's configuration: {e}"),
            Err(e) => format!("cannot offer this node's configuration: {e}"),
        };
        if last.as_deref() != Some(text.as_str()) {
            hub.publish("config", text.clone());
            last = Some(text);
        }
    }
}

/// Puts the committed configuration in effect: the heartbeat carries its digest,
/// e-mail goes to its recipients; network and heartbeat settings wait for the next
/// start. Reports the change as an event.
fn reload_config(
    sync: Option<&SyncSetup>,
    running: &mut Option<tandem_config::ApplianceConfig>,
    core: &mut Core,
    now: tandem_core::Instant,
    hub: &EventHub,
    service: &Service,
    (firewall, sshd): (Option<&crate::firewall::Setup>, Option<&crate::sshd::Setup>),
) -> Result<(), String> {
    let setup = sync.ok_or("this clusterd runs without a configuration store (--store)")?;
    let cfg = committed_config(setup).map_err(|e| format!("reading the configuration: {e:#}"))?;
    if running.as_ref() == Some(&cfg) {
        return Ok(());
    }
    let changes = running
        .as_ref()
        .map(|old| crate::confsync::Changes::between(old, &cfg))
        .unwrap_or_default();
    core.handle(
        now,
        Input::ConfigDigest(crate::settings::config_digest(&cfg)),
    );
    if changes.sections.contains(&"notification") {
        hub.set_notification(&cfg.notification);
    }
    // Addresses and ports take effect when the node starts again (as the network
    // does); who may reach the node at once.
    if let Some(fw) = firewall
        && changes.sections.contains(&"access")
    {
        put_firewall_in_effect(fw, &fw.effective(&cfg), hub);
    }
    if let Some(ssh) = sshd
        && changes.sections.contains(&"access")
    {
        // sshd listens where the node is now: the addresses clusterd started with.
        let effective = firewall.map_or_else(|| cfg.clone(), |fw| fw.effective(&cfg));
        let text = match ssh.refresh(&effective) {
            Ok(t) => t,
            Err(e) => format!("ssh server not changed: {e}"),
        };
        hub.publish("ssh", text);
    }
    if changes.admin_password {
        // Whoever logged in with the old password is logged out, on both nodes.
        service.end_sessions();
    }
    let mut text = format!(
        "configuration revision {} in effect (changed: {})",
        cfg.cluster.revision,
        changes.list()
    );
    if changes.needs_restart() {
        text.push_str("; network and heartbeat settings take effect when this node starts again");
    }
    hub.publish("config", text);
    *running = Some(cfg);
    Ok(())
}

/// Applies the packet filter for `cfg` and reports the outcome as a `firewall` event
/// (a refused ruleset leaves the previous one in effect, and says so).
fn put_firewall_in_effect(
    fw: &crate::firewall::Setup,
    cfg: &tandem_config::ApplianceConfig,
    hub: &EventHub,
) {
    let text = match fw.put_in_effect(cfg) {
        Ok(t) => t,
        Err(e) => format!("firewall not changed: {}", crate::error_chain(&e)),
    };
    hub.publish("firewall", text);
}

fn status_json(
    core: &Core,
    now: Instant,
    settings: &Settings,
    chain: &[String],
    bad_requests: u64,
) -> StatusJson {
    let s = core.status(now);
    let c = s.counters;
    StatusJson {
        node: s.node.name().into(),
        role: s.role.name().into(),
        resources: s.resources.name().into(),
        resource_chain: chain.to_vec(),
        waiting: s.waiting.map(|w| w.text().into()),
        data_good: s.data_good,
        peer: PeerJson {
            node: s.node.peer().name().into(),
            alive: s.peer.alive,
            role: s.peer.role.map(|r| r.name().into()),
            resources: s.peer.resources.map(|r| r.name().into()),
            data_good: s.peer.data_good,
            ping_reach: s.peer.ping.map(|p| p.0),
            config_matches: s.peer.config_matches,
        },
        paths: s
            .paths
            .iter()
            .map(|p| PathJson {
                path: p.path.name().into(),
                enabled: p.enabled,
                state: if !p.enabled {
                    "disabled"
                } else if !p.up {
                    "down"
                } else if p.late {
                    "late"
                } else {
                    "up"
                }
                .into(),
                last_heard_ms_ago: p
                    .last_heard_ago
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            })
            .collect(),
        ping_nodes: settings
            .ping_nodes
            .iter()
            .zip(s.ping_nodes.iter())
            .map(|(a, r)| PingJson {
                address: a.to_string(),
                reachable: *r,
            })
            .collect(),
        counters: CountersJson {
            accepted: c.accepted,
            bad_mac: c.bad_mac,
            malformed: c.malformed,
            replayed: c.replayed,
            misdirected: c.misdirected,
            line_noise: c.line_noise,
            config_mismatch: c.config_mismatch,
            bad_requests,
        },
        warnings: s.warnings,
        hardware: None,
        replication: None,
        fence: s.fence.map(|f| match f {
            tandem_core::FenceStatus::Delay => "waiting the tiebreak delay".to_owned(),
            tandem_core::FenceStatus::InProgress => "in progress".to_owned(),
            tandem_core::FenceStatus::PoweredOff => "powered off".to_owned(),
            tandem_core::FenceStatus::Failed(why) => format!("failed: {why}"),
            tandem_core::FenceStatus::Confirmed => "confirmed down by the operator".to_owned(),
        }),
        fencing_off: s.fencing_off,
        split_brain: false,
    }
}

/// Opens the serial port 8N1 and starts its reader and writer threads. Returns the
/// writer's queue.
fn start_serial(
    device: &Path,
    baud: u32,
    tx: mpsc::UnboundedSender<In>,
) -> anyhow::Result<std::sync::mpsc::SyncSender<[u8; tandem_proto::FRAME_LEN]>> {
    let dev = device.display().to_string();
    let port = serialport::new(dev.clone(), baud)
        .data_bits(serialport::DataBits::Eight)
        .parity(serialport::Parity::None)
        .stop_bits(serialport::StopBits::One)
        .flow_control(serialport::FlowControl::None)
        .timeout(Duration::from_millis(500))
        .open_native()
        .with_context(|| format!("opening serial heartbeat device {dev} at {baud} baud"))?;
    let mut writer = port
        .try_clone_native()
        .with_context(|| format!("duplicating serial device {dev}"))?;
    let mut reader = port;
    let (wtx, wrx) = std::sync::mpsc::sync_channel::<[u8; tandem_proto::FRAME_LEN]>(SERIAL_QUEUE);
    let wdev = dev.clone();
    let wtx_events = tx.clone();
    std::thread::Builder::new()
        .name("serial-tx".into())
        .spawn(move || {
            // As the loop's thread (which already reported a failure).
            let _ = realtime_thread();
            let mut buf = [0u8; tandem_proto::SERIAL_BUF_LEN];
            let mut failing = false;
            while let Ok(frame) = wrx.recv() {
                let Some(bytes) = tandem_proto::encode_serial(&frame, &mut buf) else {
                    continue;
                };
                match writer.write_all(bytes) {
                    Ok(()) => failing = false,
                    Err(e) => {
                        if !failing {
                            let _ = wtx_events
                                .send(In::Transport(format!("serial write on {wdev} failed: {e}")));
                        }
                        failing = true;
                    }
                }
            }
        })
        .context("starting serial writer thread")?;
    std::thread::Builder::new()
        .name("serial-rx".into())
        .spawn(move || {
            let _ = realtime_thread();
            let mut d = SerialDeframer::new();
            let mut buf = [0u8; 256];
            let mut failing = false;
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => {
                        // End of file or hang-up: the other end is gone. Wait instead of
                        // spinning; data resumes when the cable does.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Ok(n) => {
                        failing = false;
                        for &b in &buf[..n] {
                            let msg = match d.push(b) {
                                Some(Ok(frame)) => In::Frame {
                                    path: PathId::Serial,
                                    bytes: frame.to_vec(),
                                },
                                Some(Err(_)) => In::Noise(PathId::Serial),
                                None => continue,
                            };
                            if tx.send(msg).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        if tx.is_closed() {
                            return;
                        }
                    }
                    Err(e) => {
                        if !failing
                            && tx
                                .send(In::Transport(format!("serial read on {dev} failed: {e}")))
                                .is_err()
                        {
                            return;
                        }
                        failing = true;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
        .context("starting serial reader thread")?;
    Ok(wtx)
}
