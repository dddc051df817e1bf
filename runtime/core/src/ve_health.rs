//! The health of one VE (R8.2), decided without IO: whether a VE whose first process
//! ended is restarted, when, and when restarting is given up.
//!
//! The shell tells [`VeHealth`] what happened ([`VeInput`]: the VE started, its start
//! failed, its first process ended, a health check passed or failed, the operator or a
//! release stopped it) and calls [`VeHealth::handle_timeout`] at
//! [`VeHealth::poll_timeout`]; it drains [`VeHealth::poll_output`] after each call and
//! does what it says: start the VE, stop it, run a health check, send an alert.
//!
//! Rule: an exit of a VE that is meant to run is a crash. The n-th crash within
//! [`RestartPolicy::window`] waits `first_delay * 2^(n-1)` (at most
//! [`RestartPolicy::max_delay`]) before the VE is started again; a crash that would be
//! the `give_up_after + 1`-th within the window gives up: the VE stays stopped until
//! the operator starts it. A failed start counts as a crash. With a health check,
//! [`RestartPolicy::check_failures`] failed checks in a row count as a crash too: the
//! VE is stopped and then started like a crashed one. A stop the shell announces first
//! ([`VeInput::Stopping`]: the operator's stop, or the release of the services at a
//! failover or switchover) is never answered by a start.
//!
//! Not done here: running crun, watching processes, connecting to the check's port,
//! sending mail.

use std::collections::VecDeque;
use std::time::Duration;

use crate::Instant;

/// When a crashed VE is started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart.
    pub first_delay: Duration,
    /// Longest wait before a restart (the doubling stops there).
    pub max_delay: Duration,
    /// Restarts allowed within [`RestartPolicy::window`]; one crash more gives up.
    pub give_up_after: u32,
    /// The window crashes are counted in.
    pub window: Duration,
    /// Failed health checks in a row that count as a crash.
    pub check_failures: u32,
}

impl Default for RestartPolicy {
    /// 1 s, doubling to at most 60 s; five restarts in ten minutes; three failed checks.
    fn default() -> Self {
        RestartPolicy {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            give_up_after: 5,
            window: Duration::from_secs(600),
            check_failures: 3,
        }
    }
}

impl RestartPolicy {
    /// The wait before restarting after the `n`-th crash in the window (`n` ≥ 1).
    #[must_use]
    pub fn delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(31);
        self.first_delay
            .saturating_mul(1u32 << shift)
            .min(self.max_delay)
    }
}

/// Who stops a VE: neither is answered by a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopCause {
    /// The operator (`tandem ve stop`, the console).
    Operator,
    /// The node releases the services (failover, switchover, shutdown).
    Release,
    /// The operator restarts it: a start follows at once.
    Restart,
}

/// What the shell reports about a VE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VeInput {
    /// The VE runs (started by the chain, the operator or a restart).
    Started,
    /// A start the shell was asked for failed.
    StartFailed(String),
    /// The VE's first process ended; the text says how (exit code, signal).
    Exited(String),
    /// The shell is about to stop the VE.
    Stopping(StopCause),
    /// The health check succeeded.
    CheckPassed,
    /// The health check failed; the text says why.
    CheckFailed(String),
}

/// Why a VE is being restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crash {
    /// Its first process ended.
    Exited(String),
    /// Starting it failed.
    StartFailed(String),
    /// Its health check failed the given number of times in a row.
    Unhealthy {
        /// Failed checks in a row.
        failures: u32,
        /// The last failure.
        last: String,
    },
}

/// Alerts of R8.2 about a VE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VeAlert {
    /// The operator stopped the VE; it is not restarted.
    Stopped,
    /// The VE crashed; it is started again after `restart_in`.
    Crashed {
        /// What happened.
        crash: Crash,
        /// The wait before the restart.
        restart_in: Duration,
        /// Crashes within the window, this one included.
        count: u32,
    },
    /// The VE runs again after a crash.
    Restarted {
        /// Crashes within the window.
        count: u32,
    },
    /// Too many crashes within the window: the VE stays stopped.
    GaveUp {
        /// What happened last.
        crash: Crash,
        /// Crashes within the window, this one included.
        count: u32,
        /// The window.
        window: Duration,
    },
}

/// What the shell does.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum VeOutput {
    /// Start the VE (report [`VeInput::Started`] or [`VeInput::StartFailed`]).
    Start,
    /// Stop the VE's processes (an unhealthy VE); its exit that follows is expected.
    Stop,
    /// Run the health check (report [`VeInput::CheckPassed`] or
    /// [`VeInput::CheckFailed`]).
    Check,
    /// Send this alert.
    Alert(VeAlert),
}

/// The state of a VE as the operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VeState {
    /// Not running and not to be restarted.
    Stopped,
    /// Running (or being started).
    Running,
    /// Crashed; started again at the instant.
    Restarting(Instant),
    /// Crashed too often; stays stopped.
    GivenUp,
}

/// The health of one VE. See the module documentation for the rule.
#[derive(Debug, Clone)]
pub struct VeHealth {
    policy: RestartPolicy,
    check_interval: Option<Duration>,
    state: VeState,
    /// A start was asked for and not yet reported.
    starting: bool,
    /// An exit is expected (the shell stops the VE).
    stopping: bool,
    crashes: VecDeque<Instant>,
    failed_checks: u32,
    next_check: Option<Instant>,
    /// A check was asked for and not yet reported.
    checking: bool,
    out: VecDeque<VeOutput>,
}

impl VeHealth {
    /// A stopped VE, with a health check every `check_interval` while it runs.
    #[must_use]
    pub fn new(policy: RestartPolicy, check_interval: Option<Duration>) -> VeHealth {
        VeHealth {
            policy,
            check_interval,
            state: VeState::Stopped,
            starting: false,
            stopping: false,
            crashes: VecDeque::new(),
            failed_checks: 0,
            next_check: None,
            checking: false,
            out: VecDeque::new(),
        }
    }

    /// The state now.
    #[must_use]
    pub fn state(&self) -> VeState {
        self.state
    }

    /// Whether a start was asked for and not yet reported.
    #[must_use]
    pub fn is_starting(&self) -> bool {
        self.starting
    }

    /// Crashes within the window at `now`.
    #[must_use]
    pub fn crashes(&self, now: Instant) -> u32 {
        let window = self.policy.window;
        u32::try_from(
            self.crashes
                .iter()
                .filter(|c| now.since(**c) < window)
                .count(),
        )
        .unwrap_or(u32::MAX)
    }

    /// A new health check interval (the VE file changed).
    pub fn set_check_interval(&mut self, now: Instant, interval: Option<Duration>) {
        self.check_interval = interval;
        self.next_check = match (self.state, interval) {
            (VeState::Running, Some(i)) if !self.starting => Some(now.saturating_add(i)),
            _ => None,
        };
    }

    /// Takes what the shell reports. Drain [`VeHealth::poll_output`] afterwards.
    pub fn handle(&mut self, now: Instant, input: VeInput) {
        match input {
            VeInput::Started => {
                if !self.starting {
                    // A start nobody asked for any more (stopped meanwhile).
                    return;
                }
                let was_restart = self.starting && self.crashes(now) > 0;
                self.starting = false;
                self.stopping = false;
                self.failed_checks = 0;
                self.checking = false;
                self.state = VeState::Running;
                self.next_check = self.check_interval.map(|i| now.saturating_add(i));
                if was_restart {
                    let count = self.crashes(now);
                    self.out
                        .push_back(VeOutput::Alert(VeAlert::Restarted { count }));
                }
            }
            VeInput::StartFailed(why) => {
                if self.starting {
                    self.starting = false;
                    self.crash(now, Crash::StartFailed(why));
                }
            }
            VeInput::Exited(how) => {
                if self.stopping {
                    // The exit the shell caused: an unhealthy VE being restarted, or a
                    // stop (already answered at `Stopping`).
                    self.stopping = false;
                } else if self.state == VeState::Running && !self.starting {
                    self.crash(now, Crash::Exited(how));
                }
            }
            VeInput::Stopping(cause) => {
                let was = self.state;
                self.state = VeState::Stopped;
                self.starting = false;
                self.stopping = true;
                self.next_check = None;
                self.checking = false;
                self.failed_checks = 0;
                if cause == StopCause::Operator && was != VeState::Stopped {
                    self.out.push_back(VeOutput::Alert(VeAlert::Stopped));
                }
                if cause == StopCause::Operator {
                    // The operator looked at it: a start later begins a new count.
                    self.crashes.clear();
                }
            }
            VeInput::CheckPassed => {
                self.checking = false;
                self.failed_checks = 0;
            }
            VeInput::CheckFailed(why) => {
                if !self.checking || self.state != VeState::Running {
                    return;
                }
                self.checking = false;
                self.failed_checks += 1;
                if self.failed_checks >= self.policy.check_failures.max(1) {
                    let failures = self.failed_checks;
                    self.failed_checks = 0;
                    self.stopping = true;
                    self.out.push_back(VeOutput::Stop);
                    self.crash(
                        now,
                        Crash::Unhealthy {
                            failures,
                            last: why,
                        },
                    );
                }
            }
        }
    }

    fn crash(&mut self, now: Instant, crash: Crash) {
        let window = self.policy.window;
        while self
            .crashes
            .front()
            .is_some_and(|c| now.since(*c) >= window)
        {
            self.crashes.pop_front();
        }
        self.crashes.push_back(now);
        let count = self.crashes(now);
        self.next_check = None;
        self.checking = false;
        if count > self.policy.give_up_after {
            self.state = VeState::GivenUp;
            self.out.push_back(VeOutput::Alert(VeAlert::GaveUp {
                crash,
                count,
                window,
            }));
        } else {
            let restart_in = self.policy.delay(count);
            self.state = VeState::Restarting(now.saturating_add(restart_in));
            self.out.push_back(VeOutput::Alert(VeAlert::Crashed {
                crash,
                restart_in,
                count,
            }));
        }
    }

    /// The operator (or the chain) starts the VE: a given-up or stopped VE is watched
    /// again, with a fresh count of crashes. The shell starts it itself and reports
    /// [`VeInput::Started`].
    pub fn start_requested(&mut self) {
        // Somebody chose to run it: earlier crashes are not held against this run.
        self.crashes.clear();
        self.state = VeState::Running;
        self.starting = true;
        self.stopping = false;
    }

    /// When [`VeHealth::handle_timeout`] is due next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            VeState::Restarting(at) => Some(at),
            VeState::Running if !self.checking && !self.starting => self.next_check,
            _ => None,
        }
    }

    /// Acts on what is due at `now`. Drain [`VeHealth::poll_output`] afterwards.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            VeState::Restarting(at) if now >= at => {
                self.state = VeState::Running;
                self.starting = true;
                self.out.push_back(VeOutput::Start);
            }
            VeState::Running if !self.checking && !self.starting => {
                if let (Some(at), Some(i)) = (self.next_check, self.check_interval)
                    && now >= at
                {
                    self.checking = true;
                    self.next_check = Some(now.saturating_add(i));
                    self.out.push_back(VeOutput::Check);
                }
            }
            _ => {}
        }
    }

    /// The next thing to do, until `None`.
    pub fn poll_output(&mut self) -> Option<VeOutput> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = RestartPolicy::default();
        let d: Vec<u64> = (1..=8).map(|n| p.delay(n).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(p.delay(u32::MAX), p.max_delay);
    }
}
