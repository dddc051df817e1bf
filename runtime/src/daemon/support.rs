//! The remote-support tunnel's task: [`tandem_core::SupportTunnel`] decides, this task
//! runs `ssh` ([`crate::support::Connection`]), answers the console's and the CLI's
//! calls, and reports: an alert when the tunnel is switched on and when it closes
//! (by the operator or when its time is up), events when its connection comes up or
//! ends. The tunnel ends with clusterd (`ssh` gets the parent-death signal).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_api::{Refusal, Reply, SupportView};
use tandem_core::support::{CloseReason, Link, SupportState};
use tandem_core::{Instant, SupportAction, SupportTunnel};
use tokio::sync::{mpsc, oneshot};

use super::clock::Clock;
use super::config::committed_config;
use super::hub::EventHub;
use crate::alerts::Alert;
use crate::confsync::SyncSetup;
use crate::support::{Call, Connection, Handle, Report, Setup};

/// Starts the task when `setup` is given; the handle the control server asks.
pub(super) fn start(setup: Option<Setup>, sync: Option<SyncSetup>, hub: &Arc<EventHub>) -> Handle {
    let Some(setup) = setup else {
        return Handle::none();
    };
    let (call_tx, mut calls) = mpsc::channel::<(Call, oneshot::Sender<Reply>)>(8);
    // What the running `ssh` reports, with the number of its run.
    let (tx, mut reports) = mpsc::channel::<(u64, Report)>(32);
    let mut task = Task {
        setup,
        sync,
        hub: Arc::clone(hub),
        started_unix_us: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        clock: Clock::start(),
        tunnel: SupportTunnel::new(),
        conn: None,
        generation: 0,
        tx,
    };
    tokio::spawn(async move {
        loop {
            let deadline = task.tunnel.poll_timeout();
            let wait = deadline.map(|d| d.since(task.clock.now()));
            tokio::select! {
                c = calls.recv() => match c {
                    None => return,
                    Some((c, reply)) => {
                        let r = task.call(c);
                        let _ = reply.send(r);
                    }
                },
                Some((g, r)) = reports.recv() => task.report(g, r),
                () = tokio::time::sleep(wait.unwrap_or(Duration::ZERO)), if wait.is_some() => {
                    task.tunnel.handle_timeout(task.clock.now());
                }
            }
            task.act();
        }
    });
    Handle::new(call_tx)
}

struct Task {
    setup: Setup,
    sync: Option<SyncSetup>,
    hub: Arc<EventHub>,
    /// The wall clock when `clock` started, in microseconds since 1970.
    started_unix_us: u64,
    clock: Clock,
    tunnel: SupportTunnel,
    /// The running `ssh` and its number (reports of earlier ones are ignored).
    conn: Option<(u64, Connection)>,
    generation: u64,
    tx: mpsc::Sender<(u64, Report)>,
}

impl Task {
    fn config(&self) -> Result<tandem_config::ApplianceConfig, String> {
        match &self.sync {
            Some(s) => committed_config(s).map_err(|e| format!("reading the configuration: {e:#}")),
            None => Ok((*self.setup.initial).clone()),
        }
    }

    fn call(&mut self, call: Call) -> Reply {
        let now = self.clock.now();
        let failed = |t: String| Reply::Refused(Refusal::Failed(t));
        // Read once for the whole call: the switch, the connection and the view.
        let read = self.config();
        match call {
            Call::Status => {}
            Call::On { hours, by } => {
                let cfg = match &read {
                    Ok(c) => c,
                    Err(e) => return failed(e.clone()),
                };
                if let Some(why) = crate::support::unavailable(cfg) {
                    return failed(format!("remote support cannot be switched on: {why}"));
                }
                let max = cfg
                    .support
                    .as_ref()
                    .map_or(tandem_config::schema::DEFAULT_SUPPORT_HOURS, |s| {
                        s.max_hours
                    });
                let hours = hours.unwrap_or(max);
                let limit = Duration::from_secs(u64::from(max) * 3600);
                let time = Duration::from_secs(u64::from(hours) * 3600);
                if let Err(e) = self.tunnel.open(now, &by, time, limit) {
                    return failed(format!("remote support not switched on: {e}"));
                }
            }
            Call::Off { by } => {
                if let Err(e) = self.tunnel.close(&by) {
                    return failed(e.to_string());
                }
            }
        }
        self.act_with(Some(read.clone()));
        Reply::Support(self.view(read.as_ref().ok()))
    }

    fn report(&mut self, generation: u64, r: Report) {
        if self.conn.as_ref().map(|(g, _)| *g) != Some(generation) {
            return;
        }
        let now = self.clock.now();
        match r {
            Report::Up(port) => self.tunnel.connected(now, port),
            Report::Ended(why) => {
                self.conn = None;
                self.tunnel.ended(now, &why);
            }
        }
    }

    /// Carries out what the tunnel asks, until it asks nothing more.
    fn act(&mut self) {
        self.act_with(None);
    }

    /// [`Task::act`] with the configuration already read (else read at the first
    /// action that needs it).
    fn act_with(&mut self, mut cfg: Option<Result<tandem_config::ApplianceConfig, String>>) {
        while let Some(a) = self.tunnel.poll_action() {
            match a {
                SupportAction::Connect => {
                    let c = cfg.get_or_insert_with(|| self.config());
                    let prepared = c
                        .as_ref()
                        .map_err(Clone::clone)
                        .and_then(|c| crate::support::prepare(c, &self.setup.dir));
                    self.connect(prepared);
                }
                SupportAction::Disconnect => {
                    if let Some((_, c)) = self.conn.take() {
                        c.stop();
                    }
                }
                SupportAction::SwitchedOn { by, until, again } => {
                    let server = cfg
                        .get_or_insert_with(|| self.config())
                        .as_ref()
                        .ok()
                        .and_then(|c| c.support.as_ref().map(crate::support::server))
                        .unwrap_or_default();
                    let until = tandem_config::archive::rfc3339(self.unix(until));
                    let (text, old) = if again {
                        (
                            format!("remote support switched on again by {by}: it now closes at {until}"),
                            "on",
                        )
                    } else {
                        (
                            format!("remote support switched on by {by} until {until}: a tunnel to {server} leads to this node's SSH server"),
                            "off",
                        )
                    };
                    self.hub.alert(
                        "support",
                        text,
                        &Alert::Support {
                            old: old.into(),
                            new: "on".into(),
                        },
                    );
                }
                SupportAction::Up { port } => self.hub.publish(
                    "support",
                    format!("support tunnel up: port {port} of the support server leads to this node's SSH server"),
                ),
                SupportAction::Down { error, retry_at } => self.hub.publish(
                    "support",
                    format!(
                        "support tunnel down: {error}; connecting again in {} s",
                        retry_at.since(self.clock.now()).as_secs()
                    ),
                ),
                SupportAction::Closed(reason) => {
                    let text = match reason {
                        CloseReason::Operator { by } => {
                            format!("remote support switched off by {by}: the tunnel is closed")
                        }
                        CloseReason::TimeUp => {
                            "remote support closed by itself: its time was up".to_owned()
                        }
                    };
                    self.hub.alert(
                        "support",
                        text,
                        &Alert::Support {
                            old: "on".into(),
                            new: "off".into(),
                        },
                    );
                }
            }
        }
    }

    /// Starts `ssh` with the arguments `prepared` (or reports why there are none).
    fn connect(&mut self, prepared: Result<Vec<std::ffi::OsString>, String>) {
        if let Some((_, c)) = self.conn.take() {
            c.stop();
        }
        let args = match prepared {
            Ok(a) => a,
            Err(e) => {
                self.tunnel.ended(self.clock.now(), &e);
                return;
            }
        };
        self.generation += 1;
        let (g, tx) = (self.generation, self.tx.clone());
        match Connection::start(&self.setup.ssh, &args, move |r| {
            let _ = tx.blocking_send((g, r));
        }) {
            Ok(c) => self.conn = Some((g, c)),
            Err(e) => self.tunnel.ended(
                self.clock.now(),
                &format!("{} cannot be started: {e}", self.setup.ssh.display()),
            ),
        }
    }

    /// `at` in seconds since 1970 (from the wall clock at the task's start).
    fn unix(&self, at: Instant) -> u64 {
        self.started_unix_us.saturating_add(at.as_micros()) / 1_000_000
    }

    fn view(&self, cfg: Option<&tandem_config::ApplianceConfig>) -> SupportView {
        let mut v = SupportView {
            server: cfg.and_then(|c| c.support.as_ref().map(crate::support::server)),
            unavailable: cfg.and_then(crate::support::unavailable),
            client_key: cfg.map(|c| c.keys.support_ssh.public_key()),
            ..SupportView::default()
        };
        if let SupportState::On {
            by,
            since,
            until,
            link,
            last_error,
        } = self.tunnel.state()
        {
            v.on = true;
            v.by = Some(by);
            v.since = Some(self.unix(since));
            v.until = Some(self.unix(until));
            v.last_error = last_error;
            match link {
                Link::Up { port, .. } => v.port = Some(port),
                Link::Waiting { retry_at } => v.retry_at = Some(self.unix(retry_at)),
                Link::Connecting => {}
            }
        }
        v
    }
}
