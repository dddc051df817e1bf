//! Backup of the OS template cache (R9.8): every template file of the data area
//! (`/vz/template/NAME.tar`, `.tar.gz`, `.tar.xz`, `.tar.zst`) copied into
//! `/vz/backups/templatecache/`.
//!
//! Each copy is written to a temporary file beside its place (`.NAME.partial`), synced,
//! renamed into place and the directory synced: a crash or a full disk leaves the old
//! backup or the new one, never a mix, and a failed copy removes its temporary file. A
//! backup that is already identical (same size and SHA-256) is left alone; a changed one
//! is replaced. The first failure stops the run: the copies made before it are complete.
//!
//! Runs only where the data area is mounted (the active node); on the passive node it
//! refuses before it reads or writes anything. One backup at a time (a lock on the
//! backup directory); temporary files a crash left behind are removed by the next run.
//!
//! Not done: the built-in template `tandem-minimal` has no file (it is made from the
//! node's own busybox) and needs no backup, so it is not listed; backups of templates
//! that were removed from the template directory are kept; nothing is restored from
//! the backup automatically (copy a file back to `/vz/template` to use it again).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::manager::template_files;

/// Where the backups go, inside the data area.
pub const BACKUP_SUBDIR: &str = "backups/templatecache";

/// The template cache of a data area and where it is backed up.
#[derive(Debug, Clone)]
pub struct TemplateBackup {
    /// Mount point of the data area: the backup runs only while it is mounted here.
    pub data_mount: PathBuf,
    /// OS templates (`NAME.tar`, `.tar.gz`, `.tar.xz`, `.tar.zst`).
    pub template_dir: PathBuf,
    /// The backups.
    pub backup_dir: PathBuf,
}

pub use tandem_api::{CopyOutcome, TemplateCopy};

/// A finished backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// Where the backups are.
    pub backup_dir: PathBuf,
    /// Every template file, by name; empty when there are none.
    pub copies: Vec<TemplateCopy>,
}

impl BackupReport {
    /// The size of all templates.
    #[must_use]
    pub fn total_bytes(&self) -> u64 {
        self.copies.iter().map(|c| c.bytes).sum()
    }

    /// How many templates had `outcome`.
    #[must_use]
    pub fn count(&self, outcome: CopyOutcome) -> usize {
        self.copies.iter().filter(|c| c.outcome == outcome).count()
    }
}

/// Why the backup did not run, or where it stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The data area is not mounted here: this is the passive node.
    #[error(
        "the data area {} is not mounted on this node: it is on the other node (the active one); start the template-cache backup there",
        data.display()
    )]
    NotMounted {
        /// The data area's mount point.
        data: PathBuf,
    },
    /// Another backup runs.
    #[error("another backup of the template cache is running in {}; wait for it to end", dir.display())]
    Busy {
        /// The backup directory.
        dir: PathBuf,
    },
    /// The template directory or the backup directory.
    #[error("{op} {}", path.display())]
    Io {
        /// What was done.
        op: &'static str,
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// One template; its temporary copy is removed, its old backup (if any) is kept.
    #[error("backing up {file}: {op} {}", path.display())]
    Template {
        /// The template's file name.
        file: String,
        /// What was done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl BackupError {
    /// Whether the data area ran out of space (or quota).
    #[must_use]
    pub fn is_disk_full(&self) -> bool {
        match self {
            BackupError::Io { source, .. } | BackupError::Template { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ),
            _ => false,
        }
    }
}

/// Where a copy is written: the temporary file. Tests put a writer that fails on cue
/// in front of it.
pub trait Sink: Write {
    /// Makes what was written durable (`fsync`).
    ///
    /// # Errors
    /// As `fsync(2)`.
    fn sync(&mut self) -> io::Result<()>;
}

impl Sink for File {
    fn sync(&mut self) -> io::Result<()> {
        self.sync_all()
    }
}

/// Opens the temporary file of a copy: its path and permission bits.
pub type OpenSink = dyn Fn(&Path, u32) -> io::Result<Box<dyn Sink>>;

/// Creates (or truncates) the temporary file at `path` with `mode`.
fn open_file(path: &Path, mode: u32) -> io::Result<Box<dyn Sink>> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    Ok(Box::new(f))
}

impl TemplateBackup {
    /// The node's: `/vz/template` into `/vz/backups/templatecache`.
    #[must_use]
    pub fn node() -> TemplateBackup {
        TemplateBackup::at(Path::new(crate::activate::DATA_MOUNT))
    }

    /// The data area mounted at `data`.
    #[must_use]
    pub fn at(data: &Path) -> TemplateBackup {
        TemplateBackup {
            data_mount: data.to_owned(),
            template_dir: data.join("template"),
            backup_dir: data.join(BACKUP_SUBDIR),
        }
    }

    /// Backs up every template; `on_copy` hears of each one as soon as it is done (in
    /// the order of the report). No templates: nothing is written.
    ///
    /// # Errors
    /// [`BackupError::NotMounted`] on the passive node (nothing read or written),
    /// [`BackupError::Busy`] while another backup runs, otherwise the first template or
    /// directory that failed; the templates reported before it are backed up.
    pub fn run(&self, on_copy: &mut dyn FnMut(&TemplateCopy)) -> Result<BackupReport, BackupError> {
        self.run_with(&open_file, on_copy)
    }

    /// As [`TemplateBackup::run`], writing each temporary file through `open`.
    ///
    /// # Errors
    /// As [`TemplateBackup::run`].
    pub fn run_with(
        &self,
        open: &OpenSink,
        on_copy: &mut dyn FnMut(&TemplateCopy),
    ) -> Result<BackupReport, BackupError> {
        if !crate::storage::is_mountpoint(&self.data_mount) {
            return Err(BackupError::NotMounted {
                data: self.data_mount.clone(),
            });
        }
        let dir_err = |op, path: &Path| {
            let path = path.to_owned();
            move |source| BackupError::Io { op, path, source }
        };
        let templates =
            template_files(&self.template_dir).map_err(dir_err("reading", &self.template_dir))?;
        let mut report = BackupReport {
            backup_dir: self.backup_dir.clone(),
            copies: Vec::new(),
        };
        if templates.is_empty() {
            return Ok(report);
        }
        self.make_backup_dir()
            .map_err(dir_err("creating", &self.backup_dir))?;
        let lock = super::try_lock_dir(&self.backup_dir)
            .map_err(dir_err("locking", &self.backup_dir))?
            .ok_or_else(|| BackupError::Busy {
                dir: self.backup_dir.clone(),
            })?;
        self.remove_leftovers();
        for (_, file) in templates {
            let copy = self.backup_one(&file, open)?;
            on_copy(&copy);
            report.copies.push(copy);
        }
        drop(lock);
        Ok(report)
    }

    /// Creates the backup directory and makes its new entries durable.
    fn make_backup_dir(&self) -> io::Result<()> {
        if self.backup_dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.backup_dir)?;
        let mut d = self.backup_dir.parent();
        while let Some(p) = d {
            File::open(p)?.sync_all()?;
            if p == self.data_mount {
                break;
            }
            d = p.parent();
        }
        Ok(())
    }

    /// Temporary files of a run that crashed.
    fn remove_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.backup_dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".partial") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    fn backup_one(&self, file: &str, open: &OpenSink) -> Result<TemplateCopy, BackupError> {
        use std::os::unix::fs::PermissionsExt;
        let src_path = self.template_dir.join(file);
        let dst = self.backup_dir.join(file);
        let err = |op, path: &Path| {
            let (file, path) = (file.to_owned(), path.to_owned());
            move |source| BackupError::Template {
                file,
                op,
                path,
                source,
            }
        };
        let mut src = File::open(&src_path).map_err(err("opening", &src_path))?;
        let meta = src.metadata().map_err(err("reading", &src_path))?;
        let bytes = meta.len();
        let existing = std::fs::symlink_metadata(&dst).ok();
        if let Some(m) = &existing
            && m.is_file()
            && m.len() == bytes
        {
            let theirs = sha256(&dst).map_err(err("reading", &dst))?;
            let ours = sha256(&src_path).map_err(err("reading", &src_path))?;
            if theirs == ours {
                return Ok(TemplateCopy {
                    file: file.to_owned(),
                    bytes,
                    outcome: CopyOutcome::Unchanged,
                });
            }
        }
        let tmp = self.backup_dir.join(format!(".{file}.partial"));
        let mode = meta.permissions().mode() & 0o777;
        let written = (|| {
            let mut out = open(&tmp, mode).map_err(err("creating", &tmp))?;
            copy(&mut src, out.as_mut()).map_err(err("writing", &tmp))?;
            out.flush().map_err(err("writing", &tmp))?;
            out.sync().map_err(err("syncing", &tmp))?;
            drop(out);
            std::fs::rename(&tmp, &dst).map_err(err("renaming into place", &dst))
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(&self.backup_dir)
            .and_then(|d| d.sync_all())
            .map_err(err("syncing", &self.backup_dir))?;
        Ok(TemplateCopy {
            file: file.to_owned(),
            bytes,
            outcome: if existing.is_some() {
                CopyOutcome::Replaced
            } else {
                CopyOutcome::Copied
            },
        })
    }
}

fn copy(src: &mut impl Read, dst: &mut dyn Sink) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn sha256(path: &Path) -> io::Result<[u8; 32]> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok(h.finalize().into()),
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data area in a temporary directory; `mounted` uses `/` as the mount point (a
    /// mount point on every system), otherwise the directory itself (none).
    struct Area {
        dir: PathBuf,
        backup: TemplateBackup,
    }

    impl Drop for Area {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn area(name: &str, mounted: bool) -> Area {
        let dir =
            std::env::temp_dir().join(format!("tandem-tplbackup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("template")).expect("mkdir");
        let mut backup = TemplateBackup::at(&dir);
        if mounted {
            backup.data_mount = PathBuf::from("/");
        }
        Area { dir, backup }
    }

    fn put(a: &Area, name: &str, data: &[u8]) {
        std::fs::write(a.dir.join("template").join(name), data).expect("write");
    }

    fn backups(a: &Area) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&a.backup.backup_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn run(a: &Area) -> Result<(BackupReport, Vec<TemplateCopy>), BackupError> {
        let mut heard = Vec::new();
        let r = a.backup.run(&mut |c| heard.push(c.clone()))?;
        Ok((r, heard))
    }

    fn outcomes(r: &BackupReport) -> Vec<(&str, u64, CopyOutcome)> {
        r.copies
            .iter()
            .map(|c| (c.file.as_str(), c.bytes, c.outcome))
            .collect()
    }

    #[test]
    fn copies_then_leaves_identical_backups_alone_then_replaces_changed_ones() {
        let a = area("cycle", true);
        put(&a, "debian-12.tar.gz", &[7u8; 300_000]);
        put(&a, "centos-7.tar", b"centos");
        put(&a, "notes.txt", b"not a template");
        put(&a, ".hidden.tar", b"hidden");
        std::fs::create_dir_all(a.dir.join("template/dir.tar")).expect("mkdir");

        let (r, heard) = run(&a).expect("first run");
        assert_eq!(
            outcomes(&r),
            [
                ("centos-7.tar", 6, CopyOutcome::Copied),
                ("debian-12.tar.gz", 300_000, CopyOutcome::Copied),
            ]
        );
        assert_eq!(heard, r.copies);
        assert_eq!(r.total_bytes(), 300_006);
        assert_eq!(backups(&a), ["centos-7.tar", "debian-12.tar.gz"]);
        let dst = a.backup.backup_dir.join("debian-12.tar.gz");
        assert_eq!(std::fs::read(&dst).expect("read"), vec![7u8; 300_000]);

        // Second run: nothing to do; the backup file is the same one.
        let before = std::fs::metadata(&dst).expect("stat");
        let (r, _) = run(&a).expect("second run");
        assert_eq!(r.count(CopyOutcome::Unchanged), 2);
        assert_eq!(r.count(CopyOutcome::Copied), 0);
        let after = std::fs::metadata(&dst).expect("stat");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            before.ino(),
            after.ino(),
            "an identical backup is not rewritten"
        );

        // Same size, other content: replaced. Other size: replaced.
        put(&a, "debian-12.tar.gz", &[8u8; 300_000]);
        put(&a, "centos-7.tar", b"centos-7.9");
        let (r, _) = run(&a).expect("third run");
        assert_eq!(
            outcomes(&r),
            [
                ("centos-7.tar", 10, CopyOutcome::Replaced),
                ("debian-12.tar.gz", 300_000, CopyOutcome::Replaced),
            ]
        );
        assert_eq!(std::fs::read(&dst).expect("read"), vec![8u8; 300_000]);
        assert_eq!(backups(&a), ["centos-7.tar", "debian-12.tar.gz"]);
    }

    #[test]
    fn the_passive_node_refuses_before_touching_anything() {
        let a = area("passive", false);
        put(&a, "debian-12.tar", b"x");
        let e = run(&a).expect_err("not mounted");
        assert!(matches!(e, BackupError::NotMounted { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("is not mounted on this node")
                && text.contains("on the other node")
                && text.contains("start the template-cache backup there"),
            "{text}"
        );
        assert!(!a.backup.backup_dir.exists(), "nothing written");
    }

    #[test]
    fn no_templates_writes_nothing() {
        let a = area("empty", true);
        let (r, heard) = run(&a).expect("run");
        assert!(r.copies.is_empty() && heard.is_empty());
        assert!(!a.backup.backup_dir.exists());
        // No template directory at all: the same.
        std::fs::remove_dir(a.dir.join("template")).expect("rmdir");
        let (r, _) = run(&a).expect("run");
        assert!(r.copies.is_empty());
        assert!(!a.dir.join("backups").exists());
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_file_and_keeps_what_was_done() {
        let a = area("rename", true);
        put(&a, "a.tar", b"first");
        put(&a, "b.tar", b"second");
        // A directory where b.tar's backup belongs: the rename fails.
        std::fs::create_dir_all(a.backup.backup_dir.join("b.tar/x")).expect("mkdir");
        // A temporary file of a crashed run.
        std::fs::write(a.backup.backup_dir.join(".c.tar.partial"), b"old").expect("write");
        let mut heard = Vec::new();
        let e = a
            .backup
            .run(&mut |c| heard.push(c.file.clone()))
            .expect_err("rename fails");
        assert!(
            matches!(&e, BackupError::Template { file, op, .. } if file == "b.tar" && *op == "renaming into place"),
            "{e:?}"
        );
        assert!(!e.is_disk_full());
        assert_eq!(heard, ["a.tar"]);
        assert_eq!(backups(&a), ["a.tar", "b.tar"], "no .partial is left");
        assert_eq!(
            std::fs::read(a.backup.backup_dir.join("a.tar")).expect("read"),
            b"first"
        );
    }

    /// Writes through to the file until `left` bytes are used up, then fails as a full
    /// disk does.
    struct FullDisk {
        file: File,
        left: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            self.file.write(&buf[..n])
        }
        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    impl Sink for FullDisk {
        fn sync(&mut self) -> io::Result<()> {
            self.file.sync_all()
        }
    }

    #[test]
    fn a_full_disk_keeps_the_old_backup_and_removes_the_partial_copy() {
        let a = area("full", true);
        put(&a, "big.tar", &[1u8; 100_000]);
        run(&a).expect("first backup");
        put(&a, "big.tar", &[2u8; 200_000]);
        let open = |p: &Path, _mode: u32| -> io::Result<Box<dyn Sink>> {
            Ok(Box::new(FullDisk {
                file: File::create(p)?,
                left: 50_000,
            }))
        };
        let e = a
            .backup
            .run_with(&open, &mut |_| {})
            .expect_err("disk full");
        assert!(e.is_disk_full(), "{e:?}");
        assert!(
            e.to_string().starts_with("backing up big.tar: writing "),
            "{e}"
        );
        assert_eq!(backups(&a), ["big.tar"]);
        assert_eq!(
            std::fs::read(a.backup.backup_dir.join("big.tar")).expect("read"),
            vec![1u8; 100_000],
            "the old backup is intact"
        );
    }

    #[test]
    fn one_backup_at_a_time() {
        let a = area("busy", true);
        put(&a, "a.tar", b"x");
        std::fs::create_dir_all(&a.backup.backup_dir).expect("mkdir");
        let other = File::open(&a.backup.backup_dir).expect("open");
        rustix::fs::flock(&other, rustix::fs::FlockOperation::LockExclusive).expect("lock");
        let e = run(&a).expect_err("busy");
        assert!(matches!(e, BackupError::Busy { .. }), "{e}");
        assert!(backups(&a).is_empty());
        drop(other);
        assert_eq!(run(&a).expect("run").0.count(CopyOutcome::Copied), 1);
    }
}
