//! One full sensor sweep with a warm SDR cache over RMCP+ against `ipmi_sim`, compared in
//! the same run with `ipmitool sdr` (with its SDR cache file) and freeipmi's
//! `ipmi-sensors` (with its SDR cache directory).
//!
//! Run: `cargo bench -p tandem-board --bench sweep` (needs openipmi, ipmitool,
//! freeipmi-tools). Prints medians and ratios.

#[path = "../tests/rig/mod.rs"]
mod rig;

use std::process::Command;
use std::time::{Duration, Instant};

use tandem_board::ipmi::bmc::Bmc;

const RUNS: usize = 30;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time_cmd(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let out = cmd.output().expect("running peer tool");
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

fn main() {
    // `cargo bench` passes `--bench`; a plain `cargo test --benches` run passes nothing
    // and must stay quick.
    let runs = if std::env::args().any(|a| a == "--bench") {
        RUNS
    } else {
        3
    };
    rig::require_tool("ipmitool", "ipmitool");
    rig::require_tool("ipmi-sensors", "freeipmi-tools");
    let rig = rig::Rig::start();
    let port = rig.lan.port().to_string();
    let dir = std::env::temp_dir().join(format!("tandem-sweep-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let sdr_file = dir.join("sdr.cache");

    // Ours, warm: the session stays open, as in the runtime's poller.
    let mut bmc = Bmc::new(rig.session());
    let n = bmc.sweep().expect("first sweep").readings.len();
    let ours_warm = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                let s = bmc.sweep().expect("sweep");
                let d = t.elapsed();
                assert_eq!(s.readings.len(), n);
                d
            })
            .collect(),
    );
    // Ours, like a one-shot tool: new session, then a sweep from the cached SDRs.
    let ours_session = median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                drop(bmc.replace_transport(rig.session()));
                bmc.sweep().expect("sweep");
                t.elapsed()
            })
            .collect(),
    );
    assert_eq!(bmc.sdr_walks(), 1, "the SDR cache was not reused");

    let host = format!("127.0.0.1:{port}");
    let ipmitool = |args: &[&str]| {
        let mut c = Command::new("ipmitool");
        c.args([
            "-I",
            "lanplus",
            "-H",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            rig::USER,
            "-P",
            rig::PASSWORD,
            "-C",
            "3",
        ]);
        c.args(args);
        c
    };
    time_cmd(&mut ipmitool(&[
        "sdr",
        "dump",
        sdr_file.to_str().expect("utf-8 path"),
    ]));
    let ipmitool_t = median(
        (0..runs)
            .map(|_| {
                time_cmd(&mut ipmitool(&[
                    "-S",
                    sdr_file.to_str().expect("utf-8 path"),
                    "sdr",
                ]))
            })
            .collect(),
    );
    let cache = dir.join("freeipmi");
    std::fs::create_dir_all(&cache).expect("freeipmi cache dir");
    let freeipmi = || {
        let mut c = Command::new("ipmi-sensors");
        c.args([
            "-D",
            "LAN_2_0",
            "-h",
            &host,
            "-u",
            rig::USER,
            "-p",
            rig::PASSWORD,
            "-I",
            "3",
            "-W",
            "opensesspriv",
        ]);
        c.arg("--sdr-cache-directory").arg(&cache);
        c
    };
    time_cmd(&mut freeipmi());
    let freeipmi_t = median((0..runs).map(|_| time_cmd(&mut freeipmi())).collect());

    // Process against process: our probe as a one-shot command (it has no SDR cache
    // between runs, so it reads the repository every time) and ipmitool likewise.
    let probe = env!("CARGO_BIN_EXE_tandem-board-probe");
    let probe_t = median(
        (0..runs)
            .map(|_| {
                time_cmd(Command::new(probe).args([
                    "lan",
                    &host,
                    rig::USER,
                    rig::PASSWORD,
                    "--readings-only",
                ]))
            })
            .collect(),
    );
    let ipmitool_cold = median(
        (0..runs)
            .map(|_| time_cmd(&mut ipmitool(&["sdr"])))
            .collect(),
    );

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("sensor sweep, {n} sensors, warm SDR caches, medians of {runs} runs:");
    println!(
        "  tandem-board, open session        {:8.3} ms",
        ms(ours_warm)
    );
    println!(
        "  tandem-board, new session + sweep {:8.3} ms",
        ms(ours_session)
    );
    println!(
        "  ipmitool -S cache sdr             {:8.3} ms",
        ms(ipmitool_t)
    );
    println!(
        "  ipmi-sensors (sdr cache)          {:8.3} ms",
        ms(freeipmi_t)
    );
    println!("  one-shot processes, no SDR cache:");
    println!("  tandem-board-probe lan            {:8.3} ms", ms(probe_t));
    println!(
        "  ipmitool sdr                      {:8.3} ms",
        ms(ipmitool_cold)
    );
    println!(
        "  ratio: ipmitool / tandem-board-probe = {:.1}",
        ms(ipmitool_cold) / ms(probe_t)
    );
    println!(
        "  ratios: ipmitool / ours = {:.1} (open session), {:.1} (new session); ipmi-sensors / ours = {:.1}, {:.1}",
        ms(ipmitool_t) / ms(ours_warm),
        ms(ipmitool_t) / ms(ours_session),
        ms(freeipmi_t) / ms(ours_warm),
        ms(freeipmi_t) / ms(ours_session),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
