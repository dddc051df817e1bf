//! What the `hw` request and the status show: the latest readings in the API's types.

use std::time::{SystemTime, UNIX_EPOCH};

use tandem_api::{HwJson, HwSummaryJson, RaidItemJson, RaidJson, SensorJson};
use tandem_board::areca::{RaidReport, RaidState};
use tandem_board::ipmi::IpmiError;
use tandem_board::ipmi::bmc::Sweep;
use tandem_board::ipmi::sdr::SensorType;
use tandem_board::ipmi::sensor::{Health, PsuState, Value};
use tandem_board::poller::SensorPoller;

/// The health and state words of a sensor owned by another controller.
const NOT_READ: &str = "not read";

pub(super) fn build_snapshot(
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

/// A reading as text and its state word.
pub(super) fn value_text(v: Value, t: Option<SensorType>) -> (String, String) {
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

pub(super) fn psu_words(states: u16) -> String {
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

pub(super) fn type_name(t: SensorType) -> String {
    match t {
        SensorType::TEMPERATURE => "temperature".into(),
        SensorType::VOLTAGE => "voltage".into(),
        SensorType::CURRENT => "current".into(),
        SensorType::FAN => "fan".into(),
        SensorType::POWER_SUPPLY => "power_supply".into(),
        SensorType(c) => format!("type 0x{c:02x}"),
    }
}

pub(super) fn raid_health(s: RaidState) -> Health {
    match s {
        RaidState::Ok => Health::Ok,
        RaidState::Degraded | RaidState::Rebuilding { .. } => Health::Warning,
        RaidState::Failed => Health::Critical,
    }
}
