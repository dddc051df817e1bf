//! The pure part of the outbox: what to do with an event, when to retry. No I/O, no clock.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Seconds since 1970-01-01 UTC; the caller injects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnixSecs(pub u64);

impl UnixSecs {
    /// `self + secs`, saturating (a far-future time is as good as never).
    #[must_use]
    pub fn plus(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }
}

impl fmt::Display for UnixSecs {
    /// `2026-11-25 06:24:34 UTC` (times past year 9999 show as its end).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = i64::try_from(self.0)
            .ok()
            .and_then(|u| time::OffsetDateTime::from_unix_timestamp(u).ok())
            .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59 UTC));
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }
}

/// Identifies a message in the outbox (its file is `msg-<id>.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One state change on a node, as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    /// The node's name, e.g. `node1`.
    pub node: String,
    /// What changed, e.g. `failover`, `link`, `peer`.
    pub kind: String,
    /// State before; empty for an event without states.
    pub old: String,
    /// State after; empty for an event without states.
    pub new: String,
    /// Free text for the body.
    pub text: String,
    /// When it happened.
    pub at: UnixSecs,
}

impl Event {
    fn same_source(&self, other: &Self) -> bool {
        self.node == other.node && self.kind == other.kind
    }
}

/// Exponential backoff between delivery attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failure.
    pub initial_secs: u64,
    /// Upper bound of the wait.
    pub max_secs: u64,
}

/// When changes of one kind count as flapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapPolicy {
    /// The window in which changes are counted.
    pub window_secs: u64,
    /// Up to this many changes per window go out one by one; more are summarised.
    pub threshold: usize,
}

/// Everything the outbox decides by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Retries.
    pub retry: RetryPolicy,
    /// Flapping.
    pub flap: FlapPolicy,
}

impl Default for Policy {
    /// Retry after 30 s doubling up to an hour; more than 3 changes in 10 minutes is flapping.
    fn default() -> Self {
        Self {
            retry: RetryPolicy {
                initial_secs: 30,
                max_secs: 3600,
            },
            flap: FlapPolicy {
                window_secs: 600,
                threshold: 3,
            },
        }
    }
}

/// The wait after `attempts` failed attempts (`attempts >= 1`; 0 means no wait).
#[must_use]
pub fn backoff(policy: &RetryPolicy, attempts: u32) -> u64 {
    if attempts == 0 {
        return 0;
    }
    let factor = 1u64.checked_shl(attempts - 1).unwrap_or(u64::MAX);
    policy
        .initial_secs
        .saturating_mul(factor)
        .min(policy.max_secs)
}

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Its id.
    pub id: MessageId,
    /// The events it reports: one, or several for a flapping summary.
    pub events: Vec<Event>,
    /// Whether this collects flapping changes.
    pub summary: bool,
    /// When it was queued.
    pub created: UnixSecs,
    /// Failed delivery attempts so far.
    pub attempts: u32,
    /// Not to be sent before this time.
    pub next_attempt: UnixSecs,
    /// The last delivery error, for the operator.
    pub last_error: Option<String>,
    /// Recipients that already took it (direct delivery, where each domain's exchanger
    /// is a separate session): not sent to again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_to: Vec<String>,
}

/// Keeps header text on one line: the values come from the runtime, not from us.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

impl StoredMessage {
    /// `[tandem node1] failover: passive -> active`, or for a summary
    /// `[tandem node1] failover flapping: 5 changes, passive -> active`; without states,
    /// the first line of the text: `[tandem node1] split_brain: both nodes claim ...`.
    #[must_use]
    pub fn subject(&self) -> String {
        let (Some(first), Some(last)) = (self.events.first(), self.events.last()) else {
            return "[tandem] (empty message)".to_owned();
        };
        let s = if self.summary {
            format!(
                "[tandem {}] {} flapping: {} changes, {} -> {}",
                first.node,
                first.kind,
                self.events.len(),
                first.old,
                last.new
            )
        } else if first.old.is_empty() && first.new.is_empty() {
            // An event without states (e.g. `split_brain`): the text's first line says it.
            let line: String = first
                .text
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(100)
                .collect();
            format!("[tandem {}] {}: {}", first.node, first.kind, line)
        } else {
            format!(
                "[tandem {}] {}: {} -> {}",
                first.node, first.kind, first.old, first.new
            )
        };
        one_line(&s)
    }

    /// Plain text body: one paragraph per change.
    #[must_use]
    pub fn body(&self) -> String {
        let mut out = String::new();
        if self.summary {
            out.push_str(&format!(
                "This changed {} times in a short time (flapping); all changes follow.\n\n",
                self.events.len()
            ));
        }
        for e in &self.events {
            out.push_str(&format!(
                "Node:   {}\nEvent:  {}\nChange: {} -> {}\nTime:   {}\n",
                e.node, e.kind, e.old, e.new, e.at
            ));
            if !e.text.is_empty() {
                out.push_str(&format!("\n{}\n", e.text));
            }
            out.push('\n');
        }
        out
    }
}

/// What the outbox remembers besides the messages (file `state.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The id the next message gets.
    pub next_id: u64,
    /// Events accepted within the flap window (sent or not), for duplicates and flapping.
    pub recent: Vec<Event>,
}

/// The decision for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Exactly this event is already queued or was sent recently: drop it.
    Duplicate,
    /// Queue this new message.
    New(StoredMessage),
    /// Add the event to this pending flapping summary.
    AddToSummary(MessageId),
}

/// Decides what to do with `ev` given what is remembered and pending. Pure.
#[must_use]
pub fn plan_event(
    history: &History,
    pending: &[StoredMessage],
    ev: &Event,
    now: UnixSecs,
    policy: &Policy,
) -> Plan {
    if history.recent.contains(ev) || pending.iter().any(|m| m.events.contains(ev)) {
        return Plan::Duplicate;
    }
    if let Some(m) = pending
        .iter()
        .find(|m| m.summary && m.events.first().is_some_and(|f| f.same_source(ev)))
    {
        return Plan::AddToSummary(m.id);
    }
    let window_start = now.0.saturating_sub(policy.flap.window_secs);
    let recent_same = history
        .recent
        .iter()
        .filter(|e| e.same_source(ev) && e.at.0 >= window_start)
        .count();
    let id = MessageId(history.next_id);
    if recent_same >= policy.flap.threshold {
        // Hold the summary until the window closes, collecting further changes.
        Plan::New(StoredMessage {
            id,
            events: vec![ev.clone()],
            summary: true,
            created: now,
            attempts: 0,
            next_attempt: now.plus(policy.flap.window_secs),
            last_error: None,
            delivered_to: Vec::new(),
        })
    } else {
        Plan::New(StoredMessage {
            id,
            events: vec![ev.clone()],
            summary: false,
            created: now,
            attempts: 0,
            next_attempt: now,
            last_error: None,
            delivered_to: Vec::new(),
        })
    }
}

/// The history after accepting `ev` at `now`: remembered, and old entries pruned.
#[must_use]
pub fn remember(
    history: &History,
    ev: &Event,
    now: UnixSecs,
    policy: &Policy,
    new_id: bool,
) -> History {
    let window_start = now.0.saturating_sub(policy.flap.window_secs);
    let mut recent: Vec<Event> = history
        .recent
        .iter()
        .filter(|e| e.at.0 >= window_start)
        .cloned()
        .collect();
    recent.push(ev.clone());
    History {
        next_id: history.next_id + u64::from(new_id),
        recent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(kind: &str, old: &str, new: &str, at: u64) -> Event {
        Event {
            node: "node1".into(),
            kind: kind.into(),
            old: old.into(),
            new: new.into(),
            text: String::new(),
            at: UnixSecs(at),
        }
    }

    /// Feeds events through plan/remember like the outbox does, returning the pending list.
    fn feed(events: &[Event], policy: &Policy) -> (Vec<StoredMessage>, usize) {
        let mut h = History::default();
        let mut pending: Vec<StoredMessage> = Vec::new();
        let mut dups = 0;
        for e in events {
            match plan_event(&h, &pending, e, e.at, policy) {
                Plan::Duplicate => dups += 1,
                Plan::New(m) => {
                    pending.push(m);
                    h = remember(&h, e, e.at, policy, true);
                }
                Plan::AddToSummary(id) => {
                    let m = pending.iter_mut().find(|m| m.id == id).expect("summary id");
                    m.events.push(e.clone());
                    h = remember(&h, e, e.at, policy, false);
                }
            }
        }
        (pending, dups)
    }

    #[test]
    fn subject_names_node_kind_and_change() {
        let (p, _) = feed(
            &[ev("failover", "passive", "active", 100)],
            &Policy::default(),
        );
        assert_eq!(p[0].subject(), "[tandem node1] failover: passive -> active");
        assert!(p[0].body().contains("Change: passive -> active"));
        assert!(p[0].body().contains("1970-01-01 00:01:40 UTC"));
    }

    #[test]
    fn event_without_states_uses_its_text() {
        let mut e = ev("split_brain", "", "", 5);
        e.text = "both nodes claim the resources\nsecond line".into();
        let (p, _) = feed(&[e], &Policy::default());
        assert_eq!(
            p[0].subject(),
            "[tandem node1] split_brain: both nodes claim the resources"
        );
    }

    #[test]
    fn calendar_date() {
        assert_eq!(
            UnixSecs(1_795_588_474).to_string(),
            "2026-11-25 06:34:34 UTC"
        );
        assert_eq!(UnixSecs(951_782_400).to_string(), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn subject_stays_on_one_line() {
        let mut e = ev("failover", "a\r\nBcc: x@y", "b", 1);
        e.node = "n\n1".into();
        let (p, _) = feed(&[e], &Policy::default());
        assert!(!p[0].subject().contains('\n'));
        assert!(!p[0].subject().contains('\r'));
    }

    #[test]
    fn exact_duplicate_is_dropped_but_a_new_time_is_not() {
        let e = ev("link", "up", "down", 10);
        let (p, dups) = feed(
            &[e.clone(), e.clone(), ev("link", "up", "down", 11)],
            &Policy::default(),
        );
        assert_eq!(dups, 1);
        assert_eq!(p.len(), 2);
    }

    #[test]
    fn flapping_becomes_one_summary_held_to_window_end() {
        let policy = Policy::default();
        let events: Vec<Event> = (0..10)
            .map(|i| {
                if i % 2 == 0 {
                    ev("peer", "up", "down", 1000 + i)
                } else {
                    ev("peer", "down", "up", 1000 + i)
                }
            })
            .collect();
        let (p, _) = feed(&events, &policy);
        assert_eq!(p.len(), 4, "three single messages and one summary");
        assert!(p[..3].iter().all(|m| !m.summary));
        assert!(p[3].summary);
        assert_eq!(p[3].events.len(), 7);
        assert_eq!(p[3].next_attempt, UnixSecs(1003 + policy.flap.window_secs));
        assert_eq!(
            p[3].subject(),
            "[tandem node1] peer flapping: 7 changes, down -> up"
        );
    }

    #[test]
    fn changes_far_apart_are_not_flapping() {
        let policy = Policy::default();
        let events: Vec<Event> = (0..10)
            .map(|i| {
                ev(
                    "peer",
                    "up",
                    "down",
                    1000 + i * (policy.flap.window_secs + 1),
                )
            })
            .collect();
        let (p, _) = feed(&events, &policy);
        assert_eq!(p.len(), 10);
        assert!(p.iter().all(|m| !m.summary));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let r = RetryPolicy {
            initial_secs: 30,
            max_secs: 3600,
        };
        assert_eq!(backoff(&r, 0), 0);
        assert_eq!(backoff(&r, 1), 30);
        assert_eq!(backoff(&r, 2), 60);
        assert_eq!(backoff(&r, 3), 120);
        assert_eq!(backoff(&r, 8), 3600);
        assert_eq!(backoff(&r, u32::MAX), 3600);
    }

    proptest! {
        /// Every distinct event ends up in exactly one message; duplicates in none twice.
        #[test]
        fn nothing_lost_nothing_doubled(
            raw in proptest::collection::vec((0u8..3, 0u8..3, 0u64..2000), 0..60)
        ) {
            let policy = Policy::default();
            let mut t = 0;
            let events: Vec<Event> = raw.iter().map(|(k, s, dt)| {
                t += dt % 300;
                ev(&format!("k{k}"), "x", &format!("s{s}"), t)
            }).collect();
            let (pending, _) = feed(&events, &policy);
            let mut uniq: Vec<&Event> = Vec::new();
            for e in &events {
                if !uniq.contains(&e) { uniq.push(e); }
            }
            for e in &uniq {
                let n: usize = pending.iter().map(|m| m.events.iter().filter(|x| x == e).count()).sum();
                prop_assert!(n >= 1, "event {e:?} lost");
                // Nothing is delivered here, so every repeat finds the first one pending.
                prop_assert_eq!(n, 1, "event {:?} queued twice", e);
            }
            let total: usize = pending.iter().map(|m| m.events.len()).sum();
            prop_assert!(total <= events.len());
            // Ids are unique.
            let mut ids: Vec<_> = pending.iter().map(|m| m.id).collect();
            ids.sort();
            ids.dedup();
            prop_assert_eq!(ids.len(), pending.len());
            // Per kind, at most one summary is pending at a time.
            for k in 0..3 {
                let kind = format!("k{k}");
                let s = pending.iter().filter(|m| m.summary && m.events[0].kind == kind).count();
                prop_assert!(s <= 1);
            }
        }

        #[test]
        fn backoff_is_monotonic_and_bounded(init in 1u64..10_000, max in 1u64..1_000_000, a in 1u32..200) {
            let r = RetryPolicy { initial_secs: init, max_secs: max };
            prop_assert!(backoff(&r, a) <= backoff(&r, a + 1));
            prop_assert!(backoff(&r, a) <= max);
        }
    }
}
