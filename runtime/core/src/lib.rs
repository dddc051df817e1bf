//! Sans-IO cluster core of tandem: who runs the services, decided on each node.
//!
//! What it does: keeps per-path peer liveness (keepalive, warntime, deadtime,
//! initdead) on the three heartbeat paths of R1.3, authenticates and de-duplicates the
//! peer's heartbeats (replay window per path and per boot generation), tracks ping-node
//! reachability (R4.2), and decides roles: start-up, automatic takeover from a silent
//! peer (R4.1), the ping-node handover, manual switchover (release on the active first,
//! then acquire on the passive), no automatic failback, and split-brain detection and
//! resolution (R4.5). It tells its caller what to do through [`Output`]s: frames to
//! send per path, pings to send, resource chain forward/backward, events.
//!
//! What it does not do: no sockets, no clock, no threads. The caller passes `now`
//! ([`Instant`]) to every call, feeds received bytes, ping replies and resource-chain
//! results in through [`Core::handle`], calls [`Core::handle_timeout`] at
//! [`Core::poll_timeout`], and drains [`Core::poll_output`]. It decides to fence the
//! peer ([`Output::Fence`]) but does not talk to a BMC, and does not run resources.
//!
//! Fencing (R4.5): with [`FencePolicy::Required`] a node that would take over from a
//! peer silent on every path (or never heard at start-up, or stuck after a failed
//! release) first asks for the peer to be powered off and takes over only on
//! [`FenceResult::PoweredOff`], or after the operator confirmed the peer is down
//! ([`Core::confirm_fence`]) when the fence failed. A switchover, a handover after a
//! clean release and the ping-node handover never fence: the peer is heard saying it
//! released. Only a node about to take over fences; the active node never does. When
//! both nodes would fence at once (neither holds the resources, all paths lost
//! together), `node1` waits [`FencePolicy::Required`]'s `node1_delay` first, so
//! `node2`'s fence lands before `node1`'s is sent: exactly one node is powered off.
//! A node that starts without hearing its peer fences only after initdead and at least
//! deadtime + `node1_delay` + the fence timeout: a fence the peer began against it (it
//! went silent, then restarted into a partition) lands before its own is sent.
//!
//! Announcements: acquiring the resources announces them (the shell's gratuitous
//! ARPs); the core asks for them again ([`Output::Announce`]) when a split brain ends in
//! this node's favour, when the peer is heard again after every path was lost, and,
//! with [`Params::garp_refresh`] set, every refresh interval while active (a deadline
//! like the others; none while passive or releasing). Any announcement restarts the
//! interval, so two never come close together.
//!
//! Freshness of this node's copy: the replication layer reports the device
//! ([`Input::Replica`]); the core decides whether the copy may be promoted. A secondary
//! whose replication link went away while the peer kept being heard is stale: the core
//! says so ([`Event::CopyStale`]) and asks the shell to record it where DRBD keeps it
//! ([`Output::Outdate`]), so a restart or reboot still refuses to promote it.
//!
//! Fresh frames: every frame echoes the receiver's boot generation as the sender last
//! heard it. A frame that echoes this node's *current* generation was sent after the
//! peer heard this boot; any other authenticated frame (the peer has not heard this boot
//! yet, or a replay captured before it: a freshly started node has no replay state for
//! the peer's generation and accepts it) is stale. Stale frames count for liveness and
//! may make this node step back (become passive, resolve a split brain by releasing),
//! but this node acts on the peer's handover and switchover requests and on its role
//! (electing itself, the ping-node handover) only from fresh frames. So a captured
//! "passive, handing over" frame replayed at a restart cannot make a second node active.
//!
//! Split-brain policy (stated, not silent): when a node holding the resources hears
//! the peer also holding them, both report [`Event::SplitBrain`]; the node whose
//! heartbeats show more reachable ping nodes stays active, on a tie `node1` stays; the
//! other releases. Data reconciliation belongs to the replication layer.
//!
//! Start-up rule: a node that hears no peer within initdead takes over only if its data
//! is known good; when both nodes are up and neither holds the resources, the one with
//! data known good is elected (both good: `node1`), after hearing the peer for two
//! keepalives so a stale frame cannot elect a node the peer is already replacing.
//! The ping-node handover waits three keepalives so that a switch failure seen by both
//! nodes a moment apart does not move the services.
//!
//! Also here, in the same shape: the restart rule of a VE ([`ve_health`]: backoff,
//! giving up, health checks).
//!
//! Limitations: two nodes only; the peer's configuration digest is compared and a
//! mismatch reported, but a mismatching peer still counts as alive (ignoring it would
//! make both nodes active). Start-up needs the replication layer's "data known good"
//! fact ([`Input::DataGood`]); until it is given, a node never takes over alone.
#![warn(missing_docs)]

mod backup_schedule;
mod clock_watch;
pub mod rolling;
pub mod support;
mod time;
mod trial;
mod update_check;
pub mod ve_health;

use std::collections::VecDeque;
use std::time::Duration;

pub use backup_schedule::BackupSchedule;
pub use clock_watch::{ClockAlert, ClockWatch};
pub use rolling::{PeerSeen, Phase, Roles, Rolling, RollingRule, RollingStep};
pub use support::{SupportAction, SupportTunnel};
pub use tandem_proto::{
    ClusterKey, DIGEST_LEN, DecodeError, FRAME_LEN, Frame, NodeId, PathId, ResourceState, Role,
};
pub use time::Instant;
pub use trial::{Trial, TrialHealth, TrialRule, TrialStep};
pub use update_check::UpdateCheck;

/// A frame this far behind the newest sequence seen on any path is stale even if its
/// own path has not seen it (a delayed or replayed copy on a path that was down).
pub const REPLAY_WINDOW: u64 = 8;

/// Minimum spacing of `FrameRejected` events per path, so an attacker flooding the
/// external LAN fills counters, not the event log.
const REJECT_EVENT_SPACING: Duration = Duration::from_secs(5);

/// How long after the replication link went away a heartbeat from the peer may still
/// have been sent before it (frames in flight, the replication poll's delay).
pub const STALE_MARGIN: Duration = Duration::from_secs(2);

/// Timing and topology of the cluster as the core needs it, mapped by the daemon from
/// the configuration.
#[derive(Debug, Clone)]
pub struct Params {
    /// This node.
    pub node: NodeId,
    /// Interval between heartbeats (and pings).
    pub keepalive: Duration,
    /// Silence after which a path is reported late.
    pub warntime: Duration,
    /// Silence after which a path is down; the peer is dead when every enabled path is.
    pub deadtime: Duration,
    /// At start-up, how long to wait for the peer before acting alone.
    pub initdead: Duration,
    /// Enabled paths, indexed by [`PathId::index`].
    pub paths_enabled: [bool; 3],
    /// Number of configured ping nodes (0 disables the ping-node rule).
    pub ping_nodes: u8,
    /// A ping node is unreachable after this long without a reply.
    pub ping_dead: Duration,
    /// SHA-256 of this node's cluster configuration.
    pub config_digest: [u8; DIGEST_LEN],
    /// Boot generation; non-zero and greater than any previous run's (the daemon
    /// persists a counter and takes the larger of it plus one and the wall-clock time
    /// in microseconds).
    pub generation: u64,
    /// Whether a silent peer is powered off before this node takes over.
    pub fencing: FencePolicy,
    /// While active, announce the resources again this often ([`Output::Announce`]
    /// with [`AnnounceReason::Refresh`]); `None`: only on takeover and the events that
    /// call for it.
    pub garp_refresh: Option<Duration>,
}

/// Whether a silent peer must be fenced before a takeover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FencePolicy {
    /// No takeover from a silent peer until it was powered off through its BMC, or
    /// the operator confirmed it is down after a failed fence.
    Required {
        /// How long `node1` waits before fencing, so that when both nodes want to
        /// fence at the same moment `node2`'s fence wins (deterministic tiebreak).
        /// Longer than a fence takes.
        node1_delay: Duration,
        /// The shell's bound on one fence (power off, then status until it reads
        /// off). A node that starts without hearing its peer waits for a fence the peer
        /// may already have begun against it to land before it fences in turn.
        fence_timeout: Duration,
    },
    /// Take over without fencing: two active nodes are possible when every path is
    /// lost while both run.
    Off,
}

/// What became of a fence this node asked for ([`Output::Fence`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceResult<'a> {
    /// The peer's BMC powered it off and its chassis status reads off.
    PoweredOff,
    /// The BMC refused or could not be reached; why, in the BMC client's words.
    Failed(&'a str),
    /// The chassis did not read off within the fence timeout.
    TimedOut,
}

/// The state of this node's replicated device, as DRBD reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    /// This node's disk.
    pub disk: ReplicaDisk,
    /// Connected to the peer (or resynchronising with it).
    pub connected: bool,
    /// This node's device is primary.
    pub primary: bool,
    /// Connected, and the peer's device is secondary: the peer runs and holds no
    /// data (DRBD refuses a second primary while the two are connected).
    pub peer_secondary: bool,
}

/// This node's disk, in the terms that matter for promotion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaDisk {
    /// Current.
    UpToDate,
    /// Recorded as older than the peer's (DRBD keeps this across restarts).
    Outdated,
    /// Anything else: inconsistent, only consistent (after a restart, before the
    /// peer was seen), diskless, failed.
    Other,
}

/// Why [`Params`] were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// Keepalive of zero.
    #[error("keepalive must be positive")]
    ZeroKeepalive,
    /// Deadtime too short to survive a lost heartbeat.
    #[error("deadtime {deadtime:?} must be at least twice keepalive {keepalive:?}")]
    DeadtimeTooShort {
        /// Deadtime given.
        deadtime: Duration,
        /// Keepalive given.
        keepalive: Duration,
    },
    /// Warntime outside keepalive..deadtime.
    #[error("warntime {warntime:?} must lie between keepalive and deadtime")]
    BadWarntime {
        /// Warntime given.
        warntime: Duration,
    },
    /// Initdead shorter than deadtime.
    #[error("initdead {initdead:?} must be at least deadtime")]
    InitdeadTooShort {
        /// Initdead given.
        initdead: Duration,
    },
    /// Every path disabled.
    #[error("at least one heartbeat path must be enabled")]
    NoPath,
    /// Generation zero means "not heard" on the wire.
    #[error("boot generation must not be zero")]
    ZeroGeneration,
    /// A refresh interval of zero (off is `None`).
    #[error("gratuitous ARP refresh interval must be positive (off is none)")]
    ZeroGarpRefresh,
}

impl Params {
    /// Checks the timing rules the core relies on.
    ///
    /// # Errors
    /// The first rule broken.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.keepalive.is_zero() {
            return Err(ParamsError::ZeroKeepalive);
        }
        if self.deadtime < self.keepalive * 2 {
            return Err(ParamsError::DeadtimeTooShort {
                deadtime: self.deadtime,
                keepalive: self.keepalive,
            });
        }
        if self.warntime < self.keepalive || self.warntime > self.deadtime {
            return Err(ParamsError::BadWarntime {
                warntime: self.warntime,
            });
        }
        if self.initdead < self.deadtime {
            return Err(ParamsError::InitdeadTooShort {
                initdead: self.initdead,
            });
        }
        if !self.paths_enabled.iter().any(|e| *e) {
            return Err(ParamsError::NoPath);
        }
        if self.generation == 0 {
            return Err(ParamsError::ZeroGeneration);
        }
        if self.garp_refresh.is_some_and(|r| r.is_zero()) {
            return Err(ParamsError::ZeroGarpRefresh);
        }
        Ok(())
    }
}

/// Something that happened outside and that the core must know.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Bytes received on a path (one datagram, or one deframed serial chunk).
    Frame {
        /// Path it came in on.
        path: PathId,
        /// Raw bytes.
        bytes: &'a [u8],
    },
    /// The serial deframer discarded a chunk (line noise).
    LineNoise {
        /// Path (the serial one).
        path: PathId,
    },
    /// A ping node answered.
    PingReply {
        /// Index of the ping node in configuration order.
        index: usize,
    },
    /// This node's data is known good or not, without a replicated device to judge
    /// (a node without a data area gives `true` once: it has nothing to be stale).
    DataGood(bool),
    /// The replicated device's state (every poll): the core derives "data known
    /// good" from it and from when the peer was last heard.
    Replica(Replica),
    /// What became of the fence asked for with [`Output::Fence`].
    FenceResult(FenceResult<'a>),
    /// The resource chain could not be run backwards: this node may still hold the
    /// data. It stays [`Role::Releasing`] with resources failed; the peer takes over
    /// only after fencing it.
    ReleaseFailed,
    /// The resource chain finished running forward.
    ResourcesUp,
    /// The resource chain finished running backwards.
    ResourcesDown,
    /// A resource failed while running the chain.
    ResourcesFailed,
    /// The cluster configuration changed on this node: heartbeats from now on carry
    /// this digest, and a peer that still differs is reported again.
    ConfigDigest([u8; DIGEST_LEN]),
    /// The highest boot generation of the peer heard before this start (kept by the
    /// daemon across restarts): frames of an older generation are replays from now on,
    /// also before the peer's current generation is heard. Give it before the first
    /// frame; it only ever raises the floor.
    PeerGenerationFloor(u64),
}

/// Why a node takes over or gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Peer silent on every enabled path for deadtime.
    PeerDead,
    /// Peer not heard within initdead at start-up (data known good).
    StartAlone,
    /// Both nodes up, nobody active; this node is the one the start-up rule picks.
    StartElected,
    /// Operator switchover.
    Switchover,
    /// Active reaches no ping node while the passive reaches one (R4.2).
    PingNodes,
    /// Split brain resolved in the peer's favour.
    SplitBrain,
    /// The peer released the resources for this node.
    Handover,
    /// A handover was not taken up by the peer; this node takes the services back.
    HandoverNotTaken,
    /// The peer could not release its resources and was fenced.
    PeerReleaseFailed,
}

impl Reason {
    /// Human-readable explanation.
    #[must_use]
    pub fn text(self) -> &'static str {
        match self {
            Reason::PeerDead => "peer silent on every enabled path for deadtime",
            Reason::StartAlone => "peer not heard within initdead and data known good",
            Reason::StartElected => "start-up rule elected this node",
            Reason::Switchover => "operator switchover",
            Reason::PingNodes => "active node reaches no ping node, passive reaches one",
            Reason::SplitBrain => "split brain resolved in the peer's favour",
            Reason::Handover => "peer handed the services over",
            Reason::HandoverNotTaken => "peer did not take the services, taking them back",
            Reason::PeerReleaseFailed => "peer could not release its resources and was fenced",
        }
    }
}

/// Why a node that might act stays where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// Within initdead, peer not heard yet (with fencing, at least until a fence the
    /// peer may have begun against this node would have landed).
    InitDead,
    /// Peer silent but this node's replicated data is not known good.
    DataNotGood,
    /// Both nodes up, nobody active, neither has data known good.
    NeitherDataGood,
    /// `node1` waits before fencing (tiebreak).
    FenceDelay,
    /// Fencing the peer before taking over.
    Fencing,
    /// The fence failed: the peer may still run. The operator checks it and confirms.
    FenceFailed,
    /// The peer cannot release its resources, and fencing is off.
    PeerReleaseFailed,
    /// This node's daemon is stopping: it takes nothing over.
    Leaving,
}

impl WaitReason {
    /// Human-readable explanation.
    #[must_use]
    pub fn text(self) -> &'static str {
        match self {
            WaitReason::InitDead => {
                "waiting for the peer (initdead; with fencing, until a fence the peer may have begun against this node has landed)"
            }
            WaitReason::DataNotGood => {
                "peer silent, but replicated data is not known good: not taking over"
            }
            WaitReason::NeitherDataGood => {
                "no node has replicated data known good: nobody takes over"
            }
            WaitReason::FenceDelay => "peer silent: waiting the tiebreak delay before fencing it",
            WaitReason::Fencing => {
                "peer silent: powering it off through its BMC before taking over"
            }
            WaitReason::FenceFailed => {
                "peer silent and could not be powered off: check it and confirm"
            }
            WaitReason::PeerReleaseFailed => {
                "peer could not release its resources and fencing is off: check it"
            }
            WaitReason::Leaving => "this node's cluster daemon is stopping: it takes nothing over",
        }
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Did not decode or authenticate.
    Decode(DecodeError),
    /// Authenticated but sent by this node (a loop or a reflection).
    OwnFrame,
    /// Authenticated but marked for another path (miswiring or re-injection).
    WrongPath(PathId),
    /// An old generation or sequence number: a replay or a very late copy.
    Replay,
}

/// Notable things, for the log, the control API and notifications (R8.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A path delivers heartbeats again (or for the first time).
    PathUp(PathId),
    /// A path has been silent for warntime.
    PathLate(PathId),
    /// A path has been silent for deadtime.
    PathDown(PathId),
    /// The peer is heard on at least one path.
    PeerAlive,
    /// The peer is silent on every enabled path.
    PeerDead,
    /// The peer restarted (new boot generation).
    PeerRestarted,
    /// Role change with the reason when it is a decision.
    RoleChanged {
        /// Previous role.
        from: Role,
        /// New role.
        to: Role,
        /// Why, when the core decided it.
        reason: Option<Reason>,
    },
    /// This node cannot act and says why.
    Waiting(WaitReason),
    /// The number of reachable ping nodes changed.
    PingReach {
        /// Reachable now.
        reach: u8,
        /// Configured.
        total: u8,
    },
    /// The peer runs another configuration.
    ConfigMismatch,
    /// Both nodes hold the resources.
    SplitBrain {
        /// Node that stays active under the policy.
        survivor: NodeId,
    },
    /// A frame was refused (rate-limited; every refusal is counted).
    FrameRejected {
        /// Path.
        path: PathId,
        /// Why.
        why: Rejection,
    },
    /// A switchover request was accepted.
    SwitchoverStarted,
    /// The peer did not take over after a handover within deadtime.
    HandoverNotTaken,
    /// The resource chain failed.
    ResourcesFailed,
    /// The resource chain could not be run backwards; this node may still hold data.
    ReleaseFailed,
    /// Fencing of the peer asked for.
    FenceStarted,
    /// The peer was powered off.
    Fenced,
    /// The peer could not be powered off (why); no takeover until the operator
    /// confirms it is down.
    FenceFailed {
        /// The peer.
        peer: NodeId,
        /// Why, in the BMC client's words.
        why: String,
    },
    /// The operator confirmed the silent peer is down.
    FenceConfirmed,
    /// This node's copy is stale: replication was lost while the peer kept running.
    CopyStale,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send this frame on this path.
    Transmit {
        /// Path.
        path: PathId,
        /// Encoded, signed frame.
        frame: [u8; FRAME_LEN],
    },
    /// Send one echo request to the ping node with this index.
    Ping {
        /// Index in configuration order.
        index: usize,
    },
    /// Run the resource chain forward; answer with [`Input::ResourcesUp`] or
    /// [`Input::ResourcesFailed`].
    Acquire,
    /// Run the resource chain backwards; answer with [`Input::ResourcesDown`].
    Release,
    /// Announce the held resources again (gratuitous ARP for the service addresses),
    /// for the reason given. Only while this node holds them; no answer is expected.
    Announce(AnnounceReason),
    /// Power the peer off through its BMC (then read its chassis status until off);
    /// answer with [`Input::FenceResult`]. Exactly one answer per fence.
    Fence,
    /// Record this node's copy as outdated where the replication layer keeps it
    /// (`drbdadm outdate`), so it is refused after a restart too. No answer.
    Outdate,
    /// Report this.
    Event(Event),
}

/// Why the held resources are announced again ([`Output::Announce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceReason {
    /// A split brain has just been resolved in this node's favour: routers may still
    /// point at the peer.
    SplitBrainOver,
    /// The peer is heard again after every path was lost: routers may have learnt
    /// another owner meanwhile.
    PeerBack,
    /// The periodic refresh ([`Params::garp_refresh`]).
    Refresh,
}

impl AnnounceReason {
    /// One line for the event log.
    #[must_use]
    pub fn text(self) -> &'static str {
        match self {
            AnnounceReason::SplitBrainOver => {
                "split brain over: announcing the service addresses again"
            }
            AnnounceReason::PeerBack => {
                "peer heard again after every path was lost: announcing the service addresses again"
            }
            AnnounceReason::Refresh => "periodic refresh of the service addresses",
        }
    }
}

/// Why a switchover request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SwitchoverError {
    /// The peer is not heard: nobody to hand over to.
    #[error("peer is not alive")]
    PeerNotAlive,
    /// Neither node is active.
    #[error("no node is active")]
    NoActive,
    /// The passive node's data is not known good.
    #[error("passive node's replicated data is not known good")]
    PassiveDataNotGood,
    /// A role change is already under way.
    #[error("a role change is already in progress")]
    Busy,
}

/// Why an operator's confirmation that the peer is down was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    /// No failed fence is waiting for a confirmation.
    #[error("no failed fence waits for a confirmation")]
    NothingToConfirm,
    /// The peer is heard again: it is not down.
    #[error("the peer is heard again: it is not down")]
    PeerAlive,
}

/// Why an operator's "start from this node's copy" was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForceError {
    /// The peer is heard: its copy is there; use a switchover.
    #[error("the other node is heard: its copy is not lost (use a switchover)")]
    PeerAlive,
    /// This node already holds the resources.
    #[error("this node already holds the resources")]
    Holding,
}

/// Counters of refused or odd input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames accepted.
    pub accepted: u64,
    /// Frames that failed authentication.
    pub bad_mac: u64,
    /// Frames that were malformed (size, magic, version, fields).
    pub malformed: u64,
    /// Replayed or stale frames.
    pub replayed: u64,
    /// Frames from this node itself or for another path.
    pub misdirected: u64,
    /// Serial chunks discarded as line noise.
    pub line_noise: u64,
    /// Frames whose configuration digest differed from ours.
    pub config_mismatch: u64,
}

/// Status of one path, for the control API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathStatus {
    /// Path.
    pub path: PathId,
    /// Enabled in the configuration.
    pub enabled: bool,
    /// Delivering heartbeats (heard within deadtime).
    pub up: bool,
    /// Silent for warntime while still up.
    pub late: bool,
    /// Time since the last accepted frame on this path.
    pub last_heard_ago: Option<Duration>,
}

/// What this node knows about the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    /// Heard on at least one path.
    pub alive: bool,
    /// Last announced role.
    pub role: Option<Role>,
    /// Last announced resource state.
    pub resources: Option<ResourceState>,
    /// Last announced data-good flag.
    pub data_good: bool,
    /// Last announced ping reachability (reach, total).
    pub ping: Option<(u8, u8)>,
    /// Same configuration digest as ours (None before the first frame).
    pub config_matches: Option<bool>,
}

/// Snapshot for `tandem status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub node: NodeId,
    /// Current role.
    pub role: Role,
    /// Resource chain state.
    pub resources: ResourceState,
    /// Why the node is waiting, if it is.
    pub waiting: Option<WaitReason>,
    /// Data known good.
    pub data_good: bool,
    /// Peer view.
    pub peer: PeerStatus,
    /// Each path.
    pub paths: [PathStatus; 3],
    /// Reachable ping nodes.
    pub ping_reach: u8,
    /// Configured ping nodes.
    pub ping_total: u8,
    /// Per ping node: reachable.
    pub ping_nodes: Vec<bool>,
    /// Refusal counters.
    pub counters: Counters,
    /// Warnings for the operator.
    pub warnings: Vec<String>,
    /// The fence of the peer, when one is under way, done or failed.
    pub fence: Option<FenceStatus>,
    /// Fencing is configured off.
    pub fencing_off: bool,
}

/// Where the fencing of the peer stands, for the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceStatus {
    /// `node1` waits the tiebreak delay.
    Delay,
    /// Asked for, no result yet.
    InProgress,
    /// Powered off.
    PoweredOff,
    /// Failed (why); waiting for the operator's confirmation.
    Failed(String),
    /// The operator confirmed the peer is down.
    Confirmed,
}

/// The fencing of the peer (see the crate docs).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fence {
    Idle,
    /// `node1`'s tiebreak wait.
    Delay {
        until: Instant,
    },
    InProgress,
    /// Powered off at `at`: the peer counts as dead until heard after it.
    Done {
        at: Instant,
    },
    /// Failed at `at`, waiting for a confirmation or for the peer to be heard again.
    Failed {
        at: Instant,
        why: String,
    },
    Confirmed {
        at: Instant,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct PathState {
    last_heard: Option<Instant>,
    last_seq: Option<u64>,
    up: bool,
    late: bool,
    last_reject_event: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct PeerView {
    generation: u64,
    sequence: u64,
    frame: Frame,
    /// The frame echoes this node's current generation (see the crate docs).
    fresh: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRelease {
    /// Stay passive.
    Stay,
    /// Ask the peer to take over.
    HandOver,
}

/// The cluster core of one node. See the crate documentation.
#[derive(Debug)]
pub struct Core {
    p: Params,
    key: ClusterKey,
    started: Instant,
    role: Role,
    resources: ResourceState,
    data_good: bool,
    sequence: u64,
    next_send: Instant,
    next_ping: Instant,
    paths: [PathState; 3],
    peer: Option<PeerView>,
    /// Peer generations below this are replays (see [`Input::PeerGenerationFloor`]).
    peer_floor: u64,
    peer_alive: bool,
    /// Since when the peer has been alive without interruption.
    peer_alive_since: Option<Instant>,
    ping_last: Vec<Option<Instant>>,
    ping_reach: u8,
    waiting: Option<WaitReason>,
    after_release: AfterRelease,
    /// Passive side: asking the active for a switchover until this instant.
    want_switchover_until: Option<Instant>,
    /// Released for the peer; flag it until the peer takes over or this instant.
    handover_until: Option<Instant>,
    /// Active side: the peer's switchover request was already acted upon.
    peer_request_seen: bool,
    config_mismatch_reported: bool,
    split_brain_reported: bool,
    /// On its way out ([`Core::leave`]): takes nothing over.
    leaving: bool,
    /// Since when the ping-node handover condition holds.
    ping_rule_since: Option<Instant>,
    /// The fencing of the peer.
    fence: Fence,
    /// Why this node takes over once the fence is done.
    fence_reason: Reason,
    /// The peer's boot generation when the fence was asked for.
    fence_peer_generation: Option<u64>,
    /// The replication link went away at this instant (and is still away).
    replica_disconnected_at: Option<Instant>,
    /// The last replica state said: connected, the peer's device secondary.
    replica_peer_secondary: bool,
    /// The last replica state said: this node's device is primary.
    replica_primary: bool,
    /// The last replica state said: connected, and the peer's device not (known to
    /// be) secondary.
    replica_peer_primary: bool,
    /// This node's copy is stale (see [`Input::Replica`]).
    copy_stale: bool,
    /// The peer was lost on every path after having been heard.
    peer_lost: bool,
    /// While active with the refresh on: when the resources are announced next.
    next_refresh: Option<Instant>,
    last_now: Instant,
    counters: Counters,
    out: VecDeque<Output>,
}

impl Core {
    /// A core starting at `now` in role [`Role::Starting`].
    ///
    /// # Errors
    /// [`ParamsError`] when the timings are inconsistent.
    pub fn new(now: Instant, p: Params, key: ClusterKey) -> Result<Core, ParamsError> {
        p.validate()?;
        let pings = usize::from(p.ping_nodes);
        Ok(Core {
            p,
            key,
            started: now,
            role: Role::Starting,
            resources: ResourceState::Stopped,
            data_good: false,
            sequence: 0,
            next_send: now,
            next_ping: now,
            paths: [PathState::default(); 3],
            peer: None,
            peer_floor: 0,
            peer_alive: false,
            peer_alive_since: None,
            ping_last: vec![None; pings],
            ping_reach: 0,
            waiting: None,
            after_release: AfterRelease::Stay,
            want_switchover_until: None,
            handover_until: None,
            peer_request_seen: false,
            config_mismatch_reported: false,
            split_brain_reported: false,
            leaving: false,
            ping_rule_since: None,
            fence: Fence::Idle,
            fence_reason: Reason::PeerDead,
            fence_peer_generation: None,
            replica_disconnected_at: None,
            replica_peer_secondary: false,
            replica_primary: false,
            replica_peer_primary: false,
            copy_stale: false,
            peer_lost: false,
            next_refresh: None,
            last_now: now,
            counters: Counters::default(),
            out: VecDeque::new(),
        })
    }

    /// This node's current role.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer's boot generation last heard (the daemon keeps the highest across
    /// restarts and gives it back as [`Input::PeerGenerationFloor`]).
    #[must_use]
    pub fn peer_generation(&self) -> Option<u64> {
        self.peer.map(|pv| pv.generation)
    }

    /// Refusal counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`Core::handle_timeout`] must be called next.
    #[must_use]
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_send.min(self.next_ping);
        let mut consider = |at: Instant| {
            // Deadlines already handled would make the caller spin.
            if at > self.last_now {
                t = t.min(at);
            }
        };
        for (i, ps) in self.paths.iter().enumerate() {
            if let (true, Some(h)) = (self.p.paths_enabled[i], ps.last_heard) {
                consider(h.saturating_add(self.p.warntime));
                consider(h.saturating_add(self.p.deadtime));
            }
        }
        if self.role == Role::Starting {
            consider(self.started.saturating_add(self.p.initdead));
            consider(self.started.saturating_add(self.start_wait()));
        }
        for u in [self.handover_until, self.want_switchover_until]
            .into_iter()
            .flatten()
        {
            consider(u);
        }
        for l in self.ping_last.iter().flatten() {
            consider(l.saturating_add(self.p.ping_dead));
        }
        consider(self.started.saturating_add(self.p.ping_dead));
        if let Some(t) = self.peer_alive_since {
            consider(t.saturating_add(self.election_settle()));
        }
        if let Some(since) = self.ping_rule_since {
            consider(since.saturating_add(self.ping_rule_hold()));
        }
        if let Fence::Delay { until } = self.fence {
            consider(until);
        }
        if let Some(r) = self.next_refresh {
            consider(r);
        }
        t
    }

    /// Runs timers: sends heartbeats and pings when due and re-evaluates liveness and
    /// roles. Call at [`Core::poll_timeout`] (calling earlier or more often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        // Pings go out with the heartbeats, so that one wake-up serves both: a ping
        // sent before its time only refreshes reachability sooner.
        if now >= self.next_ping || now >= self.next_send {
            for index in 0..self.ping_last.len() {
                self.out.push_back(Output::Ping { index });
            }
            self.next_ping = now.saturating_add(self.p.keepalive);
        }
        self.evaluate(now);
        if now >= self.next_send {
            self.send_heartbeats(now);
        }
    }

    /// Feeds one input.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Frame { path, bytes } => {
                if !self.on_frame(now, path, bytes) {
                    // A refused frame changes nothing, not even timer order.
                    return;
                }
            }
            Input::LineNoise { .. } => self.counters.line_noise += 1,
            Input::PingReply { index } => {
                if let Some(slot) = self.ping_last.get_mut(index) {
                    *slot = Some(now);
                }
            }
            Input::DataGood(good) => self.data_good = good,
            Input::Replica(r) => self.on_replica(now, r),
            Input::FenceResult(r) => self.on_fence_result(now, r),
            Input::ReleaseFailed => {
                if self.role == Role::Releasing {
                    // Whatever the chain could not give back may still be held: keep
                    // saying so, so the peer does not take over without fencing.
                    self.resources = ResourceState::Failed;
                    self.after_release = AfterRelease::Stay;
                    self.emit(Event::ReleaseFailed);
                    self.next_send = now;
                }
            }
            Input::PeerGenerationFloor(g) => self.peer_floor = self.peer_floor.max(g),
            Input::ConfigDigest(digest) => {
                self.p.config_digest = digest;
                self.config_mismatch_reported = false;
            }
            Input::ResourcesUp => {
                if self.role == Role::Acquiring {
                    self.resources = ResourceState::Running;
                    self.set_role(now, Role::Active, None);
                }
            }
            Input::ResourcesDown => {
                if self.role == Role::Releasing {
                    self.resources = ResourceState::Stopped;
                    if self.after_release == AfterRelease::HandOver {
                        self.handover_until = Some(now.saturating_add(self.p.deadtime));
                    }
                    self.after_release = AfterRelease::Stay;
                    self.set_role(now, Role::Passive, None);
                }
            }
            Input::ResourcesFailed => {
                self.resources = ResourceState::Failed;
                self.emit(Event::ResourcesFailed);
                // A failed chain holds whatever it got; give it all back so the
                // peer (or an operator) can act. Releasing is idempotent for the chain.
                if self.role == Role::Acquiring || self.role == Role::Active {
                    self.start_release(now, AfterRelease::HandOver, None);
                }
            }
        }
        self.evaluate(now);
        if now >= self.next_send {
            self.send_heartbeats(now);
        }
    }

    /// This node is on its way out (its daemon stops: a shutdown, a restart). From now
    /// on it takes nothing over, whatever becomes of the peer: no takeover, no fence,
    /// not the services back after a handover the peer did not take. It goes on
    /// releasing what it holds (the shell hands the services over with
    /// [`Core::switchover`] first). A peer that dies meanwhile is left to whoever
    /// starts next.
    pub fn leave(&mut self, now: Instant) {
        self.leaving = true;
        self.evaluate(now);
    }

    /// Operator switchover, asked on either node. On the active node the release starts
    /// at once; on the passive node the request travels to the active in heartbeats.
    ///
    /// # Errors
    /// [`SwitchoverError`] when the cluster is not in a state to switch over.
    pub fn switchover(&mut self, now: Instant) -> Result<(), SwitchoverError> {
        let peer = self
            .peer
            .filter(|_| self.peer_alive)
            .ok_or(SwitchoverError::PeerNotAlive)?;
        match self.role {
            Role::Active => {
                if peer.frame.role != Role::Passive {
                    return Err(SwitchoverError::Busy);
                }
                if !peer.frame.data_good {
                    return Err(SwitchoverError::PassiveDataNotGood);
                }
                self.emit(Event::SwitchoverStarted);
                self.start_release(now, AfterRelease::HandOver, Some(Reason::Switchover));
            }
            Role::Passive => {
                if peer.frame.role != Role::Active {
                    return Err(if peer.frame.role.holds_resources() {
                        SwitchoverError::Busy
                    } else {
                        SwitchoverError::NoActive
                    });
                }
                if !self.data_good {
                    return Err(SwitchoverError::PassiveDataNotGood);
                }
                self.emit(Event::SwitchoverStarted);
                self.want_switchover_until = Some(now.saturating_add(self.p.deadtime));
                self.next_send = now;
            }
            Role::Starting => return Err(SwitchoverError::NoActive),
            Role::Acquiring | Role::Releasing => return Err(SwitchoverError::Busy),
        }
        self.send_heartbeats(now);
        Ok(())
    }

    /// The operator confirms that the silent peer is down (checked by hand, as
    /// Pacemaker's manual fence confirmation) after a fence failed: this node then
    /// takes over. Call only on an administrator's typed confirmation.
    ///
    /// # Errors
    /// [`ConfirmError`] when no failed fence waits, or the peer is heard.
    pub fn confirm_fence(&mut self, now: Instant) -> Result<(), ConfirmError> {
        if !matches!(self.fence, Fence::Failed { .. }) {
            return Err(ConfirmError::NothingToConfirm);
        }
        if self.peer_alive {
            return Err(ConfirmError::PeerAlive);
        }
        self.fence = Fence::Confirmed { at: now };
        self.emit(Event::FenceConfirmed);
        self.evaluate(now);
        if now >= self.next_send {
            self.send_heartbeats(now);
        }
        Ok(())
    }

    /// The replication lost the peer while this node holds the data (DRBD's
    /// fence-peer handler, with I/O suspended until it answers). With fencing required
    /// and the peer silent on every path, this node powers the peer off before writes
    /// resume: the peer may be taking over from this node's silence, and writes
    /// acknowledged here after that would be lost. `node1` waits its tiebreak delay
    /// first, so that when both nodes lose every path at once exactly one is powered
    /// off (the peer's takeover fence lands first). Returns whether a fence is under
    /// way or done for this loss (the handler then waits for
    /// [`FenceStatus::PoweredOff`] or [`FenceStatus::Confirmed`]); `false` when the
    /// peer is heard (the handler waits for its copy to be outdated) or fencing is off.
    /// On a node that holds nothing (DRBD promoting it for the operator's
    /// force-primary) the fence is sent at once.
    pub fn fence_for_data(&mut self, now: Instant) -> bool {
        let FencePolicy::Required { node1_delay, .. } = self.p.fencing else {
            return false;
        };
        self.evaluate(now);
        if self.peer_alive {
            return false;
        }
        if self.fence == Fence::Idle && !self.role.holds_resources() {
            // DRBD promotes a node that holds nothing only for clusterd: a takeover
            // fences first (and finds the fence done), so this is the operator's
            // force-primary, which says the peer is gone: no tiebreak wait.
            self.fence_reason = Reason::PeerDead;
            self.send_fence();
        } else if self.fence == Fence::Idle {
            self.fence_reason = Reason::PeerDead;
            if self.p.node == NodeId::Node1 && !node1_delay.is_zero() {
                self.fence = Fence::Delay {
                    until: now.saturating_add(node1_delay),
                };
            } else {
                self.send_fence_holding();
            }
        }
        true
    }

    /// A fence for the data (see [`Self::fence_for_data`]) once node1's tiebreak wait
    /// is over.
    fn data_fence_due(&mut self, now: Instant) {
        if let Fence::Delay { until } = self.fence
            && now >= until
        {
            self.send_fence_holding();
        }
    }

    /// [`Self::send_fence`] on a node that holds the data: it waits for nothing (the
    /// status shows the fence), it only keeps writes suspended.
    fn send_fence_holding(&mut self) {
        self.fence = Fence::InProgress;
        self.fence_peer_generation = self.peer_generation();
        self.emit(Event::FenceStarted);
        self.out.push_back(Output::Fence);
    }

    /// The operator declares this node's copy the one to start from (the peer's is
    /// lost), after the replication layer made it current (`drbdadm primary --force`):
    /// the stale mark is dropped. Fencing still applies before a takeover.
    ///
    /// # Errors
    /// [`ForceError`] while the peer is heard or this node holds the resources.
    pub fn force_copy_good(&mut self, now: Instant) -> Result<(), ForceError> {
        if self.peer_alive {
            return Err(ForceError::PeerAlive);
        }
        if self.role.holds_resources() {
            return Err(ForceError::Holding);
        }
        self.copy_stale = false;
        self.replica_disconnected_at = Some(now);
        Ok(())
    }

    /// A status snapshot.
    #[must_use]
    pub fn status(&self, now: Instant) -> Status {
        let paths = PathId::ALL.map(|path| {
            let ps = &self.paths[path.index()];
            PathStatus {
                path,
                enabled: self.p.paths_enabled[path.index()],
                up: ps.up,
                late: ps.late,
                last_heard_ago: ps.last_heard.map(|h| now.since(h)),
            }
        });
        let mut warnings = Vec::new();
        for ps in &paths {
            if !ps.enabled {
                warnings.push(format!(
                    "{} heartbeat path disabled: split-brain risk is higher",
                    ps.path.name()
                ));
            } else if self.peer.is_some() && !ps.up {
                warnings.push(format!("{} heartbeat path down", ps.path.name()));
            }
        }
        let config_matches = self
            .peer
            .map(|pv| pv.frame.config_digest == self.p.config_digest);
        if config_matches == Some(false) {
            warnings.push("peer runs a different configuration".to_string());
        }
        if let Some(w) = self.waiting {
            warnings.push(w.text().to_string());
        }
        if self.p.ping_nodes > 0 && self.ping_reach == 0 {
            warnings.push("no ping node reachable".to_string());
        }
        let fencing_off = self.p.fencing == FencePolicy::Off;
        if fencing_off {
            warnings.push(
                "fencing is off: if every heartbeat path is lost while both nodes run, both may become active (split brain)"
                    .to_string(),
            );
        }
        if self.copy_stale {
            warnings.push(
                "this node's copy is stale: replication was lost while the peer kept running"
                    .to_string(),
            );
        }
        let fence = match &self.fence {
            Fence::Idle => None,
            Fence::Delay { .. } => Some(FenceStatus::Delay),
            Fence::InProgress => Some(FenceStatus::InProgress),
            Fence::Done { .. } => Some(FenceStatus::PoweredOff),
            Fence::Failed { why, .. } => Some(FenceStatus::Failed(why.clone())),
            Fence::Confirmed { .. } => Some(FenceStatus::Confirmed),
        };
        let peer = PeerStatus {
            alive: self.peer_alive,
            role: self.peer.map(|pv| pv.frame.role),
            resources: self.peer.map(|pv| pv.frame.resources),
            data_good: self.peer.is_some_and(|pv| pv.frame.data_good),
            ping: self
                .peer
                .map(|pv| (pv.frame.ping_reach, pv.frame.ping_total)),
            config_matches,
        };
        Status {
            node: self.p.node,
            role: self.role,
            resources: self.resources,
            waiting: self.waiting,
            data_good: self.data_good,
            peer,
            paths,
            ping_reach: self.ping_reach,
            ping_total: self.p.ping_nodes,
            ping_nodes: self
                .ping_last
                .iter()
                .map(|l| l.is_some_and(|t| now.since(t) < self.p.ping_dead))
                .collect(),
            counters: self.counters,
            warnings,
            fence,
            fencing_off,
        }
    }

    fn on_replica(&mut self, now: Instant, r: Replica) {
        let up_to_date = r.disk == ReplicaDisk::UpToDate;
        self.replica_peer_secondary = r.connected && r.peer_secondary;
        self.replica_primary = r.primary;
        self.replica_peer_primary = r.connected && !r.peer_secondary;
        if r.connected {
            self.replica_disconnected_at = None;
            self.copy_stale = false;
            self.data_good = up_to_date;
            return;
        }
        let since = *self.replica_disconnected_at.get_or_insert(now);
        if r.primary {
            // This node holds the data: the peer's copy is the one left behind.
            self.data_good = up_to_date;
            return;
        }
        // DRBD alone cannot tell a dead peer from a cut crossover cable. A peer heard
        // after replication went away may have written on alone: this copy is stale
        // until the two are connected again. A peer silent since (power loss) leaves
        // it good: with protocol C every write it acknowledged is here.
        if up_to_date
            && !self.copy_stale
            && self
                .last_heard_any()
                .is_some_and(|h| h > since.saturating_add(STALE_MARGIN))
        {
            self.copy_stale = true;
            self.emit(Event::CopyStale);
            self.out.push_back(Output::Outdate);
        }
        self.data_good = up_to_date && !self.copy_stale;
    }

    fn on_fence_result(&mut self, now: Instant, r: FenceResult<'_>) {
        if self.fence != Fence::InProgress {
            return;
        }
        match r {
            FenceResult::PoweredOff => {
                self.emit(Event::Fenced);
                self.fence = if self.peer_generation() == self.fence_peer_generation {
                    Fence::Done { at: now }
                } else {
                    // The peer started again while its BMC worked: the power-off hit
                    // an earlier boot and this one runs.
                    Fence::Idle
                };
            }
            FenceResult::Failed(why) => self.fence_failed(now, why.to_owned()),
            FenceResult::TimedOut => self.fence_failed(
                now,
                "the chassis did not read off within the fence timeout".to_owned(),
            ),
        }
    }

    fn fence_failed(&mut self, now: Instant, why: String) {
        self.emit(Event::FenceFailed {
            peer: self.p.node.peer(),
            why: why.clone(),
        });
        self.fence = Fence::Failed { at: now, why };
        self.set_waiting(Some(WaitReason::FenceFailed));
    }

    fn last_heard_any(&self) -> Option<Instant> {
        self.paths.iter().filter_map(|p| p.last_heard).max()
    }

    /// Heard within two keepalives: the peer's last word still describes it.
    fn heard_recently(&self, now: Instant) -> bool {
        self.last_heard_any()
            .is_some_and(|h| now.since(h) < self.p.keepalive * 2)
    }

    fn heard_since(&self, t: Instant) -> bool {
        self.last_heard_any().is_some_and(|h| h > t)
    }

    /// The peer was powered off (or confirmed down) and not heard since.
    fn peer_fenced(&self) -> bool {
        match self.fence {
            Fence::Done { at } | Fence::Confirmed { at } => !self.heard_since(at),
            _ => false,
        }
    }

    /// The peer says it could not release its resources (from a fresh frame).
    fn peer_stuck(&self) -> bool {
        self.peer.is_some_and(|pv| {
            pv.fresh
                && pv.frame.role == Role::Releasing
                && pv.frame.resources == ResourceState::Failed
        })
    }

    /// Forgets a fence the peer has outlived: heard after it was powered off or
    /// confirmed down, or after a failed fence (it runs; nothing to confirm), or
    /// heard again during the tiebreak wait.
    fn reset_fence_if_outlived(&mut self) {
        let reset = match self.fence {
            Fence::Idle | Fence::InProgress => false,
            Fence::Delay { .. } => self.peer_alive,
            Fence::Done { at } | Fence::Confirmed { at } => self.heard_since(at),
            Fence::Failed { at, .. } => self.heard_since(at) && !self.peer_stuck(),
        };
        if reset {
            self.fence = Fence::Idle;
            if matches!(
                self.waiting,
                Some(WaitReason::FenceDelay | WaitReason::Fencing | WaitReason::FenceFailed)
            ) {
                self.set_waiting(None);
            }
        }
    }

    /// How long a starting node waits for its peer before it acts alone: initdead,
    /// and with fencing at least as long as the peer may take to power this node off
    /// after its last heartbeat (deadtime, node1's tiebreak delay, the fence). A node
    /// that restarts into a partition would otherwise fence a peer whose fence of it is
    /// still on its way, and both would go off. Both nodes wait the same, so when they
    /// start together node1's tiebreak delay still lets node2's fence land first.
    fn start_wait(&self) -> Duration {
        match self.p.fencing {
            FencePolicy::Off => self.p.initdead,
            FencePolicy::Required {
                node1_delay,
                fence_timeout,
            } => self.p.initdead.max(
                self.p
                    .deadtime
                    .saturating_add(node1_delay)
                    .saturating_add(fence_timeout),
            ),
        }
    }

    /// Takes over for `reason` once the peer is fenced, as the policy says; `delay`:
    /// both nodes may want to fence now, so `node1` waits its tiebreak delay.
    fn takeover_fenced(&mut self, now: Instant, reason: Reason, delay: bool) {
        let node1_delay = match self.p.fencing {
            FencePolicy::Off => return self.start_acquire(now, reason),
            FencePolicy::Required { node1_delay, .. } => node1_delay,
        };
        match self.fence {
            Fence::Idle => {
                self.fence_reason = reason;
                if delay && self.p.node == NodeId::Node1 && !node1_delay.is_zero() {
                    self.fence = Fence::Delay {
                        until: now.saturating_add(node1_delay),
                    };
                    self.set_waiting(Some(WaitReason::FenceDelay));
                } else {
                    self.send_fence();
                }
            }
            Fence::Delay { until } => {
                if now >= until {
                    self.send_fence();
                }
            }
            Fence::InProgress | Fence::Failed { .. } => {}
            Fence::Done { .. } | Fence::Confirmed { .. } => {
                // The fence state stays: the peer counts as dead until heard again.
                let r = self.fence_reason;
                self.start_acquire(now, r);
            }
        }
    }

    /// [`Self::send_fence_holding`] on a node about to take over: it waits for the fence.
    fn send_fence(&mut self) {
        self.send_fence_holding();
        self.set_waiting(Some(WaitReason::Fencing));
    }

    fn emit(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn reject(&mut self, now: Instant, path: PathId, why: Rejection) -> bool {
        match why {
            Rejection::Decode(DecodeError::BadMac) => self.counters.bad_mac += 1,
            Rejection::Decode(_) => self.counters.malformed += 1,
            Rejection::Replay => self.counters.replayed += 1,
            Rejection::OwnFrame | Rejection::WrongPath(_) => self.counters.misdirected += 1,
        }
        let ps = &mut self.paths[path.index()];
        if ps
            .last_reject_event
            .is_none_or(|t| now.since(t) >= REJECT_EVENT_SPACING)
        {
            ps.last_reject_event = Some(now);
            self.emit(Event::FrameRejected { path, why });
        }
        false
    }

    /// Returns whether the frame was accepted.
    fn on_frame(&mut self, now: Instant, path: PathId, bytes: &[u8]) -> bool {
        if !self.p.paths_enabled[path.index()] {
            // A disabled path is not used (R4.3), whatever arrives on it.
            return false;
        }
        let frame = match tandem_proto::decode(&self.key, bytes) {
            Ok(f) => f,
            Err(e) => return self.reject(now, path, Rejection::Decode(e)),
        };
        if frame.sender != self.p.node.peer() {
            return self.reject(now, path, Rejection::OwnFrame);
        }
        if frame.path != path {
            return self.reject(now, path, Rejection::WrongPath(frame.path));
        }
        let newer_generation = match self.peer {
            // A generation the peer had before this node's last start: a replay.
            None if frame.generation < self.peer_floor => {
                return self.reject(now, path, Rejection::Replay);
            }
            None => true,
            Some(pv) if frame.generation > pv.generation => true,
            Some(pv) if frame.generation < pv.generation => {
                return self.reject(now, path, Rejection::Replay);
            }
            Some(pv) => {
                let ps = &self.paths[path.index()];
                if ps.last_seq.is_some_and(|s| frame.sequence <= s)
                    || frame.sequence.saturating_add(REPLAY_WINDOW) < pv.sequence
                {
                    return self.reject(now, path, Rejection::Replay);
                }
                false
            }
        };
        if newer_generation {
            if self.peer.is_some() {
                self.emit(Event::PeerRestarted);
                self.peer_request_seen = false;
            }
            for ps in &mut self.paths {
                ps.last_seq = None;
            }
        }
        self.counters.accepted += 1;
        let ps = &mut self.paths[path.index()];
        ps.last_heard = Some(now);
        ps.last_seq = Some(frame.sequence);
        if newer_generation || self.peer.is_some_and(|pv| frame.sequence > pv.sequence) {
            self.peer = Some(PeerView {
                generation: frame.generation,
                sequence: frame.sequence,
                frame,
                fresh: frame.your_generation == self.p.generation,
            });
        }
        if frame.config_digest != self.p.config_digest {
            self.counters.config_mismatch += 1;
            if !self.config_mismatch_reported {
                self.config_mismatch_reported = true;
                self.emit(Event::ConfigMismatch);
            }
        } else {
            self.config_mismatch_reported = false;
        }
        true
    }

    fn send_heartbeats(&mut self, now: Instant) {
        self.sequence += 1;
        let want_switchover = self.want_switchover_until.is_some_and(|u| now < u);
        let handover = self.handover_until.is_some_and(|u| now < u);
        let your_generation = self.peer.map_or(0, |pv| pv.generation);
        for path in PathId::ALL {
            if !self.p.paths_enabled[path.index()] {
                continue;
            }
            let f = Frame {
                sender: self.p.node,
                path,
                role: self.role,
                resources: self.resources,
                data_good: self.data_good,
                want_switchover,
                handover,
                ping_total: self.p.ping_nodes,
                ping_reach: self.ping_reach,
                generation: self.p.generation,
                sequence: self.sequence,
                your_generation,
                config_digest: self.p.config_digest,
            };
            let frame = tandem_proto::encode(&self.key, &f);
            self.out.push_back(Output::Transmit { path, frame });
        }
        self.next_send = now.saturating_add(self.p.keepalive);
    }

    fn set_role(&mut self, now: Instant, to: Role, reason: Option<Reason>) {
        if self.role == to {
            return;
        }
        let from = self.role;
        self.role = to;
        // Acquiring announced the resources: the first refresh is one interval later.
        self.next_refresh = if to == Role::Active {
            self.p.garp_refresh.map(|r| now.saturating_add(r))
        } else {
            None
        };
        self.emit(Event::RoleChanged { from, to, reason });
        // Tell the peer at once: switchover and handover latency depend on it.
        self.next_send = now;
    }

    /// Announces the held resources again; the next periodic refresh is one full
    /// interval after this one, so two announcements never come close together.
    fn announce(&mut self, now: Instant, why: AnnounceReason) {
        self.out.push_back(Output::Announce(why));
        if self.next_refresh.is_some() {
            self.next_refresh = self.p.garp_refresh.map(|r| now.saturating_add(r));
        }
    }

    /// The periodic refresh, when due (only while active: leaving the role clears it).
    fn refresh_due(&mut self, now: Instant) {
        if self.role == Role::Active && self.next_refresh.is_some_and(|r| now >= r) {
            self.announce(now, AnnounceReason::Refresh);
        }
    }

    fn set_waiting(&mut self, w: Option<WaitReason>) {
        if self.waiting != w {
            self.waiting = w;
            if let Some(w) = w {
                self.emit(Event::Waiting(w));
            }
        }
    }

    fn start_acquire(&mut self, now: Instant, reason: Reason) {
        self.set_waiting(None);
        self.want_switchover_until = None;
        self.handover_until = None;
        self.resources = ResourceState::Starting;
        self.set_role(now, Role::Acquiring, Some(reason));
        self.out.push_back(Output::Acquire);
    }

    fn start_release(&mut self, now: Instant, after: AfterRelease, reason: Option<Reason>) {
        self.after_release = after;
        self.resources = ResourceState::Stopping;
        self.set_role(now, Role::Releasing, reason);
        self.out.push_back(Output::Release);
    }

    fn update_liveness(&mut self, now: Instant) {
        for path in PathId::ALL {
            let i = path.index();
            if !self.p.paths_enabled[i] {
                continue;
            }
            let ps = self.paths[i];
            let silent = ps.last_heard.map(|h| now.since(h));
            let up = silent.is_some_and(|s| s < self.p.deadtime);
            let late = up && silent.is_some_and(|s| s >= self.p.warntime);
            if up != ps.up {
                self.emit(if up {
                    Event::PathUp(path)
                } else {
                    Event::PathDown(path)
                });
            }
            if late && !ps.late {
                self.emit(Event::PathLate(path));
            }
            self.paths[i].up = up;
            self.paths[i].late = late;
        }
        let alive = self.paths.iter().any(|p| p.up);
        if alive != self.peer_alive {
            self.peer_alive = alive;
            self.peer_alive_since = alive.then_some(now);
            self.emit(if alive {
                Event::PeerAlive
            } else {
                Event::PeerDead
            });
            if !alive {
                self.peer_lost = true;
            } else if std::mem::take(&mut self.peer_lost)
                && self.role == Role::Active
                && self.peer.is_some_and(|pv| !pv.frame.role.holds_resources())
            {
                // Back after every path was lost: routers may have learnt another
                // owner meanwhile (a peer holding them too is a split brain, which
                // announces once resolved).
                self.announce(now, AnnounceReason::PeerBack);
            }
        }
        let reach = self
            .ping_last
            .iter()
            .filter(|l| l.is_some_and(|t| now.since(t) < self.p.ping_dead))
            .count();
        let reach = u8::try_from(reach).unwrap_or(u8::MAX);
        if reach != self.ping_reach {
            self.ping_reach = reach;
            self.emit(Event::PingReach {
                reach,
                total: self.p.ping_nodes,
            });
            self.next_send = now;
        }
    }

    /// The start-up rule when both nodes are up and nobody holds the resources:
    /// a node with data known good is preferred; between equals, `node1`.
    fn elected(&self, peer: &Frame) -> Option<NodeId> {
        // A device already primary decides: a cluster daemon restarted while its node
        // held the services finds the data still primary there (the chain then only
        // confirms what is held), and DRBD refuses the other node a second primary
        // while the two are connected.
        if self.replica_primary && self.data_good {
            return Some(self.p.node);
        }
        if self.replica_peer_primary {
            return peer.data_good.then_some(peer.sender);
        }
        match (self.data_good, peer.data_good) {
            (true, true) => Some(NodeId::Node1),
            (true, false) => Some(self.p.node),
            (false, true) => Some(peer.sender),
            (false, false) => None,
        }
    }

    fn evaluate(&mut self, now: Instant) {
        // Deadlines up to `now` are dealt with here; only later ones are timers still
        // to come. (A refused frame does not evaluate, so it must not move this.)
        self.last_now = self.last_now.max(now);
        self.update_liveness(now);
        self.refresh_due(now);
        if self.want_switchover_until.is_some_and(|u| now >= u) {
            self.want_switchover_until = None;
        }
        self.reset_fence_if_outlived();
        let peer = self.peer.filter(|_| self.peer_alive && !self.peer_fenced());
        if let Some(pv) = peer.filter(|pv| pv.fresh) {
            let pf = pv.frame;
            if !pf.want_switchover {
                self.peer_request_seen = false;
            }
            if pf.role.holds_resources() && self.handover_until.is_some() {
                // The peer took the services: the handover is complete.
                self.handover_until = None;
            }
        }
        if let Some(u) = self.handover_until
            && now >= u
        {
            self.handover_until = None;
            self.emit(Event::HandoverNotTaken);
            // Only on recent word from the peer that it holds nothing: frames that
            // said it took over may have been lost on paths going down; a peer gone
            // silent is taken over from the silent peer's way (fencing first).
            if self.heard_recently(now)
                && self.peer_alive
                && self.data_good
                && self.role == Role::Passive
                && !self.leaving
            {
                return self.start_acquire(now, Reason::HandoverNotTaken);
            }
        }
        if self.leaving && matches!(self.role, Role::Starting | Role::Passive) {
            // Still offering the handover (its frames say so), but taking nothing.
            if matches!(self.fence, Fence::Delay { .. }) {
                self.fence = Fence::Idle;
            }
            return self.set_waiting(Some(WaitReason::Leaving));
        }
        match self.role {
            Role::Starting | Role::Passive => self.decide_idle(now, peer),
            Role::Active | Role::Acquiring => self.decide_holding(now, peer),
            Role::Releasing if peer.is_none() => self.data_fence_due(now),
            Role::Releasing => {}
        }
    }

    fn decide_idle(&mut self, now: Instant, peer: Option<PeerView>) {
        // A split brain this node lost is over for it; only a survivor announces.
        self.split_brain_reported = false;
        let Some(pv) = peer else {
            let known_peer = self.peer.is_some();
            let starting = self.role == Role::Starting;
            if starting && now.since(self.started) < self.p.initdead {
                return self.set_waiting(Some(WaitReason::InitDead));
            }
            // Either the peer died after we had heard it, or it was never heard.
            if self.data_good {
                let reason = if known_peer {
                    Reason::PeerDead
                } else {
                    Reason::StartAlone
                };
                if self.replica_peer_secondary
                    && matches!(self.fence, Fence::Idle | Fence::Delay { .. })
                {
                    // Silent on every heartbeat path, but its replication is connected
                    // with its device secondary: it runs and holds no data (a node in
                    // recovery mode being activated, or whose cluster daemon is down),
                    // and DRBD refuses a second primary while connected. Powering it
                    // off would only break what it is doing.
                    self.fence = Fence::Idle;
                    return self.start_acquire(now, reason);
                }
                if starting && now.since(self.started) < self.start_wait() {
                    return self.set_waiting(Some(WaitReason::InitDead));
                }
                return self.takeover_fenced(now, reason, true);
            }
            if matches!(self.fence, Fence::Delay { .. }) {
                self.fence = Fence::Idle;
            }
            return self.set_waiting(Some(WaitReason::DataNotGood));
        };
        let pf = pv.frame;
        if pf.role.holds_resources() {
            // Stepping back is safe on any authenticated frame.
            self.set_role(now, Role::Passive, None);
            if self.peer_stuck() {
                // The peer may still hold the data it could not give back: take over
                // only once it is powered off.
                return match self.p.fencing {
                    FencePolicy::Off => self.set_waiting(Some(WaitReason::PeerReleaseFailed)),
                    FencePolicy::Required { .. } if self.data_good => {
                        if self.fence == Fence::Idle {
                            self.fence_reason = Reason::PeerReleaseFailed;
                            self.send_fence();
                        }
                    }
                    FencePolicy::Required { .. } => {
                        self.set_waiting(Some(WaitReason::DataNotGood));
                    }
                };
            }
            if self.fence == Fence::Idle {
                self.set_waiting(None);
            }
            return;
        }
        if !self.heard_recently(now) {
            // Its last word that nobody holds the resources is old: frames saying it
            // took them may have been lost on paths going down. Wait for a recent one,
            // or for the silence that leads to fencing.
            return;
        }
        if !pv.fresh {
            // The peer says nobody holds the resources, but it said so before it heard
            // this boot (or this is a replay of such a frame): its handover may have been
            // taken back since. Wait for a frame that echoes this generation.
            return;
        }
        // Peer is Starting or Passive: nobody holds the resources.
        if self.handover_until.is_some() {
            // We released for the peer; give it the chance to take over. A handover flag
            // in its frames now is left from the handover that gave us the services (it
            // has not yet seen us hold them): taking it would undo this switchover.
            return;
        }
        if pf.handover && pf.role == Role::Passive {
            if self.data_good {
                return self.start_acquire(now, Reason::Handover);
            }
            return self.set_waiting(Some(WaitReason::DataNotGood));
        }
        // The first frames heard may be older than the peer's latest decision (it may be
        // taking over from this node's silence right now): elect only once the peer has
        // been heard long enough for a frame sent after any such decision to arrive.
        if self
            .peer_alive_since
            .is_none_or(|t| now.since(t) < self.election_settle())
        {
            return;
        }
        match self.elected(&pf) {
            Some(n) if n == self.p.node => self.start_acquire(now, Reason::StartElected),
            Some(_) => {
                self.set_waiting(None);
                self.set_role(now, Role::Passive, None);
            }
            None => self.set_waiting(Some(WaitReason::NeitherDataGood)),
        }
    }

    fn decide_holding(&mut self, now: Instant, peer: Option<PeerView>) {
        let Some(pv) = peer else {
            self.ping_rule_since = None;
            return self.data_fence_due(now);
        };
        let pf = pv.frame;
        if pf.role.holds_resources() {
            // The peer holding (or still releasing) resources while this node holds
            // them only happens after both became active: the loser of the policy may
            // already be releasing by the time the survivor hears it, so both report.
            let survivor = if pf.role == Role::Releasing {
                self.p.node
            } else {
                self.split_brain_survivor(&pf)
            };
            if !self.split_brain_reported {
                self.split_brain_reported = true;
                self.emit(Event::SplitBrain { survivor });
            }
            if survivor != self.p.node {
                self.start_release(now, AfterRelease::Stay, Some(Reason::SplitBrain));
            }
            return;
        }
        if self.split_brain_reported {
            // The peer no longer holds the resources: the split brain is over and this
            // node kept them, but routers may have learnt the peer's MAC meanwhile.
            self.split_brain_reported = false;
            if self.role == Role::Active {
                self.announce(now, AnnounceReason::SplitBrainOver);
            }
        }
        if !pv.fresh || self.role != Role::Active || pf.role != Role::Passive || !pf.data_good {
            // Requests and the ping-node rule need a frame sent after the peer heard
            // this boot; a stale one may be a replay of a request already served.
            self.ping_rule_since = None;
            return;
        }
        if pf.want_switchover && !self.peer_request_seen {
            self.peer_request_seen = true;
            self.emit(Event::SwitchoverStarted);
            return self.start_release(now, AfterRelease::HandOver, Some(Reason::Switchover));
        }
        let settled = now.since(self.started) >= self.p.ping_dead;
        if self.p.ping_nodes > 0 && settled && self.ping_reach == 0 && pf.ping_reach > 0 {
            // When a shared switch dies both nodes lose their ping nodes, but not in the
            // same instant: wait until the peer's heartbeats have had time to say so.
            let since = *self.ping_rule_since.get_or_insert(now);
            if now.since(since) >= self.ping_rule_hold() {
                self.ping_rule_since = None;
                self.start_release(now, AfterRelease::HandOver, Some(Reason::PingNodes));
            }
        } else {
            self.ping_rule_since = None;
        }
    }

    fn election_settle(&self) -> Duration {
        self.p.keepalive * 2
    }

    fn ping_rule_hold(&self) -> Duration {
        self.p.keepalive * 3
    }

    fn split_brain_survivor(&self, pf: &Frame) -> NodeId {
        use std::cmp::Ordering;
        match self.ping_reach.cmp(&pf.ping_reach) {
            Ordering::Greater => self.p.node,
            Ordering::Less => pf.sender,
            Ordering::Equal => NodeId::Node1,
        }
    }
}
