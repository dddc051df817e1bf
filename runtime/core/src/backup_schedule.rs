//! The daily VE backup's rule (R12), sans-IO on the wall clock (seconds since 1970,
//! UTC): a run is due once per day from the configured time of day, on the node that
//! is active then. A node that is not active at that time leaves it to the other one;
//! when it becomes active within [`BackupSchedule::GRACE`] of the time (a switchover
//! at 02:40 for a 02:30 schedule, or the pair back from a power cut), the run is due on
//! it then, and the shell skips each VE whose newest backup is already from after the
//! day's time. Later than that the day's run is missed; the next day's is due as usual.

/// Seconds per day.
const DAY: u64 = 86_400;

/// One schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSchedule {
    /// Seconds after midnight, UTC.
    at: u64,
    /// The start of the last run handed out.
    done: Option<u64>,
}

impl BackupSchedule {
    /// How long after the time of day a run is still made.
    pub const GRACE: u64 = 3600;

    /// A schedule at `at` seconds after midnight UTC.
    #[must_use]
    pub fn new(at: u32) -> BackupSchedule {
        BackupSchedule {
            at: u64::from(at) % DAY,
            done: None,
        }
    }

    /// The latest time of the schedule at or before `now`.
    #[must_use]
    pub fn slot(&self, now: u64) -> u64 {
        let today = now / DAY * DAY + self.at;
        if today > now {
            today.saturating_sub(DAY)
        } else {
            today
        }
    }

    fn open(&self, now: u64) -> Option<u64> {
        let s = self.slot(now);
        (now - s < Self::GRACE && self.done != Some(s)).then_some(s)
    }

    /// At `now`: whether a run is due on this node (`active`: it runs the services).
    /// `Some(slot)` once per day, `slot` being the day's time; the shell backs up the
    /// VEs whose newest backup is older than `slot`.
    pub fn poll(&mut self, now: u64, active: bool) -> Option<u64> {
        let s = self.open(now).filter(|_| active)?;
        self.done = Some(s);
        Some(s)
    }

    /// When to call [`BackupSchedule::poll`] next: now while a run is open (the
    /// shell checks again while the node is not active), else at the next time of day.
    #[must_use]
    pub fn next_poll(&self, now: u64) -> u64 {
        match self.open(now) {
            Some(_) => now,
            None => self.slot(now) + DAY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 00:00:00 UTC.
    const MIDNIGHT: u64 = 1_796_601_600;
    const AT: u32 = 2 * 3600 + 30 * 60;

    #[test]
    fn once_a_day_at_the_time_on_the_active_node() {
        let mut s = BackupSchedule::new(AT);
        let at = MIDNIGHT + u64::from(AT);
        assert_eq!(s.poll(at - 1, true), None);
        assert_eq!(s.next_poll(at - 1), at);
        assert_eq!(s.poll(at, true), Some(at));
        assert_eq!(s.poll(at + 5, true), None, "once");
        assert_eq!(s.next_poll(at + 5), at + DAY);
        assert_eq!(s.poll(at + DAY - 1, true), None);
        assert_eq!(s.poll(at + DAY + 30, true), Some(at + DAY));
    }

    #[test]
    fn a_node_active_later_within_the_grace_runs_it_and_later_than_that_not() {
        let mut s = BackupSchedule::new(AT);
        let at = MIDNIGHT + u64::from(AT);
        // Passive at the time: nothing, and asked again.
        assert_eq!(s.poll(at, false), None);
        assert_eq!(s.next_poll(at), at);
        // Active ten minutes later (a switchover): the day's run, from the day's time.
        assert_eq!(s.poll(at + 600, true), Some(at));
        assert_eq!(s.poll(at + 601, true), None);

        let mut late = BackupSchedule::new(AT);
        assert_eq!(late.poll(at + BackupSchedule::GRACE, true), None, "missed");
        assert_eq!(late.next_poll(at + BackupSchedule::GRACE), at + DAY);
    }

    #[test]
    fn the_slot_is_the_latest_time_of_day_not_after_now() {
        let s = BackupSchedule::new(0);
        assert_eq!(s.slot(MIDNIGHT), MIDNIGHT);
        assert_eq!(s.slot(MIDNIGHT - 1), MIDNIGHT - DAY);
        let s = BackupSchedule::new(23 * 3600 + 59 * 60);
        assert_eq!(s.slot(MIDNIGHT + 60), MIDNIGHT - 60);
        // A clock stepped back (NTP) does not run it twice for the same day.
        let mut s = BackupSchedule::new(AT);
        let at = MIDNIGHT + u64::from(AT);
        assert_eq!(s.poll(at + 100, true), Some(at));
        assert_eq!(s.poll(at + 50, true), None);
    }
}
