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

mod poll;
mod real;
mod sim;
mod snapshot;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tandem_api::{HwJson, HwSummaryJson, RaidJson};
use tandem_board::Millis;
use tandem_board::areca::RaidReport;
use tandem_board::ipmi::bmc::Sweep;
use tandem_board::ipmi::lan::{LanConfig, LanSession};
use tandem_board::ipmi::linux::DevIpmi;
use tandem_board::ipmi::{IpmiError, IpmiTransport};
use tandem_board::poller::{PollerConfig, SensorPoller};

use poll::poll_loop;
use real::{Opener, Real};
use sim::SimHardware;

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
            Box::new(Real::new(open))
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
pub(crate) trait Hardware: Send {
    /// Brings simulated hardware up to date; `Err` names what is wrong.
    fn refresh(&mut self) -> Result<(), String>;
    /// One sensor sweep; `None` without a BMC.
    fn sweep(&mut self) -> Option<Result<Sweep, IpmiError>>;
    /// One RAID poll.
    fn raid(&mut self) -> RaidReport;
}
