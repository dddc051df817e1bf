//! Host-side tests against OpenIPMI's `ipmi_sim` on loopback (Debian packages openipmi
//! and ipmitool), reached over RMCP+ with cipher suite 3.

mod rig;

use std::collections::BTreeMap;

use rig::Rig;
use tandem_board::Millis;
use tandem_board::ipmi::bmc::{Bmc, PowerAction};
use tandem_board::ipmi::sensor::{Health, Value};
use tandem_board::poller::{PollerConfig, PollerInput, PollerOutput, SensorPoller, StatusEvent};

/// Splits ipmitool's `|`-separated table into trimmed cells, keyed by sensor name.
fn table(out: &str) -> BTreeMap<String, Vec<String>> {
    out.lines()
        .filter(|l| l.contains('|'))
        .map(|l| {
            let cells: Vec<String> = l.split('|').map(|c| c.trim().to_owned()).collect();
            (cells[0].clone(), cells[1..].to_vec())
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.0006
}

#[test]
fn readings_match_ipmitool() {
    let rig = Rig::start();
    let mut bmc = Bmc::new(rig.session());
    let sweep = bmc.sweep().expect("sweep");
    assert!(sweep.faults.is_empty(), "{:?}", sweep.faults);
    assert!(sweep.record_faults.is_empty(), "{:?}", sweep.record_faults);
    assert!(sweep.not_read.is_empty(), "{:?}", sweep.not_read);
    assert_eq!(sweep.readings.len(), rig.sensors.len());

    let sensor = table(&rig.ipmitool(&["sensor"]));
    let sdr = table(&rig.ipmitool(&["sdr", "list", "all"]));
    let (records, _) = bmc.sensor_records().unwrap();
    let records = records.to_vec();
    for r in &sweep.readings {
        let row = sensor
            .get(&r.name)
            .unwrap_or_else(|| panic!("{} missing from ipmitool sensor: {sensor:?}", r.name));
        let sdr_row = &sdr[&r.name];
        match r.value {
            Value::Analog { value, state, .. } => {
                let theirs: f64 = row[0]
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: {row:?}", r.name));
                assert!(
                    close(value, theirs),
                    "{}: ours {value}, ipmitool sensor {theirs}",
                    r.name
                );
                // `sdr` prints the same value with its unit and the status word.
                // `sdr` rounds to as many decimals as it prints.
                let text = sdr_row[0].split_whitespace().next().unwrap();
                let shown: f64 = text.parse().unwrap();
                let decimals = text.split('.').nth(1).map_or(0, str::len);
                let tolerance = 0.5 * 10f64.powi(-i32::try_from(decimals).unwrap()) + 1e-9;
                assert!(
                    (value - shown).abs() <= tolerance,
                    "{}: ours {value}, ipmitool sdr {shown}",
                    r.name
                );
                assert_eq!(row[2], state.short(), "{}: status", r.name);
                assert_eq!(sdr_row[1], state.short(), "{}: sdr status", r.name);
                let rec = records.iter().find(|x| x.key == r.key).unwrap();
                if rec.readable_thresholds.0 != 0 {
                    let t = bmc.read_thresholds(rec).unwrap();
                    // ipmitool columns: lnr lcr lnc unc ucr unr.
                    for (col, ours) in [
                        (3, t.lnr),
                        (4, t.lcr),
                        (5, t.lnc),
                        (6, t.unc),
                        (7, t.ucr),
                        (8, t.unr),
                    ] {
                        match ours {
                            Some(v) => {
                                let theirs: f64 = row[col]
                                    .parse()
                                    .unwrap_or_else(|_| panic!("{}: {row:?}", r.name));
                                assert!(
                                    close(v, theirs),
                                    "{} threshold column {col}: ours {v}, ipmitool {theirs}",
                                    r.name
                                );
                            }
                            None => assert_eq!(row[col], "na", "{} threshold column {col}", r.name),
                        }
                    }
                }
            }
            Value::Discrete { states } => {
                assert_eq!(row[1], "discrete", "{}: {row:?}", r.name);
                // ipmitool prints the two state bytes as 0xAABB: byte 3 (offsets 0-7),
                // then byte 4 (offsets 8-14, top bit reserved).
                let hex = row[2].trim_start_matches("0x");
                let b3 = u16::from_str_radix(&hex[..2], 16).unwrap();
                let b4 = u16::from_str_radix(&hex[2..4], 16).unwrap() & 0x7F;
                assert_eq!(b3 | (b4 << 8), states, "{}: {row:?}", r.name);
            }
            Value::Unavailable => panic!("{} unavailable", r.name),
        }
    }
    // The signed and linearised sensors came out as the arithmetic says.
    let by_name = |n: &str| sweep.readings.iter().find(|r| r.name == n).unwrap().value;
    assert!(matches!(by_name("Inlet Delta"), Value::Analog { value, .. } if value == -10.0));
    assert!(matches!(by_name("Airflow"), Value::Analog { value, .. } if value == 12.0));
    assert!(matches!(by_name("BB +12.0V"), Value::Analog { value, .. } if close(value, 11.97)));
    assert!(
        sweep.readings.iter().all(|r| r.health == Health::Ok),
        "{:?}",
        sweep.readings
    );
}

fn drain(p: &mut SensorPoller) -> (Vec<StatusEvent>, Millis) {
    let mut events = vec![];
    loop {
        match p.poll_output() {
            Some(PollerOutput::Event(e)) => events.push(e),
            Some(PollerOutput::PollAt(t)) => return (events, t),
            None => panic!("poller gave no deadline"),
        }
    }
}

#[test]
fn psu_failure_and_slow_fan_become_events() {
    let rig = Rig::start();
    let mut bmc = Bmc::new(rig.session());
    let config = PollerConfig::default();
    let mut poller = SensorPoller::new(config);
    let mut now = Millis(0);
    let sweep_at = |poller: &mut SensorPoller, bmc: &mut Bmc<_>, now: Millis| {
        let s = bmc.sweep().expect("sweep");
        poller.handle(now, PollerInput::Sweep(&s));
        drain(poller)
    };
    let (ev, next) = sweep_at(&mut poller, &mut bmc, now);
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(next, now.plus(poller.sweep_period()));

    // Failure of PS2 (offset 1) and Sys Fan 3 at 10 raw = 570 RPM, below its critical 12,
    // right after that sweep: the worst case, a whole sweep period before it is seen.
    rig.console(&[
        "sensor_set_bit 0x20 0 0x71 1 1 1".to_owned(),
        "sensor_set_value 0x20 0 0x52 10 1".to_owned(),
    ]);
    let failed_at = now;
    now = next;
    let (ev, next) = sweep_at(&mut poller, &mut bmc, now);
    assert!(
        ev.is_empty(),
        "a single sighting must not be reported yet: {ev:?}"
    );
    assert_eq!(next, now.plus(poller.config().confirm_delay));
    now = next;
    let (ev, _) = sweep_at(&mut poller, &mut bmc, now);
    // Within one polling interval (virtual time: the sweeps take none).
    assert!(
        now.0 - failed_at.0 <= config.interval.0,
        "event {} ms after the failure",
        now.0 - failed_at.0
    );
    let psu = ev
        .iter()
        .find(|e| e.name == "PS2 Status")
        .unwrap_or_else(|| panic!("no PSU event: {ev:?}"));
    assert_eq!((psu.from, psu.to), (Some(Health::Ok), Health::Critical));
    assert!(matches!(psu.value, Some(Value::Discrete { states }) if states & 0x03 == 0x03));
    let fan = ev
        .iter()
        .find(|e| e.name == "Sys Fan 3")
        .unwrap_or_else(|| panic!("no fan event: {ev:?}"));
    assert_eq!(fan.to, Health::Critical);
    assert!(matches!(fan.value, Some(Value::Analog { value, .. }) if value == 570.0));
    assert_eq!(ev.len(), 2, "{ev:?}");

    // ipmitool agrees about the fan.
    let sensor = table(&rig.ipmitool(&["sensor"]));
    assert_eq!(sensor["Sys Fan 3"][2], "cr");

    // Recovery is reported too.
    rig.console(&[
        "sensor_set_bit 0x20 0 0x71 1 0 1".to_owned(),
        "sensor_set_value 0x20 0 0x52 95 1".to_owned(),
    ]);
    let (ev, next) = sweep_at(&mut poller, &mut bmc, Millis(62_000));
    assert!(ev.is_empty());
    let (ev, _) = sweep_at(&mut poller, &mut bmc, next);
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(ev.iter().all(|e| e.to == Health::Ok));
}

#[test]
fn sel_identify_and_power_over_lan() {
    let rig = Rig::start();
    let mut bmc = Bmc::new(rig.session());
    // Events generated through the console land in the SEL.
    rig.console(&["sensor_set_value 0x20 0 0x30 78 1".to_owned()]);
    let entries = bmc.sel_entries().unwrap();
    assert!(
        !entries.is_empty(),
        "no SEL entries after a threshold event"
    );
    let e = entries.last().unwrap();
    assert_eq!((e.sensor_type, e.sensor_number), (0x01, 0x30));
    let listed = rig.ipmitool(&["sel", "list"]);
    assert_eq!(listed.lines().count(), entries.len(), "{listed}");
    bmc.sel_clear().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !bmc.sel_entries().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "SEL not cleared");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    bmc.chassis_identify(Some(5)).unwrap();
    bmc.chassis_identify(None).unwrap();
    assert!(
        rig.chassis_log()
            .contains("set identify 5 0\nset identify 0 1\n"),
        "{}",
        rig.chassis_log()
    );
    // Fencing: power the chassis off and see it off.
    assert!(bmc.chassis_power_is_on().unwrap());
    bmc.chassis_power(PowerAction::Off).unwrap();
    assert!(
        rig.chassis_log().contains("set power 0"),
        "{}",
        rig.chassis_log()
    );
    assert!(!bmc.chassis_power_is_on().unwrap());
    assert!(
        rig.ipmitool(&["chassis", "power", "status"])
            .contains("is off")
    );
}

#[test]
fn wrong_password_is_a_clear_session_error() {
    let rig = Rig::start();
    let mut cfg = rig.lan_config();
    cfg.password = "wrong".into();
    let err = tandem_board::ipmi::lan::LanSession::open(cfg).unwrap_err();
    assert!(err.to_string().contains("session with 127.0.0.1"), "{err}");
    assert!(
        matches!(err, tandem_board::ipmi::IpmiError::Session { .. }),
        "{err}"
    );
    let mut cfg = rig.lan_config();
    cfg.user = "nobody".into();
    let err = tandem_board::ipmi::lan::LanSession::open(cfg).unwrap_err();
    assert!(
        matches!(err, tandem_board::ipmi::IpmiError::Session { .. }),
        "{err}"
    );
}

#[test]
fn silent_bmc_times_out() {
    // A UDP port nobody answers on.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cfg = tandem_board::ipmi::lan::LanConfig::new(sock.local_addr().unwrap(), "u", "p");
    cfg.timeout = std::time::Duration::from_millis(100);
    cfg.attempts = 2;
    let err = tandem_board::ipmi::lan::LanSession::open(cfg).unwrap_err();
    assert_eq!(err.kind(), tandem_board::ErrorKind::Timeout, "{err}");
}

#[test]
fn session_is_reopened_after_a_bmc_reset() {
    let mut rig = Rig::start();
    let mut cfg = rig.lan_config();
    cfg.timeout = std::time::Duration::from_millis(300);
    cfg.attempts = 2;
    let mut bmc = Bmc::new(tandem_board::ipmi::lan::LanSession::open(cfg).unwrap());
    let before = bmc.sweep().unwrap().readings;
    rig.restart();
    let after = bmc.sweep().expect("sweep after the BMC reset").readings;
    assert_eq!(before, after);
}

#[test]
fn oversized_sdr_reads_shrink_until_the_bmc_accepts() {
    let rig = Rig::start();
    let mut bmc = Bmc::new(rig.session());
    // ipmi_sim cannot return a whole full record in one Get SDR.
    bmc.set_sdr_chunk(200);
    let (records, faults) = bmc.read_repository().expect("repository");
    assert!(faults.is_empty());
    assert_eq!(records.len(), rig.sensors.len());
    assert!(bmc.sdr_chunk() < 200, "chunk never shrank");
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    let want: Vec<&str> = rig.sensors.iter().map(|s| s.name).collect();
    assert_eq!(names, want);
}
