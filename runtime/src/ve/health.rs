//! clusterd's watch over the VEs it runs (R8.2): the IO around
//! [`tandem_core::ve_health::VeHealth`], one per VE.
//!
//! - A VE's first process is watched through a pidfd (`pidfd_open(2)`), which becomes
//!   readable when the process ends: the kernel says so at once, nothing polls.
//! - A VE file's `HEALTHCHECK="tcp:PORT"` is checked every `HEALTHCHECK_INTERVAL`
//!   seconds: a TCP connection to `127.0.0.1:PORT` made in the VE's own network
//!   namespace (a thread of clusterd enters it), so the check sees the VE's service
//!   whatever its addresses and the node's routes.
//! - Every start and stop of a VE on a node with clusterd goes through
//!   [`VeSupervisor`] (the chain's `OnbootVes`, the operator's requests): a stop is
//!   announced to the rule before it is made, so it is never answered by a restart.
//! - What the rule decides — start again after a backoff, stop an unhealthy VE, give
//!   up — is done here; its alerts go to the sink clusterd connects ([`VeEvent`]).
//!
//! The first process of a VE is not a child of clusterd (crun's is, and it ends
//! once the VE runs), so its exit status is not known: the alert says that it ended.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_core::Instant;
use tandem_core::ve_health::{
    Crash, RestartPolicy, StopCause, VeAlert, VeHealth, VeInput, VeOutput, VeState,
};
use tokio::sync::Notify;

use super::conf::HealthCheck;
use super::manager::{VeError, Ves, wait_exit};

/// How long a health check's connection may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// Grace of the stop of an unhealthy VE before SIGKILL.
const UNHEALTHY_GRACE: Duration = Duration::from_secs(5);

/// A change of a VE's health, for the event feed and e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeEvent {
    /// The VE.
    pub id: u32,
    /// Event kind: `ve_stopped`, `ve_crashed`, `ve_restarted`, `ve_gave_up`.
    pub kind: &'static str,
    /// State before, for people.
    pub old: &'static str,
    /// State after, for people.
    pub new: &'static str,
    /// What happened and what to do.
    pub text: String,
}

/// Where [`VeEvent`]s go.
pub type VeEventSink = Arc<dyn Fn(VeEvent) + Send + Sync>;

/// A VE's state for people, as `tandem ve list`, `tandem status` and the console
/// show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VeHealthView {
    /// The VE.
    pub id: u32,
    /// `running`, `restarting in N s`, `given up after N crashes`, `stopped`.
    pub state: String,
    /// Crashes in the current window.
    pub crashes: u32,
}

struct Watched {
    health: VeHealth,
    /// Counts starts, so that the end of an earlier run's process is not taken for
    /// the end of the current one.
    run: u64,
    check: Option<HealthCheck>,
}

struct Inner {
    ves: BTreeMap<u32, Watched>,
    sink: Option<VeEventSink>,
    base: std::time::Instant,
}

/// The VEs clusterd runs on this node, watched. Cheap to clone (one shared state).
#[derive(Clone)]
pub struct VeSupervisor {
    ves: Ves,
    policy: RestartPolicy,
    inner: Arc<Mutex<Inner>>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for VeSupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VeSupervisor")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn describe(c: &Crash) -> String {
    match c {
        Crash::Exited(how) => how.clone(),
        Crash::StartFailed(why) => format!("starting it failed: {why}"),
        Crash::Unhealthy { failures, last } => {
            format!("its health check failed {failures} times in a row ({last}); it was stopped")
        }
    }
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 0.001 {
        format!("{} s", s.round())
    } else {
        format!("{s:.1} s")
    }
}

fn event(id: u32, a: &VeAlert, run_dir: &std::path::Path) -> VeEvent {
    match a {
        VeAlert::Stopped => VeEvent {
            id,
            kind: "ve_stopped",
            old: "running",
            new: "stopped",
            text: format!(
                "VE {id} was stopped by the operator; it is not restarted (tandem ve start {id} starts it)"
            ),
        },
        VeAlert::Crashed {
            crash,
            restart_in,
            count,
        } => VeEvent {
            id,
            kind: "ve_crashed",
            old: "running",
            new: "crashed",
            text: format!(
                "VE {id} crashed: {}; restarting it in {} (crash {count} within the window)",
                describe(crash),
                secs(*restart_in)
            ),
        },
        VeAlert::Restarted { count } => VeEvent {
            id,
            kind: "ve_restarted",
            old: "crashed",
            new: "running",
            text: format!("VE {id} was restarted after {count} crash(es) and runs again"),
        },
        VeAlert::GaveUp {
            crash,
            count,
            window,
        } => VeEvent {
            id,
            kind: "ve_gave_up",
            old: "crashed",
            new: "given up",
            text: format!(
                "VE {id} crashed {count} times within {}: {}; it is not restarted any more. Check its log ({}) and its programs, then start it with tandem ve start {id}",
                secs(*window),
                describe(crash),
                run_dir.join(id.to_string()).join("console.log").display()
            ),
        },
    }
}

impl VeSupervisor {
    /// A supervisor of `ves` with `policy`; nothing is watched until a VE is started
    /// through it or [`VeSupervisor::adopt`]ed, and nothing is restarted until
    /// [`VeSupervisor::run`] runs.
    #[must_use]
    pub fn new(ves: Ves, policy: RestartPolicy) -> VeSupervisor {
        VeSupervisor {
            ves,
            policy,
            inner: Arc::new(Mutex::new(Inner {
                ves: BTreeMap::new(),
                sink: None,
                base: std::time::Instant::now(),
            })),
            wake: Arc::new(Notify::new()),
        }
    }

    /// The VEs.
    #[must_use]
    pub fn ves(&self) -> &Ves {
        &self.ves
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves consistent data (each
        // mutation is one call on VeHealth).
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now(inner: &Inner) -> Instant {
        Instant::from_micros(u64::try_from(inner.base.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// Sends the alerts to `sink` and runs the restarts and health checks when due,
    /// until the runtime ends. Call once, inside the runtime.
    pub fn run(&self, sink: VeEventSink) {
        self.lock().sink = Some(sink);
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let next = {
                    let inner = me.lock();
                    let base = inner.base;
                    inner
                        .ves
                        .values()
                        .filter_map(|w| w.health.poll_timeout())
                        .min()
                        .map(|t| {
                            tokio::time::Instant::from_std(
                                base + Duration::from_micros(t.as_micros()),
                            )
                        })
                };
                let notified = me.wake.notified();
                match next {
                    Some(at) => {
                        tokio::select! {
                            () = tokio::time::sleep_until(at) => me.timeouts(),
                            () = notified => {}
                        }
                    }
                    None => notified.await,
                }
            }
        });
    }

    fn timeouts(&self) {
        let mut due = Vec::new();
        {
            let mut inner = self.lock();
            let now = Self::now(&inner);
            for (id, w) in &mut inner.ves {
                if w.health.poll_timeout().is_some_and(|t| t <= now) {
                    w.health.handle_timeout(now);
                    while let Some(o) = w.health.poll_output() {
                        due.push((*id, o));
                    }
                }
            }
        }
        for (id, o) in due {
            self.act(id, o);
        }
    }

    /// Reports `input` about VE `id` and does what follows.
    fn report(&self, id: u32, input: VeInput) {
        let outputs = {
            let mut inner = self.lock();
            let now = Self::now(&inner);
            let Some(w) = inner.ves.get_mut(&id) else {
                return;
            };
            w.health.handle(now, input);
            let mut out = Vec::new();
            while let Some(o) = w.health.poll_output() {
                out.push(o);
            }
            out
        };
        for o in outputs {
            self.act(id, o);
        }
        self.wake.notify_one();
    }

    fn act(&self, id: u32, o: VeOutput) {
        match o {
            VeOutput::Alert(a) => {
                let e = event(id, &a, &self.ves.layout.run_dir);
                let sink = self.lock().sink.clone();
                match sink {
                    Some(s) => s(e),
                    None => eprintln!("clusterd: {}", e.text),
                }
            }
            VeOutput::Start => {
                let me = self.clone();
                tokio::spawn(async move {
                    // Whatever is left of the crashed run (its container, its
                    // network) goes first.
                    let _ = me.ves.stop(id, Duration::ZERO).await;
                    let started = match me.ves.plan_start(id, None).await {
                        Ok(plan) => me.ves.launch(plan).await,
                        Err(e) => Err(e),
                    };
                    match started {
                        // Stopped meanwhile (the operator, a release): not wanted.
                        Ok(_) if !me.starting(id) => {
                            let _ = me.ves.stop(id, UNHEALTHY_GRACE).await;
                        }
                        Ok(pid) => me.started(id, Some(pid)),
                        Err(e) => me.report(id, VeInput::StartFailed(crate::error_chain(&e))),
                    }
                });
            }
            VeOutput::Stop => {
                let me = self.clone();
                tokio::spawn(async move {
                    let _ = me.ves.stop(id, UNHEALTHY_GRACE).await;
                });
            }
            VeOutput::Check => {
                let check = self.lock().ves.get(&id).and_then(|w| w.check.clone());
                let pid = self.ves.init_pid(id);
                let me = self.clone();
                tokio::spawn(async move {
                    let result = match (check, pid) {
                        (Some(c), Some(pid)) => check_in_ve(pid, c).await,
                        (Some(_), None) => Err("the VE has no first process".to_owned()),
                        (None, _) => Ok(()),
                    };
                    me.report(
                        id,
                        match result {
                            Ok(()) => VeInput::CheckPassed,
                            Err(e) => VeInput::CheckFailed(e),
                        },
                    );
                });
            }
        }
    }

    fn starting(&self, id: u32) -> bool {
        self.lock()
            .ves
            .get(&id)
            .is_some_and(|w| w.health.is_starting())
    }

    /// Watches VE `id` (just started, its first process `pid` when known) and
    /// reports it started.
    fn started(&self, id: u32, pid: Option<u32>) {
        let run = {
            let mut inner = self.lock();
            let Some(w) = inner.ves.get_mut(&id) else {
                return;
            };
            w.run += 1;
            w.run
        };
        self.watch(id, run, pid);
        self.report(id, VeInput::Started);
    }

    /// Waits (in a task) for the end of VE `id`'s first process of run `run`: `pid`,
    /// else the one crun names.
    fn watch(&self, id: u32, run: u64, pid: Option<u32>) {
        let me = self.clone();
        let pid = pid.or_else(|| self.ves.init_pid(id));
        let fd = pid.and_then(super::manager::pidfd);
        tokio::spawn(async move {
            let how = match (pid, fd) {
                (Some(p), Some(fd)) => match wait_exit(fd).await {
                    Ok(()) => format!("its first process (pid {p}) ended"),
                    Err(e) => format!("its first process (pid {p}) cannot be watched: {e}"),
                },
                (Some(p), None) => format!("its first process (pid {p}) ended at once"),
                (None, _) => "it has no first process after its start".to_owned(),
            };
            let current = me.lock().ves.get(&id).is_some_and(|w| w.run == run);
            if current {
                me.report(id, VeInput::Exited(how));
            }
        });
    }

    fn entry(&self, id: u32) {
        let check = self.ves.file(id).ok();
        let mut inner = self.lock();
        let now = Self::now(&inner);
        let interval = check.as_ref().and_then(|f| {
            f.health_check
                .as_ref()
                .map(|_| Duration::from_secs(f.check_interval()))
        });
        let hc = check.as_ref().and_then(|f| f.health_check.clone());
        let policy = self.policy;
        let w = inner.ves.entry(id).or_insert_with(|| Watched {
            health: VeHealth::new(policy, interval),
            run: 0,
            check: None,
        });
        w.check = hc;
        w.health.set_check_interval(now, interval);
    }

    /// Starts VE `id` (the chain or the operator) and watches it from then on; a VE
    /// whose restarts were given up is watched again with a fresh count.
    ///
    /// # Errors
    /// The start failed (the VE is then not watched).
    pub async fn start(&self, id: u32) -> Result<(), VeError> {
        self.start_known(id, None).await
    }

    /// [`VeSupervisor::start`] with crun's state of the VE when the caller asked
    /// crun already (see [`Ves::plan_start`]).
    pub(crate) async fn start_known(
        &self,
        id: u32,
        known: Option<super::manager::CrunState>,
    ) -> Result<(), VeError> {
        // A running VE is refused before anything here changes.
        let plan = self.ves.plan_start(id, known).await?;
        self.entry(id);
        if let Some(w) = self.lock().ves.get_mut(&id) {
            w.health.start_requested();
            w.run += 1;
        }
        self.wake.notify_one();
        match self.ves.launch(plan).await {
            Ok(pid) => {
                self.started(id, Some(pid));
                Ok(())
            }
            Err(e) => {
                self.lock().ves.remove(&id);
                Err(e)
            }
        }
    }

    /// Watches VE `id`, which runs already (clusterd started again while it ran).
    pub fn adopt(&self, id: u32) {
        self.adopt_pid(id, None);
    }

    /// [`VeSupervisor::adopt`] with the pid of the VE's first process when the
    /// caller knows it.
    pub(crate) fn adopt_pid(&self, id: u32, pid: Option<u32>) {
        self.entry(id);
        if let Some(w) = self.lock().ves.get_mut(&id) {
            w.health.start_requested();
        }
        self.started(id, pid);
    }

    /// Stops VE `id` for `cause`: it is not restarted.
    ///
    /// # Errors
    /// The VE is unknown or crun failed.
    pub async fn stop(&self, id: u32, grace: Duration, cause: StopCause) -> Result<(), VeError> {
        self.entry(id);
        self.report(id, VeInput::Stopping(cause));
        self.ves.stop(id, grace).await
    }

    /// Whether VE `id` is known here and not stopped (running, or waiting for a
    /// restart, or given up).
    #[must_use]
    pub fn watches(&self, id: u32) -> bool {
        self.lock()
            .ves
            .get(&id)
            .is_some_and(|w| w.health.state() != VeState::Stopped)
    }

    /// The state of every VE this supervisor watched that still exists, by number.
    #[must_use]
    pub fn views(&self) -> Vec<VeHealthView> {
        let existing = self.ves.ids().unwrap_or_default();
        let inner = self.lock();
        let now = Self::now(&inner);
        inner
            .ves
            .iter()
            .filter(|(id, _)| existing.contains(id))
            .map(|(id, w)| {
                let crashes = w.health.crashes(now);
                let state = match w.health.state() {
                    VeState::Running => "running".to_owned(),
                    VeState::Stopped => "stopped".to_owned(),
                    VeState::Restarting(at) => {
                        format!("restarting in {} s", at.since(now).as_secs_f64().ceil())
                    }
                    VeState::GivenUp => format!("given up after {crashes} crashes"),
                };
                VeHealthView {
                    id: *id,
                    state,
                    crashes,
                }
            })
            .collect()
    }
}

/// `check` against `127.0.0.1` in the network namespace of process `pid`: a TCP
/// connection, or an HTTP `GET` that answers below 400.
async fn check_in_ve(pid: u32, check: HealthCheck) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A thread of its own: entering a namespace changes the thread for good.
    let spawned = std::thread::Builder::new()
        .name(format!("ve-check-{pid}"))
        .spawn(move || {
            let r = (|| -> Result<(), String> {
                let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
                    .map_err(|e| format!("opening the VE's network namespace: {e}"))?;
                rustix::thread::move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&ns),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .map_err(|e| format!("entering the VE's network namespace: {e}"))?;
                match &check {
                    HealthCheck::Tcp(port) => {
                        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], *port));
                        std::net::TcpStream::connect_timeout(&addr, CHECK_TIMEOUT)
                            .map(drop)
                            .map_err(|e| format!("{check}: {e}"))
                    }
                    HealthCheck::Http { port, path } => {
                        http_get(*port, path).map_err(|e| format!("{check}: {e}"))
                    }
                }
            })();
            let _ = tx.send(r);
        });
    if let Err(e) = spawned {
        return Err(format!("starting the check: {e}"));
    }
    rx.await
        .unwrap_or_else(|_| Err("the check ended without an answer".to_owned()))
}

/// The most of an HTTP answer read before its status must be known.
const HTTP_HEAD_LIMIT: usize = 8192;

/// `GET path` on `127.0.0.1:port` (of the calling thread's network namespace): `Ok`
/// for a status below 400, else what was answered or went wrong.
fn http_get(port: u16, path: &str) -> Result<(), String> {
    use std::io::{Read as _, Write as _};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, CHECK_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(CHECK_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(CHECK_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: tandem-health-check\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("sending the request: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut answer = httparse::Response::new(&mut headers);
        match answer.parse(&buf) {
            Ok(httparse::Status::Complete(_)) | Ok(httparse::Status::Partial)
                if answer.code.is_some() =>
            {
                let code = answer.code.unwrap_or(0);
                return if code < 400 {
                    Ok(())
                } else {
                    Err(format!(
                        "answered {code} {}",
                        answer.reason.unwrap_or_default()
                    ))
                };
            }
            Ok(_) => {}
            Err(e) => return Err(format!("not an HTTP answer ({e})")),
        }
        if buf.len() >= HTTP_HEAD_LIMIT {
            return Err(format!("no HTTP status within {HTTP_HEAD_LIMIT} bytes"));
        }
        let n = s
            .read(&mut chunk)
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            return Err("closed without an HTTP answer".to_owned());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on loopback answering `reply` to one connection.
    fn one_answer(reply: &'static [u8]) -> u16 {
        use std::io::{Read as _, Write as _};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("address").port();
        std::thread::spawn(move || {
            if let Ok((mut c, _)) = l.accept() {
                // The whole request head first: answering and closing after a part
                // of it would break the client's next write (a broken pipe).
                let mut head = Vec::new();
                let mut chunk = [0u8; 512];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = c.write_all(reply);
            }
        });
        port
    }

    #[test]
    fn an_http_check_passes_below_400_and_says_what_was_answered() {
        let p = one_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(http_get(p, "/"), Ok(()));
        let p = one_answer(b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n");
        assert_eq!(http_get(p, "/"), Ok(()));
        let p = one_answer(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(
            http_get(p, "/health"),
            Err("answered 503 Service Unavailable".to_owned())
        );
        let p = one_answer(b"SSH-2.0-OpenSSH_9.2\r\n");
        assert!(
            http_get(p, "/")
                .unwrap_err()
                .starts_with("not an HTTP answer"),
            "garbage"
        );
        let p = one_answer(b"");
        assert_eq!(
            http_get(p, "/"),
            Err("closed without an HTTP answer".to_owned())
        );
    }

    #[test]
    fn alerts_say_what_happened_and_what_to_do() {
        let e = event(
            7,
            &VeAlert::Crashed {
                crash: Crash::Exited("its first process (pid 42) ended".into()),
                restart_in: Duration::from_secs(2),
                count: 2,
            },
            std::path::Path::new("/run/tandem/ve"),
        );
        assert_eq!(
            e.text,
            "VE 7 crashed: its first process (pid 42) ended; restarting it in 2 s (crash 2 within the window)"
        );
        let e = event(
            7,
            &VeAlert::GaveUp {
                crash: Crash::StartFailed("crun create failed".into()),
                count: 6,
                window: Duration::from_secs(600),
            },
            std::path::Path::new("/run/tandem/ve"),
        );
        assert!(
            e.text.contains("/run/tandem/ve/7/console.log"),
            "{}",
            e.text
        );
        assert!(
            e.text.contains("crashed 6 times within 600 s"),
            "{}",
            e.text
        );
        assert!(e.text.contains("tandem ve start 7"), "{}", e.text);
        assert_eq!((e.old, e.new), ("crashed", "given up"));
        assert_eq!(
            event(7, &VeAlert::Stopped, std::path::Path::new("/r")).kind,
            "ve_stopped"
        );
    }
}
