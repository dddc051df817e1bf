//! The login throttle of the web console, kept on the privileged side.
//!
//! Every login attempt is counted *before* its password is checked, in one step under
//! the caller's lock ([`Throttle::begin`]), so concurrent attempts cannot slip past the
//! count: twenty wrong logins sent at once count as twenty. An attempt that succeeds
//! takes its count back ([`Throttle::succeeded`]).
//!
//! Per source address: the first [`FREE_FAILURES`] failures cost a second each, then
//! the wait doubles up to [`MAX_DELAY`]; an attempt made while it must wait is not
//! checked and counts as failed. After [`LOCK_AFTER`] failures the address is locked
//! out for [`LOCKOUT`]. Over all addresses together the same rules hold with
//! [`GLOBAL_FREE`] and [`GLOBAL_LOCK_AFTER`], so that many addresses cannot try more
//! passwords than one could by much. The node's console lifts every lockout
//! ([`Throttle::lift`]); a record without a failure for [`LOCKOUT`] is forgotten.
//!
//! Time is a parameter (`now` on every call).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tandem_api::{Lockout, LockoutScope, LoginRefusal};

/// Failures per address that cost only a second's wait each.
pub const FREE_FAILURES: u32 = 3;
/// Longest wait between two checked attempts.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// Failures per address after which it is locked out.
pub const LOCK_AFTER: u32 = 10;
/// Failures over every address before the global wait grows.
pub const GLOBAL_FREE: u32 = 20;
/// Failures over every address after which every address is locked out.
pub const GLOBAL_LOCK_AFTER: u32 = 50;
/// How long a lockout lasts unless lifted; also how long a record is kept.
pub const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked at most (the oldest record is dropped beyond it; the global
/// record still counts its failures).
pub const MAX_ADDRESSES: usize = 4096;

#[derive(Debug, Clone, Copy, Default)]
struct Record {
    failures: u32,
    next_allowed: Option<Instant>,
    locked_until: Option<Instant>,
    last_failure: Option<Instant>,
}

impl Record {
    fn expire(&mut self, now: Instant) {
        if self
            .last_failure
            .is_some_and(|t| now.duration_since(t) >= LOCKOUT)
            && self.locked_until.is_none_or(|t| now >= t)
        {
            *self = Record::default();
        }
        if self.locked_until.is_some_and(|t| now >= t) {
            *self = Record::default();
        }
    }

    fn wait(&self, now: Instant) -> Option<Duration> {
        self.next_allowed
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    fn fail(&mut self, now: Instant, free: u32, lock_after: u32, delay: bool) {
        self.failures = self.failures.saturating_add(1);
        self.last_failure = Some(now);
        if delay {
            self.next_allowed = Some(now + backoff(self.failures, free));
        }
        if self.failures >= lock_after && self.locked_until.is_none() {
            self.locked_until = Some(now + LOCKOUT);
        }
    }
}

/// The wait after `failures` failures, `free` of them at a second (globally: none).
fn backoff(failures: u32, free: u32) -> Duration {
    if failures <= free {
        return if free == GLOBAL_FREE {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        };
    }
    let exp = (failures - free).min(6);
    Duration::from_secs(1u64 << exp).min(MAX_DELAY)
}

fn secs(d: Duration) -> u64 {
    u64::try_from(d.as_millis().div_ceil(1000)).unwrap_or(u64::MAX)
}

fn lockout(scope: LockoutScope, failures: u32, left: Duration) -> Lockout {
    Lockout {
        scope,
        failures,
        seconds_left: secs(left),
    }
}

/// The throttle. Use it under one lock: [`Throttle::begin`], check the password,
/// then [`Throttle::succeeded`] when it was right.
#[derive(Debug, Default)]
pub struct Throttle {
    by_address: HashMap<IpAddr, Record>,
    global: Record,
}

impl Throttle {
    /// Counts an attempt from `source` as failed and says whether its password may be
    /// checked now.
    ///
    /// # Errors
    /// The attempt is refused unchecked: logins are locked, or it came too early.
    pub fn begin(&mut self, now: Instant, source: IpAddr) -> Result<(), LoginRefusal> {
        self.global.expire(now);
        if self.by_address.len() >= MAX_ADDRESSES && !self.by_address.contains_key(&source) {
            self.by_address.retain(|_, r| {
                r.expire(now);
                r.failures > 0
            });
            if self.by_address.len() >= MAX_ADDRESSES
                && let Some(oldest) = self
                    .by_address
                    .iter()
                    .min_by_key(|(_, r)| r.last_failure)
                    .map(|(a, _)| *a)
            {
                self.by_address.remove(&oldest);
            }
        }
        let rec = self.by_address.entry(source).or_default();
        rec.expire(now);
        let wait = match (rec.wait(now), self.global.wait(now)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if self.locked(now, source).is_some() || wait.is_some() {
            // Refused unchecked, and counted as failed.
            if let Some(rec) = self.by_address.get_mut(&source) {
                rec.fail(now, FREE_FAILURES, LOCK_AFTER, false);
            }
            self.global.fail(now, GLOBAL_FREE, GLOBAL_LOCK_AFTER, false);
            return Err(self.locked(now, source).unwrap_or(LoginRefusal::Wait {
                seconds: secs(wait.unwrap_or_default()),
                failures: self.failures(source),
            }));
        }
        if let Some(rec) = self.by_address.get_mut(&source) {
            rec.fail(now, FREE_FAILURES, LOCK_AFTER, true);
        }
        self.global.fail(now, GLOBAL_FREE, GLOBAL_LOCK_AFTER, true);
        Ok(())
    }

    /// The refusal of a lockout that holds for `source` now, if any.
    fn locked(&self, now: Instant, source: IpAddr) -> Option<LoginRefusal> {
        if let Some(left) = self.global.locked(now) {
            return Some(LoginRefusal::Locked(lockout(
                LockoutScope::Everyone,
                self.global.failures,
                left,
            )));
        }
        let rec = self.by_address.get(&source)?;
        rec.locked(now).map(|left| {
            LoginRefusal::Locked(lockout(LockoutScope::Address(source), rec.failures, left))
        })
    }

    /// The attempt [`Throttle::begin`] let through had the right password: its
    /// address starts afresh and the global count takes it back.
    pub fn succeeded(&mut self, source: IpAddr) {
        self.by_address.remove(&source);
        self.global.failures = self.global.failures.saturating_sub(1);
        if self.global.failures <= GLOBAL_FREE {
            self.global.next_allowed = None;
        }
    }

    /// Failed logins counted for `source` now.
    #[must_use]
    pub fn failures(&self, source: IpAddr) -> u32 {
        self.by_address.get(&source).map_or(0, |r| r.failures)
    }

    /// The refusal for a wrong password just checked for `source`.
    #[must_use]
    pub fn wrong(&self, now: Instant, source: IpAddr) -> LoginRefusal {
        self.locked(now, source).unwrap_or(LoginRefusal::Wrong {
            failures: self.failures(source),
        })
    }

    /// The lockout in force, if any: the global one, else the address with the most
    /// failures.
    #[must_use]
    pub fn lockout(&self, now: Instant) -> Option<Lockout> {
        if let Some(left) = self.global.locked(now) {
            return Some(lockout(LockoutScope::Everyone, self.global.failures, left));
        }
        self.by_address
            .iter()
            .filter_map(|(a, r)| r.locked(now).map(|left| (a, r, left)))
            .max_by_key(|(_, r, _)| r.failures)
            .map(|(a, r, left)| lockout(LockoutScope::Address(*a), r.failures, left))
    }

    /// The lockout a login from `source` meets now (the global one, or the address's);
    /// without an address, [`Throttle::lockout`].
    #[must_use]
    pub fn lockout_for(&self, now: Instant, source: Option<IpAddr>) -> Option<Lockout> {
        match source {
            None => self.lockout(now),
            Some(source) => match self.locked(now, source) {
                Some(LoginRefusal::Locked(l)) => Some(l),
                _ => None,
            },
        }
    }

    /// Lifts every lockout and forgets every failure (the node's console).
    pub fn lift(&mut self) {
        *self = Throttle::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 168, 100, n])
    }

    #[test]
    fn concurrent_wrong_logins_each_count_and_only_one_is_checked() {
        let mut t = Throttle::default();
        let now = Instant::now();
        // Twenty attempts arrive at once: the first is checked, the rest refused.
        let checked = (0..20).filter(|_| t.begin(now, ip(100)).is_ok()).count();
        assert_eq!(checked, 1);
        assert_eq!(t.failures(ip(100)), 20);
        let l = t
            .lockout(now)
            .expect("twenty failures lock the address out");
        assert_eq!(l.scope, LockoutScope::Address(ip(100)));
        assert_eq!(l.failures, 20);
        // Another address is not affected.
        assert!(t.begin(now, ip(101)).is_ok());
    }

    #[test]
    fn waits_double_after_the_free_failures_then_lock_out() {
        let mut t = Throttle::default();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        // One checked attempt, then one too early (refused, counted), then the wait.
        loop {
            t.begin(now, ip(1)).expect("checked after waiting");
            match t.begin(now, ip(1)) {
                Err(LoginRefusal::Wait { seconds, .. }) => waits.push(seconds),
                Err(LoginRefusal::Locked(l)) => {
                    assert_eq!(l.failures, LOCK_AFTER);
                    break;
                }
                other => panic!("{other:?}"),
            }
            now += Duration::from_secs(*waits.last().unwrap());
        }
        assert_eq!(waits, [1, 1, 4, 16]);
        assert!(t.lockout(now).is_some());
        assert!(matches!(t.begin(now, ip(1)), Err(LoginRefusal::Locked(_))));
        // The lockout ends by itself.
        now += LOCKOUT;
        assert!(t.begin(now, ip(1)).is_ok());
    }

    #[test]
    fn a_right_password_takes_its_count_back() {
        let mut t = Throttle::default();
        let now = Instant::now();
        t.begin(now, ip(1)).unwrap();
        t.succeeded(ip(1));
        assert_eq!(t.failures(ip(1)), 0);
        assert!(t.begin(now, ip(1)).is_ok(), "no wait after a success");
    }

    #[test]
    fn many_addresses_lock_everyone_out_and_the_console_lifts_it() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for n in 0..=u8::try_from(GLOBAL_LOCK_AFTER).unwrap() {
            let _ = t.begin(now, ip(n));
        }
        let l = t.lockout(now).expect("global lockout");
        assert_eq!(l.scope, LockoutScope::Everyone);
        assert!(matches!(
            t.begin(now, ip(200)),
            Err(LoginRefusal::Locked(Lockout {
                scope: LockoutScope::Everyone,
                ..
            }))
        ));
        t.lift();
        assert!(t.lockout(now).is_none());
        assert!(t.begin(now, ip(200)).is_ok());
    }

    #[test]
    fn the_global_wait_grows_beyond_its_free_failures() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for n in 0..u8::try_from(GLOBAL_FREE).unwrap() {
            assert!(t.begin(now, ip(n)).is_ok(), "address {n}");
        }
        // One more new address: the global count is past its free failures.
        assert!(t.begin(now, ip(250)).is_ok());
        assert!(matches!(
            t.begin(now, ip(251)),
            Err(LoginRefusal::Wait { .. })
        ));
    }
}
