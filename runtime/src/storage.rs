//! The data area's steps of the takeover chain: the replicated filesystem on `/vz`
//! (checked with e2fsck, then mounted) and the links of R5.2 that make node-local
//! paths point into `/vz/tkcluster` on the active node.
//!
//! Both steps are idempotent and undo their own partial work: a [`Links`] step that
//! fails on its third path puts the first two back before it reports.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{MountFlags, UnmountFlags};

use crate::resources::{BoxFuture, Resource, ResourceError, blocking};

/// What went wrong in a storage step; each names the object.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// e2fsck found errors it could not correct, or could not run.
    #[error(
        "filesystem check of {device} failed (e2fsck exit {code}): {detail}; the data area stays unmounted"
    )]
    Fsck {
        /// The device.
        device: PathBuf,
        /// e2fsck's exit code (-1 when it did not run).
        code: i32,
        /// Its last line of output, or why it did not run.
        detail: String,
    },
    /// Another filesystem is mounted where the data area belongs.
    #[error("{mountpoint} already holds {other}, not {device}")]
    MountedElsewhere {
        /// The mount point.
        mountpoint: PathBuf,
        /// What is mounted there.
        other: String,
        /// The data device.
        device: PathBuf,
    },
    /// mount(2) or umount(2) failed.
    #[error("{op} {device} on {mountpoint}")]
    Mount {
        /// "mounting" or "unmounting".
        op: &'static str,
        /// The device.
        device: PathBuf,
        /// The mount point.
        mountpoint: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The data area is still in use and cannot be unmounted.
    #[error("{mountpoint} is busy, in use by {users}; stop them and release again")]
    Busy {
        /// The mount point.
        mountpoint: PathBuf,
        /// The processes holding it, `name[pid]`.
        users: String,
    },
    /// The data area lacks the copy a link should point to.
    #[error("the data area has no {target} for {path}: it is created when the data is initialised")]
    MissingTarget {
        /// The node-local path.
        path: PathBuf,
        /// The missing copy.
        target: PathBuf,
    },
    /// A file operation on a link failed.
    #[error("{op} {path}")]
    Link {
        /// What was done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The replicated filesystem mounted on the data area's mount point.
#[derive(Debug, Clone)]
pub struct DataFilesystem {
    /// The replicated block device (e.g. `/dev/drbd0`).
    pub device: PathBuf,
    /// Where it is mounted (`/vz`).
    pub mountpoint: PathBuf,
}

impl DataFilesystem {
    /// Checks and mounts the filesystem (nothing when it is already mounted there).
    ///
    /// # Errors
    /// An uncorrectable filesystem, another mount in the way, or mount(2) failing.
    pub fn mount(&self) -> Result<(), StorageError> {
        if let Some(src) = mounted_source(&self.mountpoint) {
            if same_device(&src, &self.device) {
                return Ok(());
            }
            return Err(StorageError::MountedElsewhere {
                mountpoint: self.mountpoint.clone(),
                other: src,
                device: self.device.clone(),
            });
        }
        let out = Command::new("e2fsck")
            .arg("-p")
            .arg(&self.device)
            .output()
            .map_err(|e| StorageError::Fsck {
                device: self.device.clone(),
                code: -1,
                detail: format!("cannot run e2fsck: {e}"),
            })?;
        // 0: clean, 1: errors corrected, 2: corrected, reboot advised (not for a data
        // filesystem); 4 and above: errors left or operational failure.
        let code = out.status.code().unwrap_or(-1);
        if !(0..=2).contains(&code) {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return Err(StorageError::Fsck {
                device: self.device.clone(),
                code,
                detail: crate::last_line(&text),
            });
        }
        std::fs::create_dir_all(&self.mountpoint).map_err(|source| StorageError::Link {
            op: "creating",
            path: self.mountpoint.clone(),
            source,
        })?;
        rustix::mount::mount(
            &self.device,
            &self.mountpoint,
            "ext4",
            MountFlags::NOATIME | MountFlags::NODEV | MountFlags::NOSUID,
            c"errors=remount-ro",
        )
        .map_err(|e| StorageError::Mount {
            op: "mounting",
            device: self.device.clone(),
            mountpoint: self.mountpoint.clone(),
            source: e.into(),
        })
    }

    /// Unmounts the filesystem (nothing when it is not mounted). A busy filesystem
    /// stays mounted and the processes using it are named.
    ///
    /// # Errors
    /// The filesystem is busy or umount(2) fails.
    pub fn unmount(&self) -> Result<(), StorageError> {
        if mounted_source(&self.mountpoint).is_none() {
            return Ok(());
        }
        match rustix::mount::unmount(&self.mountpoint, UnmountFlags::empty()) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::BUSY) => Err(StorageError::Busy {
                mountpoint: self.mountpoint.clone(),
                users: users_of(&self.mountpoint),
            }),
            Err(e) => Err(StorageError::Mount {
                op: "unmounting",
                device: self.device.clone(),
                mountpoint: self.mountpoint.clone(),
                source: e.into(),
            }),
        }
    }
}

impl Resource for DataFilesystem {
    fn name(&self) -> String {
        format!(
            "filesystem {} on {}",
            self.device.display(),
            self.mountpoint.display()
        )
    }

    fn acquire(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        let me = self.clone();
        Box::pin(async move { blocking(move || me.mount()).await })
    }

    fn release(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        let me = self.clone();
        Box::pin(async move { blocking(move || me.unmount()).await })
    }
}

/// True when a filesystem is mounted on exactly `path`.
#[must_use]
pub fn is_mountpoint(path: &Path) -> bool {
    mounted_source(path).is_some()
}

/// The source of the mount on exactly `mountpoint`, from `/proc/self/mountinfo`.
fn mounted_source(mountpoint: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.canonicalize().ok()?;
    // Later lines shadow earlier ones on the same mount point.
    info.lines().rev().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let point = unescape(fields.get(4)?);
        let dash = fields.iter().position(|f| *f == "-")?;
        (Path::new(&point) == want).then(|| unescape(fields.get(dash + 2).unwrap_or(&"")))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn same_device(source: &str, device: &Path) -> bool {
    let a = Path::new(source).canonicalize();
    let b = device.canonicalize();
    matches!((a, b), (Ok(a), Ok(b)) if a == b)
}

/// `name[pid]` of every process with its cwd, root or an open file under `dir`.
fn users_of(dir: &Path) -> String {
    let mut users = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return "unknown processes".into();
    };
    for p in procs.filter_map(Result::ok) {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let base = p.path();
        let under = |l: PathBuf| l.starts_with(dir);
        let mut holds = ["cwd", "root"]
            .iter()
            .filter_map(|n| std::fs::read_link(base.join(n)).ok())
            .any(under);
        if !holds && let Ok(fds) = std::fs::read_dir(base.join("fd")) {
            holds = fds
                .filter_map(Result::ok)
                .filter_map(|f| std::fs::read_link(f.path()).ok())
                .any(under);
        }
        if holds {
            let name = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
            users.push(format!("{}[{pid}]", name.trim()));
        }
    }
    if users.is_empty() {
        "unknown processes (open files not visible)".into()
    } else {
        users.join(", ")
    }
}

/// Node-local paths that live in the data area on the active node (R5.2).
#[derive(Debug, Clone)]
pub struct Links {
    /// The directory in the data area holding the copies (`/vz/tkcluster`).
    pub data_dir: PathBuf,
    /// Absolute node-local paths, in the order they are linked.
    pub paths: Vec<PathBuf>,
}

/// Suffix of a node-local original moved aside while the link is in place.
pub const ASIDE: &str = ".tandem-local";

impl Links {
    /// The copy in the data area for a node-local path.
    #[must_use]
    pub fn target(&self, path: &Path) -> PathBuf {
        self.data_dir.join(path.strip_prefix("/").unwrap_or(path))
    }

    fn aside(path: &Path) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(ASIDE);
        PathBuf::from(s)
    }

    fn is_our_link(&self, path: &Path) -> bool {
        std::fs::read_link(path).is_ok_and(|t| t == self.target(path))
    }

    /// Links every path into the data area, moving originals aside. On failure the
    /// paths already linked are restored before the error is returned.
    ///
    /// # Errors
    /// A missing copy in the data area, or a file operation failing.
    pub fn link(&self) -> Result<(), StorageError> {
        for (i, path) in self.paths.iter().enumerate() {
            if let Err(e) = self.link_one(path) {
                for done in self.paths[..i].iter().rev() {
                    let _ = self.unlink_one(done);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn link_one(&self, path: &Path) -> Result<(), StorageError> {
        if self.is_our_link(path) {
            return Ok(());
        }
        let target = self.target(path);
        if !target.exists() {
            return Err(StorageError::MissingTarget {
                path: path.to_owned(),
                target,
            });
        }
        let err = |op, p: &Path| {
            let p = p.to_owned();
            move |source| StorageError::Link {
                op,
                path: p,
                source,
            }
        };
        let aside = Self::aside(path);
        let moved = if std::fs::symlink_metadata(path).is_ok() {
            if std::fs::symlink_metadata(&aside).is_ok() {
                return Err(StorageError::Link {
                    op: "moving aside (the place is taken by an earlier original)",
                    path: path.to_owned(),
                    source: io::Error::from(io::ErrorKind::AlreadyExists),
                });
            }
            std::fs::rename(path, &aside).map_err(err("moving aside", path))?;
            true
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(err("creating", parent))?;
            }
            false
        };
        if let Err(e) = std::os::unix::fs::symlink(&target, path) {
            if moved {
                let _ = std::fs::rename(&aside, path);
            }
            return Err(err("linking", path)(e));
        }
        Ok(())
    }

    /// Removes every link and puts the originals back (reverse order); tries all
    /// paths and returns the first failure.
    ///
    /// # Errors
    /// A file operation failing.
    pub fn unlink(&self) -> Result<(), StorageError> {
        let mut first = None;
        for path in self.paths.iter().rev() {
            if let Err(e) = self.unlink_one(path) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn unlink_one(&self, path: &Path) -> Result<(), StorageError> {
        if self.is_our_link(path) {
            std::fs::remove_file(path).map_err(|source| StorageError::Link {
                op: "removing the link",
                path: path.to_owned(),
                source,
            })?;
        }
        let aside = Self::aside(path);
        if std::fs::symlink_metadata(&aside).is_ok() && std::fs::symlink_metadata(path).is_err() {
            std::fs::rename(&aside, path).map_err(|source| StorageError::Link {
                op: "restoring the original",
                path: path.to_owned(),
                source,
            })?;
        }
        Ok(())
    }
}

impl Resource for Links {
    fn name(&self) -> String {
        format!("links into {}", self.data_dir.display())
    }

    fn acquire(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        let me = self.clone();
        Box::pin(async move { blocking(move || me.link()).await })
    }

    fn release(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        let me = self.clone();
        Box::pin(async move { blocking(move || me.unlink()).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tandem-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch dir");
        d
    }

    #[test]
    fn links_move_originals_aside_and_put_them_back() {
        let d = scratch("links");
        let etc = d.join("etc/tandem/ves");
        std::fs::create_dir_all(&etc).expect("mkdir");
        std::fs::write(etc.join("local"), "node-local").expect("write");
        let data = d.join("vz/tkcluster");
        let links = Links {
            data_dir: data.clone(),
            paths: vec![etc.clone(), d.join("var/lib/new")],
        };
        for p in &links.paths {
            std::fs::create_dir_all(links.target(p)).expect("copy in data area");
        }
        std::fs::write(links.target(&etc).join("shared"), "from /vz").expect("write");
        links.link().expect("links");
        links.link().expect("idempotent");
        assert_eq!(
            std::fs::read_to_string(etc.join("shared")).expect("through link"),
            "from /vz"
        );
        assert!(d.join("var/lib/new").is_symlink());
        links.unlink().expect("unlinks");
        links.unlink().expect("idempotent");
        assert_eq!(
            std::fs::read_to_string(etc.join("local")).expect("original back"),
            "node-local"
        );
        assert!(!d.join("var/lib/new").exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_missing_copy_undoes_the_links_already_made() {
        let d = scratch("undo");
        let a = d.join("etc/a");
        std::fs::create_dir_all(&a).expect("mkdir");
        std::fs::write(a.join("f"), "original").expect("write");
        let links = Links {
            data_dir: d.join("vz/tkcluster"),
            paths: vec![a.clone(), d.join("etc/b")],
        };
        std::fs::create_dir_all(links.target(&a)).expect("copy of a only");
        let e = links.link().expect_err("b has no copy");
        assert!(
            matches!(&e, StorageError::MissingTarget { path, .. } if path.ends_with("etc/b")),
            "{e}"
        );
        assert!(!a.is_symlink(), "a was put back");
        assert_eq!(
            std::fs::read_to_string(a.join("f")).expect("read"),
            "original"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn mountinfo_names_are_unescaped() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/x\\134y"), "/x\\y");
    }
}
