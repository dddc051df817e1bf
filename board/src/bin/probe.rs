//! `tandem-board-probe`: reads every sensor of a BMC once and prints them, one per line.
//!
//! ```text
//! tandem-board-probe ipmi [DEVICE] [--identify] [--readings-only]
//! tandem-board-probe lan HOST:PORT USER PASSWORD [--identify] [--readings-only]
//! ```
//!
//! Output lines are tab-separated: `reading NAME VALUE HEALTH`, `fault NAME ERROR`,
//! `record-fault NAME ERROR` (an SDR record that could not be read or decoded),
//! `not-read NAME OWNER` (a sensor of another controller), then
//! `elapsed` (a first sweep that reads the SDR repository, and a second from the cache)
//! and `sel COUNT`; with `--identify` the ID LED is lit for 3 s. A diagnostic for installers and the test rig; the runtime polls through
//! the library instead.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use tandem_board::ipmi::IpmiTransport;
use tandem_board::ipmi::bmc::Bmc;
use tandem_board::ipmi::lan::{LanConfig, LanSession};
use tandem_board::ipmi::linux::DevIpmi;
use tandem_board::ipmi::sensor::Value;

fn transport(args: &[String]) -> anyhow::Result<Box<dyn IpmiTransport>> {
    match args.first().map(String::as_str) {
        Some("ipmi") => {
            let dev = args
                .get(1)
                .filter(|a| !a.starts_with("--"))
                .map_or("/dev/ipmi0", String::as_str);
            Ok(Box::new(
                DevIpmi::open(Path::new(dev)).with_context(|| format!("opening {dev}"))?,
            ))
        }
        Some("lan") => {
            let [_, addr, user, password, ..] = args else {
                bail!("usage: tandem-board-probe lan HOST:PORT USER PASSWORD");
            };
            let addr = addr
                .parse()
                .with_context(|| format!("parsing bmc address {addr:?}"))?;
            let session = LanSession::open(LanConfig::new(addr, user, password))
                .with_context(|| format!("opening an rmcp+ session with {addr}"))?;
            Ok(Box::new(session))
        }
        _ => bail!("usage: tandem-board-probe ipmi [DEVICE] | lan HOST:PORT USER PASSWORD"),
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut bmc = Bmc::new(transport(&args)?);
    let started = std::time::Instant::now();
    let sweep = bmc.sweep().context("reading the sensors")?;
    let cold = started.elapsed();
    for r in &sweep.readings {
        let value = match r.value {
            Value::Analog { value, .. } => format!("{value:.3}"),
            Value::Discrete { states } => format!("0x{states:04x}"),
            Value::Unavailable => "na".to_owned(),
        };
        println!("reading\t{}\t{value}\t{}", r.name, r.health);
    }
    for f in &sweep.faults {
        println!(
            "fault\t{}\t{}",
            f.name,
            tandem_board::poller::error_chain(&f.error)
        );
    }
    for f in &sweep.record_faults {
        println!(
            "record-fault\t{}\t{}",
            f.label(),
            tandem_board::poller::error_chain(&*f.error)
        );
    }
    for n in &sweep.not_read {
        println!("not-read\t{}\towner {:#04x}", n.name, n.key.owner);
    }
    if args.iter().any(|a| a == "--readings-only") {
        return Ok(());
    }
    let started = std::time::Instant::now();
    bmc.sweep().context("reading the sensors again")?;
    let warm = started.elapsed();
    println!(
        "elapsed\tcold {:.1} ms\twarm {:.1} ms",
        cold.as_secs_f64() * 1000.0,
        warm.as_secs_f64() * 1000.0
    );
    let sel = bmc.sel_entries().context("reading the sel")?;
    println!("sel\t{}", sel.len());
    if args.iter().any(|a| a == "--identify") {
        bmc.chassis_identify(Some(3)).context("chassis identify")?;
        println!("identify\tok");
    }
    Ok(())
}

/// Prints an error with its whole source chain.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-board-probe: {e:#}");
            ExitCode::FAILURE
        }
    }
}
