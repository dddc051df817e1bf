//! The "clock unsynchronised" rule, sans-IO: a node whose clock has not been
//! synchronised (NTP) for [`ClockWatch::GRACE`] is reported once, and reported again
//! when it is back in sync. A short loss of the time servers (a restart, a reboot's
//! first minutes) says nothing.
//!
//! The shell feeds what `chronyc tracking` says ([`ClockWatch::handle`]), calls
//! [`ClockWatch::handle_timeout`] at [`ClockWatch::poll_timeout`], and drains
//! [`ClockWatch::poll_output`] after each call.

use std::time::Duration;

use crate::Instant;

/// What the shell is told to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ClockAlert {
    /// Unsynchronised since `since` for at least the grace time.
    Unsynchronised {
        /// When it was last seen synchronised (or first seen unsynchronised).
        since: Instant,
    },
    /// Synchronised again after an [`ClockAlert::Unsynchronised`].
    Synchronised,
}

/// Watches one node's clock synchronisation.
#[derive(Debug, Clone, Default)]
pub struct ClockWatch {
    /// Unsynchronised since then (none while synchronised or before any report).
    unsynced_since: Option<Instant>,
    /// The alert is out (so it is sent once, and its end is reported).
    alerted: bool,
    out: Option<ClockAlert>,
}

impl ClockWatch {
    /// How long a clock may be unsynchronised before it is reported.
    pub const GRACE: Duration = Duration::from_secs(15 * 60);

    /// A watch that has heard nothing yet.
    #[must_use]
    pub fn new() -> ClockWatch {
        ClockWatch::default()
    }

    /// The clock is (`synced`) or is not synchronised at `now`. Call
    /// [`ClockWatch::poll_output`] after it.
    pub fn handle(&mut self, now: Instant, synced: bool) {
        if synced {
            self.unsynced_since = None;
            if self.alerted {
                self.alerted = false;
                self.out = Some(ClockAlert::Synchronised);
            }
        } else {
            let since = *self.unsynced_since.get_or_insert(now);
            self.check(now, since);
        }
    }

    /// Time passed without a report: the grace time may have run out.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(since) = self.unsynced_since {
            self.check(now, since);
        }
    }

    fn check(&mut self, now: Instant, since: Instant) {
        if !self.alerted && now.since(since) >= Self::GRACE {
            self.alerted = true;
            self.out = Some(ClockAlert::Unsynchronised { since });
        }
    }

    /// When to call [`ClockWatch::handle_timeout`]: when the grace time of an
    /// unsynchronised clock ends; `None` when nothing is pending.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.unsynced_since {
            Some(since) if !self.alerted => Some(since.saturating_add(Self::GRACE)),
            _ => None,
        }
    }

    /// The report to make, once.
    pub fn poll_output(&mut self) -> Option<ClockAlert> {
        self.out.take()
    }
}
