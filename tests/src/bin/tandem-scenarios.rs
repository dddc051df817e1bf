//! The release catalogue's runner (`cargo xtask scenarios` builds the image
//! and runs it): lists the scenarios, runs those named (or all), prints the
//! progress per scenario on stderr and writes `report.json` and `report.md`.
//! Exit status 1 when a scenario failed, 2 on wrong usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use tandem_tests::catalogue;
use tandem_tests::scenario::{Outcome, Report, run_one};

const USAGE: &str = "usage: tandem-scenarios --list | --all | NAME... [--out DIR]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut names = Vec::new();
    let mut all = false;
    let mut list = false;
    let mut out = PathBuf::from("target/scenarios");
    while let Some(a) = args.next() {
        match a.as_str() {
            "--list" => list = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--all" => all = true,
            "--out" => match args.next() {
                Some(d) => out = PathBuf::from(d),
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            s if s.starts_with('-') => {
                eprintln!("unknown option {s}\n{USAGE}");
                return ExitCode::from(2);
            }
            s => names.push(s.to_owned()),
        }
    }
    let catalogue = catalogue::all();
    if list {
        let width = catalogue.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &catalogue {
            let note = if s.run.is_none() {
                " (not available yet)"
            } else {
                ""
            };
            println!("{:<width$}  {}{note}", s.name, s.proves);
        }
        return ExitCode::SUCCESS;
    }
    let chosen: Vec<_> = if all {
        catalogue.clone()
    } else {
        let unknown: Vec<&String> = names
            .iter()
            .filter(|n| !catalogue.iter().any(|s| &s.name == *n))
            .collect();
        if !unknown.is_empty() || names.is_empty() {
            for n in unknown {
                eprintln!("no scenario is named {n} (see --list)");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
        catalogue
            .iter()
            .filter(|s| names.contains(&s.name))
            .cloned()
            .collect()
    };
    let version = std::fs::read_to_string(tandem_tests::image_dir().join("build-info.txt"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("version="))
        .unwrap_or("unknown")
        .to_owned();
    let started = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let t0 = Instant::now();
    let mut records = Vec::new();
    for (i, s) in chosen.iter().enumerate() {
        eprintln!("scenario {}/{} {}: {}", i + 1, chosen.len(), s.name, s.proves);
        let r = run_one(s);
        match &r.outcome {
            Outcome::Passed => eprintln!("scenario {}: passed in {:.0} s", s.name, r.seconds),
            Outcome::Failed(why) => {
                eprintln!("scenario {}: FAILED after {:.0} s: {why}", s.name, r.seconds);
            }
            Outcome::NotAvailable(why) => eprintln!("scenario {}: not available: {why}", s.name),
        }
        records.push(r);
        // Written after every scenario: a run cut short keeps its report.
        let report = Report {
            version: version.clone(),
            started: started.clone(),
            seconds: t0.elapsed().as_secs_f64(),
            scenarios: records.clone(),
        };
        if let Err(e) = report.write(&out) {
            eprintln!("writing the report into {}: {e}", out.display());
            return ExitCode::from(1);
        }
    }
    let report = Report {
        version,
        started,
        seconds: t0.elapsed().as_secs_f64(),
        scenarios: records,
    };
    eprintln!(
        "report: {} and report.md ({:.0} s)",
        out.join("report.json").display(),
        report.seconds
    );
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
