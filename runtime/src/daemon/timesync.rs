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

/// Starts watching the clock as `setup` says; returns the status line it keeps.
pub(super) fn watch(setup: Option<TimeSync>, hub: &Arc<EventHub>) -> Arc<Mutex<Option<String>>> {
    let line = Arc::new(Mutex::new(None::<String>));
    let Some(setup) = setup else {
        return line;
    };
    if setup.servers.is_empty() {
        if let Ok(mut l) = line.lock() {
            *l = Some(NO_SERVERS.to_owned());
        }
        return line;
    }
    let (hub, kept) = (Arc::clone(hub), Arc::clone(&line));
    tokio::spawn(async move {
        let clock = Clock::start();
        let mut watch = ClockWatch::new();
        let servers = setup.servers.join(", ");
        loop {
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
            tokio::time::sleep(EVERY).await;
        }
    });
    line
}
