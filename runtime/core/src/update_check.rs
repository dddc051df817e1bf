//! When to ask the update server what it offers (R8.2), sans-IO on the wall clock
//! (seconds since 1970): first a few minutes after the start (the network is up and
//! the clock set by then), then once a day; after a failed check again within the
//! hour. An offered version is alerted once: the same version again is not news.

/// Seconds per day.
const DAY: u64 = 86_400;

/// The check's schedule and what was alerted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateCheck {
    next: u64,
    alerted: Option<String>,
}

impl UpdateCheck {
    /// From the start to the first check.
    pub const FIRST: u64 = 300;
    /// Between two good checks.
    pub const EVERY: u64 = DAY;
    /// After a failed check.
    pub const RETRY: u64 = 3600;

    /// A schedule for a daemon started at `now`.
    #[must_use]
    pub fn new(now: u64) -> UpdateCheck {
        UpdateCheck {
            next: now.saturating_add(Self::FIRST),
            alerted: None,
        }
    }

    /// Whether a check is due at `now`. A clock stepped back by more than a day does
    /// not postpone the next check by as much.
    pub fn due(&mut self, now: u64) -> bool {
        self.next = self.next.min(now.saturating_add(Self::EVERY));
        now >= self.next
    }

    /// When the next check is due.
    #[must_use]
    pub fn next(&self) -> u64 {
        self.next
    }

    /// A check ended at `now` (`ok`: the server answered with a list).
    pub fn checked(&mut self, now: u64, ok: bool) {
        self.next = now.saturating_add(if ok { Self::EVERY } else { Self::RETRY });
    }

    /// The server offers `version`: whether that is news to alert (once per version).
    pub fn alert(&mut self, version: &str) -> bool {
        if self.alerted.as_deref() == Some(version) {
            return false;
        }
        self.alerted = Some(version.to_owned());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_796_601_600;

    #[test]
    fn first_after_the_start_then_daily_and_hourly_after_a_failure() {
        let mut c = UpdateCheck::new(T);
        assert!(!c.due(T));
        assert!(!c.due(T + UpdateCheck::FIRST - 1));
        assert!(c.due(T + UpdateCheck::FIRST));
        c.checked(T + 400, true);
        assert!(!c.due(T + 400 + DAY - 1));
        assert!(c.due(T + 400 + DAY));
        c.checked(T + 400 + DAY, false);
        assert_eq!(c.next(), T + 400 + DAY + 3600);
    }

    #[test]
    fn a_clock_stepped_back_does_not_stop_the_checks() {
        let mut c = UpdateCheck::new(T);
        c.checked(T, true);
        // The clock goes back a year: the check is still at most a day away.
        let back = T - 365 * DAY;
        assert!(!c.due(back));
        assert_eq!(c.next(), back + DAY);
        assert!(c.due(back + DAY));
    }

    #[test]
    fn each_offered_version_is_alerted_once() {
        let mut c = UpdateCheck::new(T);
        assert!(c.alert("0.2.0"));
        assert!(!c.alert("0.2.0"));
        assert!(c.alert("0.3.0"));
        assert!(!c.alert("0.3.0"));
    }
}
