//! Control API: versioned JSON lines over a unix stream socket.
//!
//! One request per line, one response per line (`events` with `follow` keeps the
//! connection and streams one event per line). Every message carries `"version": 1`.
//! A request line holds at most 4096 bytes: clusterd reads no further, answers
//! `request longer than 4096 bytes` and closes the connection.
//! The web console and the `tandem` CLI are the clients; this module holds the shared
//! types and a small blocking client.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Control API version spoken by this build.
pub const API_VERSION: u32 = 1;

/// Default control socket path on a node.
pub const DEFAULT_SOCKET: &str = "/run/tandem/control.sock";

/// A client request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Must be [`API_VERSION`].
    pub version: u32,
    /// `status`, `switchover`, `events`, `hw`, `facts` or `reload-config`.
    pub request: String,
    /// For `events`: keep the connection and stream new events.
    #[serde(default)]
    pub follow: bool,
}

/// A reply line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// [`API_VERSION`].
    pub version: u32,
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusJson>,
    /// For `events`: one event per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventJson>,
    /// For `hw`: the latest sensor readings and RAID report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hw: Option<HwJson>,
    /// For `facts`: this node's and the other node's host name, kernel, versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<FactsJson>,
}

/// The answer to `facts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactsJson {
    /// This node.
    pub own: crate::confsync::NodeFacts,
    /// The other node, asked over the crossover link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<crate::confsync::NodeFacts>,
    /// Why the other node's facts are missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_error: Option<String>,
}

impl Response {
    /// A success without payload.
    #[must_use]
    pub fn ok() -> Response {
        Response {
            version: API_VERSION,
            ok: true,
            error: None,
            status: None,
            event: None,
            hw: None,
            facts: None,
        }
    }

    /// A failure with its reason.
    #[must_use]
    pub fn error(msg: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(msg.into()),
            ..Response::ok()
        }
    }
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

/// Errors of the control client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect to the daemon.
    #[error("cannot connect to control socket {path}")]
    Connect {
        /// Socket path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Lost the connection.
    #[error("control connection failed")]
    Io(#[from] std::io::Error),
    /// The daemon answered something that is not a response.
    #[error("malformed response from daemon")]
    Malformed(#[from] serde_json::Error),
    /// The daemon closed the connection without answering.
    #[error("daemon closed the connection without answering")]
    NoAnswer,
}

/// A connection to clusterd's control socket.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to `path`.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when nobody listens there.
    pub fn connect(path: &Path) -> Result<Client, ClientError> {
        let s = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let writer = s.try_clone()?;
        Ok(Client {
            reader: BufReader::new(s),
            writer,
        })
    }

    /// Sends `request` and reads one response line.
    ///
    /// # Errors
    /// IO or decoding failures.
    pub fn call(&mut self, request: &str, follow: bool) -> Result<Response, ClientError> {
        let req = Request {
            version: API_VERSION,
            request: request.to_string(),
            follow,
        };
        let mut line = serde_json::to_string(&req)?;
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        self.read_response()
    }

    /// Reads the next response line (for streamed events).
    ///
    /// # Errors
    /// IO or decoding failures, [`ClientError::NoAnswer`] at end of stream.
    pub fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(ClientError::NoAnswer);
        }
        Ok(serde_json::from_str(&line)?)
    }

    /// Waits for events without a read timeout (for `events --follow`).
    ///
    /// # Errors
    /// IO failures.
    pub fn wait_forever(&mut self) -> Result<(), ClientError> {
        self.reader.get_ref().set_read_timeout(None)?;
        Ok(())
    }
}
