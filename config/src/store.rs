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
//! An import holds the lock from its first look at the store to its last write, so two
//! imports never interleave.
//!
//! The file-system calls that change the directory go through [`StoreFs`]; [`OsFs`] makes
//! them, and tests pass their own to make any one of them fail.

use std::fmt;
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

/// The file-system calls through which a [`Store`] changes its directory.
///
/// [`OsFs`] makes them. The seam exists so that a test can make any single call fail (an
/// I/O error, a full disk, a write cut short) and check what the store leaves behind; see
/// [`Store::open_with`].
pub trait StoreFs: fmt::Debug + Send + Sync {
    /// Creates or truncates `path` with mode 0600 and writes all of `data` to it.
    ///
    /// # Errors
    /// As the operating system reports them.
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()>;
    /// Flushes `path`'s data to stable storage (fsync).
    ///
    /// # Errors
    /// As the operating system reports them.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Renames `from` to `to`, atomically replacing `to`.
    ///
    /// # Errors
    /// As the operating system reports them.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Flushes the directory `dir`, making its renames and removals durable (fsync).
    ///
    /// # Errors
    /// As the operating system reports them.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Removes the file `path`.
    ///
    /// # Errors
    /// As the operating system reports them (`NotFound` included).
    fn remove(&self, path: &Path) -> io::Result<()>;
}

/// [`StoreFs`] on the real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

impl StoreFs for OsFs {
    fn write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(path)?
            .write_all(data)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        // fsync applies to the file, whichever descriptor it is called on.
        OpenOptions::new().write(true).open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
}

/// The configuration store in one directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    fs: Box<dyn StoreFs>,
}

/// An exclusive hold on the store; released on drop. Methods that change the store while
/// another operation is under way take it as proof that the lock is held.
#[derive(Debug)]
pub(crate) struct Lock(File);

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
        Store::open_with(dir, Box::new(OsFs))
    }

    /// [`Store::open`] with the file-system calls made through `fs` (fault injection).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(dir: impl Into<PathBuf>, fs: Box<dyn StoreFs>) -> Result<Store, StoreError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_err("creating", &dir))?;
        let store = Store { dir, fs };
        let _lock = store.lock()?;
        for e in fs::read_dir(&store.dir).map_err(io_err("reading", &store.dir))? {
            let e = e.map_err(io_err("reading", &store.dir))?;
            let p = e.path();
            if p.extension().is_some_and(|x| x == "tmp") {
                store.fs.remove(&p).map_err(io_err("removing", &p))?;
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

    /// Takes the store's lock, waiting up to 10 s for another holder (another process or
    /// another [`Store`] of the same directory) to let go.
    ///
    /// # Errors
    /// When the lock file cannot be opened or the wait times out.
    pub(crate) fn lock(&self) -> Result<Lock, StoreError> {
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

    /// Writes `data` to `name`'s temporary file and fsyncs it; removes the temporary file
    /// again if either step fails.
    fn write_tmp(&self, name: &str, data: &[u8]) -> Result<PathBuf, StoreError> {
        let tmp = self.path(&format!("{name}.tmp"));
        let r = self
            .fs
            .write(&tmp, data)
            .map_err(io_err("writing", &tmp))
            .and_then(|()| self.fs.sync_file(&tmp).map_err(io_err("syncing", &tmp)));
        if let Err(e) = r {
            self.discard_tmp(&tmp);
            return Err(e);
        }
        Ok(tmp)
    }

    /// Best-effort removal of a temporary file after a failure (the next [`Store::open`]
    /// removes whatever is left).
    fn discard_tmp(&self, tmp: &Path) {
        let _ = self.fs.remove(tmp);
    }

    /// Renames a written temporary file over `name`; removes it if the rename fails.
    fn put(&self, tmp: &Path, name: &str) -> Result<(), StoreError> {
        let dst = self.path(name);
        self.fs.rename(tmp, &dst).map_err(|e| {
            self.discard_tmp(tmp);
            io_err("renaming", tmp)(e)
        })
    }

    /// Makes the renames done so far durable. Called after the last rename of an operation:
    /// the change has happened by then, so a failure here is not a failure of the operation
    /// but a doubt about its durability, returned as a warning.
    fn sync_dir_after_commit(&self) -> Option<String> {
        self.fs.sync_dir(&self.dir).err().map(|e| {
            format!(
                "the change is made, but syncing {} failed ({e}): it may not survive a power cut",
                self.dir.display()
            )
        })
    }

    /// Stages a configuration (validated first) as pending, replacing any earlier one.
    ///
    /// # Errors
    /// When the configuration is invalid or the write fails.
    pub fn stage(&self, cfg: &ApplianceConfig) -> Result<(), StageError> {
        let lock = self.lock()?;
        self.stage_locked(&lock, cfg).map(drop)
    }

    /// [`Store::stage`] under a lock the caller holds; returns a durability warning, if any
    /// (see [`Store::install_locked`]).
    ///
    /// # Errors
    /// When the configuration is invalid or the write fails; `pending.toml` is then as it
    /// was.
    pub(crate) fn stage_locked(
        &self,
        _lock: &Lock,
        cfg: &ApplianceConfig,
    ) -> Result<Option<String>, StageError> {
        cfg.validate()
            .map_err(|problems| StageError::Invalid(ConfigError { problems }))?;
        let tmp = self.write_tmp(PENDING, cfg.to_toml().as_bytes())?;
        self.put(&tmp, PENDING)?;
        Ok(self.sync_dir_after_commit())
    }

    /// Drops the staged configuration.
    ///
    /// # Errors
    /// When removing it fails.
    pub fn discard(&self) -> Result<bool, StoreError> {
        let lock = self.lock()?;
        self.discard_locked(&lock)
    }

    /// [`Store::discard`] under a lock the caller holds; whether there was one to drop.
    ///
    /// # Errors
    /// When removing it fails.
    pub(crate) fn discard_locked(&self, _lock: &Lock) -> Result<bool, StoreError> {
        let p = self.path(PENDING);
        match self.fs.remove(&p) {
            Ok(()) => {
                self.fs
                    .sync_dir(&self.dir)
                    .map_err(io_err("syncing", &self.dir))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("removing", &p)(e)),
        }
    }

    /// Whether a configuration is staged.
    #[must_use]
    pub fn has_pending(&self) -> bool {
        fs::symlink_metadata(self.path(PENDING)).is_ok()
    }

    /// Makes the staged configuration the committed one; the old one becomes `previous`.
    /// Each step is a rename, so a crash at any point leaves a valid committed file.
    ///
    /// # Errors
    /// When nothing is staged, the staged file is damaged, or a step fails before the
    /// staged file is renamed over `config.toml` (which is then unchanged).
    pub fn commit(&self) -> Result<ApplianceConfig, StoreError> {
        let _lock = self.lock()?;
        let Some(cfg) = self.read(PENDING)? else {
            return Err(StoreError::NothingStaged {
                dir: self.dir.clone(),
            });
        };
        self.keep_previous()?;
        let pending = self.path(PENDING);
        self.fs
            .rename(&pending, &self.path(CURRENT))
            .map_err(io_err("renaming", &pending))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(io_err("syncing", &self.dir))?;
        Ok(cfg)
    }

    /// Copies `config.toml`, if any, to `previous.toml` (atomically).
    fn keep_previous(&self) -> Result<(), StoreError> {
        let cur = self.path(CURRENT);
        match fs::read(&cur) {
            Ok(old) => {
                let tmp = self.write_tmp(PREVIOUS, &old)?;
                self.put(&tmp, PREVIOUS)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("reading", &cur)(e)),
        }
    }

    /// Makes `cfg` (validated first) the committed configuration directly, without going
    /// through `pending.toml`, under a lock the caller holds. The steps: the new file is
    /// written and fsynced as `config.toml.tmp`; the current `config.toml` is copied to
    /// `previous.toml` (written, fsynced, renamed); `config.toml.tmp` is renamed over
    /// `config.toml`; the directory is fsynced.
    ///
    /// The rename over `config.toml` is the commit point. Any failure before it returns an
    /// error with `config.toml` byte-identical to what it was (`previous.toml` may already
    /// hold a copy of it, and temporary files are removed). After it only the directory
    /// fsync is left: the new configuration is in place whatever it returns, so its failure
    /// is returned as a warning (`Ok(Some(..))`), never as an error — an error always
    /// means nothing changed.
    ///
    /// # Errors
    /// When the configuration is invalid or a step before the commit point fails.
    pub(crate) fn install_locked(
        &self,
        _lock: &Lock,
        cfg: &ApplianceConfig,
    ) -> Result<Option<String>, StageError> {
        cfg.validate()
            .map_err(|problems| StageError::Invalid(ConfigError { problems }))?;
        let tmp = self.write_tmp(CURRENT, cfg.to_toml().as_bytes())?;
        if let Err(e) = self.keep_previous() {
            self.discard_tmp(&tmp);
            return Err(e.into());
        }
        self.put(&tmp, CURRENT)?;
        Ok(self.sync_dir_after_commit())
    }
}

/// Why [`Store::update`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<E: std::error::Error + 'static> {
    /// The node has no committed configuration to change.
    #[error("this node has no committed configuration")]
    NotConfigured,
    /// The caller's rule refused the change.
    #[error(transparent)]
    Refused(E),
    /// The new configuration is not valid, or the store failed.
    #[error(transparent)]
    Stage(#[from] StageError),
}

impl<E: std::error::Error + 'static> From<StoreError> for UpdateError<E> {
    fn from(e: StoreError) -> Self {
        UpdateError::Stage(StageError::Store(e))
    }
}

impl Store {
    /// Replaces the committed configuration with the one `change` makes from it, all
    /// under the store's lock, so that two changes never interleave and the rule in
    /// `change` sees the configuration it replaces. A staged (`pending.toml`)
    /// configuration is left alone. Returns, as every commit does, a durability
    /// warning if the last directory sync failed.
    ///
    /// # Errors
    /// Nothing committed, `change` refuses, the result is not valid, or a write fails
    /// before the commit point; `config.toml` is then as it was.
    pub fn update<E: std::error::Error + 'static>(
        &self,
        change: impl FnOnce(&ApplianceConfig) -> Result<ApplianceConfig, E>,
    ) -> Result<Option<String>, UpdateError<E>> {
        let lock = self.lock()?;
        let old = self.read(CURRENT)?.ok_or(UpdateError::NotConfigured)?;
        let new = change(&old).map_err(UpdateError::Refused)?;
        Ok(self.install_locked(&lock, &new)?)
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
///
/// A staged configuration (`pending.toml`, from an earlier `--stage` import or a console
/// upload) is somebody's change waiting to be activated. [`ImportMode::Commit`] refuses to
/// go ahead while one is waiting, unless it is the very configuration being imported
/// ([`ImportError::Staged`]): committing would either drop that change silently or leave it
/// to be activated later over the import, and an operator in a hurry expects neither. The
/// refusal names `tandem config discard`, so the way forward is one command. Staging again
/// ([`ImportMode::Stage`]) replaces the staged file — nothing goes live, so the operator can
/// still look before activating — and the report says so
/// ([`ImportReport::replaced_staged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportMode {
    /// Check only; write nothing.
    DryRun,
    /// Stage as pending (the console's upload, activated later), replacing a staged one.
    Stage,
    /// Make it the committed configuration at once (the CLI's import); refused while
    /// another configuration is staged.
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
    /// Whether a staged configuration was replaced ([`ImportMode::Stage`]) or, being the
    /// same as the archive's, committed and cleared ([`ImportMode::Commit`]).
    pub replaced_staged: bool,
    /// Things the operator should know (an unencrypted archive, for instance).
    pub warnings: Vec<String>,
}

/// Why an import did not happen. In every case the store is as it was.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The archive was refused; every problem is listed.
    #[error("archive refused")]
    Refused(#[source] ArchiveError),
    /// A different configuration is staged; see [`ImportMode`].
    #[error(
        "another configuration is staged in {} and committing this archive would drop it (drop it with `tandem config discard`, then import again)",
        .pending.display()
    )]
    Staged {
        /// The staged file.
        pending: PathBuf,
    },
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
            ImportError::Staged { .. } | ImportError::Store(_) => &[],
        }
    }
}

impl From<StageError> for ImportError {
    fn from(e: StageError) -> ImportError {
        match e {
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
        }
    }
}

/// Checks an archive completely and then, per `opts.mode`, stages or commits it.
///
/// Nothing is written unless every check passes; a node that already belongs to a cluster
/// refuses another cluster's archive; a commit is refused while another configuration is
/// staged (see [`ImportMode`]). Except for a dry run, the store's lock is held from the
/// first look at the store to the last write, so concurrent imports run one after the
/// other and each sees what the one before it left. An error means `config.toml` (and
/// `pending.toml`) are byte-identical to what they were. The rename of the new file into
/// place is the commit point; only the directory fsync follows it, and since the change
/// has happened by then, its failure is reported as a warning, not as an error.
///
/// # Errors
/// [`ImportError::Refused`] with every problem found, [`ImportError::Staged`], or a store
/// failure.
pub fn import_archive(
    bytes: &[u8],
    passphrase: Option<&str>,
    store: &Store,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let contents = archive::read_archive(bytes, passphrase).map_err(ImportError::Refused)?;
    import_contents(contents, store, opts)
}

/// As [`import_archive`], for an archive already read (decrypted and checked) with
/// [`archive::read_archive`]: a caller that checks an archive first and stages it later
/// decrypts it once.
///
/// # Errors
/// See [`import_archive`].
pub fn import_contents(
    contents: archive::ArchiveContents,
    store: &Store,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    // A dry run writes nothing, so it need not wait for (or hold up) a running import.
    let lock = match opts.mode {
        ImportMode::DryRun => None,
        ImportMode::Stage | ImportMode::Commit => Some(store.lock()?),
    };
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
    let staged = store.has_pending();
    // A staged file that cannot be read is treated as different: it is not ours to drop.
    let staged_is_this = staged && matches!(store.pending(), Ok(Some(p)) if p == contents.config);
    let durability = match (opts.mode, &lock) {
        (ImportMode::Stage, Some(lock)) => store.stage_locked(lock, &contents.config)?,
        (ImportMode::Commit, Some(lock)) => {
            if staged && !staged_is_this {
                return Err(ImportError::Staged {
                    pending: store.path(PENDING),
                });
            }
            let w = store.install_locked(lock, &contents.config)?;
            // The staged file is this configuration, now committed. The import has
            // happened, so failing to clear it is a warning, not an error.
            if staged && let Err(e) = store.discard_locked(lock) {
                warnings.push(format!(
                    "the configuration is committed but also still staged ({e}); `tandem config discard` clears it"
                ));
            }
            w
        }
        _ => {
            if staged && !staged_is_this {
                warnings.push(format!(
                    "another configuration is staged in {}: importing this archive will be refused until it is dropped (`tandem config discard`)",
                    store.path(PENDING).display()
                ));
            }
            None
        }
    };
    warnings.extend(durability);
    Ok(ImportReport {
        manifest: contents.manifest,
        config: contents.config,
        encrypted: contents.encrypted,
        previous_cluster,
        unchanged,
        mode: opts.mode,
        replaced_staged: staged && opts.mode != ImportMode::DryRun,
        warnings,
    })
}
