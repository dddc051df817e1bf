//! Virtual environments (VEs): per-VE files in the vz format ([`conf`]) and their
//! translation to OCI runtime bundles with cgroup v2 limits ([`oci`]) for crun; the
//! backup of the OS template cache ([`backup`]); backups of VEs ([`snapshot`], in the
//! format of [`archive`], the VE held still by [`freeze`]), their restore ([`restore`])
//! and their copy off the pair ([`copyoff`]).

pub mod archive;
pub mod backup;
pub mod conf;
pub mod copyoff;
pub mod freeze;
pub mod health;
pub mod idmap;
pub mod manager;
pub mod net;
pub mod oci;
pub mod restore;
pub mod scheduled;
pub mod seccomp;
pub mod snapshot;
pub mod template;

/// Takes an exclusive lock on directory `dir` without waiting (one backup or
/// restore at a time): `None` while another process holds it. The lock lasts as
/// long as the returned file is open.
///
/// # Errors
/// Opening the directory or locking it failed.
pub(crate) fn try_lock_dir(dir: &std::path::Path) -> std::io::Result<Option<std::fs::File>> {
    let f = std::fs::File::open(dir)?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(f)),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Free bytes of the file system that holds `dir`, or would hold it (its parent when
/// it does not exist yet); 0 when that cannot be asked.
pub(crate) fn free_bytes(dir: &std::path::Path) -> u64 {
    let probe = if dir.exists() {
        dir
    } else {
        dir.parent().unwrap_or(std::path::Path::new("/"))
    };
    rustix::fs::statvfs(probe).map_or(0, |s| s.f_bfree.saturating_mul(s.f_frsize))
}
