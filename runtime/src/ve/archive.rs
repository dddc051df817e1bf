//! The file format of a VE backup (`ve-<ID>-<UTC time>.tar.zst`) and its one reader.
//!
//! The file is a tar stream compressed with zstd, written as two or more zstd frames
//! that decode as one stream (`zstd -dc FILE | tar tv` lists it):
//!
//! 1. `tandem-ve-backup.json`, the [`Manifest`]: format, VE, host, time, tandem version,
//!    every member with its kind, size and SHA-256, and the totals. It comes first so
//!    that a reader knows what to expect before it reads any data.
//! 2. `ve.conf`, the VE's file, then `private` and everything below it (the root
//!    filesystem), in the manifest's order; the end-of-archive blocks.
//!
//! [`read_backup`] is the only way a backup file is read: it checks the whole stream
//! against the manifest (every member in its order, kind, size, checksum, link target;
//! no absolute path, no `..`, no device node or FIFO, no link out of the VE; the
//! decompressed size bounded by what the manifest declares) and, given a staging
//! directory, unpacks into it as it goes. Its caller throws the staging directory away
//! on any error.

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's member name; always the first member.
pub const MANIFEST_NAME: &str = "tandem-ve-backup.json";
/// The VE file's member name.
pub const CONF_NAME: &str = "ve.conf";
/// The root filesystem's member name (a directory; its contents below it).
pub const PRIVATE_NAME: &str = "private";
/// The manifest's `format`.
pub const FORMAT: &str = "tandem-ve-backup";
/// The manifest's `format-version` this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The largest manifest read (bytes).
pub const MAX_MANIFEST: u64 = 64 * 1024 * 1024;
/// The largest VE file read (bytes).
pub const MAX_CONF: u64 = 1024 * 1024;
/// The longest member path or link target.
pub const MAX_PATH: usize = 4096;

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (its target in [`Member::target`]).
    Symlink,
    /// A second name of a file earlier in the archive ([`Member::target`]).
    Hardlink,
}

/// One member of the archive, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Member {
    /// The path in the archive (`ve.conf`, `private`, `private/etc/hostname`).
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Bytes of data (0 but for files).
    pub size: u64,
    /// SHA-256 of the data, hex (files only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A symlink's target, or the archive path a hard link names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The backup's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The VE backed up.
    pub ve_id: u32,
    /// The node that made it.
    pub host: String,
    /// When (UTC, `2026-12-06T23:40:00Z`).
    pub created: String,
    /// The tandem version that made it.
    pub tandem_version: String,
    /// Every member after the manifest, in the archive's order.
    pub members: Vec<Member>,
    /// How many regular files.
    pub total_files: u64,
    /// Their bytes.
    pub total_bytes: u64,
    /// Entries of the root filesystem that were not backed up (sockets, FIFOs, device
    /// nodes, other filesystems mounted inside), by path.
    #[serde(default)]
    pub skipped: Vec<String>,
}

impl Manifest {
    /// Checks the manifest on its own: format, counts, every path and link target.
    ///
    /// # Errors
    /// What is wrong, naming the member.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "the manifest's format is {:?}, not {FORMAT:?}",
                self.format
            ));
        }
        if self.format_version != FORMAT_VERSION {
            return Err(format!(
                "format version {} is not supported (this tandem reads version {FORMAT_VERSION})",
                self.format_version
            ));
        }
        let mut files = 0u64;
        let mut bytes = 0u64;
        let mut seen = HashSet::new();
        let mut dirs: HashSet<&str> = HashSet::new();
        let mut regular: HashSet<&str> = HashSet::new();
        for (i, m) in self.members.iter().enumerate() {
            check_path(&m.path)?;
            if !seen.insert(m.path.as_str()) {
                return Err(format!("member {:?} is listed twice", m.path));
            }
            match i {
                0 if m.path != CONF_NAME || m.kind != Kind::File => {
                    return Err(format!("the first member must be the file {CONF_NAME}"));
                }
                1 if m.path != PRIVATE_NAME || m.kind != Kind::Dir => {
                    return Err(format!(
                        "the second member must be the directory {PRIVATE_NAME}"
                    ));
                }
                _ => {}
            }
            if i >= 2 {
                if !m.path.starts_with("private/") {
                    return Err(format!("member {:?} is not below {PRIVATE_NAME}/", m.path));
                }
                let parent = m.path.rsplit_once('/').map_or("", |(p, _)| p);
                if !dirs.contains(parent) {
                    return Err(format!(
                        "member {:?} comes before its directory (or its parent is not a directory)",
                        m.path
                    ));
                }
            }
            if m.kind != Kind::File && m.size != 0 {
                return Err(format!("member {:?} is not a file but has a size", m.path));
            }
            match m.kind {
                Kind::File => {
                    let ok = m
                        .sha256
                        .as_deref()
                        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
                    if !ok {
                        return Err(format!("member {:?} has no valid SHA-256", m.path));
                    }
                    if m.path == CONF_NAME && m.size > MAX_CONF {
                        return Err(format!("{CONF_NAME} is larger than {MAX_CONF} bytes"));
                    }
                    files += 1;
                    bytes = bytes.saturating_add(m.size);
                    regular.insert(&m.path);
                }
                Kind::Dir => {
                    dirs.insert(&m.path);
                }
                Kind::Symlink => {
                    let t = m.target.as_deref().unwrap_or("");
                    check_symlink(&m.path, t)?;
                }
                Kind::Hardlink => {
                    let t = m.target.as_deref().unwrap_or("");
                    if !regular.contains(t) || !t.starts_with("private/") {
                        return Err(format!(
                            "hard link {:?} names {t:?}, which is not a file earlier in the VE",
                            m.path
                        ));
                    }
                }
            }
        }
        if self.members.len() < 2 {
            return Err(format!(
                "the manifest lists no {CONF_NAME} and {PRIVATE_NAME}"
            ));
        }
        if files != self.total_files || bytes != self.total_bytes {
            return Err(format!(
                "the manifest's totals ({} files, {} bytes) are not those of its members ({files} files, {bytes} bytes)",
                self.total_files, self.total_bytes
            ));
        }
        Ok(())
    }

    /// The most bytes the decompressed tar stream may hold after the manifest: every
    /// member's data rounded to blocks, its header, and long-name headers.
    #[must_use]
    pub fn stream_bound(&self) -> u64 {
        let blocks = |n: u64| n.div_ceil(512) * 512;
        let mut total = 1024 * 1024; // end-of-archive blocks and padding
        for m in &self.members {
            let names = (m.path.len() + m.target.as_deref().map_or(0, str::len)) as u64;
            total += 3 * 512 + 2 * blocks(names + 1) + blocks(m.size);
        }
        total
    }
}

/// Checks a member path: relative, plain components only, short, and one of the
/// backup's names.
///
/// # Errors
/// What is wrong, naming the path.
pub fn check_path(p: &str) -> Result<(), String> {
    check_relative(p)?;
    if p != CONF_NAME && p != PRIVATE_NAME && !p.starts_with("private/") {
        return Err(format!(
            "member {p:?} is neither {CONF_NAME} nor below {PRIVATE_NAME}/"
        ));
    }
    Ok(())
}

/// Checks a path inside an archive (a VE backup, an OS template): relative, plain
/// components only (no `..`, `.` or empty ones), no NUL, at most [`MAX_PATH`].
///
/// # Errors
/// What is wrong, naming the path.
pub fn check_relative(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > MAX_PATH {
        return Err(format!("member path {p:?} is empty or too long"));
    }
    if p.starts_with('/') {
        return Err(format!("member {p:?} has an absolute path"));
    }
    if p.contains('\0') {
        return Err(format!("member {p:?} has a NUL in its path"));
    }
    for part in p.split('/') {
        match part {
            ".." => return Err(format!("member {p:?} climbs out with \"..\"")),
            "" | "." => return Err(format!("member path {p:?} is not in plain form")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a symlink's target: resolved inside the VE's root (an absolute target is
/// absolute inside the VE), it stays inside it.
///
/// # Errors
/// The link points outside the VE.
pub fn check_symlink(path: &str, target: &str) -> Result<(), String> {
    if target.is_empty() || target.len() > MAX_PATH || target.contains('\0') {
        return Err(format!("symlink {path:?} has an empty, long or NUL target"));
    }
    let in_root = path.strip_prefix("private/").unwrap_or(path);
    if link_stays_inside(in_root, target) {
        Ok(())
    } else {
        Err(format!(
            "symlink {path:?} points outside the VE ({target:?})"
        ))
    }
}

/// Whether a symlink at `path` (relative to a root: `etc/localtime`) pointing at
/// `target` resolves inside that root, an absolute target being absolute inside it.
#[must_use]
pub fn link_stays_inside(path: &str, target: &str) -> bool {
    // Depth of the link's directory below the root (`a/b/link` → 2).
    let mut depth: i64 = if target.starts_with('/') {
        0
    } else {
        path.split('/').count() as i64 - 1
    };
    for c in Path::new(target).components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::Normal(_) => depth += 1,
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    true
}

/// Hex of a digest.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The header of a regular file of `size` bytes owned by root, without its name.
#[must_use]
pub fn file_header(size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// The tar bytes of one regular-file member holding `data` (header, data, padding),
/// without the end-of-archive blocks: the manifest's frame.
///
/// # Errors
/// The name does not fit a tar header.
pub fn member_bytes(name: &str, data: &[u8], mtime: u64) -> io::Result<Vec<u8>> {
    let mut h = file_header(data.len() as u64, 0o600, mtime);
    h.set_path(name)?;
    h.set_cksum();
    let mut out = Vec::with_capacity(512 + data.len() + 512);
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    Ok(out)
}

/// How far a read got: bytes of the decompressed stream, for progress.
pub type Progress<'a> = dyn FnMut(u64) + 'a;

/// A reader that refuses to yield more than a limit that can be raised as the reader
/// learns more (the manifest); `read` counts what it yielded, so a caller can tell
/// a refusal of this reader from other errors (the tar reader may reword them).
pub(crate) struct Bounded<R> {
    pub(crate) inner: R,
    pub(crate) read: Rc<Cell<u64>>,
    pub(crate) limit: Rc<Cell<u64>>,
    /// The error's text when the limit is passed.
    pub(crate) message: &'static str,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = self.limit.get().saturating_sub(self.read.get());
        if room == 0 {
            // One byte more than allowed means the stream is larger than declared.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(io::ErrorKind::InvalidData, self.message)),
            };
        }
        let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.read.set(self.read.get() + got as u64);
        Ok(got)
    }
}

const BOMB: &str =
    "the file unpacks to more data than its manifest declares (a decompression bomb?)";

/// Why a backup file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not a tandem VE backup at all.
    #[error("not a tandem VE backup: {0}")]
    Foreign(String),
    /// Damaged: cut short or corrupted.
    #[error("the backup is damaged (truncated or corrupted): {0}")]
    Damaged(String),
    /// A member that must never be unpacked, or a mismatch with the manifest.
    #[error("the backup is refused: {0}")]
    Refused(String),
    /// Writing into the staging directory failed.
    #[error("unpacking into {}", path.display())]
    Write {
        /// The staging path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What the caller decides once the manifest is read: `Ok(Some(dir))` unpacks into the
/// (empty, existing) staging directory `dir`, `Ok(None)` only checks.
pub type Plan<'a> = dyn FnMut(&Manifest) -> Result<Option<PathBuf>, ReadError> + 'a;

fn damaged(e: &io::Error) -> ReadError {
    if e.kind() == io::ErrorKind::InvalidData && e.to_string() == BOMB {
        ReadError::Refused(BOMB.to_owned())
    } else {
        ReadError::Damaged(e.to_string())
    }
}

/// Reads a whole backup from `input` (the compressed file): the manifest, then every
/// member checked against it, unpacked into the directory `plan` returns (if any).
///
/// # Errors
/// The first thing wrong; what was unpacked before it is the caller's to remove.
pub fn read_backup(
    input: impl Read,
    plan: &mut Plan<'_>,
    progress: &mut Progress<'_>,
) -> Result<Manifest, ReadError> {
    let mut input = io::BufReader::new(input);
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match input.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Damaged(e.to_string())),
        }
    }
    if got < 4 || magic != [0x28, 0xb5, 0x2f, 0xfd] {
        return Err(ReadError::Foreign("it is not zstd-compressed".into()));
    }
    let chained = io::Cursor::new(magic).chain(input);
    let decoder =
        zstd::stream::read::Decoder::new(chained).map_err(|e| ReadError::Damaged(e.to_string()))?;
    let read = Rc::new(Cell::new(0u64));
    let limit = Rc::new(Cell::new(MAX_MANIFEST + 4096));
    let bounded = Bounded {
        inner: decoder,
        read: Rc::clone(&read),
        limit: Rc::clone(&limit),
        message: BOMB,
    };
    let mut ar = tar::Archive::new(bounded);
    let mut entries = ar.entries().map_err(|e| damaged(&e))?;

    // 1. The manifest.
    let mut first = match entries.next() {
        None => return Err(ReadError::Foreign("the archive is empty".into())),
        Some(Err(e)) => return Err(ReadError::Foreign(format!("no tar archive inside ({e})"))),
        Some(Ok(e)) => e,
    };
    let name = first.path_bytes().into_owned();
    if name != MANIFEST_NAME.as_bytes() {
        return Err(ReadError::Foreign(format!(
            "its first member is {:?}, not the manifest {MANIFEST_NAME}",
            String::from_utf8_lossy(&name)
        )));
    }
    let size = first.header().size().map_err(|e| damaged(&e))?;
    if size > MAX_MANIFEST {
        return Err(ReadError::Refused(format!(
            "the manifest is {size} bytes (at most {MAX_MANIFEST})"
        )));
    }
    let mut text = Vec::new();
    first
        .by_ref()
        .take(MAX_MANIFEST)
        .read_to_end(&mut text)
        .map_err(|e| damaged(&e))?;
    drop(first);
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| {
        ReadError::Foreign(format!("its manifest is not a VE backup manifest ({e})"))
    })?;
    manifest.check().map_err(ReadError::Refused)?;
    limit.set(read.get().saturating_add(manifest.stream_bound()));
    let staging = plan(&manifest)?;

    // 2. Every member, in the manifest's order.
    let mut done_bytes = 0u64;
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    for (i, want) in manifest.members.iter().enumerate() {
        let mut entry = match entries.next() {
            None => {
                return Err(ReadError::Damaged(format!(
                    "the archive ends before member {:?} ({} of {} members read)",
                    want.path,
                    i,
                    manifest.members.len()
                )));
            }
            Some(Err(e)) => return Err(damaged(&e)),
            Some(Ok(e)) => e,
        };
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| ReadError::Refused("a member's path is not UTF-8".into()))?;
        let path = path.trim_end_matches('/').to_owned();
        check_path(&path).map_err(ReadError::Refused)?;
        let header = entry.header();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::Hardlink,
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(ReadError::Refused(format!(
                    "member {path:?} is a device node"
                )));
            }
            tar::EntryType::Fifo => {
                return Err(ReadError::Refused(format!("member {path:?} is a FIFO")));
            }
            other => {
                return Err(ReadError::Refused(format!(
                    "member {path:?} is of a kind a VE backup does not hold ({other:?})"
                )));
            }
        };
        if path != want.path || kind != want.kind {
            return Err(ReadError::Refused(format!(
                "member {path:?} ({kind:?}) is not the one the manifest lists next ({:?}, {:?})",
                want.path, want.kind
            )));
        }
        let size = header.size().map_err(|e| damaged(&e))?;
        if size != want.size {
            return Err(ReadError::Refused(format!(
                "member {path:?} holds {size} bytes, the manifest says {}",
                want.size
            )));
        }
        let mode = header.mode().map_err(|e| damaged(&e))? & 0o7777;
        let uid = header.uid().map_err(|e| damaged(&e))?;
        let gid = header.gid().map_err(|e| damaged(&e))?;
        let mtime = header.mtime().map_err(|e| damaged(&e))?;
        let link: Option<String> = entry
            .link_name_bytes()
            .map(|b: std::borrow::Cow<'_, [u8]>| String::from_utf8_lossy(&b).into_owned());
        if matches!(kind, Kind::Symlink | Kind::Hardlink) && link != want.target {
            return Err(ReadError::Refused(format!(
                "link {path:?} points to {link:?}, the manifest says {:?}",
                want.target
            )));
        }
        let dest = staging.as_ref().map(|s| s.join(&path));
        let werr = |p: &Path| {
            let p = p.to_owned();
            move |source| ReadError::Write { path: p, source }
        };
        match kind {
            Kind::File => {
                let mut out = match &dest {
                    Some(d) => Some(create_file(d, mode).map_err(werr(d))?),
                    None => None,
                };
                let mut h = Sha256::new();
                let mut buf = vec![0u8; 256 * 1024];
                let mut n_total = 0u64;
                loop {
                    let n = match entry.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(damaged(&e)),
                    };
                    h.update(&buf[..n]);
                    n_total += n as u64;
                    if let (Some(o), Some(d)) = (out.as_mut(), &dest) {
                        o.write_all(&buf[..n]).map_err(werr(d))?;
                    }
                    done_bytes += n as u64;
                    progress(done_bytes);
                }
                if n_total != size {
                    return Err(ReadError::Damaged(format!(
                        "member {path:?} ends after {n_total} of {size} bytes"
                    )));
                }
                let sum = hex(&h.finalize());
                if Some(&sum) != want.sha256.as_ref() {
                    return Err(ReadError::Refused(format!(
                        "member {path:?} does not match its checksum in the manifest"
                    )));
                }
                if let (Some(o), Some(d)) = (out, &dest) {
                    finish_file(&o, uid, gid, mode, mtime).map_err(werr(d))?;
                }
            }
            Kind::Dir => {
                if let Some(d) = &dest {
                    std::fs::create_dir(d).map_err(werr(d))?;
                    set_owner_mode(d, uid, gid, Some(mode)).map_err(werr(d))?;
                    dir_times.push((d.clone(), mtime));
                }
            }
            Kind::Symlink => {
                if let (Some(d), Some(t)) = (&dest, &want.target) {
                    std::os::unix::fs::symlink(t, d).map_err(werr(d))?;
                    set_owner_mode(d, uid, gid, None).map_err(werr(d))?;
                }
            }
            Kind::Hardlink => {
                if let (Some(d), Some(t), Some(s)) = (&dest, &want.target, &staging) {
                    std::fs::hard_link(s.join(t), d).map_err(werr(d))?;
                }
            }
        }
    }
    match entries.next() {
        None => {}
        Some(Err(e)) => return Err(damaged(&e)),
        Some(Ok(e)) => {
            return Err(ReadError::Refused(format!(
                "member {:?} is not in the manifest",
                String::from_utf8_lossy(&e.path_bytes())
            )));
        }
    }
    // What follows the end-of-archive blocks must be padding, and the zstd stream must
    // end properly (a cut file fails here).
    let mut rest = ar.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if buf[..n].iter().any(|b| *b != 0) {
                    return Err(ReadError::Refused(
                        "data follows the end of the archive".into(),
                    ));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(damaged(&e)),
        }
    }
    for (d, t) in dir_times.iter().rev() {
        set_mtime(d, t);
    }
    Ok(manifest)
}

fn create_file(path: &Path, mode: u32) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(mode & 0o777)
        .open(path)
}

fn finish_file(f: &std::fs::File, uid: u64, gid: u64, mode: u32, mtime: u64) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = ids(uid, gid)?;
    rustix::fs::fchown(f, Some(uid), Some(gid)).map_err(io::Error::from)?;
    // After the owner: chown clears set-id bits.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    let t = rustix::fs::Timestamps {
        last_access: ts(mtime),
        last_modification: ts(mtime),
    };
    rustix::fs::futimens(f, &t).map_err(io::Error::from)
}

fn ids(uid: u64, gid: u64) -> io::Result<(rustix::fs::Uid, rustix::fs::Gid)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "owner out of range");
    let uid = u32::try_from(uid).map_err(|_| bad())?;
    let gid = u32::try_from(gid).map_err(|_| bad())?;
    Ok((
        rustix::fs::Uid::from_raw(uid),
        rustix::fs::Gid::from_raw(gid),
    ))
}

fn ts(secs: u64) -> rustix::fs::Timespec {
    rustix::fs::Timespec {
        tv_sec: i64::try_from(secs).unwrap_or(0),
        tv_nsec: 0,
    }
}

fn set_owner_mode(path: &Path, uid: u64, gid: u64, mode: Option<u32>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let (uid, gid) = ids(uid, gid)?;
    rustix::fs::chownat(
        rustix::fs::CWD,
        path,
        Some(uid),
        Some(gid),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)?;
    if let Some(m) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))?;
    }
    Ok(())
}

fn set_mtime(path: &Path, secs: &u64) {
    let t = rustix::fs::Timestamps {
        last_access: ts(*secs),
        last_modification: ts(*secs),
    };
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
}

/// Reads only the manifest (the first member) of a backup file, checked on its own.
///
/// # Errors
/// As [`read_backup`] for the manifest.
pub fn read_manifest(input: impl Read) -> Result<Manifest, ReadError> {
    let mut found = None;
    let r = read_backup(
        input,
        &mut |m| {
            found = Some(m.clone());
            Err(ReadError::Refused(String::new()))
        },
        &mut |_| {},
    );
    match (found, r) {
        (Some(m), _) => Ok(m),
        (None, Err(e)) => Err(e),
        (None, Ok(m)) => Ok(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_link_targets() {
        assert!(check_path("private/etc/passwd").is_ok());
        assert!(check_path("/etc/passwd").is_err());
        assert!(check_path("private/../x").is_err());
        assert!(check_path("private//x").is_err());
        assert!(check_path("other/x").is_err());
        assert!(check_symlink("private/bin", "usr/bin").is_ok());
        assert!(check_symlink("private/etc/localtime", "/usr/share/zoneinfo/UTC").is_ok());
        assert!(check_symlink("private/etc/x", "../usr/lib").is_ok());
        assert!(check_symlink("private/etc/x", "../../etc/shadow").is_err());
        assert!(check_symlink("private/x", "/../../etc").is_err());
        assert!(check_symlink("private/x", "..").is_err());
    }
}
