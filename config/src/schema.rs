//! The configuration tree: [`ApplianceConfig`] and its sections.
//!
//! This is the only place defaults live. Field names are kebab-case in the file; unknown
//! fields are refused everywhere.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::types::{
    Baud, ClusterId, ClusterKey, Credential, CryptHash, DevicePath, DomainName, DrbdResource,
    EmailAddress, HostPort, Hostname, HttpUrl, Ipv4, Ipv4Net, Millis, Netmask, NodeId,
    PasswordHash, Port, Rate, RemoteDir, SshPrivateKey, SshPublicKey, TimeOfDay, TlsCertificate,
    TlsPrivateKey, UserName,
};

/// The schema version this build writes. Older versions are migrated on load
/// (see [`crate::load::migrate`]); newer ones are refused.
pub const SCHEMA_VERSION: u32 = 2;

/// The whole cluster configuration, both nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApplianceConfig {
    /// Schema version of this document.
    pub schema_version: u32,
    /// Cluster identity.
    pub cluster: ClusterSection,
    /// Network settings, including each node's names and addresses.
    pub network: NetworkConfig,
    /// Heartbeat (cluster manager) settings.
    pub heartbeat: HeartbeatConfig,
    /// Block replication of the data area.
    pub replication: ReplicationConfig,
    /// The virtual environments' network settings.
    #[serde(default)]
    pub ves: VesConfig,
    /// E-mail notifications.
    #[serde(default)]
    pub notification: NotificationConfig,
    /// Password hashes of every account.
    pub passwords: PasswordsConfig,
    /// Keys and certificates.
    pub keys: KeysConfig,
    /// Update-server access.
    pub updates: UpdatesConfig,
    /// Remote-support tunnel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub support: Option<SupportConfig>,
    /// Optional peer fencing through each node's BMC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing: Option<FencingConfig>,
    /// Who may reach the nodes' management services (web console, SSH).
    #[serde(default, skip_serializing_if = "AccessConfig::is_empty")]
    pub access: AccessConfig,
    /// Where VE backups are copied off the pair (SFTP over SSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupConfig>,
}

/// Management access: the networks the web console and SSH accept connections from
/// (besides the recovery network), and root's SSH keys.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AccessConfig {
    /// Networks (`"192.0.2.0/24"`) from which the web console and SSH may be reached on
    /// the external port. Empty: only the recovery network.
    #[serde(default)]
    pub admin_networks: Vec<Ipv4Net>,
    /// Public keys (`authorized_keys` lines) that may log in as root over SSH. Empty:
    /// nobody logs in over SSH.
    #[serde(default)]
    pub root_authorized_keys: Vec<SshPublicKey>,
    /// root may also log in over SSH with a password (from the same networks), checked
    /// against the node's `passwords.root-node1-crypt` / `root-node2-crypt`. Off by
    /// default: key-only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub password_login: bool,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(b: &bool) -> bool {
    !*b
}

impl AccessConfig {
    /// Nothing configured (the section is then left out of a written file).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.admin_networks.is_empty()
            && self.root_authorized_keys.is_empty()
            && !self.password_login
    }
}

/// Cluster identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ClusterSection {
    /// Random id fixed when the cluster is created; an archive of another cluster is refused
    /// by a node that already belongs to one.
    pub id: ClusterId,
    /// A name for people (shown in the console and in notifications).
    pub name: Hostname,
    /// Counts the configuration's changes: every change made on a running cluster
    /// raises it by one, and a node takes a configuration from the other node only
    /// when its revision is higher than the one it has (schema 2).
    pub revision: u64,
}

/// Network settings (the console's "Network" page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NetworkConfig {
    /// Netmask of the external network.
    pub netmask: Netmask,
    /// Default gateway on the external network.
    pub gateway: Ipv4,
    /// Ping nodes: failover happens when the active node reaches none of them while the
    /// passive reaches one.
    pub ping_nodes: Vec<Ipv4>,
    /// DNS search path.
    #[serde(default)]
    pub dns_search: Vec<DomainName>,
    /// DNS servers (one or two).
    pub dns_servers: Vec<Ipv4>,
    /// Time servers (NTP), by name or address, optionally with a port; none: the
    /// clock is not synchronised (the console says so).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ntp_servers: Vec<HostPort>,
    /// Netmask of the internal (crossover) network.
    #[serde(default = "default_internal_netmask")]
    pub internal_netmask: Netmask,
    /// Node 1's names and addresses.
    pub node1: NodeNetwork,
    /// Node 2's names and addresses.
    pub node2: NodeNetwork,
}

fn default_internal_netmask() -> Netmask {
    // 255.255.255.0; `from_prefix(24)` cannot fail.
    Netmask::from_prefix(24).expect("built-in constant is valid")
}

impl NetworkConfig {
    /// The given node's settings.
    #[must_use]
    pub fn node(&self, id: NodeId) -> &NodeNetwork {
        match id {
            NodeId::Node1 => &self.node1,
            NodeId::Node2 => &self.node2,
        }
    }

    /// The node's external address with the external prefix.
    #[must_use]
    pub fn external_net(&self, id: NodeId) -> Ipv4Net {
        net(self.node(id).address.addr(), self.netmask)
    }

    /// The node's internal (crossover) address with the internal prefix.
    #[must_use]
    pub fn internal_net(&self, id: NodeId) -> Ipv4Net {
        net(self.node(id).internal_address.addr(), self.internal_netmask)
    }
}

fn net(a: Ipv4Addr, m: Netmask) -> Ipv4Net {
    // Netmask prefixes are at most 30, so this cannot fail.
    Ipv4Net::new(a, m.prefix()).expect("built-in constant is valid")
}

/// One node's names and addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeNetwork {
    /// Host name.
    pub hostname: Hostname,
    /// Address on the external network.
    pub address: Ipv4,
    /// Address on the internal (crossover) network.
    pub internal_address: Ipv4,
}

/// The three heartbeat paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeartbeatPath {
    /// Null-modem cable.
    Serial,
    /// Crossover cable.
    Internal,
    /// External LAN.
    External,
}

/// Heartbeat settings. Defaults are the manual's: keepalive 5 s, deadtime 60 s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Interval between heartbeats on each path.
    #[serde(default = "default_keepalive")]
    pub keepalive: Millis,
    /// Silence after which a late heartbeat is reported.
    #[serde(default = "default_warntime")]
    pub warntime: Millis,
    /// Silence on every path after which the peer is declared dead.
    #[serde(default = "default_deadtime")]
    pub deadtime: Millis,
    /// Deadtime used right after start-up (links and peer may come up slowly).
    #[serde(default = "default_initdead")]
    pub initdead: Millis,
    /// UDP port on the internal and external networks.
    #[serde(default = "default_udp_port")]
    pub udp_port: Port,
    /// While active, announce the service addresses again (gratuitous ARP) every this
    /// long, for switches and routers that forget them; absent or `0s`: off (as
    /// keepalived's `garp_master_refresh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garp_refresh: Option<Millis>,
    /// Cluster authentication key; heartbeat frames are authenticated with it.
    pub auth_key: ClusterKey,
    /// The null-modem path.
    #[serde(default)]
    pub serial: SerialPathConfig,
    /// The crossover path.
    #[serde(default)]
    pub internal: PathConfig,
    /// The external LAN path.
    #[serde(default)]
    pub external: PathConfig,
}

/// Default interval between heartbeats (the manual's).
pub const DEFAULT_KEEPALIVE: Millis = Millis::from_secs(5);
/// Default silence after which a late heartbeat is reported.
pub const DEFAULT_WARNTIME: Millis = Millis::from_secs(10);
/// Default silence on every path after which the peer is dead (the manual's).
pub const DEFAULT_DEADTIME: Millis = Millis::from_secs(60);
/// Default deadtime right after start-up.
pub const DEFAULT_INITDEAD: Millis = Millis::from_secs(120);
/// Default UDP port of the heartbeat.
pub const DEFAULT_UDP_PORT: u16 = 694;
/// Shortest periodic re-announcement: an announcement is a burst of gratuitous ARPs
/// 1 s apart (5 of them), which the next one must not cut short.
pub const MIN_GARP_REFRESH: Millis = Millis::from_secs(10);
/// Longest periodic re-announcement.
pub const MAX_GARP_REFRESH: Millis = Millis::from_secs(3600);
/// Default line speed of the serial heartbeat.
pub const DEFAULT_BAUD: u32 = 19200;

fn default_keepalive() -> Millis {
    DEFAULT_KEEPALIVE
}
fn default_warntime() -> Millis {
    DEFAULT_WARNTIME
}
fn default_deadtime() -> Millis {
    DEFAULT_DEADTIME
}
fn default_initdead() -> Millis {
    DEFAULT_INITDEAD
}
fn default_udp_port() -> Port {
    Port::try_from(DEFAULT_UDP_PORT).expect("built-in constant is valid")
}
fn default_true() -> bool {
    true
}

impl HeartbeatConfig {
    /// The defaults (keepalive 5 s, warntime 10 s, deadtime 60 s, initdead 120 s, UDP 694,
    /// all paths on) with the given key.
    #[must_use]
    pub fn with_key(auth_key: ClusterKey) -> HeartbeatConfig {
        HeartbeatConfig {
            keepalive: default_keepalive(),
            warntime: default_warntime(),
            deadtime: default_deadtime(),
            initdead: default_initdead(),
            udp_port: default_udp_port(),
            garp_refresh: None,
            auth_key,
            serial: SerialPathConfig::default(),
            internal: PathConfig::default(),
            external: PathConfig::default(),
        }
    }

    /// Whether a path is enabled.
    #[must_use]
    pub fn is_enabled(&self, p: HeartbeatPath) -> bool {
        match p {
            HeartbeatPath::Serial => self.serial.enabled,
            HeartbeatPath::Internal => self.internal.enabled,
            HeartbeatPath::External => self.external.enabled,
        }
    }

    /// The periodic re-announcement interval, `None` when off (absent or `0s`).
    #[must_use]
    pub fn garp_refresh(&self) -> Option<Millis> {
        self.garp_refresh.filter(|m| m.as_millis() > 0)
    }

    /// The enabled paths, in the order serial, internal, external.
    #[must_use]
    pub fn enabled_paths(&self) -> Vec<HeartbeatPath> {
        [
            HeartbeatPath::Serial,
            HeartbeatPath::Internal,
            HeartbeatPath::External,
        ]
        .into_iter()
        .filter(|p| self.is_enabled(*p))
        .collect()
    }
}

/// A network heartbeat path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PathConfig {
    /// Whether heartbeats are sent and expected on this path.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for PathConfig {
    fn default() -> Self {
        PathConfig { enabled: true }
    }
}

/// The serial heartbeat path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SerialPathConfig {
    /// Whether heartbeats are sent and expected on the null-modem cable.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Serial device.
    #[serde(default = "default_serial_device")]
    pub device: DevicePath,
    /// Line speed.
    #[serde(default = "default_baud")]
    pub baud: Baud,
}

fn default_serial_device() -> DevicePath {
    "/dev/ttyS1".parse().expect("built-in constant is valid")
}
fn default_baud() -> Baud {
    Baud::try_from(DEFAULT_BAUD).expect("built-in constant is valid")
}

impl Default for SerialPathConfig {
    fn default() -> Self {
        SerialPathConfig {
            enabled: true,
            device: default_serial_device(),
            baud: default_baud(),
        }
    }
}

/// DRBD replication protocol. Only C (synchronous) is accepted: a write completes only when
/// the peer has written it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicationProtocol {
    /// Synchronous replication.
    C,
}

/// What DRBD does after a split brain with one primary (`after-sb-1pri`); automatic
/// recovery with two primaries is never configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitBrainPolicy {
    /// Stay disconnected and report; an operator decides.
    Disconnect,
    /// Discard the secondary's changes if it made none (safe automatic recovery).
    DiscardZeroChanges,
    /// Always discard the secondary's changes.
    DiscardSecondary,
}

/// Block replication of the data area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReplicationConfig {
    /// DRBD resource name.
    #[serde(default = "default_resource")]
    pub resource: DrbdResource,
    /// The replicated block device.
    #[serde(default = "default_drbd_device")]
    pub device: DevicePath,
    /// The backing partition on each node.
    #[serde(default = "default_backing")]
    pub backing: DevicePath,
    /// TCP port on the internal network.
    #[serde(default = "default_drbd_port")]
    pub port: Port,
    /// Replication protocol (only C).
    #[serde(default = "default_protocol")]
    pub protocol: ReplicationProtocol,
    /// Resynchronisation rate limit.
    #[serde(default = "default_resync_rate")]
    pub resync_rate: Rate,
    /// Shared secret authenticating the peers.
    pub shared_secret: Credential,
    /// Split-brain recovery policy.
    #[serde(default = "default_split_brain")]
    pub split_brain: SplitBrainPolicy,
}

impl ReplicationConfig {
    /// The defaults (r0 on /dev/drbd0, port 7788, protocol C, 100M, disconnect) with the
    /// given shared secret.
    #[must_use]
    pub fn with_secret(shared_secret: Credential) -> ReplicationConfig {
        ReplicationConfig {
            resource: default_resource(),
            device: default_drbd_device(),
            backing: default_backing(),
            port: default_drbd_port(),
            protocol: default_protocol(),
            resync_rate: default_resync_rate(),
            shared_secret,
            split_brain: default_split_brain(),
        }
    }
}

fn default_resource() -> DrbdResource {
    "r0".parse().expect("built-in constant is valid")
}
fn default_drbd_device() -> DevicePath {
    "/dev/drbd0".parse().expect("built-in constant is valid")
}
fn default_backing() -> DevicePath {
    "/dev/disk/by-partlabel/data"
        .parse()
        .expect("built-in constant is valid")
}
fn default_drbd_port() -> Port {
    Port::try_from(7788).expect("built-in constant is valid")
}
fn default_protocol() -> ReplicationProtocol {
    ReplicationProtocol::C
}
fn default_resync_rate() -> Rate {
    "100M".parse().expect("built-in constant is valid")
}
fn default_split_brain() -> SplitBrainPolicy {
    SplitBrainPolicy::Disconnect
}

/// The virtual environments.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VesConfig {
    /// The service VE 1 on the internal network.
    #[serde(default)]
    pub ve1: ServiceVeConfig,
    /// The optional VE 101 on the external network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ve101: Option<VeConfig>,
}

/// The service VE 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceVeConfig {
    /// Host name.
    #[serde(default = "default_ve1_hostname")]
    pub hostname: Hostname,
    /// Address on the internal network.
    #[serde(default = "default_ve1_address")]
    pub address: Ipv4,
}

fn default_ve1_hostname() -> Hostname {
    "service".parse().expect("built-in constant is valid")
}
fn default_ve1_address() -> Ipv4 {
    Ipv4(Ipv4Addr::new(192, 168, 255, 3))
}

impl Default for ServiceVeConfig {
    fn default() -> Self {
        ServiceVeConfig {
            hostname: default_ve1_hostname(),
            address: default_ve1_address(),
        }
    }
}

/// A VE on the external network (VE 101).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VeConfig {
    /// Host name.
    pub hostname: Hostname,
    /// Service address on the external network; it moves with the VE.
    pub address: Ipv4,
    /// DNS servers inside the VE; empty means the cluster's.
    #[serde(default)]
    pub dns_servers: Vec<Ipv4>,
    /// DNS search path inside the VE; empty means the cluster's.
    #[serde(default)]
    pub dns_search: Vec<DomainName>,
}

/// E-mail notifications.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotificationConfig {
    /// Recipients.
    #[serde(default)]
    pub addresses: Vec<EmailAddress>,
    /// Sender address; empty means `root@<hostname>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<EmailAddress>,
    /// Relay host. Absent: mail goes straight to each recipient domain's mail
    /// exchangers (MX records, found through `network.dns-servers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_host: Option<HostPort>,
    /// Send a copy to the vendor's support.
    #[serde(default)]
    pub copy_vendor: bool,
    /// The vendor's support address (needed when `copy-vendor` is on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_address: Option<EmailAddress>,
    /// Whether mail must be encrypted (STARTTLS). Absent means
    /// [`TlsPolicy::Required`] with a relay (the site's own server, which should offer
    /// it) and [`TlsPolicy::Opportunistic`] for direct delivery (many mail exchangers
    /// offer no STARTTLS, and most certificates of those that do name another host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsPolicy>,
}

impl NotificationConfig {
    /// The TLS policy in effect: as configured, else required with a relay and
    /// opportunistic for direct delivery to the recipients' MX.
    #[must_use]
    pub fn tls_policy(&self) -> TlsPolicy {
        match (self.tls, &self.relay_host) {
            (Some(t), _) => t,
            (None, Some(_)) => TlsPolicy::Required,
            (None, None) => TlsPolicy::Opportunistic,
        }
    }
}

/// Encryption of the SMTP session with the relay or a mail exchanger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsPolicy {
    /// STARTTLS with a valid certificate for the server's name, or nothing is sent.
    Required,
    /// STARTTLS when the server offers it, plain text otherwise. A relay's certificate
    /// is checked; a mail exchanger's is not (encryption without authentication, as
    /// mail servers deliver to each other, RFC 7435).
    Opportunistic,
}

/// Password hashes (argon2id PHC strings; a node's root password also as SHA-512 crypt for
/// sshd), never clear text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PasswordsConfig {
    /// The web console's `admin`.
    pub admin: PasswordHash,
    /// `root` on node 1.
    pub root_node1: PasswordHash,
    /// `root` on node 2.
    pub root_node2: PasswordHash,
    /// `root` on node 1 as SHA-512 crypt (the same password): what sshd checks when
    /// `access.password-login` is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_node1_crypt: Option<CryptHash>,
    /// `root` on node 2 as SHA-512 crypt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_node2_crypt: Option<CryptHash>,
    /// `root` inside VE 101 (when VE 101 exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_ve101: Option<PasswordHash>,
    /// The VE management user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ve_manager: Option<VeManagerAccount>,
}

impl PasswordsConfig {
    /// The root password hash of a node.
    #[must_use]
    pub fn root(&self, id: NodeId) -> &PasswordHash {
        match id {
            NodeId::Node1 => &self.root_node1,
            NodeId::Node2 => &self.root_node2,
        }
    }

    /// The SHA-512 crypt hash of a node's root password, if the configuration has one.
    #[must_use]
    pub fn root_crypt(&self, id: NodeId) -> Option<&CryptHash> {
        match id {
            NodeId::Node1 => self.root_node1_crypt.as_ref(),
            NodeId::Node2 => self.root_node2_crypt.as_ref(),
        }
    }
}

/// The VE management account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VeManagerAccount {
    /// Login name.
    pub user: UserName,
    /// Password hash.
    pub password: PasswordHash,
}

/// Keys and certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeysConfig {
    /// Node 1's SSH host key.
    pub ssh_host_node1: SshPrivateKey,
    /// Node 2's SSH host key.
    pub ssh_host_node2: SshPrivateKey,
    /// The key the nodes use to log in to each other over the internal network.
    pub cluster_ssh: SshPrivateKey,
    /// The key for the outbound support tunnel.
    pub support_ssh: SshPrivateKey,
    /// The web console's certificate (PEM, leaf first).
    pub tls_certificate: TlsCertificate,
    /// The web console's private key (PEM, PKCS#8).
    pub tls_key: TlsPrivateKey,
}

impl KeysConfig {
    /// The SSH host key of a node.
    #[must_use]
    pub fn ssh_host(&self, id: NodeId) -> &SshPrivateKey {
        match id {
            NodeId::Node1 => &self.ssh_host_node1,
            NodeId::Node2 => &self.ssh_host_node2,
        }
    }
}

/// Update-server access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct UpdatesConfig {
    /// Base URL of the update server.
    pub url: HttpUrl,
    /// Account on the update server.
    pub user: UserName,
    /// Password on the update server (kept in clear: the node must present it).
    pub password: Credential,
    /// How long a newly installed system may take, after its first start, to show
    /// that the node is healthy (the other node heard, the replication connected)
    /// before the node gives it up and starts the previous system again. Absent:
    /// [`DEFAULT_TRIAL_DEADLINE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_deadline: Option<Millis>,
    /// The CA certificate (PEM) the update server's certificate must come from, for a
    /// server with a certificate of the vendor's own CA. Absent: the public CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

/// A new system's default time to prove itself.
pub const DEFAULT_TRIAL_DEADLINE: Millis = Millis::from_secs(300);
/// Shortest time a new system is given (a pair forms in well under a minute).
pub const MIN_TRIAL_DEADLINE: Millis = Millis::from_secs(120);
/// Longest time a new system is given.
pub const MAX_TRIAL_DEADLINE: Millis = Millis::from_secs(3600);

impl UpdatesConfig {
    /// The trial deadline in force.
    #[must_use]
    pub fn trial_deadline(&self) -> Millis {
        self.trial_deadline.unwrap_or(DEFAULT_TRIAL_DEADLINE)
    }
}

/// Remote-support tunnel (outbound SSH with a reverse port forward).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SupportConfig {
    /// The vendor's support server (port 22 when left out).
    pub host: HostPort,
    /// Account on the support server.
    pub user: UserName,
    /// The support server's SSH host key (`ssh-ed25519 AAAA…`): no other is accepted
    /// (no trust on first use). Without it the tunnel is refused when switched on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<SshPublicKey>,
    /// How long a tunnel stays open before it closes by itself, in hours (1 to 72).
    #[serde(default = "default_support_hours")]
    pub max_hours: u32,
}

/// A support tunnel closes by itself after this many hours unless configured otherwise.
pub const DEFAULT_SUPPORT_HOURS: u32 = 8;

fn default_support_hours() -> u32 {
    DEFAULT_SUPPORT_HOURS
}

/// The copy-off target of VE backups: an SSH server outside the pair that takes the
/// backup files over SFTP. The node logs in with the cluster's own client key
/// (`keys.cluster-ssh`, whose public key the target lists in its `authorized_keys`) and
/// knows the target by `target-host-key` only (no trust on first use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BackupConfig {
    /// The target, `HOST[:PORT]` (port 22 when left out).
    pub target_host: HostPort,
    /// The account on the target.
    pub target_user: UserName,
    /// The directory on the target the backups go into (absolute).
    pub target_path: RemoteDir,
    /// The target's SSH host key (`ssh-ed25519 AAAA…`, as in its `/etc/ssh/ssh_host_*.pub`).
    pub target_host_key: SshPublicKey,
    /// How many backups of each VE are kept on the target (the older ones are deleted).
    #[serde(default = "default_backup_keep")]
    pub keep: u32,
    /// When the active node backs up `ves` every day (UTC); none: backups run when
    /// asked only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<TimeOfDay>,
    /// The VEs the schedule backs up (none: every VE on the data area).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ves: Vec<u32>,
    /// How many backups of each scheduled VE stay on the pair's own disk: after a
    /// scheduled backup the older ones are deleted there (the target keeps `keep`).
    #[serde(default = "default_backup_keep_local")]
    pub keep_local: u32,
}

fn default_backup_keep_local() -> u32 {
    2
}

fn default_backup_keep() -> u32 {
    7
}

/// Peer fencing through the BMCs (IPMI chassis power off). Without this section a
/// node takes over from a silent peer without fencing it (and the console warns that
/// split brain is possible).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FencingConfig {
    /// `required`: no takeover from a silent peer until its BMC powered it off (or the
    /// operator confirmed it is down after a failed fence); `off`: take over without.
    #[serde(default)]
    pub policy: FencingPolicy,
    /// How long a fence may take: power off, then chassis status until it reads off.
    #[serde(default = "default_fence_timeout")]
    pub timeout: Millis,
    /// How long node1 waits before fencing, so that when both nodes lose every path at
    /// once node2's fence lands first and exactly one node is powered off. Longer than
    /// a fence takes.
    #[serde(default = "default_node1_delay")]
    pub node1_delay: Millis,
    /// Node 1's BMC.
    pub node1: BmcConfig,
    /// Node 2's BMC.
    pub node2: BmcConfig,
}

/// Whether a silent peer is powered off before a takeover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FencingPolicy {
    /// No takeover from a silent peer before it was powered off.
    #[default]
    Required,
    /// Take over without fencing: split brain is possible.
    Off,
}

/// Default bound of one fence.
pub const DEFAULT_FENCE_TIMEOUT: Millis = Millis::from_secs(30);
/// Default tiebreak wait of node1 before it fences.
pub const DEFAULT_NODE1_DELAY: Millis = Millis::from_secs(15);

fn default_fence_timeout() -> Millis {
    DEFAULT_FENCE_TIMEOUT
}
fn default_node1_delay() -> Millis {
    DEFAULT_NODE1_DELAY
}

impl FencingConfig {
    /// The BMC of a node.
    #[must_use]
    pub fn bmc(&self, id: NodeId) -> &BmcConfig {
        match id {
            NodeId::Node1 => &self.node1,
            NodeId::Node2 => &self.node2,
        }
    }
}

/// One BMC's address and credentials (IPMI v2.0 / RMCP+).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BmcConfig {
    /// BMC LAN address.
    pub address: Ipv4,
    /// RMCP+ port.
    #[serde(default = "default_ipmi_port")]
    pub port: Port,
    /// IPMI user.
    pub user: Credential,
    /// IPMI password.
    pub password: Credential,
    /// RMCP+ cipher suite.
    #[serde(default = "default_cipher_suite")]
    pub cipher_suite: u8,
}

fn default_ipmi_port() -> Port {
    Port::try_from(623).expect("built-in constant is valid")
}
fn default_cipher_suite() -> u8 {
    3
}
