//! The data area's filesystem step against a real ext4 on a loop device: e2fsck,
//! mount, busy unmount naming the user, a damaged filesystem refused, and a foreign
//! mount in the way. Needs root (run by `cargo xtask test`).

use std::path::{Path, PathBuf};
use std::process::Command;

use tandem_runtime::storage::{DataFilesystem, StorageError};

struct Loop {
    dir: PathBuf,
    device: PathBuf,
}

impl Loop {
    fn new(name: &str) -> Loop {
        let dir = std::env::temp_dir().join(format!("tandem-fs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let img = dir.join("data.img");
        let f = std::fs::File::create(&img).expect("image file");
        f.set_len(16 << 20).expect("size");
        drop(f);
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .status()
            .expect("mkfs.ext4 runs")
            .success();
        assert!(ok, "mkfs.ext4 failed");
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(&img)
            .output()
            .expect("losetup runs (needs root)");
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Loop { dir, device }
    }

    fn fs(&self) -> DataFilesystem {
        DataFilesystem {
            device: self.device.clone(),
            mountpoint: self.dir.join("vz"),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let vz = self.dir.join("vz");
        for _ in 0..3 {
            let _ = rustix::mount::unmount(&vz, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_mounted(p: &Path) -> bool {
    let want = p.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

#[test]
fn checks_mounts_and_names_who_keeps_it_busy() {
    let lo = Loop::new("busy");
    let fs = lo.fs();
    fs.mount().expect("mounts");
    fs.mount().expect("mounting again changes nothing");
    assert!(is_mounted(&fs.mountpoint));
    let held = std::fs::File::create(fs.mountpoint.join("written")).expect("write on /vz");
    let e = fs.unmount().expect_err("busy");
    match &e {
        StorageError::Busy { users, .. } => {
            assert!(users.contains(&format!("[{}]", std::process::id())), "{e}")
        }
        other => panic!("expected busy, got {other}"),
    }
    assert!(is_mounted(&fs.mountpoint), "a busy /vz stays mounted");
    drop(held);
    fs.unmount().expect("unmounts");
    fs.unmount().expect("unmounting again changes nothing");
    assert!(!is_mounted(&fs.mountpoint));
}

#[test]
fn a_damaged_filesystem_is_refused_and_not_mounted() {
    let lo = Loop::new("damaged");
    // Wipe the primary superblock: e2fsck -p cannot repair that on its own.
    let dev = std::fs::OpenOptions::new()
        .write(true)
        .open(&lo.device)
        .expect("open loop device");
    rustix::io::pwrite(&dev, &[0u8; 1024], 1024).expect("wipe superblock");
    drop(dev);
    let fs = lo.fs();
    let e = fs.mount().expect_err("refused");
    let shown = e.to_string();
    assert!(
        matches!(e, StorageError::Fsck { code, .. } if code >= 4),
        "{shown}"
    );
    assert!(shown.contains("stays unmounted"), "{shown}");
    assert!(!is_mounted(&fs.mountpoint));
}

#[test]
fn another_mount_in_the_way_is_named() {
    let lo = Loop::new("foreign");
    let fs = lo.fs();
    std::fs::create_dir_all(&fs.mountpoint).expect("mkdir");
    rustix::mount::mount(
        "scratch",
        &fs.mountpoint,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        c"size=1m",
    )
    .expect("tmpfs");
    let e = fs.mount().expect_err("refused");
    assert!(e.to_string().contains("already holds scratch"), "{e}");
}
