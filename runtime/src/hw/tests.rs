//! Tests of hardware polling with the simulated boards.

use std::collections::BTreeMap;

use tandem_board::ipmi::bmc::Bmc;
use tandem_board::ipmi::sdr::{RecordBuilder, SensorType};
use tandem_board::ipmi::sensor::Health;
use tandem_board::ipmi::sim::SimBmc;
use tandem_board::poller::{PollerInput, PollerOutput};

use super::poll::describe;
use super::real::Slot;
use super::sim::Thresholds;
use super::snapshot::build_snapshot;
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
