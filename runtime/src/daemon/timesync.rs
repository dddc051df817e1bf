//! The node's clock: chronyd's report every [`EVERY`] as a line in the status, and
//! the "clock unsynchronised" alert of [`tandem_core::ClockWatch`] (reported once when
//! the clock has not been synchronised for its grace time, and again when it is back).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_core::{ClockAlert, ClockWatch};

use super::clock::Clock;
use super::hub::EventHub;
use crate::alerts::Alert;
use crate::chrony::{NO_SERVERS, ask_tracking};
use crate::settings::TimeSync;

/// How often chronyd is asked.
pub const EVERY: Duration = Duration::from_secs(30);
/// After a change of the time servers, how long chronyd is given to start again
/// before it is asked.
const AFTER_CHANGE: Duration = Duration::from_secs(5);

/// The clock's line in the status, and where a change of the time servers is told.
pub(super) struct TimeWatch {
    /// The status line.
    pub(super) line: Arc<Mutex<Option<String>>>,
    /// The configured time servers (`network.ntp-servers`), as they change.
    pub(super) servers: tokio::sync::watch::Sender<Vec<String>>,
}

/// Starts watching the clock as `setup` says; returns the status line it keeps and
/// the sender by which a change of the time servers reaches it.
pub(super) fn watch(setup: Option<TimeSync>, hub: &Arc<EventHub>) -> TimeWatch {
    let line = Arc::new(Mutex::new(None::<String>));
    let (servers, mut rx) = tokio::sync::watch::channel(
        setup
            .as_ref()
            .map(|s| s.servers.clone())
            .unwrap_or_default(),
    );
    let watch = TimeWatch {
        line: Arc::clone(&line),
        servers,
    };
    let Some(setup) = setup else {
        return watch;
    };
    let (hub, kept) = (Arc::clone(hub), line);
    tokio::spawn(async move {
        let clock = Clock::start();
        let mut watch = ClockWatch::new();
        loop {
            let configured = rx.borrow_and_update().clone();
            if configured.is_empty() {
                if let Ok(mut l) = kept.lock() {
                    *l = Some(NO_SERVERS.to_owned());
                }
                // Nothing to watch until time servers are configured again.
                watch = ClockWatch::new();
                if rx.changed().await.is_err() {
                    return;
                }
                tokio::time::sleep(AFTER_CHANGE).await;
                continue;
            }
            let servers = configured.join(", ");
            let s = setup.clone();
            let report =
                tokio::task::spawn_blocking(move || ask_tracking(&s.chronyc, &s.socket)).await;
            let Ok(report) = report else { return };
            let (text, synced) = match report {
                Ok(t) => (t.line(), t.synchronised()),
                Err(e) => (format!("not synchronised: {e}"), false),
            };
            if let Ok(mut l) = kept.lock() {
                *l = Some(text.clone());
            }
            watch.handle(clock.now(), synced);
            match watch.poll_output() {
                Some(ClockAlert::Unsynchronised { .. }) => hub.alert(
                    "clock",
                    format!(
                        "the clock has not been synchronised for {} min ({text}); time servers {servers}: check that they answer and that the firewall lets NTP (UDP 123) out",
                        ClockWatch::GRACE.as_secs() / 60
                    ),
                    &Alert::Clock {
                        old: "synchronised".into(),
                        new: "unsynchronised".into(),
                    },
                ),
                Some(ClockAlert::Synchronised) => hub.alert(
                    "clock",
                    format!("the clock is synchronised again: {text}"),
                    &Alert::Clock {
                        old: "unsynchronised".into(),
                        new: "synchronised".into(),
                    },
                ),
                None => {}
            }
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                changed = rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tokio::time::sleep(AFTER_CHANGE).await;
                }
            }
        }
    });
    watch
}
