//! One run of the daily VE backup (`backup.schedule`, R12), as requests to clusterd's
//! control plane as root (the same road as `tandem ve backup`): for each VE of
//! `backup.ves` (or, without it, each VE on the data area) whose newest backup is
//! older than the day's time, a backup (frozen while read, then copied off to the
//! target), one after the other; then each of those VEs' backups on the data area
//! but the newest `backup.keep-local` are deleted. When a run is due is decided by
//! [`tandem_core::BackupSchedule`].

use std::sync::Arc;
use std::time::Duration;

use tandem_api::wire::RequestLine;
use tandem_api::{JobState, Refusal, Reply, Request};
use tandem_config::schema::BackupConfig;

use crate::control::{Handled, Service};

/// How long a run waits for a backup someone else started before it gives up on a VE.
const BUSY_WAIT: Duration = Duration::from_secs(30 * 60);
/// How often a running backup is asked about.
const POLL: Duration = Duration::from_millis(500);

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Backups made: VE, file, where it was copied off to.
    pub made: Vec<(u32, String, Option<String>)>,
    /// VEs with a backup from after the day's time already.
    pub current: Vec<u32>,
    /// VEs that failed: VE, why (a backup made but not copied off counts here too).
    pub failed: Vec<(u32, String)>,
    /// Backup files deleted from the data area (`keep-local`).
    pub pruned: Vec<String>,
}

impl RunReport {
    /// One line for the events.
    #[must_use]
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        for (id, file, to) in &self.made {
            parts.push(match to {
                Some(t) => format!("VE {id}: {file}, copied off to {t}"),
                None => format!("VE {id}: {file}"),
            });
        }
        if !self.current.is_empty() {
            parts.push(format!(
                "already backed up today: VE {}",
                self.current
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for (id, why) in &self.failed {
            parts.push(format!("VE {id} FAILED: {why}"));
        }
        if !self.pruned.is_empty() {
            parts.push(format!(
                "deleted from the data area (keep-local): {}",
                self.pruned.join(", ")
            ));
        }
        if parts.is_empty() {
            "no VE to back up".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// `request`'s answer from `service`, asked as root on this node.
pub(crate) async fn ask(service: &Arc<Service>, request: Request) -> Reply {
    let line = RequestLine {
        version: tandem_api::API_VERSION,
        token: None,
        payload: 0,
        request,
    };
    match service.handle(0, line, Vec::new()).await {
        Handled::One(r, _) => r,
        Handled::Events { .. } => Reply::Refused(Refusal::Failed("unexpected event stream".into())),
    }
}

fn refusal(r: &Reply) -> String {
    match r {
        Reply::Refused(r) => r.to_string(),
        other => format!("unexpected answer {other:?}"),
    }
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time (as backup file names carry it).
fn stamp(unix: u64) -> String {
    tandem_config::archive::rfc3339(unix).replace(['-', ':'], "")
}

/// Backs up, one after the other, the VEs of `b` (every VE on the data area when it
/// names none) whose newest backup is older than `slot` (Unix seconds), then prunes
/// their backups on the data area to `b.keep_local`.
pub async fn run_once(service: &Arc<Service>, b: &BackupConfig, slot: u64) -> RunReport {
    let mut report = RunReport::default();
    let ves: Vec<u32> = if b.ves.is_empty() {
        match ask(service, Request::VeList).await {
            Reply::Ves(rows) => rows.iter().map(|r| r.id).collect(),
            other => {
                report
                    .failed
                    .push((0, format!("listing the VEs: {}", refusal(&other))));
                return report;
            }
        }
    } else {
        b.ves.clone()
    };
    let since = stamp(slot);
    let newest = |files: &[tandem_api::VeBackupFile], id: u32| {
        files
            .iter()
            .filter(|f| f.ve == id)
            .map(|f| f.time.clone())
            .max()
    };
    let existing = match ask(service, Request::VeBackups).await {
        Reply::VeBackups(v) => v.files,
        other => {
            report
                .failed
                .push((0, format!("listing the backups: {}", refusal(&other))));
            return report;
        }
    };
    for id in ves {
        if newest(&existing, id).is_some_and(|t| t >= since) {
            report.current.push(id);
        } else {
            match backup(service, id).await {
                Ok((file, to, copy_error)) => {
                    if let Some(e) = copy_error {
                        report
                            .failed
                            .push((id, format!("{file} made but not copied off: {e}")));
                    }
                    report.made.push((id, file, to));
                }
                Err(e) => {
                    report.failed.push((id, e));
                    continue;
                }
            }
        }
        match ask(
            service,
            Request::VeBackupsPrune {
                id,
                keep: b.keep_local,
            },
        )
        .await
        {
            Reply::VeBackupsPruned(names) => report.pruned.extend(names),
            other => report
                .failed
                .push((id, format!("deleting old backups: {}", refusal(&other)))),
        }
    }
    report
}

/// One backup through the control plane, waiting for a job of someone else first:
/// the file, where it went, why it did not.
async fn backup(
    service: &Arc<Service>,
    id: u32,
) -> Result<(String, Option<String>, Option<String>), String> {
    // A backup or restore someone else started runs to its end first (the job's
    // own state says so; one job runs at a time).
    let started = std::time::Instant::now();
    while let Reply::VeJob(v) = ask(service, Request::VeBackupJob).await
        && v.state == JobState::Running
        && started.elapsed() < BUSY_WAIT
    {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    match ask(service, Request::VeBackup { id }).await {
        Reply::VeJobStarted => {}
        other => return Err(refusal(&other)),
    }
    loop {
        tokio::time::sleep(POLL).await;
        let Reply::VeJob(v) = ask(service, Request::VeBackupJob).await else {
            return Err("clusterd did not say how the backup went".into());
        };
        match v.state {
            JobState::Running => {}
            JobState::Failed { error } => return Err(error),
            _ => {
                let r = v.report.unwrap_or_default();
                let name = std::path::Path::new(&r.file)
                    .file_name()
                    .map_or_else(|| r.file.clone(), |n| n.to_string_lossy().into_owned());
                return Ok((name, r.copied_to, r.copy_error));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_sort_as_the_file_names_do() {
        assert_eq!(stamp(1_796_610_600), "20261207T023000Z");
        assert!(stamp(1_796_610_600) < stamp(1_796_610_601));
    }

    #[test]
    fn the_report_says_each_outcome() {
        let r = RunReport {
            made: vec![(101, "ve-101-20261207T023001Z.tar.zst".into(), None)],
            current: vec![102],
            failed: vec![(103, "VE 103 does not exist".into())],
            pruned: vec!["ve-101-20261205T023001Z.tar.zst".into()],
        };
        assert_eq!(
            r.text(),
            "VE 101: ve-101-20261207T023001Z.tar.zst; already backed up today: VE 102; VE 103 FAILED: VE 103 does not exist; deleted from the data area (keep-local): ve-101-20261205T023001Z.tar.zst"
        );
        assert_eq!(RunReport::default().text(), "no VE to back up");
    }
}
