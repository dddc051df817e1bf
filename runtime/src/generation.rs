//! The boot generation clusterd puts in every heartbeat: it must grow across restarts,
//! or the peer refuses every frame as a replay of an older run.
//!
//! The wall clock alone is not enough: a clock that steps back across a reboot (a dead
//! RTC battery, NTP correcting a clock that ran ahead) would start the new run below the
//! last one. So the last generation is kept in the node's state directory, and a new run
//! takes `max(last + 1, clock)`. The clock still matters: it keeps generations growing
//! when the state directory is lost (a replaced config partition).
//!
//! The file is replaced atomically (write, fsync, rename, fsync the directory) before
//! the daemon sends anything, so no frame ever carries a generation that could be
//! handed out again.
//!
//! The peer's generation is kept too ([`PEER_FILE`]): the highest one heard, stored
//! when it grows. At the next start it is the core's floor for the peer
//! (`Input::PeerGenerationFloor`), so frames captured from an older run of the peer
//! and replayed after this node restarted are refused as replays.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// File in the state directory that holds the last generation, in decimal.
pub const FILE: &str = "generation";
/// File in the state directory that holds the peer's highest generation heard.
pub const PEER_FILE: &str = "peer-generation";

/// The boot generation could not be chosen or kept.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The state file (or directory) could not be read or written.
    #[error("boot generation file {path}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The state file holds something other than a generation.
    #[error("boot generation file {path} holds {content:?}, not a number")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What it holds (at most 40 characters).
        content: String,
    },
    /// The last generation is already the largest possible.
    #[error("boot generation file {path} is at the maximum generation")]
    Exhausted {
        /// File.
        path: PathBuf,
    },
}

/// The generation of a new run: above the last one and at least the clock's value
/// (never zero, which the wire format reserves for "not heard"). `None` when the last
/// one is the largest possible.
#[must_use]
pub fn choose(last: Option<u64>, clock: u64) -> Option<u64> {
    let after_last = match last {
        Some(l) => l.checked_add(1)?,
        None => 1,
    };
    Some(after_last.max(clock))
}

/// Reads the last generation from `dir`, chooses the next one from it and `clock`
/// (e.g. the wall-clock time in microseconds), and stores it durably before returning.
///
/// # Errors
/// [`GenerationError`] when the file cannot be read, parsed or written; the caller must
/// not start heartbeats then.
pub fn next(dir: &Path, clock: u64) -> Result<u64, GenerationError> {
    let last = read(dir, FILE)?;
    let generation = choose(last, clock).ok_or(GenerationError::Exhausted {
        path: dir.join(FILE),
    })?;
    write(dir, FILE, generation)?;
    Ok(generation)
}

/// The peer's highest generation kept in `dir` (`None`: never heard, or the state
/// directory is new).
///
/// # Errors
/// The file exists but cannot be read or holds no number.
pub fn peer_floor(dir: &Path) -> Result<Option<u64>, GenerationError> {
    read(dir, PEER_FILE)
}

/// Keeps `generation` as the peer's highest in `dir`, durably.
///
/// # Errors
/// The file cannot be written.
pub fn keep_peer(dir: &Path, generation: u64) -> Result<(), GenerationError> {
    write(dir, PEER_FILE, generation)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenerationError + use<> {
    let path = path.to_path_buf();
    move |source| GenerationError::Io { path, source }
}

fn read(dir: &Path, name: &str) -> Result<Option<u64>, GenerationError> {
    let path = dir.join(name);
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| GenerationError::Corrupt {
                path: path.clone(),
                content: text.chars().take(40).collect(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

fn write(dir: &Path, name: &str, n: u64) -> Result<(), GenerationError> {
    let path = dir.join(name);
    fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(format!("{n}\n").as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    // The rename itself is durable only once the directory is synced.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choose_takes_the_larger_of_last_plus_one_and_the_clock() {
        assert_eq!(choose(None, 0), Some(1));
        assert_eq!(choose(None, 500), Some(500));
        assert_eq!(choose(Some(1000), 5000), Some(5000));
        // The clock stepped back across the reboot.
        assert_eq!(choose(Some(1000), 500), Some(1001));
        assert_eq!(choose(Some(1000), 1000), Some(1001));
        assert_eq!(choose(Some(u64::MAX), 5), None);
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tdm-gen-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn the_peers_generation_is_kept_beside_ours() {
        let d = dir("peer");
        assert_eq!(peer_floor(&d).unwrap(), None);
        keep_peer(&d, 42).unwrap();
        assert_eq!(peer_floor(&d).unwrap(), Some(42));
        assert_eq!(fs::read_to_string(d.join(PEER_FILE)).unwrap(), "42\n");
        fs::write(d.join(PEER_FILE), "x").unwrap();
        assert!(matches!(
            peer_floor(&d),
            Err(GenerationError::Corrupt { .. })
        ));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn generations_grow_across_runs_even_when_the_clock_steps_back() {
        let d = dir("steps");
        // The state directory does not exist yet on a fresh node.
        assert_eq!(next(&d.join("state"), 1_000_000).unwrap(), 1_000_000);
        let d = d.join("state");
        assert_eq!(
            fs::read_to_string(d.join(FILE)).unwrap(),
            "1000000\n",
            "stored before it is used"
        );
        // Rebooted with the clock behind the last run: still above it.
        assert_eq!(next(&d, 400_000).unwrap(), 1_000_001);
        assert_eq!(next(&d, 0).unwrap(), 1_000_002);
        // The clock caught up and passed.
        assert_eq!(next(&d, 9_000_000).unwrap(), 9_000_000);
        assert_eq!(fs::read_to_string(d.join(FILE)).unwrap(), "9000000\n");
        assert!(!d.join(format!("{FILE}.tmp")).exists());
        fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }

    #[test]
    fn corrupt_or_exhausted_state_is_an_error_and_left_alone() {
        let d = dir("corrupt");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(FILE), "twelve").unwrap();
        let e = next(&d, 5).unwrap_err();
        assert!(matches!(e, GenerationError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("\"twelve\""), "{e}");
        assert_eq!(fs::read_to_string(d.join(FILE)).unwrap(), "twelve");
        fs::write(d.join(FILE), format!("{}\n", u64::MAX)).unwrap();
        assert!(matches!(
            next(&d, 5).unwrap_err(),
            GenerationError::Exhausted { .. }
        ));
        fs::remove_dir_all(&d).unwrap();
    }
}
