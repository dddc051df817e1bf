//! VEs on the privileged side: this node's list, the OS templates, the installation of
//! VE 101 in the background (R9.4), its root password (R9.6) and the backup of the
//! template cache (R9.8). The VE engine is the `tandem ve` program (crun underneath):
//! the installation runs `tandem ve create`, `ve set 101 ONBOOT=yes` and `ve start
//! 101` one after the other and stops at the first that fails, each step's output
//! kept (its end, bounded).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_api::{
    BackupFailure, BackupView, ChangeRefusal, FieldProblem, INSTALL_STEPS, InstallStep,
    InstallView, JobState, Refusal, Reply, TemplateView, VeView,
};

use crate::error_chain;
use crate::ve::backup::{BackupError, TemplateBackup};
use crate::ve::template::Templates;

/// How long fetching a template may take.
const TEMPLATE_FETCH_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// Longest time one step of a VE installation may take (unpacking a large template).
const INSTALL_STEP_LIMIT: Duration = Duration::from_secs(15 * 60);
/// Output kept of one step, in bytes (the end).
const STEP_OUTPUT: usize = 8 * 1024;

/// Where this node's VEs live, and the program that installs them.
#[derive(Debug, Clone)]
pub struct VeSite {
    /// Mount point of the replicated data area: VEs are handled only while it is
    /// mounted here (on the active node).
    pub data_mount: PathBuf,
    /// OS templates (`NAME.tar`, `.tar.gz`, `.tar.xz`, `.tar.zst`).
    pub template_dir: PathBuf,
    /// VE files (`ve-ID.conf`).
    pub conf_dir: PathBuf,
    /// Root filesystems (`ID/`).
    pub private_dir: PathBuf,
    /// Backups of the OS templates.
    pub backup_dir: PathBuf,
    /// Backups of the VEs.
    pub ve_backup_dir: PathBuf,
    /// `tandem`, run as `tandem ve create|set|start|passwd`.
    pub program: PathBuf,
}

impl VeSite {
    /// The node's: `/vz`, `/etc/tandem/ves`, `/usr/bin/tandem`.
    #[must_use]
    pub fn node() -> VeSite {
        VeSite::at(
            Path::new(crate::activate::DATA_MOUNT),
            PathBuf::from("/etc/tandem/ves"),
            PathBuf::from("/usr/bin/tandem"),
        )
    }

    /// The data area at `data` (templates and root filesystems inside it), VE files in
    /// `conf_dir`, installed with `program`.
    #[must_use]
    pub fn at(data: &Path, conf_dir: PathBuf, program: PathBuf) -> VeSite {
        VeSite {
            data_mount: data.to_owned(),
            template_dir: data.join("template"),
            private_dir: data.join("private"),
            backup_dir: data.join(crate::ve::backup::BACKUP_SUBDIR),
            ve_backup_dir: data.join(crate::ve::snapshot::VE_BACKUP_SUBDIR),
            conf_dir,
            program,
        }
    }

    /// Whether the data area is mounted here.
    ///
    /// # Errors
    /// [`Refusal::NoDataArea`] when it is not.
    pub fn data_area(&self) -> Result<(), Refusal> {
        if crate::storage::is_mountpoint(&self.data_mount) {
            Ok(())
        } else {
            Err(Refusal::NoDataArea)
        }
    }

    /// Whether VE `id` exists (its file or its root filesystem).
    #[must_use]
    pub fn exists(&self, id: u32) -> bool {
        self.conf_dir.join(format!("ve-{id}.conf")).exists()
            || self.private_dir.join(id.to_string()).exists()
    }

    /// The VE manager of this site, for `cfg`.
    fn ves(&self, cfg: &tandem_config::ApplianceConfig) -> crate::ve::manager::Ves {
        use crate::ve::manager::{Layout, Ves};
        let nics = crate::activate::node_nics();
        let port = |i: usize, dflt: &str| nics.get(i).cloned().unwrap_or_else(|| dflt.to_owned());
        let mut layout = Layout::for_cluster(Some(cfg), port(0, "eth0"), port(1, "eth1"));
        layout.conf_dir.clone_from(&self.conf_dir);
        layout.private_dir.clone_from(&self.private_dir);
        layout.template_dir.clone_from(&self.template_dir);
        Ves { layout }
    }

    /// Sets `changes` in VE `id`'s file (checked as a whole before it is replaced).
    ///
    /// # Errors
    /// No data area here, no such VE, or a value the VE file does not take (the
    /// refusal names the line and the parameter).
    pub fn set(
        &self,
        cfg: &tandem_config::ApplianceConfig,
        id: u32,
        changes: &[(String, String)],
    ) -> Result<(), Refusal> {
        self.data_area()?;
        if changes.is_empty() {
            return Err(Refusal::Failed(format!("VE {id}: nothing to set")));
        }
        self.ves(cfg)
            .set(id, changes)
            .map_err(|e| Refusal::Failed(error_chain(&e)))
    }

    /// This node's VEs as `tandem ve list` shows them.
    ///
    /// # Errors
    /// No data area here, or the list failed.
    pub fn list(&self, cfg: &tandem_config::ApplianceConfig) -> Result<Vec<VeView>, Refusal> {
        self.data_area()?;
        let rows = self
            .ves(cfg)
            .list()
            .map_err(|e| Refusal::Failed(error_chain(&e)))?;
        Ok(rows
            .into_iter()
            .map(|r| VeView {
                id: r.id,
                nproc: r.nproc,
                status: r.status,
                ip: r.ip.iter().map(ToString::to_string).collect(),
                hostname: r.hostname,
                health: String::new(),
            })
            .collect())
    }

    /// The OS templates in the data area, `tandem-minimal` first, each with its file,
    /// size, time and the VEs that use it. Only names that `tandem ve create
    /// --template` takes and that cannot name a path.
    ///
    /// # Errors
    /// No data area here, or its template directory cannot be read.
    pub fn templates(&self) -> Result<Vec<TemplateView>, Refusal> {
        self.template_area()?
            .list()
            .map_err(|e| Refusal::Failed(error_chain(&e)))
    }

    /// Adds the tarball `file` (a path on this node) as OS template `name` (default:
    /// the file's name without its suffix), checked whole before anything is written.
    ///
    /// # Errors
    /// No data area here, or the add was refused or failed (nothing was written).
    pub fn template_add(&self, file: &Path, name: Option<&str>) -> Result<TemplateView, Refusal> {
        self.template_area()?
            .add(file, name)
            .map_err(|e| Refusal::Failed(error_chain(&e)))
    }

    /// Fetches the tarball at `url` (`http://` or `https://`; a server certificate
    /// from a public CA) onto the data area and adds it as OS template `name`
    /// (default: the URL's file name without its `.tar…` suffix) as
    /// [`Self::template_add`] does; the fetched file is not kept either way.
    ///
    /// # Errors
    /// Not such a URL, no name, a template of that name exists, no data area, the
    /// fetch failed (said with the server's answer), or the add was refused.
    pub fn template_fetch(&self, url: &str, name: Option<&str>) -> Result<TemplateView, Refusal> {
        let url: tandem_config::HttpUrl = url.parse().map_err(Refusal::Failed)?;
        let name = match name {
            Some(n) => n.to_owned(),
            None => {
                let path = url.as_str().split(['?', '#']).next().unwrap_or("");
                let base = path.rsplit('/').next().unwrap_or("");
                match crate::ve::template::Compression::of_name(base) {
                    Some((stem, _)) => stem.to_owned(),
                    None => {
                        return Err(Refusal::Failed(format!(
                            "{url} does not end in NAME.tar, .tar.gz, .tar.xz or .tar.zst: give the template's name with --name; nothing was fetched"
                        )));
                    }
                }
            }
        };
        crate::ve::template::check_name(&name).map_err(Refusal::Failed)?;
        if self.templates()?.iter().any(|t| t.name == name) {
            return Err(Refusal::Failed(format!(
                "a template {name} exists already: delete it first or give another name with --name; nothing was fetched"
            )));
        }
        std::fs::create_dir_all(&self.template_dir)
            .map_err(|e| Refusal::Failed(format!("{}: {e}", self.template_dir.display())))?;
        let part = self.template_dir.join(format!(".fetch-{name}.part"));
        crate::fetch::Fetch::default()
            .to_file(
                url.as_str(),
                "the server",
                TEMPLATE_FETCH_TIMEOUT,
                &part,
                crate::ve::template::MAX_UNPACKED,
                &mut |_, _| {},
            )
            .map_err(|e| Refusal::Failed(format!("{e}; nothing was added")))?;
        let added = self
            .template_area()?
            .add_as(&part, Some(&name), Path::new(url.as_str()))
            .map_err(|e| Refusal::Failed(error_chain(&e)));
        let _ = std::fs::remove_file(&part);
        added
    }

    /// Deletes OS template `name` unless a VE uses it or it is the built-in one.
    ///
    /// # Errors
    /// No data area here, or the delete was refused or failed.
    pub fn template_delete(&self, name: &str) -> Result<(), Refusal> {
        self.template_area()?
            .delete(name)
            .map_err(|e| Refusal::Failed(error_chain(&e)))
    }

    /// The templates of the data area, when it is mounted here.
    fn template_area(&self) -> Result<Templates, Refusal> {
        self.data_area()?;
        Ok(Templates {
            dir: self.template_dir.clone(),
            conf_dir: self.conf_dir.clone(),
        })
    }

    /// Starts installing VE 101 from `template` with the host name and address of
    /// `cfg` (never from the request) in `job`.
    ///
    /// # Errors
    /// One runs already, no VE 101 in the configuration, a template not offered, the
    /// VE exists, no data area.
    pub fn install_ve101(
        &self,
        cfg: &tandem_config::ApplianceConfig,
        template: &str,
        job: &InstallJob,
    ) -> Result<(), Refusal> {
        // A second request while one runs: the running one is what to show.
        if job.running() {
            return Err(Refusal::InstallRunning);
        }
        let Some(v) = &cfg.ves.ve101 else {
            return Err(Refusal::NoVe101);
        };
        let available: Vec<String> = self.templates()?.into_iter().map(|t| t.name).collect();
        if !available.iter().any(|n| n == template) {
            return Err(Refusal::BadTemplate {
                name: template.chars().take(100).collect(),
                available,
            });
        }
        if self.exists(101) {
            return Err(Refusal::VeExists(101));
        }
        let hostname = v.hostname.to_string();
        let address = v.address.to_string();
        let steps: [&[&str]; INSTALL_STEPS] = [
            &[
                "ve",
                "create",
                "101",
                "--template",
                template,
                "--hostname",
                &hostname,
                "--ip",
                &address,
            ],
            &["ve", "set", "101", "ONBOOT=yes"],
            &["ve", "start", "101"],
        ];
        let steps = steps
            .iter()
            .map(|a| a.iter().map(|s| (*s).to_owned()).collect())
            .collect();
        let program = self.program.clone();
        job.start(template, steps, move |args| {
            run_step(&program, args, INSTALL_STEP_LIMIT)
        })
    }

    /// Sets the root password in VE 101 through `tandem ve passwd 101` (the password
    /// on its standard input, never on a command line).
    #[must_use]
    pub fn ve101_password(&self, new: &str, confirm: &str) -> Reply {
        match self.ve_password(101, "root", new, confirm) {
            Reply::VePasswordSet => Reply::Ve101PasswordSet,
            other => other,
        }
    }

    /// Sets the password of `user` inside VE `id` as `tandem ve passwd ID --user USER`
    /// does (the password on its standard input), after checking the two entries.
    #[must_use]
    pub fn ve_password(&self, id: u32, user: &str, new: &str, confirm: &str) -> Reply {
        use std::io::Write as _;
        let refused = |p: FieldProblem| Reply::ChangeRefused(ChangeRefusal::Fields(vec![p]));
        if let Err(p) = super::settings::new_password(new, confirm, ("ve_new", "ve_confirm")) {
            return refused(p);
        }
        if new.chars().any(char::is_control) {
            return refused(FieldProblem::new(
                "ve_new",
                "may not contain control characters",
            ));
        }
        if let Err(r) = self.data_area() {
            return Reply::Refused(r);
        }
        if !self.exists(id) {
            return Reply::ChangeRefused(ChangeRefusal::NotMade(if id == 101 {
                "VE 101 is not installed (install it on the VEs page first)".to_owned()
            } else {
                format!("VE {id} does not exist on this node")
            }));
        }
        let id_text = id.to_string();
        let child = std::process::Command::new(&self.program)
            .args(["ve", "passwd", &id_text, "--user", user])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                return Reply::Refused(Refusal::Failed(format!(
                    "cannot run {}: {e}",
                    self.program.display()
                )));
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{new}");
        }
        match child.wait_with_output() {
            Ok(o) if o.status.success() => Reply::VePasswordSet,
            Ok(o) => Reply::ChangeRefused(ChangeRefusal::NotMade(
                String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            )),
            Err(e) => Reply::Refused(Refusal::Failed(format!("tandem ve passwd: {e}"))),
        }
    }

    /// The template cache backed up as `tandem ve backup-templates` does it.
    ///
    /// # Errors
    /// No data area here.
    pub fn backup_templates(&self) -> Result<BackupView, Refusal> {
        let backup = TemplateBackup {
            data_mount: self.data_mount.clone(),
            template_dir: self.template_dir.clone(),
            backup_dir: self.backup_dir.clone(),
        };
        let mut copies = Vec::new();
        let result = backup.run(&mut |c| copies.push(c.clone()));
        let failure = match result {
            Ok(_) => None,
            Err(BackupError::NotMounted { .. }) => return Err(Refusal::NoDataArea),
            Err(e) => Some(BackupFailure {
                message: error_chain(&e),
                disk_full: e.is_disk_full(),
            }),
        };
        Ok(BackupView {
            template_dir: backup.template_dir.display().to_string(),
            backup_dir: backup.backup_dir.display().to_string(),
            copies,
            failure,
        })
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
    /// [`Refusal::InstallRunning`] while one runs (the running one goes on), a failure
    /// when no thread can be started (nothing ran).
    pub fn start<F>(&self, template: &str, steps: Vec<Vec<String>>, run: F) -> Result<(), Refusal>
    where
        F: Fn(&[&str]) -> InstallStep + Send + 'static,
    {
        let mut view = self.shared.lock().map_err(|_| Refusal::InstallRunning)?;
        if view.state == JobState::Running {
            return Err(Refusal::InstallRunning);
        }
        let before = view.clone();
        *view = InstallView {
            state: JobState::Running,
            template: Some(template.to_owned()),
            steps: Vec::new(),
            current: None,
        };
        let shared = Arc::clone(&self.shared);
        let spawned =
            super::start_thread("ve101-install", "the installation's thread", move || {
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
                        JobState::Failed {
                            error: "a step failed".to_owned(),
                        }
                    };
                }
            });
        if spawned.is_err() {
            *view = before;
        }
        spawned
    }

    /// The installation as its progress page shows it.
    #[must_use]
    pub fn view(&self) -> InstallView {
        match self.shared.lock() {
            Ok(v) => v.clone(),
            Err(_) => InstallView {
                state: JobState::Failed {
                    error: "the installation's record was lost".into(),
                },
                template: None,
                steps: Vec::new(),
                current: Some("the installation's record was lost".into()),
            },
        }
    }
}

/// Runs `program args` with its output in an unlinked file (a VE started by it may keep
/// the output open long after the program ended: a pipe would never close), for at
/// most `limit`.
fn run_step(program: &std::path::Path, args: &[&str], limit: std::time::Duration) -> InstallStep {
    use std::io::Seek;
    use std::os::unix::fs::OpenOptionsExt;
    let command = format!("tandem {}", args.join(" "));
    let fail = |output: String| InstallStep {
        command: command.clone(),
        ok: false,
        output,
    };
    let path = std::env::temp_dir().join(format!("tandem-web-step-{}-{}", std::process::id(), {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    }));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    let _ = std::fs::remove_file(&path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            return fail(format!(
                "cannot create a file for its output in {}: {e}",
                path.display()
            ));
        }
    };
    let (out, err) = match (file.try_clone(), file.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(format!("cannot pass the output file: {e}")),
    };
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot run {}: {e}", program.display())),
    };
    let start = std::time::Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Ok(s),
            Ok(None) if start.elapsed() < limit => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "did not finish within {} seconds and was stopped",
                    limit.as_secs()
                ));
            }
            Err(e) => break Err(format!("waiting for it failed: {e}")),
        }
    };
    let mut text = Vec::new();
    let _ = file.rewind();
    let _ = file.read_to_end(&mut text);
    let cut = text.len().saturating_sub(STEP_OUTPUT);
    let mut output = String::from_utf8_lossy(&text[cut..]).trim_end().to_owned();
    if cut > 0 {
        output.insert_str(0, "… ");
    }
    let ok = matches!(&status, Ok(s) if s.success());
    let ending = match status {
        Ok(s) if s.success() => None,
        Ok(s) => Some(match s.code() {
            Some(c) => format!("exit code {c}"),
            None => format!("ended by a signal ({s})"),
        }),
        Err(e) => Some(e),
    };
    if let Some(e) = ending {
        if !output.is_empty() {
            output.push('\n');
        }
        output.push_str(&e);
    }
    InstallStep {
        command,
        ok,
        output,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

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
            Err(Refusal::InstallRunning)
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
        assert_eq!(
            v.state,
            JobState::Failed {
                error: "a step failed".to_owned()
            }
        );
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
    fn a_step_ends_with_its_program_not_with_what_it_left_running() {
        use std::time::{Duration, Instant};
        // A daemon the program starts keeps the output open: the step still ends.
        let start = Instant::now();
        let s = run_step(
            std::path::Path::new("/bin/sh"),
            &["-c", "sleep 30 & echo started; echo warning >&2"],
            Duration::from_secs(20),
        );
        assert!(start.elapsed() < Duration::from_secs(10), "{s:?}");
        assert!(s.ok, "{s:?}");
        assert_eq!(s.output, "started\nwarning");
        assert_eq!(
            s.command,
            "tandem -c sleep 30 & echo started; echo warning >&2"
        );

        let s = run_step(
            std::path::Path::new("/bin/sh"),
            &["-c", "echo half; sleep 30"],
            Duration::from_millis(300),
        );
        assert!(!s.ok);
        assert_eq!(
            s.output,
            "half\ndid not finish within 0 seconds and was stopped"
        );

        let s = run_step(
            std::path::Path::new("/bin/sh"),
            &[
                "-c",
                "head -c 20000 /dev/zero | tr '\\0' x; echo; echo last; exit 4",
            ],
            Duration::from_secs(20),
        );
        assert!(!s.ok);
        assert!(s.output.starts_with("… x"), "{}", &s.output[..20]);
        assert!(s.output.ends_with("x\nlast\nexit code 4"), "{s:?}");
        assert!(s.output.len() < STEP_OUTPUT + 100);

        let s = run_step(
            std::path::Path::new("/nonexistent/tandem"),
            &["ve", "start", "101"],
            Duration::from_secs(1),
        );
        assert!(
            !s.ok && s.output.starts_with("cannot run /nonexistent/tandem"),
            "{s:?}"
        );
    }

    #[test]
    fn template_names_cannot_name_a_path() {
        use crate::ve::manager::template_name_ok;
        for ok in ["debian-12", "centos-7-x86_64", "tandem-minimal", "a.b+c"] {
            assert!(template_name_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "a/b",
            ".hidden",
            "..",
            "a b",
            "x\n",
            &"a".repeat(101),
        ] {
            assert!(!template_name_ok(bad), "{bad:?}");
        }
    }
}
