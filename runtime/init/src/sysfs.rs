//! What the node finds out about its hardware from sysfs, without udev: its
//! network ports in slot order and its partitions by GPT name. Init and the
//! runtime (activation, clusterd) must agree on both.

use std::fs;
use std::path::{Path, PathBuf};

/// The network ports in slot order (by their device's sysfs path, i.e. PCI
/// address): the first is the external (recovery, "left") port, the second the
/// crossover. Virtual interfaces (no device) are left out.
#[must_use]
pub fn nics() -> Vec<String> {
    let mut nics: Vec<(PathBuf, String)> = fs::read_dir("/sys/class/net")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let dev = fs::canonicalize(e.path().join("device")).ok()?;
                    Some((dev, name))
                })
                .collect()
        })
        .unwrap_or_default();
    nics.sort();
    nics.into_iter().map(|(_, n)| n).collect()
}

/// The block device of the partition whose GPT name is `name` (the kernel's
/// `PARTNAME`); the first by device name when there are several.
#[must_use]
pub fn partition(name: &str) -> Option<PathBuf> {
    let mut found: Vec<String> = fs::read_dir("/sys/class/block")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            fs::read_to_string(e.path().join("uevent"))
                .is_ok_and(|u| u.lines().any(|l| l == format!("PARTNAME={name}")))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    found.first().map(|d| Path::new("/dev").join(d))
}
