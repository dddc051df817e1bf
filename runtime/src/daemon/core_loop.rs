//! The loop: wait for an input (heard from outside, a result or request, the timer,
//! the shutdown), hand it to the core, carry out what the core then wants.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use tandem_api::HwJson;
use tandem_core::{ClusterKey, Core, Input, Instant, Role};
use tokio::sync::{Mutex as AsyncMutex, mpsc};

use super::In;
use super::clock::{Clock, Timer};
use super::hub::EventHub;
use super::inputs::{Heard, Heards, Inputs};
use super::replica::SplitBrain;
use super::udp::Udp;
use crate::alerts::Alert;
use crate::confsync::SyncSetup;
use crate::control::Service;
use crate::net::Pinger;
use crate::resources::Chain;
use crate::settings::Settings;

/// The serial writer's queue.
pub(super) type SerialTx = std::sync::mpsc::SyncSender<[u8; tandem_proto::FRAME_LEN]>;

/// Everything the loop owns or reaches.
pub(super) struct Shell {
    pub(super) core: Core,
    pub(super) clock: Clock,
    pub(super) settings: Settings,
    pub(super) hub: Arc<EventHub>,
    /// The loop's queue for results and requests (tasks wait for room in it).
    pub(super) tx: mpsc::Sender<In>,
    /// The heard-input queues' sending side: their drop counters for the status (and,
    /// held here, the queues stay open while the loop runs).
    pub(super) inputs: Inputs,
    pub(super) chain: Arc<AsyncMutex<Chain>>,
    pub(super) chain_names: Vec<String>,
    pub(super) udp: [Option<Udp>; 3],
    pub(super) serial_tx: Option<SerialTx>,
    pub(super) pinger: Option<Pinger>,
    /// The newest boot generation of the peer heard, kept durably.
    pub(super) peer_generation: Option<u64>,
    pub(super) sync: Option<SyncSetup>,
    pub(super) running_cfg: Option<tandem_config::ApplianceConfig>,
    pub(super) service: Arc<Service>,
    pub(super) bad_requests: Arc<AtomicU64>,
    pub(super) hw_snapshot: Arc<Mutex<HwJson>>,
    pub(super) replication_line: Arc<Mutex<Option<String>>>,
    /// The clock's synchronisation in one line ([`super::timesync`]).
    pub(super) clock_line: Arc<Mutex<Option<String>>>,
    /// Where a change of the time servers reaches the clock's watch.
    pub(super) time_servers: tokio::sync::watch::Sender<Vec<String>>,
    /// The configuration revision in effect, for the tasks that read it.
    pub(super) revision: tokio::sync::watch::Sender<u64>,
    pub(super) split_brain: SplitBrain,
    /// Set when a shutdown hands the services over: the loop runs on until the peer
    /// holds them (or this instant), so the peer takes over from a clean release
    /// instead of from silence, which would make it fence this node.
    pub(super) leaving_until: Option<Instant>,
    /// The system update: the trial of a new system.
    pub(super) updates: super::update::Updates,
}

/// The core for this run, this run's boot generation, and the peer's boot generation
/// floor the core was given.
///
/// # Errors
/// The boot generation cannot be chosen or kept, the key or the timings are invalid.
pub(super) fn new_core(
    settings: &Settings,
    clock: &Clock,
) -> anyhow::Result<(Core, u64, Option<u64>)> {
    // Stored durably here, before the core exists and so before any frame is sent.
    let wall_micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
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
    let peer_generation = crate::generation::peer_floor(&settings.state_dir)
        .context("reading the peer's boot generation")?;
    if let Some(g) = peer_generation {
        core.handle(clock.now(), Input::PeerGenerationFloor(g));
    }
    Ok((core, generation, peer_generation))
}

impl Shell {
    /// Runs until `shutdown` completes (and a handover it started has ended).
    pub(super) async fn run(
        &mut self,
        shutdown: impl std::future::Future<Output = ()>,
        mut timer: Timer,
        mut heard: Heards,
        mut rx: mpsc::Receiver<In>,
    ) {
        tokio::pin!(shutdown);
        loop {
            if self.handed_over() {
                break;
            }
            self.act_on_outputs();
            timer.arm(&self.clock, self.core.poll_timeout());
            // Unbiased: under a flood of heard frames, results and requests still get
            // their turn.
            tokio::select! {
                () = &mut shutdown, if self.leaving_until.is_none() => {
                    if !self.hand_over() {
                        break;
                    }
                }
                () = timer.expired() => self.core.handle_timeout(self.clock.now()),
                h = heard.recv() => {
                    let Some(h) = h else { break };
                    self.heard(h);
                }
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.input(msg);
                }
            }
        }
    }

    /// Leaving, the peer now holds the services (or the time is up).
    fn handed_over(&self) -> bool {
        let Some(until) = self.leaving_until else {
            return false;
        };
        let now = self.clock.now();
        let st = self.core.status(now);
        let peer_holds = st.peer.role.is_some_and(Role::holds_resources);
        now >= until || (st.role == Role::Passive && peer_holds)
    }

    /// On shutdown, an active node hands its services over first; `false` when there
    /// is nothing to hand over (the loop ends now).
    fn hand_over(&mut self) -> bool {
        let now = self.clock.now();
        let handing = self.core.role() == Role::Active && self.core.switchover(now).is_ok();
        // From here on this node takes nothing over: a peer that dies while the
        // services are handed to it is not fenced, nor are they taken back.
        self.core.leave(now);
        if handing {
            self.hub.publish(
                "shutdown",
                "handing the services over to the peer before exit".into(),
            );
            // Before the core would take the services back (handover not taken
            // within deadtime of the release), and within init's grace.
            self.leaving_until = Some(now.saturating_add(self.settings.deadtime));
            true
        } else {
            false
        }
    }

    fn heard(&mut self, h: Heard) {
        let now = self.clock.now();
        match h {
            Heard::Frame { path, bytes } => {
                self.core.handle(
                    now,
                    Input::Frame {
                        path,
                        bytes: &bytes,
                    },
                );
                self.keep_peer_generation();
            }
            Heard::Noise(path) => self.core.handle(now, Input::LineNoise { path }),
            Heard::PingReply(index) => self.core.handle(now, Input::PingReply { index }),
        }
    }

    /// A newer run of the peer was heard: kept, so that its older frames stay replays
    /// after a restart of this node.
    fn keep_peer_generation(&mut self) {
        if let Some(g) = self
            .core
            .peer_generation()
            .filter(|g| self.peer_generation < Some(*g))
        {
            // Rare (the peer restarted): an fsync in the loop is fine.
            if let Err(e) = crate::generation::keep_peer(&self.settings.state_dir, g) {
                self.hub.publish(
                    "warning",
                    format!(
                        "keeping the peer's boot generation: {}",
                        crate::error_chain(&e)
                    ),
                );
            }
            self.peer_generation = Some(g);
        }
    }

    fn input(&mut self, msg: In) {
        let now = self.clock.now();
        match msg {
            In::ChainUp(Ok(())) => self.core.handle(now, Input::ResourcesUp),
            In::ChainUp(Err(e)) => {
                self.hub.alert("resource_error", e, &Alert::ResourceError);
                self.core.handle(now, Input::ResourcesFailed);
            }
            In::ChainDown(Ok(())) => self.core.handle(now, Input::ResourcesDown),
            In::ChainDown(Err(e)) => {
                // Not released: this node may still hold the data. The core keeps
                // saying so; the peer takes over only after fencing this node.
                self.hub.alert(
                    "resource_error",
                    format!("release failed: {e}"),
                    &Alert::ResourceError,
                );
                self.core.handle(now, Input::ReleaseFailed);
            }
            In::Fenced(r) => self.fenced(r),
            In::Announced(Ok(())) => {}
            // Nothing for the core to decide: the addresses are held, only the
            // routers' view may stay stale until their entries expire.
            In::Announced(Err(e)) => self.hub.publish("resource_error", e),
            In::Replication(device) => self.replication(device),
            In::Resolved(r, reply) => self.resolved(r, reply),
            In::Forced(r, reply) => self.forced(r, reply),
            In::ConfigCommitted => {
                if let Err(e) = self.reload_config() {
                    self.hub.publish("config", e);
                }
            }
            In::Control(call, reply) => self.control(call, reply),
            In::UpdateTrial(p) => self.trial_begins(p),
        }
    }

    fn fenced(&mut self, r: Result<String, (bool, String)>) {
        let now = self.clock.now();
        match r {
            Ok(text) => {
                self.hub.publish("fence", text);
                self.core.handle(
                    now,
                    Input::FenceResult(tandem_core::FenceResult::PoweredOff),
                );
            }
            Err((timed_out, text)) => {
                self.hub.publish("fence", text.clone());
                let r = if timed_out {
                    tandem_core::FenceResult::TimedOut
                } else {
                    tandem_core::FenceResult::Failed(&text)
                };
                self.core.handle(now, Input::FenceResult(r));
            }
        }
    }
}
