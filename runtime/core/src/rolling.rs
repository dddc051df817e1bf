//! The rolling update of the pair: one action that brings both nodes to a new
//! system while the services keep running.
//!
//! The node that runs the services leads, in [`Phase`]s:
//!
//! 1. [`Phase::Peer`]: the other (passive) node gets the bundle, installs it and
//!    restarts into it; its trial ([`crate::Trial`]) keeps the new system or goes
//!    back. The leader waits until the other node runs the new version, kept, is
//!    heard again and has its copy of the data up to date; a rollback there, or no decision by the deadline, stops the
//!    rolling update with the services where they are, on the old version.
//! 2. [`Phase::Switchover`]: the services move to the updated node (the downtime
//!    of the whole update is this one switchover). Stops when the move has not
//!    happened by its deadline.
//! 3. [`Phase::Here`]: the leader, now passive, installs the bundle and restarts;
//!    its own trial decides the end (kept: done, or the services are switched back
//!    when asked; rolled back: stopped, the services stay on the updated node).
//!
//! The pair is never left with both nodes down (only the passive node ever
//! restarts) and never with the services on an uncommitted system (the switchover
//! waits for the other node's commit).
//!
//! [`Rolling`] is pure: the caller reports what it sees with `now`, and acts on the
//! [`RollingStep`] it gets back.

use core::time::Duration;

use crate::Instant;

/// Where a rolling update stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The other node is updated.
    Peer,
    /// The services move to the updated node.
    Switchover,
    /// This node is updated.
    Here,
}

impl Phase {
    /// The phase's name in the record and the views.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Phase::Peer => "peer",
            Phase::Switchover => "switchover",
            Phase::Here => "here",
        }
    }

    /// The phase named `s`.
    #[must_use]
    pub fn from_name(s: &str) -> Option<Phase> {
        match s {
            "peer" => Some(Phase::Peer),
            "switchover" => Some(Phase::Switchover),
            "here" => Some(Phase::Here),
            _ => None,
        }
    }
}

/// The deadlines of the waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollingRule {
    /// From the other node's install until it runs the new system, kept (its
    /// install, restart and trial; the trial's own deadline plus the restarts).
    pub peer: Duration,
    /// From asking for the switchover until the services run on the other node.
    pub switchover: Duration,
}

/// What the leader sees of the other node while it is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSeen {
    /// Its update state cannot be read (it is restarting).
    Unreachable,
    /// It runs the new version and its trial is over: kept.
    Kept {
        /// It is heard on a heartbeat path.
        heard: bool,
        /// Its copy of the replicated data is up to date (a switchover to it would
        /// be refused otherwise; after its restart it may still be resynchronising).
        data_good: bool,
    },
    /// It tries the new version, or still runs the old one with the update pending.
    Pending,
    /// Its update is no longer pending and it runs another version: it went back.
    WentBack,
}

/// What this node's roles look like during the switchover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// This node runs the services.
    pub here_active: bool,
    /// The other node runs the services.
    pub peer_active: bool,
}

/// Why a rolling update stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The other node went back to its previous system.
    PeerWentBack,
    /// The other node did not run the new system, kept, by the deadline.
    PeerTimedOut,
    /// The services had not moved by the deadline.
    SwitchoverTimedOut,
}

/// What the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollingStep {
    /// Nothing yet: look again (by this instant at the latest).
    Wait(Instant),
    /// The phase is done: go on to the next one.
    Next(Phase),
    /// Stop here, the services where they are.
    Stop(Stop),
}

/// A rolling update led by this node, in one phase.
#[derive(Debug, Clone)]
pub struct Rolling {
    rule: RollingRule,
    phase: Phase,
    since: Instant,
}

impl Rolling {
    /// A rolling update in `phase` since `now`.
    #[must_use]
    pub fn new(rule: RollingRule, phase: Phase, now: Instant) -> Rolling {
        Rolling {
            rule,
            phase,
            since: now,
        }
    }

    /// The phase.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When the phase's wait ends.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        let d = match self.phase {
            Phase::Peer => self.rule.peer,
            Phase::Switchover => self.rule.switchover,
            Phase::Here => return Instant::from_micros(u64::MAX),
        };
        self.since.saturating_add(d)
    }

    /// Goes on to `phase` at `now` (after [`RollingStep::Next`]).
    pub fn enter(&mut self, phase: Phase, now: Instant) {
        self.phase = phase;
        self.since = now;
    }

    /// In [`Phase::Peer`]: what the other node shows at `now`.
    #[must_use]
    pub fn peer_seen(&self, now: Instant, seen: PeerSeen) -> RollingStep {
        match seen {
            PeerSeen::Kept {
                heard: true,
                data_good: true,
            } => return RollingStep::Next(Phase::Switchover),
            PeerSeen::WentBack => return RollingStep::Stop(Stop::PeerWentBack),
            PeerSeen::Kept { .. } | PeerSeen::Pending | PeerSeen::Unreachable => {}
        }
        if now >= self.deadline() {
            RollingStep::Stop(Stop::PeerTimedOut)
        } else {
            RollingStep::Wait(self.deadline())
        }
    }

    /// In [`Phase::Switchover`]: the roles at `now`.
    #[must_use]
    pub fn roles_seen(&self, now: Instant, roles: Roles) -> RollingStep {
        if roles.peer_active && !roles.here_active {
            return RollingStep::Next(Phase::Here);
        }
        if now >= self.deadline() {
            RollingStep::Stop(Stop::SwitchoverTimedOut)
        } else {
            RollingStep::Wait(self.deadline())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: RollingRule = RollingRule {
        peer: Duration::from_secs(900),
        switchover: Duration::from_secs(300),
    };

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn the_switchover_waits_for_the_other_node_kept_and_heard() {
        let r = Rolling::new(RULE, Phase::Peer, at(100));
        for seen in [
            PeerSeen::Unreachable,
            PeerSeen::Pending,
            PeerSeen::Kept {
                heard: false,
                data_good: true,
            },
            // Kept and heard, but still resynchronising its copy.
            PeerSeen::Kept {
                heard: true,
                data_good: false,
            },
        ] {
            assert_eq!(r.peer_seen(at(200), seen), RollingStep::Wait(at(1000)));
        }
        assert_eq!(
            r.peer_seen(
                at(200),
                PeerSeen::Kept {
                    heard: true,
                    data_good: true
                }
            ),
            RollingStep::Next(Phase::Switchover)
        );
    }

    #[test]
    fn a_rollback_or_no_decision_on_the_other_node_stops_with_the_services_here() {
        let r = Rolling::new(RULE, Phase::Peer, at(0));
        assert_eq!(
            r.peer_seen(at(10), PeerSeen::WentBack),
            RollingStep::Stop(Stop::PeerWentBack)
        );
        assert_eq!(
            r.peer_seen(at(899), PeerSeen::Pending),
            RollingStep::Wait(at(900))
        );
        assert_eq!(
            r.peer_seen(at(900), PeerSeen::Unreachable),
            RollingStep::Stop(Stop::PeerTimedOut)
        );
        // Kept but not heard is no reason to move the services there.
        assert_eq!(
            r.peer_seen(
                at(900),
                PeerSeen::Kept {
                    heard: false,
                    data_good: true
                }
            ),
            RollingStep::Stop(Stop::PeerTimedOut)
        );
    }

    #[test]
    fn this_node_is_updated_only_once_the_services_run_on_the_other() {
        let mut r = Rolling::new(RULE, Phase::Peer, at(0));
        r.enter(Phase::Switchover, at(50));
        let moving = Roles {
            here_active: false,
            peer_active: false,
        };
        assert_eq!(r.roles_seen(at(60), moving), RollingStep::Wait(at(350)));
        let both = Roles {
            here_active: true,
            peer_active: true,
        };
        assert_eq!(r.roles_seen(at(60), both), RollingStep::Wait(at(350)));
        assert_eq!(
            r.roles_seen(
                at(61),
                Roles {
                    here_active: false,
                    peer_active: true
                }
            ),
            RollingStep::Next(Phase::Here)
        );
        assert_eq!(
            r.roles_seen(at(350), moving),
            RollingStep::Stop(Stop::SwitchoverTimedOut)
        );
    }

    #[test]
    fn phases_are_named_both_ways() {
        for p in [Phase::Peer, Phase::Switchover, Phase::Here] {
            assert_eq!(Phase::from_name(p.name()), Some(p));
        }
        assert_eq!(Phase::from_name("elsewhere"), None);
        assert_eq!(
            Rolling::new(RULE, Phase::Here, at(0)).deadline(),
            Instant::from_micros(u64::MAX)
        );
    }
}
