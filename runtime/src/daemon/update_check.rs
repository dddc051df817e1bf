//! The daily question to the update server (`[updates]`, R8.2):
//! [`tandem_core::UpdateCheck`] decides when, [`crate::admin::update::UpdateJob`]
//! asks and keeps the answer for the Updates page and `tandem update status`. A newer
//! version is alerted once (mail kind `update available`), by the node that runs the
//! services so the pair sends one mail. No server configured (an example address):
//! nothing is asked. The configuration is read again before each check.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_core::UpdateCheck;
use tokio::sync::mpsc;

use super::In;
use super::config::committed_config;
use super::control::status_now;
use super::hub::EventHub;
use crate::admin::update::UpdateJob;
use crate::alerts::Alert;
use crate::confsync::SyncSetup;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The longest sleep: a clock stepped forward is noticed within it.
const AT_MOST: u64 = 3600;

/// Starts the check's task (with a configuration store: the server is part of the
/// committed configuration).
pub(super) fn start(
    sync: Option<SyncSetup>,
    job: UpdateJob,
    tx: mpsc::Sender<In>,
    hub: Arc<EventHub>,
) {
    let Some(sync) = sync else { return };
    tokio::spawn(async move {
        let mut check = UpdateCheck::new(unix_now());
        loop {
            let now = unix_now();
            if !check.due(now) {
                let wait = check.next().saturating_sub(now).clamp(1, AT_MOST);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let s = sync.clone();
            let j = job.clone();
            let asked = tokio::task::spawn_blocking(move || {
                let cfg = committed_config(&s).ok()?;
                j.check_server(&cfg.updates)
            })
            .await
            .ok()
            .flatten();
            let ok = !matches!(asked, Some(Err(_)));
            check.checked(unix_now(), ok);
            match asked {
                Some(Ok(Some(offer))) => {
                    let active = status_now(&tx).await.is_some_and(|s| s.role == "active");
                    if active && check.alert(&offer.version) {
                        let running = job.updater.running_version();
                        hub.alert(
                            "update",
                            format!(
                                "update available: {} (running {running}); install it with `tandem update rolling` (see the Updates page)",
                                offer.version
                            ),
                            &Alert::UpdateAvailable {
                                running,
                                offered: offer.version,
                            },
                        );
                    }
                }
                Some(Err(e)) => hub.publish("update", format!("update server: {e}")),
                Some(Ok(None)) | None => {}
            }
        }
    });
}
