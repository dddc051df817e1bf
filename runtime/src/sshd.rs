//! The node's SSH server (R3.2, R6.3): OpenSSH's `sshd` with a configuration generated
//! from the cluster configuration.
//!
//! [`files`] is pure: `sshd_config`, the node's host key from the configuration archive
//! (a reinstalled node keeps its fingerprint) and root's `authorized_keys`
//! (`access.root-authorized-keys`). Logins are key-only (no password, no keyboard-
//! interactive), for root only, and only from the recovery network and the configured
//! admin networks (`AllowUsers root@NET`, as the packet filter). [`write`] puts the files
//! in a directory (private key mode 0600) and [`reload`] tells a running sshd to read
//! them again (SIGHUP to the process in its pid file).
//!
//! With a support server configured (`[support]`), sshd also listens on the loopback
//! address and admits root from there: the support tunnel's reverse forward
//! ([`crate::support`]) arrives there (loopback cannot be reached from outside the
//! node), and the support engineer logs in with a key of `access.root-authorized-keys`.
//!
//! What it does not do: password logins (the archive holds argon2id hashes, which sshd
//! cannot check) or forwarding of any kind.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use tandem_config::{ApplianceConfig, NodeId};

/// The SSH port.
pub const PORT: u16 = 22;
/// Where the node keeps the generated files.
pub const DEFAULT_DIR: &str = "/run/tandem/ssh";
/// The host key's file name in that directory.
pub const HOST_KEY: &str = "ssh_host_ed25519_key";
/// root's authorized keys' file name in that directory.
pub const AUTHORIZED_KEYS: &str = "authorized_keys";
/// The configuration's file name in that directory.
pub const CONFIG: &str = "sshd_config";
/// What the other node's key may run ([`crate::update::peer`]).
pub const PEER_COMMAND: &str = "/usr/bin/tandem peer-ssh";
/// The pid file's name in that directory.
pub const PID_FILE: &str = "sshd.pid";

/// The files of one node's sshd.
#[derive(Clone, PartialEq, Eq)]
pub struct Files {
    /// `sshd_config`.
    pub config: String,
    /// The host key (OpenSSH private key). Callers must not log it.
    pub host_key: String,
    /// root's `authorized_keys`.
    pub authorized_keys: String,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("config", &self.config)
            .field("host_key", &"[redacted]")
            .field("authorized_keys", &self.authorized_keys)
            .finish()
    }
}

/// The files of `node`'s sshd for `cfg`, listening on `listen` (the node's external
/// address, and the recovery address while the node has it), kept in `dir`.
#[must_use]
pub fn files(cfg: &ApplianceConfig, node: NodeId, listen: &[Ipv4Addr], dir: &Path) -> Files {
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# sshd of tandem {}, configuration revision {} (generated; do not edit)",
        node.name(),
        cfg.cluster.revision
    );
    let support = cfg.support.is_some();
    for a in listen {
        let _ = writeln!(c, "ListenAddress {a}:{PORT}");
    }
    if support && !listen.contains(&Ipv4Addr::LOCALHOST) {
        let _ = writeln!(c, "ListenAddress {}:{PORT}", Ipv4Addr::LOCALHOST);
    }
    let _ = writeln!(c, "HostKey {}", dir.join(HOST_KEY).display());
    let _ = writeln!(c, "PidFile {}", dir.join(PID_FILE).display());
    let _ = writeln!(
        c,
        "AuthorizedKeysFile {}",
        dir.join(AUTHORIZED_KEYS).display()
    );
    let mut allow: Vec<String> = crate::firewall::admin_networks(cfg)
        .into_iter()
        .map(|n| format!("root@{}/{}", n.network(), n.prefix()))
        .collect();
    if support {
        allow.push(format!("root@{}", Ipv4Addr::LOCALHOST));
    }
    let peer_int = cfg.network.node(node.peer()).internal_address.addr();
    allow.push(format!("root@{peer_int}"));
    let _ = writeln!(c, "AllowUsers {}", allow.join(" "));
    for line in [
        "PermitRootLogin prohibit-password",
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "PermitEmptyPasswords no",
        "UsePAM no",
        "StrictModes yes",
        "MaxAuthTries 3",
        "LoginGraceTime 30",
        "ClientAliveInterval 30",
        "ClientAliveCountMax 4",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "AllowStreamLocalForwarding no",
        "PermitTunnel no",
        "PermitUserEnvironment no",
        "PrintMotd no",
        "Subsystem sftp internal-sftp",
    ] {
        c.push_str(line);
        c.push('\n');
    }
    let mut keys = String::new();
    for k in &cfg.access.root_authorized_keys {
        keys.push_str(k.as_str());
        keys.push('\n');
    }
    // The other node (a rolling update): from its crossover address only, and only
    // `tandem peer-ssh`, which takes a few fixed commands.
    let _ = writeln!(
        keys,
        "from=\"{peer_int}\",restrict,command=\"{PEER_COMMAND}\" {} {}",
        cfg.keys.cluster_ssh.public_key().trim(),
        node.peer().name()
    );
    Files {
        config: c,
        host_key: cfg.keys.ssh_host(node).expose().to_owned(),
        authorized_keys: keys,
    }
}

/// The `-o` options every SSH client of the node runs with: the host is known by the
/// key given in the caller's known-hosts file only, the node's own key only, never a
/// prompt, a dead connection noticed.
pub const CLIENT_OPTIONS: [&str; 10] = [
    "GlobalKnownHostsFile=/dev/null",
    "StrictHostKeyChecking=yes",
    "CheckHostIP=no",
    "UpdateHostKeys=no",
    "BatchMode=yes",
    "IdentitiesOnly=yes",
    "IdentityAgent=none",
    "PasswordAuthentication=no",
    "ConnectTimeout=15",
    "ServerAliveInterval=15",
];

/// The `known_hosts` line by which an SSH client knows `host` (on `port`) by `key`
/// only: `host KEY` on port 22, `[host]:port KEY` on another.
#[must_use]
pub fn known_hosts_line(host: &str, port: u16, key: &str) -> String {
    if port == PORT {
        format!("{host} {}\n", key.trim())
    } else {
        format!("[{host}]:{port} {}\n", key.trim())
    }
}

/// Writes `files` into `dir` (created mode 0700): the host key mode 0600, the others
/// 0644, each atomically.
///
/// # Errors
/// A file cannot be written.
pub fn write(dir: &Path, files: &Files) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut key = files.host_key.clone();
    if !key.ends_with('\n') {
        key.push('\n');
    }
    crate::write_atomic(&dir.join(HOST_KEY), key.as_bytes(), 0o600)?;
    crate::write_atomic(
        &dir.join(AUTHORIZED_KEYS),
        files.authorized_keys.as_bytes(),
        0o644,
    )?;
    crate::write_atomic(&dir.join(CONFIG), files.config.as_bytes(), 0o644)
}

/// Asks the sshd whose pid file is in `dir` to read its files again (SIGHUP). `Ok(false)`
/// when no sshd runs there.
///
/// # Errors
/// The pid file holds no process id, or the signal cannot be sent.
pub fn reload(dir: &Path) -> std::io::Result<bool> {
    let pid_file: PathBuf = dir.join(PID_FILE);
    let Ok(text) = std::fs::read_to_string(&pid_file) else {
        return Ok(false);
    };
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "{} holds no process id: {:?}",
                pid_file.display(),
                text.trim()
            ))
        })?;
    match rustix::process::kill_process(pid, rustix::process::Signal::HUP) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// How clusterd keeps sshd's files current: rewritten and reloaded with every
/// change of `access`.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The directory of the files (sshd's `-f DIR/sshd_config`).
    pub dir: PathBuf,
    /// This node.
    pub node: NodeId,
}

impl Setup {
    /// Writes the files for `cfg` (listening on the node's external address) and tells
    /// sshd; a line for the event stream.
    ///
    /// # Errors
    /// A file cannot be written or sshd cannot be signalled.
    pub fn refresh(&self, cfg: &ApplianceConfig) -> std::io::Result<String> {
        let ext = cfg.network.node(self.node).address.addr();
        let int = cfg.network.node(self.node).internal_address.addr();
        write(&self.dir, &files(cfg, self.node, &[ext, int], &self.dir))?;
        let told = reload(&self.dir)?;
        Ok(format!(
            "ssh server: {} key(s) for root from {}{}",
            cfg.access.root_authorized_keys.len(),
            crate::firewall::admin_networks(cfg)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            if told { "" } else { " (sshd not running)" }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_config::init::{InitOptions, new_cluster};

    fn cfg() -> ApplianceConfig {
        static CFG: std::sync::OnceLock<ApplianceConfig> = std::sync::OnceLock::new();
        CFG.get_or_init(|| new_cluster(&InitOptions::default()).expect("new cluster").0)
            .clone()
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILPwP89bL4rstUl52F0q3zNJhLPZUidXi9x0aTtyqGya ops@lab";

    #[test]
    fn key_only_root_from_admin_networks() {
        let mut c = cfg();
        c.access.admin_networks = vec!["192.0.2.64/28".parse().expect("net")];
        c.access.root_authorized_keys = vec![KEY.parse().expect("key")];
        let ext = c.network.node1.address.addr();
        let f = files(&c, NodeId::Node1, &[ext], Path::new("/run/tandem/ssh"));
        let lines: Vec<&str> = f.config.lines().collect();
        let allow = format!(
            "AllowUsers root@192.168.100.0/24 root@192.0.2.64/28 root@{}",
            c.network.node2.internal_address.addr()
        );
        for want in [
            "ListenAddress 192.0.2.11:22",
            "HostKey /run/tandem/ssh/ssh_host_ed25519_key",
            "AuthorizedKeysFile /run/tandem/ssh/authorized_keys",
            allow.as_str(),
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AuthenticationMethods publickey",
            "PermitRootLogin prohibit-password",
        ] {
            assert!(lines.contains(&want), "{want} missing:\n{}", f.config);
        }
        assert!(!f.config.contains("PasswordAuthentication yes"));
        let peer = format!(
            "from=\"{}\",restrict,command=\"/usr/bin/tandem peer-ssh\" {} node2\n",
            c.network.node2.internal_address.addr(),
            c.keys.cluster_ssh.public_key().trim()
        );
        assert_eq!(f.authorized_keys, format!("{KEY}\n{peer}"));
        assert_eq!(f.host_key, c.keys.ssh_host_node1.expose());
        let f2 = files(&c, NodeId::Node2, &[ext], Path::new("/x"));
        assert_eq!(f2.host_key, c.keys.ssh_host_node2.expose());
        assert!(!format!("{f:?}").contains("PRIVATE KEY"), "no key in Debug");
    }

    #[test]
    fn listens_on_each_given_address_and_nobody_without_keys() {
        let c = cfg();
        let a: Ipv4Addr = "192.0.2.11".parse().expect("a");
        let r: Ipv4Addr = "192.168.100.101".parse().expect("r");
        let f = files(&c, NodeId::Node1, &[a, r], Path::new("/d"));
        assert!(
            f.config
                .contains("ListenAddress 192.0.2.11:22\nListenAddress 192.168.100.101:22\n")
        );
        assert!(
            f.authorized_keys.starts_with("from=") && f.authorized_keys.lines().count() == 1,
            "only the other node's forced command: {}",
            f.authorized_keys
        );
        assert!(f.config.contains(&format!(
            "AllowUsers root@192.168.100.0/24 root@{}\n",
            c.network.node2.internal_address.addr()
        )));
        assert!(!f.config.contains("127.0.0.1"));
    }

    #[test]
    fn with_a_support_server_the_tunnels_end_on_loopback_is_admitted() {
        let mut c = cfg();
        c.support = Some(tandem_config::schema::SupportConfig {
            host: "support.example.com".parse().expect("host"),
            user: "tandem".parse().expect("user"),
            host_key: None,
            max_hours: 8,
        });
        let a: Ipv4Addr = "192.0.2.11".parse().expect("a");
        let f = files(&c, NodeId::Node1, &[a], Path::new("/d"));
        assert!(
            f.config
                .contains("ListenAddress 192.0.2.11:22\nListenAddress 127.0.0.1:22\n"),
            "{}",
            f.config
        );
        assert!(f.config.contains(&format!(
            "AllowUsers root@192.168.100.0/24 root@127.0.0.1 root@{}\n",
            c.network.node2.internal_address.addr()
        )));
    }
}
