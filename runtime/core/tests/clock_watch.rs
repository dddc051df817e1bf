//! The "clock unsynchronised" rule in virtual time: a fake clock that jumps to the
//! watch's deadlines, fed with chrony's synchronised / unsynchronised reports.

use std::time::Duration;

use tandem_core::{ClockAlert, ClockWatch, Instant};

/// A virtual clock and the alerts the watch gave, with their times.
struct Sim {
    now: Instant,
    watch: ClockWatch,
    alerts: Vec<(Instant, ClockAlert)>,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            now: Instant::from_millis(0),
            watch: ClockWatch::new(),
            alerts: Vec::new(),
        }
    }

    fn drain(&mut self) {
        while let Some(a) = self.watch.poll_output() {
            self.alerts.push((self.now, a));
        }
    }

    /// Reports `synced` every `every` until `until`, firing deadlines in between.
    fn run(&mut self, synced: bool, every: Duration, until: Instant) {
        while self.now < until {
            let next_report = self.now.saturating_add(every).min(until);
            while let Some(t) = self.watch.poll_timeout().filter(|t| *t < next_report) {
                self.now = t.max(self.now);
                self.watch.handle_timeout(self.now);
                self.drain();
            }
            self.now = next_report;
            self.watch.handle(self.now, synced);
            self.drain();
        }
    }
}

fn mins(m: u64) -> Instant {
    Instant::from_millis(m * 60_000)
}

#[test]
fn unsynchronised_for_fifteen_minutes_alerts_once_and_recovery_is_reported() {
    let mut sim = Sim::new();
    let poll = Duration::from_secs(60);
    sim.run(true, poll, mins(10));
    assert!(sim.alerts.is_empty());
    // Lost at minute 11 (the first unsynchronised report).
    sim.run(false, poll, mins(60));
    assert_eq!(
        sim.alerts,
        [(mins(26), ClockAlert::Unsynchronised { since: mins(11) })],
        "one alert, exactly 15 minutes after the first unsynchronised report"
    );
    sim.run(true, poll, mins(70));
    assert_eq!(sim.alerts.len(), 2);
    assert_eq!(sim.alerts[1], (mins(61), ClockAlert::Synchronised));
}

#[test]
fn the_deadline_fires_without_further_reports() {
    let mut sim = Sim::new();
    // One report, then silence (chronyc hangs): the timeout alone raises the alert.
    sim.watch.handle(mins(0), false);
    assert_eq!(sim.watch.poll_timeout(), Some(mins(15)));
    sim.watch.handle_timeout(mins(14));
    assert_eq!(sim.watch.poll_output(), None);
    sim.watch.handle_timeout(mins(15));
    assert_eq!(
        sim.watch.poll_output(),
        Some(ClockAlert::Unsynchronised { since: mins(0) })
    );
    assert_eq!(sim.watch.poll_timeout(), None, "alerted: nothing pending");
}

#[test]
fn short_losses_say_nothing() {
    let mut sim = Sim::new();
    let poll = Duration::from_secs(30);
    for round in 0..10 {
        let start = mins(round * 30);
        sim.run(
            false,
            poll,
            start.saturating_add(Duration::from_secs(14 * 60)),
        );
        sim.run(
            true,
            poll,
            start.saturating_add(Duration::from_secs(30 * 60)),
        );
    }
    assert!(sim.alerts.is_empty(), "{:?}", sim.alerts);
}
