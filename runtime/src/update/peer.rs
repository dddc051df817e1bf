//! The other node, as the leader of a rolling update reaches it: OpenSSH over the
//! crossover network, logged in with the cluster's own key (`keys.cluster-ssh`), the
//! other node known by its host key from the configuration.
//!
//! On the other node that key may only run `tandem peer-ssh` (a forced command in
//! root's `authorized_keys`, from this node's crossover address only; see
//! [`crate::sshd`]), which does one of the few [`PeerCommand`]s and nothing else.
//! Each of them is a request to that node's clusterd (the same road as its own
//! command line), but for the bundle's copy, which is written to [`BUNDLE`] there.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tandem_config::{ApplianceConfig, NodeId};

use super::UpdateError;

/// Where the bundle of a rolling update is kept on the node that receives it (a
/// tmpfs: gone with the restart it leads to).
pub const BUNDLE: &str = "/tmp/tandem-rolling.raucb";

/// The largest bundle the other node takes: one that does not fit a system slot
/// (512 MiB) cannot be installed.
pub const MAX_BUNDLE: u64 = 512 << 20;

/// Where clusterd keeps the SSH client's files for the other node (key, known hosts).
pub const CLIENT_DIR: &str = "/run/tandem/peer-ssh";

/// What the leader may ask of the other node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerCommand {
    /// Take the bundle on standard input (written to [`BUNDLE`]).
    ReceiveBundle,
    /// `tandem update install BUNDLE` (the node restarts into it).
    Install {
        /// Accept a bundle older than the running system.
        force_downgrade: bool,
    },
    /// `tandem update status --json`.
    Status,
}

impl PeerCommand {
    /// Every command, as [`PeerCommand::parse`] takes them.
    pub const ALL: [PeerCommand; 4] = [
        PeerCommand::ReceiveBundle,
        PeerCommand::Install {
            force_downgrade: false,
        },
        PeerCommand::Install {
            force_downgrade: true,
        },
        PeerCommand::Status,
    ];

    /// The command line sent (the forced command sees it in `SSH_ORIGINAL_COMMAND`).
    #[must_use]
    pub fn line(self) -> &'static str {
        match self {
            PeerCommand::ReceiveBundle => "receive-bundle",
            PeerCommand::Install {
                force_downgrade: false,
            } => "update-install",
            PeerCommand::Install {
                force_downgrade: true,
            } => "update-install --force-downgrade",
            PeerCommand::Status => "update-status",
        }
    }

    /// The command a line names: exactly one of [`PeerCommand::line`]'s, nothing else.
    ///
    /// # Errors
    /// Anything else, named.
    pub fn parse(line: &str) -> Result<PeerCommand, String> {
        PeerCommand::ALL
            .into_iter()
            .find(|c| c.line() == line.trim())
            .ok_or_else(|| {
                let shown: String = line.chars().take(80).collect();
                format!("the other node may not ask {shown:?} here")
            })
    }
}

/// The way to the other node.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its name.
    pub node: NodeId,
    /// Its crossover address.
    pub address: Ipv4Addr,
    /// The SSH client.
    pub ssh: PathBuf,
    /// This node's files for the client (key, known hosts), private.
    pub dir: PathBuf,
}

impl Peer {
    /// The other node of `me` in `cfg`; writes the client's key and known-hosts file
    /// into `dir`.
    ///
    /// # Errors
    /// The files cannot be written.
    pub fn new(cfg: &ApplianceConfig, me: NodeId, dir: &Path) -> Result<Peer, UpdateError> {
        let node = me.peer();
        let address = cfg.network.node(node).internal_address.addr();
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
            let mut key = cfg.keys.cluster_ssh.expose().to_owned();
            if !key.ends_with('\n') {
                key.push('\n');
            }
            crate::write_atomic(&dir.join("id"), key.as_bytes(), 0o600)?;
            crate::write_atomic(
                &dir.join("known_hosts"),
                crate::sshd::known_hosts_line(
                    &address.to_string(),
                    crate::sshd::PORT,
                    &cfg.keys.ssh_host(node).public_key(),
                )
                .as_bytes(),
                0o600,
            )
        };
        write().map_err(|e| {
            UpdateError(format!(
                "writing the SSH client's files for {} in {}: {e}",
                node.name(),
                dir.display()
            ))
        })?;
        Ok(Peer {
            node,
            address,
            ssh: PathBuf::from("ssh"),
            dir: dir.to_owned(),
        })
    }

    /// Runs `cmd` on the other node, with `input` on its standard input; returns
    /// what it printed.
    ///
    /// # Errors
    /// The connection or the command failed: its last line.
    pub fn run(&self, cmd: PeerCommand, input: Option<&Path>) -> Result<String, UpdateError> {
        let stdin = match input {
            Some(p) => Stdio::from(
                std::fs::File::open(p).map_err(|e| UpdateError(format!("{}: {e}", p.display())))?,
            ),
            None => Stdio::null(),
        };
        let out = Command::new(&self.ssh)
            .args(["-F", "/dev/null", "-T", "-i"])
            .arg(self.dir.join("id"))
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.join("known_hosts").display()
            ))
            .args(
                crate::sshd::CLIENT_OPTIONS
                    .into_iter()
                    .chain(["ServerAliveCountMax=4", "LogLevel=ERROR"])
                    .flat_map(|o| ["-o", o]),
            )
            .arg(format!("root@{}", self.address))
            .arg(cmd.line())
            .stdin(stdin)
            .output()
            .map_err(|e| UpdateError(format!("running {}: {e}", self.ssh.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = if stderr.trim().is_empty() {
            crate::last_line(&stdout)
        } else {
            crate::last_line(&stderr)
        };
        Err(UpdateError(format!(
            "{} on {} ({}): {why}",
            cmd.line(),
            self.node.name(),
            self.address
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_commands_are_taken() {
        for c in PeerCommand::ALL {
            assert_eq!(PeerCommand::parse(c.line()), Ok(c));
        }
        for bad in [
            "",
            "sh",
            "switchover; reboot",
            "update-install /etc/shadow",
            "receive-bundle\nsh",
        ] {
            let e = PeerCommand::parse(bad).unwrap_err();
            assert!(e.contains("may not ask"), "{e}");
        }
    }
}
