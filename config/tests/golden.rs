//! Golden cases: `cases/NAME.toml` parses, validates and normalises to `cases/NAME.json`;
//! `fail/NAME.toml` is refused with exactly the text of `fail/NAME.err`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p tandem-config --test golden` rewrites the expectations;
//! review the diff before committing it.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::fs;
use std::path::{Path, PathBuf};

use tandem_config::ApplianceConfig;

fn inputs(dir: &str) -> Vec<PathBuf> {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir);
    let mut v: Vec<PathBuf> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no cases in {}", d.display());
    v
}

fn check(path: &Path, ext: &str, actual: &str, failures: &mut Vec<String>) {
    let expected_path = path.with_extension(ext);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&expected_path, actual).unwrap();
        return;
    }
    match fs::read_to_string(&expected_path) {
        Ok(e) if e == actual => {}
        Ok(e) => failures.push(format!(
            "{}:\n--- expected\n{e}\n--- actual\n{actual}",
            expected_path.display()
        )),
        Err(_) => failures.push(format!(
            "{} is missing; actual:\n{actual}",
            expected_path.display()
        )),
    }
}

#[test]
fn valid_cases_normalise() {
    let mut failures = Vec::new();
    for p in inputs("cases") {
        let text = fs::read_to_string(&p).unwrap();
        match ApplianceConfig::from_toml(&text) {
            Ok(cfg) => {
                let json = serde_json::to_string_pretty(&cfg).unwrap() + "\n";
                check(&p, "json", &json, &mut failures);
                // The normalised TOML reads back to the same tree.
                assert_eq!(
                    ApplianceConfig::from_toml(&cfg.to_toml()).unwrap(),
                    cfg,
                    "{}",
                    p.display()
                );
            }
            Err(e) => failures.push(format!("{} refused:\n{e}", p.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn invalid_cases_are_refused_with_exact_messages() {
    let mut failures = Vec::new();
    for p in inputs("fail") {
        let text = fs::read_to_string(&p).unwrap();
        match ApplianceConfig::from_toml(&text) {
            Ok(_) => failures.push(format!("{} was accepted", p.display())),
            Err(e) => check(&p, "err", &format!("{e}\n"), &mut failures),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
