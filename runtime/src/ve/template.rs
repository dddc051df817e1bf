//! OS templates in the data area (R6.4, R6.5): `/vz/template/NAME.tar`, `.tar.gz`,
//! `.tar.xz` or `.tar.zst`, each a root filesystem that `tandem ve create --template
//! NAME` unpacks. An operator adds one from a tarball on the active node, lists them
//! with the VEs that use them, and deletes one that no VE uses.
//!
//! [`check`] is the one reader of a tarball offered as a template. It reads the whole
//! file (compression told by its first bytes, not its name) and refuses it at the
//! first of:
//!
//! - a member that is not a regular file, directory, symlink or hard link: device
//!   nodes, FIFOs, sockets and sparse files are refused, not skipped, because a VE
//!   gets its `/dev` from the runtime (a tmpfs with the standard nodes, see
//!   [`super::oci`]): a root filesystem needs none, and a device node unpacked into
//!   `/vz/private` would be one on the host;
//! - an absolute path, a `..` component, a path below a symlink of the archive, a
//!   symlink that resolves outside the root, a hard link to anything but a file
//!   earlier in the archive, a path listed twice (but for directories);
//! - more than [`MAX_UNPACKED`] bytes unpacked, or more than [`RATIO_ALLOWANCE`] plus
//!   [`MAX_RATIO`] times the file's own size (a decompression bomb), more than
//!   [`MAX_MEMBERS`] members;
//! - a truncated or corrupted file (the compressed stream must end properly and the
//!   tar stream with its end-of-archive blocks), data after the archive;
//! - no root filesystem: no `etc` or neither `bin` nor `usr/bin`.
//!
//! [`Templates::add`] checks the file before anything is written into the template
//! directory, then copies it there under a temporary name (`.NAME.tar.gz.partial`),
//! checks that the copy is the file that was checked (SHA-256), syncs it and renames
//! it into place without replacing anything: a refused or failed add leaves nothing
//! behind. Adds and deletes hold a lock on the directory, one at a time.
//!
//! Not done: templates copied into the directory by hand are not checked (`ve create`
//! unpacks them with tar's own containment of paths); application templates (R6.5)
//! are OS templates to this module.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

use super::archive::{Bounded, MAX_PATH, check_relative, link_stays_inside};
use super::manager::{MINIMAL_TEMPLATE, template_files, template_name_ok};
pub use tandem_api::TemplateView;

/// The most bytes a template may unpack to (its tar stream).
pub const MAX_UNPACKED: u64 = 16 << 30;
/// The most a template's tar stream may be larger than its file, beyond
/// [`RATIO_ALLOWANCE`] (root filesystems compress about 3 to 5 times).
pub const MAX_RATIO: u64 = 100;
/// Bytes of tar stream any file may unpack to whatever its ratio (small archives of
/// mostly headers compress far better than root filesystems do).
pub const RATIO_ALLOWANCE: u64 = 16 << 20;
/// The most members a template may have (a root filesystem has some 10,000 to
/// 100,000).
pub const MAX_MEMBERS: u64 = 1_000_000;
/// Memory an xz block's decoder may take (KiB): `xz -9` needs 65 MiB.
const XZ_MEM_LIMIT_KB: u32 = 256 * 1024;
/// Room kept free in the data area beyond the template's own size.
const SPACE_MARGIN: u64 = 64 << 20;

const BOMB: &str = "the file unpacks to more than its size allows (a decompression bomb?)";

/// How a template file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar file.
    None,
    /// gzip.
    Gzip,
    /// xz.
    Xz,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Every compression, in the order [`template_files`] prefers their files.
    pub const ALL: [Compression; 4] = [
        Compression::None,
        Compression::Gzip,
        Compression::Xz,
        Compression::Zstd,
    ];

    /// The compression of a file whose first bytes (up to 512) are `head`; a plain
    /// tar file is told by its `ustar` magic.
    #[must_use]
    pub fn sniff(head: &[u8]) -> Option<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Compression::Zstd)
        } else if head.get(257..262) == Some(b"ustar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// The file name's suffix (`.tar.gz`).
    #[must_use]
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => ".tar",
            Compression::Gzip => ".tar.gz",
            Compression::Xz => ".tar.xz",
            Compression::Zstd => ".tar.zst",
        }
    }

    /// The compression a file name's suffix names, and the name without it.
    #[must_use]
    pub fn of_name(file: &str) -> Option<(&str, Compression)> {
        // The longer suffixes first: `.tar` ends none of them.
        [
            Compression::Gzip,
            Compression::Xz,
            Compression::Zstd,
            Compression::None,
        ]
        .into_iter()
        .find_map(|c| file.strip_suffix(c.suffix()).map(|stem| (stem, c)))
    }

    /// A reader of the tar stream inside `input` (compressed this way).
    ///
    /// # Errors
    /// The decoder could not be set up.
    pub fn decoder<'a>(self, input: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
        Ok(match self {
            Compression::None => Box::new(input),
            // `gzip -c a b` and parallel compressors write several members.
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
            Compression::Xz => Box::new(lzma_rust2::XzReader::new_mem_limit(
                input,
                true,
                XZ_MEM_LIMIT_KB,
            )),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?),
        })
    }
}

/// Why a tarball is not a template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// Not a tar archive in a known compression.
    #[error("it is not a tar archive (plain, gzip, xz or zstd): {0}")]
    Foreign(String),
    /// Cut short or corrupted.
    #[error("it is damaged (truncated or corrupted): {0}")]
    Damaged(String),
    /// Too large unpacked.
    #[error("{0}")]
    Bomb(String),
    /// A member a template must not have.
    #[error("{0}")]
    Member(String),
    /// Nothing that looks like a root filesystem.
    #[error("it holds no root filesystem: {0}")]
    NoRootfs(String),
}

/// What [`check`] found in a good tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The file's compression.
    pub compression: Compression,
    /// Members (the root directory itself not counted).
    pub members: u64,
    /// Bytes of regular-file data.
    pub data_bytes: u64,
    /// The file's bytes read.
    pub file_bytes: u64,
    /// SHA-256 of the file.
    pub sha256: [u8; 32],
}

/// A reader that hashes and counts what passes.
struct Hashed<R> {
    inner: R,
    hash: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A reader that notes whether its input ended (the tar reader takes the end of its
/// input for the end of the archive) or failed (the tar reader may reword the error).
struct EndSeen<R> {
    inner: R,
    ended: Rc<Cell<bool>>,
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for EndSeen<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                if n == 0 && !buf.is_empty() {
                    self.ended.set(true);
                }
                Ok(n)
            }
            Err(e) => {
                self.failed.set(true);
                Err(e)
            }
        }
    }
}

/// Reads until `buf` is full or the input ends; the bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The most bytes of tar stream a file of `file_size` bytes may unpack to.
#[must_use]
pub fn unpack_limit(file_size: u64) -> u64 {
    MAX_UNPACKED.min(RATIO_ALLOWANCE.saturating_add(MAX_RATIO.saturating_mul(file_size)))
}

/// Checks the whole tarball `input`, `file_size` bytes long (the bound of what it
/// may unpack to: [`unpack_limit`]), as a template: see the module's list.
///
/// # Errors
/// The first thing wrong with it.
pub fn check(input: impl Read, file_size: u64) -> Result<Checked, CheckError> {
    let limit = unpack_limit(file_size);
    let mut hashed = Hashed {
        inner: input,
        hash: Sha256::new(),
        count: 0,
    };
    let mut head = [0u8; 512];
    let got = read_full(&mut hashed, &mut head).map_err(|e| CheckError::Damaged(e.to_string()))?;
    let compression = Compression::sniff(&head[..got])
        .ok_or_else(|| CheckError::Foreign("its first bytes match none of them".into()))?;
    let read = Rc::new(Cell::new(0u64));
    let (members, data_bytes) = {
        let chained = io::Cursor::new(&head[..got]).chain(&mut hashed);
        let decoder = compression
            .decoder(chained)
            .map_err(|e| CheckError::Damaged(e.to_string()))?;
        let bounded = Bounded {
            inner: decoder,
            read: Rc::clone(&read),
            limit: Rc::new(Cell::new(limit)),
            message: BOMB,
        };
        let ended = Rc::new(Cell::new(false));
        let failed = Rc::new(Cell::new(false));
        let mut ar = tar::Archive::new(EndSeen {
            inner: bounded,
            ended: Rc::clone(&ended),
            failed: Rc::clone(&failed),
        });
        let bomb = || {
            CheckError::Bomb(format!(
                "it unpacks to more than {limit} bytes (at most {MAX_RATIO} times its size plus {} MiB, and at most {} GiB): a decompression bomb is refused",
                RATIO_ALLOWANCE >> 20,
                MAX_UNPACKED >> 30
            ))
        };
        let fail = |e: CheckError| {
            if read.get() >= limit { bomb() } else { e }
        };
        let counts = walk(&mut ar, limit)
            .map_err(|e| match e {
                // Not the tar layer: the compressed stream below it is cut or corrupted.
                CheckError::Foreign(m) if failed.get() => CheckError::Damaged(m),
                e => e,
            })
            .map_err(fail)?;
        if ended.get() {
            return Err(CheckError::Damaged(
                "the tar archive ends without its end-of-archive blocks".into(),
            ));
        }
        // After the end-of-archive blocks only padding; the compressed stream must end
        // properly (a cut file fails here).
        let mut rest = ar.into_inner();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rest.read(&mut buf) {
                Ok(0) => break,
                Ok(n) if buf[..n].iter().all(|b| *b == 0) => {}
                Ok(_) => {
                    return Err(CheckError::Member(
                        "data follows the end of the tar archive".into(),
                    ));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(fail(CheckError::Damaged(e.to_string()))),
            }
        }
        counts
    };
    // Nothing may follow the compressed stream.
    let mut buf = [0u8; 4096];
    loop {
        match hashed.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {
                return Err(CheckError::Member(
                    "data follows the end of the compressed stream".into(),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CheckError::Damaged(e.to_string())),
        }
    }
    Ok(Checked {
        compression,
        members,
        data_bytes,
        file_bytes: hashed.count,
        sha256: hashed.hash.finalize().into(),
    })
}

/// The member path without its `./` and trailing `/`; `None` for the root itself.
fn plain_path(raw: &str) -> Option<&str> {
    let mut p = raw;
    while let Some(rest) = p.strip_prefix("./") {
        p = rest;
    }
    let p = p.trim_end_matches('/');
    (!p.is_empty() && p != ".").then_some(p)
}

/// Walks every member of `ar`; the members and their file bytes.
fn walk<R: Read>(ar: &mut tar::Archive<R>, limit: u64) -> Result<(u64, u64), CheckError> {
    let damaged = |e: io::Error| CheckError::Damaged(e.to_string());
    let mut entries = ar.entries().map_err(damaged)?;
    let mut members = 0u64;
    let mut data_bytes = 0u64;
    let mut dirs: HashSet<String> = HashSet::new();
    let mut others: HashSet<String> = HashSet::new();
    let mut files: HashSet<String> = HashSet::new();
    let mut links: HashSet<String> = HashSet::new();
    let (mut etc, mut bin) = (false, false);
    let mut first = true;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let mut entry = match entries.next() {
            None => break,
            Some(Ok(e)) => e,
            Some(Err(e)) if first => {
                return Err(CheckError::Foreign(format!("no tar archive inside ({e})")));
            }
            Some(Err(e)) => return Err(damaged(e)),
        };
        first = false;
        let raw = String::from_utf8(entry.path_bytes().into_owned()).map_err(|e| {
            CheckError::Member(format!(
                "member {:?} has a path that is not UTF-8",
                String::from_utf8_lossy(e.as_bytes())
            ))
        })?;
        if raw.starts_with('/') {
            return Err(CheckError::Member(format!(
                "member {raw:?} has an absolute path"
            )));
        }
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            // pax global headers (`git archive`) carry no member.
            continue;
        }
        let Some(path) = plain_path(&raw) else {
            if kind.is_dir() {
                continue;
            }
            return Err(CheckError::Member(format!(
                "member {raw:?} names the root but is not a directory"
            )));
        };
        let path = path.to_owned();
        check_relative(&path).map_err(CheckError::Member)?;
        members += 1;
        if members > MAX_MEMBERS {
            return Err(CheckError::Bomb(format!(
                "it has more than {MAX_MEMBERS} members"
            )));
        }
        if let Some(l) = ancestors(&path).find(|a| links.contains(*a)) {
            return Err(CheckError::Member(format!(
                "member {path:?} lies below the symlink {l:?} of the archive"
            )));
        }
        let is_dir = kind.is_dir();
        if (is_dir && others.contains(&path))
            || (!is_dir && (others.contains(&path) || dirs.contains(&path)))
        {
            return Err(CheckError::Member(format!(
                "member {path:?} is in the archive twice"
            )));
        }
        // What unpacking reads of every header.
        let header = entry.header();
        let size = header.size().map_err(damaged)?;
        header.mode().map_err(damaged)?;
        header.uid().map_err(damaged)?;
        header.gid().map_err(damaged)?;
        header.mtime().map_err(damaged)?;
        if size > limit {
            return Err(CheckError::Bomb(format!(
                "member {path:?} declares {size} bytes, more than the file may unpack to ({limit}): a decompression bomb is refused"
            )));
        }
        let target = entry
            .link_name_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut n_total = 0u64;
                loop {
                    let n = match entry.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(damaged(e)),
                    };
                    n_total += n as u64;
                }
                if n_total != size {
                    return Err(CheckError::Damaged(format!(
                        "member {path:?} ends after {n_total} of {size} bytes"
                    )));
                }
                data_bytes = data_bytes.saturating_add(size);
                files.insert(path.clone());
                others.insert(path.clone());
            }
            tar::EntryType::Directory => {
                dirs.insert(path.clone());
            }
            tar::EntryType::Symlink => {
                let t = target;
                if t.is_empty() || t.len() > MAX_PATH || t.contains('\0') {
                    return Err(CheckError::Member(format!(
                        "symlink {path:?} has an empty, long or NUL target"
                    )));
                }
                if !link_stays_inside(&path, &t) {
                    return Err(CheckError::Member(format!(
                        "symlink {path:?} points outside the template's root ({t:?})"
                    )));
                }
                links.insert(path.clone());
                others.insert(path.clone());
            }
            tar::EntryType::Link => {
                let raw_t = target;
                let t = plain_path(&raw_t).unwrap_or("");
                if raw_t.starts_with('/') || check_relative(t).is_err() || !files.contains(t) {
                    return Err(CheckError::Member(format!(
                        "hard link {path:?} names {raw_t:?}, which is not a file earlier in the archive"
                    )));
                }
                others.insert(path.clone());
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(CheckError::Member(format!(
                    "member {path:?} is a device node: a VE gets /dev from the runtime, a template needs none (repack without them, e.g. tar --exclude='./dev/*')"
                )));
            }
            tar::EntryType::Fifo => {
                return Err(CheckError::Member(format!(
                    "member {path:?} is a FIFO: a template holds files, directories and links only"
                )));
            }
            other => {
                return Err(CheckError::Member(format!(
                    "member {path:?} is of a kind a template does not hold ({other:?})"
                )));
            }
        }
        // A directory (or a link to one, as `bin` → `usr/bin`), or something below it.
        let is = |d: &str| match path.strip_prefix(d) {
            Some("") => is_dir || kind == tar::EntryType::Symlink,
            Some(rest) => rest.starts_with('/'),
            None => false,
        };
        etc |= is("etc");
        bin |= is("bin") || is("usr/bin");
    }
    if first {
        return Err(CheckError::NoRootfs("the archive is empty".into()));
    }
    if !etc || !bin {
        let missing: Vec<&str> = [(!etc, "etc"), (!bin, "bin or usr/bin")]
            .into_iter()
            .filter_map(|(m, n)| m.then_some(n))
            .collect();
        return Err(CheckError::NoRootfs(format!(
            "no {} at its top (is the root filesystem one directory down? pack it with tar -C DIR .)",
            missing.join(" and no ")
        )));
    }
    Ok((members, data_bytes))
}

/// The directories above `path` (`a/b/c` → `a`, `a/b`).
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

/// Checks a new template's name: one that `tandem ve create --template` takes, that
/// a VE file's `OSTEMPLATE` takes, and not the built-in one's.
///
/// # Errors
/// What is wrong with it.
pub fn check_name(name: &str) -> Result<(), String> {
    if name == MINIMAL_TEMPLATE {
        return Err(format!("{name} is the built-in template's name"));
    }
    if !template_name_ok(name) || name.contains('+') || name.contains("..") {
        return Err(format!(
            "{:?} is not a template name (letters, digits, '.', '_', '-', at most 100, not starting with '.', no '..')",
            name.chars().take(120).collect::<String>()
        ));
    }
    Ok(())
}

/// Why a template was not added, listed or deleted; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The tarball cannot be opened or read.
    #[error("reading {}; nothing was changed", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Not a regular file.
    #[error("{} is not a regular file; nothing was changed", .0.display())]
    NotAFile(PathBuf),
    /// No usable name.
    #[error("{0}; nothing was changed")]
    Name(String),
    /// The name is taken.
    #[error(
        "there is a template {name} already ({file}): delete it first (tandem template delete {name}) or choose another with --name; nothing was changed"
    )]
    Exists {
        /// The name.
        name: String,
        /// Its file.
        file: String,
    },
    /// The tarball was refused.
    #[error("{} was refused as a template, nothing was written", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: CheckError,
    },
    /// The file changed between the check and the copy.
    #[error("{} changed while it was added; nothing was written", .0.display())]
    Changed(PathBuf),
    /// Not enough room.
    #[error(
        "the template needs {need} bytes, only {free} are free in {}; nothing was written",
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
    /// Another add or delete holds the directory.
    #[error("another template add or delete runs in {}; try again when it ends", .0.display())]
    Busy(PathBuf),
    /// No such template.
    #[error("there is no template {name} (available: {available}); nothing was changed")]
    Unknown {
        /// Asked for.
        name: String,
        /// What there is.
        available: String,
    },
    /// The built-in template.
    #[error(
        "{0} is built in (made from the node's own busybox, it has no file): it cannot be deleted"
    )]
    BuiltIn(String),
    /// VEs were created from it.
    #[error(
        "template {name} is used by {} (their OSTEMPLATE): it stays while they exist; nothing was changed",
        .ves.iter().map(|v| format!("VE {v}")).collect::<Vec<_>>().join(", ")
    )]
    InUse {
        /// The template.
        name: String,
        /// The VEs.
        ves: Vec<u32>,
    },
    /// A file operation in the template directory.
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

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TemplateError {
    let path = path.to_owned();
    move |source| TemplateError::Io { op, path, source }
}

/// The templates of a data area and the VE files that name them.
#[derive(Debug, Clone)]
pub struct Templates {
    /// The template directory (`/vz/template`).
    pub dir: PathBuf,
    /// The VE files (`ve-ID.conf`, their `OSTEMPLATE`).
    pub conf_dir: PathBuf,
}

impl Templates {
    /// Every template, the built-in one first, then by name, each with the VEs whose
    /// file names it.
    ///
    /// # Errors
    /// The template directory cannot be read.
    pub fn list(&self) -> Result<Vec<TemplateView>, TemplateError> {
        let users = self.users();
        let used_by = |name: &str| users.get(name).cloned().unwrap_or_default();
        let mut out = vec![TemplateView {
            name: MINIMAL_TEMPLATE.to_owned(),
            file: None,
            bytes: 0,
            modified: None,
            used_by: used_by(MINIMAL_TEMPLATE),
            built_in: true,
        }];
        let mut seen = HashSet::new();
        for (name, file) in template_files(&self.dir).map_err(io_err("reading", &self.dir))? {
            // `ve create` takes the first file of a name (template_files' order).
            if name == MINIMAL_TEMPLATE || !seen.insert(name.clone()) {
                continue;
            }
            let meta = std::fs::metadata(self.dir.join(&file)).ok();
            out.push(TemplateView {
                used_by: used_by(&name),
                name,
                file: Some(file),
                bytes: meta.as_ref().map_or(0, std::fs::Metadata::len),
                modified: meta
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
                built_in: false,
            });
        }
        out[1..].sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The VEs by the template their file names, each list sorted.
    fn users(&self) -> BTreeMap<String, Vec<u32>> {
        let mut users: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        let Ok(rd) = std::fs::read_dir(&self.conf_dir) else {
            return users;
        };
        for e in rd.filter_map(Result::ok) {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(id) = file
                .strip_prefix("ve-")
                .and_then(|f| f.strip_suffix(".conf"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            if let Some(t) = ostemplate(&text) {
                users.entry(t).or_default().push(id);
            }
        }
        for v in users.values_mut() {
            v.sort_unstable();
        }
        users
    }

    /// Adds the tarball `file` (a path on this node) as template `name`, or as the
    /// file's name without its `.tar…` suffix.
    ///
    /// # Errors
    /// See [`TemplateError`]; in every case the template directory is as it was.
    pub fn add(&self, file: &Path, name: Option<&str>) -> Result<TemplateView, TemplateError> {
        self.add_as(file, name, file)
    }

    /// [`Self::add`] of `file`, named `shown` wherever the operator reads about it
    /// (a URL the file was fetched from): the default name and every error.
    ///
    /// # Errors
    /// As [`Self::add`].
    pub fn add_as(
        &self,
        file: &Path,
        name: Option<&str>,
        shown: &Path,
    ) -> Result<TemplateView, TemplateError> {
        let name = match name {
            Some(n) => n.to_owned(),
            None => {
                let base = shown
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or_default();
                match Compression::of_name(base) {
                    Some((stem, _)) => stem.to_owned(),
                    None => {
                        return Err(TemplateError::Name(format!(
                            "{} is not named NAME.tar, .tar.gz, .tar.xz or .tar.zst: give the template's name with --name",
                            shown.display()
                        )));
                    }
                }
            }
        };
        check_name(&name).map_err(TemplateError::Name)?;
        let open_err = |source| TemplateError::Open {
            path: shown.to_owned(),
            source,
        };
        let mut src = File::open(file).map_err(open_err)?;
        let meta = src.metadata().map_err(open_err)?;
        if !meta.is_file() {
            return Err(TemplateError::NotAFile(shown.to_owned()));
        }
        std::fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
        let _lock = super::try_lock_dir(&self.dir)
            .map_err(io_err("locking", &self.dir))?
            .ok_or_else(|| TemplateError::Busy(self.dir.clone()))?;
        self.refuse_existing(&name)?;
        let checked = check(io::BufReader::new(&src), meta.len()).map_err(|source| {
            TemplateError::Refused {
                path: shown.to_owned(),
                source,
            }
        })?;
        let need = checked.file_bytes.saturating_add(SPACE_MARGIN);
        let free = super::free_bytes(&self.dir);
        if need > free {
            return Err(TemplateError::NoSpace {
                need,
                free,
                dir: self.dir.clone(),
            });
        }
        let final_name = format!("{name}{}", checked.compression.suffix());
        let target = self.dir.join(&final_name);
        let partial = self.dir.join(format!(".{final_name}.partial"));
        let _ = std::fs::remove_file(&partial);
        let r = copy_into_place(&mut src, shown, &checked, &partial, &target);
        if r.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        r?;
        Ok(self
            .list()?
            .into_iter()
            .find(|t| t.name == name)
            .unwrap_or(TemplateView {
                name,
                file: Some(final_name),
                bytes: checked.file_bytes,
                modified: None,
                used_by: Vec::new(),
                built_in: false,
            }))
    }

    fn refuse_existing(&self, name: &str) -> Result<(), TemplateError> {
        let files = template_files(&self.dir).map_err(io_err("reading", &self.dir))?;
        match files.into_iter().find(|(n, _)| n == name) {
            Some((_, file)) => Err(TemplateError::Exists {
                name: name.to_owned(),
                file,
            }),
            None => Ok(()),
        }
    }

    /// Deletes template `name` (every file of that name) when no VE's file names it.
    ///
    /// # Errors
    /// The built-in template, no such template, VEs use it, or the removal failed.
    pub fn delete(&self, name: &str) -> Result<(), TemplateError> {
        if name == MINIMAL_TEMPLATE {
            return Err(TemplateError::BuiltIn(name.to_owned()));
        }
        let all = template_files(&self.dir).map_err(io_err("reading", &self.dir))?;
        let files: Vec<String> = all
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f.clone())
            .collect();
        if files.is_empty() {
            let mut available: Vec<String> = all.into_iter().map(|(n, _)| n).collect();
            available.push(MINIMAL_TEMPLATE.to_owned());
            available.sort();
            available.dedup();
            return Err(TemplateError::Unknown {
                name: name.chars().take(120).collect(),
                available: available.join(", "),
            });
        }
        let _lock = super::try_lock_dir(&self.dir)
            .map_err(io_err("locking", &self.dir))?
            .ok_or_else(|| TemplateError::Busy(self.dir.clone()))?;
        if let Some(ves) = self.users().remove(name) {
            return Err(TemplateError::InUse {
                name: name.to_owned(),
                ves,
            });
        }
        for f in &files {
            let p = self.dir.join(f);
            std::fs::remove_file(&p).map_err(io_err("removing", &p))?;
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing", &self.dir))
    }
}

/// Copies the checked file `src` to `partial`, checks the copy is what was checked,
/// and renames it to `target` (never replacing a file).
fn copy_into_place(
    src: &mut File,
    path: &Path,
    checked: &Checked,
    partial: &Path,
    target: &Path,
) -> Result<(), TemplateError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    src.rewind().map_err(|source| TemplateError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(partial)
        .map_err(io_err("creating", partial))?;
    let mut hashed = Hashed {
        inner: &*src,
        hash: Sha256::new(),
        count: 0,
    };
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match hashed.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(TemplateError::Open {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        out.write_all(&buf[..n])
            .map_err(io_err("writing", partial))?;
    }
    let sum: [u8; 32] = hashed.hash.finalize().into();
    if hashed.count != checked.file_bytes || sum != checked.sha256 {
        return Err(TemplateError::Changed(path.to_owned()));
    }
    out.sync_all().map_err(io_err("syncing", partial))?;
    drop(out);
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        partial,
        rustix::fs::CWD,
        target,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .map_err(|e| io_err("moving into place", target)(e.into()))?;
    let dir = target.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}

/// The template a VE file names (`OSTEMPLATE`, without vz's leading dot); from the
/// raw line when the file has other problems, so that a damaged VE file still keeps
/// its template.
#[must_use]
pub fn ostemplate(text: &str) -> Option<String> {
    if let Ok(f) = super::conf::VeFile::parse(text) {
        return f.ostemplate;
    }
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("OSTEMPLATE=")?;
        let v = v
            .trim()
            .trim_matches('"')
            .trim_matches('\'')
            .trim_start_matches('.');
        (!v.is_empty()).then(|| v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar stream of `members` (path, kind, data or link target), end blocks
    /// included.
    pub(crate) fn tar_of(members: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_mtime(1_700_000_000);
            h.set_uid(0);
            h.set_gid(0);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    // Raw bytes: the tar crate's setters refuse some hostile names.
                    let name = &mut h.as_old_mut().linkname;
                    name[..data.len()].copy_from_slice(data);
                    set_raw_path(&mut h, path);
                    h.set_cksum();
                    b.append(&h, io::empty()).expect("append");
                }
                _ => {
                    h.set_size(data.len() as u64);
                    set_raw_path(&mut h, path);
                    h.set_cksum();
                    b.append(&h, *data).expect("append");
                }
            }
        }
        b.into_inner().expect("tar")
    }

    fn set_raw_path(h: &mut tar::Header, path: &str) {
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
    }

    use tar::EntryType::{Block, Char, Directory, Fifo, Link, Regular, Symlink};

    fn rootfs() -> Vec<(&'static str, tar::EntryType, &'static [u8])> {
        vec![
            ("./", Directory, b""),
            ("./etc/", Directory, b""),
            ("./etc/hostname", Regular, b"t\n"),
            ("./usr/", Directory, b""),
            ("./usr/bin/", Directory, b""),
            ("./usr/bin/sh", Regular, b"#!\n"),
            ("./usr/bin/ash", Link, b"./usr/bin/sh"),
            ("./bin", Symlink, b"usr/bin"),
            ("./etc/localtime", Symlink, b"/usr/share/zoneinfo/UTC"),
        ]
    }

    fn check_bytes(b: &[u8]) -> Result<Checked, CheckError> {
        check(b, b.len() as u64)
    }

    #[test]
    fn a_root_filesystem_passes_in_every_compression() {
        let t = tar_of(&rootfs());
        let c = check_bytes(&t).expect("plain");
        assert_eq!(
            (c.compression, c.members, c.data_bytes),
            (Compression::None, 8, 5)
        );
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t).expect("gz");
        let gz = gz.finish().expect("gz");
        assert_eq!(check_bytes(&gz).expect("gz").compression, Compression::Gzip);
        let zst = zstd::encode_all(&t[..], 3).expect("zstd");
        assert_eq!(
            check_bytes(&zst).expect("zst").compression,
            Compression::Zstd
        );
        let mut xz =
            lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::default()).expect("xz");
        xz.write_all(&t).expect("xz");
        let xz = xz.finish().expect("xz");
        assert_eq!(check_bytes(&xz).expect("xz").compression, Compression::Xz);
    }

    fn refused_with(extra: &[(&str, tar::EntryType, &[u8])], want: &str) {
        let mut m = rootfs();
        m.extend_from_slice(extra);
        let e = check_bytes(&tar_of(&m)).expect_err(want);
        assert!(e.to_string().contains(want), "{e} (wanted {want:?})");
    }

    #[test]
    fn hostile_members_are_refused() {
        refused_with(&[("../x", Regular, b"x")], "climbs out");
        refused_with(&[("./etc/../../x", Regular, b"x")], "climbs out");
        refused_with(&[("/etc/passwd", Regular, b"x")], "absolute path");
        refused_with(&[("./dev/sda", Block, b"")], "device node");
        refused_with(&[("./dev/null", Char, b"")], "device node");
        refused_with(&[("./run/initctl", Fifo, b"")], "FIFO");
        refused_with(&[("./x", Symlink, b"../../etc/shadow")], "points outside");
        refused_with(&[("./etc/x", Symlink, b"/../../root")], "points outside");
        refused_with(&[("./h", Link, b"/etc/shadow")], "not a file earlier");
        refused_with(&[("./h", Link, b"./usr/bin/none")], "not a file earlier");
        refused_with(&[("./h", Link, b"./etc")], "not a file earlier");
        refused_with(
            &[
                ("./esc", Symlink, b"/"),
                ("./esc/etc/passwd", Regular, b"x"),
            ],
            "below the symlink",
        );
        refused_with(&[("./etc/hostname", Regular, b"again")], "twice");
        refused_with(&[("./usr//bin", Directory, b"")], "plain form");
    }

    #[test]
    fn something_that_is_no_root_filesystem_is_refused() {
        let e = check_bytes(&tar_of(&[
            ("./srv/", Directory, b""),
            ("./srv/x", Regular, b"x"),
        ]))
        .expect_err("no rootfs");
        assert!(
            e.to_string().contains("no etc and no bin or usr/bin"),
            "{e}"
        );
        let e = check_bytes(&tar_of(&[
            ("rootfs/", Directory, b""),
            ("rootfs/etc/", Directory, b""),
            ("rootfs/bin/", Directory, b""),
        ]))
        .expect_err("one down");
        assert!(matches!(e, CheckError::NoRootfs(_)), "{e}");
        let e = check_bytes(&tar_of(&[
            ("./etc", Regular, b""),
            ("./bin/", Directory, b""),
        ]))
        .expect_err("etc a file");
        assert!(e.to_string().contains("no etc at its top"), "{e}");
        let e = check_bytes(b"hello, this is text and no tar").expect_err("text");
        assert!(matches!(e, CheckError::Foreign(_)), "{e}");
        let e = check_bytes(&[0u8; 1024]).expect_err("zeros");
        assert!(matches!(e, CheckError::Foreign(_)), "{e}");
    }

    #[test]
    fn truncated_and_trailing_data_are_refused() {
        let t = tar_of(&rootfs());
        // A header whose owner is not a number (what unpacking reads).
        let mut bad = t.clone();
        bad[512 + 108..512 + 116].copy_from_slice(b"zzzzzzz\0");
        let mut h = tar::Header::from_byte_slice(&bad[512..1024]).clone();
        h.set_cksum();
        bad[512..1024].copy_from_slice(h.as_bytes());
        let e = check_bytes(&bad).expect_err("uid");
        assert!(matches!(e, CheckError::Damaged(_)), "{e}");
        // Cut at a block boundary: the tar reader alone would take it for the end.
        let cut = &t[..t.len() - 1024 - 512];
        let e = check_bytes(cut).expect_err("cut at a block");
        assert!(matches!(e, CheckError::Damaged(_)), "{e}");
        let e = check_bytes(&t[..t.len() / 2 + 7]).expect_err("cut");
        assert!(matches!(e, CheckError::Damaged(_)), "{e}");
        let zst = zstd::encode_all(&t[..], 3).expect("zstd");
        let e = check_bytes(&zst[..zst.len() - 5]).expect_err("cut zstd");
        assert!(matches!(e, CheckError::Damaged(_)), "{e}");
        let mut more = zst.clone();
        more.extend_from_slice(b"appended");
        assert!(check_bytes(&more).is_err());
        let mut more = t.clone();
        more.extend_from_slice(&tar_of(&[("./late", Regular, b"x")]));
        let e = check_bytes(&more).expect_err("second archive");
        assert!(e.to_string().contains("data follows"), "{e}");
    }

    #[test]
    fn a_bomb_is_refused_by_the_ratio_and_by_its_declared_size() {
        // 64 MiB of zeros in 8 members, each below the limit: compressed to a few KiB.
        let mut m = rootfs();
        let zeros = vec![0u8; 8 << 20];
        let names = ["z0", "z1", "z2", "z3", "z4", "z5", "z6", "z7"];
        for n in names {
            m.push((n, Regular, &zeros));
        }
        let zst = zstd::encode_all(&tar_of(&m)[..], 3).expect("zstd");
        assert!(zst.len() < 64 << 10);
        let e = check_bytes(&zst).expect_err("bomb");
        assert!(matches!(e, CheckError::Bomb(_)), "{e}");
        assert!(e.to_string().contains("times its size"), "{e}");
        // A header that declares more than the file may unpack to.
        let mut t = tar_of(&rootfs());
        let mut h = tar::Header::new_gnu();
        h.set_path("huge").expect("path");
        h.set_size(1 << 40);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(Regular);
        h.set_cksum();
        t.truncate(t.len() - 1024);
        t.extend_from_slice(h.as_bytes());
        let e = check_bytes(&t).expect_err("declared");
        assert!(e.to_string().contains("declares"), "{e}");
    }

    #[test]
    fn a_file_that_changed_after_its_check_is_not_put_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("t.tar");
        let t = tar_of(&rootfs());
        std::fs::write(&src, &t).expect("write");
        let checked = check_bytes(&t).expect("good");
        let mut other = t.clone();
        other[600] ^= 1;
        std::fs::write(&src, &other).expect("write");
        let (partial, target) = (dir.path().join(".t.tar.partial"), dir.path().join("t.tar2"));
        let mut f = File::open(&src).expect("open");
        let e = copy_into_place(&mut f, &src, &checked, &partial, &target).expect_err("changed");
        assert!(matches!(e, TemplateError::Changed(_)), "{e}");
        assert!(!target.exists());
        // The same bytes go into place, and never over an existing file.
        std::fs::write(&src, &t).expect("write");
        let _ = std::fs::remove_file(&partial);
        copy_into_place(&mut f, &src, &checked, &partial, &target).expect("copied");
        assert_eq!(std::fs::read(&target).expect("read"), t);
        assert!(!partial.exists());
        let e = copy_into_place(&mut f, &src, &checked, &partial, &target).expect_err("exists");
        assert!(matches!(e, TemplateError::Io { .. }), "{e}");
    }

    #[test]
    fn names_and_suffixes() {
        assert_eq!(
            Compression::of_name("debian-12.tar.xz"),
            Some(("debian-12", Compression::Xz))
        );
        assert_eq!(
            Compression::of_name("a.tar"),
            Some(("a", Compression::None))
        );
        assert_eq!(Compression::of_name("a.zip"), None);
        assert!(check_name("debian-12").is_ok());
        for bad in [
            MINIMAL_TEMPLATE,
            "../x",
            "a/b",
            ".h",
            "a b",
            "a+b",
            "a..b",
            "",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(plain_path("./"), None);
        assert_eq!(plain_path("././etc/"), Some("etc"));
        assert_eq!(
            ostemplate("OSTEMPLATE=\".centos-4\"\nX Y\n").as_deref(),
            Some("centos-4")
        );
        assert_eq!(
            ostemplate("OSTEMPLATE=\"debian-12\"\n").as_deref(),
            Some("debian-12")
        );
    }
}
