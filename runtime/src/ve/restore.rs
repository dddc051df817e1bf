//! Restoring a VE from a backup file (R12), on the active node: to the VE it was made
//! of (stopped: refused while it runs) or to a new VE ID.
//!
//! Nothing is written before the manifest was read and checked, the target chosen and
//! the free space found enough. The file is then read whole by
//! [`super::archive::read_backup`] — every member checked against the manifest —
//! into a staging directory beside the root filesystems (`/vz/private/.restore-<ID>`);
//! only when all of it checked out is the root filesystem renamed into place and the
//! VE file written. On any refusal or failure the staging directory is removed and the
//! existing VE is untouched.
//!
//! A restore to a new ID gets the backup's VE file without its addresses
//! (`IP_ADDRESS=""`) and with `ONBOOT="no"`: the original VE may still use them.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::archive::{self, CONF_NAME, Manifest, PRIVATE_NAME, ReadError};
use super::conf::VeFile;
use super::snapshot::{Site, SiteError};

/// Why a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// Not mounted, busy.
    #[error(transparent)]
    Site(#[from] SiteError),
    /// The backup file cannot be opened.
    #[error("opening the backup {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file was refused; nothing was written.
    #[error("{} was refused, nothing was written", path.display())]
    Bad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ReadError,
    },
    /// The target VE runs.
    #[error("VE {0} is running: stop it first (tandem ve stop {0}); nothing was written")]
    Running(u32),
    /// A restore to a new ID whose VE exists.
    #[error(
        "VE {0} exists already: restore to a free ID with --to, or to VE {0} itself from one of its own backups; nothing was written"
    )]
    Exists(u32),
    /// Not enough room.
    #[error(
        "the backup needs {need} bytes, only {free} are free in {}; nothing was written",
        dir.display()
    )]
    NoSpace {
        /// Bytes needed.
        need: u64,
        /// Bytes free.
        free: u64,
        /// Where.
        dir: PathBuf,
    },
    /// An ID that no VE may have.
    #[error("{0} is not a VE ID for a restore (expected 1 to 2147483647); nothing was written")]
    BadId(u32),
    /// Putting the checked copy in place failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A finished restore.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The VE restored to.
    pub id: u32,
    /// The backup's manifest.
    pub manifest: Manifest,
    /// An existing root filesystem was replaced.
    pub replaced: bool,
    /// The addresses were removed (a new ID).
    pub addresses_removed: bool,
    /// The whole run.
    pub elapsed: Duration,
}

/// Restores the backup `file` to `to` (default: the VE it was made of);
/// `running(id)` says whether a VE runs; `progress(done, total)` hears the bytes.
///
/// # Errors
/// See [`RestoreError`]; in every case the target VE is as it was.
pub fn restore(
    site: &Site,
    file: &Path,
    to: Option<u32>,
    running: &dyn Fn(u32) -> bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Restored, RestoreError> {
    let started = Instant::now();
    site.check_mounted()?;
    let open = || {
        File::open(file).map_err(|source| RestoreError::Open {
            path: file.to_owned(),
            source,
        })
    };
    let bad = |source| RestoreError::Bad {
        path: file.to_owned(),
        source,
    };
    let manifest = archive::read_manifest(open()?).map_err(bad)?;
    let id = to.unwrap_or(manifest.ve_id);
    if !(1..=0x7fff_ffff).contains(&id) {
        return Err(RestoreError::BadId(id));
    }
    if running(id) {
        return Err(RestoreError::Running(id));
    }
    let same = id == manifest.ve_id;
    if !same && (site.conf(id).exists() || site.private(id).exists()) {
        return Err(RestoreError::Exists(id));
    }
    let need = manifest
        .total_bytes
        .saturating_add(manifest.members.len() as u64 * 4096);
    let free = super::free_bytes(&site.private_dir);
    if need > free {
        return Err(RestoreError::NoSpace {
            need,
            free,
            dir: site.private_dir.clone(),
        });
    }
    let _lock = site.lock()?;
    let staging = site.private_dir.join(format!(".restore-{id}"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&site.private_dir).map_err(io_err("creating", &site.private_dir))?;
    let r = unpack(site, id, same, &manifest, &staging, &open, &bad, progress);
    let _ = std::fs::remove_dir_all(&staging);
    let (replaced, addresses_removed) = r?;
    Ok(Restored {
        id,
        manifest,
        replaced,
        addresses_removed,
        elapsed: started.elapsed(),
    })
}

#[allow(clippy::too_many_arguments)]
fn unpack(
    site: &Site,
    id: u32,
    same: bool,
    manifest: &Manifest,
    staging: &Path,
    open: &dyn Fn() -> Result<File, RestoreError>,
    bad: &dyn Fn(ReadError) -> RestoreError,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(bool, bool), RestoreError> {
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(staging)
            .map_err(io_err("creating", staging))?;
    }
    let total = manifest.total_bytes;
    let staged = staging.to_owned();
    archive::read_backup(
        open()?,
        &mut |m| {
            if m == manifest {
                Ok(Some(staged.clone()))
            } else {
                Err(ReadError::Refused(
                    "the file changed while it was read".into(),
                ))
            }
        },
        &mut |done| progress(done, total),
    )
    .map_err(bad)?;
    // What was unpacked is on disk before it is put in place.
    File::open(staging)
        .and_then(|d| rustix::fs::syncfs(&d).map_err(io::Error::from))
        .map_err(io_err("syncing", staging))?;
    // The VE file: checked before anything is put in place.
    let conf_path = staging.join(CONF_NAME);
    let mut text = std::fs::read_to_string(&conf_path).map_err(io_err("reading", &conf_path))?;
    let mut addresses_removed = false;
    if !same {
        addresses_removed = text
            .lines()
            .any(|l| l.trim_start().starts_with("IP_ADDRESS=") && !l.contains("IP_ADDRESS=\"\""));
        text = super::manager::set_keys(
            &text,
            &[("IP_ADDRESS", String::new()), ("ONBOOT", "no".into())],
        );
    }
    if let Err(problems) = VeFile::parse(&text) {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(bad(ReadError::Refused(format!(
            "its VE file has problems: {}",
            list.join("; ")
        ))));
    }
    // Into place: the old root filesystem aside, the new one in, the file written,
    // the old one removed. A failure puts the old one back.
    let target = site.private(id);
    let aside = site.private_dir.join(format!(".replaced-{id}"));
    let _ = std::fs::remove_dir_all(&aside);
    let replaced = target.exists();
    if replaced {
        std::fs::rename(&target, &aside).map_err(io_err("moving aside", &target))?;
    }
    let undo = |e: RestoreError| {
        if replaced {
            let _ = std::fs::remove_dir_all(&target);
            let _ = std::fs::rename(&aside, &target);
        }
        e
    };
    // The restored files are given the VE's user IDs at its next start.
    let _ = std::fs::remove_file(super::idmap::marker(&site.private_dir, id));
    std::fs::rename(staging.join(PRIVATE_NAME), &target)
        .map_err(io_err("moving into place", &target))
        .map_err(undo)?;
    let conf = site.conf(id);
    crate::write_atomic(&conf, text.as_bytes(), 0o644)
        .map_err(io_err("writing", &conf))
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&target);
            undo(e)
        })?;
    File::open(&site.private_dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", &site.private_dir))?;
    if replaced {
        let _ = std::fs::remove_dir_all(&aside);
    }
    Ok((replaced, addresses_removed))
}

/// The error of `op` on `path` failing with an I/O error (for `map_err`).
fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RestoreError {
    let path = path.to_owned();
    move |source| RestoreError::Io { op, path, source }
}
