//! Moving the root filesystem off the initramfs.
//!
//! The kernel unpacks the node's root filesystem into its initial `rootfs`, which
//! can never be unmounted, and `pivot_root(2)` refuses to leave it: container
//! runtimes need that call to give a VE its own root. So PID 1 copies the tree into
//! a tmpfs of its own once, at the very start, and restarts itself there
//! (`switch_root`, which also frees the initramfs copy).

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _, lchown, symlink};
use std::path::Path;

/// Marker file at the top of the moved root.
pub const MARKER: &str = ".tandem-root";

/// Copies the tree at `src` into `dst` (files, directories, symbolic links, with
/// modes and owners), staying on `src`'s filesystem and leaving out `skip`.
///
/// # Errors
/// The first file that cannot be read or written, named.
pub fn copy_tree(src: &Path, dst: &Path, skip: &Path) -> io::Result<u64> {
    let dev = fs::symlink_metadata(src)?.dev();
    let mut bytes = 0;
    copy_dir(src, dst, skip, dev, &mut bytes)?;
    Ok(bytes)
}

fn named(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn copy_dir(src: &Path, dst: &Path, skip: &Path, dev: u64, bytes: &mut u64) -> io::Result<()> {
    for entry in fs::read_dir(src).map_err(named(src))? {
        let entry = entry.map_err(named(src))?;
        let from = entry.path();
        if from == skip {
            continue;
        }
        let to = dst.join(entry.file_name());
        let meta = fs::symlink_metadata(&from).map_err(named(&from))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            symlink(fs::read_link(&from).map_err(named(&from))?, &to).map_err(named(&to))?;
        } else if ft.is_dir() {
            fs::create_dir(&to).map_err(named(&to))?;
            if meta.dev() == dev {
                copy_dir(&from, &to, skip, dev, bytes)?;
            }
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(named(&to))?;
        } else if ft.is_file() {
            *bytes += fs::copy(&from, &to).map_err(named(&from))?;
            fs::set_permissions(&to, fs::Permissions::from_mode(meta.mode() & 0o7777))
                .map_err(named(&to))?;
        } else {
            // Device nodes and FIFOs belong to devtmpfs and the running system.
            continue;
        }
        lchown(&to, Some(meta.uid()), Some(meta.gid())).map_err(named(&to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_files_links_and_modes_but_not_the_skipped_dir() {
        let base = std::env::temp_dir().join(format!("tandem-root-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (src, dst) = (base.join("src"), base.join("dst"));
        fs::create_dir_all(src.join("usr/sbin")).expect("mkdir");
        fs::write(src.join("usr/sbin/tool"), b"#!x").expect("write");
        fs::set_permissions(src.join("usr/sbin/tool"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        symlink("usr/sbin/tool", src.join("init")).expect("link");
        fs::create_dir_all(src.join("newroot/inner")).expect("mkdir");
        fs::create_dir_all(&dst).expect("mkdir");
        let n = copy_tree(&src, &dst, &src.join("newroot")).expect("copies");
        assert_eq!(n, 3);
        assert_eq!(
            fs::metadata(dst.join("usr/sbin/tool"))
                .expect("copied")
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(
            fs::read_link(dst.join("init")).expect("link kept"),
            Path::new("usr/sbin/tool")
        );
        assert!(!dst.join("newroot").exists());
        let _ = fs::remove_dir_all(&base);
    }
}
