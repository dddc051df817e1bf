//! The remote-support tunnel's rules (R10), sans-IO: switched on by an operator for a
//! limited time, connected by the shell (an outbound SSH connection with a reverse
//! forward to the node's SSH server), connected again with backoff when the
//! connection ends, and closed by the operator or when its time is up.
//!
//! The shell calls [`SupportTunnel::open`] and [`SupportTunnel::close`] for the
//! operator, [`SupportTunnel::connected`] and [`SupportTunnel::ended`] for what its
//! connection does, [`SupportTunnel::handle_timeout`] at
//! [`SupportTunnel::poll_timeout`], and carries out [`SupportTunnel::poll_action`]
//! after each call.

use std::collections::VecDeque;
use std::time::Duration;

use crate::Instant;

/// What the shell is told to do or report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum SupportAction {
    /// Start the connection to the support server.
    Connect,
    /// End the connection (if one runs).
    Disconnect,
    /// Report: the tunnel was switched on by `by` until `until` (`again`: it was on
    /// already, and its time starts anew).
    SwitchedOn {
        /// Who switched it on.
        by: String,
        /// When it closes by itself.
        until: Instant,
        /// It was on already.
        again: bool,
    },
    /// Report: the connection is up; the support server forwards its `port`.
    Up {
        /// The port on the support server that leads to this node's SSH server.
        port: u16,
    },
    /// Report: the connection ended while the tunnel is on; the next attempt is at
    /// `retry_at`.
    Down {
        /// What ended it.
        error: String,
        /// When the shell is told to connect again.
        retry_at: Instant,
    },
    /// Report: the tunnel is off.
    Closed(CloseReason),
}

/// Why a tunnel closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// An operator switched it off.
    Operator {
        /// Who.
        by: String,
    },
    /// Its time was up.
    TimeUp,
}

/// The tunnel as the console and the CLI show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupportState {
    /// Off.
    Off,
    /// On.
    On {
        /// Who switched it on.
        by: String,
        /// Since when.
        since: Instant,
        /// When it closes by itself.
        until: Instant,
        /// The connection.
        link: Link,
        /// What ended the last connection or attempt, if one ended.
        last_error: Option<String>,
    },
}

/// The connection of a tunnel that is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Being made.
    Connecting,
    /// Up since `since`; the support server forwards `port` to this node.
    Up {
        /// The port on the support server.
        port: u16,
        /// Since when.
        since: Instant,
    },
    /// Ended; the next attempt is at `retry_at`.
    Waiting {
        /// When.
        retry_at: Instant,
    },
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SupportRefusal {
    /// Off already.
    NotOn,
    /// A time of zero or beyond the limit.
    BadDuration {
        /// The longest allowed.
        limit: Duration,
    },
}

impl std::fmt::Display for SupportRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SupportRefusal::NotOn => write!(f, "remote support is off already"),
            SupportRefusal::BadDuration { limit } => write!(
                f,
                "the time must be between 1 and {} hours (support.max-hours)",
                limit.as_secs() / 3600
            ),
        }
    }
}

#[derive(Debug, Clone)]
struct Session {
    by: String,
    since: Instant,
    until: Instant,
    link: Link,
    /// Connections or attempts that ended since the last one that came up.
    failures: u32,
    last_error: Option<String>,
}

/// The tunnel of one node.
#[derive(Debug, Clone, Default)]
pub struct SupportTunnel {
    session: Option<Session>,
    out: VecDeque<SupportAction>,
}

impl SupportTunnel {
    /// The first wait after a connection ended; doubled per further failure.
    pub const FIRST_RETRY: Duration = Duration::from_secs(2);
    /// The longest wait between attempts.
    pub const MAX_RETRY: Duration = Duration::from_secs(60);

    /// A tunnel that is off.
    #[must_use]
    pub fn new() -> SupportTunnel {
        SupportTunnel::default()
    }

    /// Switch on at `now` for `time` (at most `limit`), by `by`. When the tunnel is on
    /// already, its time is set anew from `now` and the connection is kept.
    ///
    /// # Errors
    /// `time` is zero or beyond `limit`.
    pub fn open(
        &mut self,
        now: Instant,
        by: &str,
        time: Duration,
        limit: Duration,
    ) -> Result<(), SupportRefusal> {
        if time.is_zero() || time > limit {
            return Err(SupportRefusal::BadDuration { limit });
        }
        let until = now.saturating_add(time);
        let again = self.session.is_some();
        match &mut self.session {
            Some(s) => {
                s.until = until;
                s.by = by.to_owned();
            }
            None => {
                self.session = Some(Session {
                    by: by.to_owned(),
                    since: now,
                    until,
                    link: Link::Connecting,
                    failures: 0,
                    last_error: None,
                });
                self.out.push_back(SupportAction::Connect);
            }
        }
        self.out.push_back(SupportAction::SwitchedOn {
            by: by.to_owned(),
            until,
            again,
        });
        Ok(())
    }

    /// Switch off, by `by`.
    ///
    /// # Errors
    /// The tunnel is off.
    pub fn close(&mut self, by: &str) -> Result<(), SupportRefusal> {
        if self.session.take().is_none() {
            return Err(SupportRefusal::NotOn);
        }
        self.out.push_back(SupportAction::Disconnect);
        self.out
            .push_back(SupportAction::Closed(CloseReason::Operator {
                by: by.to_owned(),
            }));
        Ok(())
    }

    /// The connection came up at `now`: the support server forwards `port`.
    pub fn connected(&mut self, now: Instant, port: u16) {
        if let Some(s) = &mut self.session
            && s.link == Link::Connecting
        {
            s.link = Link::Up { port, since: now };
            s.failures = 0;
            self.out.push_back(SupportAction::Up { port });
        }
    }

    /// The connection (or the attempt) ended at `now`, `error` saying why.
    pub fn ended(&mut self, now: Instant, error: &str) {
        let Some(s) = &mut self.session else { return };
        if matches!(s.link, Link::Waiting { .. }) {
            return;
        }
        let wait = Self::FIRST_RETRY
            .saturating_mul(1 << s.failures.min(6))
            .min(Self::MAX_RETRY);
        s.failures = s.failures.saturating_add(1);
        let retry_at = now.saturating_add(wait);
        s.link = Link::Waiting { retry_at };
        s.last_error = Some(error.to_owned());
        self.out.push_back(SupportAction::Down {
            error: error.to_owned(),
            retry_at,
        });
    }

    /// Time passed: the tunnel's time may be up, or the next attempt due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(s) = &mut self.session else { return };
        if now >= s.until {
            self.session = None;
            self.out.push_back(SupportAction::Disconnect);
            self.out
                .push_back(SupportAction::Closed(CloseReason::TimeUp));
            return;
        }
        if let Link::Waiting { retry_at } = s.link
            && now >= retry_at
        {
            s.link = Link::Connecting;
            self.out.push_back(SupportAction::Connect);
        }
    }

    /// When to call [`SupportTunnel::handle_timeout`]; `None` while off.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let s = self.session.as_ref()?;
        Some(match s.link {
            Link::Waiting { retry_at } => retry_at.min(s.until),
            _ => s.until,
        })
    }

    /// The next thing to do or report.
    pub fn poll_action(&mut self) -> Option<SupportAction> {
        self.out.pop_front()
    }

    /// The tunnel now.
    #[must_use]
    pub fn state(&self) -> SupportState {
        match &self.session {
            None => SupportState::Off,
            Some(s) => SupportState::On {
                by: s.by.clone(),
                since: s.since,
                until: s.until,
                link: s.link,
                last_error: s.last_error.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const LIMIT: Duration = Duration::from_secs(8 * 3600);

    fn at(secs: u64) -> Instant {
        Instant::from_millis(secs * 1000)
    }

    fn drain(t: &mut SupportTunnel) -> Vec<SupportAction> {
        std::iter::from_fn(|| t.poll_action()).collect()
    }

    #[test]
    fn on_connects_and_closes_by_itself_when_the_time_is_up() {
        let mut t = SupportTunnel::new();
        assert_eq!(t.poll_timeout(), None);
        t.open(at(0), "admin", 2 * HOUR, LIMIT).unwrap();
        assert_eq!(
            drain(&mut t),
            [
                SupportAction::Connect,
                SupportAction::SwitchedOn {
                    by: "admin".into(),
                    until: at(7200),
                    again: false
                }
            ]
        );
        t.connected(at(3), 40022);
        assert_eq!(drain(&mut t), [SupportAction::Up { port: 40022 }]);
        assert_eq!(t.poll_timeout(), Some(at(7200)));
        t.handle_timeout(at(7199));
        assert!(drain(&mut t).is_empty());
        t.handle_timeout(at(7200));
        assert_eq!(
            drain(&mut t),
            [
                SupportAction::Disconnect,
                SupportAction::Closed(CloseReason::TimeUp)
            ]
        );
        assert_eq!(t.state(), SupportState::Off);
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn a_lost_connection_is_made_again_with_growing_waits_that_reset_once_up() {
        let mut t = SupportTunnel::new();
        t.open(at(0), "root", HOUR, LIMIT).unwrap();
        drain(&mut t);
        let mut now = at(1);
        let mut waits = Vec::new();
        for _ in 0..8 {
            t.ended(now, "Connection refused");
            let Some(SupportAction::Down { retry_at, error }) = t.poll_action() else {
                panic!("no report of the end");
            };
            assert_eq!(error, "Connection refused");
            waits.push(retry_at.since(now).as_secs());
            assert_eq!(t.poll_timeout(), Some(retry_at));
            t.handle_timeout(retry_at);
            assert_eq!(drain(&mut t), [SupportAction::Connect]);
            now = retry_at;
        }
        assert_eq!(waits, [2, 4, 8, 16, 32, 60, 60, 60]);
        // A second report of the same end changes nothing.
        t.ended(now, "x");
        t.ended(now, "y");
        assert_eq!(drain(&mut t).len(), 1);
        t.handle_timeout(at(10_000));
        // Past the hour: closed, not connected again.
        assert_eq!(
            drain(&mut t),
            [
                SupportAction::Disconnect,
                SupportAction::Closed(CloseReason::TimeUp)
            ]
        );

        let mut t = SupportTunnel::new();
        t.open(at(0), "root", HOUR, LIMIT).unwrap();
        t.ended(at(1), "refused");
        t.handle_timeout(at(3));
        t.ended(at(3), "refused");
        t.handle_timeout(at(7));
        t.connected(at(8), 1);
        t.ended(at(100), "reset");
        drain(&mut t);
        let SupportState::On {
            link: Link::Waiting { retry_at },
            last_error,
            ..
        } = t.state()
        else {
            panic!("not waiting");
        };
        assert_eq!((retry_at, last_error.as_deref()), (at(102), Some("reset")));
    }

    #[test]
    fn off_by_the_operator_and_refusals() {
        let mut t = SupportTunnel::new();
        assert_eq!(t.close("admin"), Err(SupportRefusal::NotOn));
        assert_eq!(
            t.open(at(0), "admin", Duration::ZERO, LIMIT),
            Err(SupportRefusal::BadDuration { limit: LIMIT })
        );
        assert_eq!(
            t.open(at(0), "admin", 9 * HOUR, LIMIT)
                .unwrap_err()
                .to_string(),
            "the time must be between 1 and 8 hours (support.max-hours)"
        );
        assert!(drain(&mut t).is_empty());
        t.open(at(0), "admin", HOUR, LIMIT).unwrap();
        t.connected(at(1), 2200);
        drain(&mut t);
        // Switched on again: a new end time, the same connection.
        t.open(at(600), "root", HOUR, LIMIT).unwrap();
        assert_eq!(
            drain(&mut t),
            [SupportAction::SwitchedOn {
                by: "root".into(),
                until: at(4200),
                again: true
            }]
        );
        let SupportState::On {
            since, until, link, ..
        } = t.state()
        else {
            panic!("off");
        };
        assert_eq!(
            (since, until, link),
            (
                at(0),
                at(4200),
                Link::Up {
                    port: 2200,
                    since: at(1)
                }
            )
        );
        t.close("admin").unwrap();
        assert_eq!(
            drain(&mut t),
            [
                SupportAction::Disconnect,
                SupportAction::Closed(CloseReason::Operator { by: "admin".into() })
            ]
        );
        // What the ended connection reports afterwards changes nothing.
        t.ended(at(4000), "killed");
        t.connected(at(4000), 1);
        assert!(drain(&mut t).is_empty());
        assert_eq!(t.state(), SupportState::Off);
    }
}
