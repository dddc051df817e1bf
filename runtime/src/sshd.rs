//! The node's SSH server (R3.2, R6.3): OpenSSH's `sshd` with a configuration generated
//! from the cluster configuration.
//!
//! [`files`] is pure: `sshd_config`, the node's host key from the configuration archive
//! (a reinstalled node keeps its fingerprint) and root's `authorized_keys`
//! (`access.root-authorized-keys`). Logins are for root only, and only from the recovery
//! network and the configured admin networks (`AllowUsers root@NET`, as the packet
//! filter). [`write`] puts the files in a directory (private key mode 0600) and
//! [`reload`] tells a running sshd to read them again (SIGHUP to the process in its pid
//! file).
//!
//! By default logins are key-only (`PasswordAuthentication no`). With
//! `access.password-login = true` root may also log in with the node's root password
//! (`PasswordAuthentication yes`, `PermitRootLogin yes`); keyboard-interactive stays
//! off. sshd runs without PAM (`UsePAM no`), so it checks a password itself: the
//! `crypt` of the C library against root's line of `/etc/shadow`. The configuration's
//! argon2id hashes cannot be checked that way; the SHA-512 crypt hash of the same
//! password (`passwords.root-node1-crypt` / `root-node2-crypt`) can, and [`write_shadow`]
//! puts it in root's line of the node's `/etc/shadow` (atomically, mode 0600), or `*`
//! (no password matches; keys still work) while password login is off. The node's
//! root filesystem is a tmpfs copy of the system image made by init, so `/etc` is
//! writable; `tandem node-up` writes the file at boot and clusterd again with every
//! change of `access` or `passwords` ([`Setup::refresh`]).
//!
//! With a support server configured (`[support]`), sshd also listens on the loopback
//! address and admits root from there: the support tunnel's reverse forward
//! ([`crate::support`]) arrives there (loopback cannot be reached from outside the
//! node), and the support engineer logs in with a key of `access.root-authorized-keys`.
//!
//! What it does not do: keyboard-interactive or PAM logins, passwords for any user but
//! root, or forwarding of any kind.

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
/// The node's shadow password file, which sshd reads root's password hash from.
pub const SHADOW: &str = "/etc/shadow";

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
    let passwords = password_login(cfg, node);
    for line in [
        if passwords {
            "PermitRootLogin yes"
        } else {
            "PermitRootLogin prohibit-password"
        },
        if passwords {
            "AuthenticationMethods publickey password"
        } else {
            "AuthenticationMethods publickey"
        },
        "PubkeyAuthentication yes",
        if passwords {
            "PasswordAuthentication yes"
        } else {
            "PasswordAuthentication no"
        },
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

/// Whether root logs in on `node` with a password too: `access.password-login` is on
/// and the configuration has the node's SHA-512 crypt hash (validation refuses the one
/// without the other).
#[must_use]
pub fn password_login(cfg: &ApplianceConfig, node: NodeId) -> bool {
    cfg.access.password_login && cfg.passwords.root_crypt(node).is_some()
}

/// root's line of `/etc/shadow` for `node`, password last changed on `day` (days since
/// 1970; at least 1, as 0 would make sshd demand a new password): the SHA-512 crypt hash
/// while [`password_login`] is on, else `*`, which no password matches but which does
/// not lock the account (`!` would, for keys too, as sshd without PAM reads it). No
/// ageing: the password does not expire.
#[must_use]
pub fn root_shadow_line(cfg: &ApplianceConfig, node: NodeId, day: u64) -> String {
    let hash = match cfg.passwords.root_crypt(node) {
        Some(h) if password_login(cfg, node) => h.as_str(),
        _ => "*",
    };
    format!("root:{hash}:{}::::::", day.max(1))
}

/// Puts root's line of [`root_shadow_line`] (password changed today) into the shadow
/// file `path`: the file's other lines are kept, root's is replaced (or added first).
/// The file is replaced atomically (temporary file in the same directory, fsync,
/// rename), mode 0600, owned by the caller (root on the node).
///
/// # Errors
/// The file exists but cannot be read, or cannot be replaced.
pub fn write_shadow(path: &Path, cfg: &ApplianceConfig, node: NodeId) -> std::io::Result<()> {
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let line = root_shadow_line(cfg, node, day);
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let new = shadow_with_root(&old, &line);
    crate::write_atomic(path, new.as_bytes(), 0o600)
}

/// `text` (a shadow file) with root's line replaced by `line`, or `line` first when
/// there is none.
fn shadow_with_root(text: &str, line: &str) -> String {
    let mut out = String::with_capacity(text.len() + line.len() + 1);
    let mut found = false;
    for l in text.lines() {
        if l.split(':').next() == Some("root") {
            if !found {
                out.push_str(line);
                out.push('\n');
            }
            found = true;
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    if found { out } else { format!("{line}\n{out}") }
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
    let Some(pid) = crate::read_pid_file(&dir.join(PID_FILE))? else {
        return Ok(false);
    };
    match rustix::process::kill_process(pid, rustix::process::Signal::HUP) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::SRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// How clusterd keeps sshd's files current: rewritten and reloaded with every
/// change of `access` or `passwords`.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The directory of the files (sshd's `-f DIR/sshd_config`).
    pub dir: PathBuf,
    /// This node.
    pub node: NodeId,
    /// The shadow file whose root line [`write_shadow`] keeps ([`SHADOW`] on a node);
    /// `None`: left alone.
    pub shadow: Option<PathBuf>,
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
        // root's password first: it is in place before sshd is told to ask for it,
        // and `*` once it is off.
        if let Some(shadow) = &self.shadow {
            write_shadow(shadow, cfg, self.node).map_err(|e| {
                std::io::Error::new(e.kind(), format!("writing {}: {e}", shadow.display()))
            })?;
        }
        write(&self.dir, &files(cfg, self.node, &[ext, int], &self.dir))?;
        let told = reload(&self.dir)?;
        Ok(format!(
            "ssh server: {} key(s){} for root from {}{}",
            cfg.access.root_authorized_keys.len(),
            if password_login(cfg, self.node) {
                " and the root password"
            } else {
                ""
            },
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

    #[test]
    fn password_login_only_when_the_key_is_on() {
        let mut c = cfg();
        assert!(
            c.passwords.root_node1_crypt.is_some(),
            "a new cluster has the hashes"
        );
        let a: Ipv4Addr = "192.0.2.11".parse().expect("a");
        let off = files(&c, NodeId::Node1, &[a], Path::new("/d")).config;
        c.access.password_login = true;
        let on = files(&c, NodeId::Node1, &[a], Path::new("/d")).config;
        for (text, want, not) in [
            (
                &off,
                [
                    "PasswordAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "AuthenticationMethods publickey",
                ],
                "PasswordAuthentication yes",
            ),
            (
                &on,
                [
                    "PasswordAuthentication yes",
                    "PermitRootLogin yes",
                    "AuthenticationMethods publickey password",
                ],
                "PasswordAuthentication no",
            ),
        ] {
            let lines: Vec<&str> = text.lines().collect();
            for w in want.into_iter().chain([
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitEmptyPasswords no",
            ]) {
                assert!(lines.contains(&w), "{w} missing:\n{text}");
            }
            assert!(!lines.contains(&not), "{not} in:\n{text}");
        }
        // Without the node's crypt hash (validation refuses that) it stays off.
        c.passwords.root_node1_crypt = None;
        assert!(!password_login(&c, NodeId::Node1));
        assert!(password_login(&c, NodeId::Node2));
        let f = files(&c, NodeId::Node1, &[a], Path::new("/d")).config;
        assert!(f.contains("PasswordAuthentication no\n"), "{f}");
    }

    #[test]
    fn roots_shadow_line_has_the_crypt_hash_only_while_password_login_is_on() {
        let mut c = cfg();
        let h1 = c.passwords.root_node1_crypt.clone().expect("hash");
        let h2 = c.passwords.root_node2_crypt.clone().expect("hash");
        assert_eq!(
            root_shadow_line(&c, NodeId::Node1, 20_000),
            "root:*:20000::::::"
        );
        c.access.password_login = true;
        assert_eq!(
            root_shadow_line(&c, NodeId::Node1, 20_000),
            format!("root:{h1}:20000::::::")
        );
        assert_eq!(
            root_shadow_line(&c, NodeId::Node2, 0),
            format!("root:{h2}:1::::::"),
            "day 0 would ask for a new password"
        );
    }

    #[test]
    fn the_shadow_file_gets_roots_line_and_keeps_the_others() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("shadow");
        let mut c = cfg();
        c.access.password_login = true;
        let hash = c.passwords.root_node2_crypt.clone().expect("hash");
        // No file yet: root's line alone.
        write_shadow(&path, &c, NodeId::Node2).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with(&format!("root:{hash}:")), "{text}");
        assert_eq!(text.lines().count(), 1);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o600);
        // Other users' lines stay; root's is replaced; off writes `*`.
        std::fs::write(
            &path,
            "daemon:*:19000:0:99999:7:::\nroot:$6$old$x:1:0:99999:7:::\nweb:!:19000::::::\n",
        )
        .expect("seed");
        c.access.password_login = false;
        write_shadow(&path, &c, NodeId::Node2).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0], "daemon:*:19000:0:99999:7:::");
        assert!(
            lines[1].starts_with("root:*:") && lines[1].ends_with("::::::"),
            "{text}"
        );
        assert_eq!(lines[2], "web:!:19000::::::");
        assert!(!text.contains("$6$old"));
        assert!(!dir.path().join("shadow.tmp").exists());
    }
}
