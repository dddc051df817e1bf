//! The replication agent: drives the kernel's DRBD 8.4 through drbd-utils' 8.4
//! back-end (`drbdadm-84`, which calls `drbdsetup-84` and `drbdmeta`) with the
//! resource file of [`crate::drbd::render_resource`], and reads its state from
//! `/proc/drbd`.
//!
//! Every command failure names the command and carries DRBD's own last words, which
//! say what to do (e.g. "Device has a net-config (use disconnect first)").

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tandem_config::ApplianceConfig;

use crate::drbd::{self, DeviceStatus, ProcDrbdError, Tuning};
use crate::resources::{BoxFuture, Resource, ResourceError, blocking};

/// drbd-utils' administration tool for the kernel's DRBD 8.4.
pub const DRBDADM: &str = "/lib/drbd/drbdadm-84";

/// Where the node keeps DRBD's configuration: drbdadm's default, because the kernel
/// runs its handlers (`fence-peer`, `split-brain`) through `drbdadm`, which reads it.
pub const NODE_CONF_DIR: &str = "/etc";

/// What went wrong driving DRBD.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// A drbdadm call failed.
    #[error("drbdadm {args} failed (exit {code}): {detail}")]
    Command {
        /// The arguments.
        args: String,
        /// Exit code (-1 when killed or not started).
        code: i32,
        /// drbdadm's last line of output.
        detail: String,
    },
    /// Writing the resource file failed.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `/proc/drbd` could not be read or parsed.
    #[error("reading the replication state")]
    Status(#[source] ProcDrbdError),
    /// A wait ran out.
    #[error("replication did not reach {what} within {seconds} s (last state: {last})")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        seconds: u64,
        /// The state at the end.
        last: String,
    },
}

/// Directories drbd-utils need on the node.
const STATE_DIRS: [&str; 3] = ["/var/lib/drbd", "/var/run/drbd", "/var/lock"];

/// Up to `n` last non-blank lines of a program's output, joined with " / ":
/// drbdadm's last line is often only "Command … terminated with exit code …",
/// the reason is before it.
fn last_lines(text: &str, n: usize) -> String {
    let mut lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .rev()
        .take(n)
        .collect();
    if lines.is_empty() {
        return "no output".to_owned();
    }
    lines.reverse();
    lines.join(" / ")
}

/// The replicated device of this node.
#[derive(Debug, Clone)]
pub struct Replication {
    /// DRBD resource name.
    pub resource: String,
    /// Minor number of the device.
    pub minor: u32,
    /// The backing partition, `/dev/disk/by-partlabel/…` resolved through sysfs (the
    /// node has no udev to make those links).
    pub backing: PathBuf,
    /// The configuration file drbdadm reads.
    pub conf: PathBuf,
    /// Where the kernel reports the state (`/proc/drbd`).
    pub proc_drbd: PathBuf,
    /// The administration tool.
    pub drbdadm: PathBuf,
}

impl Replication {
    /// The agent for the configured resource, its file in `dir`.
    #[must_use]
    pub fn new(cfg: &ApplianceConfig, dir: &Path) -> Replication {
        let r = &cfg.replication;
        Replication {
            resource: r.resource.as_str().to_owned(),
            minor: drbd::minor_of(r.device.as_str()),
            backing: resolve_partlabel(r.backing.as_str()),
            conf: dir.join("drbd.conf"),
            proc_drbd: PathBuf::from("/proc/drbd"),
            drbdadm: PathBuf::from(DRBDADM),
        }
    }

    /// Writes the resource file (atomically: temporary file, fsync, rename).
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn write_config(
        &self,
        cfg: &ApplianceConfig,
        tuning: Tuning,
    ) -> Result<(), ReplicationError> {
        let mut cfg = cfg.clone();
        if let Ok(p) = self.backing.to_string_lossy().parse() {
            cfg.replication.backing = p;
        }
        let text = format!(
            "global {{\n    usage-count no;\n}}\n{}",
            drbd::render_resource(&cfg, tuning)
        );
        // It holds the replication's shared secret: root's only.
        crate::write_atomic(&self.conf, text.as_bytes(), 0o600).map_err(|source| {
            ReplicationError::Write {
                path: self.conf.clone(),
                source,
            }
        })
    }

    /// Runs `drbdadm -c CONF ARGS… RESOURCE`.
    fn drbdadm(&self, args: &[&str]) -> Result<String, ReplicationError> {
        let shown = args.join(" ");
        // drbd-utils keep state and lock files here; the node's root starts
        // without them (drbdmeta fails with exit code 20 when it cannot lock).
        for dir in STATE_DIRS {
            std::fs::create_dir_all(dir).map_err(|e| ReplicationError::Command {
                args: shown.clone(),
                code: -1,
                detail: format!("cannot create {dir}: {e}"),
            })?;
        }
        let out = Command::new(&self.drbdadm)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .arg(&self.resource)
            .output()
            .map_err(|e| ReplicationError::Command {
                args: shown.clone(),
                code: -1,
                detail: format!("cannot run {}: {e}", self.drbdadm.display()),
            })?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            return Ok(text);
        }
        Err(ReplicationError::Command {
            args: shown,
            code: out.status.code().unwrap_or(-1),
            detail: last_lines(&text, 3),
        })
    }

    /// Writes new DRBD metadata on the backing device (destroys the replication
    /// history; the data area's contents become meaningless).
    ///
    /// # Errors
    /// drbdadm refuses (e.g. the device is attached).
    pub fn create_metadata(&self) -> Result<(), ReplicationError> {
        self.drbdadm(&["--", "--force", "create-md"]).map(drop)
    }

    /// Attaches the backing device and connects to the peer.
    ///
    /// # Errors
    /// drbdadm refuses.
    pub fn up(&self) -> Result<(), ReplicationError> {
        // DRBD has no hardware alias: the kernel loads it only when asked.
        if !self.proc_drbd.exists() {
            let _ = Command::new("/sbin/modprobe").arg("drbd").status();
        }
        self.drbdadm(&["up"]).map(drop)
    }

    /// Disconnects and detaches.
    ///
    /// # Errors
    /// drbdadm refuses (e.g. the device is primary and in use).
    pub fn down(&self) -> Result<(), ReplicationError> {
        self.drbdadm(&["down"]).map(drop)
    }

    /// Becomes primary (writable). DRBD refuses when this node's data is not current.
    ///
    /// # Errors
    /// drbdadm refuses.
    pub fn primary(&self) -> Result<(), ReplicationError> {
        self.drbdadm(&["primary"]).map(drop)
    }

    /// Becomes secondary.
    ///
    /// # Errors
    /// drbdadm refuses (e.g. the device is in use).
    pub fn secondary(&self) -> Result<(), ReplicationError> {
        self.drbdadm(&["secondary"]).map(drop)
    }

    /// Records this node's copy as outdated in DRBD's metadata (`drbdadm outdate`): it
    /// stays refused for primary across restarts and reboots until a resync from the
    /// peer makes it current again. Only on a secondary.
    ///
    /// # Errors
    /// drbdadm refuses (e.g. the device is primary).
    pub fn outdate(&self) -> Result<(), ReplicationError> {
        self.drbdadm(&["outdate"]).map(drop)
    }

    /// Connects to the peer; with `discard_my_data`, as the victim of a split brain
    /// whose changes since the split are thrown away (DRBD's own resolution).
    ///
    /// # Errors
    /// drbdadm refuses.
    pub fn connect(&self, discard_my_data: bool) -> Result<(), ReplicationError> {
        if discard_my_data {
            self.drbdadm(&["connect", "--discard-my-data"]).map(drop)
        } else {
            self.drbdadm(&["connect"]).map(drop)
        }
    }

    /// Disconnects from the peer (stand-alone).
    ///
    /// # Errors
    /// drbdadm refuses.
    pub fn disconnect(&self) -> Result<(), ReplicationError> {
        self.drbdadm(&["disconnect"]).map(drop)
    }

    /// Declares this node's data the current one of a brand-new, empty pair and
    /// becomes primary: the peer then takes a full copy from it.
    ///
    /// # Errors
    /// drbdadm refuses.
    pub fn initial_primary(&self) -> Result<(), ReplicationError> {
        self.drbdadm(&["primary", "--force"]).map(drop)
    }

    /// Discards this node's data and takes a full copy from the peer.
    ///
    /// # Errors
    /// drbdadm refuses.
    pub fn invalidate(&self) -> Result<(), ReplicationError> {
        self.drbdadm(&["invalidate"]).map(drop)
    }

    /// The device's state, `None` when DRBD is not loaded or the device is not set up.
    ///
    /// # Errors
    /// `/proc/drbd` has an unexpected shape.
    pub fn status(&self) -> Result<Option<DeviceStatus>, ReplicationError> {
        let Ok(text) = std::fs::read_to_string(&self.proc_drbd) else {
            return Ok(None);
        };
        let all = drbd::parse_proc_drbd(&text).map_err(ReplicationError::Status)?;
        Ok(all.into_iter().find(|d| d.minor == self.minor))
    }

    /// Waits until `done` holds for the device's state, polling every 200 ms.
    ///
    /// # Errors
    /// The time ran out or the state could not be read.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&DeviceStatus) -> bool,
    ) -> Result<DeviceStatus, ReplicationError> {
        let start = Instant::now();
        loop {
            let st = self.status()?;
            if let Some(s) = &st
                && done(s)
            {
                return Ok(s.clone());
            }
            if start.elapsed() >= timeout {
                return Err(ReplicationError::Timeout {
                    what: what.to_owned(),
                    seconds: timeout.as_secs(),
                    last: st.map_or_else(|| "not set up".to_owned(), |s| summary(&s)),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `/dev/disk/by-partlabel/NAME` → the block device whose GPT name is NAME; other
/// paths, and names not found, unchanged.
#[must_use]
pub fn resolve_partlabel(path: &str) -> PathBuf {
    path.strip_prefix("/dev/disk/by-partlabel/")
        .and_then(tandem_init::sysfs::partition)
        .unwrap_or_else(|| PathBuf::from(path))
}

/// The state without progress: `Connected Primary/Secondary UpToDate/UpToDate`.
#[must_use]
pub fn state_line(s: &DeviceStatus) -> String {
    format!(
        "{} {:?}/{:?} {:?}/{:?}",
        s.connection, s.role, s.peer_role, s.disk, s.peer_disk
    )
}

/// The "Last write time" of an ext4 superblock as `dumpe2fs -h` prints it.
#[must_use]
pub fn last_write_of(dumpe2fs: &str) -> Option<String> {
    dumpe2fs
        .lines()
        .find_map(|l| l.strip_prefix("Last write time:"))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

impl Replication {
    /// This node's copy for the operator: state, generation identifiers, data out of
    /// sync and the file system's last write. `None` when DRBD does not run here.
    #[must_use]
    pub fn facts(&self) -> Option<tandem_api::ReplicaFacts> {
        let st = self.status().ok().flatten()?;
        let generation_ids = self
            .drbdadm(&["get-gi"])
            .map(|t| crate::last_line(&t))
            .unwrap_or_else(|e| format!("unreadable: {e}"));
        let last_write = Command::new("dumpe2fs")
            .arg("-h")
            .arg(&self.backing)
            .output()
            .ok()
            .and_then(|o| last_write_of(&String::from_utf8_lossy(&o.stdout)));
        Some(tandem_api::ReplicaFacts {
            state: summary(&st),
            generation_ids,
            out_of_sync_kib: st.out_of_sync_kib,
            last_write,
        })
    }
}

/// One line for people: the state, with the resync progress when one runs.
#[must_use]
pub fn summary(s: &DeviceStatus) -> String {
    let mut line = state_line(s);
    if let Some(r) = s.resync {
        line.push_str(&format!(" resync {:.1}%", r.done_percent));
        if let Some(eta) = r.eta_s {
            line.push_str(&format!(", {eta} s left"));
        }
    }
    line
}

/// The chain step that makes this node's replicated device primary on takeover
/// and secondary on release.
#[derive(Debug, Clone)]
pub struct ReplicationPrimary(pub Replication);

impl Resource for ReplicationPrimary {
    fn name(&self) -> String {
        format!("replication {} primary", self.0.resource)
    }

    fn acquire(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        let r = self.0.clone();
        Box::pin(async move { blocking(move || r.primary()).await })
    }

    fn release(&mut self) -> BoxFuture<'_, Result<(), ResourceError>> {
        let r = self.0.clone();
        Box::pin(async move {
            blocking(move || {
                // Already secondary (or not set up): nothing to undo.
                match r.status()? {
                    Some(s) if s.role == drbd::Role::Primary => r.secondary(),
                    _ => Ok(()),
                }
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_write_time_of_the_file_system() {
        let text = "dumpe2fs 1.47.0 (5-Feb-2023)\nFilesystem volume name:   <none>\nLast mount time:          Sun Dec  6 06:40:01 2026\nLast write time:          Sun Dec  6 06:52:20 2026\nMount count:              3\n";
        assert_eq!(
            last_write_of(text).as_deref(),
            Some("Sun Dec  6 06:52:20 2026")
        );
        assert_eq!(last_write_of("dumpe2fs: Bad magic number\n"), None);
    }

    #[test]
    fn summary_reads_like_drbd() {
        let s = drbd::parse_proc_drbd(
            " 0: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----\n    ns:0 nr:1 dw:1 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:100\n\t[=>...] sync'ed: 10.0% (100/110)K\n\tfinish: 0:01:05 speed: 1,000 (1,000) K/sec\n",
        )
        .expect("parses");
        assert_eq!(
            summary(&s[0]),
            "SyncTarget Secondary/Primary Inconsistent/UpToDate resync 10.0%, 65 s left"
        );
    }

    #[test]
    fn the_resource_file_with_its_secret_is_roots_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let cfg = ApplianceConfig::from_toml(include_str!("../../config/tests/cases/minimal.toml"))
            .expect("valid");
        let dir = tempfile::tempdir().expect("dir");
        let r = Replication::new(&cfg, dir.path());
        // An older, world-readable file is replaced by one that is not.
        std::fs::write(&r.conf, "old").expect("old");
        std::fs::set_permissions(&r.conf, std::fs::Permissions::from_mode(0o644)).expect("mode");
        r.write_config(&cfg, drbd::Tuning::default())
            .expect("written");
        let meta = std::fs::metadata(&r.conf).expect("file");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&r.conf).expect("read");
        assert!(text.contains("shared-secret"), "{text}");
    }

    #[test]
    fn a_missing_tool_is_named() {
        let cfg = ApplianceConfig::from_toml(include_str!("../../config/tests/cases/minimal.toml"))
            .expect("valid");
        let mut r = Replication::new(&cfg, Path::new("/nonexistent"));
        r.drbdadm = PathBuf::from("/nonexistent/drbdadm-84");
        let e = r.up().expect_err("no tool");
        assert!(
            e.to_string()
                .starts_with("drbdadm up failed (exit -1): cannot run /nonexistent/drbdadm-84"),
            "{e}"
        );
    }
}
