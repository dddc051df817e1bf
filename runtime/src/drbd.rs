//! Replication with the kernel's DRBD 8.4: the resource file clusterd writes for
//! `drbdadm`, and the replication status read from `/proc/drbd`.
//!
//! Both are pure functions: [`render_resource`] turns the cluster configuration into
//! the text of `/etc/drbd.d/<resource>.res`, [`parse_proc_drbd`] turns the kernel's
//! status text into [`DeviceStatus`]. The agent that runs `drbdadm` and watches the
//! device uses them; the tests feed them captured kernel output.

use std::fmt::{self, Write as _};

use tandem_config::{ApplianceConfig, NodeId, SplitBrainPolicy};

/// Timing knobs of the DRBD connection that are not part of the cluster
/// configuration. The defaults are DRBD's own; test rigs shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Seconds between keep-alive packets on an idle connection (`ping-int`).
    pub ping_int_s: u32,
    /// Tenths of a second to wait for a ping answer (`ping-timeout`).
    pub ping_timeout_ds: u32,
    /// Seconds between connection attempts (`connect-int`).
    pub connect_int_s: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            ping_int_s: 10,
            ping_timeout_ds: 5,
            connect_int_s: 10,
        }
    }
}

/// Program DRBD calls for its handlers; it reports to clusterd.
pub const HANDLER: &str = "/usr/bin/tandem";

/// DRBD's fencing mode. With fencing required, `resource-and-stonith`: when the
/// replication loses the peer, the primary suspends writes until the fence-peer
/// handler answers, which (the peer silent on every path) waits until clusterd has
/// powered the peer off, so no write is acknowledged that a peer taking over from
/// this node's silence would not have. Without fencing, `resource-only` (the peer is
/// outdated where it can be told; writes go on).
fn drbd_fencing(cfg: &ApplianceConfig) -> &'static str {
    match &cfg.fencing {
        Some(f) if f.policy == tandem_config::FencingPolicy::Required => "resource-and-stonith",
        _ => "resource-only",
    }
}

/// DRBD's `ping-int`: the tuning's, but at most half the heartbeat's deadtime (at
/// least 1 s). An idle link that broke is noticed after `ping-int` + `ping-timeout`;
/// that must come well within the deadtime, so that the node holding the data has
/// its silent peer powered off (and writes go on) before the peer's own fence, which
/// waits the deadtime and, on node1, the tiebreak delay, could land.
fn ping_int_s(cfg: &ApplianceConfig, tuning: Tuning) -> u32 {
    let half_deadtime = u32::try_from(cfg.heartbeat.deadtime.0 / 2000).unwrap_or(u32::MAX);
    tuning.ping_int_s.min(half_deadtime.max(1))
}

/// The DRBD resource file for the cluster, the same on both nodes.
///
/// DRBD matches `on <name>` sections against the node's `uname -n`, so the node's
/// host name must be set from the configuration before `drbdadm` runs.
#[must_use]
pub fn render_resource(cfg: &ApplianceConfig, tuning: Tuning) -> String {
    let r = &cfg.replication;
    let (sb0, sb1) = match r.split_brain {
        SplitBrainPolicy::Disconnect => ("disconnect", "disconnect"),
        SplitBrainPolicy::DiscardZeroChanges => ("discard-zero-changes", "consensus"),
        SplitBrainPolicy::DiscardSecondary => ("discard-zero-changes", "discard-secondary"),
    };
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        s,
        "# Written by clusterd from the cluster configuration; changes here are overwritten.\n\
         resource {res} {{\n\
         \x20   protocol C;\n\
         \x20   device {dev} minor {minor};\n\
         \x20   disk {disk};\n\
         \x20   meta-disk internal;\n\
         \x20   disk {{\n\
         \x20       resync-rate {rate}k;\n\
         \x20       c-plan-ahead 0;\n\
         \x20       fencing {fencing};\n\
         \x20       on-io-error detach;\n\
         \x20   }}\n\
         \x20   net {{\n\
         \x20       cram-hmac-alg sha256;\n\
         \x20       shared-secret \"{secret}\";\n\
         \x20       after-sb-0pri {sb0};\n\
         \x20       after-sb-1pri {sb1};\n\
         \x20       after-sb-2pri disconnect;\n\
         \x20       ping-int {ping};\n\
         \x20       ping-timeout {pto};\n\
         \x20       connect-int {ci};\n\
         \x20   }}\n\
         \x20   handlers {{\n\
         \x20       fence-peer \"{h} replication handler fence-peer\";\n\
         \x20       initial-split-brain \"{h} replication handler split-brain\";\n\
         \x20       split-brain \"{h} replication handler split-brain\";\n\
         \x20   }}\n",
        res = r.resource.as_str(),
        dev = r.device.as_str(),
        minor = minor_of(r.device.as_str()),
        disk = r.backing.as_str(),
        rate = r.resync_rate.kib_per_sec(),
        secret = r.shared_secret.expose(),
        ping = ping_int_s(cfg, tuning),
        pto = tuning.ping_timeout_ds,
        ci = tuning.connect_int_s,
        h = HANDLER,
        fencing = drbd_fencing(cfg),
    );
    for id in [NodeId::Node1, NodeId::Node2] {
        let n = cfg.network.node(id);
        let _ = write!(
            s,
            "    on {host} {{\n        address {addr}:{port};\n    }}\n",
            host = n.hostname.as_str(),
            addr = n.internal_address.addr(),
            port = r.port.get(),
        );
    }
    s.push_str("}\n");
    s
}

/// The minor number of `/dev/drbdN` (0 for any other name).
#[must_use]
pub fn minor_of(device: &str) -> u32 {
    device
        .strip_prefix("/dev/drbd")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A device's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// May be written.
    Primary,
    /// Receives the peer's writes.
    Secondary,
    /// Not known (peer not connected).
    Unknown,
}

/// The state of a backing disk as DRBD sees it (`ds:`), for this node or the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DiskState {
    /// No disk attached.
    Diskless,
    /// Being attached.
    Attaching,
    /// I/O error; detached.
    Failed,
    /// Being negotiated with the peer.
    Negotiating,
    /// Partly written during a resync: not usable on its own.
    Inconsistent,
    /// Consistent but known older than the peer's.
    Outdated,
    /// The peer's disk state is not known.
    DUnknown,
    /// Consistent; whether it is current is not known (no peer).
    Consistent,
    /// Current.
    UpToDate,
}

/// The connection state (`cs:`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connection {
    /// The device is not set up.
    Unconfigured,
    /// No network configuration, or dropped after a split brain or an auth failure.
    StandAlone,
    /// Waiting for the peer.
    WfConnection,
    /// Connected and replicating.
    Connected,
    /// Resync: this node sends.
    SyncSource,
    /// Resync: this node receives.
    SyncTarget,
    /// Any other (transient) state, by its kernel name.
    Other(String),
}

impl Connection {
    /// True when the peers talk to each other (connected, or a resync in one of its
    /// phases); false while waiting, disconnected or not set up.
    #[must_use]
    pub fn is_linked(&self) -> bool {
        match self {
            Connection::Connected | Connection::SyncSource | Connection::SyncTarget => true,
            Connection::Other(s) => [
                "WFBitMapS",
                "WFBitMapT",
                "WFSyncUUID",
                "StartingSyncS",
                "StartingSyncT",
                "PausedSyncS",
                "PausedSyncT",
                "VerifyS",
                "VerifyT",
            ]
            .contains(&s.as_str()),
            _ => false,
        }
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connection::Unconfigured => f.write_str("Unconfigured"),
            Connection::StandAlone => f.write_str("StandAlone"),
            Connection::WfConnection => f.write_str("WFConnection"),
            Connection::Connected => f.write_str("Connected"),
            Connection::SyncSource => f.write_str("SyncSource"),
            Connection::SyncTarget => f.write_str("SyncTarget"),
            Connection::Other(s) => f.write_str(s),
        }
    }
}

/// Resynchronisation progress.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Resync {
    /// Percent done, 0.0..=100.0.
    pub done_percent: f32,
    /// Seconds the kernel expects until done.
    pub eta_s: Option<u64>,
    /// Current speed in KiB/s.
    pub speed_kib_s: Option<u64>,
}

/// One DRBD device's status.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceStatus {
    /// Minor number.
    pub minor: u32,
    /// Connection state.
    pub connection: Connection,
    /// This node's role.
    pub role: Role,
    /// The peer's role.
    pub peer_role: Role,
    /// This node's disk.
    pub disk: DiskState,
    /// The peer's disk.
    pub peer_disk: DiskState,
    /// KiB out of sync (`oos:`).
    pub out_of_sync_kib: u64,
    /// Present while a resync runs.
    pub resync: Option<Resync>,
}

impl DeviceStatus {
    /// True when this node's data is current and may be made primary without
    /// losing acknowledged writes.
    #[must_use]
    pub fn data_good(&self) -> bool {
        self.disk == DiskState::UpToDate
    }
}

/// `/proc/drbd` did not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("/proc/drbd line {line}: {message}")]
pub struct ProcDrbdError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

/// Parses the kernel's `/proc/drbd` (DRBD 8.4) into one status per configured minor.
///
/// # Errors
/// A device line whose fields cannot be read.
pub fn parse_proc_drbd(text: &str) -> Result<Vec<DeviceStatus>, ProcDrbdError> {
    let mut out: Vec<DeviceStatus> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let err = |message: String| ProcDrbdError {
            line: i + 1,
            message,
        };
        if line.is_empty() || line.starts_with("version:") || line.starts_with("srcversion:") {
            continue;
        }
        if let Some((num, rest)) = line.split_once(": cs:") {
            let minor = num
                .parse()
                .map_err(|_| err(format!("{num:?} is not a minor number")))?;
            out.push(device_line(minor, rest).map_err(err)?);
            continue;
        }
        let Some(dev) = out.last_mut() else {
            continue;
        };
        if line.starts_with("ns:") {
            for kv in line.split_whitespace() {
                if let Some(v) = kv.strip_prefix("oos:") {
                    dev.out_of_sync_kib = v
                        .parse()
                        .map_err(|_| err(format!("oos:{v} is not a number")))?;
                }
            }
        } else if let Some(p) = line.find("sync'ed:") {
            let pct = line[p + 8..]
                .split_whitespace()
                .next()
                .and_then(|s| s.strip_suffix('%'))
                .and_then(|s| s.parse::<f32>().ok())
                .filter(|v| (0.0..=100.0).contains(v))
                .ok_or_else(|| err(format!("cannot read the resync progress in {line:?}")))?;
            dev.resync = Some(Resync {
                done_percent: pct,
                eta_s: None,
                speed_kib_s: None,
            });
        } else if let Some(rest) = line.strip_prefix("finish:") {
            let mut words = rest.split_whitespace();
            let eta = words.next().and_then(hms);
            let speed = match (words.next(), words.next()) {
                (Some("speed:"), Some(v)) => v.replace(',', "").parse().ok(),
                _ => None,
            };
            if let Some(r) = dev.resync.as_mut() {
                r.eta_s = eta;
                r.speed_kib_s = speed;
            }
        }
    }
    Ok(out)
}

/// `SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----`
fn device_line(minor: u32, rest: &str) -> Result<DeviceStatus, String> {
    let mut words = rest.split_whitespace();
    let cs = words.next().unwrap_or_default();
    let connection = match cs {
        "Unconfigured" => Connection::Unconfigured,
        "StandAlone" => Connection::StandAlone,
        "WFConnection" => Connection::WfConnection,
        "Connected" => Connection::Connected,
        "SyncSource" => Connection::SyncSource,
        "SyncTarget" => Connection::SyncTarget,
        "" => return Err("empty connection state".into()),
        other => Connection::Other(other.to_owned()),
    };
    let mut st = DeviceStatus {
        minor,
        connection,
        role: Role::Unknown,
        peer_role: Role::Unknown,
        disk: DiskState::Diskless,
        peer_disk: DiskState::DUnknown,
        out_of_sync_kib: 0,
        resync: None,
    };
    for w in words {
        if let Some(v) = w.strip_prefix("ro:") {
            let (a, b) = v
                .split_once('/')
                .ok_or_else(|| format!("ro:{v} is not local/peer"))?;
            st.role = role(a)?;
            st.peer_role = role(b)?;
        } else if let Some(v) = w.strip_prefix("ds:") {
            let (a, b) = v
                .split_once('/')
                .ok_or_else(|| format!("ds:{v} is not local/peer"))?;
            st.disk = disk(a)?;
            st.peer_disk = disk(b)?;
        }
    }
    Ok(st)
}

fn role(s: &str) -> Result<Role, String> {
    match s {
        "Primary" => Ok(Role::Primary),
        "Secondary" => Ok(Role::Secondary),
        "Unknown" => Ok(Role::Unknown),
        other => Err(format!("{other:?} is not a DRBD role")),
    }
}

fn disk(s: &str) -> Result<DiskState, String> {
    Ok(match s {
        "Diskless" => DiskState::Diskless,
        "Attaching" => DiskState::Attaching,
        "Failed" => DiskState::Failed,
        "Negotiating" => DiskState::Negotiating,
        "Inconsistent" => DiskState::Inconsistent,
        "Outdated" => DiskState::Outdated,
        "DUnknown" => DiskState::DUnknown,
        "Consistent" => DiskState::Consistent,
        "UpToDate" => DiskState::UpToDate,
        other => return Err(format!("{other:?} is not a DRBD disk state")),
    })
}

/// `1:02:03` or `0:00:07` → seconds.
fn hms(s: &str) -> Option<u64> {
    let mut total = 0u64;
    for part in s.split(':') {
        total = total.checked_mul(60)?.checked_add(part.parse().ok()?)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNCING: &str = "version: 8.4.11 (api:1/proto:86-101)
srcversion: 211FB288A383ED945B83420 
 0: cs:SyncSource ro:Primary/Secondary ds:UpToDate/Inconsistent C r-----
    ns:61440 nr:0 dw:0 dr:62400 al:8 bm:0 lo:0 pe:2 ua:0 ap:0 ep:1 wo:f oos:200704
\t[===>................] sync'ed: 23.5% (200704/262144)K
\tfinish: 0:00:07 speed: 28,672 (28,672) K/sec
";

    #[test]
    fn reads_a_resync_in_progress() {
        let d = parse_proc_drbd(SYNCING).expect("parses");
        assert_eq!(d.len(), 1);
        let d = &d[0];
        assert_eq!(d.minor, 0);
        assert_eq!(d.connection, Connection::SyncSource);
        assert_eq!((d.role, d.peer_role), (Role::Primary, Role::Secondary));
        assert_eq!(
            (d.disk, d.peer_disk),
            (DiskState::UpToDate, DiskState::Inconsistent)
        );
        assert_eq!(d.out_of_sync_kib, 200_704);
        assert_eq!(
            d.resync,
            Some(Resync {
                done_percent: 23.5,
                eta_s: Some(7),
                speed_kib_s: Some(28_672)
            })
        );
        assert!(d.data_good());
    }

    #[test]
    fn reads_standalone_and_unconfigured_devices() {
        let t = " 0: cs:StandAlone ro:Secondary/Unknown ds:Outdated/DUnknown   r-----\n    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n 1: cs:Unconfigured\n";
        let d = parse_proc_drbd(t).expect("parses");
        assert_eq!(d[0].connection, Connection::StandAlone);
        assert_eq!(d[0].disk, DiskState::Outdated);
        assert!(!d[0].data_good());
        assert_eq!(d[1].connection, Connection::Unconfigured);
        assert_eq!(d[1].role, Role::Unknown);
    }

    #[test]
    fn refuses_garbled_device_lines_with_their_line_number() {
        let e = parse_proc_drbd("version: 8.4.11\n 0: cs:Connected ro:Boss/Secondary\n")
            .expect_err("refused");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("\"Boss\" is not a DRBD role"), "{e}");
        assert!(parse_proc_drbd(" x: cs:Connected\n").is_err());
        assert!(parse_proc_drbd(" 0: cs:Connected\n\t sync'ed: 300% (1/1)K\n").is_err());
    }

    #[test]
    fn renders_a_resource_with_both_nodes() {
        let cfg = tandem_config::ApplianceConfig::from_toml(include_str!(
            "../../config/tests/cases/minimal.toml"
        ))
        .expect("the golden configuration is valid");
        let text = render_resource(&cfg, Tuning::default());
        assert!(text.contains("resource r0 {"), "{text}");
        assert!(text.contains("protocol C;"));
        assert!(text.contains("device /dev/drbd0 minor 0;"));
        assert!(text.contains("resync-rate 102400k;"));
        assert!(text.contains("after-sb-2pri disconnect;"));
        for id in [NodeId::Node1, NodeId::Node2] {
            let n = cfg.network.node(id);
            assert!(text.contains(&format!("on {} {{", n.hostname.as_str())));
            assert!(text.contains(&format!("address {}:7788;", n.internal_address.addr())));
        }
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn writes_wait_for_the_fence_only_where_fencing_is_required() {
        let mut cfg = tandem_config::ApplianceConfig::from_toml(include_str!(
            "../../config/tests/cases/minimal.toml"
        ))
        .expect("the golden configuration is valid");
        cfg.fencing = None;
        let text = render_resource(&cfg, Tuning::default());
        assert!(text.contains("fencing resource-only;"), "{text}");
        let bmc = |a: &str| tandem_config::BmcConfig {
            address: a.parse().expect("an address"),
            port: tandem_config::Port::try_from(623).expect("a port"),
            user: "fence".parse().expect("a user"),
            password: "fence-secret-1".parse().expect("a password"),
            cipher_suite: 3,
        };
        let mut f = tandem_config::FencingConfig {
            policy: tandem_config::FencingPolicy::Required,
            timeout: tandem_config::DEFAULT_FENCE_TIMEOUT,
            node1_delay: tandem_config::DEFAULT_NODE1_DELAY,
            node1: bmc("192.0.2.21"),
            node2: bmc("192.0.2.22"),
        };
        cfg.fencing = Some(f.clone());
        let text = render_resource(&cfg, Tuning::default());
        assert!(text.contains("fencing resource-and-stonith;"), "{text}");
        f.policy = tandem_config::FencingPolicy::Off;
        cfg.fencing = Some(f);
        let text = render_resource(&cfg, Tuning::default());
        assert!(text.contains("fencing resource-only;"), "{text}");
    }

    #[test]
    fn a_broken_link_is_noticed_within_half_the_deadtime() {
        let mut cfg = tandem_config::ApplianceConfig::from_toml(include_str!(
            "../../config/tests/cases/minimal.toml"
        ))
        .expect("the golden configuration is valid");
        cfg.heartbeat.deadtime = tandem_config::Millis(60_000);
        assert!(render_resource(&cfg, Tuning::default()).contains("ping-int 10;"));
        cfg.heartbeat.deadtime = tandem_config::Millis(4_000);
        assert!(render_resource(&cfg, Tuning::default()).contains("ping-int 2;"));
        cfg.heartbeat.deadtime = tandem_config::Millis(1_000);
        assert!(render_resource(&cfg, Tuning::default()).contains("ping-int 1;"));
    }
}
