//! The background jobs of the privileged side, each followed on a progress page.
//!
//! The activation job ([`Jobs`]): `tandem activate --fetch-from-peer|--destroy-data`, its
//! output kept for the progress page. One job at a time. The output is kept in memory,
//! bounded in lines and line length, so a chatty program costs a bounded buffer. The job
//! ends when the program exits; its exit status decides success. `tandem activate`
//! commits the configuration only after every step worked, so a failed job leaves the
//! node in recovery mode with nothing committed.
//!
//! The installation of VE 101 ([`InstallJob`]): its steps (`tandem ve create`, `ve set`,
//! `ve start`) one after the other on a thread of their own, stopping at the first that
//! fails, each step's output kept (bounded by the step runner). One installation at a
//! time; meanwhile the channel to the privileged side answers other calls.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::helper::{InstallReport, InstallStep};

/// Lines of output kept (the oldest are dropped first, after the first few).
const MAX_LINES: usize = 400;
/// Longest line kept, in characters.
const MAX_LINE: usize = 400;

/// What happens to the replicated data (the operator's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataChoice {
    /// Take a full copy from the other node (this node was reinstalled).
    FetchFromPeer,
    /// Create a new, empty data area (both nodes were reinstalled).
    DestroyData,
}

impl DataChoice {
    /// The `tandem activate` flag.
    #[must_use]
    pub fn flag(self) -> &'static str {
        match self {
            DataChoice::FetchFromPeer => "--fetch-from-peer",
            DataChoice::DestroyData => "--destroy-data",
        }
    }

    /// The form value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DataChoice::FetchFromPeer => "fetch",
            DataChoice::DestroyData => "destroy",
        }
    }

    /// From the form value.
    #[must_use]
    pub fn from_form(s: &str) -> Option<DataChoice> {
        match s {
            "fetch" => Some(DataChoice::FetchFromPeer),
            "destroy" => Some(DataChoice::DestroyData),
            _ => None,
        }
    }
}

/// Where the job is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// No activation was started since the console started.
    Idle,
    /// The program runs.
    Running,
    /// The program exited with success.
    Succeeded,
    /// The program failed (exit code, if it exited normally) or could not be run.
    Failed {
        /// Exit code.
        code: Option<i32>,
    },
}

/// What the progress page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    /// State.
    pub state: JobState,
    /// The choice the job runs with.
    pub choice: Option<DataChoice>,
    /// Output lines (stdout and stderr interleaved as they came).
    pub lines: Vec<String>,
    /// After success: the node's new address (`https://<configured address>/`).
    pub new_url: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Option<JobState>,
    choice: Option<DataChoice>,
    lines: Vec<String>,
}

impl Shared {
    fn push(&mut self, line: &str) {
        let mut l: String = line.chars().take(MAX_LINE).collect();
        if l.len() < line.len() {
            l.push('…');
        }
        if self.lines.len() >= MAX_LINES {
            // Keep the start (what was set up) and the most recent lines.
            self.lines.remove(10);
        }
        self.lines.push(l);
    }
}

/// The one activation job of this node.
#[derive(Debug)]
pub struct Jobs {
    program: PathBuf,
    store: PathBuf,
    shared: Arc<Mutex<Shared>>,
}

/// Why a job did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// One runs already.
    #[error("an activation is already running")]
    Running,
    /// The program could not be started.
    #[error("starting {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Jobs {
    /// Jobs running `program activate FLAG --store STORE`.
    #[must_use]
    pub fn new(program: PathBuf, store: PathBuf) -> Jobs {
        Jobs {
            program,
            store,
            shared: Arc::new(Mutex::new(Shared::default())),
        }
    }

    /// Whether a job runs now.
    #[must_use]
    pub fn running(&self) -> bool {
        self.shared
            .lock()
            .map(|s| s.state == Some(JobState::Running))
            .unwrap_or(false)
    }

    /// Starts the job.
    ///
    /// # Errors
    /// [`StartError::Running`] while one runs, [`StartError::Spawn`] when the program
    /// cannot be started.
    pub fn start(&self, choice: DataChoice) -> Result<(), StartError> {
        let mut shared = self.shared.lock().map_err(|_| StartError::Running)?;
        if shared.state == Some(JobState::Running) {
            return Err(StartError::Running);
        }
        let mut child = Command::new(&self.program)
            .arg("activate")
            .arg(choice.flag())
            .arg("--store")
            .arg(&self.store)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| StartError::Spawn {
                program: self.program.display().to_string(),
                source,
            })?;
        *shared = Shared {
            state: Some(JobState::Running),
            choice: Some(choice),
            lines: Vec::new(),
        };
        drop(shared);
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let for_err = Arc::clone(&self.shared);
        let err_reader = std::thread::spawn(move || {
            if let Some(e) = stderr {
                collect(e, &for_err);
            }
        });
        let shared = Arc::clone(&self.shared);
        std::thread::spawn(move || {
            if let Some(o) = stdout {
                collect(o, &shared);
            }
            let _ = err_reader.join();
            let state = match child.wait() {
                Ok(s) if s.success() => JobState::Succeeded,
                Ok(s) => JobState::Failed { code: s.code() },
                Err(_) => JobState::Failed { code: None },
            };
            if let Ok(mut s) = shared.lock() {
                s.state = Some(state);
            }
        });
        Ok(())
    }

    /// The job as the progress page shows it; `new_url` is filled in by the caller.
    #[must_use]
    pub fn view(&self) -> JobView {
        match self.shared.lock() {
            Ok(s) => JobView {
                state: s.state.clone().unwrap_or(JobState::Idle),
                choice: s.choice,
                lines: s.lines.clone(),
                new_url: None,
            },
            Err(_) => JobView {
                state: JobState::Failed { code: None },
                choice: None,
                lines: vec!["the job's record was lost".into()],
                new_url: None,
            },
        }
    }

    /// The store the job activates.
    #[must_use]
    pub fn store(&self) -> &Path {
        &self.store
    }
}

/// Where the installation of VE 101 is, as its progress page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallView {
    /// Idle (none since the console started), running, succeeded (every step worked)
    /// or failed (a step failed; no exit code).
    pub state: JobState,
    /// The template it installs from.
    pub template: Option<String>,
    /// The steps done so far, in order.
    pub steps: Vec<InstallStep>,
    /// The command running now.
    pub current: Option<String>,
}

impl InstallView {
    /// The steps done, as the report of a finished installation.
    #[must_use]
    pub fn report(&self) -> InstallReport {
        InstallReport {
            template: self.template.clone().unwrap_or_default(),
            steps: self.steps.clone(),
        }
    }
}

/// The one VE 101 installation of this node.
#[derive(Debug)]
pub struct InstallJob {
    shared: Arc<Mutex<InstallView>>,
}

impl Default for InstallJob {
    fn default() -> Self {
        InstallJob {
            shared: Arc::new(Mutex::new(InstallView {
                state: JobState::Idle,
                template: None,
                steps: Vec::new(),
                current: None,
            })),
        }
    }
}

/// Why an installation did not start.
#[derive(Debug, thiserror::Error)]
pub enum InstallStartError {
    /// One runs already.
    #[error("an installation of VE 101 is already running")]
    Running,
    /// No thread for it.
    #[error("starting the installation's thread")]
    Thread(#[source] std::io::Error),
}

impl InstallJob {
    /// Whether an installation runs now.
    #[must_use]
    pub fn running(&self) -> bool {
        self.shared
            .lock()
            .map(|s| s.state == JobState::Running)
            .unwrap_or(false)
    }

    /// Starts the installation from `template`: `steps` (arguments of `tandem`) one
    /// after the other through `run`, until one fails. Call only after every check
    /// passed: from here on the job reports, nothing refuses.
    ///
    /// # Errors
    /// [`InstallStartError::Running`] while one runs (the running one goes on),
    /// [`InstallStartError::Thread`] when no thread can be started (nothing ran).
    pub fn start<F>(
        &self,
        template: &str,
        steps: Vec<Vec<String>>,
        run: F,
    ) -> Result<(), InstallStartError>
    where
        F: Fn(&[&str]) -> InstallStep + Send + 'static,
    {
        let mut view = self.shared.lock().map_err(|_| InstallStartError::Running)?;
        if view.state == JobState::Running {
            return Err(InstallStartError::Running);
        }
        let before = view.clone();
        *view = InstallView {
            state: JobState::Running,
            template: Some(template.to_owned()),
            steps: Vec::new(),
            current: None,
        };
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("ve101-install".into())
            .spawn(move || {
                let total = steps.len();
                let mut all_ok = true;
                for args in steps {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    if let Ok(mut v) = shared.lock() {
                        v.current = Some(format!("tandem {}", args.join(" ")));
                    }
                    let step = run(&args);
                    let ok = step.ok;
                    if let Ok(mut v) = shared.lock() {
                        v.steps.push(step);
                        v.current = None;
                    }
                    if !ok {
                        all_ok = false;
                        break;
                    }
                }
                if let Ok(mut v) = shared.lock() {
                    v.state = if all_ok && v.steps.len() == total {
                        JobState::Succeeded
                    } else {
                        JobState::Failed { code: None }
                    };
                }
            });
        match spawned {
            Ok(_) => Ok(()),
            Err(e) => {
                *view = before;
                Err(InstallStartError::Thread(e))
            }
        }
    }

    /// The installation as its progress page shows it.
    #[must_use]
    pub fn view(&self) -> InstallView {
        match self.shared.lock() {
            Ok(v) => v.clone(),
            Err(_) => InstallView {
                state: JobState::Failed { code: None },
                template: None,
                steps: Vec::new(),
                current: Some("the installation's record was lost".into()),
            },
        }
    }
}

fn collect(r: impl Read, shared: &Mutex<Shared>) {
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                if let Ok(mut s) = shared.lock() {
                    s.push(line.trim_end());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    use super::*;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("activate.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn wait_done(j: &Jobs) -> JobView {
        let start = Instant::now();
        while j.running() {
            assert!(start.elapsed() < Duration::from_secs(10), "job hangs");
            std::thread::sleep(Duration::from_millis(20));
        }
        j.view()
    }

    #[test]
    fn runs_the_program_with_the_choice_and_keeps_its_output() {
        let dir = std::env::temp_dir().join(format!("tandem-job-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = script(&dir, "echo \"args: $*\"; echo oops >&2; exit 3");
        let j = Jobs::new(p, dir.join("store"));
        assert_eq!(j.view().state, JobState::Idle);
        j.start(DataChoice::DestroyData).unwrap();
        let v = wait_done(&j);
        assert_eq!(v.state, JobState::Failed { code: Some(3) });
        let args = format!(
            "args: activate --destroy-data --store {}",
            dir.join("store").display()
        );
        assert!(v.lines.contains(&args), "{:?}", v.lines);
        assert!(v.lines.contains(&"oops".to_owned()));
        assert_eq!(v.choice, Some(DataChoice::DestroyData));

        let p = script(&dir, "sleep 0.3; echo done");
        let j = Jobs::new(p, dir.join("store"));
        j.start(DataChoice::FetchFromPeer).unwrap();
        assert!(matches!(
            j.start(DataChoice::FetchFromPeer),
            Err(StartError::Running)
        ));
        assert_eq!(wait_done(&j).state, JobState::Succeeded);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn output_is_bounded() {
        let mut s = Shared::default();
        for i in 0..(MAX_LINES + 50) {
            s.push(&format!(
                "line {i} {}",
                "x".repeat(if i == 3 { 1000 } else { 1 })
            ));
        }
        assert_eq!(s.lines.len(), MAX_LINES);
        assert!(s.lines[3].ends_with('…') && s.lines[3].chars().count() == MAX_LINE + 1);
        assert_eq!(
            s.lines.last().unwrap(),
            &format!("line {} x", MAX_LINES + 49)
        );
    }

    fn step(args: &[&str], ok: bool) -> InstallStep {
        InstallStep {
            command: format!("tandem {}", args.join(" ")),
            ok,
            output: String::new(),
        }
    }

    fn wait_installed(j: &InstallJob) -> InstallView {
        let start = Instant::now();
        while j.running() {
            assert!(start.elapsed() < Duration::from_secs(10), "job hangs");
            std::thread::sleep(Duration::from_millis(10));
        }
        j.view()
    }

    fn steps() -> Vec<Vec<String>> {
        ["ve create 101", "ve set 101 ONBOOT=yes", "ve start 101"]
            .iter()
            .map(|s| s.split(' ').map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn the_installation_runs_its_steps_in_the_background_one_at_a_time() {
        let j = InstallJob::default();
        assert_eq!(j.view().state, JobState::Idle);
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let go_rx = Mutex::new(go_rx);
        j.start("debian-12", steps(), move |args| {
            // Each step waits for the test's go.
            let _ = go_rx.lock().unwrap().recv();
            step(args, true)
        })
        .unwrap();
        // Running, the first step current, nothing done yet; a second start is refused
        // and the first goes on.
        let v = j.view();
        assert_eq!(v.state, JobState::Running);
        assert_eq!(v.template.as_deref(), Some("debian-12"));
        assert!(matches!(
            j.start("other", steps(), |a| step(a, true)),
            Err(InstallStartError::Running)
        ));
        let start = Instant::now();
        while j.view().current.is_none() {
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(j.view().current.as_deref(), Some("tandem ve create 101"));
        go_tx.send(()).unwrap();
        while j.view().steps.is_empty() {
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(j.view().steps[0].command, "tandem ve create 101");
        assert_eq!(j.view().state, JobState::Running);
        go_tx.send(()).unwrap();
        go_tx.send(()).unwrap();
        let v = wait_installed(&j);
        assert_eq!(v.state, JobState::Succeeded);
        assert_eq!(v.steps.len(), 3);
        assert!(v.current.is_none());
        assert!(v.report().complete());
        assert_eq!(v.template.as_deref(), Some("debian-12"));
    }

    #[test]
    fn the_installation_stops_at_the_first_failed_step() {
        let j = InstallJob::default();
        j.start("tandem-minimal", steps(), |args| {
            step(args, args[1] != "set")
        })
        .unwrap();
        let v = wait_installed(&j);
        assert_eq!(v.state, JobState::Failed { code: None });
        let ran: Vec<&str> = v.steps.iter().map(|s| s.command.as_str()).collect();
        assert_eq!(
            ran,
            ["tandem ve create 101", "tandem ve set 101 ONBOOT=yes"]
        );
        assert!(!v.report().complete());
        // Finished: another may start.
        j.start("tandem-minimal", steps(), |args| step(args, true))
            .unwrap();
        assert_eq!(wait_installed(&j).state, JobState::Succeeded);
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let j = Jobs::new("/nonexistent/tandem".into(), "/nonexistent".into());
        let e = j.start(DataChoice::FetchFromPeer).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/tandem"));
        assert_eq!(j.view().state, JobState::Idle);
    }
}
