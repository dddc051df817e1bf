//! clusterd's event loop: the IO shell around [`tandem_core::Core`].
//!
//! One current-thread tokio runtime owns the core. UDP sockets are tokio sockets; the
//! serial port (blocking, serialport crate) has a reader and a writer thread; ICMP
//! replies are read on the loop's thread like the UDP frames. Everything inbound
//! reaches the loop through channels, so the core is only ever touched from the
//! loop. The loop's timer is a timerfd (see [`clock`]).
//!
//! One job a file: [`core_loop`] (take an input, hand it to the core, then
//! [`act`] on its outputs), the inputs heard from outside ([`inputs`], [`udp`],
//! [`serial`]), control requests ([`control`]) and the status ([`status`]), the
//! replicated data area ([`replica`]), the configuration ([`config`]), events
//! ([`hub`], [`describe`]), the way out ([`leave`]).
//!
//! ## Bounded queues into the loop
//!
//! - What is heard from outside (heartbeat frames from the serial cable, the
//!   crossover and the LAN, serial line noise, ping replies) goes through
//!   [`inputs::Inputs`], a queue of [`inputs::FRAME_QUEUE`] inputs per source.
//!   Readers never wait for it: when a source's queue is full, the input is dropped
//!   and counted for that source (status `dropped`, and an `input_dropped` event when
//!   dropping starts and when it has stopped). Anybody on the LAN can send datagrams
//!   faster than the loop checks them; this bounds what that costs, no reader thread
//!   ever blocks, and a flood on one path leaves the other paths' queues free.
//! - Results of actions (chain up or down, fence, announce, force-primary,
//!   split-brain resolution), the replication's state, committed configurations and
//!   control requests go through [`In`], a queue of [`RESULTS_QUEUE`] whose senders
//!   are tasks that wait for room: none of these is ever dropped, and a flood of
//!   frames cannot crowd them out (the loop picks at random among the queues that
//!   have something).
//!
//! The loop itself never sends on any of these queues, so a full one cannot stall it.

mod act;
mod backup_schedule;
mod clock;
mod config;
mod control;
mod core_loop;
mod describe;
mod hub;
mod inputs;
mod leave;
mod replica;
mod rolling;
mod serial;
mod status;
mod support;
mod timesync;
mod udp;
mod update;
mod update_check;
mod ves;

use std::sync::Arc;

use anyhow::Context;
use tandem_api::Reply;
use tokio::sync::{Mutex as AsyncMutex, mpsc, oneshot};

pub(crate) use clock::realtime_thread;

use crate::admin::Admin;
use crate::confsync::SyncSetup;
use crate::control::ClusterCall;
use crate::hw::HwConfig;
use crate::mail::MailSettings;
use crate::net::Pinger;
use crate::resources::Chain;
use crate::settings::Settings;
use clock::{Clock, Timer};
use core_loop::Shell;
use inputs::{FRAME_QUEUE, Heard, Inputs};

/// Results and requests queued for the loop. Their senders wait for room, so the size
/// only decides when they start waiting: one chain action, one announce, one fence,
/// one force-primary or resolution at a time, the replication's state each second, and
/// at most [`crate::control::MAX_CONNECTIONS`] control requests (one per connection)
/// fit without any waiting.
const RESULTS_QUEUE: usize = 64 + crate::control::MAX_CONNECTIONS;

/// What reaches the loop besides what is heard from outside (see the module comment).
enum In {
    ChainUp(Result<(), String>),
    ChainDown(Result<(), String>),
    /// A fence ended: the BMC's answer, or why it failed (and whether it ran out of time).
    Fenced(Result<String, (bool, String)>),
    Announced(Result<(), String>),
    Control(ClusterCall, oneshot::Sender<Reply>),
    /// The replication device's state, every second (`None`: not set up or unreadable).
    Replication(Option<crate::drbd::DeviceStatus>),
    /// A configuration was committed on this node (by the other node's offer).
    ConfigCommitted,
    /// DRBD was told to take this node's copy as current (operator's force-primary).
    Forced(Result<(), String>, oneshot::Sender<Reply>),
    /// This node's part of a split-brain resolution ran (what was done, or why not).
    Resolved(Result<String, String>, oneshot::Sender<Reply>),
    /// This boot is the first of a newly installed system: its trial begins.
    UpdateTrial(crate::update::record::Pending),
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
    let timer = Timer::new().context("creating the loop's timer")?;
    let (core, generation, peer_generation) = core_loop::new_core(&settings, &clock)?;
    let (tx, rx) = mpsc::channel::<In>(RESULTS_QUEUE);
    let (inputs, heard) = Inputs::new(FRAME_QUEUE);
    let hub = hub::start(&settings, mail);
    if let Err(e) = realtime {
        hub.publish(
            "warning",
            format!("running without real-time priority ({e}): a busy node may delay heartbeats"),
        );
    }
    // Started before any socket so a bad scenario file changes nothing.
    let (hw_snapshot, _hw_poller) = hub::start_hw(&hw, &hub)?;
    let replication_line = replica::watch(settings.replication.clone(), tx.clone(), &hub);
    let time_watch = timesync::watch(settings.time_sync.clone(), &hub);
    let support = support::start(settings.support.clone(), sync.clone(), &hub);
    let udp = udp::start(&settings, &inputs).await?;
    let serial_tx = match &settings.serial {
        Some(s) => Some(serial::start(
            &s.device,
            s.baud,
            inputs.clone(),
            Arc::clone(&hub),
        )?),
        None => None,
    };
    let pinger = start_pinger(&settings, &inputs)?;
    ves::connect(&admin, &hub);
    let updates = update::Updates {
        job: admin.update.clone(),
        init_pid: admin.init_pid,
        trial: None,
    };
    let (rolling_tx, rolling_rx) = mpsc::channel(4);
    let rolling_handle = crate::update::rolling::Handle::new(rolling_tx);
    let service = control::serve(
        &settings,
        sync.clone(),
        tx.clone(),
        &hub,
        &hw_snapshot,
        (support, rolling_handle.clone()),
        admin,
    )?;
    rolling::start(
        sync.clone().map(|sync| rolling::Ctx {
            job: updates.job.clone(),
            service: Arc::clone(&service),
            tx: tx.clone(),
            hub: Arc::clone(&hub),
            sync,
            node: settings.node,
            clock: Clock::start(),
            dir: std::path::PathBuf::from(crate::update::peer::CLIENT_DIR),
        }),
        rolling_rx,
    );
    let running_cfg = config::start(&settings, sync.as_ref(), &tx, &hub).await?;
    let (revision, revision_rx) =
        tokio::sync::watch::channel(running_cfg.as_ref().map_or(0, |c| c.cluster.revision));
    backup_schedule::start(
        sync.clone(),
        Arc::clone(&service),
        tx.clone(),
        Arc::clone(&hub),
        revision_rx,
    );
    update_check::start(
        sync.clone(),
        updates.job.clone(),
        tx.clone(),
        Arc::clone(&hub),
    );
    tokio::spawn(inputs::report_drops(inputs.clone(), Arc::clone(&hub)));

    let mut shell = Shell {
        split_brain: replica::SplitBrain::load(&settings.state_dir),
        core,
        clock,
        hub,
        tx,
        inputs,
        chain_names: chain.names(),
        chain: Arc::new(AsyncMutex::new(chain)),
        udp,
        serial_tx,
        pinger,
        peer_generation,
        sync,
        running_cfg,
        bad_requests: Arc::clone(&service.bad_requests),
        service,
        hw_snapshot,
        replication_line,
        clock_line: time_watch.line,
        time_servers: time_watch.servers,
        revision,
        leaving_until: None,
        updates,
        settings,
    };
    shell.started(generation);
    update::start(
        shell.updates.job.clone(),
        shell.tx.clone(),
        Arc::clone(&shell.hub),
        rolling_handle,
    );
    shell.run(shutdown, timer, heard, rx).await;
    shell.leave().await;
    Ok(())
}

/// The ICMP socket for the ping nodes, when there are any; replies are heard inputs.
///
/// # Errors
/// The ICMP socket cannot be opened.
fn start_pinger(settings: &Settings, inputs: &Inputs) -> anyhow::Result<Option<Pinger>> {
    if settings.ping_nodes.is_empty() {
        return Ok(None);
    }
    let inputs = inputs.clone();
    Pinger::start(settings.ping_nodes.clone(), move |i| {
        inputs.offer(Heard::PingReply(i))
    })
    .map(Some)
    .context("opening the ICMP socket for ping nodes")
}

impl Shell {
    /// Says that clusterd runs, and which heartbeat paths are disabled.
    fn started(&self, generation: u64) {
        self.hub.publish(
            "started",
            format!(
                "clusterd {} started, generation {generation}",
                self.settings.node.name()
            ),
        );
        for w in self.core.status(self.clock.now()).warnings {
            if w.contains("disabled") {
                self.hub.publish("warning", w);
            }
        }
    }
}
