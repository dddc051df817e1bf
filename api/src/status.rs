//! The cluster's state, hardware readings, events and node facts.

use serde::{Deserialize, Serialize};

/// The answer to `facts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsJson {
    /// This node.
    pub own: NodeFacts,
    /// The other node, asked over the crossover link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<NodeFacts>,
    /// Why the other node's facts are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_error: Option<String>,
}

/// One heartbeat path in status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathJson {
    /// `serial`, `internal` or `external`.
    pub path: String,
    /// Enabled in the configuration.
    pub enabled: bool,
    /// `up`, `late`, `down` or `disabled`.
    pub state: String,
    /// Milliseconds since the last accepted heartbeat on this path.
    pub last_heard_ms_ago: Option<u64>,
}

/// The peer in status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerJson {
    /// Peer node name.
    pub node: String,
    /// Heard on at least one path.
    pub alive: bool,
    /// Last announced role.
    pub role: Option<String>,
    /// Last announced resource state.
    pub resources: Option<String>,
    /// Last announced data-good flag.
    pub data_good: bool,
    /// Ping nodes the peer reaches.
    pub ping_reach: Option<u8>,
    /// Same configuration digest as ours.
    pub config_matches: Option<bool>,
}

/// One ping node in status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingJson {
    /// Address.
    pub address: String,
    /// Answered within the ping deadtime.
    pub reachable: bool,
}

/// Refusal counters in status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct CountersJson {
    /// Frames accepted.
    pub accepted: u64,
    /// Frames failing authentication.
    pub bad_mac: u64,
    /// Malformed frames.
    pub malformed: u64,
    /// Replayed or stale frames.
    pub replayed: u64,
    /// Own or wrong-path frames.
    pub misdirected: u64,
    /// Serial line-noise chunks.
    pub line_noise: u64,
    /// Frames with another configuration digest.
    pub config_mismatch: u64,
    /// Control requests refused as unknown or malformed.
    pub bad_requests: u64,
}

/// A VE clusterd started on this node, in status (R8.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VeHealthJson {
    /// The VE.
    pub id: u32,
    /// `running`, `restarting in N s`, `given up after N crashes`, `stopped`.
    pub state: String,
    /// Crashes within the restart window.
    pub crashes: u32,
}

/// `tandem status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusJson {
    /// This node.
    pub node: String,
    /// Role.
    pub role: String,
    /// Resource chain state.
    pub resources: String,
    /// Resources in chain order.
    pub resource_chain: Vec<String>,
    /// Why the node waits, if it does.
    pub waiting: Option<String>,
    /// Data known good.
    pub data_good: bool,
    /// The peer.
    pub peer: PeerJson,
    /// Heartbeat paths.
    pub paths: Vec<PathJson>,
    /// Ping nodes.
    pub ping_nodes: Vec<PingJson>,
    /// Counters.
    pub counters: CountersJson,
    /// Warnings for the operator.
    pub warnings: Vec<String>,
    /// Hardware summary (sensors and RAID); absent from daemons without hardware polling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HwSummaryJson>,
    /// Replication state in one line (connection, roles, disks, resync progress);
    /// absent on daemons without a data area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<String>,
    /// The node's clock: synchronised to which time server, or why not; absent from
    /// daemons that do not watch it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<String>,
    /// The fence of the peer, when one is under way, done or failed (`delay`,
    /// `in progress`, `powered off`, `failed: why`, `confirmed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<String>,
    /// Fencing is off: split brain is possible when every path is lost.
    #[serde(default)]
    pub fencing_off: bool,
    /// The VEs clusterd started on this node and what became of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ves: Vec<VeHealthJson>,
    /// DRBD reported a split brain of the replicated data that the operator has not
    /// resolved yet.
    #[serde(default)]
    pub split_brain: bool,
    /// Heard inputs dropped because clusterd's input queue was full (a flood of
    /// frames faster than it takes them); absent from daemons before the count.
    #[serde(default)]
    pub dropped: DroppedJson,
}

/// Heard inputs dropped at clusterd's full input queue, per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DroppedJson {
    /// Frames and line noise from the serial cable.
    pub serial: u64,
    /// Datagrams on the crossover (internal) heartbeat port.
    pub internal: u64,
    /// Datagrams on the external LAN heartbeat port.
    pub external: u64,
    /// Ping node replies.
    pub ping: u64,
}

/// Hardware summary in status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HwSummaryJson {
    /// `ok`, `problems`, `absent` (no BMC and no RAID controller) or `pending` (not
    /// polled yet, or changes seen but not yet confirmed and no confirmed problem).
    pub state: String,
    /// Sensors, volumes, disks and controllers whose confirmed health is not ok.
    pub problems: u32,
    /// Subjects confirmed ok that the last poll saw otherwise, awaiting the confirming
    /// re-read.
    #[serde(default)]
    pub pending: u32,
    /// One line for the operator.
    pub text: String,
}

/// The `hw` reply: what the last poll read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HwJson {
    /// The summary also shown in status.
    pub summary: HwSummaryJson,
    /// The BMC: `absent`, `ok` or `unreachable`.
    pub bmc: String,
    /// Why the BMC is unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_detail: Option<String>,
    /// Every sensor of the last successful sweep, in repository order.
    pub sensors: Vec<SensorJson>,
    /// The RAID controller.
    pub raid: RaidJson,
    /// Wall-clock time of the last poll, milliseconds since the Unix epoch.
    pub polled_ms: Option<u64>,
}

/// One sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SensorJson {
    /// Name from the SDR.
    pub name: String,
    /// `temperature`, `voltage`, `current`, `fan`, `power_supply` or `type 0xNN`.
    pub sensor_type: String,
    /// Converted reading of a threshold sensor.
    pub value: Option<f64>,
    /// Its unit.
    pub unit: Option<String>,
    /// Asserted state bits of a discrete sensor.
    pub states: Option<u16>,
    /// What the states mean (`ok`, `nc`, `cr`, `nr`; `present`, `failed`, ...).
    pub state: String,
    /// `ok`, `warning`, `critical` or `unavailable`, as read in the last sweep; `not read`
    /// for a sensor of another controller than the BMC (shown, not an error).
    pub health: String,
    /// Why the sensor could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The RAID controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaidJson {
    /// `absent`, `present` or `fault`.
    pub state: String,
    /// Why the controller could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Model and firmware.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// Volume sets.
    pub volumes: Vec<RaidItemJson>,
    /// Physical disks.
    pub disks: Vec<RaidItemJson>,
}

/// One volume or disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaidItemJson {
    /// Volume number or disk slot.
    pub number: u8,
    /// Volume name or disk model.
    pub name: String,
    /// `ok`, `degraded`, `rebuilding N.N%` or `failed`.
    pub state: String,
    /// `ok`, `warning` or `critical`.
    pub health: String,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJson {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Node reporting it.
    pub node: String,
    /// Machine-readable kind (`path_down`, `role_changed`, `split_brain`, ...; hardware:
    /// `hw_psu`, `hw_fan`, `hw_temperature`, `hw_voltage`, `hw_sensor`, `hw_bmc`, `hw_raid`).
    pub kind: String,
    /// Human-readable text.
    pub text: String,
}

/// What a node tells about itself (R9.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NodeFacts {
    /// `node1` or `node2`.
    pub node: String,
    /// The running host name.
    pub hostname: String,
    /// The running kernel's release.
    pub kernel: String,
    /// The management software's version.
    pub version: String,
    /// The machine: vendor, product and serial number as its firmware reports them.
    pub hardware: String,
    /// The revision of its committed configuration.
    pub revision: u64,
    /// Its copy of the replicated data, where it runs one (for a split brain: both
    /// sides side by side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicaFacts>,
}

/// One node's copy of the replicated data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaFacts {
    /// DRBD's state in one line (connection, roles, disks, resync progress).
    pub state: String,
    /// DRBD's generation identifiers (`drbdadm get-gi`): current, bitmap, history.
    pub generation_ids: String,
    /// Data this node has written that the other node lacks, or the reverse, in KiB.
    pub out_of_sync_kib: u64,
    /// When the data area's file system was last written (its superblock's word).
    pub last_write: Option<String>,
}
