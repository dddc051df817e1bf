//! Deterministic simulation of both cluster cores over three simulated paths in
//! virtual time: delay, isolated loss, partitions, node death and restart, ping nodes,
//! operator switchover, and an attacker on the external LAN.

#![allow(
    clippy::unwrap_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tandem_core::{
    AnnounceReason, ClusterKey, ConfirmError, Core, Event, FRAME_LEN, FencePolicy, FenceResult,
    FenceStatus, Input, Instant, NodeId, Output, Params, PathId, Reason, Replica, ReplicaDisk,
    Role, WaitReason,
};

const KEEPALIVE: u64 = 200;
const DEADTIME: u64 = 1000;
const WARNTIME: u64 = 500;
const INITDEAD: u64 = 2000;
/// node1's tiebreak wait before fencing.
const FENCE_DELAY: u64 = 3000;
/// The shell's bound on a fence (power off, then status until off).
const FENCE_TIMEOUT: u64 = 2500;
/// How long a node that never heard its peer waits before fencing it, with fencing:
/// until a fence the peer may have begun at its deadtime (and tiebreak) has landed.
const START_WAIT: u64 = DEADTIME + FENCE_DELAY + FENCE_TIMEOUT;

/// Fencing as the chaos runs have it: node1's tiebreak and the shell's fence bound.
fn required() -> FencePolicy {
    FencePolicy::Required {
        node1_delay: Duration::from_millis(FENCE_DELAY),
        fence_timeout: Duration::from_millis(FENCE_TIMEOUT),
    }
}

fn params(node: NodeId, generation: u64) -> Params {
    Params {
        node,
        keepalive: Duration::from_millis(KEEPALIVE),
        warntime: Duration::from_millis(WARNTIME),
        deadtime: Duration::from_millis(DEADTIME),
        initdead: Duration::from_millis(INITDEAD),
        paths_enabled: [true; 3],
        ping_nodes: 2,
        ping_dead: Duration::from_millis(DEADTIME),
        config_digest: [1; 32],
        generation,
        fencing: FencePolicy::Off,
        garp_refresh: None,
    }
}

fn key() -> ClusterKey {
    ClusterKey::new(b"simulation cluster key").unwrap()
}

#[derive(Debug, Clone, Copy)]
struct Link {
    cut: bool,
    /// Drop probability for a frame, but never two in a row (isolated loss).
    loss: f64,
    last_dropped: bool,
    delay: (u64, u64),
    /// Links keep order, like a cable or a LAN without multipath.
    last_arrival: u64,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            cut: false,
            loss: 0.0,
            last_dropped: false,
            delay: (1, 5),
            last_arrival: 0,
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Msg {
    Deliver {
        to: usize,
        path: usize,
        bytes: Vec<u8>,
    },
    Resource {
        node: usize,
        generation: u64,
        up: bool,
    },
    PingReply {
        node: usize,
        index: usize,
    },
    /// The peer's BMC cuts its power.
    PowerOff {
        target: usize,
    },
    /// The fence's result reaches the node that asked.
    FenceDone {
        node: usize,
        generation: u64,
        outcome: Bmc,
    },
}

/// What the peer's BMC does with a power-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Bmc {
    /// Powers off after half the fence time, reads off at its end.
    Works,
    /// Refuses (or is unreachable): the shell reports failure at the fence time.
    Refuses,
    /// Never reads off: the shell's timeout ends the fence.
    Hangs,
}

struct Node {
    core: Option<Core>,
    id: NodeId,
    generation: u64,
    data_good: bool,
    /// Which ping nodes this node reaches.
    ping_ok: [bool; 2],
    resource_delay: u64,
    fencing: FencePolicy,
    /// How this node's own BMC answers a power-off (asked by the peer).
    bmc: Bmc,
    /// How long a fence of this node takes to read off.
    fence_time: u64,
    /// Periodic re-announcement while active.
    garp_refresh: Option<Duration>,
}

struct Sim {
    t: u64,
    nodes: [Node; 2],
    /// links[from][path]
    links: [[Link; 3]; 2],
    queue: BinaryHeap<Reverse<(u64, u64, Msg)>>,
    qseq: u64,
    rng: SmallRng,
    /// (time, node, event)
    events: Vec<(u64, usize, Event)>,
    /// Every frame put on the external LAN (the attacker's capture).
    captured: Vec<(u64, Vec<u8>)>,
    /// (time, node, why) of each re-announcement of the resources.
    announced: Vec<(u64, usize, AnnounceReason)>,
    /// Each time both nodes held resources while a path was up since the start.
    violations: Vec<u64>,
    /// Paths never cut since the start of the run.
    never_cut: [bool; 3],
    /// Each time both nodes held resources, whatever the paths.
    double_holders: Vec<u64>,
    /// (time, fencer) of each fence asked for.
    fences: Vec<(u64, usize)>,
    /// (time, node) of each power-off by a fence.
    powered_off: Vec<(u64, usize)>,
    /// Times at which both nodes were off because of fences.
    both_off: Vec<u64>,
    /// (time, node) of each request to outdate the node's copy.
    outdated: Vec<(u64, usize)>,
    /// Nodes off because a fence powered them off (until started again).
    fenced_off: [bool; 2],
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mk = |id| Node {
            core: None,
            id,
            generation: 1,
            data_good: true,
            ping_ok: [true, true],
            resource_delay: 50,
            fencing: FencePolicy::Off,
            bmc: Bmc::Works,
            fence_time: 400,
            garp_refresh: None,
        };
        let mut s = Sim {
            t: 0,
            nodes: [mk(NodeId::Node1), mk(NodeId::Node2)],
            links: [[Link::default(); 3]; 2],
            queue: BinaryHeap::new(),
            qseq: 0,
            rng: SmallRng::seed_from_u64(seed),
            events: Vec::new(),
            captured: Vec::new(),
            announced: Vec::new(),
            violations: Vec::new(),
            never_cut: [true; 3],
            double_holders: Vec::new(),
            fences: Vec::new(),
            powered_off: Vec::new(),
            both_off: Vec::new(),
            outdated: Vec::new(),
            fenced_off: [false; 2],
        };
        s.start(0);
        s.start(1);
        s
    }

    /// A run whose two nodes are both stopped, with nothing in flight: a test
    /// sets them up, then starts them.
    fn stopped(seed: u64) -> Sim {
        let mut s = Sim::new(seed);
        s.kill(0);
        s.kill(1);
        s.queue.clear();
        s
    }

    fn now(&self) -> Instant {
        Instant::from_millis(self.t)
    }

    fn start(&mut self, n: usize) {
        let now = self.now();
        self.fenced_off[n] = false;
        let node = &mut self.nodes[n];
        node.generation += 1;
        let mut p = params(node.id, node.generation);
        p.fencing = node.fencing;
        p.garp_refresh = node.garp_refresh;
        let mut core = Core::new(now, p, key()).unwrap();
        core.handle(now, Input::DataGood(node.data_good));
        node.core = Some(core);
        self.drain(n);
    }

    fn kill(&mut self, n: usize) {
        self.nodes[n].core = None;
    }

    fn role(&self, n: usize) -> Option<Role> {
        self.nodes[n].core.as_ref().map(Core::role)
    }

    fn core(&mut self, n: usize) -> &mut Core {
        self.nodes[n].core.as_mut().unwrap()
    }

    fn push(&mut self, at: u64, m: Msg) {
        self.qseq += 1;
        self.queue.push(Reverse((at, self.qseq, m)));
    }

    fn set_cut(&mut self, path: usize, cut: bool) {
        for from in 0..2 {
            self.links[from][path].cut = cut;
        }
        if cut {
            self.never_cut[path] = false;
        }
    }

    fn drain(&mut self, n: usize) {
        let Some(core) = self.nodes[n].core.as_mut() else {
            return;
        };
        let mut outs = Vec::new();
        while let Some(o) = core.poll_output() {
            outs.push(o);
        }
        let generation = self.nodes[n].generation;
        for o in outs {
            match o {
                Output::Transmit { path, frame } => {
                    let p = path.index();
                    if p == PathId::External.index() {
                        self.captured.push((self.t, frame.to_vec()));
                    }
                    let link = self.links[n][p];
                    if link.cut {
                        continue;
                    }
                    let drop = !link.last_dropped && self.rng.random_bool(link.loss);
                    self.links[n][p].last_dropped = drop;
                    if drop {
                        continue;
                    }
                    let d = self.rng.random_range(link.delay.0..=link.delay.1);
                    let at = (self.t + d).max(link.last_arrival);
                    self.links[n][p].last_arrival = at;
                    self.push(
                        at,
                        Msg::Deliver {
                            to: 1 - n,
                            path: p,
                            bytes: frame.to_vec(),
                        },
                    );
                }
                Output::Ping { index } => {
                    if self.nodes[n].ping_ok[index] {
                        self.push(self.t + 2, Msg::PingReply { node: n, index });
                    }
                }
                Output::Acquire | Output::Release => {
                    let at = self.t + self.nodes[n].resource_delay;
                    let up = o == Output::Acquire;
                    self.push(
                        at,
                        Msg::Resource {
                            node: n,
                            generation,
                            up,
                        },
                    );
                }
                Output::Announce(why) => self.announced.push((self.t, n, why)),
                Output::Outdate => self.outdated.push((self.t, n)),
                Output::Fence => {
                    self.fences.push((self.t, n));
                    let target = &self.nodes[1 - n];
                    let (bmc, time) = (target.bmc, target.fence_time);
                    let done_at = match bmc {
                        Bmc::Works => {
                            self.push(self.t + time / 2, Msg::PowerOff { target: 1 - n });
                            self.t + time
                        }
                        Bmc::Refuses => self.t + time,
                        Bmc::Hangs => self.t + FENCE_TIMEOUT,
                    };
                    self.push(
                        done_at,
                        Msg::FenceDone {
                            node: n,
                            generation,
                            outcome: bmc,
                        },
                    );
                }
                Output::Event(e) => self.events.push((self.t, n, e)),
            }
        }
    }

    fn check(&mut self) {
        let holds = |r: Option<Role>| r.is_some_and(Role::holds_resources);
        if holds(self.role(0)) && holds(self.role(1)) {
            self.double_holders.push(self.t);
            if self.never_cut.iter().any(|c| *c) {
                self.violations.push(self.t);
            }
        }
    }

    /// Runs until virtual time `until`.
    fn run_until(&mut self, until: u64) {
        loop {
            let mut next = until;
            for n in &self.nodes {
                if let Some(c) = &n.core {
                    next = next.min(c.poll_timeout().as_millis());
                }
            }
            if let Some(Reverse((at, _, _))) = self.queue.peek() {
                next = next.min(*at);
            }
            if next >= until && self.t >= until {
                break;
            }
            self.t = next.max(self.t);
            if self.t >= until {
                self.t = until;
                break;
            }
            let now = self.now();
            while let Some(Reverse((at, _, _))) = self.queue.peek() {
                if *at > self.t {
                    break;
                }
                let Reverse((_, _, m)) = self.queue.pop().unwrap();
                match m {
                    Msg::Deliver { to, path, bytes } => {
                        if let Some(c) = self.nodes[to].core.as_mut() {
                            c.handle(
                                now,
                                Input::Frame {
                                    path: PathId::ALL[path],
                                    bytes: &bytes,
                                },
                            );
                        }
                        self.drain(to);
                    }
                    Msg::Resource {
                        node,
                        generation,
                        up,
                    } => {
                        if self.nodes[node].generation == generation
                            && let Some(c) = self.nodes[node].core.as_mut()
                        {
                            c.handle(
                                now,
                                if up {
                                    Input::ResourcesUp
                                } else {
                                    Input::ResourcesDown
                                },
                            );
                        }
                        self.drain(node);
                    }
                    Msg::PingReply { node, index } => {
                        if let Some(c) = self.nodes[node].core.as_mut() {
                            c.handle(now, Input::PingReply { index });
                        }
                        self.drain(node);
                    }
                    Msg::PowerOff { target } => {
                        // The BMC acts whatever became of the node that asked.
                        self.powered_off.push((self.t, target));
                        self.kill(target);
                        self.fenced_off[target] = true;
                        if self.fenced_off[1 - target] {
                            self.both_off.push(self.t);
                        }
                    }
                    Msg::FenceDone {
                        node,
                        generation,
                        outcome,
                    } => {
                        if self.nodes[node].generation == generation
                            && let Some(c) = self.nodes[node].core.as_mut()
                        {
                            let r = match outcome {
                                Bmc::Works => FenceResult::PoweredOff,
                                Bmc::Refuses => FenceResult::Failed("RMCP+ session refused"),
                                Bmc::Hangs => FenceResult::TimedOut,
                            };
                            c.handle(now, Input::FenceResult(r));
                        }
                        self.drain(node);
                    }
                }
                self.check();
            }
            for n in 0..2 {
                if let Some(c) = self.nodes[n].core.as_mut()
                    && c.poll_timeout() <= now
                {
                    c.handle_timeout(now);
                    self.drain(n);
                }
            }
            self.check();
        }
    }

    fn active(&self) -> Option<usize> {
        (0..2).find(|n| self.role(*n) == Some(Role::Active))
    }

    fn role_changes(&self) -> Vec<(u64, usize, Role)> {
        self.events
            .iter()
            .filter_map(|(t, n, e)| match e {
                Event::RoleChanged { to, .. } => Some((*t, *n, *to)),
                _ => None,
            })
            .collect()
    }

    fn has_event(&self, node: usize, pred: impl Fn(&Event) -> bool) -> bool {
        self.events.iter().any(|(_, n, e)| *n == node && pred(e))
    }
}

/// Brings up a cluster and returns it with node1 active.
fn stable(seed: u64) -> Sim {
    let mut s = Sim::new(seed);
    s.run_until(3000);
    assert_eq!(s.role(0), Some(Role::Active), "{:?}", s.events);
    assert_eq!(s.role(1), Some(Role::Passive));
    s
}

#[test]
fn both_start_node1_becomes_active_without_waiting_for_initdead() {
    let mut s = Sim::new(1);
    s.run_until(500);
    assert_eq!(s.role(0), Some(Role::Active));
    assert_eq!(s.role(1), Some(Role::Passive));
    assert!(s.violations.is_empty());
}

#[test]
fn node_with_good_data_is_elected_over_node1() {
    let mut s = Sim::stopped(2);
    s.nodes[0].data_good = false;
    s.start(0);
    s.start(1);
    s.run_until(1000);
    assert_eq!(s.role(1), Some(Role::Active));
    assert_eq!(s.role(0), Some(Role::Passive));
}

#[test]
fn alone_at_start_takes_over_after_initdead_only_with_good_data() {
    let mut s = Sim::new(3);
    s.kill(1);
    s.kill(0);
    // Forget the frames the first incarnations still had on the wire.
    s.queue.clear();
    s.nodes[0].data_good = false;
    s.start(0);
    s.run_until(INITDEAD - 10);
    assert_eq!(s.role(0), Some(Role::Starting));
    s.run_until(INITDEAD * 3);
    assert_eq!(s.role(0), Some(Role::Starting));
    assert!(s.has_event(0, |e| *e == Event::Waiting(WaitReason::DataNotGood)));
    let st = s.core(0).status(Instant::from_millis(INITDEAD * 3));
    assert!(st.warnings.iter().any(|w| w.contains("not known good")));
    // Replication now says the data is good: the node takes over at once.
    let now = s.now();
    s.core(0).handle(now, Input::DataGood(true));
    s.drain(0);
    s.run_until(INITDEAD * 3 + 200);
    assert_eq!(s.role(0), Some(Role::Active));
    assert!(s.has_event(0, |e| matches!(
        e,
        Event::RoleChanged {
            reason: Some(Reason::StartAlone),
            ..
        }
    )));
}

#[test]
fn kill_active_passive_takes_over_within_deadtime_plus_keepalive() {
    let mut s = stable(4);
    let killed = s.t;
    s.kill(0);
    s.run_until(killed + DEADTIME + KEEPALIVE);
    let (t, _, _) = *s
        .role_changes()
        .iter()
        .find(|(t, n, r)| *t > killed && *n == 1 && *r == Role::Acquiring)
        .expect("node2 took over");
    assert!(t - killed <= DEADTIME + KEEPALIVE, "took {} ms", t - killed);
    s.run_until(killed + 3000);
    assert_eq!(s.role(1), Some(Role::Active));
    // No automatic failback when node1 returns.
    s.start(0);
    s.run_until(killed + 8000);
    assert_eq!(s.role(1), Some(Role::Active));
    assert_eq!(s.role(0), Some(Role::Passive));
    assert!(s.violations.is_empty());
}

#[test]
fn each_single_path_cut_raises_event_without_failover() {
    for path in 0..3 {
        let mut s = stable(10 + path as u64);
        let before = s.role_changes().len();
        s.set_cut(path, true);
        s.run_until(s.t + 5000);
        assert_eq!(s.role_changes().len(), before, "path {path}");
        let p = PathId::ALL[path];
        assert!(s.has_event(1, |e| *e == Event::PathDown(p)));
        assert!(!s.has_event(1, |e| *e == Event::PeerDead));
        let now = s.now();
        let st = s.core(1).status(now);
        assert!(!st.paths[path].up);
        s.set_cut(path, false);
        s.run_until(s.t + 1000);
        let now = s.now();
        assert!(s.core(1).status(now).paths[path].up);
        assert!(s.violations.is_empty());
    }
}

#[test]
fn all_paths_cut_gives_split_brain_which_is_detected_and_resolved() {
    let mut s = stable(20);
    for p in 0..3 {
        s.set_cut(p, true);
    }
    s.run_until(s.t + DEADTIME + 1000);
    assert_eq!(s.role(0), Some(Role::Active));
    assert_eq!(s.role(1), Some(Role::Active));
    let healed = s.t;
    for p in 0..3 {
        s.set_cut(p, false);
    }
    s.run_until(healed + 1000);
    assert!(s.has_event(0, |e| *e
        == Event::SplitBrain {
            survivor: NodeId::Node1
        }));
    assert!(s.has_event(1, |e| *e
        == Event::SplitBrain {
            survivor: NodeId::Node1
        }));
    assert_eq!(s.role(0), Some(Role::Active));
    assert_eq!(s.role(1), Some(Role::Passive));
    // Once node2 has released, node1 announces its addresses again (routers may have
    // learnt node2's MAC during the split brain), once, and only node1.
    let released = s
        .role_changes()
        .iter()
        .find(|(t, n, r)| *t >= healed && *n == 1 && *r == Role::Passive)
        .map(|c| c.0)
        .unwrap();
    assert_eq!(s.announced.len(), 1, "{:?}", s.announced);
    let (at, n, why) = s.announced[0];
    assert_eq!(n, 0);
    assert_eq!(why, AnnounceReason::SplitBrainOver);
    assert!(
        at >= released && at <= released + KEEPALIVE + 50,
        "{at} {released}"
    );
}

#[test]
fn split_brain_survivor_is_the_node_reaching_more_ping_nodes() {
    let mut s = stable(21);
    for p in 0..3 {
        s.set_cut(p, true);
    }
    s.nodes[0].ping_ok = [false, true];
    s.run_until(s.t + DEADTIME + 1500);
    for p in 0..3 {
        s.set_cut(p, false);
    }
    s.run_until(s.t + 1000);
    assert_eq!(s.role(1), Some(Role::Active));
    assert_eq!(s.role(0), Some(Role::Passive));
}

#[test]
fn active_losing_all_ping_nodes_hands_over_to_passive_reaching_one() {
    let mut s = stable(30);
    s.nodes[0].ping_ok = [false, false];
    s.nodes[1].ping_ok = [false, true];
    let t0 = s.t;
    s.run_until(t0 + DEADTIME * 3);
    assert_eq!(s.role(1), Some(Role::Active));
    assert_eq!(s.role(0), Some(Role::Passive));
    assert!(s.has_event(0, |e| matches!(
        e,
        Event::RoleChanged {
            reason: Some(Reason::PingNodes),
            ..
        }
    )));
    assert!(s.violations.is_empty());
}

#[test]
fn nothing_happens_when_both_lose_ping_nodes_or_active_reaches_one() {
    let mut s = stable(31);
    let before = s.role_changes().len();
    s.nodes[0].ping_ok = [false, true];
    s.run_until(s.t + DEADTIME * 3);
    assert_eq!(s.role_changes().len(), before);
    s.nodes[0].ping_ok = [false, false];
    s.nodes[1].ping_ok = [false, false];
    s.run_until(s.t + DEADTIME * 3);
    assert_eq!(s.role_changes().len(), before);
    assert_eq!(s.role(0), Some(Role::Active));
}

#[test]
fn switchover_both_ways_release_before_acquire() {
    let mut s = stable(40);
    // Asked on the active node.
    let now = s.now();
    s.core(0).switchover(now).unwrap();
    s.drain(0);
    s.run_until(s.t + 1000);
    assert_eq!(s.role(1), Some(Role::Active));
    assert_eq!(s.role(0), Some(Role::Passive));
    // Asked on the passive node (now node1).
    let now = s.now();
    s.core(0).switchover(now).unwrap();
    s.drain(0);
    s.run_until(s.t + 1000);
    assert_eq!(s.role(0), Some(Role::Active));
    assert_eq!(s.role(1), Some(Role::Passive));
    assert!(s.violations.is_empty());
    // Release strictly before acquire each time.
    let changes = s.role_changes();
    for w in changes.windows(2) {
        if w[1].2 == Role::Acquiring && w[1].0 > 3000 {
            assert_eq!(w[0].2, Role::Passive, "{changes:?}");
            assert_ne!(w[0].1, w[1].1);
        }
    }
}

/// Switching straight back: the passive's last frame still says "handing over" when the
/// new active releases again; that flag was for the previous switchover and must not
/// make the new active take the services straight back.
#[test]
fn immediate_switch_back_returns_the_services() {
    let mut s = stable(42);
    let now = s.now();
    s.core(0).switchover(now).unwrap();
    s.drain(0);
    while s.role(1) != Some(Role::Active) {
        s.run_until(s.t + 1);
        assert!(s.t < 5000, "no switchover");
    }
    let back = s.t;
    let now = s.now();
    s.core(1).switchover(now).unwrap();
    s.drain(1);
    s.run_until(back + 2000);
    assert_eq!(
        (s.role(0), s.role(1)),
        (Some(Role::Active), Some(Role::Passive))
    );
    assert!(
        !s.role_changes()
            .iter()
            .any(|(t, n, r)| *t > back && *n == 1 && *r == Role::Acquiring),
        "{:?}",
        s.role_changes()
    );
    assert!(s.violations.is_empty());
}

#[test]
fn switchover_refused_without_peer() {
    let mut s = stable(41);
    s.kill(1);
    s.run_until(s.t + DEADTIME + 100);
    let now = s.now();
    assert!(s.core(0).switchover(now).is_err());
    assert_eq!(s.role(0), Some(Role::Active));
}

#[test]
fn restart_of_passive_leaves_active_undisturbed() {
    let mut s = stable(50);
    let before = s.role_changes().iter().filter(|c| c.1 == 0).count();
    s.kill(1);
    s.run_until(s.t + 300);
    s.start(1);
    s.run_until(s.t + 3000);
    assert_eq!(s.role(0), Some(Role::Active));
    assert_eq!(s.role(1), Some(Role::Passive));
    assert_eq!(s.role_changes().iter().filter(|c| c.1 == 0).count(), before);
    assert!(s.has_event(0, |e| *e == Event::PeerRestarted));
}

#[test]
fn config_digest_mismatch_is_reported_and_changes_no_role() {
    let mut s = stable(60);
    let before = s.role_changes().len();
    // node2 restarts with another configuration.
    s.kill(1);
    s.nodes[1].generation += 1;
    let mut p = params(NodeId::Node2, s.nodes[1].generation);
    p.config_digest = [9; 32];
    let mut c = Core::new(s.now(), p, key()).unwrap();
    c.handle(s.now(), Input::DataGood(true));
    s.nodes[1].core = Some(c);
    s.drain(1);
    s.run_until(s.t + 3000);
    assert!(s.has_event(0, |e| *e == Event::ConfigMismatch));
    assert!(s.core(0).counters().config_mismatch > 0);
    let now = s.now();
    let st = s.core(0).status(now);
    assert_eq!(st.peer.config_matches, Some(false));
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("different configuration"))
    );
    assert_eq!(s.role(0), Some(Role::Active));
    assert_eq!(
        s.role_changes().len(),
        before + 1,
        "only node2's Starting->Passive"
    );

    // node2 takes node1's configuration while running: the warning goes.
    let now = s.now();
    s.core(1).handle(now, Input::ConfigDigest([1; 32]));
    s.drain(1);
    s.run_until(s.t + 3000);
    let now = s.now();
    let st = s.core(0).status(now);
    assert_eq!(st.peer.config_matches, Some(true));
    assert!(!st.warnings.iter().any(|w| w.contains("configuration")));
    // A later change on node1 alone is reported again.
    let mismatches = |s: &Sim| {
        s.events
            .iter()
            .filter(|(_, n, e)| *n == 0 && *e == Event::ConfigMismatch)
            .count()
    };
    let reported = mismatches(&s);
    let now = s.now();
    s.core(0).handle(now, Input::ConfigDigest([5; 32]));
    s.drain(0);
    s.run_until(s.t + 3000);
    assert_eq!(mismatches(&s), reported + 1);
    assert_eq!(s.role(0), Some(Role::Active));
}

#[test]
fn replayed_frames_do_not_keep_a_dead_peer_alive() {
    let mut s = stable(70);
    let captured = s.captured.clone();
    let killed = s.t;
    s.kill(0);
    // The attacker replays node1's captured external frames every 50 ms.
    let mine: Vec<_> = captured
        .iter()
        .map(|(_, f)| f)
        .filter(|f| tandem_proto::decode(&key(), f).unwrap().sender == NodeId::Node1)
        .cloned()
        .collect();
    let mut t = killed;
    let mut i = 0;
    while t < killed + DEADTIME + KEEPALIVE {
        t += 50;
        s.run_until(t);
        let f = &mine[i % mine.len()];
        i += 1;
        let now = s.now();
        s.core(1).handle(
            now,
            Input::Frame {
                path: PathId::External,
                bytes: f,
            },
        );
        s.drain(1);
    }
    s.run_until(killed + DEADTIME + KEEPALIVE + 100);
    assert!(s.role(1).unwrap().holds_resources());
    assert!(s.core(1).counters().replayed > 0);
}

#[test]
fn disabled_path_is_not_used_and_warned() {
    let mut p = params(NodeId::Node1, 1);
    p.paths_enabled = [false, true, false];
    let mut c = Core::new(Instant::from_millis(0), p, key()).unwrap();
    c.handle_timeout(Instant::from_millis(0));
    let mut sent = Vec::new();
    while let Some(o) = c.poll_output() {
        if let Output::Transmit { path, .. } = o {
            sent.push(path);
        }
    }
    assert_eq!(sent, vec![PathId::Internal]);
    let st = c.status(Instant::from_millis(0));
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("serial heartbeat path disabled"))
    );
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("external heartbeat path disabled"))
    );
}

#[test]
fn bad_params_are_refused() {
    let mut p = params(NodeId::Node1, 1);
    p.deadtime = Duration::from_millis(300);
    assert!(Core::new(Instant::from_millis(0), p.clone(), key()).is_err());
    p.deadtime = Duration::from_millis(DEADTIME);
    p.paths_enabled = [false; 3];
    assert!(Core::new(Instant::from_millis(0), p.clone(), key()).is_err());
    p.paths_enabled = [true; 3];
    p.garp_refresh = Some(Duration::ZERO);
    assert_eq!(
        Core::new(Instant::from_millis(0), p, key()).err(),
        Some(tandem_core::ParamsError::ZeroGarpRefresh)
    );
}

/// A replayed handover: the attacker captured node1's "passive, handing over" frames
/// during a switchover and replays one to node2 right after node2 restarts, before
/// node1's next real heartbeat. node2 has no replay state for node1's generation yet, so
/// the frame is accepted, but it does not echo node2's new generation: node2 must not
/// act on it.
#[test]
fn replayed_handover_frame_at_passive_restart_does_not_double_activate() {
    let mut s = stable(80);
    // Switch over to node2 and back: node1 now runs in the same generation in which it
    // sent "passive + handover" frames.
    let now = s.now();
    s.core(0).switchover(now).unwrap();
    s.drain(0);
    s.run_until(s.t + 1000);
    assert_eq!(s.role(1), Some(Role::Active));
    let now = s.now();
    s.core(1).switchover(now).unwrap();
    s.drain(1);
    s.run_until(s.t + 1000);
    assert_eq!(
        (s.role(0), s.role(1)),
        (Some(Role::Active), Some(Role::Passive))
    );
    let handovers: Vec<Vec<u8>> = s
        .captured
        .iter()
        .map(|(_, f)| f)
        .filter(|f| {
            let d = tandem_proto::decode(&key(), f).unwrap();
            d.sender == NodeId::Node1 && d.handover && d.role == Role::Passive
        })
        .cloned()
        .collect();
    assert!(!handovers.is_empty(), "no handover frame captured");
    for replay in [handovers.first().unwrap(), handovers.last().unwrap()] {
        s.kill(1);
        s.run_until(s.t + 300);
        let restarted = s.t;
        s.start(1);
        let now = s.now();
        s.core(1).handle(
            now,
            Input::Frame {
                path: PathId::External,
                bytes: replay,
            },
        );
        s.drain(1);
        s.run_until(restarted + 3000);
        assert!(s.violations.is_empty(), "both active at {:?}", s.violations);
        assert!(
            !s.role_changes()
                .iter()
                .any(|(t, n, r)| *t >= restarted && *n == 1 && r.holds_resources()),
            "restarted node2 acquired: {:?}",
            s.role_changes()
        );
        assert_eq!(
            (s.role(0), s.role(1)),
            (Some(Role::Active), Some(Role::Passive))
        );
    }
}

/// What the attacker on the external LAN does during a chaos run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    None,
    /// Forged, garbled and replayed frames old enough to be outside the replay window
    /// even on a quiet path: they must change nothing at all.
    Stale,
    /// Any captured frame, of any age, garbled or not, including a burst of the peer's
    /// frames (handover and switchover ones first) into a node the moment it restarts,
    /// before any real heartbeat reaches it.
    AtRestart,
}

/// Replays captured frames to a node that has just restarted, the flagged ones first.
fn replay_into_restarted(s: &mut Sim, n: usize, attacker: &mut SmallRng) {
    let peer = s.nodes[1 - n].id;
    let mut theirs: Vec<Vec<u8>> = s
        .captured
        .iter()
        .map(|(_, f)| f)
        .filter(|f| tandem_proto::decode(&key(), f).is_ok_and(|d| d.sender == peer))
        .cloned()
        .collect();
    let flagged = |f: &Vec<u8>| {
        let d = tandem_proto::decode(&key(), f).unwrap();
        d.handover || d.want_switchover
    };
    theirs.sort_by_key(|f| !flagged(f));
    let mut burst: Vec<Vec<u8>> = theirs.iter().take(3).cloned().collect();
    for _ in 0..3 {
        if !theirs.is_empty() {
            burst.push(theirs[attacker.random_range(0..theirs.len())].clone());
        }
    }
    let now = s.now();
    for f in burst {
        if let Some(c) = s.nodes[n].core.as_mut() {
            c.handle(
                now,
                Input::Frame {
                    path: PathId::External,
                    bytes: &f,
                },
            );
        }
        s.drain(n);
    }
}

/// A run with noisy but never silent paths, random partitions that always leave one
/// path untouched, random switchovers and ping-node changes.
fn chaos(
    seed: u64,
    untouched: usize,
    loss: f64,
    attack: Attack,
    crashes: bool,
) -> (Sim, Vec<(u64, usize, Role)>) {
    chaos_with(seed, untouched, loss, attack, crashes, false)
}

/// [`chaos`], optionally with fencing required on both nodes, BMCs that work, refuse
/// or hang at random, and nodes powered off by a fence switched on again later. With
/// fencing, a node that comes back (after a crash or a fence) has a copy not known good,
/// as DRBD attaches it after a reboot, until it has been connected to an active peer
/// for a while (the resync).
fn chaos_with(
    seed: u64,
    untouched: usize,
    loss: f64,
    attack: Attack,
    crashes: bool,
    fencing: bool,
) -> (Sim, Vec<(u64, usize, Role)>) {
    let mut s = Sim::new(seed);
    let mut plan = SmallRng::seed_from_u64(seed ^ 0x5eed);
    if fencing {
        s.kill(0);
        s.kill(1);
        s.queue.clear();
        for n in 0..2 {
            s.nodes[n].fencing = required();
            s.nodes[n].fence_time = plan.random_range(50..FENCE_DELAY - 500);
        }
        s.start(0);
        s.start(1);
    }
    let mut attacker = SmallRng::seed_from_u64(seed ^ 0xbad);
    for from in 0..2 {
        for p in 0..3 {
            s.links[from][p].loss = loss;
            s.links[from][p].delay = (1, 40);
        }
    }
    let mut t = 0;
    let mut down_until: [Option<u64>; 2] = [None, None];
    while t < 30_000 {
        t += plan.random_range(100..1500);
        s.run_until(t);
        for (n, d) in down_until.iter_mut().enumerate() {
            if d.is_none() && s.fenced_off[n] {
                // Someone switches the fenced node on again.
                *d = Some(t + plan.random_range(500..5000));
            }
            if fencing && d.is_some() {
                s.nodes[n].data_good = false;
            }
            if fencing && d.is_none() && !s.nodes[n].data_good {
                let now = s.now();
                let st = s.core(n).status(now);
                if st.peer.alive && st.peer.role == Some(Role::Active) {
                    s.nodes[n].data_good = true;
                    s.core(n).handle(now, Input::DataGood(true));
                    s.drain(n);
                }
            }
            if d.is_some_and(|u| u <= t) {
                *d = None;
                s.start(n);
                if attack == Attack::AtRestart {
                    replay_into_restarted(&mut s, n, &mut attacker);
                }
            }
        }
        match plan.random_range(0..10) {
            0..=2 => {
                let p = plan.random_range(0..3);
                if p != untouched {
                    let cut = !s.links[0][p].cut;
                    s.set_cut(p, cut);
                }
            }
            3 => {
                let n = plan.random_range(0..2);
                let now = s.now();
                if s.nodes[n].core.is_some() {
                    let _ = s.core(n).switchover(now);
                    s.drain(n);
                }
            }
            4 => {
                let n = plan.random_range(0..2);
                let i = plan.random_range(0..2);
                s.nodes[n].ping_ok[i] = !s.nodes[n].ping_ok[i];
            }
            6 if fencing => {
                let n = plan.random_range(0..2);
                s.nodes[n].bmc = [Bmc::Works, Bmc::Refuses, Bmc::Hangs][plan.random_range(0..3)];
            }
            5 if crashes => {
                // A node crashes (power loss) and comes back after up to 3 s.
                let n = plan.random_range(0..2);
                if down_until[n].is_none() && down_until[1 - n].is_none() {
                    s.kill(n);
                    down_until[n] = Some(t + plan.random_range(50..3000));
                }
            }
            _ => {}
        }
        // Frames old enough to be outside the replay window even on a quiet path.
        let old = match attack {
            Attack::None => 0,
            Attack::Stale => s.captured.partition_point(|(at, _)| *at + 2000 < s.t),
            Attack::AtRestart => s.captured.len(),
        };
        if old > 0 {
            for _ in 0..5 {
                let n = attacker.random_range(0..2);
                let mut f = s.captured[attacker.random_range(0..old)].1.clone();
                if attacker.random_bool(0.3) {
                    let i = attacker.random_range(0..FRAME_LEN);
                    f[i] ^= 1 << attacker.random_range(0..8);
                }
                if attacker.random_bool(0.1) {
                    f.truncate(attacker.random_range(0..FRAME_LEN));
                }
                let now = s.now();
                if let Some(c) = s.nodes[n].core.as_mut() {
                    c.handle(
                        now,
                        Input::Frame {
                            path: PathId::External,
                            bytes: &f,
                        },
                    );
                }
                s.drain(n);
            }
        }
    }
    for (n, d) in down_until.iter().enumerate() {
        if d.is_some() {
            s.start(n);
        }
    }
    s.run_until(t + 5000);
    let roles = s.role_changes();
    (s, roles)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn with_fencing_never_two_actives_even_when_every_path_is_lost(seed: u64, loss in 0.0f64..0.3) {
        // No path is spared: every one may be cut at any time, together.
        let (s, _) = chaos_with(seed, 3, loss, Attack::None, true, true);
        prop_assert!(s.double_holders.is_empty(), "both held resources at {:?}", &s.double_holders[..s.double_holders.len().min(5)]);
        prop_assert!(s.both_off.is_empty(), "both nodes powered off at {:?}", s.both_off);
    }

    #[test]
    fn never_two_actives_while_a_path_delivers_even_with_crashes(seed: u64, untouched in 0usize..3, loss in 0.0f64..0.3) {
        let (s, _) = chaos(seed, untouched, loss, Attack::None, true);
        prop_assert!(s.violations.is_empty(), "both held resources at {:?}", &s.violations[..s.violations.len().min(5)]);
        // Five quiet seconds after the last disturbance exactly one node is active (no
        // deadlock, no lingering double role), unless one node's paths are all cut.
        let holders = (0..2).filter(|n| s.role(*n).unwrap().holds_resources()).count();
        prop_assert!(s.active().is_some(), "no active node: {:?}", (s.role(0), s.role(1)));
        prop_assert_eq!(holders, 1);
    }

    #[test]
    fn never_two_actives_with_replays_and_forgeries_during_crash_and_restart(seed: u64, untouched in 0usize..3, loss in 0.0f64..0.3) {
        let (s, _) = chaos(seed, untouched, loss, Attack::AtRestart, true);
        prop_assert!(s.violations.is_empty(), "both held resources at {:?}", &s.violations[..s.violations.len().min(5)]);
        let holders = (0..2).filter(|n| s.role(*n).unwrap().holds_resources()).count();
        prop_assert!(s.active().is_some(), "no active node: {:?}", (s.role(0), s.role(1)));
        prop_assert_eq!(holders, 1);
        let c = s.nodes[0].core.as_ref().unwrap().counters();
        let d = s.nodes[1].core.as_ref().unwrap().counters();
        prop_assert!(c.replayed + c.bad_mac + c.malformed + d.replayed + d.bad_mac + d.malformed > 0);
    }

    #[test]
    fn forged_and_replayed_frames_change_nothing(seed: u64, untouched in 0usize..3) {
        let (quiet, clean) = chaos(seed, untouched, 0.0, Attack::None, false);
        for n in &quiet.nodes {
            let c = n.core.as_ref().unwrap().counters();
            prop_assert_eq!(c.replayed + c.bad_mac + c.malformed + c.misdirected, 0);
        }
        let (s, attacked) = chaos(seed, untouched, 0.0, Attack::Stale, false);
        prop_assert_eq!(clean, attacked);
        let c = s.nodes[0].core.as_ref().unwrap().counters();
        let d = s.nodes[1].core.as_ref().unwrap().counters();
        prop_assert!(c.replayed + c.bad_mac + c.malformed + c.misdirected > 0);
        prop_assert!(d.replayed + d.bad_mac + d.malformed + d.misdirected > 0);
    }

    #[test]
    fn one_lost_frame_causes_no_flap(seed: u64, at in 3000u64..6000, path in 0usize..3, whole_tick: bool) {
        let mut s = stable(seed);
        s.run_until(at);
        let before = s.role_changes();
        // Lose the next frame on one path, or on every path (a whole keepalive tick).
        for from in 0..2 {
            for p in 0..3 {
                if whole_tick || p == path {
                    s.links[from][p].loss = 1.0;
                }
            }
        }
        s.run_until(at + KEEPALIVE);
        for from in 0..2 {
            for p in 0..3 {
                s.links[from][p].loss = 0.0;
            }
        }
        s.run_until(at + 5000);
        prop_assert_eq!(before, s.role_changes());
        prop_assert!(!s.has_event(0, |e| *e == Event::PeerDead));
        prop_assert!(!s.has_event(1, |e| *e == Event::PeerDead));
    }

    #[test]
    fn takeover_bound_holds_for_any_kill_time(seed: u64, at in 3000u64..8000, delay_hi in 1u64..50) {
        let mut s = Sim::new(seed);
        for from in 0..2 { for p in 0..3 { s.links[from][p].delay = (1, delay_hi); } }
        s.run_until(at);
        let active = s.active().unwrap();
        s.kill(active);
        s.run_until(at + DEADTIME + KEEPALIVE);
        let other = 1 - active;
        let took = s.role_changes().iter().find(|(t, n, r)| *t >= at && *n == other && *r == Role::Acquiring).map(|c| c.0);
        prop_assert!(took.is_some_and(|t| t - at <= DEADTIME + KEEPALIVE), "took {:?}", took.map(|t| t - at));
    }
}

/// Found by the crash property: node1 restarts just as node2 declares it dead and takes
/// over; node1's first frames from node2 still said "passive". The start-up election
/// waits for fresher frames instead of acting on those.
#[test]
fn restart_while_peer_takes_over_does_not_double_activate() {
    let (s, _) = chaos(
        10_409_288_504_768_851_978,
        0,
        0.197_246_305_786_946_44,
        Attack::None,
        true,
    );
    assert!(
        s.violations.is_empty(),
        "{:?}",
        &s.violations[..3.min(s.violations.len())]
    );
}

/// Found by the forged-frames property: a refused frame moved the core's notion of
/// "deadlines evaluated up to", so a ping-node timer due just before it never fired
/// and the ping-node handover came late. Refused frames now leave timers alone.
#[test]
fn refused_frame_does_not_swallow_a_due_timer() {
    let (_, clean) = chaos(12_651_422_971_185_572_311, 0, 0.0, Attack::None, false);
    let (_, attacked) = chaos(12_651_422_971_185_572_311, 0, 0.0, Attack::Stale, false);
    assert_eq!(clean, attacked);
}

/// Found by the restart-replay property before frames echoed the receiver's generation:
/// a node that had just restarted accepted a replayed "passive, handing over" frame of
/// the running active and acquired at once.
#[test]
fn replay_burst_at_restart_does_not_double_activate() {
    let (s, _) = chaos(7_133_522_407_775_913_301, 0, 0.0, Attack::AtRestart, true);
    assert!(
        s.violations.is_empty(),
        "{:?}",
        &s.violations[..3.min(s.violations.len())]
    );
}

// ---- Fencing (R4.5): a silent peer is powered off before this node takes over ----

/// A cluster with fencing required on both nodes, brought up with node1 active.
fn fenced(seed: u64) -> Sim {
    let mut s = Sim::stopped(seed);
    for n in 0..2 {
        s.nodes[n].fencing = required();
    }
    s.start(0);
    s.start(1);
    s.run_until(s.t + 3000);
    assert_eq!(s.role(0), Some(Role::Active), "{:?}", s.events);
    assert_eq!(s.role(1), Some(Role::Passive));
    s
}

fn cut_all(s: &mut Sim, cut: bool) {
    for p in 0..3 {
        s.set_cut(p, cut);
    }
}

fn first_change(s: &Sim, node: usize, to: Role, after: u64) -> Option<u64> {
    s.role_changes()
        .iter()
        .find(|(t, n, r)| *t >= after && *n == node && *r == to)
        .map(|c| c.0)
}

#[test]
fn fence_succeeds_then_the_survivor_takes_over_after_the_power_off() {
    for seed in 0..20 {
        let mut s = fenced(100 + seed);
        s.nodes[0].fence_time = 200 + seed * 50;
        let cut = s.t;
        cut_all(&mut s, true);
        s.run_until(cut + DEADTIME + 3000);
        // The active node never fences; the passive one fences once.
        assert_eq!(s.fences.iter().map(|f| f.1).collect::<Vec<_>>(), [1]);
        let (off_at, off) = s.powered_off[0];
        assert_eq!(off, 0);
        let acquiring = first_change(&s, 1, Role::Acquiring, cut).expect("node2 took over");
        assert!(
            off_at < acquiring,
            "power-off {off_at} after takeover {acquiring}"
        );
        assert_eq!(s.role(1), Some(Role::Active));
        assert!(s.double_holders.is_empty(), "{:?}", s.double_holders);
        assert!(s.has_event(1, |e| *e == Event::Fenced));
        assert!(s.has_event(1, |e| matches!(
            e,
            Event::RoleChanged {
                reason: Some(Reason::PeerDead),
                ..
            }
        )));
    }
}

#[test]
fn fence_fails_the_node_stays_passive_until_the_operator_confirms() {
    let mut s = fenced(120);
    s.nodes[0].bmc = Bmc::Refuses;
    // node1 really dies; its BMC cannot be reached.
    let killed = s.t;
    s.kill(0);
    s.run_until(killed + DEADTIME + 5000);
    assert_eq!(s.role(1), Some(Role::Passive));
    assert!(s.has_event(1, |e| matches!(
        e,
        Event::FenceFailed { peer: NodeId::Node1, why } if why.contains("refused")
    )));
    assert!(s.has_event(1, |e| *e == Event::Waiting(WaitReason::FenceFailed)));
    let now = s.now();
    let st = s.core(1).status(now);
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("could not be powered off: check it and confirm")),
        "{:?}",
        st.warnings
    );
    // The operator checked node1 is down and confirms.
    s.core(1).confirm_fence(now).unwrap();
    s.drain(1);
    s.run_until(s.t + 500);
    assert_eq!(s.role(1), Some(Role::Active));
    assert!(s.has_event(1, |e| *e == Event::FenceConfirmed));
    // Nothing left to confirm.
    let now = s.now();
    assert_eq!(
        s.core(1).confirm_fence(now),
        Err(ConfirmError::NothingToConfirm)
    );
}

#[test]
fn confirmation_is_refused_while_the_peer_is_heard_and_without_a_failed_fence() {
    let mut s = fenced(121);
    let now = s.now();
    assert_eq!(
        s.core(1).confirm_fence(now),
        Err(ConfirmError::NothingToConfirm)
    );
    // All paths cut, node1 alive, its BMC unreachable: node2 waits for the operator.
    s.nodes[0].bmc = Bmc::Refuses;
    cut_all(&mut s, true);
    s.run_until(s.t + DEADTIME + 2000);
    assert_eq!(s.role(1), Some(Role::Passive));
    assert_eq!(s.role(0), Some(Role::Active));
    // The paths come back: node1 is heard, the failed fence is forgotten.
    cut_all(&mut s, false);
    s.run_until(s.t + 1000);
    let now = s.now();
    assert_eq!(
        s.core(1).confirm_fence(now),
        Err(ConfirmError::NothingToConfirm)
    );
    let st = s.core(1).status(now);
    assert!(st.fence.is_none(), "{:?}", st.fence);
    assert!(s.double_holders.is_empty());
}

#[test]
fn fence_timeout_counts_as_failed() {
    let mut s = fenced(122);
    s.nodes[0].bmc = Bmc::Hangs;
    let cut = s.t;
    cut_all(&mut s, true);
    s.run_until(cut + DEADTIME + FENCE_TIMEOUT + 1000);
    assert_eq!(s.role(1), Some(Role::Passive));
    assert!(s.has_event(1, |e| matches!(
        e,
        Event::FenceFailed { why, .. } if why.contains("fence timeout")
    )));
    assert!(s.powered_off.is_empty());
    assert!(s.double_holders.is_empty());
}

#[test]
fn peer_back_during_fencing_is_still_powered_off_and_never_both_hold() {
    for seed in 0..20 {
        let mut s = fenced(130 + seed);
        // A slow BMC: the paths come back while it works.
        s.nodes[0].fence_time = 2000;
        let cut = s.t;
        cut_all(&mut s, true);
        s.run_until(cut + DEADTIME + KEEPALIVE + 100 + seed * 20);
        assert_eq!(s.fences.len(), 1, "seed {seed}: {:?}", s.fences);
        cut_all(&mut s, false);
        s.run_until(cut + DEADTIME + 5000);
        assert_eq!(s.powered_off.len(), 1);
        assert_eq!(s.role(1), Some(Role::Active), "seed {seed}");
        assert!(s.double_holders.is_empty(), "seed {seed}");
    }
}

#[test]
fn peer_back_during_a_failing_fence_keeps_its_services_and_nothing_waits() {
    let mut s = fenced(150);
    s.nodes[0].bmc = Bmc::Refuses;
    s.nodes[0].fence_time = 2000;
    let cut = s.t;
    cut_all(&mut s, true);
    s.run_until(cut + DEADTIME + KEEPALIVE + 200);
    cut_all(&mut s, false);
    s.run_until(cut + DEADTIME + 6000);
    assert_eq!(s.role(0), Some(Role::Active));
    assert_eq!(s.role(1), Some(Role::Passive));
    let now = s.now();
    let st = s.core(1).status(now);
    assert!(st.waiting.is_none(), "{:?}", st.waiting);
    assert!(s.double_holders.is_empty());
}

#[test]
fn both_losing_every_path_at_once_exactly_one_fences() {
    for seed in 0..50 {
        let mut s = Sim::stopped(200 + seed);
        let mut rng = SmallRng::seed_from_u64(seed);
        for n in 0..2 {
            s.nodes[n].fencing = required();
            // Any fence time shorter than the tiebreak delay.
            s.nodes[n].fence_time = rng.random_range(50..FENCE_DELAY - 200);
        }
        // Both start with every path already gone: both would fence at initdead.
        cut_all(&mut s, true);
        s.start(0);
        s.start(1);
        s.run_until(INITDEAD + FENCE_DELAY * 3);
        assert_eq!(s.powered_off.len(), 1, "seed {seed}: {:?}", s.powered_off);
        assert_eq!(s.powered_off[0].1, 0, "node2's fence wins");
        assert_eq!(
            s.fences.iter().map(|f| f.1).collect::<Vec<_>>(),
            [1],
            "seed {seed}"
        );
        assert!(s.both_off.is_empty());
        assert!(s.double_holders.is_empty());
        assert_eq!(s.role(1), Some(Role::Active));
        assert!(s.has_event(0, |e| *e == Event::Waiting(WaitReason::FenceDelay)));
    }
}

/// DRBD's fence-peer handler on node `n` while it holds the data: asks every 250 ms
/// (as the handler polls) from `from` for `span` ms, as long as the node runs.
fn fence_for_data_polled(s: &mut Sim, n: usize, from: u64, span: u64) -> Vec<bool> {
    let mut answers = Vec::new();
    let mut t = from;
    while t < from + span {
        s.run_until(t);
        if s.role(n).is_none() {
            break;
        }
        let now = s.now();
        answers.push(s.core(n).fence_for_data(now));
        s.drain(n);
        t += 250;
    }
    answers
}

#[test]
fn the_active_losing_its_replica_to_a_silent_passive_powers_it_off_after_the_tiebreak() {
    for seed in 0..10 {
        let mut s = fenced(400 + seed);
        // node2 (passive) loses power; node1's replication loses it at once.
        let killed = s.t;
        s.kill(1);
        let answers = fence_for_data_polled(&mut s, 0, killed, DEADTIME + FENCE_DELAY * 2);
        // Heard until the deadtime ran out: the handler waits for an outdate first.
        assert_eq!(answers.first(), Some(&false), "seed {seed}");
        assert_eq!(answers.last(), Some(&true), "seed {seed}");
        assert_eq!(s.fences.iter().map(|f| f.1).collect::<Vec<_>>(), [0]);
        let (off_at, off) = s.powered_off[0];
        assert_eq!(off, 1);
        assert!(
            off_at >= killed + DEADTIME + FENCE_DELAY,
            "node1 waits its tiebreak delay: {off_at}"
        );
        assert_eq!(s.role(0), Some(Role::Active), "it never let go");
        let now = s.now();
        assert_eq!(s.core(0).status(now).fence, Some(FenceStatus::PoweredOff));
        assert!(s.has_event(0, |e| *e == Event::Fenced));
    }
}

#[test]
fn every_path_lost_while_the_active_fences_for_its_replica_powers_off_exactly_one() {
    for seed in 0..30 {
        let mut s = fenced(500 + seed);
        for n in 0..2 {
            s.nodes[n].fence_time = 100 + seed * 20;
        }
        let cut = s.t;
        cut_all(&mut s, true);
        // node1 active: DRBD loses the peer too and asks for the fence.
        fence_for_data_polled(&mut s, 0, cut, DEADTIME + FENCE_DELAY * 2);
        s.run_until(cut + DEADTIME + FENCE_DELAY * 3);
        assert_eq!(s.powered_off.len(), 1, "seed {seed}: {:?}", s.powered_off);
        assert_eq!(s.powered_off[0].1, 0, "node2's fence wins");
        assert!(s.both_off.is_empty(), "seed {seed}");
        assert!(s.double_holders.is_empty(), "seed {seed}");
        assert_eq!(s.role(1), Some(Role::Active), "seed {seed}");
    }
}

#[test]
fn forcing_the_copy_of_a_passive_node1_fences_the_silent_peer_at_once() {
    let mut s = fenced(610);
    let now = s.now();
    s.core(0).switchover(now).unwrap();
    s.drain(0);
    s.run_until(s.t + 3000);
    assert_eq!(s.role(0), Some(Role::Passive));
    // The crossover went first (node1's copy stale), then node2 lost its power.
    let now = s.now();
    s.core(0).handle(now, replica(ReplicaDisk::Outdated, false));
    s.drain(0);
    let killed = s.t;
    s.kill(1);
    s.run_until(killed + DEADTIME + 500);
    assert_eq!(
        s.role(0),
        Some(Role::Passive),
        "no takeover with a stale copy"
    );
    assert!(s.fences.is_empty());
    // The operator forces node1's copy: DRBD's promotion asks for the fence.
    let asked = s.t;
    let answers = fence_for_data_polled(&mut s, 0, asked, 2000);
    assert!(answers.iter().all(|a| *a));
    let (at, fencer) = s.fences[0];
    assert_eq!(fencer, 0);
    assert!(at < asked + 500, "no tiebreak wait for a forced copy: {at}");
    let now = s.now();
    assert_eq!(s.core(0).status(now).fence, Some(FenceStatus::PoweredOff));
}

#[test]
fn no_fence_for_the_replica_while_the_peer_is_heard_or_without_fencing() {
    let mut s = fenced(600);
    let now = s.now();
    // A cut crossover: replication lost, heartbeats still heard.
    assert!(!s.core(0).fence_for_data(now));
    assert!(!s.core(1).fence_for_data(now));
    s.run_until(s.t + 5000);
    assert!(s.fences.is_empty());
    let mut s = Sim::new(601);
    s.run_until(3000);
    let killed = s.t;
    s.kill(1);
    let answers = fence_for_data_polled(&mut s, 0, killed, DEADTIME * 3);
    assert!(
        answers.iter().all(|a| !a),
        "fencing off: nothing to wait for"
    );
    assert!(s.fences.is_empty());
}

#[test]
fn both_passive_when_every_path_goes_during_a_switchover_exactly_one_fences() {
    for seed in 0..30 {
        let mut s = fenced(300 + seed);
        let now = s.now();
        s.core(0).switchover(now).unwrap();
        s.drain(0);
        // node1 releases (50 ms); every path goes before node2 heard the handover.
        s.run_until(s.t + 40 + seed);
        cut_all(&mut s, true);
        s.run_until(s.t + DEADTIME + FENCE_DELAY * 3);
        assert!(s.double_holders.is_empty(), "seed {seed}");
        assert!(s.both_off.is_empty(), "seed {seed}");
        let holders = (0..2)
            .filter(|n| s.role(*n).is_some_and(Role::holds_resources))
            .count();
        assert_eq!(holders, 1, "seed {seed}: {:?}", s.events);
        assert!(s.powered_off.len() <= 1);
    }
}

#[test]
fn switchover_and_ping_node_handover_never_fence() {
    let mut s = fenced(160);
    let now = s.now();
    s.core(0).switchover(now).unwrap();
    s.drain(0);
    s.run_until(s.t + 1000);
    assert_eq!(s.role(1), Some(Role::Active));
    s.nodes[1].ping_ok = [false, false];
    s.run_until(s.t + DEADTIME * 4);
    assert_eq!(s.role(0), Some(Role::Active));
    assert!(s.fences.is_empty(), "{:?}", s.fences);
}

#[test]
fn fencing_off_takes_over_at_once_and_warns() {
    let mut s = stable(161);
    let now = s.now();
    let st = s.core(0).status(now);
    assert!(st.fencing_off);
    assert!(st.warnings.iter().any(|w| w.contains("split brain")));
    s.kill(0);
    s.run_until(s.t + DEADTIME + 500);
    assert!(s.fences.is_empty());
    assert_ne!(s.role(1), Some(Role::Passive));
}

#[test]
fn a_release_that_fails_is_not_a_release_and_the_peer_fences_before_taking_over() {
    let mut s = fenced(170);
    let now = s.now();
    s.core(0).switchover(now).unwrap();
    s.drain(0);
    // The chain cannot give the data back: the shell reports it.
    s.queue
        .retain(|Reverse((_, _, m))| !matches!(m, Msg::Resource { node: 0, .. }));
    s.core(0).handle(now, Input::ReleaseFailed);
    s.drain(0);
    assert_eq!(s.role(0), Some(Role::Releasing));
    assert!(s.has_event(0, |e| *e == Event::ReleaseFailed));
    s.run_until(s.t + DEADTIME * 3);
    assert_eq!(s.fences.iter().map(|f| f.1).collect::<Vec<_>>(), [1]);
    let (off_at, _) = s.powered_off[0];
    let acquiring = first_change(&s, 1, Role::Acquiring, now.as_millis()).unwrap();
    assert!(off_at < acquiring);
    assert_eq!(s.role(1), Some(Role::Active));
    assert!(s.has_event(1, |e| matches!(
        e,
        Event::RoleChanged {
            reason: Some(Reason::PeerReleaseFailed),
            ..
        }
    )));
    assert!(s.double_holders.is_empty());
}

#[test]
fn a_release_that_fails_without_fencing_leaves_the_peer_waiting() {
    let mut s = stable(171);
    let now = s.now();
    s.core(0).switchover(now).unwrap();
    s.drain(0);
    s.queue
        .retain(|Reverse((_, _, m))| !matches!(m, Msg::Resource { node: 0, .. }));
    s.core(0).handle(now, Input::ReleaseFailed);
    s.drain(0);
    s.run_until(s.t + DEADTIME * 3);
    assert_eq!(s.role(1), Some(Role::Passive));
    assert!(s.has_event(1, |e| *e == Event::Waiting(WaitReason::PeerReleaseFailed)));
    assert!(s.double_holders.is_empty());
}

#[test]
fn peer_heard_again_after_every_path_was_lost_is_announced_to() {
    let mut s = fenced(180);
    // Only the serial cable survives... then goes too; node2's BMC refuses so node2
    // keeps running passive.
    s.nodes[0].bmc = Bmc::Refuses;
    cut_all(&mut s, true);
    s.run_until(s.t + DEADTIME + 1000);
    assert!(s.announced.is_empty());
    cut_all(&mut s, false);
    s.run_until(s.t + 1000);
    assert_eq!(s.announced.len(), 1, "{:?}", s.announced);
    assert_eq!(s.announced[0].1, 0);
    assert_eq!(s.announced[0].2, AnnounceReason::PeerBack);
}

// ---- Periodic gratuitous-ARP refresh ----

const REFRESH: u64 = 10_000;

/// A cluster whose nodes refresh their announcements every [`REFRESH`] ms while active,
/// brought up with node1 active.
fn refreshing(seed: u64) -> Sim {
    let mut s = Sim::stopped(seed);
    for n in 0..2 {
        s.nodes[n].garp_refresh = Some(Duration::from_millis(REFRESH));
    }
    s.start(0);
    s.start(1);
    s.run_until(s.t + 3000);
    assert_eq!(s.role(0), Some(Role::Active), "{:?}", s.events);
    assert_eq!(s.role(1), Some(Role::Passive));
    s
}

fn refreshes(s: &Sim, node: usize) -> Vec<u64> {
    s.announced
        .iter()
        .filter(|(_, n, why)| *n == node && *why == AnnounceReason::Refresh)
        .map(|a| a.0)
        .collect()
}

#[test]
fn refresh_announces_at_the_interval_while_active_and_stops_on_release() {
    for seed in 0..20 {
        let mut s = refreshing(1900 + seed);
        let active_at = first_change(&s, 0, Role::Active, 0).unwrap();
        s.run_until(active_at + 5 * REFRESH + REFRESH / 2);
        // One refresh per interval after becoming active, on the dot (virtual time),
        // from the active node only; nothing else was announced.
        let expect: Vec<u64> = (1..=5).map(|k| active_at + k * REFRESH).collect();
        assert_eq!(refreshes(&s, 0), expect, "seed {seed}");
        assert!(refreshes(&s, 1).is_empty());
        assert_eq!(s.announced.len(), 5);
        // A switchover: node1 releases, node2 takes over and refreshes from then on.
        let t = s.t;
        let now = s.now();
        s.core(0).switchover(now).unwrap();
        s.drain(0);
        s.run_until(t + 3 * REFRESH + REFRESH / 2);
        let released = first_change(&s, 0, Role::Releasing, t).unwrap();
        let took = first_change(&s, 1, Role::Active, t).unwrap();
        assert!(
            refreshes(&s, 0).iter().all(|at| *at < released),
            "seed {seed}: node1 refreshed after its release: {:?}",
            s.announced
        );
        let expect: Vec<u64> = (1..=3).map(|k| took + k * REFRESH).collect();
        assert_eq!(refreshes(&s, 1), expect, "seed {seed}");
    }
}

#[test]
fn refresh_off_announces_nothing_beyond_the_events_that_call_for_it() {
    let mut s = stable(1950);
    s.run_until(s.t + 10 * REFRESH);
    assert!(s.announced.is_empty(), "{:?}", s.announced);
    // A ping-node handover and a switchover move the services without any announce
    // from the core (the takeover's own ARPs are the acquire's).
    s.nodes[0].ping_ok = [false, false];
    s.run_until(s.t + DEADTIME * 3);
    assert_eq!(s.role(1), Some(Role::Active));
    s.run_until(s.t + 5 * REFRESH);
    assert!(s.announced.is_empty(), "{:?}", s.announced);
}

#[test]
fn refresh_never_runs_on_a_passive_or_releasing_node() {
    let mut s = refreshing(1960);
    // node1 loses its ping nodes: it releases for node2 (ping-node handover).
    s.nodes[0].ping_ok = [false, false];
    let t = s.t;
    s.run_until(t + 4 * REFRESH);
    assert_eq!(s.role(0), Some(Role::Passive));
    assert_eq!(s.role(1), Some(Role::Active));
    let released = first_change(&s, 0, Role::Releasing, t).unwrap();
    assert!(refreshes(&s, 0).iter().all(|at| *at < released));
    let took = first_change(&s, 1, Role::Active, t).unwrap();
    assert_eq!(
        refreshes(&s, 1),
        (1..=3).map(|k| took + k * REFRESH).collect::<Vec<_>>()
    );
}

#[test]
fn another_announcement_restarts_the_refresh_interval() {
    // After a split brain the survivor announces; its next refresh is a full interval
    // later, not a moment after (two bursts of ARPs close together).
    let mut s = refreshing(1970);
    cut_all(&mut s, true);
    s.run_until(s.t + DEADTIME + 1000);
    assert_eq!(s.role(1), Some(Role::Active));
    let healed = s.t;
    cut_all(&mut s, false);
    s.run_until(healed + 2 * REFRESH + REFRESH / 2);
    let over = s
        .announced
        .iter()
        .find(|(t, n, why)| *t >= healed && *n == 0 && *why == AnnounceReason::SplitBrainOver)
        .map(|a| a.0)
        .unwrap_or_else(|| panic!("{:?}", s.announced));
    let after: Vec<u64> = refreshes(&s, 0).into_iter().filter(|t| *t > over).collect();
    assert_eq!(
        after,
        vec![over + REFRESH, over + 2 * REFRESH],
        "{:?}",
        s.announced
    );
    // The loser stopped refreshing when it released.
    let lost = first_change(&s, 1, Role::Releasing, healed).unwrap();
    assert!(refreshes(&s, 1).iter().all(|t| *t < lost));
}

// ---- Freshness: "may promote" is the core's decision from the replica's state ----

fn replica(disk: ReplicaDisk, connected: bool) -> Input<'static> {
    Input::Replica(Replica {
        disk,
        connected,
        primary: false,
        peer_secondary: connected,
    })
}

#[test]
fn a_peer_heard_after_replication_went_away_makes_this_copy_stale_and_outdated() {
    let mut s = fenced(400);
    let t = s.t;
    let now = s.now();
    s.core(1).handle(now, replica(ReplicaDisk::UpToDate, true));
    s.drain(1);
    // The crossover cable is cut: replication goes, heartbeats go on (serial, external).
    s.set_cut(PathId::Internal.index(), true);
    let now = s.now();
    s.core(1).handle(now, replica(ReplicaDisk::UpToDate, false));
    s.drain(1);
    s.run_until(t + 3000);
    let now = s.now();
    s.core(1).handle(now, replica(ReplicaDisk::UpToDate, false));
    s.drain(1);
    assert!(s.has_event(1, |e| *e == Event::CopyStale));
    assert_eq!(s.outdated.iter().map(|o| o.1).collect::<Vec<_>>(), [1]);
    assert!(!s.core(1).status(now).data_good);
    // Now node1 dies: node2 must not take over with its stale copy, nor fence.
    s.kill(0);
    s.run_until(s.t + DEADTIME * 3);
    assert_eq!(s.role(1), Some(Role::Passive));
    assert!(s.fences.is_empty());
    assert!(s.has_event(1, |e| *e == Event::Waiting(WaitReason::DataNotGood)));
}

#[test]
fn an_outdated_copy_never_promotes_even_in_a_fresh_core() {
    // A restarted clusterd (or a rebooted node): DRBD reports the copy outdated.
    let mut s = Sim::stopped(401);
    // Whatever the node believed before (it starts with data known good here), DRBD's
    // word decides.
    s.nodes[1].fencing = required();
    s.start(1);
    let now = s.now();
    s.core(1).handle(now, replica(ReplicaDisk::Outdated, false));
    s.drain(1);
    s.run_until(INITDEAD * 4);
    assert_eq!(s.role(1), Some(Role::Starting));
    assert!(s.fences.is_empty());
}

#[test]
fn a_peer_silent_with_the_replication_leaves_the_copy_good() {
    let mut s = fenced(402);
    let now = s.now();
    s.core(1).handle(now, replica(ReplicaDisk::UpToDate, true));
    s.drain(1);
    // Power loss of node1: heartbeats and replication go together.
    s.kill(0);
    let now = s.now();
    s.core(1).handle(now, replica(ReplicaDisk::UpToDate, false));
    s.drain(1);
    s.run_until(s.t + 1500);
    let now = s.now();
    s.core(1).handle(now, replica(ReplicaDisk::UpToDate, false));
    s.drain(1);
    s.run_until(s.t + DEADTIME * 3);
    assert!(!s.has_event(1, |e| *e == Event::CopyStale));
    assert!(s.outdated.is_empty());
    assert_eq!(s.role(1), Some(Role::Active));
}

#[test]
fn a_silent_peer_whose_replication_is_connected_and_secondary_is_not_fenced() {
    // node2 activated first; node1 is in recovery mode fetching its copy: no
    // heartbeats from it, but DRBD connected with its device secondary.
    for seed in 0..10 {
        let mut s = Sim::stopped(700 + seed);
        s.nodes[1].fencing = required();
        s.start(1);
        let now = s.now();
        s.core(1).handle(now, replica(ReplicaDisk::UpToDate, true));
        s.drain(1);
        s.run_until(s.t + INITDEAD + DEADTIME * 2);
        assert!(s.fences.is_empty(), "seed {seed}: {:?}", s.fences);
        assert_eq!(s.role(1), Some(Role::Active), "seed {seed}");
    }
    // Without the replication's word the never-heard peer is fenced first.
    let mut s = Sim::stopped(720);
    s.nodes[1].fencing = required();
    s.start(1);
    s.run_until(s.t + START_WAIT + DEADTIME);
    assert_eq!(s.fences.iter().map(|f| f.1).collect::<Vec<_>>(), [1]);
}

#[test]
fn forcing_a_stale_copy_is_refused_while_the_peer_is_heard_and_still_fences() {
    let mut s = fenced(403);
    let now = s.now();
    assert_eq!(
        s.core(1).force_copy_good(now),
        Err(tandem_core::ForceError::PeerAlive)
    );
    assert_eq!(
        s.core(0).force_copy_good(now),
        Err(tandem_core::ForceError::PeerAlive)
    );
    // node2's copy went stale, then node1 was lost for good.
    s.set_cut(PathId::Internal.index(), true);
    s.core(1).handle(now, replica(ReplicaDisk::UpToDate, false));
    s.drain(1);
    s.run_until(s.t + 3000);
    let now = s.now();
    s.core(1).handle(now, replica(ReplicaDisk::UpToDate, false));
    s.drain(1);
    s.kill(0);
    s.run_until(s.t + DEADTIME * 3);
    assert_eq!(s.role(1), Some(Role::Passive));
    // The operator forces node2's copy (DRBD made it current): fence, then takeover.
    let now = s.now();
    s.core(1).force_copy_good(now).unwrap();
    s.core(1).handle(now, replica(ReplicaDisk::UpToDate, false));
    s.drain(1);
    s.run_until(s.t + 2000);
    assert_eq!(s.fences.iter().map(|f| f.1).collect::<Vec<_>>(), [1]);
    assert_eq!(s.role(1), Some(Role::Active));
}

/// An up-to-date copy connected to the peer's, with both devices' roles given.
fn connected_replica(primary: bool, peer_secondary: bool) -> Input<'static> {
    Input::Replica(Replica {
        disk: ReplicaDisk::UpToDate,
        connected: true,
        primary,
        peer_secondary,
    })
}

#[test]
fn a_restarted_daemon_of_the_active_node2_keeps_the_services_and_node1_does_not_try() {
    // node2 holds the services (node1's copy was not good at the start).
    for seed in 0..10 {
        let mut s = Sim::stopped(600 + seed);
        s.nodes[0].data_good = false;
        s.start(0);
        s.start(1);
        s.run_until(1000);
        assert_eq!(s.role(1), Some(Role::Active));
        s.nodes[0].data_good = true;
        let now = s.now();
        s.core(0).handle(now, Input::DataGood(true));
        s.drain(0);
        s.run_until(s.t + 1000);
        // node2's cluster daemon dies and init starts it again: its DRBD device is
        // still primary (the services ran on), connected to node1's secondary.
        let (first1, first2) = (s.role_changes().len(), s.t);
        s.kill(1);
        s.run_until(s.t + 500);
        s.start(1);
        let now = s.now();
        s.core(1).handle(now, connected_replica(true, true));
        s.drain(1);
        let now = s.now();
        s.core(0).handle(now, connected_replica(false, false));
        s.drain(0);
        s.run_until(s.t + 5000);
        assert_eq!(s.role(1), Some(Role::Active), "seed {seed}: {:?}", s.events);
        assert_eq!(s.role(0), Some(Role::Passive), "seed {seed}");
        assert!(
            first_change(&s, 0, Role::Acquiring, first2).is_none(),
            "seed {seed}: node1 tried to take the data node2 holds: {:?}",
            &s.role_changes()[first1..]
        );
        assert!(s.fences.is_empty());
    }
}

#[test]
fn a_node_restarting_into_a_partition_waits_for_the_peers_fence_before_its_own() {
    // node1 (passive) lost every path to node2 (active) and waits its tiebreak delay;
    // node2 crashes and comes back into the partition. Fencing at its initdead, node2
    // would power node1 off while node1's fence of node2 is on its way: both go off.
    for seed in 0..20 {
        let mut s = fenced(900 + seed);
        let now = s.now();
        s.core(0).switchover(now).unwrap();
        s.drain(0);
        s.run_until(s.t + 3000);
        assert_eq!(s.role(1), Some(Role::Active));
        for n in 0..2 {
            s.nodes[n].fence_time = FENCE_DELAY - 500;
        }
        cut_all(&mut s, true);
        s.run_until(s.t + DEADTIME + 100);
        assert!(s.has_event(0, |e| *e == Event::Waiting(WaitReason::FenceDelay)));
        s.kill(1);
        s.run_until(s.t + 400 + seed * 50);
        s.start(1);
        s.run_until(s.t + START_WAIT + FENCE_DELAY * 2);
        assert!(s.both_off.is_empty(), "seed {seed}: {:?}", s.powered_off);
        assert_eq!(
            s.powered_off.iter().map(|p| p.1).collect::<Vec<_>>(),
            [1],
            "seed {seed}: node1's fence lands, node2 never fences"
        );
        assert_eq!(s.fences.iter().map(|f| f.1).collect::<Vec<_>>(), [0]);
        assert_eq!(s.role(0), Some(Role::Active), "seed {seed}");
    }
}

#[test]
fn the_chaos_run_that_once_powered_off_both_nodes_powers_off_at_most_one() {
    // Found by `with_fencing_never_two_actives_even_when_every_path_is_lost`: node2
    // restarted into a partition and fenced at its initdead while node1's tiebreak
    // delay ran out.
    let (s, _) = chaos_with(15_095_192_463_331_945_837, 3, 0.0, Attack::None, true, true);
    assert!(s.both_off.is_empty(), "{:?}", s.powered_off);
    assert!(s.double_holders.is_empty());
}

#[test]
fn a_node_shutting_down_takes_nothing_back_when_its_peer_dies_meanwhile() {
    // The active node hands its services over on its way out; the peer dies before
    // it takes them. Without `leave` the first node would fence the peer and take the
    // services back (then stop anyway); leaving, it does neither.
    for (seed, leaving) in [(950, true), (951, true), (952, false)] {
        let mut s = fenced(seed);
        let now = s.now();
        s.core(0).switchover(now).unwrap();
        if leaving {
            s.core(0).leave(now);
        }
        s.drain(0);
        s.kill(1);
        s.run_until(s.t + DEADTIME * 3 + FENCE_DELAY * 2 + FENCE_TIMEOUT);
        if leaving {
            assert!(s.fences.is_empty(), "seed {seed}: {:?}", s.fences);
            assert_eq!(s.role(0), Some(Role::Passive), "seed {seed}");
            assert!(s.has_event(0, |e| *e == Event::Waiting(WaitReason::Leaving)));
        } else {
            assert_eq!(s.fences.iter().map(|f| f.1).collect::<Vec<_>>(), [0]);
            assert_eq!(s.role(0), Some(Role::Active), "seed {seed}");
        }
    }
    // Leaving, with the peer alive: the handover still goes through.
    let mut s = fenced(953);
    let now = s.now();
    s.core(0).switchover(now).unwrap();
    s.core(0).leave(now);
    s.drain(0);
    s.run_until(s.t + DEADTIME * 3);
    assert_eq!(s.role(1), Some(Role::Active));
    assert_eq!(s.role(0), Some(Role::Passive));
    assert!(s.fences.is_empty(), "{:?}", s.fences);
}
