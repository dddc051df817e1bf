//! Node runtime of tandem: `clusterd` and the `tandem` admin CLI.
//!
//! What it does: runs the sans-IO cluster core (`tandem-core`) against real IO —
//! heartbeats over UDP on the internal and external networks and over the serial
//! null-modem cable (serialport crate, 8N1, COBS framing from `tandem-proto`), ICMP
//! echo to ping nodes, the ordered resource chain ([`resources::Chain`]) with service
//! addresses added through rtnetlink and announced by gratuitous ARP, and the control
//! API ([`control`]): versioned JSON lines on a unix socket for status, switchover,
//! hardware readings and the event stream; and hardware polling ([`hw`]: IPMI sensors and
//! the Areca controller through `tandem-board`, on a blocking thread) whose confirmed
//! changes join the event stream; and e-mail alerts (R8): [`alerts`] decides which events
//! are mailed with which old and new state, [`mail`] keeps them in `tandem-notify`'s
//! outbox on the config partition and sends them from a thread of its own.
//!
//! What it does not do: decide anything (the core does), parse the configuration file
//! format (tandem-config does; clusterd maps it into [`settings::Settings`]), or run
//! replication, filesystems or VEs (later resources in the chain).
//!
//! Fencing ([`fence`]): the core's "fence peer" is an RMCP+ chassis power-off to the
//! peer's BMC, confirmed by the chassis status, within the configured bound.
//!
//! Limitations: IPv4 only for heartbeats, ping nodes and service addresses; ping nodes
//! use a raw ICMP socket and need `CAP_NET_RAW`.
#![warn(missing_docs)]

pub mod activate;
pub mod admin;
pub mod alerts;
pub mod chrony;
pub mod confsync;
pub mod control;
pub mod daemon;
pub mod drbd;
pub mod events;
pub mod fence;
pub mod fetch;
pub mod firewall;
pub mod generation;
pub mod hw;
pub mod mail;
pub mod member;
pub mod net;
pub mod replication;
pub mod resources;
pub mod settings;
pub mod sshd;
pub mod storage;
pub mod support;
pub mod update;
pub mod ve;

/// The last non-blank line of a program's output, the one that usually says what
/// went wrong (`"no output"` when there is none).
pub(crate) fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

/// Creates (or truncates) `path` for writing, readable and writable by its owner only
/// from the moment it exists.
pub(crate) fn create_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Replaces `path` with `data`, file mode `mode`, so that a crash leaves the old or
/// the new file, never a mix: temporary file (created with `mode`: a secret is never
/// readable by others, not even for a moment), fsync, rename, fsync of the directory.
pub(crate) fn write_atomic(path: &std::path::Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// An error and all its causes on one line (`a: b: c`): the control API's, the one
/// printer of error chains for logs, events, the outbox and the consoles.
pub use tandem_api::error_chain;

/// The process id in the pid file `path`; `None` when there is no pid file.
///
/// # Errors
/// The file cannot be read, or holds no process id.
pub(crate) fn read_pid_file(
    path: &std::path::Path,
) -> std::io::Result<Option<rustix::process::Pid>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    text.trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .map(Some)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "{} holds no process id: {:?}",
                path.display(),
                text.trim()
            ))
        })
}
