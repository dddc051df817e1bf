//! Checks that every dynamically linked program and library of the node's root
//! filesystem finds its interpreter and the shared libraries it needs, so that a
//! missing library is a build error naming both, not a node that cannot start an
//! engine.

use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, FileKind};

use crate::cpio::{Node, Tree};

/// Directories the dynamic loader searches on the node (Debian's multiarch layout).
const LIBRARY_DIRS: &[&str] = &[
    "lib/x86_64-linux-gnu",
    "usr/lib/x86_64-linux-gnu",
    "lib64",
    "lib",
    "usr/lib",
];

/// A program or library with a dependency the tree does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// Path in the tree.
    pub file: String,
    /// The interpreter or library it needs.
    pub needs: String,
}

/// Lists every unresolved interpreter or `DT_NEEDED` library in the tree.
#[must_use]
pub fn unresolved(tree: &Tree) -> Vec<Unresolved> {
    let mut out = Vec::new();
    for (path, node, _) in tree.iter() {
        let Node::File(data) = node else { continue };
        if !data.starts_with(b"\x7fELF") || FileKind::parse(&data[..]).ok() != Some(FileKind::Elf64)
        {
            continue;
        }
        let Ok(file) = ElfFile64::<Endianness>::parse(&data[..]) else {
            out.push(Unresolved {
                file: path.to_owned(),
                needs: "a readable ELF header".into(),
            });
            continue;
        };
        for need in dependencies(&file) {
            let found = if need.starts_with('/') {
                resolves(tree, need.trim_start_matches('/'))
            } else {
                LIBRARY_DIRS
                    .iter()
                    .any(|d| resolves(tree, &format!("{d}/{need}")))
            };
            if !found {
                out.push(Unresolved {
                    file: path.to_owned(),
                    needs: need,
                });
            }
        }
    }
    out
}

/// The interpreter and the `DT_NEEDED` entries of an ELF file.
fn dependencies(file: &ElfFile64<'_, Endianness>) -> Vec<String> {
    let endian = file.endian();
    let data = file.data();
    let header = file.elf_header();
    let mut deps = Vec::new();
    let Ok(segments) = header.program_headers(endian, data) else {
        return deps;
    };
    for seg in segments {
        if seg.p_type(endian) == elf::PT_INTERP
            && let Ok(bytes) = seg.data(endian, data)
        {
            let interp = bytes.split(|b| *b == 0).next().unwrap_or_default();
            deps.push(String::from_utf8_lossy(interp).into_owned());
        }
    }
    let Ok(sections) = header.sections(endian, data) else {
        return deps;
    };
    if let Ok(Some((entries, link))) = sections.dynamic(endian, data)
        && let Ok(strings) = sections.strings(endian, data, link)
    {
        for d in entries {
            if d.d_tag(endian) == u64::from(elf::DT_NEEDED)
                && let Ok(name) = d.string(endian, strings)
            {
                deps.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    deps
}

/// True when `path` is a file of the tree, directly or through symbolic links.
fn resolves(tree: &Tree, path: &str) -> bool {
    let mut path = path.to_owned();
    for _ in 0..16 {
        match tree.get(&path) {
            Some(Node::File(_)) => return true,
            Some(Node::Symlink(target)) => {
                path = if let Some(abs) = target.strip_prefix('/') {
                    abs.to_owned()
                } else {
                    let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
                    normalize(&format!("{parent}/{target}"))
                };
            }
            _ => return false,
        }
    }
    false
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_named() {
        // This test binary is itself a dynamically linked ELF program.
        let me = std::fs::read(std::env::current_exe().expect("own path")).expect("readable");
        let mut tree = Tree::new();
        tree.file("usr/bin/prog", me.clone(), 0o755);
        let missing = unresolved(&tree);
        assert!(
            missing
                .iter()
                .any(|u| u.file == "usr/bin/prog" && u.needs == "libc.so.6"),
            "{missing:?}"
        );
        // Provide everything it asks for, through a relative symbolic link for libc.
        for u in &missing {
            if u.needs.starts_with('/') {
                tree.file(&u.needs, b"x".to_vec(), 0o755);
            } else if u.needs == "libc.so.6" {
                tree.file("lib/x86_64-linux-gnu/libc-2.36.so", b"x".to_vec(), 0o755);
                tree.symlink(
                    "lib/x86_64-linux-gnu/libc.so.6",
                    "../x86_64-linux-gnu/libc-2.36.so",
                );
            } else {
                tree.file(
                    &format!("usr/lib/x86_64-linux-gnu/{}", u.needs),
                    b"x".to_vec(),
                    0o755,
                );
            }
        }
        assert_eq!(unresolved(&tree), Vec::new());
    }

    #[test]
    fn dangling_links_and_garbage_elf_are_reported() {
        let mut tree = Tree::new();
        tree.symlink("lib/x86_64-linux-gnu/libc.so.6", "libc-gone.so");
        assert!(!resolves(&tree, "lib/x86_64-linux-gnu/libc.so.6"));
        let mut bad = b"\x7fELF\x02\x01\x01".to_vec();
        bad.resize(80, 0xff);
        tree.file("usr/bin/bad", bad, 0o755);
        let got = unresolved(&tree);
        assert!(got.iter().all(|u| u.file == "usr/bin/bad"), "{got:?}");
    }
}
