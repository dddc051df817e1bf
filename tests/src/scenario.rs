//! The release catalogue (R11.1): named scenarios run on QEMU machines
//! installed from the real install image, each with one line on what it
//! proves, and a report per run (`report.json`, `report.md`).
//!
//! A scenario is a function that drives the machines and asserts what the
//! pair (or the node) must do; the kit's waits panic with the console tail
//! when something does not happen in time, and the runner turns a panic into
//! a failed scenario. What a scenario measures goes into its [`Run`].

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// What a scenario does when run.
pub type ScenarioFn = Arc<dyn Fn(&mut Run) + Send + Sync>;

/// A named scenario of the catalogue.
#[derive(Clone)]
pub struct Scenario {
    /// Its name: part of the interface (`cargo xtask scenarios NAME`).
    pub name: String,
    /// One line on what it proves.
    pub proves: String,
    /// `None`: listed, but what it needs does not exist yet; never reported
    /// as passed.
    pub run: Option<ScenarioFn>,
    /// Why it cannot run yet (with `run == None`).
    pub unavailable: Option<String>,
}

impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("available", &self.run.is_some())
            .finish_non_exhaustive()
    }
}

impl Scenario {
    /// A scenario that runs `f`.
    pub fn new(name: &str, proves: &str, f: impl Fn(&mut Run) + Send + Sync + 'static) -> Self {
        Self {
            name: name.to_owned(),
            proves: proves.to_owned(),
            run: Some(Arc::new(f)),
            unavailable: None,
        }
    }

    /// A scenario listed but not runnable yet, with the reason.
    #[must_use]
    pub fn not_yet(name: &str, proves: &str, why: &str) -> Self {
        Self {
            name: name.to_owned(),
            proves: proves.to_owned(),
            run: None,
            unavailable: Some(why.to_owned()),
        }
    }
}

/// What a running scenario records.
#[derive(Debug, Default)]
pub struct Run {
    /// Measured figures, in order: (key, value, unit).
    pub figures: Vec<Figure>,
    /// Consoles to show the tail of when the scenario fails: (machine, buffer).
    pub consoles: Vec<(String, Arc<Mutex<Vec<u8>>>)>,
    /// Service downtime seen by a client on the external LAN, seconds.
    pub downtime_s: Option<f64>,
    /// Takeover time per chain step: (step, seconds).
    pub takeover_steps: Vec<(String, f64)>,
    /// Acknowledged writes lost.
    pub writes_lost: Option<u64>,
    /// Whether two primaries were ever seen.
    pub two_primaries_seen: Option<bool>,
    /// Alerts the rig's SMTP server received (subjects).
    pub alerts: Vec<String>,
    /// More to show when the scenario fails, filled by the scenario's own
    /// guards while it unwinds (e.g. the nodes' Status pages): (what, text).
    pub on_failure: Arc<Mutex<Vec<(String, String)>>>,
}

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// What was measured.
    pub key: String,
    /// The value.
    pub value: f64,
    /// Its unit (`s`, `MiB`, `count`).
    pub unit: String,
}

impl Run {
    /// Records a figure, also printed on stderr as progress.
    pub fn figure(&mut self, key: &str, value: f64, unit: &str) {
        eprintln!("  {key}: {value:.1} {unit}");
        self.figures.push(Figure {
            key: key.to_owned(),
            value,
            unit: unit.to_owned(),
        });
    }

    /// Shows `console` (of `machine`) in the report if the scenario fails.
    pub fn watch(&mut self, machine: &str, console: Arc<Mutex<Vec<u8>>>) {
        self.consoles.push((machine.to_owned(), console));
    }
}

/// How a scenario ended.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Everything it asserts held.
    Passed,
    /// An assertion failed or a wait ran out: why.
    Failed(String),
    /// It cannot run yet: why.
    NotAvailable(String),
}

/// One scenario's entry in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Scenario name.
    pub name: String,
    /// What it proves.
    pub proves: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Measured figures.
    pub figures: Vec<Figure>,
    /// Service downtime seen by a client, seconds.
    pub downtime_s: Option<f64>,
    /// Takeover time per chain step.
    pub takeover_steps: Vec<(String, f64)>,
    /// Acknowledged writes lost.
    pub writes_lost: Option<u64>,
    /// Whether two primaries were ever seen.
    pub two_primaries_seen: Option<bool>,
    /// Alerts received.
    pub alerts: Vec<String>,
    /// Console tails per machine, when it failed.
    pub log_tails: Vec<(String, String)>,
}

/// Runs `s`, turning a panic into a failed record.
pub fn run_one(s: &Scenario) -> Record {
    let started = Instant::now();
    let Some(f) = s.run.clone() else {
        return Record {
            name: s.name.clone(),
            proves: s.proves.clone(),
            outcome: Outcome::NotAvailable(s.unavailable.clone().unwrap_or_default()),
            seconds: 0.0,
            figures: Vec::new(),
            downtime_s: None,
            takeover_steps: Vec::new(),
            writes_lost: None,
            two_primaries_seen: None,
            alerts: Vec::new(),
            log_tails: Vec::new(),
        };
    };
    // The record lives outside the unwinding: what the scenario measured
    // before it failed stays in the report.
    let mut run = Run::default();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut run)));
    let outcome = match result {
        Ok(()) => Outcome::Passed,
        Err(p) => Outcome::Failed(panic_text(p.as_ref())),
    };
    let log_tails = if outcome == Outcome::Passed {
        Vec::new()
    } else {
        let mut tails: Vec<(String, String)> = run
            .consoles
            .iter()
            .map(|(m, c)| {
                let text = String::from_utf8_lossy(&c.lock().unwrap_or_else(|e| e.into_inner()))
                    .into_owned();
                (m.clone(), crate::tail(&text))
            })
            .collect();
        tails.extend(
            run.on_failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        tails
    };
    Record {
        name: s.name.clone(),
        proves: s.proves.clone(),
        outcome,
        seconds: started.elapsed().as_secs_f64(),
        figures: run.figures,
        downtime_s: run.downtime_s,
        takeover_steps: run.takeover_steps,
        writes_lost: run.writes_lost,
        two_primaries_seen: run.two_primaries_seen,
        alerts: run.alerts,
        log_tails,
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    let text = p
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".to_owned());
    // The kit's waits append the console tail: the report has it apart.
    text.split("; console:\n")
        .next()
        .unwrap_or(&text)
        .to_owned()
}

/// The whole report of a run of the catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The image's version (`tandem-release` of the install image).
    pub version: String,
    /// When the run started, UTC (RFC 3339).
    pub started: String,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
    /// Per scenario.
    pub scenarios: Vec<Record>,
}

impl Report {
    /// Whether every scenario that could run passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.scenarios
            .iter()
            .all(|r| !matches!(r.outcome, Outcome::Failed(_)))
    }

    /// Writes `report.json` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("report.json"), json + "\n")?;
        std::fs::write(dir.join("report.md"), self.markdown())
    }

    /// The report as Markdown: a summary table, then the figures and, for
    /// failures, the reason and the console tails.
    #[must_use]
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let passed = self
            .scenarios
            .iter()
            .filter(|r| r.outcome == Outcome::Passed)
            .count();
        let failed = self
            .scenarios
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
            .count();
        let _ = writeln!(md, "# Release catalogue: {}\n", self.version);
        let _ = writeln!(
            md,
            "Run {} · {:.0} s · {passed} passed, {failed} failed, {} not available\n",
            self.started,
            self.seconds,
            self.scenarios.len() - passed - failed
        );
        let _ = writeln!(
            md,
            "| scenario | outcome | time | downtime | writes lost | two primaries | alerts |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for r in &self.scenarios {
            let outcome = match &r.outcome {
                Outcome::Passed => "passed".to_owned(),
                Outcome::Failed(_) => "**FAILED**".to_owned(),
                Outcome::NotAvailable(_) => "not available".to_owned(),
            };
            let opt = |v: Option<String>| v.unwrap_or_else(|| "–".to_owned());
            let _ = writeln!(
                md,
                "| `{}` | {outcome} | {:.0} s | {} | {} | {} | {} |",
                r.name,
                r.seconds,
                opt(r.downtime_s.map(|d| format!("{d:.1} s"))),
                opt(r.writes_lost.map(|w| w.to_string())),
                opt(r
                    .two_primaries_seen
                    .map(|b| if b { "YES" } else { "no" }.to_owned())),
                if r.alerts.is_empty() {
                    "–".to_owned()
                } else {
                    r.alerts.len().to_string()
                },
            );
        }
        for r in &self.scenarios {
            let _ = writeln!(md, "\n## `{}`\n\n{}\n", r.name, r.proves);
            match &r.outcome {
                Outcome::Passed => {}
                Outcome::Failed(why) => {
                    let _ = writeln!(md, "**Failed:** {why}\n");
                }
                Outcome::NotAvailable(why) => {
                    let _ = writeln!(md, "Not available: {why}\n");
                }
            }
            for f in &r.figures {
                let _ = writeln!(md, "- {}: {:.1} {}", f.key, f.value, f.unit);
            }
            if !r.takeover_steps.is_empty() {
                let _ = writeln!(md, "\nTakeover chain:\n");
                for (step, s) in &r.takeover_steps {
                    let _ = writeln!(md, "- {step}: {s:.2} s");
                }
            }
            if !r.alerts.is_empty() {
                let _ = writeln!(md, "\nAlerts received:\n");
                for a in &r.alerts {
                    let _ = writeln!(md, "- {a}");
                }
            }
            for (machine, tail) in &r.log_tails {
                let _ = writeln!(
                    md,
                    "\nConsole of {machine} (last lines):\n\n```\n{tail}\n```"
                );
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passes(r: &mut Run) {
        r.figure("x", 1.5, "s");
    }

    fn fails(r: &mut Run) {
        r.figure("before", 2.0, "s");
        r.watch(
            "node1",
            Arc::new(Mutex::new(b"line one\nline two\n".to_vec())),
        );
        panic!("no \"State\" on the console within 60s; console:\nlots of text");
    }

    #[test]
    fn a_panic_is_a_failure_with_its_figures_and_console_tail() {
        let ok = run_one(&Scenario::new("ok", "something", passes));
        assert_eq!(ok.outcome, Outcome::Passed);
        assert_eq!(ok.figures.len(), 1);
        assert!(ok.log_tails.is_empty());
        let bad = run_one(&Scenario::new("bad", "something", fails));
        assert_eq!(
            bad.outcome,
            Outcome::Failed("no \"State\" on the console within 60s".into())
        );
        assert_eq!(bad.figures[0].key, "before", "figures survive the panic");
        assert_eq!(bad.log_tails[0].1, "line one\nline two");
        let later = run_one(&Scenario::not_yet("update-rolling", "p", "no updates yet"));
        let report = Report {
            version: "v".into(),
            started: "now".into(),
            seconds: 1.0,
            scenarios: vec![ok, bad, later],
        };
        assert!(!report.passed());
        let md = report.markdown();
        assert!(md.contains("1 passed, 1 failed, 1 not available"), "{md}");
        assert!(md.contains("| `bad` | **FAILED** |"), "{md}");
        assert!(md.contains("Not available: no updates yet"), "{md}");
    }
}
