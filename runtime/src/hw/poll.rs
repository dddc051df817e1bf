//! The polling thread: one sweep per interval through the debouncing poller, confirmed
//! changes told as events, the snapshot replaced after every poll.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tandem_api::HwJson;
use tandem_board::Millis;
use tandem_board::ipmi::sdr::{SensorKey, SensorType};
use tandem_board::ipmi::sensor::Health;
use tandem_board::poller::{PollerInput, PollerOutput, SensorPoller, StatusEvent, Subject};

use super::snapshot::{build_snapshot, value_text};
use super::{Hardware, HwChange, HwEvent, Notify};

pub(super) fn poll_loop(
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

pub(super) fn describe(
    e: &StatusEvent,
    types: &BTreeMap<SensorKey, SensorType>,
) -> (&'static str, String) {
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
