//! The daily VE backup (`backup.schedule`): [`tandem_core::BackupSchedule`] decides
//! when a run is due on this node (the one active at the time), and
//! [`crate::ve::scheduled::run_once`] makes it through the control plane. The schedule
//! is read from the committed configuration at every wake-up: when a change is put in
//! effect, at the time of day, and at most an hour apart (a clock stepped meanwhile);
//! while the day's run is open on a node that does not run the services, once a
//! minute (it may take them over within the grace). A failed run is alerted (kind
//! `backup`); a good one is an event.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_core::BackupSchedule;
use tokio::sync::{mpsc, watch};

use super::In;
use super::config::committed_config;
use super::control::status_now;
use super::hub::EventHub;
use crate::alerts::Alert;
use crate::confsync::SyncSetup;
use crate::control::Service;

/// The sleep between two looks at the role while the day's run is open.
const OPEN_LOOK: Duration = Duration::from_secs(60);

/// The longest sleep otherwise.
const AT_MOST: Duration = Duration::from_secs(3600);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Sleeps `wait`, or less when a configuration change is put in effect
/// (`changes`: the loop that sends them still runs); returns whether it still does.
async fn pause(wait: Duration, config: &mut watch::Receiver<u64>, changes: bool) -> bool {
    if !changes {
        tokio::time::sleep(wait).await;
        return false;
    }
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        r = config.changed() => r.is_ok(),
    }
}

/// Starts the schedule's task (with a configuration store: the schedule is part of
/// the committed configuration).
pub(super) fn start(
    sync: Option<SyncSetup>,
    service: Arc<Service>,
    tx: mpsc::Sender<In>,
    hub: Arc<EventHub>,
    mut config: watch::Receiver<u64>,
) {
    let Some(sync) = sync else { return };
    tokio::spawn(async move {
        let mut schedule: Option<(u32, BackupSchedule)> = None;
        let mut changes = true;
        loop {
            let s = sync.clone();
            let cfg = tokio::task::spawn_blocking(move || committed_config(&s)).await;
            let backup = match cfg {
                Ok(Ok(c)) => c.backup,
                _ => None,
            };
            let Some((b, at)) = backup.and_then(|b| b.schedule.map(|t| (b, t.seconds()))) else {
                schedule = None;
                changes = pause(AT_MOST, &mut config, changes).await;
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
                OPEN_LOOK
            } else {
                Duration::from_secs(next - now).min(AT_MOST)
            };
            changes = pause(wait, &mut config, changes).await;
        }
    });
}
