//! Timings of the operator-visible configuration steps on a typical configuration:
//! parse + validate, archive read (plain and encrypted at the export work factor), and a
//! full import into a store (check, stage, fsync, commit).
//!
//! Run with `cargo bench -p tandem-config --bench import`. Prints the median and the
//! spread of each step; there is no peer tool to compare against in the same run.

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly

use std::path::Path;
use std::time::{Duration, Instant};

use tandem_config::archive::{self, ExportOptions};
use tandem_config::{ApplianceConfig, ImportOptions, Store, import_archive};

fn measure(name: &str, runs: usize, mut f: impl FnMut()) {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    println!(
        "{name:<46} median {:>9.3} ms   min {:>9.3} ms   max {:>9.3} ms   ({runs} runs)",
        t[runs / 2].as_secs_f64() * 1e3,
        t[0].as_secs_f64() * 1e3,
        t[runs - 1].as_secs_f64() * 1e3
    );
}

fn main() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/full.toml"),
    )
    .unwrap();
    let cfg = ApplianceConfig::from_toml(&text).unwrap();
    let opts = |pass: Option<&str>| ExportOptions {
        passphrase: pass.map(str::to_owned),
        created_unix: 1_700_000_000,
        work_factor: archive::EXPORT_WORK_FACTOR,
    };
    let plain = archive::export(&cfg, &opts(None)).unwrap();
    let enc = archive::export(&cfg, &opts(Some("bench pass phrase"))).unwrap();
    println!(
        "configuration {} bytes, archive {} bytes plain, {} bytes encrypted",
        text.len(),
        plain.len(),
        enc.len()
    );

    measure("parse + validate configuration", 200, || {
        ApplianceConfig::from_toml(&text).unwrap();
    });
    measure("read + check archive (unencrypted)", 200, || {
        archive::read_archive(&plain, None).unwrap();
    });
    measure("export archive (encrypted, scrypt 2^18)", 5, || {
        archive::export(&cfg, &opts(Some("bench pass phrase"))).unwrap();
    });
    measure("read + check archive (encrypted, scrypt 2^18)", 5, || {
        archive::read_archive(&enc, Some("bench pass phrase")).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    measure("import encrypted archive into store (commit)", 5, || {
        import_archive(
            &enc,
            Some("bench pass phrase"),
            &store,
            &ImportOptions::default(),
        )
        .unwrap();
    });
}
