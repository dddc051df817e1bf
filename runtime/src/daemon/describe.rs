//! The core's events in words, for the event feed and e-mail.

use tandem_core::{Event, Reason, Rejection};

pub(super) fn describe(e: &Event) -> (&'static str, String) {
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
