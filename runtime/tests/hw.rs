//! clusterd with `--board sim:FILE`: the simulated BMC and RAID controller of
//! `tandem-board` follow a JSON scenario the test rewrites while clusterd runs. Checks
//! what `tandem hw --json` and `tandem status` show and that a failed power supply, a
//! fan below its threshold, a degraded array and an unreachable BMC become events in
//! `tandem events`. The only heartbeat path is a pty nobody answers: no network traffic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use serialport::{SerialPort, TTYPort};
use tandem_api::{HwJson, SensorJson, StatusJson};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

fn tandem(sock: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("--control")
        .arg(sock)
        .args(args)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

fn hw(sock: &Path) -> Option<HwJson> {
    tandem(sock, &["hw", "--json"]).map(|s| serde_json::from_str(&s).unwrap())
}

fn events(sock: &Path) -> Vec<String> {
    tandem(sock, &["events"])
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn sensor<'a>(h: &'a HwJson, name: &str) -> &'a SensorJson {
    h.sensors
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no sensor {name} in {h:?}"))
}

/// An SR2500-like set: fans with lower thresholds, temperatures and a voltage with upper
/// ones, two power supplies; an Areca mirror.
fn scenario(fan1_raw: u8, ps1_states: u16, disk1: Option<u8>, unresponsive: bool) -> String {
    let fan = |n: u8, name: &str, raw: u8| {
        json!({"number": n, "name": name, "kind": "fan", "raw": raw, "m": 60,
               "thresholds": {"lnc": 20, "lcr": 10}})
    };
    let mut raid = json!({});
    if let Some(state) = disk1 {
        // Disk 1 failed: the mirror runs degraded (fail mask bit 1).
        raid = json!({"volume": [0, 2, 0], "disks": [{"slot": 1, "state": state}]});
    }
    json!({
        "unresponsive": unresponsive,
        "sensors": [
            fan(0x30, "Fan 1", fan1_raw),
            fan(0x31, "Fan 2", 90),
            {"number": 0x10, "name": "BB Temp", "kind": "temperature", "raw": 41,
             "thresholds": {"unc": 70, "ucr": 80}},
            {"number": 0x20, "name": "BB +12V", "kind": "voltage", "raw": 121, "m": 1,
             "r_exp": -1, "thresholds": {"lcr": 108, "ucr": 132}},
            {"number": 0x50, "name": "PS1 Status", "kind": "psu", "states": ps1_states},
            {"number": 0x51, "name": "PS2 Status", "kind": "psu", "states": 1},
        ],
        "raid": raid,
    })
    .to_string()
}

/// Replaces the scenario atomically so clusterd never reads half a file.
fn write_scenario(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn start(dir: &Path, board: &str) -> (Daemon, PathBuf, TTYPort) {
    std::fs::write(dir.join("key"), b"hardware test key").unwrap();
    let (master, slave) = TTYPort::pair().unwrap();
    let tty = slave.name().unwrap();
    let sock = dir.join("control.sock");
    let d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_clusterd"))
            .args(["--node", "node1", "--key-file"])
            .arg(dir.join("key"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--control")
            .arg(&sock)
            .args(["--serial", &tty])
            .args(["--board", board, "--sensor-interval", "500ms"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("control socket", Duration::from_secs(10), || {
        tandem(&sock, &["status", "--json"]).is_some()
    });
    drop(slave);
    (d, sock, master)
}

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tdm-hw-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn sim_board_readings_and_events() {
    let dir = test_dir("sim");
    let file = dir.join("scenario.json");
    write_scenario(&file, &scenario(100, 1, None, false));
    let (_d, sock, _pty) = start(&dir, &format!("sim:{}", file.display()));

    wait_until("first hardware poll", Duration::from_secs(5), || {
        hw(&sock).is_some_and(|h| h.polled_ms.is_some())
    });
    let h = hw(&sock).unwrap();
    assert_eq!(h.bmc, "ok");
    assert_eq!(h.sensors.len(), 6, "{h:?}");
    let fan = sensor(&h, "Fan 1");
    assert_eq!(
        (fan.value, fan.unit.as_deref()),
        (Some(6000.0), Some("RPM"))
    );
    assert_eq!(
        (fan.health.as_str(), fan.sensor_type.as_str()),
        ("ok", "fan")
    );
    let temp = sensor(&h, "BB Temp");
    assert_eq!(temp.value, Some(41.0));
    assert_eq!(temp.unit.as_deref(), Some("degrees C"));
    let volts = sensor(&h, "BB +12V");
    assert!((volts.value.unwrap() - 12.1).abs() < 1e-9, "{volts:?}");
    let psu = sensor(&h, "PS1 Status");
    assert_eq!((psu.states, psu.state.as_str()), (Some(1), "present"));
    assert_eq!(h.raid.state, "present");
    assert_eq!(h.raid.volumes.len(), 1);
    assert_eq!(h.raid.disks.len(), 2);
    assert!(h.raid.disks.iter().all(|d| d.state == "ok"), "{h:?}");
    assert_eq!(h.summary.state, "ok");

    let st: StatusJson =
        serde_json::from_str(&tandem(&sock, &["status", "--json"]).unwrap()).unwrap();
    assert_eq!(st.hardware.unwrap().state, "ok");
    let text = tandem(&sock, &["status"]).unwrap();
    assert!(text.contains("hardware   ok (6 sensors"), "{text}");
    let text = tandem(&sock, &["hw"]).unwrap();
    assert!(text.contains("6000.00 RPM"), "{text}");
    assert!(text.contains("ARC-1220"), "{text}");
    assert!(
        !events(&sock).iter().any(|e| e.contains(" hw_")),
        "healthy hardware raised events: {:?}",
        events(&sock)
    );

    // Fan 1 drops below its non-critical threshold, PS1 fails, a mirror disk fails.
    write_scenario(&file, &scenario(15, 3, Some(0x10), false));
    let t0 = Instant::now();
    wait_until("hardware events", Duration::from_secs(5), || {
        let ev = events(&sock);
        ev.iter()
            .any(|e| e.contains("hw_fan: Fan 1: ok -> warning, reads 900.00 RPM"))
            && ev
                .iter()
                .any(|e| e.contains("hw_psu: PS1 Status: ok -> critical") && e.contains("failed"))
            && ev
                .iter()
                .any(|e| e.contains("hw_raid: volume ARC-1220-VOL#00: ok -> warning"))
    });
    eprintln!("events after {:?}", t0.elapsed());
    let h = hw(&sock).unwrap();
    assert_eq!(sensor(&h, "Fan 1").health, "warning");
    assert_eq!(sensor(&h, "Fan 1").state, "nc");
    assert_eq!(sensor(&h, "PS1 Status").health, "critical");
    assert_eq!(sensor(&h, "PS2 Status").health, "ok");
    assert_eq!(h.raid.volumes[0].state, "degraded");
    assert_eq!(h.summary.state, "problems");
    // Fan 1, PS1, the volume and disk 1.
    assert_eq!(h.summary.problems, 4, "{h:?}");
    let text = tandem(&sock, &["status"]).unwrap();
    assert!(text.contains("hardware   4 problems"), "{text}");

    // The BMC stops answering: reported, and the last readings stay on show.
    write_scenario(&file, &scenario(15, 3, Some(0x10), true));
    wait_until("bmc unreachable event", Duration::from_secs(5), || {
        events(&sock)
            .iter()
            .any(|e| e.contains("hw_bmc: BMC unreachable"))
    });
    let h = hw(&sock).unwrap();
    assert_eq!(h.bmc, "unreachable");
    assert!(h.bmc_detail.unwrap().contains("timeout"));
    assert_eq!(h.sensors.len(), 6);

    // A broken scenario is named once and changes nothing.
    std::fs::write(&file, "{ \"sensors\": [ {\"number\": 1} ] }").unwrap();
    wait_until("scenario error event", Duration::from_secs(5), || {
        events(&sock)
            .iter()
            .any(|e| e.contains("hw_sim: sim scenario") && e.contains("scenario.json"))
    });
    assert_eq!(hw(&sock).unwrap().bmc, "unreachable");

    // Back to healthy: recoveries are events too.
    write_scenario(&file, &scenario(100, 1, None, false));
    wait_until("recovery events", Duration::from_secs(5), || {
        let ev = events(&sock);
        ev.iter().any(|e| e.contains("hw_bmc: BMC reachable again"))
            && ev
                .iter()
                .any(|e| e.contains("hw_psu: PS1 Status: critical -> ok"))
            && hw(&sock).is_some_and(|h| h.summary.state == "ok")
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_board_options_are_refused_with_a_clear_error() {
    let dir = test_dir("bad");
    std::fs::write(dir.join("key"), b"hardware test key").unwrap();
    let run = |board: &str, interval: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_clusterd"))
            .args(["--node", "node1", "--key-file"])
            .arg(dir.join("key"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--control")
            .arg(dir.join("control.sock"))
            .args(["--internal", "127.0.0.1,127.0.0.2", "--udp-port", "47695"])
            .args(["--board", board, "--sensor-interval", interval])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let missing = dir.join("missing.json");
    let err = run(&format!("sim:{}", missing.display()), "1s");
    assert!(
        err.contains("reading sim scenario") && err.contains("missing.json"),
        "{err}"
    );
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"sensors": [{"number": 1, "name": "X", "kind": "pump"}]}"#,
    )
    .unwrap();
    let err = run(&format!("sim:{}", bad.display()), "1s");
    assert!(err.contains("unknown kind \"pump\""), "{err}");
    let err = run("ipmi", "1s");
    assert!(err.contains("unknown board \"ipmi\""), "{err}");
    let err = run("none", "10ms");
    assert!(err.contains("shorter than 100ms"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
