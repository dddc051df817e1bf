//! Each VE's own user and group IDs: its user namespace maps the VE's IDs 0..65535 to
//! the node's `100000 + ID * 65536` onwards ([`id_base`]), so that a VE's root is
//! nobody on the node and no two VEs share an ID.
//!
//! The files of a VE's private area must be owned by the node's IDs of that range.
//! [`ensure_owned`] shifts them once (every VE created or restored, and every VE made
//! before VEs had their own IDs) and records it in a marker beside the private area
//! (`<ID>.idmap`, holding the base), so that later starts do not walk the tree again.
//! Creating a VE does it at once ([`shift_ahead`]), not its first start, which may
//! be a takeover.
//! The shift maps each ID to the VE's range by its place in a range (0..65535, or a
//! former base's range): running it again, after a crash half-way or on a restored
//! tree made for another VE ID, gives the same owners.
//!
//! Limits: VE IDs above [`MAX_ID`] have no range of their own and are refused; file
//! capabilities (`security.capability`) are dropped by the kernel at the change of
//! owner, set-user-ID and set-group-ID bits are put back.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The node's first ID given to VEs.
pub const BASE: u64 = 100_000;
/// IDs per VE.
pub const RANGE: u64 = 65_536;
/// The highest VE ID whose range fits below the node's largest ID (2^32 - 2).
pub const MAX_ID: u32 = 65_532;

/// The node's ID that VE `id`'s ID 0 maps to; `None` above [`MAX_ID`].
#[must_use]
pub fn id_base(id: u32) -> Option<u32> {
    if id > MAX_ID {
        return None;
    }
    u32::try_from(BASE + u64::from(id) * RANGE).ok()
}

/// Where the shift of VE `id`'s private area is recorded.
#[must_use]
pub fn marker(private_dir: &Path, id: u32) -> PathBuf {
    private_dir.join(format!("{id}.idmap"))
}

/// The node's ID for `node_id` in the range starting at `base`.
fn shifted(node_id: u32, base: u32) -> u32 {
    let n = u64::from(node_id);
    let inside = if n >= BASE {
        (n - BASE) % RANGE
    } else {
        n % RANGE
    };
    u32::try_from(u64::from(base) + inside).unwrap_or(u32::MAX - 1)
}

/// Gives every file of `root` (not following links) the owner and group of its
/// place in the range at `base`; returns how many were changed.
///
/// # Errors
/// A directory cannot be read or an owner cannot be changed.
pub fn shift_tree(root: &Path, base: u32) -> std::io::Result<u64> {
    let mut changed = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let (uid, gid) = (shifted(meta.uid(), base), shifted(meta.gid(), base));
        if (uid, gid) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
            changed += 1;
            let mode = meta.mode();
            // The kernel clears them at a change of owner.
            if meta.file_type().is_file() && mode & 0o6000 != 0 {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))?;
            }
        }
        if meta.file_type().is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(changed)
}

/// Makes sure VE `id`'s private area `root` (in `private_dir`) is owned by its range
/// at `base`, shifting it once; `Some(count)` when it was shifted now.
///
/// # Errors
/// The shift or the marker failed (the marker is written only after the shift, so
/// the next start tries again).
pub fn ensure_owned(private_dir: &Path, id: u32, base: u32) -> std::io::Result<Option<u64>> {
    let m = marker(private_dir, id);
    if std::fs::read_to_string(&m).is_ok_and(|t| t.trim() == base.to_string()) {
        return Ok(None);
    }
    let n = shift_tree(&private_dir.join(id.to_string()), base)?;
    crate::write_atomic(&m, format!("{base}\n").as_bytes(), 0o644)?;
    Ok(Some(n))
}

/// [`ensure_owned`] for VE `id` right after its private area was made, so that its first start, which may be a takeover, does not walk the
/// tree. A failure (or a VE without a range) is left to that start, which tries
/// again and says what failed.
pub fn shift_ahead(private_dir: &Path, id: u32) {
    if let Some(base) = id_base(id) {
        let _ = ensure_owned(private_dir, id, base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_distinct_and_the_shift_is_idempotent() {
        assert_eq!(id_base(0), Some(100_000));
        assert_eq!(id_base(101), Some(100_000 + 101 * 65_536));
        assert!(id_base(MAX_ID).is_some_and(|b| u64::from(b) + RANGE < u64::from(u32::MAX)));
        assert_eq!(id_base(MAX_ID + 1), None);
        let b101 = id_base(101).unwrap();
        let b7 = id_base(7).unwrap();
        assert_eq!(shifted(0, b101), b101);
        assert_eq!(shifted(33, b101), b101 + 33);
        assert_eq!(shifted(b101 + 33, b101), b101 + 33);
        // A tree restored from another VE's backup.
        assert_eq!(shifted(b7 + 33, b101), b101 + 33);
    }

    #[test]
    fn a_private_area_is_shifted_once_and_keeps_set_user_id_bits() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("9");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        std::fs::write(root.join("su"), "x").unwrap();
        std::os::unix::fs::lchown(root.join("su"), Some(0), Some(0)).unwrap();
        std::fs::set_permissions(root.join("su"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", root.join("link")).unwrap();
        let base = id_base(9).unwrap();
        assert_eq!(ensure_owned(d.path(), 9, base).unwrap(), Some(5));
        for p in ["", "etc", "etc/passwd", "su", "link"] {
            let m = std::fs::symlink_metadata(root.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (base, base), "{p}");
        }
        assert_eq!(
            std::fs::metadata(root.join("su")).unwrap().mode() & 0o7777,
            0o4755
        );
        // The link's target is untouched.
        assert_eq!(std::fs::metadata("/etc/shadow").unwrap().uid(), 0);
        assert_eq!(ensure_owned(d.path(), 9, base).unwrap(), None);
    }
}
