//! A captured sequence of the peer's frames replayed after this node restarted: with
//! the peer's last generation kept across the restart (`Input::PeerGenerationFloor`),
//! every frame of an older generation is refused as a replay, not accepted "stale" until
//! a newer one arrives.

#![allow(clippy::unwrap_used, reason = "test")]

use std::time::Duration;

use tandem_core::{
    ClusterKey, Core, Frame, Input, Instant, NodeId, Params, PathId, ResourceState, Role,
};

fn params(generation: u64) -> Params {
    Params {
        node: NodeId::Node1,
        keepalive: Duration::from_millis(200),
        warntime: Duration::from_millis(500),
        deadtime: Duration::from_millis(1000),
        initdead: Duration::from_millis(2000),
        paths_enabled: [true; 3],
        ping_nodes: 0,
        ping_dead: Duration::from_millis(1000),
        config_digest: [1; 32],
        generation,
        fencing: tandem_core::FencePolicy::Off,
        garp_refresh: None,
    }
}

fn key() -> ClusterKey {
    ClusterKey::new(b"replay test cluster key").unwrap()
}

/// A frame of node2's run `generation`.
fn peer_frame(generation: u64, sequence: u64) -> [u8; tandem_core::FRAME_LEN] {
    tandem_proto::encode(
        &key(),
        &Frame {
            sender: NodeId::Node2,
            path: PathId::Internal,
            role: Role::Passive,
            resources: ResourceState::Stopped,
            data_good: true,
            want_switchover: false,
            handover: true,
            ping_total: 0,
            ping_reach: 0,
            generation,
            sequence,
            your_generation: 0,
            config_digest: [1; 32],
        },
    )
}

fn feed(core: &mut Core, now: Instant, frame: &[u8]) {
    core.handle(
        now,
        Input::Frame {
            path: PathId::Internal,
            bytes: frame,
        },
    );
}

#[test]
fn frames_of_an_older_peer_generation_are_replays_after_a_restart() {
    let (old, new) = (1_000, 2_000);
    let captured: Vec<_> = (1..=20).map(|s| peer_frame(old, s)).collect();

    // Without the kept generation (before this change): the first replayed frame
    // is taken as the peer's.
    let t0 = Instant::from_millis(0);
    let mut naive = Core::new(t0, params(50), key()).unwrap();
    feed(&mut naive, t0, &captured[0]);
    assert_eq!(naive.peer_generation(), Some(old));

    // This node heard the peer's newer run before it restarted; it kept that.
    let mut before = Core::new(t0, params(50), key()).unwrap();
    feed(&mut before, t0, &peer_frame(new, 1));
    let kept = before.peer_generation().unwrap();
    assert_eq!(kept, new);

    // Restarted (a new generation of its own), the floor given before any frame.
    let mut core = Core::new(t0, params(51), key()).unwrap();
    core.handle(t0, Input::PeerGenerationFloor(kept));
    for (i, f) in captured.iter().enumerate() {
        feed(&mut core, Instant::from_millis(10 * i as u64), f);
    }
    let c = core.counters();
    assert_eq!((c.accepted, c.replayed), (0, 20), "{c:?}");
    assert_eq!(core.peer_generation(), None, "nothing taken from a replay");
    // The peer's current run is heard as usual.
    feed(&mut core, Instant::from_millis(300), &peer_frame(new, 2));
    assert_eq!(core.peer_generation(), Some(new));
    assert_eq!(core.counters().accepted, 1);
}
