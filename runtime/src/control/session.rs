//! The web console's sessions, kept on the privileged side: opened at login, checked
//! on every request that needs one, ended by logout, [`IDLE`] without use, the
//! absolute [`LIFETIME`], or a change of the management password ([`Sessions::end_all`]).
//!
//! Time is a parameter: the caller passes `now` to every call (tests step it).
//! Tokens are looked up by their SHA-256, so a lookup's timing says nothing about a
//! token's text.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tandem_api::{SessionInfo, SessionKind, Token};

/// How long a session lives without use.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// How long a session lives at most, used or not.
pub const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Sessions kept at most; the oldest is ended for a new one beyond it.
pub const MAX_SESSIONS: usize = 64;

struct Entry<T> {
    token: Token,
    csrf: Token,
    kind: SessionKind,
    source: IpAddr,
    created: Instant,
    last_used: Instant,
    data: T,
}

/// The open sessions, each with data of its own (`T`: the archive a recovery session
/// checked).
pub struct Sessions<T> {
    map: HashMap<[u8; 32], Entry<T>>,
}

impl<T> std::fmt::Debug for Sessions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("open", &self.map.len())
            .finish()
    }
}

impl<T> Default for Sessions<T> {
    fn default() -> Self {
        Sessions {
            map: HashMap::new(),
        }
    }
}

fn key(t: &Token) -> [u8; 32] {
    Sha256::digest(t.as_str().as_bytes()).into()
}

fn left(limit: Duration, since: Duration) -> u64 {
    limit.saturating_sub(since).as_secs()
}

impl<T: Default> Sessions<T> {
    fn info(e: &Entry<T>, now: Instant) -> SessionInfo {
        SessionInfo {
            token: e.token.clone(),
            csrf: e.csrf.clone(),
            kind: e.kind,
            source: Some(e.source),
            idle_left_s: left(IDLE, now.duration_since(e.last_used)),
            lifetime_left_s: left(LIFETIME, now.duration_since(e.created)),
        }
    }

    fn alive(e: &Entry<T>, now: Instant) -> bool {
        now.duration_since(e.last_used) < IDLE && now.duration_since(e.created) < LIFETIME
    }

    /// Opens a session of `kind` for a login from `source` with the tokens `token` and
    /// `csrf` (32 random bytes each, from the caller's random source).
    pub fn open(
        &mut self,
        now: Instant,
        kind: SessionKind,
        source: IpAddr,
        token: &[u8; 32],
        csrf: &[u8; 32],
    ) -> SessionInfo {
        self.map.retain(|_, e| Self::alive(e, now));
        while self.map.len() >= MAX_SESSIONS {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.map.remove(&oldest);
        }
        let token = Token::from_bytes(token);
        let e = Entry {
            csrf: Token::from_bytes(csrf),
            token: token.clone(),
            kind,
            source,
            created: now,
            last_used: now,
            data: T::default(),
        };
        let info = Self::info(&e, now);
        self.map.insert(key(&token), e);
        info
    }

    /// The session of `token`, its idle time reset; `None` when there is none (any
    /// more). An ended session is forgotten here.
    pub fn check(&mut self, now: Instant, token: &Token) -> Option<(SessionInfo, &mut T)> {
        let k = key(token);
        if !self.map.get(&k).is_some_and(|e| Self::alive(e, now)) {
            self.map.remove(&k);
            return None;
        }
        let e = self.map.get_mut(&k)?;
        e.last_used = now;
        let info = Self::info(e, now);
        Some((info, &mut e.data))
    }

    /// Ends the session of `token`.
    pub fn end(&mut self, token: &Token) {
        self.map.remove(&key(token));
    }

    /// Ends every session (the management password changed).
    pub fn end_all(&mut self) {
        self.map.clear();
    }

    /// Sessions open now.
    #[must_use]
    pub fn count(&self, now: Instant) -> usize {
        self.map.values().filter(|e| Self::alive(e, now)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(s: &mut Sessions<u8>, now: Instant, n: u8) -> Token {
        s.open(
            now,
            SessionKind::Cluster,
            IpAddr::from([192, 0, 2, n]),
            &[n; 32],
            &[n.wrapping_add(100); 32],
        )
        .token
    }

    #[test]
    fn a_session_ends_after_its_idle_time() {
        let mut s = Sessions::<u8>::default();
        let t0 = Instant::now();
        let t = open(&mut s, t0, 1);
        let (info, data) = s.check(t0 + IDLE / 2, &t).unwrap();
        *data = 7;
        assert_eq!(info.kind, SessionKind::Cluster);
        assert_eq!(info.source, Some(IpAddr::from([192, 0, 2, 1])));
        assert_eq!(info.idle_left_s, IDLE.as_secs());
        // Used half-way: the idle time starts again.
        assert_eq!(*s.check(t0 + IDLE, &t).unwrap().1, 7);
        assert!(s.check(t0 + IDLE + IDLE, &t).is_none());
        assert!(s.check(t0, &t).is_none(), "an ended session stays ended");
    }

    #[test]
    fn a_session_ends_after_its_lifetime_however_busy() {
        let mut s = Sessions::<u8>::default();
        let t0 = Instant::now();
        let t = open(&mut s, t0, 1);
        let mut now = t0;
        while now < t0 + LIFETIME - Duration::from_secs(60) {
            now += Duration::from_secs(60);
            let (info, _) = s.check(now, &t).expect("alive before its lifetime");
            assert_eq!(info.lifetime_left_s, (t0 + LIFETIME - now).as_secs());
        }
        assert!(s.check(t0 + LIFETIME, &t).is_none());
    }

    #[test]
    fn logout_and_password_change_end_sessions() {
        let mut s = Sessions::<u8>::default();
        let t0 = Instant::now();
        let (a, b, c) = (
            open(&mut s, t0, 1),
            open(&mut s, t0, 2),
            open(&mut s, t0, 3),
        );
        s.end(&a);
        assert!(s.check(t0, &a).is_none() && s.check(t0, &b).is_some());
        s.end_all();
        assert!(s.check(t0, &b).is_none() && s.check(t0, &c).is_none());
        assert_eq!(s.count(t0), 0);
        let unknown = Token::from_bytes(&[9; 32]);
        assert!(s.check(t0, &unknown).is_none());
    }

    #[test]
    fn sessions_are_bounded_and_the_least_used_goes_first() {
        let mut s = Sessions::<u8>::default();
        let t0 = Instant::now();
        let first = open(&mut s, t0, 0);
        let second = open(&mut s, t0 + Duration::from_secs(1), 1);
        s.check(t0 + Duration::from_secs(2), &first).unwrap();
        for n in 2..=u8::try_from(MAX_SESSIONS).unwrap() {
            open(&mut s, t0 + Duration::from_secs(3), n);
        }
        assert_eq!(s.count(t0 + Duration::from_secs(3)), MAX_SESSIONS);
        assert!(s.check(t0 + Duration::from_secs(3), &second).is_none());
        assert!(s.check(t0 + Duration::from_secs(3), &first).is_some());
    }
}
