//! clusterd polling OpenIPMI's `ipmi_sim` (an SR2500-like sensor set, the board crate's
//! rig) over RMCP+ on loopback with `--board lan:...`: `tandem hw --json` shows what
//! ipmitool shows, and a power supply failure and a fan below its threshold, set through
//! ipmi_sim's console, become events within one polling interval (the confirming re-read
//! included). Needs the Debian packages openipmi and ipmitool.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed unwrap is a failed test"
)]

#[path = "../../board/tests/rig/mod.rs"]
mod rig;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use tandem_api::HwJson;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

#[test]
fn lan_board_matches_ipmitool_and_reports_psu_and_fan_failures() {
    let rig = rig::Rig::start();
    let dir = std::env::temp_dir().join(format!("tdm-hw-lan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), b"hardware test key").unwrap();
    std::fs::write(
        dir.join("bmc"),
        format!("{}\n{}\n", rig::USER, rig::PASSWORD),
    )
    .unwrap();
    let (_master, slave) = TTYPort::pair().unwrap();
    let tty = slave.name().unwrap();
    let sock = dir.join("control.sock");
    let interval = Duration::from_secs(1);
    let _d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_clusterd"))
            .args(["--node", "node1", "--key-file"])
            .arg(dir.join("key"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--control")
            .arg(&sock)
            .args(["--serial", &tty])
            .args(["--board", &format!("lan:{}", rig.lan), "--bmc-credentials"])
            .arg(dir.join("bmc"))
            .args(["--sensor-interval", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("first sweep of ipmi_sim", Duration::from_secs(15), || {
        hw(&sock).is_some_and(|h| h.bmc == "ok")
    });
    drop(slave);
    let h = hw(&sock).unwrap();
    assert_eq!(h.sensors.len(), rig.sensors.len(), "{h:?}");

    // Every analog reading and status word equals ipmitool's.
    let table = rig.ipmitool(&["sensor"]);
    let mut compared = 0;
    for line in table.lines().filter(|l| l.contains('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Ok(theirs) = cells[1].parse::<f64>() else {
            continue;
        };
        let ours = h
            .sensors
            .iter()
            .find(|s| s.name == cells[0])
            .unwrap_or_else(|| panic!("{} missing from tandem hw: {h:?}", cells[0]));
        let value = ours.value.unwrap_or_else(|| panic!("{ours:?}"));
        assert!(
            (value - theirs).abs() < 0.0006,
            "{}: tandem hw {value}, ipmitool {theirs}",
            cells[0]
        );
        assert_eq!(ours.state, cells[3], "{}: status word", cells[0]);
        compared += 1;
    }
    assert!(compared >= 5, "only {compared} analog sensors compared");

    // PS2 fails (offset 1) and Sys Fan 3 drops to raw 10 = 570 RPM, below critical.
    rig.console(&[
        "sensor_set_bit 0x20 0 0x71 1 1 1".to_owned(),
        "sensor_set_value 0x20 0 0x52 10 1".to_owned(),
    ]);
    let t0 = Instant::now();
    let events = || tandem(&sock, &["events"]).unwrap_or_default();
    wait_until("psu and fan events", Duration::from_secs(10), || {
        let ev = events();
        ev.contains("hw_psu: PS2 Status: ok -> critical")
            && ev.contains("hw_fan: Sys Fan 3: ok -> critical, reads 570.00 RPM")
    });
    let took = t0.elapsed();
    eprintln!("events {took:?} after the console change");
    // Within one interval. The margin is what no schedule can remove: the confirming
    // sweep's own RMCP+ round trips (the interval counts from when a sweep starts), the
    // thread waking up, and this test noticing the event (a `tandem events` call every
    // 50 ms) on a shared two-core machine.
    let margin = Duration::from_millis(400);
    assert!(took <= interval + margin, "{took:?}");
    let h = hw(&sock).unwrap();
    assert_eq!(h.summary.state, "problems");
    let fan = h.sensors.iter().find(|s| s.name == "Sys Fan 3").unwrap();
    assert_eq!((fan.value, fan.health.as_str()), (Some(570.0), "critical"));
    let _ = std::fs::remove_dir_all(&dir);
}
