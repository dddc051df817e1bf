//! VE backups and restores on the privileged side (R12): one job at a time in the
//! background, its progress (bytes done of all, elapsed; the client works out the rate)
//! read by [`tandem_api::Request::VeBackupJob`]. A backup is copied off the pair
//! afterwards when the configuration names a target (`[backup]`); a failed copy-off
//! leaves the backup made and says why.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tandem_api::{
    JobState, Refusal, VeBackupFile, VeBackupsView, VeJobKind, VeJobReport, VeJobView,
};

use crate::error_chain;
use crate::ve::copyoff::{self, Target};
use crate::ve::snapshot::{self, Site};
use crate::ve::{freeze, restore};

/// Where the copy-off keeps its key and known-hosts files while it runs (tmpfs).
pub const COPYOFF_WORK: &str = "/run/tandem";

#[derive(Debug)]
struct Inner {
    view: VeJobView,
    started: Option<Instant>,
}

/// A job view in `state` with nothing done yet.
fn blank(state: JobState) -> VeJobView {
    VeJobView {
        state,
        kind: None,
        ve: None,
        phase: String::new(),
        bytes_done: 0,
        bytes_total: 0,
        elapsed_ms: 0,
        report: None,
    }
}

/// The one VE backup-or-restore job of this node.
#[derive(Debug, Clone)]
pub struct VeBackupJob {
    shared: Arc<Mutex<Inner>>,
}

impl Default for VeBackupJob {
    fn default() -> Self {
        VeBackupJob {
            shared: Arc::new(Mutex::new(Inner {
                view: blank(JobState::Idle),
                started: None,
            })),
        }
    }
}

/// The copy-off of a backup job: the target and the client key.
#[derive(Debug, Clone)]
pub struct CopyOff {
    /// Where to.
    pub target: Target,
    /// The node's client key (OpenSSH private key).
    pub key: String,
    /// Where its temporary files go.
    pub work: PathBuf,
    /// The sftp program.
    pub sftp: PathBuf,
}

impl CopyOff {
    /// The configuration's copy-off, if it names a target.
    #[must_use]
    pub fn of(cfg: &tandem_config::ApplianceConfig) -> Option<CopyOff> {
        cfg.backup.as_ref().map(|b| CopyOff {
            target: Target::from_config(b),
            key: cfg.keys.cluster_ssh.expose().to_owned(),
            work: PathBuf::from(COPYOFF_WORK),
            sftp: PathBuf::from(copyoff::SFTP),
        })
    }
}

impl VeBackupJob {
    /// The job as it is now.
    #[must_use]
    pub fn view(&self) -> VeJobView {
        match self.shared.lock() {
            Ok(g) => {
                let mut v = g.view.clone();
                if v.state == JobState::Running
                    && let Some(s) = g.started
                {
                    v.elapsed_ms = u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX);
                }
                v
            }
            Err(_) => blank(JobState::Failed {
                error: "the job's state was lost".into(),
            }),
        }
    }

    /// Whether one runs.
    #[must_use]
    pub fn running(&self) -> bool {
        self.view().state == JobState::Running
    }

    fn begin(&self, kind: VeJobKind, ve: Option<u32>) -> Result<(), Refusal> {
        let mut g = self
            .shared
            .lock()
            .map_err(|_| Refusal::Failed("the VE job's state was lost".into()))?;
        if g.view.state == JobState::Running {
            let what = match g.view.kind {
                Some(VeJobKind::Restore) => "restore",
                _ => "backup",
            };
            return Err(Refusal::Failed(format!(
                "a VE {what} is running already{}: wait for it to end (tandem ve backups shows it)",
                g.view.ve.map(|v| format!(" (VE {v})")).unwrap_or_default()
            )));
        }
        g.view = VeJobView {
            kind: Some(kind),
            ve,
            phase: "starting".into(),
            ..blank(JobState::Running)
        };
        g.started = Some(Instant::now());
        Ok(())
    }

    fn update(&self, f: impl FnOnce(&mut VeJobView)) {
        if let Ok(mut g) = self.shared.lock() {
            f(&mut g.view);
        }
    }

    fn end(&self, r: Result<VeJobReport, String>) {
        if let Ok(mut g) = self.shared.lock() {
            g.view.elapsed_ms = g
                .started
                .map_or(0, |s| u64::try_from(s.elapsed().as_millis()).unwrap_or(0));
            g.view.phase = "done".into();
            match r {
                Ok(rep) => {
                    g.view.state = JobState::Succeeded;
                    g.view.report = Some(rep);
                }
                Err(error) => g.view.state = JobState::Failed { error },
            }
        }
    }

    /// Starts backing up VE `id` of `site`, then copying it off with `copy`.
    ///
    /// # Errors
    /// One runs already; the data area is not here; the VE does not exist; no thread.
    pub fn start_backup(&self, site: Site, id: u32, copy: Option<CopyOff>) -> Result<(), Refusal> {
        site.check_mounted().map_err(|_| Refusal::NoDataArea)?;
        if !site.conf(id).exists() {
            return Err(Refusal::Failed(format!(
                "VE {id} does not exist (tandem ve list shows the VEs); nothing was done"
            )));
        }
        self.begin(VeJobKind::Backup, Some(id))?;
        let job = self.clone();
        let started = super::start_thread("ve-backup", "the VE backup", move || {
            let r = run_backup(&job, &site, id, copy.as_ref());
            job.end(r);
        });
        if let Err(e) = &started {
            self.end(Err(e.to_string()));
        }
        started
    }

    /// Starts restoring `file` to `to` (default: the backup's VE).
    ///
    /// # Errors
    /// One runs already; the data area is not here; no thread.
    pub fn start_restore(
        &self,
        site: Site,
        file: PathBuf,
        to: Option<u32>,
        running: Arc<dyn Fn(u32) -> bool + Send + Sync>,
    ) -> Result<(), Refusal> {
        site.check_mounted().map_err(|_| Refusal::NoDataArea)?;
        self.begin(VeJobKind::Restore, to)?;
        let job = self.clone();
        let started = super::start_thread("ve-restore", "the VE restore", move || {
            job.update(|v| v.phase = "checking and unpacking".into());
            let r = restore::restore(&site, &file, to, &*running, &mut |done, total| {
                job.update(|v| {
                    v.bytes_done = done;
                    v.bytes_total = total;
                });
            });
            job.end(
                r.map(|d| VeJobReport {
                    file: file.display().to_string(),
                    file_bytes: std::fs::metadata(&file).map_or(0, |m| m.len()),
                    files: d.manifest.total_files,
                    data_bytes: d.manifest.total_bytes,
                    restored_to: Some(d.id),
                    addresses_removed: d.addresses_removed,
                    ..VeJobReport::default()
                })
                .map_err(|e| error_chain(&e)),
            );
        });
        if let Err(e) = &started {
            self.end(Err(e.to_string()));
        }
        started
    }
}

fn run_backup(
    job: &VeBackupJob,
    site: &Site,
    id: u32,
    copy: Option<&CopyOff>,
) -> Result<VeJobReport, String> {
    job.update(|v| v.phase = "reading (VE frozen)".into());
    let made = snapshot::make(site, id, &mut |done, total| {
        job.update(|v| {
            v.bytes_done = done;
            v.bytes_total = total;
        });
    })
    .map_err(|e| error_chain(&e))?;
    let mut report = VeJobReport {
        file: made.file.display().to_string(),
        file_bytes: made.bytes,
        files: made.manifest.total_files,
        data_bytes: made.manifest.total_bytes,
        freeze_us: made
            .freeze
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        skipped: made.manifest.skipped.clone(),
        ..VeJobReport::default()
    };
    if let Some(c) = copy {
        job.update(|v| v.phase = format!("copying off to {}", c.target.describe()));
        match copyoff::copy_off(&c.target, &c.key, &made.file, &c.work, &c.sftp) {
            Ok(done) => {
                report.copied_to = Some(done.to);
                report.deleted_on_target = done.deleted;
            }
            Err(e) => report.copy_error = Some(error_chain(&e)),
        }
    }
    Ok(report)
}

/// Deletes VE `id`'s backups in `site` but the newest `keep` (each file with its
/// copy-off note); the names deleted, oldest first.
///
/// # Errors
/// No data area here, `keep` is 0, or a file cannot be deleted (those before it are).
pub fn prune(site: &Site, id: u32, keep: u32) -> Result<Vec<String>, Refusal> {
    if keep == 0 {
        return Err(Refusal::Failed(
            "at least one backup of a VE stays (keep 1 or more); nothing was deleted".into(),
        ));
    }
    site.check_mounted().map_err(|_| Refusal::NoDataArea)?;
    let files = snapshot::list(&site.backup_dir)
        .map_err(|e| Refusal::Failed(format!("reading {}: {e}", site.backup_dir.display())))?;
    let mine: Vec<_> = files.into_iter().filter(|l| l.ve == id).collect();
    let excess = mine.len().saturating_sub(keep as usize);
    let mut deleted = Vec::new();
    for l in mine.into_iter().take(excess) {
        let path = site.backup_dir.join(&l.name);
        std::fs::remove_file(&path).map_err(|e| {
            Refusal::Failed(format!(
                "deleting {}: {e}; deleted before it: {}",
                path.display(),
                if deleted.is_empty() {
                    "none".to_owned()
                } else {
                    deleted.join(", ")
                }
            ))
        })?;
        let _ = std::fs::remove_file(snapshot::copied_marker(&site.backup_dir, &l.name));
        deleted.push(l.name);
    }
    Ok(deleted)
}

/// The backups of `site` with their copy-off state.
///
/// # Errors
/// The data area is not here, or the directory cannot be read.
pub fn list(site: &Site, cfg: &tandem_config::ApplianceConfig) -> Result<VeBackupsView, Refusal> {
    site.check_mounted().map_err(|_| Refusal::NoDataArea)?;
    let files = snapshot::list(&site.backup_dir)
        .map_err(|e| Refusal::Failed(format!("reading {}: {e}", site.backup_dir.display())))?;
    Ok(VeBackupsView {
        dir: site.backup_dir.display().to_string(),
        files: files
            .into_iter()
            .map(|l| VeBackupFile {
                name: l.name,
                ve: l.ve,
                time: l.stamp,
                bytes: l.bytes,
                copied_to: l.copied_to,
            })
            .collect(),
        target: cfg
            .backup
            .as_ref()
            .map(|b| Target::from_config(b).describe()),
        client_key: cfg.keys.cluster_ssh.public_key(),
    })
}

/// Whether VE `id` runs: crun knows it as running, or its cgroup holds processes.
#[must_use]
pub fn running_check(site: &Site) -> Arc<dyn Fn(u32) -> bool + Send + Sync> {
    use crate::ve::manager::{Layout, Ves};
    let mut layout = Layout::node(Vec::new());
    layout.conf_dir.clone_from(&site.conf_dir);
    layout.private_dir.clone_from(&site.private_dir);
    let ves = Ves { layout };
    let site = site.clone();
    Arc::new(move |id| ves.is_running(id) || freeze::has_processes(&site.cgroup(id)))
}

/// The backup site of a VE site.
#[must_use]
pub fn site_of(ve: &super::ve::VeSite) -> Site {
    Site {
        data_mount: ve.data_mount.clone(),
        conf_dir: ve.conf_dir.clone(),
        private_dir: ve.private_dir.clone(),
        backup_dir: ve.ve_backup_dir.clone(),
        cgroup_root: freeze::cgroup2_root(),
    }
}

/// A backup file as the request names it: a bare name in the backup directory, or
/// (`any_path`: root on the node) an absolute path.
///
/// # Errors
/// A relative path with a directory in it; a path from a session.
pub fn backup_file(site: &Site, file: &str, any_path: bool) -> Result<PathBuf, Refusal> {
    let p = Path::new(file);
    if p.is_absolute() && any_path {
        return Ok(p.to_owned());
    }
    if file.contains('/') || file.is_empty() || file == "." || file == ".." {
        return Err(Refusal::Failed(format!(
            "{file:?}: name a backup file of {} (root on the node may give an absolute path); nothing was done",
            site.backup_dir.display()
        )));
    }
    Ok(site.backup_dir.join(file))
}
