//! clusterd's event stream: every event is logged, kept in a bounded backlog for
//! `tandem events` and sent to every follower of the control API.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tandem_api::EventJson;
use tokio::sync::broadcast;

/// Events kept for `tandem events` without `--follow`.
pub const BACKLOG: usize = 256;

/// The events of one node.
#[derive(Debug)]
pub struct EventFeed {
    node: String,
    backlog: Mutex<VecDeque<EventJson>>,
    tx: broadcast::Sender<EventJson>,
}

impl EventFeed {
    /// The feed of `node` (its name as events carry it).
    #[must_use]
    pub fn new(node: &str) -> EventFeed {
        EventFeed {
            node: node.to_owned(),
            backlog: Mutex::new(VecDeque::new()),
            tx: broadcast::channel(BACKLOG).0,
        }
    }

    /// Logs `text` as an event of `kind` and sends it to every follower.
    pub fn publish(&self, kind: &str, text: String) {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        eprintln!("clusterd[{}]: {kind}: {text}", self.node);
        let e = EventJson {
            time_ms,
            node: self.node.clone(),
            kind: kind.to_string(),
            text,
        };
        if let Ok(mut b) = self.backlog.lock() {
            if b.len() == BACKLOG {
                b.pop_front();
            }
            b.push_back(e.clone());
        }
        // No follower is fine.
        let _ = self.tx.send(e);
    }

    /// The backlog, and every event from now on.
    #[must_use]
    pub fn subscribe(&self) -> (Vec<EventJson>, broadcast::Receiver<EventJson>) {
        let rx = self.tx.subscribe();
        let backlog = self
            .backlog
            .lock()
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default();
        (backlog, rx)
    }
}
