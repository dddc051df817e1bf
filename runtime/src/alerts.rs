//! Which events become e-mail (R8.2), and with which old and new state. Pure: no IO,
//! no clock; the caller passes the time and hands the result to [`crate::mail`].
//!
//! Mailed: role changes that end in a settled role (`failover`, `switchover`,
//! `takeover` or `role`, by the core's reason, old and new settled role), heartbeat
//! paths going down and coming back, the peer lost and back, split brain, resource
//! chain failures (acquire and release), the peer powered off or a fence that failed,
//! a stale copy, replication state changes, hardware/RAID health changes, VE health
//! changes (stopped by the operator, crashed, restarted, restart given up), the clock
//! unsynchronised for long and back, the remote-support tunnel switched on and off, a failed scheduled VE backup, and
//! system updates (committed, given up, rolled
//! back).
//! Not mailed: what happens at every start (the first time a path or the peer is
//! heard, `starting -> passive`), late paths, ping-node reach, refused frames.

use tandem_core::{Event, NodeId, PathId, Reason, Role};
use tandem_notify::UnixSecs;

/// Something the daemon reports that may be worth an e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Alert {
    /// An event of the cluster core.
    Core(Event),
    /// The resource chain failed; the text says where and why.
    ResourceError,
    /// The replication state line changed; `old` is `None` at the first reading.
    Replication {
        /// The previous state line.
        old: Option<String>,
        /// The new state line.
        new: String,
    },
    /// A confirmed hardware health change.
    Hardware {
        /// The event kind, e.g. `hw_fan`, `hw_raid`.
        kind: String,
        /// The sensor, volume or disk, e.g. `Fan 1`.
        name: String,
        /// Health before; `None` at the first poll.
        old: Option<String>,
        /// Health now.
        new: String,
    },
    /// A VE's health changed (R8.2): stopped by the operator, crashed, restarted,
    /// restart given up.
    Ve {
        /// The VE.
        id: u32,
        /// State before.
        old: String,
        /// State now.
        new: String,
    },
    /// The node's clock unsynchronised for long, or synchronised again.
    Clock {
        /// State before.
        old: String,
        /// State now.
        new: String,
    },
    /// The remote-support tunnel switched on or off (`old`, `new`: `off`, `on`).
    Support {
        /// State before.
        old: String,
        /// State now.
        new: String,
    },
    /// A scheduled VE backup failed (a VE not backed up, or not copied off).
    Backup,
    /// The update server offers a newer version (`running`: this node's).
    UpdateAvailable {
        /// The running version.
        running: String,
        /// The version offered.
        offered: String,
    },
    /// A system update: committed, given up, rolled back (`old` and `new` are the
    /// versions).
    Update {
        /// The version before.
        old: String,
        /// The version tried.
        new: String,
    },
}

/// Turns [`Alert`]s into mail events, remembering what it needs across calls (the last
/// settled role, whether a path or the peer was ever heard).
#[derive(Debug, Clone)]
pub struct Alerts {
    node: NodeId,
    settled: Role,
    reason: Option<Reason>,
    path_heard: [bool; 3],
    peer_heard: bool,
}

/// The mail kind for a role change decided for `reason`.
fn role_kind(reason: Option<Reason>) -> &'static str {
    match reason {
        Some(
            Reason::PeerDead
            | Reason::PingNodes
            | Reason::SplitBrain
            | Reason::HandoverNotTaken
            | Reason::PeerReleaseFailed,
        ) => "failover",
        Some(Reason::Switchover | Reason::Handover) => "switchover",
        Some(Reason::StartAlone | Reason::StartElected) => "takeover",
        None => "role",
    }
}

impl Alerts {
    /// A mapper for `node`, which has just started.
    #[must_use]
    pub fn new(node: NodeId) -> Self {
        Self {
            node,
            settled: Role::Starting,
            reason: None,
            path_heard: [false; 3],
            peer_heard: false,
        }
    }

    fn event(
        &self,
        kind: &str,
        old: &str,
        new: &str,
        text: &str,
        at: UnixSecs,
    ) -> tandem_notify::Event {
        tandem_notify::Event {
            node: self.node.name().to_owned(),
            kind: kind.to_owned(),
            old: old.to_owned(),
            new: new.to_owned(),
            text: text.to_owned(),
            at,
        }
    }

    /// The mail for `alert` (described for people by `text`) at `at`, if it deserves one.
    /// Call in the order the alerts happened: role and liveness changes depend on the
    /// ones before.
    #[must_use]
    pub fn mail(
        &mut self,
        alert: &Alert,
        text: &str,
        at: UnixSecs,
    ) -> Option<tandem_notify::Event> {
        match alert {
            Alert::Core(e) => self.core(e, text, at),
            Alert::ResourceError => Some(self.event("resources", "", "", text, at)),
            Alert::Update { old, new } => Some(self.event("update", old, new, text, at)),
            Alert::UpdateAvailable { running, offered } => {
                Some(self.event("update available", running, offered, text, at))
            }
            Alert::Clock { old, new } => Some(self.event("clock", old, new, text, at)),
            Alert::Backup => Some(self.event("backup", "scheduled", "failed", text, at)),
            Alert::Support { old, new } => Some(self.event("support", old, new, text, at)),
            Alert::Replication { old: None, .. } => None,
            Alert::Replication {
                old: Some(old),
                new,
            } => (old != new).then(|| self.event("replication", old, new, text, at)),
            Alert::Ve { id, old, new } => Some(self.event(&format!("VE {id}"), old, new, text, at)),
            Alert::Hardware {
                kind,
                name,
                old,
                new,
            } => {
                let what = kind.strip_prefix("hw_").unwrap_or(kind);
                let kind = if name.eq_ignore_ascii_case(what) {
                    what.to_owned()
                } else {
                    format!("{what} {name}")
                };
                let old = old.as_deref().unwrap_or("unknown");
                (old != new).then(|| self.event(&kind, old, new, text, at))
            }
        }
    }

    fn core(&mut self, e: &Event, text: &str, at: UnixSecs) -> Option<tandem_notify::Event> {
        let peer = format!("peer {}", self.node.peer().name());
        let path_kind = |p: PathId| format!("heartbeat {}", p.name());
        match e {
            Event::RoleChanged { from, to, reason } => {
                if reason.is_some() {
                    self.reason = *reason;
                }
                match to {
                    Role::Acquiring | Role::Releasing | Role::Starting => None,
                    Role::Active | Role::Passive => {
                        let old = std::mem::replace(&mut self.settled, *to);
                        let reason = self.reason.take().or(*reason);
                        let boot = old == Role::Starting && *to == Role::Passive;
                        if old == *to || boot {
                            return None;
                        }
                        // The last step (e.g. acquiring -> active) carries no reason; the
                        // mail names the decision that started the change.
                        let text = match reason {
                            Some(r) => format!("{} -> {}: {}", old.name(), to.name(), r.text()),
                            None if *from == old => text.to_owned(),
                            None => format!("{} -> {} (last step: {text})", old.name(), to.name()),
                        };
                        Some(self.event(role_kind(reason), old.name(), to.name(), &text, at))
                    }
                }
            }
            Event::PathDown(p) => Some(self.event(&path_kind(*p), "up", "down", text, at)),
            Event::PathUp(p) => {
                let heard = std::mem::replace(&mut self.path_heard[p.index()], true);
                heard.then(|| self.event(&path_kind(*p), "down", "up", text, at))
            }
            Event::PeerDead => Some(self.event(&peer, "alive", "dead", text, at)),
            Event::PeerAlive => {
                let heard = std::mem::replace(&mut self.peer_heard, true);
                heard.then(|| self.event(&peer, "dead", "alive", text, at))
            }
            Event::SplitBrain { .. } => Some(self.event("split_brain", "", "", text, at)),
            Event::FenceFailed { .. } => Some(self.event("fencing", "", "failed", text, at)),
            Event::Fenced => Some(self.event("fencing", "", "powered off", text, at)),
            Event::ReleaseFailed => Some(self.event("resources", "", "release failed", text, at)),
            Event::CopyStale => Some(self.event("replication", "current", "stale", text, at)),
            // Reported through the role change or the resource error that goes with it,
            // or not a state change an operator is mailed about.
            Event::PathLate(_)
            | Event::PeerRestarted
            | Event::Waiting(_)
            | Event::PingReach { .. }
            | Event::ConfigMismatch
            | Event::FrameRejected { .. }
            | Event::SwitchoverStarted
            | Event::HandoverNotTaken
            | Event::ResourcesFailed
            | Event::FenceStarted
            | Event::FenceConfirmed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects(a: &mut Alerts, alerts: &[Alert]) -> Vec<String> {
        alerts
            .iter()
            .filter_map(|x| a.mail(x, "why", UnixSecs(1)))
            .map(|e| format!("{}: {} -> {}", e.kind, e.old, e.new))
            .collect()
    }

    fn role(from: Role, to: Role, reason: Option<Reason>) -> Alert {
        Alert::Core(Event::RoleChanged { from, to, reason })
    }

    #[test]
    fn every_ve_health_change_is_mailed() {
        let mut a = Alerts::new(NodeId::Node1);
        let ve = |old: &str, new: &str| Alert::Ve {
            id: 101,
            old: old.into(),
            new: new.into(),
        };
        let got = subjects(
            &mut a,
            &[
                ve("running", "crashed"),
                ve("crashed", "running"),
                ve("crashed", "given up"),
                ve("running", "stopped"),
            ],
        );
        assert_eq!(
            got,
            [
                "VE 101: running -> crashed",
                "VE 101: crashed -> running",
                "VE 101: crashed -> given up",
                "VE 101: running -> stopped",
            ]
        );
    }

    #[test]
    fn the_clock_lost_and_back_is_mailed() {
        let mut a = Alerts::new(NodeId::Node1);
        let clock = |old: &str, new: &str| Alert::Clock {
            old: old.into(),
            new: new.into(),
        };
        let got = subjects(
            &mut a,
            &[
                clock("synchronised", "unsynchronised"),
                clock("unsynchronised", "synchronised"),
            ],
        );
        assert_eq!(
            got,
            [
                "clock: synchronised -> unsynchronised",
                "clock: unsynchronised -> synchronised",
            ]
        );
    }

    #[test]
    fn remote_support_on_and_off_is_mailed() {
        let mut a = Alerts::new(NodeId::Node1);
        let support = |old: &str, new: &str| Alert::Support {
            old: old.into(),
            new: new.into(),
        };
        let got = subjects(&mut a, &[support("off", "on"), support("on", "off")]);
        assert_eq!(got, ["support: off -> on", "support: on -> off"]);
    }

    #[test]
    fn a_newer_version_on_the_update_server_is_mailed() {
        let mut a = Alerts::new(NodeId::Node1);
        let got = subjects(
            &mut a,
            &[Alert::UpdateAvailable {
                running: "0.1.0".into(),
                offered: "0.2.0".into(),
            }],
        );
        assert_eq!(got, ["update available: 0.1.0 -> 0.2.0"]);
    }

    #[test]
    fn start_up_is_quiet_and_failover_names_settled_roles() {
        let mut a = Alerts::new(NodeId::Node2);
        let got = subjects(
            &mut a,
            &[
                Alert::Core(Event::PathUp(PathId::Internal)),
                Alert::Core(Event::PeerAlive),
                role(Role::Starting, Role::Passive, None),
                Alert::Core(Event::PathDown(PathId::Internal)),
                Alert::Core(Event::PeerDead),
                role(Role::Passive, Role::Acquiring, Some(Reason::PeerDead)),
                role(Role::Acquiring, Role::Active, None),
                Alert::Core(Event::PathUp(PathId::Internal)),
                Alert::Core(Event::PeerAlive),
            ],
        );
        assert_eq!(
            got,
            [
                "heartbeat internal: up -> down",
                "peer node1: alive -> dead",
                "failover: passive -> active",
                "heartbeat internal: down -> up",
                "peer node1: dead -> alive",
            ]
        );
    }

    #[test]
    fn switchover_and_start_alone_and_failed_takeover() {
        let mut a = Alerts::new(NodeId::Node1);
        let got = subjects(
            &mut a,
            &[
                role(Role::Starting, Role::Acquiring, Some(Reason::StartAlone)),
                role(Role::Acquiring, Role::Active, None),
                role(Role::Active, Role::Releasing, Some(Reason::Switchover)),
                role(Role::Releasing, Role::Passive, None),
                // A takeover whose chain fails ends where it began: no role mail (the
                // resource error is mailed on its own).
                role(Role::Passive, Role::Acquiring, Some(Reason::PingNodes)),
                Alert::ResourceError,
                role(Role::Acquiring, Role::Releasing, None),
                role(Role::Releasing, Role::Passive, None),
                role(Role::Passive, Role::Acquiring, None),
                role(Role::Acquiring, Role::Active, None),
            ],
        );
        assert_eq!(
            got,
            [
                "takeover: starting -> active",
                "switchover: active -> passive",
                "resources:  -> ",
                "role: passive -> active",
            ]
        );
    }

    #[test]
    fn replication_and_hardware_changes() {
        let mut a = Alerts::new(NodeId::Node1);
        let rep = |old: Option<&str>, new: &str| Alert::Replication {
            old: old.map(str::to_owned),
            new: new.to_owned(),
        };
        let hw = |kind: &str, name: &str, old: Option<&str>, new: &str| Alert::Hardware {
            kind: kind.into(),
            name: name.into(),
            old: old.map(str::to_owned),
            new: new.into(),
        };
        let got = subjects(
            &mut a,
            &[
                rep(None, "Connected Primary/Secondary"),
                rep(
                    Some("Connected Primary/Secondary"),
                    "StandAlone Primary/Unknown",
                ),
                hw("hw_fan", "Fan 1", Some("ok"), "critical"),
                hw("hw_psu", "PS1 Status", None, "critical"),
                hw("hw_bmc", "bmc", Some("ok"), "unavailable"),
                Alert::Core(Event::SplitBrain {
                    survivor: NodeId::Node1,
                }),
                Alert::Core(Event::PathLate(PathId::Serial)),
            ],
        );
        assert_eq!(
            got,
            [
                "replication: Connected Primary/Secondary -> StandAlone Primary/Unknown",
                "fan Fan 1: ok -> critical",
                "psu PS1 Status: unknown -> critical",
                "bmc: ok -> unavailable",
                "split_brain:  -> ",
            ]
        );
    }

    #[test]
    fn mail_carries_node_time_and_text() {
        let mut a = Alerts::new(NodeId::Node1);
        let e = a
            .mail(&Alert::Core(Event::PeerDead), "peer silent", UnixSecs(42))
            .expect("mailed");
        assert_eq!(
            (e.node.as_str(), e.text.as_str(), e.at),
            ("node1", "peer silent", UnixSecs(42))
        );
    }
}
