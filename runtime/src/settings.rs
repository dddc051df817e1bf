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
    /// Interface carrying the service addresses.
    pub service_interface: Option<String>,
    /// Service addresses with prefix length (R4.4).
    pub service_addresses: Vec<(Ipv4Addr, u8)>,
    /// Replicated data known good (until the replication layer reports it).
    pub data_good: bool,
    /// Control socket path.
    pub control: PathBuf,
    /// Digest of the cluster configuration both nodes must share.
    pub config_digest: [u8; 32],
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
