//! The daily VE backup (`backup.schedule`): [`tandem_core::BackupSchedule`] decides
//! when a run is due on this node (the one active at the time), and
//! [`crate::ve::scheduled::run_once`] makes it through the control plane. The schedule
//! is read from the committed configuration at every wake-up (at most a minute apart),
//! so a change takes effect without a restart. A failed run is alerted (kind
//! `backup`); a good one is an event.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_core::BackupSchedule;
use tokio::sync::mpsc;

use super::In;
use super::config::committed_config;
use super::control::status_now;
use super::hub::EventHub;
use crate::alerts::Alert;
use crate::confsync::SyncSetup;
use crate::control::Service;

/// The longest sleep between two looks at the configuration and the role.
const AT_MOST: Duration = Duration::from_secs(60);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Starts the schedule's task (with a configuration store: the schedule is part of
/// the committed configuration).
pub(super) fn start(
    sync: Option<SyncSetup>,
    service: Arc<Service>,
    tx: mpsc::Sender<In>,
    hub: Arc<EventHub>,
) {
    let Some(sync) = sync else { return };
    tokio::spawn(async move {
        let mut schedule: Option<(u32, BackupSchedule)> = None;
        loop {
            let s = sync.clone();
            let cfg = tokio::task::spawn_blocking(move || committed_config(&s)).await;
            let backup = match cfg {
                Ok(Ok(c)) => c.backup,
                _ => None,
            };
            let Some((b, at)) = backup.and_then(|b| b.schedule.map(|t| (b, t.seconds()))) else {
                schedule = None;
                tokio::time::sleep(AT_MOST).await;
                continue;
            };
            let sched = match &mut schedule {
                Some((a, s)) if *a == at => s,
                _ => &mut schedule.insert((at, BackupSchedule::new(at))).1,
            };
            let now = unix_now();
            let active = status_now(&tx).await.is_some_and(|s| s.role == "active");
            if let Some(slot) = sched.poll(now, active) {
                let report = crate::ve::scheduled::run_once(&service, &b, slot).await;
                let text = format!("scheduled backup: {}", report.text());
                if report.failed.is_empty() {
                    hub.publish("backup", text);
                } else {
                    hub.alert(
                        "backup",
                        format!("{text}; the VEs named have no new backup off the pair: check the target and `tandem ve backups`"),
                        &Alert::Backup,
                    );
                }
                continue;
            }
            let next = sched.next_poll(now);
            let wait = if next <= now {
                AT_MOST
            } else {
                Duration::from_secs(next - now).min(AT_MOST)
            };
            tokio::time::sleep(wait).await;
        }
    });
}
