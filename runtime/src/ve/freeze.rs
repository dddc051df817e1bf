//! Freezing a VE's processes with the cgroup v2 freezer (`cgroup.freeze`), so that its
//! files hold still while a backup reads them.
//!
//! [`freeze`] writes `1` and waits until the kernel reports `frozen 1` in
//! `cgroup.events` (every process stopped, none between two system calls' halves);
//! the returned [`Frozen`] thaws on [`Frozen::thaw`] and, whatever happens, when it is
//! dropped.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// The mount point of the unified (v2) cgroup hierarchy: `/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a host with the hybrid layout.
#[must_use]
pub fn cgroup2_root() -> PathBuf {
    let plain = Path::new("/sys/fs/cgroup");
    if plain.join("cgroup.controllers").exists() {
        plain.to_owned()
    } else {
        plain.join("unified")
    }
}

/// Whether the cgroup `dir` exists and it or a cgroup below it holds a process
/// (`populated 1`).
#[must_use]
pub fn has_processes(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .is_ok_and(|t| t.lines().any(|l| l.trim() == "populated 1"))
}

/// A frozen cgroup.
#[derive(Debug)]
pub struct Frozen {
    dir: PathBuf,
    since: Instant,
    confirmed: SystemTime,
    thawed: bool,
}

/// Freezes the cgroup `dir` and waits up to `limit` until all its processes are.
///
/// # Errors
/// The cgroup cannot be frozen or did not report frozen in time (it is thawed again).
pub fn freeze(dir: &Path, limit: Duration) -> io::Result<Frozen> {
    let since = Instant::now();
    std::fs::write(dir.join("cgroup.freeze"), "1")?;
    let mut frozen = Frozen {
        dir: dir.to_owned(),
        since,
        confirmed: SystemTime::now(),
        thawed: false,
    };
    loop {
        let events = std::fs::read_to_string(dir.join("cgroup.events"))?;
        if events.lines().any(|l| l.trim() == "frozen 1") {
            frozen.confirmed = SystemTime::now();
            return Ok(frozen);
        }
        if since.elapsed() > limit {
            // `frozen` thaws when dropped.
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the processes of {} were not all frozen within {limit:?}",
                    dir.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Frozen {
    /// When the kernel reported every process frozen (wall clock).
    #[must_use]
    pub fn confirmed(&self) -> SystemTime {
        self.confirmed
    }

    /// Lets the processes run again; how long they were frozen.
    ///
    /// # Errors
    /// Writing `cgroup.freeze` failed (dropping retries).
    pub fn thaw(mut self) -> io::Result<Duration> {
        std::fs::write(self.dir.join("cgroup.freeze"), "0")?;
        self.thawed = true;
        Ok(self.since.elapsed())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = std::fs::write(self.dir.join("cgroup.freeze"), "0");
        }
    }
}
