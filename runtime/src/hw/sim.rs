//! A simulated BMC and RAID controller driven by a JSON scenario (`--board sim:FILE`),
//! re-read before every poll, for tests and demos.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use tandem_board::areca::sim::SimRaid;
use tandem_board::areca::{Controller, RaidReport, report};
use tandem_board::ipmi::IpmiError;
use tandem_board::ipmi::bmc::{Bmc, Sweep};
use tandem_board::ipmi::sdr::{RecordBuilder, SensorType};
use tandem_board::ipmi::sim::{SimBmc, SimSensor};

use super::Hardware;

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
pub(super) struct Thresholds {
    pub(super) lnc: Option<u8>,
    pub(super) lcr: Option<u8>,
    pub(super) lnr: Option<u8>,
    pub(super) unc: Option<u8>,
    pub(super) ucr: Option<u8>,
    pub(super) unr: Option<u8>,
}

impl Thresholds {
    /// Readable mask and raw values in LNC … UNR order.
    pub(super) fn raw(self) -> (u8, [u8; 6]) {
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
    pub(super) fn compare(self, raw: u8) -> u16 {
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

pub(super) struct SimHardware {
    path: PathBuf,
    scenario: Scenario,
    bmc: Bmc<SimBmc>,
    raid: Option<Controller<SimRaid>>,
}

impl SimHardware {
    pub(super) fn load(path: &Path) -> anyhow::Result<Self> {
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
