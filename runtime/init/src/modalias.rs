//! Coldplug: which kernel modules the devices present ask for.
//!
//! Devices publish a `modalias` in sysfs; `modules.alias` (made by depmod
//! at image build time) maps glob patterns to module names. This is the part
//! of udev a node needs, without udev.

use std::collections::{BTreeMap, BTreeSet};

/// `modules.alias`: patterns and the module each names.
#[derive(Debug, Default, Clone)]
pub struct Aliases {
    rules: Vec<(String, String)>,
}

impl Aliases {
    /// Parses `alias PATTERN MODULE` lines.
    pub fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some("alias"))
                    .then(|| Some((w.next()?.to_owned(), w.next()?.to_owned())))
                    .flatten()
            })
            .collect();
        Self { rules }
    }

    /// Modules whose pattern matches `modalias`.
    pub fn lookup(&self, modalias: &str) -> BTreeSet<String> {
        self.rules
            .iter()
            .filter(|(pat, _)| glob(pat.as_bytes(), modalias.as_bytes()))
            .map(|(_, m)| m.clone())
            .collect()
    }
}

/// fnmatch-style matching of `*`, `?` and `[...]` (as module aliases use).
pub fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() {
            match pat[p] {
                b'*' => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(&pat[p..], s[i]) {
                        if matched {
                            p += next;
                            i += 1;
                            continue;
                        }
                    } else if s[i] == b'[' {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
                c if c == s[i] => {
                    p += 1;
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

/// Matches a `[...]` class at the start of `pat`; returns (matched, length).
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut j = 1;
    let negate = pat.get(j).is_some_and(|&x| x == b'!' || x == b'^');
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    while j < pat.len() {
        if pat[j] == b']' && !first {
            return Some((matched != negate, j + 1));
        }
        first = false;
        if j + 2 < pat.len() && pat[j + 1] == b'-' && pat[j + 2] != b']' {
            if (pat[j]..=pat[j + 2]).contains(&c) {
                matched = true;
            }
            j += 3;
        } else {
            if pat[j] == c {
                matched = true;
            }
            j += 1;
        }
    }
    None
}

/// `modules.dep`: module name → (path, dependency paths).
#[derive(Debug, Default, Clone)]
pub struct Deps {
    by_name: BTreeMap<String, (String, Vec<String>)>,
}

/// Module name of a path: `kernel/drivers/usb/storage/usb-storage.ko` →
/// `usb_storage`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

impl Deps {
    /// Parses `modules.dep`.
    pub fn parse(text: &str) -> Self {
        let by_name = text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(m, d)| {
                let m = m.trim().to_owned();
                (
                    module_name(&m),
                    (m, d.split_whitespace().map(str::to_owned).collect()),
                )
            })
            .collect();
        Self { by_name }
    }

    /// The paths to load for `name`, dependencies first; `None` if unknown.
    pub fn load_order(&self, name: &str) -> Option<Vec<String>> {
        let (path, deps) = self.by_name.get(&name.replace('-', "_"))?;
        // modules.dep lists the full closure; depmod orders it so that the
        // last entry has no dependencies among the others.
        let mut order: Vec<String> = deps.iter().rev().cloned().collect();
        order.push(path.clone());
        Some(order)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_module_aliases() {
        assert!(glob(
            b"pci:v00008086d000010BCsv*sd*bc*sc*i*",
            b"pci:v00008086d000010BCsv00008086sd00001234bc02sc00i00"
        ));
        assert!(!glob(
            b"pci:v00008086d000010BDsv*",
            b"pci:v00008086d000010BCsv00008086"
        ));
        assert!(glob(b"virtio:d00000001v*", b"virtio:d00000001v00001AF4"));
        assert!(glob(
            b"usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*",
            b"usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"
        ));
        assert!(glob(b"acpi*:IPI0001:*", b"acpi:IPI0001:"));
        assert!(glob(b"a[0-9]c", b"a5c") && !glob(b"a[!0-9]c", b"a5c"));
        assert!(glob(b"*", b"") && !glob(b"?", b""));
    }

    #[test]
    fn aliases_and_deps() {
        let a = Aliases::parse(
            "# c\nalias virtio:d00000002v* virtio_blk\nalias pci:v00001AF4d* virtio_pci\n",
        );
        assert_eq!(
            a.lookup("virtio:d00000002v00001AF4")
                .into_iter()
                .collect::<Vec<_>>(),
            ["virtio_blk"]
        );
        let d = Deps::parse(
            "kernel/fs/ext4/ext4.ko: kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko\nkernel/lib/crc16.ko:\n",
        );
        assert_eq!(
            d.load_order("ext4").unwrap(),
            [
                "kernel/lib/crc16.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/mbcache.ko",
                "kernel/fs/ext4/ext4.ko"
            ]
        );
        assert!(d.load_order("nope").is_none());
    }
}
