//! Simulation of a VE's health in virtual time: a simulated VE whose first process
//! crashes on a script, a clock that jumps to the next deadline, and the alerts and
//! restarts [`VeHealth`] asks for.

#![allow(
    clippy::unwrap_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::time::Duration;

use tandem_core::Instant;
use tandem_core::ve_health::{
    Crash, RestartPolicy, StopCause, VeAlert, VeHealth, VeInput, VeOutput, VeState,
};

/// A simulated VE under [`VeHealth`], with a virtual clock in milliseconds.
struct Sim {
    now: u64,
    health: VeHealth,
    running: bool,
    /// Starts the simulated VE refuses (counted down).
    failing_starts: u32,
    /// Health checks answer this.
    healthy: bool,
    /// (ms, what) of everything the shell did.
    log: Vec<(u64, String)>,
    alerts: Vec<(u64, VeAlert)>,
}

impl Sim {
    fn new(policy: RestartPolicy, check: Option<Duration>) -> Sim {
        let mut s = Sim {
            now: 0,
            health: VeHealth::new(policy, check),
            running: false,
            failing_starts: 0,
            healthy: true,
            log: Vec::new(),
            alerts: Vec::new(),
        };
        s.health.start_requested();
        s.running = true;
        s.input(VeInput::Started);
        s
    }

    fn at(&self) -> Instant {
        Instant::from_millis(self.now)
    }

    fn input(&mut self, i: VeInput) {
        let now = self.at();
        self.health.handle(now, i);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.health.poll_output() {
            match o {
                VeOutput::Start => {
                    self.log.push((self.now, "start".into()));
                    if self.failing_starts > 0 {
                        self.failing_starts -= 1;
                        let now = self.at();
                        self.health
                            .handle(now, VeInput::StartFailed("crun create failed".into()));
                    } else {
                        self.running = true;
                        let now = self.at();
                        self.health.handle(now, VeInput::Started);
                    }
                }
                VeOutput::Stop => {
                    self.log.push((self.now, "stop".into()));
                    self.running = false;
                    let now = self.at();
                    self.health.handle(now, VeInput::Exited("killed".into()));
                }
                VeOutput::Check => {
                    let now = self.at();
                    let r = if self.healthy {
                        VeInput::CheckPassed
                    } else {
                        VeInput::CheckFailed("connection refused".into())
                    };
                    self.health.handle(now, r);
                }
                VeOutput::Alert(a) => self.alerts.push((self.now, a)),
            }
        }
    }

    /// The VE's init dies now.
    fn crash(&mut self) {
        assert!(self.running, "crash of a VE that does not run");
        self.running = false;
        self.input(VeInput::Exited("killed by signal 9".into()));
    }

    /// Runs virtual time to `until` ms, jumping from deadline to deadline.
    fn run_until(&mut self, until: u64) {
        while let Some(t) = self.health.poll_timeout() {
            let t = t.as_millis().max(self.now);
            if t > until {
                break;
            }
            self.now = t;
            let now = self.at();
            self.health.handle_timeout(now);
            self.drain();
        }
        self.now = until;
    }

    fn starts(&self) -> Vec<u64> {
        self.log
            .iter()
            .filter(|(_, w)| w == "start")
            .map(|(t, _)| *t)
            .collect()
    }
}

#[test]
fn crashes_restart_with_doubling_delays_then_give_up() {
    let mut s = Sim::new(RestartPolicy::default(), None);
    // Five crashes, each one second after the VE came back.
    for _ in 0..5 {
        s.crash();
        let back = s.health.poll_timeout().unwrap().as_millis();
        s.run_until(back + 1000);
        assert!(s.running, "restarted by {}", s.now);
    }
    let gaps: Vec<u64> = {
        let starts = s.starts();
        let crashes: Vec<u64> = s
            .alerts
            .iter()
            .filter(|(_, a)| matches!(a, VeAlert::Crashed { .. }))
            .map(|(t, _)| *t)
            .collect();
        starts.iter().zip(&crashes).map(|(s, c)| s - c).collect()
    };
    assert_eq!(gaps, [1000, 2000, 4000, 8000, 16000], "restart delays");
    let restarted = s
        .alerts
        .iter()
        .filter(|(_, a)| matches!(a, VeAlert::Restarted { .. }))
        .count();
    assert_eq!(restarted, 5);
    // The sixth within ten minutes: given up, never started again.
    s.crash();
    assert_eq!(s.health.state(), VeState::GivenUp);
    assert!(matches!(
        s.alerts.last(),
        Some((_, VeAlert::GaveUp { count: 6, .. }))
    ));
    let starts = s.starts().len();
    s.run_until(s.now + 3_600_000);
    assert_eq!(s.starts().len(), starts, "no start after giving up");
    assert!(!s.running);
    // The operator starts it again: watched with a fresh count.
    s.input(VeInput::Stopping(StopCause::Operator));
    s.health.start_requested();
    s.running = true;
    s.input(VeInput::Started);
    s.crash();
    assert!(matches!(
        s.alerts.last(),
        Some((_, VeAlert::Crashed { count: 1, restart_in, .. })) if *restart_in == Duration::from_secs(1)
    ));
}

#[test]
fn crashes_far_apart_never_give_up() {
    let mut s = Sim::new(RestartPolicy::default(), None);
    for _ in 0..20 {
        s.crash();
        s.run_until(s.now + 700_000);
        assert!(s.running, "restarted at {}", s.now);
    }
    assert!(
        s.alerts
            .iter()
            .all(|(_, a)| !matches!(a, VeAlert::GaveUp { .. }))
    );
    // Each crash was the only one in its window: always the first delay.
    assert!(s.alerts.iter().all(|(_, a)| match a {
        VeAlert::Crashed { restart_in, .. } => *restart_in == Duration::from_secs(1),
        _ => true,
    }));
}

#[test]
fn stops_by_the_operator_or_a_release_are_not_restarted() {
    for cause in [StopCause::Operator, StopCause::Release, StopCause::Restart] {
        let mut s = Sim::new(RestartPolicy::default(), Some(Duration::from_secs(5)));
        s.run_until(12_000);
        s.input(VeInput::Stopping(cause));
        s.running = false;
        s.input(VeInput::Exited("exited with status 0".into()));
        s.run_until(3_600_000);
        assert_eq!(s.starts(), Vec::<u64>::new(), "{cause:?}: restarted");
        assert_eq!(s.health.state(), VeState::Stopped);
        let alerts: Vec<&VeAlert> = s.alerts.iter().map(|(_, a)| a).collect();
        match cause {
            StopCause::Operator => assert_eq!(alerts, [&VeAlert::Stopped]),
            StopCause::Release | StopCause::Restart => {
                assert!(alerts.is_empty(), "{alerts:?}");
            }
        }
    }
    // A stop while a restart is pending cancels it.
    let mut s = Sim::new(RestartPolicy::default(), None);
    s.crash();
    s.input(VeInput::Stopping(StopCause::Release));
    s.run_until(3_600_000);
    assert!(s.starts().is_empty());
}

#[test]
fn failed_starts_count_as_crashes() {
    let mut s = Sim::new(RestartPolicy::default(), None);
    s.failing_starts = 10;
    s.crash();
    s.run_until(3_600_000);
    // Crash at 0, failed starts at 1 s, 3 s, 7 s, 15 s, 31 s: the fifth failure is the
    // sixth crash in the window.
    assert_eq!(s.starts(), [1000, 3000, 7000, 15000, 31000]);
    assert_eq!(s.health.state(), VeState::GivenUp);
    assert!(matches!(
        s.alerts.last(),
        Some((
            _,
            VeAlert::GaveUp {
                crash: Crash::StartFailed(_),
                count: 6,
                ..
            }
        ))
    ));
}

#[test]
fn a_failing_health_check_restarts_the_ve() {
    let policy = RestartPolicy::default();
    let mut s = Sim::new(policy, Some(Duration::from_secs(10)));
    s.run_until(35_000);
    assert!(s.alerts.is_empty());
    s.healthy = false;
    // Checks at 40, 50, 60 s fail: stopped and restarted a second later.
    s.run_until(60_500);
    assert_eq!(
        s.log,
        [(60_000, "stop".to_owned()), (61_000, "start".to_owned())][..1]
    );
    s.healthy = true;
    s.run_until(62_000);
    assert_eq!(s.starts(), [61_000]);
    assert!(matches!(
        &s.alerts[0],
        (
            60_000,
            VeAlert::Crashed {
                crash: Crash::Unhealthy { failures: 3, .. },
                ..
            }
        )
    ));
    assert!(matches!(
        &s.alerts[1],
        (61_000, VeAlert::Restarted { count: 1 })
    ));
    // Healthy again: no more stops.
    s.run_until(600_000);
    assert_eq!(s.log.iter().filter(|(_, w)| w == "stop").count(), 1);
}
