//! When a node that has just been activated leaves the recovery network.
//!
//! The web console that ran the activation shows the node's new address on its
//! progress page; once the node moves, that page is gone. So the node moves a few
//! seconds after the page has shown the finished activation (clusterd notes that in
//! a marker file), or a minute after the commit when no page looks (the operator
//! closed the browser). A node under load that answers slowly thus still shows the
//! operator where it went.

use std::time::{Duration, Instant};

/// How long the recovery web console keeps running after its page has shown the
/// finished activation: the page stops reloading itself then, and the operator
/// reads the new address.
pub const AFTER_SHOWN: Duration = Duration::from_secs(3);
/// How long after the commit the node moves when no page has shown the result.
pub const UNSEEN: Duration = Duration::from_secs(60);

/// Watches a node in recovery mode for the moment to move.
#[derive(Debug, Default)]
pub struct MoveWatch {
    committed: Option<Instant>,
    shown: Option<Instant>,
}

impl MoveWatch {
    /// Whether the node moves now, given whether a configuration is committed and
    /// whether the progress page has shown the result, as seen at `now`.
    pub fn due(&mut self, now: Instant, committed: bool, shown: bool) -> bool {
        if !committed {
            return false;
        }
        let at = *self.committed.get_or_insert(now);
        if shown && self.shown.is_none() {
            self.shown = Some(now);
        }
        self.shown
            .is_some_and(|s| now.duration_since(s) >= AFTER_SHOWN)
            || now.duration_since(at) >= UNSEEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_after_the_page_showed_the_result_or_a_minute_after_the_commit() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = MoveWatch::default();
        assert!(!w.due(t0, false, false));
        assert!(!w.due(t0 + s(100), false, true), "nothing committed");
        assert!(!w.due(t0 + s(101), true, false));
        assert!(!w.due(t0 + s(120), true, true), "shown just now");
        assert!(!w.due(t0 + s(122), true, true));
        assert!(w.due(t0 + s(123), true, true));

        let mut unseen = MoveWatch::default();
        assert!(!unseen.due(t0, true, false));
        assert!(!unseen.due(t0 + s(59), true, false));
        assert!(unseen.due(t0 + s(60), true, false));

        // A page that shows it late does not hold the node past the minute.
        let mut late = MoveWatch::default();
        assert!(!late.due(t0, true, false));
        assert!(late.due(t0 + s(60), true, true));
    }
}
