//! The kernel's random pool at boot, on machines with and without a hardware
//! random number generator.
//!
//! Everything that needs randomness on a node (the installer's partition
//! GUIDs, the web console's certificate and session tokens, keys) asks the
//! kernel with `getrandom()`, which blocks until the kernel's pool has been
//! credited with 256 bits. Init makes the pool ready before it starts
//! anything, from these sources:
//!
//! 1. What the kernel trusts by itself (stated on the kernel command line:
//!    `random.trust_cpu=on random.trust_bootloader=on`): RDRAND/RDSEED, the
//!    seed that UEFI firmware with an RNG protocol hands over, and hardware
//!    RNGs whose drivers the image carries (`virtio-rng`, `intel-rng`,
//!    `amd-rng`, `via-rng`, a TPM) through the kernel's hwrng core.
//! 2. The kernel's own jitter entropy generator (timer interrupts against the
//!    CPU's cycle counter), which runs while a caller waits in `getrandom()`:
//!    init starts such a waiting thread first thing ([`start_kernel_jitter`]).
//!    It needs about a second, also under emulation. A program that polls
//!    `/dev/random` instead never starts it — which is why the node's
//!    programs are built to call `getrandom()` (a statically linked program
//!    would otherwise fall back to polling, and wait for many minutes on a
//!    machine without a hardware RNG).
//! 3. The seed file on the configuration partition ([`SEED_FILE`]): written
//!    by this node from a ready pool (by the installer, at every boot once the
//!    pool is ready, and at shutdown), credited with 256 bits at boot and
//!    replaced at once, so that one seed is never credited twice — unless a
//!    copy of an installed disk is booted (reinstall a node instead of
//!    cloning its disk).
//!
//! Nothing on the install medium is trusted: every medium of a release holds
//! the same bytes.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The seed file's name on the configuration partition.
pub const SEED_FILE: &str = "random-seed";

/// Size of the seed file (as systemd's random-seed: the pool's size).
pub const SEED_BYTES: usize = 512;

/// Bits credited for a seed file: enough to make the pool ready, no more is
/// claimed.
pub const SEED_CREDIT_BITS: u32 = 256;

/// Whether the kernel's pool is ready: `getrandom()` would not block.
#[must_use]
pub fn pool_ready() -> bool {
    let mut b = [0u8; 1];
    // SAFETY: the buffer is valid for writes of its length for the call.
    let n =
        unsafe { nix::libc::getrandom(b.as_mut_ptr().cast(), b.len(), nix::libc::GRND_NONBLOCK) };
    n == 1
}

/// Time since the kernel started (CLOCK_BOOTTIME), for the boot log.
#[must_use]
pub fn since_kernel_start() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(Duration::from)
        .unwrap_or_default()
}

mod ioctl {
    //! `RNDADDENTROPY` (linux/random.h): `_IOW('R', 0x03, int[2])`.
    nix::ioctl_write_ptr_bad!(
        /// Adds bytes to the input pool and credits their entropy.
        rnd_add_entropy,
        nix::request_code_write!(b'R', 0x03, 2 * std::mem::size_of::<nix::libc::c_int>()),
        u8
    );
}

/// The argument of `RNDADDENTROPY`: `struct rand_pool_info { int
/// entropy_count; int buf_size; __u32 buf[]; }` in native byte order.
#[must_use]
pub fn rand_pool_info(data: &[u8], bits: u32) -> Vec<u8> {
    let bits = i32::try_from(bits).unwrap_or(i32::MAX);
    let len = i32::try_from(data.len()).unwrap_or(i32::MAX);
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&bits.to_ne_bytes());
    v.extend_from_slice(&len.to_ne_bytes());
    v.extend_from_slice(data);
    // The kernel reads buf as u32 words: pad to a whole word.
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
    v
}

/// Mixes `data` into the kernel's input pool and credits `bits` of entropy
/// (root only). See random(4).
pub fn credit(data: &[u8], bits: u32) -> io::Result<()> {
    let f = File::options().write(true).open("/dev/urandom")?;
    let info = rand_pool_info(data, bits);
    // SAFETY: `info` is a complete rand_pool_info whose buf_size matches the
    // bytes that follow the header; the kernel only reads it.
    unsafe { ioctl::rnd_add_entropy(f.as_raw_fd(), info.as_ptr()) }.map_err(io::Error::from)?;
    Ok(())
}

/// The seed file on a mounted configuration partition.
#[derive(Debug, Clone)]
pub struct SeedFile {
    path: PathBuf,
}

impl SeedFile {
    /// The seed file in `dir` (the configuration partition's mount point).
    #[must_use]
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            path: dir.join(SEED_FILE),
        }
    }

    /// Its path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Credits the seed file to the pool; returns `false` when there is none
    /// (or it is too short to count).
    pub fn load(&self) -> io::Result<bool> {
        let mut data = Vec::with_capacity(SEED_BYTES);
        match File::open(&self.path) {
            Ok(f) => {
                f.take(SEED_BYTES as u64).read_to_end(&mut data)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        if data.len() < 32 {
            // Too little to stand for 256 bits: mix it in, credit nothing.
            credit(&data, 0)?;
            return Ok(false);
        }
        credit(&data, SEED_CREDIT_BITS)?;
        Ok(true)
    }

    /// Writes a fresh seed from the (ready) pool: temporary file, fsync,
    /// rename, fsync of the directory; mode 0600.
    pub fn refresh(&self) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut seed = vec![0u8; SEED_BYTES];
        fill_random(&mut seed)?;
        let tmp = self.path.with_extension("tmp");
        let mut f = File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&seed)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Fills `buf` from the kernel's pool without blocking; fails with
/// `WouldBlock` while the pool is not ready.
pub fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid for writes of its length for the call.
        let n = unsafe {
            nix::libc::getrandom(
                rest.as_mut_ptr().cast(),
                rest.len(),
                nix::libc::GRND_NONBLOCK,
            )
        };
        match usize::try_from(n) {
            Ok(n) => done += n,
            Err(_) => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Starts the kernel's own jitter entropy generator: a thread that waits in
/// a blocking `getrandom()` (the kernel runs its generator while a caller
/// waits, and keeps what it credited when the thread ends). Call it first
/// thing, so that it works while the drivers load.
pub fn start_kernel_jitter() {
    if pool_ready() {
        return;
    }
    std::thread::spawn(|| {
        let mut b = [0u8; 1];
        // SAFETY: the buffer is valid for writes of its length for the call.
        let _ = unsafe { nix::libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    });
}

/// When the kernel logged that its pool became ready ("crng init done"),
/// as time since the kernel started; from the kernel log (`/dev/kmsg`).
#[must_use]
pub fn ready_at() -> Option<Duration> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/dev/kmsg")
        .ok()?;
    // One record per read; the end of the buffer answers EAGAIN.
    let mut buf = vec![0u8; 8192];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        if let Some(t) = crng_done_at(&String::from_utf8_lossy(&buf[..n])) {
            return Some(t);
        }
    }
    None
}

/// The time of a `/dev/kmsg` record (`PRI,SEQ,USEC,FLAGS;TEXT`) if it is the
/// kernel's "crng init done".
#[must_use]
pub fn crng_done_at(record: &str) -> Option<Duration> {
    let (head, text) = record.split_once(';')?;
    if !text.trim_end().ends_with("crng init done") {
        return None;
    }
    let usec: u64 = head.split(',').nth(2)?.parse().ok()?;
    Some(Duration::from_micros(usec))
}

/// Waits until the pool is ready or `timeout` passed; `waiting` is called
/// once a second with the time waited so far, so the caller can say what it
/// waits for. Returns whether the pool is ready.
pub fn wait_ready(timeout: Duration, waiting: &mut dyn FnMut(Duration)) -> bool {
    let start = Instant::now();
    let mut said = 0;
    while !pool_ready() {
        let waited = start.elapsed();
        if waited > timeout {
            return false;
        }
        if waited.as_secs() > said {
            said = waited.as_secs();
            waiting(waited);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_log_record() {
        assert_eq!(
            crng_done_at("5,312,1843021,-;random: crng init done\n"),
            Some(Duration::from_micros(1_843_021))
        );
        assert_eq!(crng_done_at("6,1,5,-;random: other"), None);
        assert_eq!(crng_done_at("garbage"), None);
    }

    #[test]
    fn pool_info_layout() {
        let v = rand_pool_info(&[1, 2, 3, 4, 5], 256);
        assert_eq!(&v[..4], &256i32.to_ne_bytes());
        assert_eq!(&v[4..8], &5i32.to_ne_bytes());
        assert_eq!(&v[8..13], &[1, 2, 3, 4, 5]);
        assert_eq!(v.len(), 16, "padded to whole u32 words");
    }

    #[test]
    fn seed_refresh_writes_a_private_file_of_the_pool_size() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("seed-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let seed = SeedFile::in_dir(&dir);
        seed.refresh().unwrap();
        let first = fs::read(seed.path()).unwrap();
        assert_eq!(first.len(), SEED_BYTES);
        assert_eq!(
            fs::metadata(seed.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        seed.refresh().unwrap();
        assert_ne!(
            fs::read(seed.path()).unwrap(),
            first,
            "a new seed each time"
        );
        assert!(!seed.path().with_extension("tmp").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
