//! The remote-support tunnel's connection (R10): OpenSSH's `ssh` client to the
//! configured support server (`[support]`), logged in with the support key of the
//! configuration archive (`keys.support-ssh`), knowing the server by
//! `support.host-key` only, with a reverse forward from a port the server allocates
//! to this node's SSH server on the loopback address (which [`crate::sshd`] then
//! listens on). Keep-alive through the SSH connection; when it ends, clusterd's
//! [`tandem_core::SupportTunnel`] decides when to connect again.
//!
//! [`prepare`] writes the key and known-hosts files and gives the command line;
//! [`Connection::start`] runs it and reports the allocated port and the end.

use std::ffi::OsString;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tandem_config::ApplianceConfig;
use tandem_config::schema::SupportConfig;

/// Where clusterd keeps the tunnel's files on a node.
pub const DEFAULT_DIR: &str = "/run/tandem/support";
/// The SSH client.
pub const DEFAULT_SSH: &str = "/usr/bin/ssh";
/// Where the forward leads on this node: its SSH server on the loopback address.
pub const FORWARD_TO: &str = "127.0.0.1";

/// Why the tunnel cannot be switched on with `cfg`, when it cannot.
#[must_use]
pub fn unavailable(cfg: &ApplianceConfig) -> Option<String> {
    match &cfg.support {
        None => Some(
            "no support server is configured (section [support] of the configuration: host, user, host-key)"
                .into(),
        ),
        Some(s) if s.host_key.is_none() => Some(format!(
            "the support server's host key is not configured (support.host-key: the line of {}'s /etc/ssh/ssh_host_ed25519_key.pub); without it the node cannot tell the support server from an impostor",
            s.host.host()
        )),
        Some(_) => None,
    }
}

/// `user@host:port` of the support server.
#[must_use]
pub fn server(s: &SupportConfig) -> String {
    format!(
        "{}@{}:{}",
        s.user,
        s.host.host(),
        s.host.port().unwrap_or(22)
    )
}

/// Writes the support key and the known-hosts file for `cfg` into `dir` (mode 0700,
/// files 0600) and gives the `ssh` arguments of the tunnel.
///
/// # Errors
/// The tunnel is [`unavailable`], or a file cannot be written.
pub fn prepare(cfg: &ApplianceConfig, dir: &Path) -> Result<Vec<OsString>, String> {
    if let Some(why) = unavailable(cfg) {
        return Err(why);
    }
    let (Some(s), Some(host_key)) = (
        cfg.support.as_ref(),
        cfg.support.as_ref().and_then(|s| s.host_key.as_ref()),
    ) else {
        return Err("no support server is configured".into());
    };
    let port = s.host.port().unwrap_or(22);
    let write = || -> std::io::Result<(PathBuf, PathBuf)> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let key = dir.join("id");
        let mut text = cfg.keys.support_ssh.expose().to_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        crate::write_atomic(&key, text.as_bytes(), 0o600)?;
        let known = dir.join("known_hosts");
        crate::write_atomic(
            &known,
            crate::sshd::known_hosts_line(s.host.host(), port, host_key.as_str()).as_bytes(),
            0o600,
        )?;
        Ok((key, known))
    };
    let (key, known) =
        write().map_err(|e| format!("writing the tunnel's files in {}: {e}", dir.display()))?;
    let mut args: Vec<OsString> = vec!["-F".into(), "/dev/null".into(), "-N".into(), "-T".into()];
    args.push("-i".into());
    args.push(key.into());
    let mut opt = |o: String| {
        args.push("-o".into());
        args.push(o.into());
    };
    opt(format!("UserKnownHostsFile={}", known.display()));
    for o in crate::sshd::CLIENT_OPTIONS.into_iter().chain([
        "ExitOnForwardFailure=yes",
        "ServerAliveCountMax=3",
        "LogLevel=INFO",
    ]) {
        opt(o.to_owned());
    }
    args.push("-p".into());
    args.push(port.to_string().into());
    args.push("-R".into());
    args.push(format!("0:{FORWARD_TO}:{}", crate::sshd::PORT).into());
    args.push(format!("{}@{}", s.user, s.host.host()).into());
    Ok(args)
}

/// The port in `ssh`'s report of the allocated remote port
/// (`Allocated port 40123 for remote forward to 127.0.0.1:22`).
#[must_use]
pub fn allocated_port(line: &str) -> Option<u16> {
    line.trim()
        .strip_prefix("Allocated port ")?
        .split_once(' ')
        .and_then(|(p, rest)| rest.starts_with("for remote forward").then_some(p))?
        .parse()
        .ok()
}

/// How clusterd runs the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// The SSH client.
    pub ssh: PathBuf,
    /// Where the key and known-hosts files are written.
    pub dir: PathBuf,
    /// The configuration clusterd started with (used when it runs without a store;
    /// with one, the committed configuration is read at every attempt).
    pub initial: Box<ApplianceConfig>,
}

/// What the console and the CLI ask of the tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Switch on for `hours` (default: `support.max-hours`), by `by`.
    On {
        /// For how long.
        hours: Option<u32>,
        /// Who asks.
        by: String,
    },
    /// Switch off, by `by`.
    Off {
        /// Who asks.
        by: String,
    },
    /// The tunnel now.
    Status,
}

/// The way to clusterd's tunnel task.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: Option<tokio::sync::mpsc::Sender<(Call, tokio::sync::oneshot::Sender<tandem_api::Reply>)>>,
}

impl Handle {
    /// A handle to the task that reads `tx`.
    #[must_use]
    pub fn new(
        tx: tokio::sync::mpsc::Sender<(Call, tokio::sync::oneshot::Sender<tandem_api::Reply>)>,
    ) -> Handle {
        Handle { tx: Some(tx) }
    }

    /// A handle to no task: every call is refused (a clusterd without a configuration).
    #[must_use]
    pub fn none() -> Handle {
        Handle { tx: None }
    }

    /// The task's answer to `call`.
    pub async fn call(&self, call: Call) -> tandem_api::Reply {
        let refused =
            |t: &str| tandem_api::Reply::Refused(tandem_api::Refusal::Failed(t.to_owned()));
        let Some(tx) = &self.tx else {
            return refused("this clusterd runs without a configuration: no remote support");
        };
        let (otx, orx) = tokio::sync::oneshot::channel();
        if tx.send((call, otx)).await.is_err() {
            return refused("the remote-support task has ended: restart clusterd");
        }
        orx.await
            .unwrap_or_else(|_| refused("the remote-support task has ended: restart clusterd"))
    }
}

/// What a running connection reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The forward is up on the support server's `port`.
    Up(u16),
    /// `ssh` ended; what it said last (or its exit status).
    Ended(String),
}

/// One run of `ssh`.
#[derive(Debug)]
pub struct Connection {
    pid: rustix::process::Pid,
}

impl Connection {
    /// Starts `ssh` (`program` with `args`); `report` is called from a thread of its
    /// own with [`Report::Up`] and, last, [`Report::Ended`]. `ssh` ends with this
    /// process (the parent-death signal), so a crashed clusterd leaves no tunnel open.
    ///
    /// # Errors
    /// `ssh` cannot be started.
    pub fn start(
        program: &Path,
        args: &[OsString],
        report: impl Fn(Report) + Send + 'static,
    ) -> std::io::Result<Connection> {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure only makes one async-signal-safe system call (prctl).
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::TERM,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn()?;
        let pid = rustix::process::Pid::from_child(&child);
        let stderr = child.stderr.take();
        std::thread::Builder::new()
            .name("support-ssh".into())
            .spawn(move || {
                let mut last = Vec::<String>::new();
                if let Some(err) = stderr {
                    for line in std::io::BufReader::new(err).lines() {
                        let Ok(line) = line else { break };
                        if let Some(port) = allocated_port(&line) {
                            report(Report::Up(port));
                            continue;
                        }
                        let line = line.trim().to_owned();
                        if !line.is_empty() {
                            last.push(line);
                            if last.len() > 3 {
                                last.remove(0);
                            }
                        }
                    }
                }
                let status = child.wait();
                let said = last.join(" / ");
                report(Report::Ended(match status {
                    Ok(s) if said.is_empty() => format!("ssh ended ({s})"),
                    Ok(_) => said,
                    Err(e) => format!("ssh could not be waited for: {e}"),
                }));
            })?;
        Ok(Connection { pid })
    }

    /// Ends `ssh` (SIGTERM); its thread then reports [`Report::Ended`].
    pub fn stop(&self) {
        let _ = rustix::process::kill_process(self.pid, rustix::process::Signal::TERM);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_config::init::{InitOptions, new_cluster};

    const HOST_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILPwP89bL4rstUl52F0q3zNJhLPZUidXi9x0aTtyqGya root@support";

    fn cfg() -> ApplianceConfig {
        static CFG: std::sync::OnceLock<ApplianceConfig> = std::sync::OnceLock::new();
        CFG.get_or_init(|| new_cluster(&InitOptions::default()).expect("new cluster").0)
            .clone()
    }

    #[test]
    fn the_port_is_read_from_the_clients_report_only() {
        assert_eq!(
            allocated_port("Allocated port 40123 for remote forward to 127.0.0.1:22"),
            Some(40123)
        );
        assert_eq!(
            allocated_port("Allocated port 40123 for remote forward to 127.0.0.1:22\r\n"),
            Some(40123)
        );
        for other in [
            "Allocated port x for remote forward to 127.0.0.1:22",
            "Allocated port 70000 for remote forward to 127.0.0.1:22",
            "Allocated port 40123 for something else",
            "Warning: Permanently added '[h]:2222' (ED25519) to the list of known hosts.",
            "",
        ] {
            assert_eq!(allocated_port(other), None, "{other:?}");
        }
    }

    #[test]
    fn refused_without_a_server_or_its_host_key_and_the_files_are_private() {
        let mut c = cfg();
        c.support = None;
        assert!(unavailable(&c).is_some_and(|w| w.contains("[support]")));
        c.support = Some(SupportConfig {
            host: "support.example.com:2222".parse().expect("host"),
            user: "tandem".parse().expect("user"),
            host_key: None,
            max_hours: 8,
        });
        let dir = tempfile::tempdir().expect("dir");
        let why = prepare(&c, dir.path()).expect_err("no host key");
        assert!(why.contains("support.host-key"), "{why}");
        assert!(
            std::fs::read_dir(dir.path()).expect("dir").next().is_none(),
            "nothing written"
        );

        if let Some(s) = &mut c.support {
            s.host_key = Some(HOST_KEY.parse().expect("key"));
        }
        let d = dir.path().join("support");
        let args = prepare(&c, &d).expect("prepared");
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let joined = args.join(" ");
        for want in [
            "-N",
            "StrictHostKeyChecking=yes",
            "BatchMode=yes",
            "ExitOnForwardFailure=yes",
            "ServerAliveInterval=15",
            "-p 2222",
            "-R 0:127.0.0.1:22",
        ] {
            assert!(joined.contains(want), "{want} missing: {joined}");
        }
        assert_eq!(
            args.last().map(String::as_str),
            Some("tandem@support.example.com")
        );
        let known = std::fs::read_to_string(d.join("known_hosts")).expect("known hosts");
        assert_eq!(known, format!("[support.example.com]:2222 {HOST_KEY}\n"));
        use std::os::unix::fs::PermissionsExt as _;
        for f in ["id", "known_hosts"] {
            let mode = std::fs::metadata(d.join(f))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert!(
            std::fs::read_to_string(d.join("id"))
                .expect("key")
                .contains("OPENSSH PRIVATE KEY")
        );
        assert_eq!(
            server(c.support.as_ref().expect("support")),
            "tandem@support.example.com:2222"
        );
    }
}
