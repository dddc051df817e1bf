//! The applied-configuration store on the node's config partition, and archive import.
//!
//! Layout of the store directory (mode 0700, files 0600):
//! - `config.toml`: the committed configuration (absent while the node is unconfigured);
//! - `pending.toml`: a staged configuration waiting for activation;
//! - `previous.toml`: the configuration replaced by the last commit;
//! - `lock`: held (flock) during every change;
//! - `*.tmp`: files being written; removed when the store is opened.
//!
//! Every write goes to a temporary file that is fsynced, renamed into place, and followed by
//! an fsync of the directory, so a crash leaves either the old or the new file, never a mix.
//! A refused import writes nothing at all: the archive is checked completely in memory first.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::archive::{self, ArchiveError, ArchiveProblem, Manifest, ProblemKind};
use crate::load::ConfigError;
use crate::schema::ApplianceConfig;
use crate::types::ClusterId;

const CURRENT: &str = "config.toml";
const PENDING: &str = "pending.toml";
const PREVIOUS: &str = "previous.toml";
const LOCK: &str = "lock";

/// Whether the store in `dir` holds a committed configuration, without
/// opening it for writing (for unprivileged readers such as the web
/// console). Fails closed: anything but "no committed file" counts as
/// configured.
pub fn is_configured(dir: &Path) -> bool {
    match fs::symlink_metadata(dir.join(CURRENT)) {
        Ok(_) => true,
        Err(e) => e.kind() != std::io::ErrorKind::NotFound,
    }
}

/// Problems with the store itself (as opposed to the input).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file system operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A stored file is not a valid configuration (damaged partition or manual edit).
    #[error("stored configuration {path} is not valid")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The problems.
        #[source]
        source: ConfigError,
    },
    /// There is nothing staged to commit.
    #[error("no staged configuration in {dir}")]
    NothingStaged {
        /// The store directory.
        dir: PathBuf,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// The configuration store in one directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

/// An exclusive hold on the store; released on drop.
#[derive(Debug)]
struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir` and removes temporary files left by an
    /// interrupted write.
    ///
    /// # Errors
    /// When the directory cannot be created or read.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("creating", &dir))?;
        let store = Store { dir };
        let _lock = store.lock()?;
        for e in fs::read_dir(&store.dir).map_err(io_err("reading", &store.dir))? {
            let e = e.map_err(io_err("reading", &store.dir))?;
            let p = e.path();
            if p.extension().is_some_and(|x| x == "tmp") {
                fs::remove_file(&p).map_err(io_err("removing", &p))?;
            }
        }
        Ok(store)
    }

    /// The store directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn lock(&self) -> Result<Lock, StoreError> {
        let p = self.path(LOCK);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(io_err("opening", &p))?;
        // Imports are rare and short; a bounded wait keeps a stuck holder from hanging the
        // console for ever.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(Lock(f)),
                Err(fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Io {
                        op: "locking",
                        path: p,
                        source: io::Error::new(io::ErrorKind::TimedOut, "store is busy"),
                    });
                }
                Err(fs::TryLockError::Error(e)) => return Err(io_err("locking", &p)(e)),
            }
        }
    }

    fn read(&self, name: &str) -> Result<Option<ApplianceConfig>, StoreError> {
        let p = self.path(name);
        let text = match fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("reading", &p)(e)),
        };
        ApplianceConfig::from_toml(&text)
            .map(Some)
            .map_err(|source| StoreError::Corrupt { path: p, source })
    }

    /// The committed configuration, `None` while the node is unconfigured.
    ///
    /// # Errors
    /// When the file cannot be read or is not valid.
    pub fn current(&self) -> Result<Option<ApplianceConfig>, StoreError> {
        self.read(CURRENT)
    }

    /// Whether a configuration has been committed.
    #[must_use]
    pub fn is_configured(&self) -> bool {
        self.path(CURRENT).is_file()
    }

    /// The staged configuration, if any.
    ///
    /// # Errors
    /// When the file cannot be read or is not valid.
    pub fn pending(&self) -> Result<Option<ApplianceConfig>, StoreError> {
        self.read(PENDING)
    }

    /// The configuration replaced by the last commit, if any.
    ///
    /// # Errors
    /// When the file cannot be read or is not valid.
    pub fn previous(&self) -> Result<Option<ApplianceConfig>, StoreError> {
        self.read(PREVIOUS)
    }

    /// Writes `name` atomically: temporary file, fsync, rename, fsync of the directory.
    fn write_atomic(&self, name: &str, data: &[u8]) -> Result<(), StoreError> {
        let dst = self.path(name);
        let tmp = self.path(&format!("{name}.tmp"));
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("creating", &tmp))?;
        f.write_all(data).map_err(io_err("writing", &tmp))?;
        f.sync_all().map_err(io_err("syncing", &tmp))?;
        drop(f);
        fs::rename(&tmp, &dst).map_err(io_err("renaming", &tmp))?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", &self.dir))
    }

    /// Stages a configuration (validated first) as pending, replacing any earlier one.
    ///
    /// # Errors
    /// When the configuration is invalid or the write fails.
    pub fn stage(&self, cfg: &ApplianceConfig) -> Result<(), StageError> {
        cfg.validate()
            .map_err(|problems| StageError::Invalid(ConfigError { problems }))?;
        let _lock = self.lock()?;
        self.write_atomic(PENDING, cfg.to_toml().as_bytes())?;
        Ok(())
    }

    /// Drops the staged configuration.
    ///
    /// # Errors
    /// When removing it fails.
    pub fn discard(&self) -> Result<(), StoreError> {
        let _lock = self.lock()?;
        let p = self.path(PENDING);
        match fs::remove_file(&p) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("removing", &p)(e)),
        }
    }

    /// Makes the staged configuration the committed one; the old one becomes `previous`.
    /// Each step is a rename, so a crash at any point leaves a valid committed file.
    ///
    /// # Errors
    /// When nothing is staged, the staged file is damaged, or a rename fails.
    pub fn commit(&self) -> Result<ApplianceConfig, StoreError> {
        let _lock = self.lock()?;
        let Some(cfg) = self.read(PENDING)? else {
            return Err(StoreError::NothingStaged {
                dir: self.dir.clone(),
            });
        };
        let cur = self.path(CURRENT);
        if cur.is_file() {
            let old = fs::read(&cur).map_err(io_err("reading", &cur))?;
            self.write_atomic(PREVIOUS, &old)?;
        }
        let pending = self.path(PENDING);
        fs::rename(&pending, &cur).map_err(io_err("renaming", &pending))?;
        self.sync_dir()?;
        Ok(cfg)
    }
}

/// Problems staging a configuration.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The configuration is not valid.
    #[error("the configuration is not valid")]
    Invalid(#[source] ConfigError),
    /// The store failed.
    #[error("writing the configuration store")]
    Store(#[from] StoreError),
}

/// What an import does after checking the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportMode {
    /// Check only; write nothing.
    DryRun,
    /// Stage as pending (the console's upload, activated later).
    Stage,
    /// Stage and commit at once (the CLI's import).
    #[default]
    Commit,
}

/// Options of [`import_archive`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// What to do with an accepted archive.
    pub mode: ImportMode,
    /// Accept an archive of another cluster than the committed one (a deliberate
    /// re-purposing of the node; never the default).
    pub allow_other_cluster: bool,
}

/// What an import found and did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// The configuration it carries.
    pub config: ApplianceConfig,
    /// Whether the archive was encrypted.
    pub encrypted: bool,
    /// The cluster the node belonged to before, if configured.
    pub previous_cluster: Option<ClusterId>,
    /// Whether the archive's configuration equals the committed one.
    pub unchanged: bool,
    /// What was done.
    pub mode: ImportMode,
    /// Things the operator should know (an unencrypted archive, for instance).
    pub warnings: Vec<String>,
}

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The archive was refused; every problem is listed.
    #[error("archive refused")]
    Refused(#[source] ArchiveError),
    /// The store could not be read or written.
    #[error("configuration store failed")]
    Store(#[from] StoreError),
}

impl ImportError {
    /// The problems, when the archive was refused.
    #[must_use]
    pub fn problems(&self) -> &[ArchiveProblem] {
        match self {
            ImportError::Refused(e) => &e.problems,
            ImportError::Store(_) => &[],
        }
    }
}

/// Checks an archive completely and then, per `opts.mode`, stages or commits it.
///
/// Nothing is written unless every check passes; a node that already belongs to a cluster
/// refuses another cluster's archive.
///
/// # Errors
/// [`ImportError::Refused`] with every problem found, or a store failure.
pub fn import_archive(
    bytes: &[u8],
    passphrase: Option<&str>,
    store: &Store,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let contents = archive::read_archive(bytes, passphrase).map_err(ImportError::Refused)?;
    let current = store.current()?;
    let previous_cluster = current.as_ref().map(|c| c.cluster.id);
    if let Some(prev) = previous_cluster
        && prev != contents.config.cluster.id
        && !opts.allow_other_cluster
    {
        return Err(ImportError::Refused(ArchiveError {
            problems: vec![ArchiveProblem::new(
                ProblemKind::OtherCluster,
                archive::MANIFEST,
                "cluster-id",
                format!(
                    "{} is another cluster (this node belongs to {prev})",
                    contents.config.cluster.id
                ),
            )],
        }));
    }
    let mut warnings = Vec::new();
    if !contents.encrypted {
        warnings.push(
            "the archive was not encrypted: its passwords hashes and private keys were readable by anyone who had the file".to_owned(),
        );
    }
    let unchanged = current.as_ref() == Some(&contents.config);
    match opts.mode {
        ImportMode::DryRun => {}
        ImportMode::Stage | ImportMode::Commit => {
            store.stage(&contents.config).map_err(|e| match e {
                StageError::Store(s) => ImportError::Store(s),
                // read_archive validated already; kept as a refusal should that ever change.
                StageError::Invalid(c) => ImportError::Refused(ArchiveError {
                    problems: c
                        .problems
                        .into_iter()
                        .map(|p| {
                            ArchiveProblem::new(
                                ProblemKind::Invalid,
                                archive::CONFIG,
                                &p.path,
                                p.message,
                            )
                        })
                        .collect(),
                }),
            })?;
            if opts.mode == ImportMode::Commit {
                store.commit()?;
            }
        }
    }
    Ok(ImportReport {
        manifest: contents.manifest,
        config: contents.config,
        encrypted: contents.encrypted,
        previous_cluster,
        unchanged,
        mode: opts.mode,
        warnings,
    })
}
