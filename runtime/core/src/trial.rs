//! The first boot of a newly installed system slot: commit it when the node is
//! healthy, give it up when it does not become healthy in time.
//!
//! After an update the boot loader starts the new slot once ("try"). Only the node
//! itself can tell whether that system works, so the rule is: the slot is committed
//! when every health fact has held for [`TrialRule::settle`] without a break (one
//! good second after a flapping link is not enough); when that has not happened by
//! [`TrialRule::deadline`] after the daemon started, the node gives the slot up and
//! restarts, and the boot loader, whose try is spent, starts the previous slot.
//!
//! Healthy means what the pair needs of a member: the configuration loaded, the
//! other node heard on at least one heartbeat path, and the replication connected
//! (or resynchronising). A node alone (its peer down) cannot prove the last two; it
//! waits for the deadline and goes back, which is the safe side for an update.

use core::time::Duration;

use crate::Instant;

/// The health facts the trial waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrialHealth {
    /// The cluster configuration is loaded.
    pub config_loaded: bool,
    /// The other node is heard on at least one path.
    pub peer_heard: bool,
    /// The replication is connected or resynchronising.
    pub replica_connected: bool,
}

impl TrialHealth {
    /// Whether every fact holds.
    #[must_use]
    pub fn good(self) -> bool {
        self.config_loaded && self.peer_heard && self.replica_connected
    }

    /// What is still missing, in words (empty when good).
    #[must_use]
    pub fn missing(self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if !self.config_loaded {
            m.push("configuration not loaded");
        }
        if !self.peer_heard {
            m.push("other node not heard");
        }
        if !self.replica_connected {
            m.push("replication not connected");
        }
        m
    }
}

/// The timing of a trial boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrialRule {
    /// How long every fact must hold before the slot is committed.
    pub settle: Duration,
    /// How long after the start the slot is given up when it is not committed.
    pub deadline: Duration,
}

/// What the trial asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialStep {
    /// Nothing yet; ask again by this instant at the latest (health changes are
    /// reported whenever they happen).
    Wait(Instant),
    /// Commit the slot (once).
    Commit,
    /// Give the slot up: restart so the boot loader starts the previous one (once).
    GiveUp,
}

/// A trial boot in progress.
#[derive(Debug, Clone)]
pub struct Trial {
    rule: TrialRule,
    started: Instant,
    good_since: Option<Instant>,
    decided: bool,
}

impl Trial {
    /// A trial whose daemon started at `started`.
    #[must_use]
    pub fn new(rule: TrialRule, started: Instant) -> Trial {
        Trial {
            rule,
            started,
            good_since: None,
            decided: false,
        }
    }

    /// The timing of this trial.
    #[must_use]
    pub fn rule(&self) -> TrialRule {
        self.rule
    }

    /// When the slot will be given up if it is not committed first.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.started.saturating_add(self.rule.deadline)
    }

    /// Whether the trial has decided (committed or given up).
    #[must_use]
    pub fn decided(&self) -> bool {
        self.decided
    }

    /// The health at `now`; returns what to do. After [`TrialStep::Commit`] or
    /// [`TrialStep::GiveUp`] it returns `Wait` for ever.
    pub fn step(&mut self, now: Instant, health: TrialHealth) -> TrialStep {
        let never = Instant::from_micros(u64::MAX);
        if self.decided {
            return TrialStep::Wait(never);
        }
        if health.good() {
            let since = *self.good_since.get_or_insert(now);
            let commit_at = since.saturating_add(self.rule.settle);
            if now >= commit_at {
                self.decided = true;
                return TrialStep::Commit;
            }
            if now >= self.deadline() {
                self.decided = true;
                return TrialStep::GiveUp;
            }
            return TrialStep::Wait(commit_at.min(self.deadline()));
        }
        self.good_since = None;
        if now >= self.deadline() {
            self.decided = true;
            return TrialStep::GiveUp;
        }
        TrialStep::Wait(self.deadline())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: TrialRule = TrialRule {
        settle: Duration::from_secs(10),
        deadline: Duration::from_secs(300),
    };
    const GOOD: TrialHealth = TrialHealth {
        config_loaded: true,
        peer_heard: true,
        replica_connected: true,
    };

    fn at(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn a_healthy_node_commits_after_the_settle_time_once() {
        let mut t = Trial::new(RULE, at(0));
        assert_eq!(t.step(at(20), GOOD), TrialStep::Wait(at(30)));
        assert_eq!(t.step(at(29), GOOD), TrialStep::Wait(at(30)));
        assert_eq!(t.step(at(30), GOOD), TrialStep::Commit);
        assert!(t.decided());
        assert!(matches!(t.step(at(31), GOOD), TrialStep::Wait(_)));
        assert!(matches!(
            t.step(at(400), TrialHealth::default()),
            TrialStep::Wait(_)
        ));
    }

    #[test]
    fn a_break_in_health_starts_the_settle_time_again() {
        let mut t = Trial::new(RULE, at(0));
        t.step(at(10), GOOD);
        let lost = TrialHealth {
            replica_connected: false,
            ..GOOD
        };
        assert_eq!(t.step(at(19), lost), TrialStep::Wait(at(300)));
        assert_eq!(t.step(at(21), GOOD), TrialStep::Wait(at(31)));
        assert_eq!(t.step(at(31), GOOD), TrialStep::Commit);
    }

    #[test]
    fn a_node_that_never_becomes_healthy_gives_up_at_the_deadline() {
        let mut t = Trial::new(RULE, at(0));
        let alone = TrialHealth {
            peer_heard: false,
            replica_connected: false,
            config_loaded: true,
        };
        assert_eq!(t.step(at(1), alone), TrialStep::Wait(at(300)));
        assert_eq!(t.step(at(299), alone), TrialStep::Wait(at(300)));
        assert_eq!(t.step(at(300), alone), TrialStep::GiveUp);
        assert!(matches!(t.step(at(301), GOOD), TrialStep::Wait(_)));
        assert_eq!(
            alone.missing(),
            ["other node not heard", "replication not connected"]
        );
    }

    #[test]
    fn health_that_comes_too_late_to_settle_still_gives_up() {
        let mut t = Trial::new(RULE, at(0));
        assert_eq!(t.step(at(295), GOOD), TrialStep::Wait(at(300)));
        assert_eq!(t.step(at(300), GOOD), TrialStep::GiveUp);
    }
}
