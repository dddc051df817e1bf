//! The daemon's own plain settings, filled from the cluster configuration or from
//! command-line options, and mapped into the core's [`Params`].

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tandem_core::{NodeId, Params};

/// A UDP heartbeat path: this node's address and the peer's on that network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPath {
    /// Local address to bind.
    pub local: Ipv4Addr,
    /// Peer's address.
    pub peer: Ipv4Addr,
}

/// The serial heartbeat path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPath {
    /// Device, e.g. `/dev/ttyS1`.
    pub device: PathBuf,
    /// Baud rate (8N1).
    pub baud: u32,
}

/// Everything clusterd needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node.
    pub node: NodeId,
    /// Cluster key for heartbeat authentication.
    pub key: Vec<u8>,
    /// Heartbeat interval.
    pub keepalive: Duration,
    /// Late-path warning.
    pub warntime: Duration,
    /// Dead peer after this silence on every path.
    pub deadtime: Duration,
    /// Start-up wait for the peer.
    pub initdead: Duration,
    /// UDP port of both UDP paths.
    pub udp_port: u16,
    /// Internal (crossover) path, if enabled.
    pub internal: Option<UdpPath>,
    /// External path, if enabled.
    pub external: Option<UdpPath>,
    /// Serial path, if enabled.
    pub serial: Option<SerialPath>,
    /// Ping nodes (R4.2).
    pub ping_nodes: Vec<Ipv4Addr>,
    /// While active, announce the service addresses again this often; `None`: off.
    pub garp_refresh: Option<Duration>,
    /// Interface carrying the service addresses.
    pub service_interface: Option<String>,
    /// Service addresses with prefix length (R4.4).
    pub service_addresses: Vec<(Ipv4Addr, u8)>,
    /// Fencing of the peer before a takeover from its silence; `None`: off.
    pub fencing: Option<FenceSettings>,
    /// Control socket path.
    pub control: PathBuf,
    /// Group that may use the control socket (mode 0660); `None` leaves it to root.
    pub control_group: Option<u32>,
    /// Directory for the daemon's own durable state (the boot generation).
    pub state_dir: PathBuf,
    /// Digest of the cluster configuration both nodes must share.
    pub config_digest: [u8; 32],
    /// The replicated data area, when this node runs one: its state feeds "data known
    /// good" and the status.
    pub replication: Option<crate::replication::Replication>,
    /// The packet filter clusterd applies at start and with every configuration
    /// change (`--firewall`).
    pub firewall: Option<crate::firewall::Setup>,
    /// The SSH server's files clusterd rewrites with every configuration change
    /// (`--sshd-dir`).
    pub sshd: Option<crate::sshd::Setup>,
    /// The node's time synchronisation to report on (chronyd, started by init).
    pub time_sync: Option<TimeSync>,
    /// chronyd's configuration clusterd rewrites with every change of the time servers
    /// (`--chrony-conf`).
    pub chrony: Option<crate::chrony::Setup>,
    /// The remote-support tunnel (with a configuration).
    pub support: Option<crate::support::Setup>,
}

impl Settings {
    /// The core's parameters for a run with boot generation `generation`.
    #[must_use]
    pub fn params(&self, generation: u64) -> Params {
        Params {
            node: self.node,
            keepalive: self.keepalive,
            warntime: self.warntime,
            deadtime: self.deadtime,
            initdead: self.initdead,
            paths_enabled: [
                self.serial.is_some(),
                self.internal.is_some(),
                self.external.is_some(),
            ],
            ping_nodes: u8::try_from(self.ping_nodes.len()).unwrap_or(u8::MAX),
            ping_dead: self.deadtime,
            config_digest: self.config_digest,
            generation,
            fencing: match &self.fencing {
                Some(f) if f.required => tandem_core::FencePolicy::Required {
                    node1_delay: f.node1_delay,
                    fence_timeout: f.fencer.timeout,
                },
                _ => tandem_core::FencePolicy::Off,
            },
            garp_refresh: self.garp_refresh,
        }
    }

    /// Digest of the settings both nodes must agree on (timings, enabled paths, ping
    /// nodes, service addresses), used when no configuration file is given. Node-local
    /// values (own addresses, device names) are left out.
    #[must_use]
    pub fn shared_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let canon = format!(
            "keepalive={:?};warntime={:?};deadtime={:?};initdead={:?};port={};serial={};internal={};external={};ping={:?};addrs={:?}",
            self.keepalive,
            self.warntime,
            self.deadtime,
            self.initdead,
            self.udp_port,
            self.serial.is_some(),
            self.internal.is_some(),
            self.external.is_some(),
            self.ping_nodes,
            self.service_addresses,
        );
        h.update(canon.as_bytes());
        h.finalize().into()
    }
}

/// How the peer is fenced.
#[derive(Debug, Clone)]
pub struct FenceSettings {
    /// `required`: no takeover from a silent peer before it is powered off.
    pub required: bool,
    /// node1's tiebreak wait.
    pub node1_delay: Duration,
    /// The peer's BMC.
    pub fencer: crate::fence::Fencer,
}

/// Daemon options that the cluster configuration does not (yet) carry.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Serial device of this node, overriding the configuration's (which is the same
    /// for both nodes).
    pub serial_device: Option<PathBuf>,
    /// External interface that carries the service addresses.
    pub service_interface: Option<String>,
    /// Extra service addresses beyond VE 101's.
    pub extra_service_addresses: Vec<(Ipv4Addr, u8)>,
    /// VEs run on this node and own their addresses (routed to them), so VE 101's
    /// address is not a service address of the node.
    pub ves_own_addresses: bool,
    /// Control socket.
    pub control: PathBuf,
    /// Group admitted to the control socket.
    pub control_group: Option<u32>,
    /// Directory for the daemon's own durable state.
    pub state_dir: PathBuf,
}

/// The digest both nodes' heartbeats carry: SHA-256 of the normalised TOML, so both
/// nodes agree whatever the formatting of their files.
#[must_use]
pub fn config_digest(cfg: &tandem_config::ApplianceConfig) -> [u8; 32] {
    Sha256::digest(cfg.to_toml().as_bytes()).into()
}

/// Maps the cluster configuration into this node's settings. The configuration digest
/// is the SHA-256 of its normalised TOML, so both nodes agree whatever the formatting.
#[must_use]
pub fn from_config(
    cfg: &tandem_config::ApplianceConfig,
    node: NodeId,
    local: LocalOptions,
) -> Settings {
    use tandem_config::HeartbeatPath;
    let hb = &cfg.heartbeat;
    let me = cfg.network.node(node);
    let peer = cfg.network.node(node.peer());
    let mut service_addresses = Vec::new();
    if let Some(ve) = &cfg.ves.ve101
        && !local.ves_own_addresses
    {
        service_addresses.push((ve.address.addr(), cfg.network.netmask.prefix()));
    }
    service_addresses.extend(local.extra_service_addresses);
    Settings {
        node,
        key: hb.auth_key.as_bytes().to_vec(),
        keepalive: hb.keepalive.as_duration(),
        warntime: hb.warntime.as_duration(),
        deadtime: hb.deadtime.as_duration(),
        initdead: hb.initdead.as_duration(),
        udp_port: hb.udp_port.get(),
        internal: hb.is_enabled(HeartbeatPath::Internal).then(|| UdpPath {
            local: me.internal_address.addr(),
            peer: peer.internal_address.addr(),
        }),
        external: hb.is_enabled(HeartbeatPath::External).then(|| UdpPath {
            local: me.address.addr(),
            peer: peer.address.addr(),
        }),
        serial: hb.is_enabled(HeartbeatPath::Serial).then(|| SerialPath {
            device: local
                .serial_device
                .unwrap_or_else(|| PathBuf::from(hb.serial.device.as_str())),
            baud: hb.serial.baud.get(),
        }),
        ping_nodes: cfg.network.ping_nodes.iter().map(|p| p.addr()).collect(),
        garp_refresh: hb.garp_refresh().map(tandem_config::Millis::as_duration),
        service_interface: local.service_interface,
        service_addresses,
        fencing: cfg.fencing.as_ref().map(|f| {
            let bmc = f.bmc(node.peer());
            FenceSettings {
                required: f.policy == tandem_config::schema::FencingPolicy::Required,
                node1_delay: f.node1_delay.as_duration(),
                fencer: crate::fence::Fencer {
                    peer: node.peer().name().to_owned(),
                    addr: std::net::SocketAddr::from((bmc.address.addr(), bmc.port.get())),
                    user: bmc.user.expose().to_owned(),
                    password: bmc.password.expose().to_owned(),
                    timeout: f.timeout.as_duration(),
                },
            }
        }),
        control: local.control,
        control_group: local.control_group,
        state_dir: local.state_dir,
        config_digest: config_digest(cfg),
        replication: None,
        firewall: None,
        sshd: None,
        time_sync: None,
        chrony: None,
        support: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> tandem_config::ApplianceConfig {
        let (c, _) =
            tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
        c
    }

    #[test]
    fn config_maps_mirrored_paths_for_each_node() {
        let c = cfg();
        let s1 = from_config(&c, NodeId::Node1, LocalOptions::default());
        let s2 = from_config(&c, NodeId::Node2, LocalOptions::default());
        let (e1, e2) = (s1.external.unwrap(), s2.external.unwrap());
        assert_eq!(e1.local, e2.peer);
        assert_eq!(e1.peer, e2.local);
        let (i1, i2) = (s1.internal.unwrap(), s2.internal.unwrap());
        assert_eq!(i1.local, i2.peer);
        assert_eq!(s1.config_digest, s2.config_digest);
        assert_eq!(s1.keepalive, Duration::from_secs(5));
        assert_eq!(s1.key, c.heartbeat.auth_key.as_bytes().to_vec());
        assert!(s1.params(1).validate().is_ok());
        assert_eq!(s1.params(1).garp_refresh, None);
    }

    #[test]
    fn garp_refresh_maps_to_the_core_and_zero_is_off() {
        let mut c = cfg();
        c.heartbeat.garp_refresh = Some(tandem_config::Millis::from_secs(60));
        let s = from_config(&c, NodeId::Node1, LocalOptions::default());
        assert_eq!(s.params(1).garp_refresh, Some(Duration::from_secs(60)));
        assert!(s.params(1).validate().is_ok());
        c.heartbeat.garp_refresh = Some(tandem_config::Millis(0));
        let s = from_config(&c, NodeId::Node1, LocalOptions::default());
        assert_eq!(s.params(1).garp_refresh, None);
    }

    #[test]
    fn disabled_paths_and_overrides() {
        let mut c = cfg();
        c.heartbeat.serial.enabled = false;
        c.heartbeat.external.enabled = false;
        let s = from_config(&c, NodeId::Node1, LocalOptions::default());
        assert_eq!(s.params(1).paths_enabled, [false, true, false]);
        c.heartbeat.serial.enabled = true;
        let s = from_config(
            &c,
            NodeId::Node2,
            LocalOptions {
                serial_device: Some("/tmp/ttyB".into()),
                ..LocalOptions::default()
            },
        );
        assert_eq!(s.serial.unwrap().device, PathBuf::from("/tmp/ttyB"));
        let mut other = c.clone();
        other.heartbeat.keepalive = tandem_config::Millis(1000);
        let d = from_config(&other, NodeId::Node2, LocalOptions::default()).config_digest;
        assert_ne!(s.config_digest, d);
    }
}

/// What clusterd asks about the node's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeSync {
    /// The configured time servers (`network.ntp-servers`); none: nothing is asked.
    pub servers: Vec<String>,
    /// chronyc.
    pub chronyc: std::path::PathBuf,
    /// chronyd's command socket.
    pub socket: std::path::PathBuf,
}
