//! A deterministic writer of the "newc" cpio format, the format the Linux
//! kernel unpacks as an initramfs.
//!
//! Every entry gets uid/gid 0, the one modification time given, and an inode
//! number from its position, so the same tree always gives the same bytes.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// What an entry of the archive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A symbolic link and its target.
    Symlink(String),
}

/// A file tree to be archived; paths are relative, without a leading `/`.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    entries: BTreeMap<String, (Node, u32)>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory and all its missing parents (mode 0755).
    pub fn dir(&mut self, path: &str) {
        let mut prefix = String::new();
        for part in path.trim_matches('/').split('/').filter(|p| !p.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            self.entries
                .entry(prefix.clone())
                .or_insert((Node::Dir, 0o755));
        }
    }

    /// Adds a regular file (and its parent directories).
    pub fn file(&mut self, path: &str, contents: Vec<u8>, mode: u32) {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entries
            .insert(path.to_owned(), (Node::File(contents), mode & 0o7777));
    }

    /// Adds a symbolic link (and its parent directories).
    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent);
        }
        self.entries
            .insert(path.to_owned(), (Node::Symlink(target.to_owned()), 0o777));
    }

    /// Whether the tree holds `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_start_matches('/'))
    }

    /// The entry at `path`, if any.
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.entries
            .get(path.trim_start_matches('/'))
            .map(|(n, _)| n)
    }

    /// All entries in archive order (sorted by path, so parents first).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node, u32)> {
        self.entries.iter().map(|(p, (n, m))| (p.as_str(), n, *m))
    }

    /// Total size of the file contents, in bytes.
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|(n, _)| match n {
                Node::File(c) => c.len() as u64,
                Node::Symlink(t) => t.len() as u64,
                Node::Dir => 0,
            })
            .sum()
    }

    /// Writes the tree as a newc archive with the trailer.
    pub fn write_newc<W: Write>(&self, mut out: W, mtime: u32) -> io::Result<u64> {
        let mut written = 0u64;
        for (ino, (path, (node, perm))) in self.entries.iter().enumerate() {
            let (kind, data): (u32, &[u8]) = match node {
                Node::Dir => (0o040000, &[]),
                Node::File(c) => (0o100000, c),
                Node::Symlink(t) => (0o120000, t.as_bytes()),
            };
            let nlink = if matches!(node, Node::Dir) { 2 } else { 1 };
            let ino = u32::try_from(ino + 1).map_err(|_| too_many())?;
            let size = u32::try_from(data.len()).map_err(|_| too_big(path))?;
            written += write_entry(&mut out, path, ino, kind | perm, nlink, mtime, data, size)?;
        }
        written += write_entry(&mut out, "TRAILER!!!", 0, 0, 1, 0, &[], 0)?;
        Ok(written)
    }
}

fn too_many() -> io::Error {
    io::Error::other("more than 2^32 archive entries")
}

fn too_big(path: &str) -> io::Error {
    io::Error::other(format!(
        "{path} is larger than the 4 GiB a cpio entry holds"
    ))
}

#[allow(clippy::too_many_arguments)]
fn write_entry<W: Write>(
    out: &mut W,
    name: &str,
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    data: &[u8],
    size: u32,
) -> io::Result<u64> {
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08X}{mode:08X}{uid:08X}{gid:08X}{nlink:08X}{mtime:08X}{size:08X}\
         {dmaj:08X}{dmin:08X}{rmaj:08X}{rmin:08X}{namesize:08X}{check:08X}",
        uid = 0,
        gid = 0,
        dmaj = 0,
        dmin = 0,
        rmaj = 0,
        rmin = 0,
        check = 0,
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    let mut n = header.len() + namesize;
    let pad = (4 - n % 4) % 4;
    out.write_all(&[0u8; 3][..pad])?;
    n += pad;
    out.write_all(data)?;
    n += data.len();
    let pad = (4 - n % 4) % 4;
    out.write_all(&[0u8; 3][..pad])?;
    n += pad;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_tree_same_bytes_and_aligned() {
        let build = |order: &[&str]| {
            let mut t = Tree::new();
            for p in order {
                t.file(p, p.as_bytes().to_vec(), 0o644);
            }
            t.symlink("bin/sh", "busybox");
            let mut v = Vec::new();
            t.write_newc(&mut v, 1_700_000_000).unwrap();
            v
        };
        let a = build(&["etc/a", "bin/busybox", "x"]);
        let b = build(&["x", "bin/busybox", "etc/a"]);
        assert_eq!(a, b);
        assert_eq!(a.len() % 4, 0);
        assert!(a.starts_with(b"070701"));
        let text = String::from_utf8_lossy(&a);
        // parents come before their children
        assert!(text.find("bin\0").unwrap() < text.find("bin/busybox\0").unwrap());
        assert!(text.ends_with("TRAILER!!!\0\0\0\0") || text.contains("TRAILER!!!"));
    }

    #[test]
    fn header_fields_are_right() {
        let mut t = Tree::new();
        t.file("f", b"hello".to_vec(), 0o755);
        let mut v = Vec::new();
        t.write_newc(&mut v, 0x10).unwrap();
        let h = std::str::from_utf8(&v[..110]).unwrap();
        assert_eq!(&h[6..14], "00000001"); // ino
        assert_eq!(&h[14..22], "000081ED"); // regular file 0755
        assert_eq!(&h[46..54], "00000010"); // mtime
        assert_eq!(&h[54..62], "00000005"); // size
        assert_eq!(&h[94..102], "00000002"); // "f\0"
    }
}
