//! Hardware polling for clusterd: IPMI sensors and the Areca RAID controller.
//!
//! Reads are blocking (`/dev/ipmi0` ioctls, sysfs message unit), so they run on one
//! dedicated thread. Each poll feeds [`tandem_board::poller::SensorPoller`], whose
//! confirmed status changes become clusterd events through a callback; the latest
//! readings are kept in a shared [`HwJson`] snapshot for the `hw` control request and
//! the summary in `status`.
//!
//! Boards: `linux` (the first IPMI device node and the first Areca message unit that
//! exist; missing hardware is "absent", not an error; a device that exists but fails is
//! reported and re-opened at the next poll), `lan:ADDRESS:PORT` (a BMC over RMCP+,
//! cipher suite 3, e.g. a BMC whose in-band interface is unusable, and the host-side
//! tests against OpenIPMI's `ipmi_sim`), `sim:FILE` (a simulated BMC and controller
//! driven by a JSON scenario re-read before every poll, for tests and demos) and `none`.
//!
//! A BMC or controller that is absent is looked for again at every poll (a failed open
//! of the device node, a listing of the SCSI hosts): init loads `ipmi_si` and `arcmsr`
//! while clusterd starts, so either may appear after start-up.
//!
//! Limitations: one BMC and one RAID controller; the SEL is not read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Deserialize;
use tandem_board::Millis;
use tandem_board::areca::linux::{SCSI_HOST_CLASS, SysfsMu};
use tandem_board::areca::sim::SimRaid;
use tandem_board::areca::{ArecaError, Controller, RaidReport, RaidState, report};
use tandem_board::ipmi::bmc::{Bmc, Sweep};
use tandem_board::ipmi::lan::{LanConfig, LanSession};
use tandem_board::ipmi::linux::DevIpmi;
use tandem_board::ipmi::sdr::{RecordBuilder, SensorKey, SensorType};
use tandem_board::ipmi::sensor::{Health, PsuState, Value};
use tandem_board::ipmi::sim::{SimBmc, SimSensor};
use tandem_board::ipmi::{IpmiError, IpmiTransport};
use tandem_board::poller::{
    PollerConfig, PollerInput, PollerOutput, SensorPoller, StatusEvent, Subject,
};

use tandem_api::{HwJson, HwSummaryJson, RaidItemJson, RaidJson, SensorJson};

/// Which hardware clusterd polls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Board {
    /// This machine's IPMI device and Areca controller, when present.
    Linux,
    /// A BMC over IPMI 2.0 LAN (RMCP+), and this machine's Areca controller when present.
    Lan(SocketAddr),
    /// A simulated BMC and controller following a JSON scenario file.
    Sim(PathBuf),
    /// No hardware polling.
    None,
}

impl std::str::FromStr for Board {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "linux" => Ok(Self::Linux),
            "none" => Ok(Self::None),
            _ => {
                if let Some(f) = s.strip_prefix("sim:").filter(|f| !f.is_empty()) {
                    Ok(Self::Sim(PathBuf::from(f)))
                } else if let Some(a) = s.strip_prefix("lan:") {
                    a.parse().map(Self::Lan).map_err(|_| {
                        format!("board {s:?}: expected lan:ADDRESS:PORT, e.g. lan:10.0.0.5:623")
                    })
                } else {
                    Err(format!(
                        "unknown board {s:?}: expected linux, none, lan:ADDRESS:PORT or sim:SCENARIO.json"
                    ))
                }
            }
        }
    }
}

/// Polling settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwConfig {
    /// What to poll.
    pub board: Board,
    /// Time between polls when nothing changes.
    pub interval: Duration,
    /// User and password for [`Board::Lan`].
    pub lan_credentials: Option<(String, String)>,
}

/// Parses `30`, `30s`, `500ms` or `2m` into a duration of at least 100 ms.
///
/// # Errors
/// A message naming the bad value.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad interval {s:?}: expected e.g. 30s or 500ms"))?;
    let ms = n
        .checked_mul(scale)
        .ok_or_else(|| format!("interval {s:?} too long"))?;
    if ms < 100 {
        return Err(format!("interval {s:?} shorter than 100ms"));
    }
    Ok(Duration::from_millis(ms))
}

/// One hardware event for the event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwEvent {
    /// `hw_fan`, `hw_psu`, `hw_raid`, `hw_bmc`, `hw_sim`, ...
    pub kind: &'static str,
    /// For people.
    pub text: String,
    /// The confirmed health change behind it; `None` for reports that are none (a bad
    /// simulator scenario).
    pub change: Option<HwChange>,
}

/// A confirmed health change of one sensor, volume, disk, controller or the BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HwChange {
    /// Its name, e.g. `Fan 1`.
    pub name: String,
    /// Health before; `None` at the first poll.
    pub from: Option<String>,
    /// Health now.
    pub to: String,
}

/// Receives the hardware events.
pub type Notify = Box<dyn Fn(HwEvent) + Send>;

/// The running poller thread; dropping it stops the thread after its current poll.
#[derive(Debug)]
pub struct HwPoller {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HwPoller {
    fn drop(&mut self) {
        // The thread ends at its next wake-up. It is not joined: a poll blocked on a
        // silent BMC must not hold up clusterd's exit.
        drop(self.stop.take());
        drop(self.thread.take());
    }
}

/// The snapshot before the first poll.
#[must_use]
pub fn initial_snapshot(board: &Board) -> HwJson {
    let (state, text) = if *board == Board::None {
        ("absent", "hardware polling disabled")
    } else {
        ("pending", "not polled yet")
    };
    HwJson {
        summary: HwSummaryJson {
            state: state.into(),
            problems: 0,
            pending: 0,
            text: text.into(),
        },
        bmc: "absent".into(),
        bmc_detail: None,
        sensors: vec![],
        raid: RaidJson {
            state: "absent".into(),
            detail: None,
            controller: None,
            volumes: vec![],
            disks: vec![],
        },
        polled_ms: None,
    }
}

/// Opens the hardware and starts polling it. Hardware that is not there is reported
/// absent in `snapshot`; with nothing to poll no thread is started.
///
/// # Errors
/// An unreadable or invalid scenario file, a lan board without credentials, or no thread.
/// A device that exists but cannot be opened is not an error here: the poll loop reports
/// it as that device's fault and retries.
pub fn start(
    config: &HwConfig,
    snapshot: Arc<Mutex<HwJson>>,
    notify: Notify,
) -> anyhow::Result<Option<HwPoller>> {
    let hw: Box<dyn Hardware> = match &config.board {
        Board::None => return Ok(None),
        Board::Linux | Board::Lan(_) => {
            let open: Opener = match &config.board {
                Board::Lan(addr) => {
                    let (user, password) = config
                        .lan_credentials
                        .clone()
                        .context("a lan board needs the BMC's user and password")?;
                    let lan = LanConfig::new(*addr, &user, &password);
                    Box::new(move || {
                        LanSession::open(lan.clone())
                            .map(|s| Some(Box::new(s) as Box<dyn IpmiTransport>))
                    })
                }
                _ => Box::new(|| {
                    DevIpmi::discover_default()
                        .map(|d| d.map(|d| Box::new(d) as Box<dyn IpmiTransport>))
                }),
            };
            // Devices are opened on the polling thread, at its first poll and again at
            // every later one while absent or failing: a driver may load after start-up, a
            // silent BMC must not delay start-up, and a device that exists but cannot be
            // opened is that device's fault, reported by the poll loop, never fatal.
            Box::new(Real {
                open,
                bmc: Slot::Retry,
                raid: Slot::Retry,
                scsi_hosts: PathBuf::from(SCSI_HOST_CLASS),
            })
        }
        Board::Sim(path) => Box::new(SimHardware::load(path)?),
    };
    let interval = Millis(u64::try_from(config.interval.as_millis()).unwrap_or(u64::MAX));
    // The poller shortens the confirming re-reads and the regular period so that a
    // change is reported within one interval.
    let poller = SensorPoller::new(PollerConfig {
        interval,
        ..PollerConfig::default()
    });
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("hw-poll".into())
        .spawn(move || poll_loop(hw, poller, &snapshot, &notify, &stopped))
        .context("starting the hardware polling thread")?;
    Ok(Some(HwPoller {
        stop: Some(stop),
        thread: Some(thread),
    }))
}

/// What the poll loop needs from a board.
trait Hardware: Send {
    /// Brings simulated hardware up to date; `Err` names what is wrong.
    fn refresh(&mut self) -> Result<(), String>;
    /// One sensor sweep; `None` without a BMC.
    fn sweep(&mut self) -> Option<Result<Sweep, IpmiError>>;
    /// One RAID poll.
    fn raid(&mut self) -> RaidReport;
}

/// A device of the linux and lan boards.
enum Slot<T> {
    /// Not on this machine (yet): looked for again at the next poll.
    Absent,
    /// Opened.
    Open(T),
    /// Exists but could not be opened; opening is retried at the next poll.
    Retry,
}

/// Opens the BMC transport: `Ok(None)` when there is none.
type Opener = Box<dyn FnMut() -> Result<Option<Box<dyn IpmiTransport>>, IpmiError> + Send>;

struct Real {
    open: Opener,
    bmc: Slot<Bmc<Box<dyn IpmiTransport>>>,
    raid: Slot<Controller<SysfsMu>>,
    /// Where Areca message units are looked for (the SCSI host class in sysfs).
    scsi_hosts: PathBuf,
}

impl Real {
    fn open_bmc(&mut self) -> Option<IpmiError> {
        match (self.open)() {
            Ok(Some(d)) => self.bmc = Slot::Open(Bmc::new(d)),
            Ok(None) => self.bmc = Slot::Absent,
            Err(e) => {
                self.bmc = Slot::Retry;
                return Some(e);
            }
        }
        None
    }

    fn open_raid(&mut self) -> Option<ArecaError> {
        match SysfsMu::discover(&self.scsi_hosts) {
            Ok(Some(t)) => self.raid = Slot::Open(Controller::new(t, None)),
            Ok(None) => self.raid = Slot::Absent,
            Err(e) => {
                self.raid = Slot::Retry;
                return Some(e);
            }
        }
        None
    }
}

impl Hardware for Real {
    fn refresh(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn sweep(&mut self) -> Option<Result<Sweep, IpmiError>> {
        if matches!(self.bmc, Slot::Retry | Slot::Absent)
            && let Some(e) = self.open_bmc()
        {
            return Some(Err(e));
        }
        match &mut self.bmc {
            Slot::Open(b) => Some(b.sweep()),
            _ => None,
        }
    }
    fn raid(&mut self) -> RaidReport {
        if matches!(self.raid, Slot::Retry | Slot::Absent)
            && let Some(e) = self.open_raid()
        {
            return RaidReport::Fault(e);
        }
        match &mut self.raid {
            Slot::Open(c) => report(Some(c)),
            _ => RaidReport::Absent,
        }
    }
}

fn poll_loop(
    mut hw: Box<dyn Hardware>,
    mut poller: SensorPoller,
    snapshot: &Mutex<HwJson>,
    notify: &Notify,
    stop: &std::sync::mpsc::Receiver<()>,
) {
    let origin = std::time::Instant::now();
    let now = || Millis(u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX));
    let mut types: BTreeMap<SensorKey, SensorType> = BTreeMap::new();
    let mut last_refresh_error: Option<String> = None;
    poller.start(now());
    let mut next = Millis(0);
    loop {
        while let Some(o) = poller.poll_output() {
            match o {
                PollerOutput::PollAt(t) => next = t,
                PollerOutput::Event(e) => {
                    let (kind, text) = describe(&e, &types);
                    notify(HwEvent {
                        kind,
                        text,
                        change: Some(HwChange {
                            name: e.name.clone(),
                            from: e.from.map(|h| h.to_string()),
                            to: e.to.to_string(),
                        }),
                    });
                }
            }
        }
        let wait = Duration::from_millis(next.0.saturating_sub(now().0));
        match stop.recv_timeout(wait) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // Stop requested or the daemon is gone.
            _ => return,
        }
        // Deadlines count from when the readings were taken: the time a poll takes does
        // not add to the wait for the next one.
        let t = now();
        match hw.refresh() {
            Ok(()) => last_refresh_error = None,
            Err(e) => {
                if last_refresh_error.as_ref() != Some(&e) {
                    notify(HwEvent {
                        kind: "hw_sim",
                        text: e.clone(),
                        change: None,
                    });
                }
                last_refresh_error = Some(e);
            }
        }
        let sweep = hw.sweep();
        let raid = hw.raid();
        let mut bmc_detail = None;
        match &sweep {
            None => {}
            Some(Ok(s)) => {
                for r in &s.readings {
                    types.insert(r.key, r.sensor_type);
                }
                poller.handle(t, PollerInput::Sweep(s));
            }
            Some(Err(e)) => {
                let detail = crate::error_chain(e);
                bmc_detail = Some(format!("{}: {detail}", e.kind()));
                poller.handle(
                    t,
                    PollerInput::SweepFailed {
                        kind: e.kind(),
                        detail,
                    },
                );
            }
        }
        poller.handle(t, PollerInput::Raid(&raid));
        let snap = build_snapshot(&poller, sweep.as_ref(), bmc_detail, &raid);
        if let Ok(mut g) = snapshot.lock() {
            // A failed sweep keeps the last readings on show (marked by the BMC state).
            let keep = matches!(sweep, Some(Err(_)));
            let sensors = std::mem::take(&mut g.sensors);
            *g = snap;
            if keep {
                g.sensors = sensors;
            }
        }
    }
}

fn event_kind(subject: &Subject, types: &BTreeMap<SensorKey, SensorType>) -> &'static str {
    match subject {
        Subject::Bmc => "hw_bmc",
        Subject::RaidController | Subject::RaidVolume(_) | Subject::RaidDisk(_) => "hw_raid",
        Subject::SdrRecord(_) => "hw_sensor",
        Subject::Sensor(key) => match types.get(key).copied() {
            Some(SensorType::POWER_SUPPLY) => "hw_psu",
            Some(SensorType::FAN) => "hw_fan",
            Some(SensorType::TEMPERATURE) => "hw_temperature",
            Some(SensorType::VOLTAGE) => "hw_voltage",
            _ => "hw_sensor",
        },
    }
}

fn describe(e: &StatusEvent, types: &BTreeMap<SensorKey, SensorType>) -> (&'static str, String) {
    let mut text = match (&e.subject, e.from) {
        (Subject::Bmc, _) if e.to == Health::Unavailable => "BMC unreachable".to_string(),
        (Subject::Bmc, Some(_)) => "BMC reachable again".to_string(),
        (_, Some(from)) => format!("{}: {from} -> {}", e.name, e.to),
        (_, None) => format!("{}: {}", e.name, e.to),
    };
    if let Some(v) = e.value {
        let t = match &e.subject {
            Subject::Sensor(k) => types.get(k).copied(),
            _ => None,
        };
        let (value, words) = value_text(v, t);
        text.push_str(&format!(", reads {value} ({words})"));
    }
    if let Some(d) = &e.detail {
        text.push_str(&format!(" ({d})"));
    }
    (event_kind(&e.subject, types), text)
}

/// A reading as text and its state word.
fn value_text(v: Value, t: Option<SensorType>) -> (String, String) {
    match v {
        Value::Analog {
            value, unit, state, ..
        } => (format!("{value:.2} {unit}"), state.short().into()),
        Value::Discrete { states } => {
            let words = if t == Some(SensorType::POWER_SUPPLY) {
                psu_words(states)
            } else {
                format!("states 0x{states:04x}")
            };
            (format!("0x{states:04x}"), words)
        }
        Value::Unavailable => ("na".into(), "na".into()),
    }
}

fn psu_words(states: u16) -> String {
    let p = PsuState::from_bits(states);
    let mut w = vec![if p.present { "present" } else { "absent" }];
    if p.failed {
        w.push("failed");
    }
    if p.predictive_failure {
        w.push("predictive failure");
    }
    if p.ac_lost {
        w.push("ac lost");
    }
    if p.input_or_config_error {
        w.push("input or configuration error");
    }
    w.join(", ")
}

fn type_name(t: SensorType) -> String {
    match t {
        SensorType::TEMPERATURE => "temperature".into(),
        SensorType::VOLTAGE => "voltage".into(),
        SensorType::CURRENT => "current".into(),
        SensorType::FAN => "fan".into(),
        SensorType::POWER_SUPPLY => "power_supply".into(),
        SensorType(c) => format!("type 0x{c:02x}"),
    }
}

fn raid_health(s: RaidState) -> Health {
    match s {
        RaidState::Ok => Health::Ok,
        RaidState::Degraded | RaidState::Rebuilding { .. } => Health::Warning,
        RaidState::Failed => Health::Critical,
    }
}

/// The health and state words of a sensor owned by another controller.
const NOT_READ: &str = "not read";

fn build_snapshot(
    poller: &SensorPoller,
    sweep: Option<&Result<Sweep, IpmiError>>,
    bmc_detail: Option<String>,
    raid: &RaidReport,
) -> HwJson {
    let mut sensors = vec![];
    if let Some(Ok(s)) = sweep {
        for r in &s.readings {
            let (value, unit) = match r.value {
                Value::Analog { value, unit, .. } => (Some(value), Some(unit.to_string())),
                _ => (None, None),
            };
            let states = match r.value {
                Value::Discrete { states } => Some(states),
                _ => None,
            };
            sensors.push(SensorJson {
                name: r.name.clone(),
                sensor_type: type_name(r.sensor_type),
                value,
                unit,
                states,
                state: value_text(r.value, Some(r.sensor_type)).1,
                health: r.health.to_string(),
                detail: None,
            });
        }
        let unavailable = |name: String, detail: String| SensorJson {
            name,
            sensor_type: "unknown".into(),
            value: None,
            unit: None,
            states: None,
            state: "na".into(),
            health: Health::Unavailable.to_string(),
            detail: Some(detail),
        };
        for f in &s.faults {
            sensors.push(unavailable(f.name.clone(), crate::error_chain(&f.error)));
        }
        // A record that cannot be read may hide a sensor: shown as a fault, not left out.
        for f in &s.record_faults {
            sensors.push(unavailable(f.label(), crate::error_chain(&*f.error)));
        }
        for n in &s.not_read {
            sensors.push(SensorJson {
                name: n.name.clone(),
                sensor_type: type_name(n.sensor_type),
                value: None,
                unit: None,
                states: None,
                state: NOT_READ.into(),
                health: NOT_READ.into(),
                detail: Some(format!(
                    "owned by controller {:#04x}, which is not bridged to",
                    n.key.owner
                )),
            });
        }
    }
    let bmc = match sweep {
        None => "absent",
        Some(Ok(_)) => "ok",
        Some(Err(_)) => "unreachable",
    };
    let item = |number: u8, name: &str, state: RaidState| RaidItemJson {
        number,
        name: name.into(),
        state: state.to_string(),
        health: raid_health(state).to_string(),
    };
    let raid = match raid {
        RaidReport::Absent => RaidJson {
            state: "absent".into(),
            detail: None,
            controller: None,
            volumes: vec![],
            disks: vec![],
        },
        RaidReport::Fault(e) => RaidJson {
            state: "fault".into(),
            detail: Some(crate::error_chain(e)),
            controller: None,
            volumes: vec![],
            disks: vec![],
        },
        RaidReport::Present(s) => RaidJson {
            state: "present".into(),
            detail: None,
            controller: Some(format!(
                "{} {} firmware {}",
                s.controller.vendor, s.controller.model, s.controller.firmware
            )),
            volumes: s
                .volumes
                .iter()
                .map(|v| item(v.number, &v.name, v.state))
                .collect(),
            disks: s
                .disks
                .iter()
                .map(|d| item(d.number, &d.model, d.state))
                .collect(),
        },
    };
    let problems = poller
        .status()
        .filter(|(_, _, h)| h.is_some_and(|h| h != Health::Ok))
        .count();
    let problems = u32::try_from(problems).unwrap_or(u32::MAX);
    // Seen wrong but not yet confirmed (the BMC just stopped answering, a PSU just
    // failed): not an event yet, but not "ok" either.
    let pending = u32::try_from(poller.pending().count()).unwrap_or(u32::MAX);
    let pending_text = match pending {
        0 => String::new(),
        1 => ", 1 change awaiting confirmation".into(),
        n => format!(", {n} changes awaiting confirmation"),
    };
    let absent = bmc == "absent" && raid.state == "absent";
    let summary = if absent {
        HwSummaryJson {
            state: "absent".into(),
            problems: 0,
            pending: 0,
            text: "no BMC, no RAID controller".into(),
        }
    } else if problems == 0 && pending == 0 {
        let read = sensors.iter().filter(|s| s.health != NOT_READ).count();
        let not_read = sensors.len() - read;
        HwSummaryJson {
            state: "ok".into(),
            problems: 0,
            pending: 0,
            text: format!(
                "ok ({read} sensors{}, raid {})",
                if not_read > 0 {
                    format!(", {not_read} not read")
                } else {
                    String::new()
                },
                if raid.state == "absent" {
                    "absent"
                } else {
                    "ok"
                }
            ),
        }
    } else if problems == 0 {
        HwSummaryJson {
            state: "pending".into(),
            problems: 0,
            pending,
            text: format!("no confirmed problem{pending_text}"),
        }
    } else {
        HwSummaryJson {
            state: "problems".into(),
            problems,
            pending,
            text: format!(
                "{problems} problem{}{pending_text}",
                if problems == 1 { "" } else { "s" }
            ),
        }
    };
    HwJson {
        summary,
        bmc: bmc.into(),
        bmc_detail,
        sensors,
        raid,
        polled_ms: Some(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        ),
    }
}

// ---- Simulated board ----

/// A scenario for `--board sim:FILE`: JSON, re-read before every poll so a test or a
/// demonstration can change readings while clusterd runs.
///
/// ```json
/// { "unresponsive": false,
///   "sensors": [
///     { "number": 1, "name": "Fan 1", "kind": "fan", "raw": 100, "m": 60,
///       "thresholds": { "lcr": 10, "lnc": 20 } },
///     { "number": 2, "name": "PS1 Status", "kind": "psu", "states": 1 } ],
///   "raid": { "volume": [0, 0, 0], "disks": [ { "slot": 1, "state": 16 } ] } }
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// The BMC answers nothing.
    #[serde(default)]
    unresponsive: bool,
    #[serde(default)]
    sensors: Vec<SimSensorDef>,
    /// Without it, no RAID controller.
    #[serde(default)]
    raid: Option<SimRaidDef>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimSensorDef {
    number: u8,
    name: String,
    /// `temperature`, `voltage`, `fan` (threshold sensors) or `psu` (discrete).
    kind: String,
    /// Raw reading byte.
    #[serde(default)]
    raw: u8,
    /// Conversion factor M (value = M × raw × 10^r_exp); default 1.
    #[serde(default = "one")]
    m: i16,
    #[serde(default)]
    r_exp: i8,
    /// Raw thresholds; the simulated BMC compares the raw reading against them.
    #[serde(default)]
    thresholds: Thresholds,
    /// State bits; for threshold sensors they override the comparison.
    #[serde(default)]
    states: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Thresholds {
    lnc: Option<u8>,
    lcr: Option<u8>,
    lnr: Option<u8>,
    unc: Option<u8>,
    ucr: Option<u8>,
    unr: Option<u8>,
}

impl Thresholds {
    /// Readable mask and raw values in LNC … UNR order.
    fn raw(self) -> (u8, [u8; 6]) {
        let all = [self.lnc, self.lcr, self.lnr, self.unc, self.ucr, self.unr];
        let mut mask = 0u8;
        let mut raw = [0u8; 6];
        for (i, t) in all.iter().enumerate() {
            if let Some(v) = t {
                mask |= 1 << i;
                raw[i] = *v;
            }
        }
        (mask, raw)
    }

    /// Comparison bits the way a BMC sets them: at or below a lower threshold, at or
    /// above an upper one.
    fn compare(self, raw: u8) -> u16 {
        let mut bits = 0u16;
        for (i, t) in [self.lnc, self.lcr, self.lnr].iter().enumerate() {
            if t.is_some_and(|t| raw <= t) {
                bits |= 1 << i;
            }
        }
        for (i, t) in [self.unc, self.ucr, self.unr].iter().enumerate() {
            if t.is_some_and(|t| raw >= t) {
                bits |= 1 << (i + 3);
            }
        }
        bits
    }
}

fn one() -> i16 {
    1
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimRaidDef {
    /// Volume 0's status bits, fail mask and progress (0.1 %), as the firmware reports.
    #[serde(default)]
    volume: Option<[u32; 3]>,
    /// Disk states by slot (`null` removes the disk).
    #[serde(default)]
    disks: Vec<SimDiskDef>,
    #[serde(default)]
    unresponsive: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimDiskDef {
    slot: usize,
    state: Option<u8>,
}

fn read_scenario(path: &Path) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading sim scenario {}", path.display()))?;
    let s: Scenario =
        serde_json::from_str(&text).with_context(|| format!("sim scenario {}", path.display()))?;
    for d in &s.sensors {
        if !matches!(d.kind.as_str(), "temperature" | "voltage" | "fan" | "psu") {
            bail!(
                "sim scenario {}: sensor {:?}: unknown kind {:?}, expected temperature, voltage, fan or psu",
                path.display(),
                d.name,
                d.kind
            );
        }
        if s.sensors.iter().filter(|o| o.number == d.number).count() > 1 {
            bail!(
                "sim scenario {}: sensor number {} used twice",
                path.display(),
                d.number
            );
        }
    }
    if let Some(r) = &s.raid
        && let Some(d) = r.disks.iter().find(|d| d.slot >= 8)
    {
        bail!(
            "sim scenario {}: disk slot {} beyond the controller's 8 ports",
            path.display(),
            d.slot
        );
    }
    Ok(s)
}

/// The SDR part of a sensor definition: a change rebuilds the repository.
fn sdr_key(d: &SimSensorDef) -> (u8, &str, &str, i16, i8, (u8, [u8; 6])) {
    (d.number, &d.name, &d.kind, d.m, d.r_exp, d.thresholds.raw())
}

fn build_bmc(s: &Scenario) -> SimBmc {
    let mut bmc = SimBmc::new();
    for d in &s.sensors {
        let record = match d.kind.as_str() {
            "psu" => RecordBuilder::compact(d.number, SensorType::POWER_SUPPLY, 0x6F, &d.name)
                .entity(10, 1)
                .build(),
            kind => {
                let (t, unit) = match kind {
                    "temperature" => (SensorType::TEMPERATURE, 1),
                    "voltage" => (SensorType::VOLTAGE, 4),
                    _ => (SensorType::FAN, 18),
                };
                let (mask, raw) = d.thresholds.raw();
                // The record lists them UNR, UCR, UNC, LNR, LCR, LNC.
                let sdr_order = [raw[5], raw[4], raw[3], raw[2], raw[1], raw[0]];
                RecordBuilder::full(d.number, t, unit, &d.name)
                    .factors(d.m, 0, 0, d.r_exp)
                    .thresholds(sdr_order, mask)
                    .build()
            }
        };
        bmc.add_record(record);
    }
    apply_readings(&mut bmc, s);
    bmc
}

fn apply_readings(bmc: &mut SimBmc, s: &Scenario) {
    for d in &s.sensors {
        let states = match (d.kind.as_str(), d.states) {
            (_, Some(st)) => st,
            ("psu", None) => 0,
            (_, None) => d.thresholds.compare(d.raw),
        };
        bmc.set_sensor(
            d.number,
            SimSensor {
                raw: d.raw,
                flags: 0xC0,
                states,
                thresholds: d.thresholds.raw(),
            },
        );
    }
    bmc.set_unresponsive(s.unresponsive);
}

fn apply_raid(c: &mut SimRaid, r: &SimRaidDef) {
    // Start from the healthy mirror so a scenario says only what differs.
    *c = SimRaid::new();
    if let Some([status, fail_mask, progress]) = r.volume {
        c.set_volume(status, fail_mask, progress);
    }
    for d in &r.disks {
        c.set_disk(d.slot, d.state);
    }
    c.set_unresponsive(r.unresponsive);
}

struct SimHardware {
    path: PathBuf,
    scenario: Scenario,
    bmc: Bmc<SimBmc>,
    raid: Option<Controller<SimRaid>>,
}

impl SimHardware {
    fn load(path: &Path) -> anyhow::Result<Self> {
        let scenario = read_scenario(path)?;
        let bmc = Bmc::new(build_bmc(&scenario));
        let raid = scenario.raid.as_ref().map(|r| {
            let mut c = SimRaid::new();
            apply_raid(&mut c, r);
            Controller::new(c, None)
        });
        Ok(Self {
            path: path.to_owned(),
            scenario,
            bmc,
            raid,
        })
    }
}

impl Hardware for SimHardware {
    fn refresh(&mut self) -> Result<(), String> {
        // A bad edit keeps the previous state: the simulated hardware does not change.
        let s = read_scenario(&self.path).map_err(|e| format!("{e:#}"))?;
        let old: Vec<_> = self.scenario.sensors.iter().map(sdr_key).collect();
        let new: Vec<_> = s.sensors.iter().map(sdr_key).collect();
        if old == new {
            apply_readings(self.bmc.transport_mut(), &s);
        } else {
            self.bmc.replace_transport(build_bmc(&s));
            self.bmc.invalidate_cache();
        }
        match (&s.raid, self.raid.as_mut()) {
            (None, _) => self.raid = None,
            (Some(r), Some(c)) => apply_raid(c.transport_mut(), r),
            (Some(r), None) => {
                let mut c = SimRaid::new();
                apply_raid(&mut c, r);
                self.raid = Some(Controller::new(c, None));
            }
        }
        self.scenario = s;
        Ok(())
    }
    fn sweep(&mut self) -> Option<Result<Sweep, IpmiError>> {
        Some(self.bmc.sweep())
    }
    fn raid(&mut self) -> RaidReport {
        report(self.raid.as_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_and_interval_parse() {
        assert_eq!("linux".parse::<Board>(), Ok(Board::Linux));
        assert_eq!("none".parse::<Board>(), Ok(Board::None));
        assert_eq!(
            "sim:/tmp/s.json".parse::<Board>(),
            Ok(Board::Sim("/tmp/s.json".into()))
        );
        assert!("sim:".parse::<Board>().unwrap_err().contains("sim:"));
        assert_eq!(
            "lan:127.0.0.1:623".parse::<Board>(),
            Ok(Board::Lan("127.0.0.1:623".parse().unwrap()))
        );
        assert!(
            "lan:bmc"
                .parse::<Board>()
                .unwrap_err()
                .contains("lan:ADDRESS:PORT")
        );
        assert!("ipmi".parse::<Board>().unwrap_err().contains("\"ipmi\""));
        assert_eq!(parse_interval("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_interval("50ms").unwrap_err().contains("100ms"));
        assert!(parse_interval("fast").unwrap_err().contains("\"fast\""));
    }

    fn sweep_names(hw: &mut SimHardware) -> Vec<(String, Health)> {
        let s = hw.sweep().unwrap().unwrap();
        s.readings.into_iter().map(|r| (r.name, r.health)).collect()
    }

    #[test]
    fn sim_scenario_changes_readings_and_repository() {
        let dir = std::env::temp_dir().join(format!("tdm-hw-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("s.json");
        let fan = |raw: u8| {
            format!(
                r#"{{"number": 1, "name": "Fan 1", "kind": "fan", "raw": {raw}, "m": 60,
                     "thresholds": {{"lnc": 20, "lcr": 10}}}}"#
            )
        };
        std::fs::write(&file, format!(r#"{{"sensors": [{}]}}"#, fan(100))).unwrap();
        let mut hw = SimHardware::load(&file).unwrap();
        assert_eq!(sweep_names(&mut hw), [("Fan 1".to_string(), Health::Ok)]);
        assert!(matches!(hw.raid(), RaidReport::Absent));
        // Same repository, new reading.
        std::fs::write(&file, format!(r#"{{"sensors": [{}]}}"#, fan(15))).unwrap();
        hw.refresh().unwrap();
        assert_eq!(
            sweep_names(&mut hw),
            [("Fan 1".to_string(), Health::Warning)]
        );
        // A new sensor and a controller: the repository is read again.
        std::fs::write(
            &file,
            format!(
                r#"{{"sensors": [{}, {{"number": 2, "name": "PS1 Status", "kind": "psu",
                     "states": 3}}], "raid": {{}}}}"#,
                fan(5)
            ),
        )
        .unwrap();
        hw.refresh().unwrap();
        assert_eq!(
            sweep_names(&mut hw),
            [
                ("Fan 1".to_string(), Health::Critical),
                ("PS1 Status".to_string(), Health::Critical)
            ]
        );
        assert!(matches!(hw.raid(), RaidReport::Present(_)));
        // A broken edit is refused by name and the hardware stays as it was.
        std::fs::write(
            &file,
            r#"{"sensors": [{"number": 1, "name": "X", "kind": "fan", "speed": 3}]}"#,
        )
        .unwrap();
        let e = hw.refresh().unwrap_err();
        assert!(e.contains("s.json") && e.contains("speed"), "{e}");
        assert_eq!(sweep_names(&mut hw).len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn thresholds_compare_like_a_bmc() {
        let t = Thresholds {
            lnc: Some(20),
            lcr: Some(10),
            unc: Some(200),
            ..Thresholds::default()
        };
        assert_eq!(t.compare(100), 0);
        assert_eq!(t.compare(20), 0x01);
        assert_eq!(t.compare(5), 0x03);
        assert_eq!(t.compare(200), 0x08);
        assert_eq!(t.raw(), (0b1011, [20, 10, 0, 200, 0, 0]));
    }

    fn sim_bmc() -> SimBmc {
        let mut b = SimBmc::new();
        b.add_record(
            RecordBuilder::full(1, SensorType::FAN, 18, "Fan 1")
                .factors(60, 0, 0, 0)
                .build(),
        );
        b.set_reading(1, 100, 0);
        b
    }

    #[test]
    fn a_bmc_that_appears_late_is_found_at_a_later_poll() {
        let dir = std::env::temp_dir().join(format!("tdm-hw-late-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Stands for /dev/ipmi0, which appears once ipmi_si has loaded.
        let node = dir.join("ipmi0");
        let _ = std::fs::remove_file(&node);
        let opens = Arc::new(Mutex::new(0u32));
        let (seen, dev) = (Arc::clone(&opens), node.clone());
        let mut hw = Real {
            open: Box::new(move || {
                *seen.lock().unwrap() += 1;
                Ok(dev
                    .exists()
                    .then(|| Box::new(sim_bmc()) as Box<dyn IpmiTransport>))
            }),
            bmc: Slot::Retry,
            raid: Slot::Retry,
            scsi_hosts: dir.join("scsi_host"),
        };
        assert!(hw.sweep().is_none());
        assert!(hw.sweep().is_none());
        assert!(matches!(hw.raid(), RaidReport::Absent));
        std::fs::write(&node, b"").unwrap();
        let sweep = hw.sweep().unwrap().unwrap();
        assert_eq!(sweep.readings[0].name, "Fan 1");
        // Found once: later polls use the open device without looking again.
        hw.sweep().unwrap().unwrap();
        assert_eq!(*opens.lock().unwrap(), 3);

        // In the snapshot: absent, then present with its sensors.
        let mut poller = SensorPoller::new(PollerConfig::default());
        let s = build_snapshot(&poller, None, None, &RaidReport::Absent);
        assert_eq!(
            (s.bmc.as_str(), s.summary.state.as_str()),
            ("absent", "absent")
        );
        let sweep = Some(Ok(sweep));
        if let Some(Ok(sw)) = &sweep {
            poller.handle(Millis(0), PollerInput::Sweep(sw));
        }
        let s = build_snapshot(&poller, sweep.as_ref(), None, &RaidReport::Absent);
        assert_eq!((s.bmc.as_str(), s.summary.state.as_str()), ("ok", "ok"));
        assert_eq!(s.sensors.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unconfirmed_changes_are_pending_not_ok() {
        let mut poller = SensorPoller::new(PollerConfig::default());
        let mut bmc = Bmc::new(sim_bmc());
        let sweep = bmc.sweep().unwrap();
        poller.handle(Millis(0), PollerInput::Sweep(&sweep));
        let s = build_snapshot(&poller, Some(&Ok(sweep)), None, &RaidReport::Absent);
        assert_eq!(s.summary.state, "ok");

        // The BMC stops answering: one sighting, not yet an event.
        let failed: Result<Sweep, IpmiError> = Err(IpmiError::Timeout {
            target: "sim".into(),
            timeout_ms: 0,
        });
        poller.handle(
            Millis(28_000),
            PollerInput::SweepFailed {
                kind: tandem_board::ErrorKind::Timeout,
                detail: "no answer".into(),
            },
        );
        let s = build_snapshot(
            &poller,
            Some(&failed),
            Some("timeout".into()),
            &RaidReport::Absent,
        );
        assert_eq!(s.bmc, "unreachable");
        assert_eq!(
            (s.summary.state.as_str(), s.summary.pending),
            ("pending", 1)
        );
        assert!(
            s.summary.text.contains("1 change awaiting confirmation"),
            "{s:?}"
        );

        // Confirmed: a problem.
        poller.handle(
            Millis(30_000),
            PollerInput::SweepFailed {
                kind: tandem_board::ErrorKind::Timeout,
                detail: "no answer".into(),
            },
        );
        let s = build_snapshot(&poller, Some(&failed), None, &RaidReport::Absent);
        assert_eq!(
            (s.summary.state.as_str(), s.summary.problems),
            ("problems", 1)
        );
        assert_eq!(s.summary.pending, 0);
    }

    #[test]
    fn bad_records_and_other_controllers_sensors_are_shown() {
        let mut b = sim_bmc();
        b.add_record(
            RecordBuilder::full(2, SensorType::FAN, 18, "Fan 2")
                .linearization(0x42)
                .build(),
        );
        b.add_record(
            RecordBuilder::full(5, SensorType::TEMPERATURE, 1, "HSC Temp")
                .owner(0x2C)
                .build(),
        );
        let mut bmc = Bmc::new(b);
        let sweep = bmc.sweep().unwrap();
        let mut poller = SensorPoller::new(PollerConfig::default());
        poller.handle(Millis(0), PollerInput::Sweep(&sweep));
        let mut events = vec![];
        while let Some(o) = poller.poll_output() {
            if let PollerOutput::Event(e) = o {
                events.push(describe(&e, &BTreeMap::new()));
            }
        }
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0]
                .1
                .starts_with("Fan 2: unavailable (sdr record 0x0001"),
            "{events:?}"
        );
        let s = build_snapshot(&poller, Some(&Ok(sweep)), None, &RaidReport::Absent);
        let names: Vec<(&str, &str)> = s
            .sensors
            .iter()
            .map(|x| (x.name.as_str(), x.health.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("Fan 1", "ok"),
                ("Fan 2", "unavailable"),
                ("HSC Temp", "not read")
            ]
        );
        assert!(
            s.sensors[1]
                .detail
                .as_deref()
                .unwrap()
                .contains("linearization")
        );
        assert_eq!(s.sensors[2].sensor_type, "temperature");
        // The bad record is a problem; the other controller's sensor is not.
        assert_eq!(
            (s.summary.state.as_str(), s.summary.problems),
            ("problems", 1)
        );

        // Without the bad record the summary is ok and counts what is not read.
        let mut b = sim_bmc();
        b.add_record(
            RecordBuilder::full(5, SensorType::TEMPERATURE, 1, "HSC Temp")
                .owner(0x2C)
                .build(),
        );
        let sweep = Bmc::new(b).sweep().unwrap();
        let mut poller = SensorPoller::new(PollerConfig::default());
        poller.handle(Millis(0), PollerInput::Sweep(&sweep));
        let s = build_snapshot(&poller, Some(&Ok(sweep)), None, &RaidReport::Absent);
        assert_eq!(s.summary.text, "ok (1 sensors, 1 not read, raid absent)");
    }
}
