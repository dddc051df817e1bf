//! A backup of one VE, consistent while it runs (R12): its cgroup frozen, the
//! filesystem synced (`syncfs`), its root filesystem and VE file read into one
//! `ve-<ID>-<UTC time>.tar.zst` in `/vz/backups/ve/`, the VE thawed. It is frozen only
//! while its files are read and compressed; the time is measured and reported. Every
//! error path thaws it (the [`super::freeze::Frozen`] guard).
//!
//! The file format is [`super::archive`]'s. The manifest goes first but is known only
//! after the read, so the data is written (one zstd frame) to a temporary file first,
//! then the final temporary file gets the manifest's frame followed by that data; it
//! is synced, renamed into place and the directory synced, as the template-cache
//! backup writes ([`super::backup`]): a crash or a full disk leaves no partial backup
//! under a backup's name, and temporary files are removed by the next run.
//!
//! Not kept: extended attributes and ACLs (file capabilities among them), sockets,
//! FIFOs and device nodes (listed in the manifest's `skipped`), filesystems mounted
//! inside the root filesystem, symlinks that point above the VE's root.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::archive::{self, CONF_NAME, Kind, Manifest, Member, PRIVATE_NAME};
use super::freeze;

/// Where the VE backups go, inside the data area.
pub const VE_BACKUP_SUBDIR: &str = "backups/ve";

/// How long the freezer may take to stop every process of a VE.
pub const FREEZE_LIMIT: Duration = Duration::from_secs(10);

/// Where a node's VEs and their backups are.
#[derive(Debug, Clone)]
pub struct Site {
    /// Mount point of the data area: backups and restores run only while it is
    /// mounted here.
    pub data_mount: PathBuf,
    /// VE files (`ve-<ID>.conf`).
    pub conf_dir: PathBuf,
    /// Root filesystems (`<ID>/`).
    pub private_dir: PathBuf,
    /// The backups.
    pub backup_dir: PathBuf,
    /// Below this the VEs' cgroups are ([`super::oci::cgroup_path`]).
    pub cgroup_root: PathBuf,
}

impl Site {
    /// The node's: `/vz`, `/etc/tandem/ves`, the unified cgroup hierarchy.
    #[must_use]
    pub fn node() -> Site {
        Site::at(
            Path::new(crate::activate::DATA_MOUNT),
            PathBuf::from("/etc/tandem/ves"),
            freeze::cgroup2_root(),
        )
    }

    /// The data area at `data` (root filesystems and backups inside it), VE files in
    /// `conf_dir`, cgroups below `cgroup_root`.
    #[must_use]
    pub fn at(data: &Path, conf_dir: PathBuf, cgroup_root: PathBuf) -> Site {
        Site {
            data_mount: data.to_owned(),
            conf_dir,
            private_dir: data.join("private"),
            backup_dir: data.join(VE_BACKUP_SUBDIR),
            cgroup_root,
        }
    }

    /// A VE's file.
    #[must_use]
    pub fn conf(&self, id: u32) -> PathBuf {
        self.conf_dir.join(format!("ve-{id}.conf"))
    }

    /// A VE's root filesystem.
    #[must_use]
    pub fn private(&self, id: u32) -> PathBuf {
        self.private_dir.join(id.to_string())
    }

    /// A VE's cgroup.
    #[must_use]
    pub fn cgroup(&self, id: u32) -> PathBuf {
        self.cgroup_root
            .join(super::oci::cgroup_path(id).trim_start_matches('/'))
    }

    /// Refuses when the data area is not mounted here.
    ///
    /// # Errors
    /// [`SiteError::NotMounted`].
    pub fn check_mounted(&self) -> Result<(), SiteError> {
        if crate::storage::is_mountpoint(&self.data_mount) {
            Ok(())
        } else {
            Err(SiteError::NotMounted {
                data: self.data_mount.clone(),
            })
        }
    }

    /// Creates the backup directory (entries made durable) and takes its lock: one
    /// backup or restore at a time. Temporary files a crash left are removed.
    ///
    /// # Errors
    /// [`SiteError::Busy`] while another runs; the directory's failures.
    pub fn lock(&self) -> Result<File, SiteError> {
        if !self.backup_dir.is_dir() {
            std::fs::create_dir_all(&self.backup_dir).map_err(err("creating", &self.backup_dir))?;
            let mut d = self.backup_dir.parent();
            while let Some(p) = d {
                let _ = File::open(p).and_then(|f| f.sync_all());
                if p == self.data_mount {
                    break;
                }
                d = p.parent();
            }
        }
        let lock = super::try_lock_dir(&self.backup_dir)
            .map_err(err("locking", &self.backup_dir))?
            .ok_or_else(|| SiteError::Busy {
                dir: self.backup_dir.clone(),
            })?;
        if let Ok(entries) = std::fs::read_dir(&self.backup_dir) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && name.ends_with(".partial") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(lock)
    }
}

/// Why a backup or restore did not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// The data area is not mounted here: this is the passive node.
    #[error(
        "the data area {} is not mounted on this node: VE backups and restores run on the active node",
        data.display()
    )]
    NotMounted {
        /// The data area's mount point.
        data: PathBuf,
    },
    /// Another backup or restore runs.
    #[error("another VE backup or restore is running (lock on {}); wait for it to end", dir.display())]
    Busy {
        /// The backup directory.
        dir: PathBuf,
    },
    /// No such VE.
    #[error("VE {0} does not exist (tandem ve list shows the VEs)")]
    Unknown(u32),
    /// A file or directory.
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

impl SiteError {
    /// Whether the data area ran out of space (or quota).
    #[must_use]
    pub fn is_disk_full(&self) -> bool {
        matches!(self, SiteError::Io { source, .. } if matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ))
    }
}

/// A finished backup.
#[derive(Debug, Clone)]
pub struct Made {
    /// The backup file.
    pub file: PathBuf,
    /// Its size (compressed).
    pub bytes: u64,
    /// Its manifest.
    pub manifest: Manifest,
    /// How long the VE was frozen (`None`: it was not running).
    pub freeze: Option<Duration>,
    /// From when every process was frozen to just before the thaw (wall clock).
    pub frozen: Option<(SystemTime, SystemTime)>,
    /// The whole run.
    pub elapsed: Duration,
}

/// The file name of a backup of `id` made at `unix` (`ve-101-20261206T234000Z.tar.zst`).
#[must_use]
pub fn file_name(id: u32, unix: u64) -> String {
    let stamp: String = tandem_config::archive::rfc3339(unix)
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("ve-{id}-{stamp}.tar.zst")
}

/// The VE and time of a backup file name, when it is one.
#[must_use]
pub fn parse_file_name(name: &str) -> Option<(u32, String)> {
    let rest = name.strip_prefix("ve-")?.strip_suffix(".tar.zst")?;
    let (id, stamp) = rest.split_once('-')?;
    let ok = stamp.len() == 16
        && stamp.as_bytes()[8] == b'T'
        && stamp.ends_with('Z')
        && stamp
            .bytes()
            .enumerate()
            .all(|(i, b)| matches!(i, 8 | 15) || b.is_ascii_digit());
    ok.then(|| (id.parse().ok(), stamp.to_owned()))
        .and_then(|(id, s)| id.map(|id| (id, s)))
}

/// Backs up VE `id` of `site`; `progress(done, total)` hears the bytes read so far and
/// the estimate of all (the sizes before the freeze).
///
/// # Errors
/// Not mounted here, busy, unknown VE, or the first file that failed (nothing is left
/// under a backup's name; the VE is thawed).
pub fn make(site: &Site, id: u32, progress: &mut dyn FnMut(u64, u64)) -> Result<Made, SiteError> {
    let started = Instant::now();
    site.check_mounted()?;
    let conf_path = site.conf(id);
    let conf = match std::fs::read(&conf_path) {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(SiteError::Unknown(id)),
        Err(e) => {
            return Err(SiteError::Io {
                op: "reading",
                path: conf_path,
                source: e,
            });
        }
    };
    let private = site.private(id);
    if !private.is_dir() {
        return Err(SiteError::Io {
            op: "finding the root filesystem",
            path: private,
            source: io::ErrorKind::NotFound.into(),
        });
    }
    let _lock = site.lock()?;
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = file_name(id, unix);
    let dst = site.backup_dir.join(&name);
    if dst.exists() {
        return Err(SiteError::Io {
            op: "creating (a backup of this VE was made this second)",
            path: dst,
            source: io::ErrorKind::AlreadyExists.into(),
        });
    }
    let body = site.backup_dir.join(format!(".{name}.body.partial"));
    let tmp = site.backup_dir.join(format!(".{name}.partial"));
    let r = write(site, id, &conf, &private, unix, &body, &tmp, &dst, progress);
    let _ = std::fs::remove_file(&body);
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let (manifest, freeze, frozen) = r?;
    let bytes = std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0);
    Ok(Made {
        file: dst,
        bytes,
        manifest,
        freeze,
        frozen,
        elapsed: started.elapsed(),
    })
}

type Written = (Manifest, Option<Duration>, Option<(SystemTime, SystemTime)>);

#[allow(clippy::too_many_arguments)]
fn write(
    site: &Site,
    id: u32,
    conf: &[u8],
    private: &Path,
    unix: u64,
    body: &Path,
    tmp: &Path,
    dst: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Written, SiteError> {
    let total = estimate(private);
    let out = crate::create_private(body).map_err(err("creating", body))?;
    let mut enc =
        zstd::stream::write::Encoder::new(out, 3).map_err(err("compressing into", body))?;
    // A content checksum per frame: a flipped bit is found by the decoder too.
    enc.include_checksum(true)
        .map_err(err("compressing into", body))?;
    let mut tar = tar::Builder::new(enc);
    tar.mode(tar::HeaderMode::Complete);
    tar.follow_symlinks(false);
    let mut w = Walk {
        members: Vec::new(),
        skipped: Vec::new(),
        links: HashMap::new(),
        done: Cell::new(0),
        total,
        progress,
        dev: 0,
    };
    // The VE file: it changes only through clusterd, read before the freeze.
    let mut h = archive::file_header(conf.len() as u64, 0o644, unix);
    tar.append_data(&mut h, CONF_NAME, conf)
        .map_err(err("writing", body))?;
    w.members.push(Member {
        path: CONF_NAME.into(),
        kind: Kind::File,
        size: conf.len() as u64,
        sha256: Some(archive::hex(&Sha256::digest(conf))),
        target: None,
    });

    let cgroup = site.cgroup(id);
    let running = freeze::has_processes(&cgroup);
    // Most dirty data is written out before the freeze, so that the sync while frozen
    // is short.
    let dir = File::open(private).map_err(err("opening", private))?;
    rustix::fs::syncfs(&dir).map_err(|e| err("syncing the filesystem of", private)(e.into()))?;
    let frozen = if running {
        Some(freeze::freeze(&cgroup, FREEZE_LIMIT).map_err(err("freezing", &cgroup))?)
    } else {
        None
    };
    // Frozen from here: every return thaws (the guard), the success path below.
    rustix::fs::syncfs(&dir).map_err(|e| err("syncing the filesystem of", private)(e.into()))?;
    let root_meta = dir.metadata().map_err(err("reading", private))?;
    w.dev = root_meta.dev();
    w.add(&mut tar, private, PRIVATE_NAME, &root_meta)
        .map_err(err("backing up the root filesystem", private))?;
    let (freeze, frozen_span) = match frozen {
        Some(f) => {
            // The span in which no process of the VE ran: from the kernel's word that
            // all were frozen to just before they may run again.
            let span = (f.confirmed(), SystemTime::now());
            let d = f.thaw().map_err(err("thawing", &cgroup))?;
            (Some(d), Some(span))
        }
        None => (None, None),
    };
    let enc = tar.into_inner().map_err(err("writing", body))?;
    let mut out = enc.finish().map_err(err("writing", body))?;
    out.flush().map_err(err("writing", body))?;

    let members = w.members;
    let files = members.iter().filter(|m| m.kind == Kind::File).count() as u64;
    let bytes = members.iter().map(|m| m.size).sum();
    let manifest = Manifest {
        format: archive::FORMAT.into(),
        format_version: archive::FORMAT_VERSION,
        ve_id: id,
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        created: tandem_config::archive::rfc3339(unix),
        tandem_version: env!("CARGO_PKG_VERSION").into(),
        members,
        total_files: files,
        total_bytes: bytes,
        skipped: w.skipped,
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| err("encoding the manifest for", dst)(io::Error::other(e)))?;
    let head = archive::member_bytes(archive::MANIFEST_NAME, &json, unix)
        .map_err(err("encoding the manifest for", dst))?;
    let head = {
        let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3)
            .map_err(err("compressing the manifest for", dst))?;
        e.include_checksum(true)
            .and_then(|()| e.write_all(&head))
            .map_err(err("compressing the manifest for", dst))?;
        e.finish()
            .map_err(err("compressing the manifest for", dst))?
    };
    let mut f = crate::create_private(tmp).map_err(err("creating", tmp))?;
    f.write_all(&head).map_err(err("writing", tmp))?;
    let mut data = File::open(body).map_err(err("reading", body))?;
    io::copy(&mut data, &mut f).map_err(err("writing", tmp))?;
    f.sync_all().map_err(err("syncing", tmp))?;
    drop(f);
    std::fs::rename(tmp, dst).map_err(err("renaming into place", dst))?;
    File::open(&site.backup_dir)
        .and_then(|d| d.sync_all())
        .map_err(err("syncing", &site.backup_dir))?;
    Ok((manifest, freeze, frozen_span))
}

/// The bytes of the regular files below `dir` (for progress; 0 when unreadable).
fn estimate(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    total
}

struct Walk<'a> {
    members: Vec<Member>,
    skipped: Vec<String>,
    /// (device, inode) of files with more than one name → their first archive path.
    links: HashMap<(u64, u64), String>,
    done: Cell<u64>,
    total: u64,
    progress: &'a mut dyn FnMut(u64, u64),
    dev: u64,
}

impl Walk<'_> {
    fn add<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        path: &Path,
        name: &str,
        meta: &std::fs::Metadata,
    ) -> io::Result<()> {
        let ft = meta.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(meta, tar::HeaderMode::Complete);
        if ft.is_dir() {
            if meta.dev() != self.dev {
                self.skipped.push(format!("{name} (another filesystem)"));
                return Ok(());
            }
            h.set_size(0);
            tar.append_data(&mut h, name, io::empty())?;
            self.members.push(Member {
                path: name.into(),
                kind: Kind::Dir,
                size: 0,
                sha256: None,
                target: None,
            });
            let mut entries: Vec<(String, PathBuf)> = Vec::new();
            for e in std::fs::read_dir(path)? {
                let e = e?;
                match e.file_name().into_string() {
                    Ok(n) => entries.push((n, e.path())),
                    Err(n) => self
                        .skipped
                        .push(format!("{name}/{} (name not UTF-8)", n.to_string_lossy())),
                }
            }
            entries.sort();
            for (n, p) in entries {
                let m = p.symlink_metadata()?;
                self.add(tar, &p, &format!("{name}/{n}"), &m)?;
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(path)?;
            let Some(t) = target.to_str() else {
                self.skipped.push(format!("{name} (link target not UTF-8)"));
                return Ok(());
            };
            if archive::check_symlink(name, t).is_err() {
                self.skipped
                    .push(format!("{name} (symlink above the VE's root: {t})"));
                return Ok(());
            }
            h.set_size(0);
            tar.append_link(&mut h, name, t)?;
            self.members.push(Member {
                path: name.into(),
                kind: Kind::Symlink,
                size: 0,
                sha256: None,
                target: Some(t.into()),
            });
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                    let first = first.clone();
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    tar.append_link(&mut h, name, &first)?;
                    self.members.push(Member {
                        path: name.into(),
                        kind: Kind::Hardlink,
                        size: 0,
                        sha256: None,
                        target: Some(first),
                    });
                    return Ok(());
                }
                self.links.insert((meta.dev(), meta.ino()), name.to_owned());
            }
            let size = meta.len();
            let f = File::open(path)?;
            let mut r = Hashing {
                inner: f.take(size),
                hash: Sha256::new(),
                n: 0,
                walk_done: &self.done,
                total: self.total,
                progress: &mut *self.progress,
            };
            tar.append_data(&mut h, name, &mut r)?;
            if r.n != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{name} changed size while it was read ({} of {size} bytes)",
                        r.n
                    ),
                ));
            }
            let sum = archive::hex(&r.hash.finalize());
            self.members.push(Member {
                path: name.into(),
                kind: Kind::File,
                size,
                sha256: Some(sum),
                target: None,
            });
        } else {
            self.skipped
                .push(format!("{name} (socket, FIFO or device node)"));
        }
        Ok(())
    }
}

struct Hashing<'a, R> {
    inner: R,
    hash: Sha256,
    n: u64,
    walk_done: &'a Cell<u64>,
    total: u64,
    progress: &'a mut dyn FnMut(u64, u64),
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        let done = self.walk_done.get() + n as u64;
        self.walk_done.set(done);
        (self.progress)(done, self.total.max(done));
        Ok(n)
    }
}

/// One backup file in the backup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The file name.
    pub name: String,
    /// The VE.
    pub ve: u32,
    /// When (`20261206T234000Z`, from the name).
    pub stamp: String,
    /// Its size.
    pub bytes: u64,
    /// Where it was copied off to (`user@host:path`), if it was.
    pub copied_to: Option<String>,
}

/// The marker file that records a finished copy-off of `name`.
#[must_use]
pub fn copied_marker(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.copied"))
}

/// The backups in `dir`, oldest first.
///
/// # Errors
/// The directory cannot be read (a missing one is empty).
pub fn list(dir: &Path) -> io::Result<Vec<Listed>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((ve, stamp)) = parse_file_name(&name) else {
            continue;
        };
        let Ok(m) = e.metadata() else { continue };
        if !m.is_file() {
            continue;
        }
        let copied_to = std::fs::read_to_string(copied_marker(dir, &name))
            .ok()
            .map(|t| t.trim().to_owned());
        out.push(Listed {
            name,
            ve,
            stamp,
            bytes: m.len(),
            copied_to,
        });
    }
    out.sort_by(|a, b| (&a.stamp, a.ve).cmp(&(&b.stamp, b.ve)));
    Ok(out)
}

/// The error of `op` on `path` failing with an I/O error (for `map_err`).
fn err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SiteError {
    let path = path.to_owned();
    move |source| SiteError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_the_ve_and_the_time() {
        let n = file_name(101, 1_796_600_000);
        assert_eq!(parse_file_name(&n).map(|(id, _)| id), Some(101));
        assert!(
            n.starts_with("ve-101-2026") && n.ends_with("Z.tar.zst"),
            "{n}"
        );
        assert_eq!(parse_file_name("ve-101-x.tar.zst"), None);
        assert_eq!(parse_file_name("notes.txt"), None);
    }
}
