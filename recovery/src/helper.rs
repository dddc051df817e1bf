//! The privileged side of the web console and the narrow channel to it.
//!
//! `tandem-web serve` starts as root, binds its ports, reads its TLS key, creates a
//! socket pair and forks. The child drops to the unprivileged `tandem-web` user and
//! serves HTTP; everything it may not do itself it asks the root parent through this
//! module, one typed [`Call`] at a time, and the parent executes only these calls after
//! checking them ([`Local`]). The parent never parses HTTP, HTML forms or multipart
//! bodies; the child never opens the configuration store (`0700` root), never runs a
//! program as root and never sees a password hash or the cluster's keys. (It does hold
//! the HTTPS key in memory, read by root before the fork: it terminates TLS.)
//!
//! Frames on the socket: a 4-byte big-endian length and that many bytes of JSON, then a
//! 4-byte length and that many bytes of payload (the archive going in, the exported
//! archive coming out; empty otherwise). Both lengths are bounded before anything is
//! allocated.
//!
//! The two calls that change the node beyond the store are narrow as well. `Power`
//! sends init (PID 1; [`Local::init_pid`]) SIGTERM to restart or SIGUSR2 to power off,
//! only on a configured node. `InstallVe101` takes nothing from the web side but the
//! name of a template, which must be one of those listed (the built-in one, or a
//! `NAME.tar[.gz]` in the data area's template directory, names without a path); the
//! host name and address come from the committed configuration. Once every check
//! passed it starts a background job ([`crate::job::InstallJob`], one at a time) that
//! runs `tandem ve create`, `ve set 101 ONBOOT=yes` and `ve start 101` one after the
//! other and stops at the first that fails; `InstallJob` reports its progress.
//! `BackupTemplates` takes nothing from the web side: it copies the data area's
//! template files into its `backups/templatecache` with the same library code as
//! `tandem ve backup-templates` ([`tandem_runtime::ve::backup`]); meanwhile the
//! channel waits (templates are copied at disk speed, and an unchanged one is only
//! read).
//!
//! Cluster-mode pages that show cluster state talk to clusterd's control socket
//! directly; that socket's group must admit the `tandem-web` user (clusterd
//! `--control-group`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tandem_config::archive::{self, MAX_ARCHIVE_BYTES};
use tandem_config::store::{ImportMode, ImportOptions, Store, import_archive};
use tandem_config::{NodeId, secrets};

use tandem_runtime::ve::backup::{BackupError, TemplateBackup, TemplateCopy};

use crate::job::{DataChoice, InstallJob, InstallStartError, InstallView, JobState, JobView, Jobs};

/// Largest JSON part of a call (web process to root).
const MAX_CALL_JSON: usize = 64 * 1024;
/// Largest JSON part of a reply: the job's output is bounded in lines and characters
/// (`job`), and each character takes at most 6 bytes in JSON (`\uXXXX`).
const MAX_REPLY_JSON: usize = 4 * 1024 * 1024;
/// Longest passphrase or password accepted from the web side.
pub const MAX_SECRET: usize = 1024;
/// Shortest passphrase for an exported archive.
pub const MIN_EXPORT_PASSPHRASE: usize = 8;

/// A request of the web process to the privileged side.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Call {
    /// Whether the node has a committed configuration.
    Configured,
    /// Check the archive in the payload (write nothing).
    Check {
        /// Its passphrase.
        passphrase: Option<String>,
    },
    /// Stage the archive in the payload and start `tandem activate`.
    Activate {
        /// Its passphrase.
        passphrase: Option<String>,
        /// What happens to the replicated data.
        choice: DataChoice,
        /// The cluster name as typed by the operator (required for destroy).
        confirm_name: String,
    },
    /// The activation job's progress.
    Job,
    /// Check the management password (cluster mode).
    VerifyAdmin {
        /// The password typed.
        password: String,
    },
    /// The committed configuration without secrets, for the cluster pages.
    Settings,
    /// The VEs of this node (`tandem ve list`), when the data area is mounted here.
    VeList,
    /// Export the committed configuration as an archive encrypted with `passphrase`.
    Export {
        /// The passphrase.
        passphrase: String,
    },
    /// Restart or power off this node: a signal to init, which stops the services
    /// (clusterd releases them to the other node) and then the machine.
    Power {
        /// Restart or power off.
        action: PowerAction,
    },
    /// The OS templates VE 101 can be installed from (data area mounted here).
    VeTemplates,
    /// Start the installation of VE 101 from `template` with the configured host name
    /// and address (marked to start with the services, and started) in the background.
    InstallVe101 {
        /// A name from [`Call::VeTemplates`]' answer.
        template: String,
    },
    /// Set the root password inside VE 101 (`tandem ve passwd 101`, on the node that
    /// holds the data area: the VE's files are replicated, so both nodes have it).
    Ve101Password {
        /// The new password.
        new: String,
        /// Typed again.
        confirm: String,
    },
    /// Change settings on both nodes (or on this one only, the other being down),
    /// starting from configuration `revision` (the one the page showed).
    ChangeSettings {
        /// The change.
        change: Box<crate::change::SettingsChange>,
        /// The revision the page showed.
        revision: u64,
        /// The other node is down: change this node only.
        this_node_only: bool,
    },
    /// The installation of VE 101: its progress, or how it ended.
    InstallJob,
    /// Back up the OS templates of the data area into its `backups/templatecache`.
    BackupTemplates,
}

/// What [`Call::Power`] does to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerAction {
    /// Restart the node (SIGTERM to init).
    Reboot,
    /// Switch the node off (SIGUSR2 to init).
    Poweroff,
}

impl PowerAction {
    /// The signal init takes for this action.
    #[must_use]
    pub fn signal(self) -> Signal {
        match self {
            PowerAction::Reboot => Signal::SIGTERM,
            PowerAction::Poweroff => Signal::SIGUSR2,
        }
    }

    /// The form value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PowerAction::Reboot => "reboot",
            PowerAction::Poweroff => "poweroff",
        }
    }

    /// From the form value.
    #[must_use]
    pub fn from_form(s: &str) -> Option<PowerAction> {
        match s {
            "reboot" => Some(PowerAction::Reboot),
            "poweroff" => Some(PowerAction::Poweroff),
            _ => None,
        }
    }
}

/// One program run of a VE installation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallStep {
    /// The command line, as the operator would type it.
    pub command: String,
    /// Whether it exited with success.
    pub ok: bool,
    /// Its output (the end, when long), and how it ended when it failed.
    pub output: String,
}

/// What the installation of VE 101 did, step by step; it stops at the first failed
/// step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallReport {
    /// The template used.
    pub template: String,
    /// Create, mark to start with the services, start: those that ran.
    pub steps: Vec<InstallStep>,
}

impl InstallReport {
    /// Whether every step ran and worked.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.steps.len() == INSTALL_STEPS && self.steps.iter().all(|s| s.ok)
    }
}

/// Create, set ONBOOT, start.
pub const INSTALL_STEPS: usize = 3;
/// Longest time one step of a VE installation may take (unpacking a large template).
const INSTALL_STEP_LIMIT: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Output kept of one step, in bytes (the end).
const STEP_OUTPUT: usize = 8 * 1024;

/// What a backup of the template cache did: every template backed up, and where it
/// stopped when it did not finish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupView {
    /// The template directory.
    pub template_dir: String,
    /// Where the backups are.
    pub backup_dir: String,
    /// The templates backed up (all of them, unless `failure`), by file name.
    pub copies: Vec<TemplateCopy>,
    /// Why the backup stopped: the template being copied was not written (its
    /// temporary copy removed, an older backup of it kept), the ones after it not tried.
    pub failure: Option<BackupFailure>,
}

/// Why a backup of the template cache stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFailure {
    /// The error with its causes.
    pub message: String,
    /// The data area ran out of space.
    pub disk_full: bool,
}

/// A checked archive, as the upload page shows it (no secrets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveSummary {
    /// Cluster name.
    pub cluster_name: String,
    /// Cluster id.
    pub cluster_id: String,
    /// Creation time of the archive.
    pub created: String,
    /// Product version that wrote it.
    pub product_version: String,
    /// Whether it was encrypted.
    pub encrypted: bool,
    /// `(node, hostname, external address)` of both nodes.
    pub nodes: Vec<(String, String, String)>,
    /// Things the operator should know.
    pub warnings: Vec<String>,
}

/// One node's network values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeSettings {
    /// `node1` or `node2`.
    pub node: String,
    /// Host name.
    pub hostname: String,
    /// External address.
    pub address: String,
    /// Crossover address.
    pub internal_address: String,
}

/// The committed configuration without any secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Cluster name.
    pub cluster_name: String,
    /// The configuration's revision (a change names the one it started from).
    pub revision: u64,
    /// Both nodes.
    pub nodes: Vec<NodeSettings>,
    /// Netmask of the external network.
    pub netmask: String,
    /// Default gateway.
    pub gateway: String,
    /// Ping nodes.
    pub ping_nodes: Vec<String>,
    /// DNS search path.
    pub dns_search: Vec<String>,
    /// DNS servers.
    pub dns_servers: Vec<String>,
    /// Serial heartbeat path enabled.
    pub serial_heartbeat: bool,
    /// External heartbeat path enabled.
    pub external_heartbeat: bool,
    /// Notification recipients.
    pub notify_addresses: Vec<String>,
    /// Relay host, if any.
    pub relay_host: Option<String>,
    /// Copy to the vendor.
    pub copy_vendor: bool,
    /// The vendor's address.
    pub vendor_address: Option<String>,
    /// `(VE, host name, address)` of the configured VEs.
    pub ves: Vec<(String, String, String)>,
}

/// One VE as `tandem ve list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VeView {
    /// VE number.
    pub id: u32,
    /// Processes, 0 when stopped.
    pub nproc: u64,
    /// `running` or `stopped`.
    pub status: String,
    /// Addresses.
    pub ip: Vec<String>,
    /// Host name.
    pub hostname: String,
}

/// Why a call was refused. Each variant is shown to the operator in their language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// The node is configured: recovery actions are closed.
    Configured,
    /// The node is not configured: cluster actions are not available.
    NotConfigured,
    /// An activation runs already.
    Running,
    /// The typed cluster name differs from the archive's.
    NameMismatch {
        /// The archive's cluster name (not secret: it is shown on the upload page).
        expected: String,
    },
    /// The archive was refused; every problem.
    Archive(Vec<String>),
    /// The data area is not mounted on this node (it is the passive one).
    NoDataArea,
    /// The configuration has no VE 101 (`ves.ve101`).
    NoVe101,
    /// The template asked for is not one of those offered.
    BadTemplate {
        /// The name asked for.
        name: String,
        /// The names offered.
        available: Vec<String>,
    },
    /// The VE exists already.
    VeExists(u32),
    /// An installation of VE 101 runs already.
    InstallRunning,
    /// A passphrase or password that is too long or too short.
    BadSecret,
    /// The configuration store or another local step failed.
    Failed(String),
}

/// The answer to a [`Call`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// Whether configured.
    Configured(bool),
    /// The archive is valid.
    Checked(ArchiveSummary),
    /// Activation started.
    Started,
    /// The job.
    Job(JobView),
    /// Password right or wrong.
    Verified(bool),
    /// Settings.
    Settings(Box<Settings>),
    /// The VEs.
    Ves(Vec<VeView>),
    /// The archive is in the payload, with this file name.
    Exported {
        /// File name for the download.
        file_name: String,
    },
    /// Init was sent the action's signal.
    PowerSignalled(PowerAction),
    /// The OS templates for VE 101, the built-in one first.
    Templates(Vec<String>),
    /// The installation of VE 101 started in the background.
    InstallStarted,
    /// The installation of VE 101.
    Install(InstallView),
    /// The backup of the template cache ran (see each template, and where it stopped).
    TemplatesBackedUp(BackupView),
    /// VE 101's root password is set.
    Ve101PasswordSet,
    /// The settings change is in effect.
    Changed(ChangeReport),
    /// The settings change was not made.
    ChangeRefused(ChangeRefusal),
    /// Refused; nothing was changed.
    Refused(Refusal),
}

/// What a settings change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeReport {
    /// The revision now in effect.
    pub revision: u64,
    /// The sections that changed.
    pub changed: Vec<String>,
    /// Both nodes have it (false: this node only).
    pub both_nodes: bool,
    /// Network or heartbeat settings: in effect when each node starts again.
    pub needs_restart: bool,
    /// Anything else the operator should know.
    pub notes: Vec<String>,
}

/// Why a settings change was not made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeRefusal {
    /// Problems with the form's fields; nothing changed.
    Fields(Vec<crate::change::FieldProblem>),
    /// The configuration changed since the page was shown; nothing changed.
    Stale {
        /// The revision now committed.
        have: u64,
    },
    /// Refused by the other node, the other node unreachable, or refused by the
    /// rules for a running cluster; nothing changed.
    NotMade(String),
    /// The other node took the change but this node could not.
    OnlyPeer(String),
}

/// Executes calls. [`Local`] does the work; [`Remote`] asks a [`Local`] in another
/// process.
pub trait Privileged: Send + Sync {
    /// Executes `call` with `payload`; returns the reply and its payload.
    fn call(&self, call: Call, payload: Vec<u8>) -> (Reply, Vec<u8>);
}

/// Where this node's VEs live, and the program that installs them.
#[derive(Debug, Clone)]
pub struct VeSite {
    /// Mount point of the replicated data area: VEs are handled only while it is
    /// mounted here (on the active node).
    pub data_mount: PathBuf,
    /// OS templates (`NAME.tar`, `NAME.tar.gz`).
    pub template_dir: PathBuf,
    /// VE files (`ve-ID.conf`).
    pub conf_dir: PathBuf,
    /// Root filesystems (`ID/`).
    pub private_dir: PathBuf,
    /// Backups of the OS templates.
    pub backup_dir: PathBuf,
    /// `tandem`, run as `tandem ve create|set|start`.
    pub program: PathBuf,
}

impl VeSite {
    /// The node's: `/vz`, `/etc/tandem/ves`, `/usr/bin/tandem`.
    #[must_use]
    pub fn node() -> VeSite {
        let data = PathBuf::from(tandem_runtime::activate::DATA_MOUNT);
        VeSite {
            template_dir: data.join("template"),
            private_dir: data.join("private"),
            backup_dir: data.join(tandem_runtime::ve::backup::BACKUP_SUBDIR),
            data_mount: data,
            conf_dir: PathBuf::from("/etc/tandem/ves"),
            program: PathBuf::from("/usr/bin/tandem"),
        }
    }

    /// The data area at `data` (templates and root filesystems inside it), VE files in
    /// `conf_dir`, installed with `program`.
    #[must_use]
    pub fn at(data: &std::path::Path, conf_dir: PathBuf, program: PathBuf) -> VeSite {
        VeSite {
            data_mount: data.to_owned(),
            template_dir: data.join("template"),
            private_dir: data.join("private"),
            backup_dir: data.join(tandem_runtime::ve::backup::BACKUP_SUBDIR),
            conf_dir,
            program,
        }
    }
}

/// The privileged executor: the configuration store, the activation job, the export.
#[derive(Debug)]
pub struct Local {
    store: PathBuf,
    node: NodeId,
    jobs: Jobs,
    install: InstallJob,
    /// scrypt work factor of exported archives.
    pub work_factor: u8,
    /// The process that takes the power signals: init, PID 1 on a node (tests name a
    /// child of their own).
    pub init_pid: i32,
    /// The VEs' places and installer.
    pub ve: VeSite,
    /// clusterd's control socket (a settings change asks it to put the change in
    /// effect).
    pub control: PathBuf,
}

impl Local {
    /// An executor for `node`'s store in `store`, activating with `program`
    /// (`/usr/bin/tandem` on a node).
    #[must_use]
    pub fn new(store: PathBuf, node: NodeId, program: PathBuf) -> Local {
        Local {
            jobs: Jobs::new(program, store.clone()),
            install: InstallJob::default(),
            store,
            node,
            work_factor: archive::EXPORT_WORK_FACTOR,
            init_pid: 1,
            ve: VeSite::node(),
            control: PathBuf::from(tandem_runtime::control::DEFAULT_SOCKET),
        }
    }

    fn open(&self) -> Result<Store, Refusal> {
        Store::open(&self.store).map_err(|e| Refusal::Failed(chain(&e)))
    }

    fn check(&self, bytes: &[u8], passphrase: Option<&str>) -> Result<ArchiveSummary, Refusal> {
        let store = self.open()?;
        let opts = ImportOptions {
            mode: ImportMode::DryRun,
            allow_other_cluster: false,
        };
        let mut report =
            import_archive(bytes, passphrase, &store, &opts).map_err(import_refusal)?;
        // The dry run warns that a staged configuration blocks a committing import. The
        // console stages, which replaces it (a failed activation leaves one behind):
        // that warning would only mislead here.
        let staged = store.dir().join("pending.toml").display().to_string();
        report.warnings.retain(|w| !w.contains(&staged));
        let c = &report.config;
        Ok(ArchiveSummary {
            cluster_name: c.cluster.name.to_string(),
            cluster_id: report.manifest.cluster_id.to_string(),
            created: report.manifest.created.clone(),
            product_version: report.manifest.product_version.clone(),
            encrypted: report.encrypted,
            nodes: NodeId::ALL
                .iter()
                .map(|n| {
                    let x = c.network.node(*n);
                    (n.to_string(), x.hostname.to_string(), x.address.to_string())
                })
                .collect(),
            warnings: report.warnings,
        })
    }

    fn activate(
        &self,
        bytes: &[u8],
        passphrase: Option<&str>,
        choice: DataChoice,
        confirm_name: &str,
    ) -> Result<(), Refusal> {
        if tandem_config::store::is_configured(&self.store) {
            return Err(Refusal::Configured);
        }
        if self.jobs.running() {
            return Err(Refusal::Running);
        }
        // Every check before the first write: a refused activation changes nothing.
        let contents = archive::read_archive(bytes, passphrase)
            .map_err(|e| Refusal::Archive(e.problems.iter().map(ToString::to_string).collect()))?;
        let name = contents.config.cluster.name.to_string();
        if choice == DataChoice::DestroyData && confirm_name.trim() != name {
            return Err(Refusal::NameMismatch { expected: name });
        }
        let store = self.open()?;
        let opts = ImportOptions {
            mode: ImportMode::Stage,
            allow_other_cluster: false,
        };
        import_archive(bytes, passphrase, &store, &opts).map_err(import_refusal)?;
        drop(store);
        self.jobs.start(choice).map_err(|e| match e {
            crate::job::StartError::Running => Refusal::Running,
            other => Refusal::Failed(chain(&other)),
        })
    }

    fn job(&self) -> JobView {
        let mut v = self.jobs.view();
        if v.state == JobState::Succeeded {
            v.new_url = Store::open(&self.store)
                .ok()
                .and_then(|s| s.current().ok().flatten())
                .map(|c| format!("https://{}/", c.network.node(self.node).address));
        }
        v
    }

    fn current(&self) -> Result<tandem_config::ApplianceConfig, Refusal> {
        self.open()?
            .current()
            .map_err(|e| Refusal::Failed(chain(&e)))?
            .ok_or(Refusal::NotConfigured)
    }

    fn verify_admin(&self, password: &str) -> bool {
        if password.len() > MAX_SECRET {
            return false;
        }
        // A password set on the node's console (R13.1) opens in both modes;
        // otherwise the configuration's management password, or on an
        // unconfigured node the factory password.
        match crate::admin::check(Some(&self.store), password) {
            crate::admin::AdminPassword::Reset => return true,
            crate::admin::AdminPassword::Wrong
                if crate::admin::read(&self.store).map_or(true, |h| h.is_some()) =>
            {
                return false;
            }
            _ => {}
        }
        match self.current() {
            Ok(c) => secrets::verify_password(password, &c.passwords.admin),
            Err(Refusal::NotConfigured) => {
                crate::admin::check(None, password) == crate::admin::AdminPassword::Factory
            }
            Err(_) => false,
        }
    }

    fn settings(&self) -> Result<Settings, Refusal> {
        let c = self.current()?;
        let n = &c.network;
        let mut ves = vec![(
            "1".to_owned(),
            c.ves.ve1.hostname.to_string(),
            c.ves.ve1.address.to_string(),
        )];
        if let Some(v) = &c.ves.ve101 {
            ves.push(("101".into(), v.hostname.to_string(), v.address.to_string()));
        }
        Ok(Settings {
            cluster_name: c.cluster.name.to_string(),
            revision: c.cluster.revision,
            nodes: NodeId::ALL
                .iter()
                .map(|id| {
                    let x = n.node(*id);
                    NodeSettings {
                        node: id.to_string(),
                        hostname: x.hostname.to_string(),
                        address: x.address.to_string(),
                        internal_address: x.internal_address.to_string(),
                    }
                })
                .collect(),
            netmask: n.netmask.to_string(),
            gateway: n.gateway.to_string(),
            ping_nodes: list(&n.ping_nodes),
            dns_search: list(&n.dns_search),
            dns_servers: list(&n.dns_servers),
            serial_heartbeat: c.heartbeat.serial.enabled,
            external_heartbeat: c.heartbeat.external.enabled,
            notify_addresses: list(&c.notification.addresses),
            relay_host: c.notification.relay_host.as_ref().map(ToString::to_string),
            copy_vendor: c.notification.copy_vendor,
            vendor_address: c
                .notification
                .vendor_address
                .as_ref()
                .map(ToString::to_string),
            ves,
        })
    }

    fn ves(&self) -> Result<Vec<VeView>, Refusal> {
        use tandem_runtime::ve::manager::{Layout, Ves};
        let cfg = self.current()?;
        self.data_area()?;
        let nics = tandem_runtime::activate::node_nics();
        let port = |i: usize, dflt: &str| nics.get(i).cloned().unwrap_or_else(|| dflt.to_owned());
        let mut layout = Layout::for_cluster(Some(&cfg), port(0, "eth0"), port(1, "eth1"));
        layout.conf_dir.clone_from(&self.ve.conf_dir);
        layout.private_dir.clone_from(&self.ve.private_dir);
        layout.template_dir.clone_from(&self.ve.template_dir);
        let ves = Ves { layout };
        let rows = ves.list().map_err(|e| Refusal::Failed(chain(&e)))?;
        Ok(rows
            .into_iter()
            .map(|r| VeView {
                id: r.id,
                nproc: r.nproc,
                status: r.status,
                ip: list(&r.ip),
                hostname: r.hostname,
            })
            .collect())
    }

    fn export(&self, passphrase: &str) -> Result<(String, Vec<u8>), Refusal> {
        if passphrase.chars().count() < MIN_EXPORT_PASSPHRASE || passphrase.len() > MAX_SECRET {
            return Err(Refusal::BadSecret);
        }
        let cfg = self.current()?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let bytes = archive::export(
            &cfg,
            &archive::ExportOptions {
                passphrase: Some(passphrase.to_owned()),
                created_unix: now,
                work_factor: self.work_factor,
            },
        )
        .map_err(|e| Refusal::Failed(chain(&e)))?;
        Ok((archive::archive_file_name(now, true), bytes))
    }
}

impl Local {
    /// Sets the root password in VE 101 through `tandem ve passwd 101` (the password
    /// on its standard input, never on a command line).
    fn ve101_password(&self, new: &str, confirm: &str) -> Reply {
        use crate::change::{FieldProblem, new_password};
        use std::io::Write as _;
        let refused = |p: FieldProblem| Reply::ChangeRefused(ChangeRefusal::Fields(vec![p]));
        if let Err(p) = new_password(new, confirm, ("ve_new", "ve_confirm")) {
            return refused(p);
        }
        if new.chars().any(char::is_control) {
            return refused(FieldProblem {
                field: "ve_new".to_owned(),
                message: "may not contain control characters".to_owned(),
            });
        }
        if let Err(r) = self.current().and_then(|_| self.data_area()) {
            return Reply::Refused(r);
        }
        if !self.ve_exists(101) {
            return Reply::ChangeRefused(ChangeRefusal::NotMade(
                "VE 101 is not installed (install it on the VEs page first)".to_owned(),
            ));
        }
        let child = std::process::Command::new(&self.ve.program)
            .args(["ve", "passwd", "101", "--user", "root"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                return Reply::Refused(Refusal::Failed(format!(
                    "cannot run {}: {e}",
                    self.ve.program.display()
                )));
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = writeln!(stdin, "{new}");
        }
        match child.wait_with_output() {
            Ok(o) if o.status.success() => Reply::Ve101PasswordSet,
            Ok(o) => Reply::ChangeRefused(ChangeRefusal::NotMade(
                String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            )),
            Err(e) => Reply::Refused(Refusal::Failed(format!("tandem ve passwd: {e}"))),
        }
    }

    /// Makes a settings change from the console's pages on both nodes.
    fn change_settings(
        &self,
        change: &crate::change::SettingsChange,
        revision: u64,
        this_node_only: bool,
    ) -> Reply {
        use tandem_runtime::confsync::{ApplyError, apply};
        let cfg = match self.current() {
            Ok(c) => c,
            Err(r) => return Reply::Refused(r),
        };
        if cfg.cluster.revision != revision {
            return Reply::ChangeRefused(ChangeRefusal::Stale {
                have: cfg.cluster.revision,
            });
        }
        let new = match crate::change::make(&cfg, change) {
            Ok(n) => n,
            Err(problems) => return Reply::ChangeRefused(ChangeRefusal::Fields(problems)),
        };
        let store = match self.open() {
            Ok(s) => s,
            Err(r) => return Reply::Refused(r),
        };
        match apply(
            &store,
            self.node,
            &new.to_toml(),
            this_node_only,
            &self.control,
        ) {
            Ok(a) => Reply::Changed(ChangeReport {
                revision: a.revision,
                needs_restart: a.changes.needs_restart(),
                changed: a.changes.sections.iter().map(|s| (*s).to_owned()).collect(),
                both_nodes: a.peer,
                notes: a.notes,
            }),
            Err(e @ ApplyError::Local { .. }) => {
                Reply::ChangeRefused(ChangeRefusal::OnlyPeer(e.to_string()))
            }
            Err(e) => Reply::ChangeRefused(ChangeRefusal::NotMade(e.to_string())),
        }
    }
}

impl Local {
    fn data_area(&self) -> Result<(), Refusal> {
        if tandem_runtime::storage::is_mountpoint(&self.ve.data_mount) {
            Ok(())
        } else {
            Err(Refusal::NoDataArea)
        }
    }

    fn power(&self, action: PowerAction) -> Result<(), Refusal> {
        self.current()?;
        // 0 and negative numbers would signal process groups: never.
        if self.init_pid <= 0 {
            return Err(Refusal::Failed(format!(
                "{} is not a process number for init",
                self.init_pid
            )));
        }
        let sig = action.signal();
        kill(Pid::from_raw(self.init_pid), sig).map_err(|e| {
            Refusal::Failed(format!(
                "sending {sig} to init (process {}) failed: {e}",
                self.init_pid
            ))
        })
    }

    /// The OS templates in the data area, `tandem-minimal` first. Only names that
    /// `tandem ve create --template` takes and that cannot name a path.
    fn templates(&self) -> Result<Vec<String>, Refusal> {
        use tandem_runtime::ve::manager::{MINIMAL_TEMPLATE, template_files};
        self.data_area()?;
        let mut names: Vec<String> = template_files(&self.ve.template_dir)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.sort();
        names.dedup();
        names.retain(|n| n != MINIMAL_TEMPLATE);
        names.insert(0, MINIMAL_TEMPLATE.to_owned());
        Ok(names)
    }

    fn ve_exists(&self, id: u32) -> bool {
        self.ve.conf_dir.join(format!("ve-{id}.conf")).exists()
            || self.ve.private_dir.join(id.to_string()).exists()
    }

    fn install_ve101(&self, template: &str) -> Result<(), Refusal> {
        // A second request while one runs: the running one is what to show.
        if self.install.running() {
            return Err(Refusal::InstallRunning);
        }
        let cfg = self.current()?;
        let Some(v) = &cfg.ves.ve101 else {
            return Err(Refusal::NoVe101);
        };
        let available = self.templates()?;
        if !available.iter().any(|n| n == template) {
            return Err(Refusal::BadTemplate {
                name: template.chars().take(100).collect(),
                available,
            });
        }
        if self.ve_exists(101) {
            return Err(Refusal::VeExists(101));
        }
        // Host name and address from the committed configuration only.
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
        let program = self.ve.program.clone();
        self.install
            .start(template, steps, move |args| {
                run_step(&program, args, INSTALL_STEP_LIMIT)
            })
            .map_err(|e| match e {
                InstallStartError::Running => Refusal::InstallRunning,
                other => Refusal::Failed(chain(&other)),
            })
    }

    /// The template cache backed up as `tandem ve backup-templates` does it.
    fn backup_templates(&self) -> Result<BackupView, Refusal> {
        self.current()?;
        let backup = TemplateBackup {
            data_mount: self.ve.data_mount.clone(),
            template_dir: self.ve.template_dir.clone(),
            backup_dir: self.ve.backup_dir.clone(),
        };
        let mut copies = Vec::new();
        let result = backup.run(&mut |c| copies.push(c.clone()));
        let failure = match result {
            Ok(_) => None,
            Err(BackupError::NotMounted { .. }) => return Err(Refusal::NoDataArea),
            Err(e) => Some(BackupFailure {
                message: chain(&e),
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
    let path = std::env::temp_dir().join(format!(
        "tandem-web-step-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
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

fn list<T: ToString>(v: &[T]) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn secret_ok(s: Option<&str>) -> bool {
    s.is_none_or(|s| s.len() <= MAX_SECRET)
}

impl Privileged for Local {
    fn call(&self, call: Call, payload: Vec<u8>) -> (Reply, Vec<u8>) {
        let reply = match call {
            Call::Configured => Reply::Configured(tandem_config::store::is_configured(&self.store)),
            Call::Check { passphrase } if secret_ok(passphrase.as_deref()) => {
                match self.check(&payload, passphrase.as_deref()) {
                    Ok(s) => Reply::Checked(s),
                    Err(r) => Reply::Refused(r),
                }
            }
            Call::Activate {
                passphrase,
                choice,
                confirm_name,
            } if secret_ok(passphrase.as_deref()) && confirm_name.len() <= 256 => {
                match self.activate(&payload, passphrase.as_deref(), choice, &confirm_name) {
                    Ok(()) => Reply::Started,
                    Err(r) => Reply::Refused(r),
                }
            }
            Call::Check { .. } | Call::Activate { .. } => Reply::Refused(Refusal::BadSecret),
            Call::Job => Reply::Job(self.job()),
            Call::VerifyAdmin { password } => Reply::Verified(self.verify_admin(&password)),
            Call::Settings => match self.settings() {
                Ok(s) => Reply::Settings(Box::new(s)),
                Err(r) => Reply::Refused(r),
            },
            Call::VeList => match self.ves() {
                Ok(v) => Reply::Ves(v),
                Err(r) => Reply::Refused(r),
            },
            Call::Export { passphrase } => match self.export(&passphrase) {
                Ok((file_name, bytes)) => return (Reply::Exported { file_name }, bytes),
                Err(r) => Reply::Refused(r),
            },
            Call::Power { action } => match self.power(action) {
                Ok(()) => Reply::PowerSignalled(action),
                Err(r) => Reply::Refused(r),
            },
            Call::VeTemplates => match self.current().and_then(|_| self.templates()) {
                Ok(t) => Reply::Templates(t),
                Err(r) => Reply::Refused(r),
            },
            Call::InstallVe101 { template } => match self.install_ve101(&template) {
                Ok(()) => Reply::InstallStarted,
                Err(r) => Reply::Refused(r),
            },
            Call::InstallJob => Reply::Install(self.install.view()),
            Call::BackupTemplates => match self.backup_templates() {
                Ok(v) => Reply::TemplatesBackedUp(v),
                Err(r) => Reply::Refused(r),
            },
            Call::ChangeSettings {
                change,
                revision,
                this_node_only,
            } => self.change_settings(&change, revision, this_node_only),
            Call::Ve101Password { new, confirm } => self.ve101_password(&new, &confirm),
        };
        (reply, Vec::new())
    }
}

fn import_refusal(e: tandem_config::store::ImportError) -> Refusal {
    let ps: Vec<String> = e.problems().iter().map(ToString::to_string).collect();
    if ps.is_empty() {
        Refusal::Failed(chain(&e))
    } else {
        Refusal::Archive(ps)
    }
}

/// An error with its sources, `a: b: c`.
pub use tandem_runtime::error_chain as chain;

/// Frame errors.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket.
    #[error("privileged channel")]
    Io(#[from] std::io::Error),
    /// A length beyond the bounds.
    #[error("privileged channel: frame part of {0} bytes is too long")]
    TooLong(usize),
    /// Not the JSON expected.
    #[error("privileged channel: malformed frame")]
    Json(#[from] serde_json::Error),
}

fn write_frame<T: Serialize>(
    w: &mut impl Write,
    msg: &T,
    payload: &[u8],
) -> Result<(), FrameError> {
    let json = serde_json::to_vec(msg)?;
    for part in [&json[..], payload] {
        let len = u32::try_from(part.len()).map_err(|_| FrameError::TooLong(part.len()))?;
        w.write_all(&len.to_be_bytes())?;
        w.write_all(part)?;
    }
    w.flush()?;
    Ok(())
}

fn read_part(r: &mut impl Read, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    if len > max {
        return Err(FrameError::TooLong(len));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

fn read_frame<T: for<'de> Deserialize<'de>>(
    r: &mut impl Read,
    max_json: usize,
    max_payload: usize,
) -> Result<(T, Vec<u8>), FrameError> {
    let json = read_part(r, max_json)?;
    let payload = read_part(r, max_payload)?;
    Ok((serde_json::from_slice(&json)?, payload))
}

/// Serves calls from `stream` with `exec` until the other side closes it (the root
/// parent's loop). A malformed or oversized frame ends the loop: the web process is
/// the only peer, and one that sends garbage is not trusted further.
///
/// # Errors
/// The first frame that could not be read or answered.
pub fn serve(mut stream: UnixStream, exec: &dyn Privileged) -> Result<(), FrameError> {
    loop {
        let (call, payload): (Call, Vec<u8>) =
            match read_frame(&mut stream, MAX_CALL_JSON, MAX_ARCHIVE_BYTES) {
                Ok(x) => x,
                Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
        let (reply, out) = exec.call(call, payload);
        write_frame(&mut stream, &reply, &out)?;
    }
}

/// The web process's end of the channel. After a frame fails either way, where the
/// next frame starts is unknown: the channel is then broken for good and every call
/// says so (the supervisor restarts the console).
#[derive(Debug)]
pub struct Remote(Mutex<Option<UnixStream>>);

impl Remote {
    /// Over `stream` (one end of the socket pair).
    #[must_use]
    pub fn new(stream: UnixStream) -> Remote {
        Remote(Mutex::new(Some(stream)))
    }
}

impl Privileged for Remote {
    fn call(&self, call: Call, payload: Vec<u8>) -> (Reply, Vec<u8>) {
        let lost = |e: &dyn std::error::Error| {
            (
                Reply::Refused(Refusal::Failed(format!(
                    "the privileged side of the console does not answer ({}); restart the node's web console",
                    chain(e)
                ))),
                Vec::new(),
            )
        };
        let Ok(mut guard) = self.0.lock() else {
            return lost(&std::io::Error::other("channel lock poisoned"));
        };
        let Some(s) = guard.as_mut() else {
            return lost(&std::io::Error::other("the channel broke earlier"));
        };
        // An export is an archive: the same bound as an upload.
        let result = write_frame(s, &call, &payload)
            .and_then(|()| read_frame(s, MAX_REPLY_JSON, MAX_ARCHIVE_BYTES));
        match result {
            Ok(x) => x,
            Err(e) => {
                *guard = None;
                lost(&e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn the_console_set_password_replaces_the_others_in_both_modes() {
        let dir = std::env::temp_dir().join(format!("tandem-verify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let local = Local::new(dir.clone(), NodeId::Node1, PathBuf::from("/bin/false"));
        // Unconfigured, nothing set: the factory password.
        assert!(local.verify_admin("relation"));
        assert!(!local.verify_admin("console-pass-1"));
        crate::admin::set(&dir, "console-pass-1", None).unwrap();
        assert!(local.verify_admin("console-pass-1"));
        assert!(
            !local.verify_admin("relation"),
            "the factory password is replaced"
        );
        // Configured: the console-set password still opens; a wrong one does not.
        let (cfg, pw) =
            tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default()).unwrap();
        let store = tandem_config::Store::open(&dir).unwrap();
        store.stage(&cfg).unwrap();
        store.commit().unwrap();
        assert!(local.verify_admin("console-pass-1"));
        assert!(
            !local.verify_admin(&pw.admin),
            "the file decides while it exists"
        );
        std::fs::remove_file(dir.join(crate::admin::FILE)).unwrap();
        assert!(local.verify_admin(&pw.admin));
        assert!(!local.verify_admin("relation"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    struct Echo;
    impl Privileged for Echo {
        fn call(&self, call: Call, payload: Vec<u8>) -> (Reply, Vec<u8>) {
            match call {
                Call::Export { passphrase } => (
                    Reply::Exported {
                        file_name: passphrase,
                    },
                    payload,
                ),
                _ => (Reply::Configured(true), Vec::new()),
            }
        }
    }

    #[test]
    fn calls_and_payloads_cross_the_channel() {
        let (a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || serve(b, &Echo));
        let r = Remote::new(a);
        let big = vec![7u8; MAX_ARCHIVE_BYTES];
        let (reply, out) = r.call(
            Call::Export {
                passphrase: "x".into(),
            },
            big.clone(),
        );
        assert!(matches!(reply, Reply::Exported { file_name } if file_name == "x"));
        assert_eq!(out, big);
        assert!(matches!(
            r.call(Call::Job, vec![]).0,
            Reply::Configured(true)
        ));
        drop(r);
        assert!(t.join().unwrap().is_ok());
    }

    /// Answers every call with the largest job view the job keeps.
    struct BigJob;
    impl Privileged for BigJob {
        fn call(&self, _: Call, _: Vec<u8>) -> (Reply, Vec<u8>) {
            let line: String = "\u{1}".repeat(400);
            let view = JobView {
                state: JobState::Running,
                choice: None,
                lines: vec![line; 400],
                new_url: None,
            };
            (Reply::Job(view), Vec::new())
        }
    }

    #[test]
    fn the_largest_job_output_crosses_the_channel() {
        let (a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || serve(b, &BigJob));
        let r = Remote::new(a);
        for _ in 0..2 {
            match r.call(Call::Job, vec![]).0 {
                Reply::Job(v) => assert_eq!(v.lines.len(), 400),
                other => panic!("{other:?}"),
            }
        }
        drop(r);
        assert!(t.join().unwrap().is_ok());
    }

    #[test]
    fn a_broken_channel_stays_broken() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            // Read the call, answer with a length beyond every bound.
            let _ = read_frame::<Call>(&mut b, MAX_CALL_JSON, MAX_ARCHIVE_BYTES);
            b.write_all(&u32::MAX.to_be_bytes()).unwrap();
            b
        });
        let r = Remote::new(a);
        assert!(matches!(
            r.call(Call::Job, vec![]).0,
            Reply::Refused(Refusal::Failed(_))
        ));
        let _b = t.join().unwrap();
        let (reply, _) = r.call(Call::Job, vec![]);
        assert!(matches!(reply, Reply::Refused(Refusal::Failed(m)) if m.contains("broke earlier")));
    }

    #[test]
    fn oversized_or_garbage_frames_end_the_channel() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || serve(b, &Echo));
        a.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(matches!(t.join().unwrap(), Err(FrameError::TooLong(_))));

        let (mut a, b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || serve(b, &Echo));
        write_frame(&mut a, &"not a call", &[]).unwrap();
        assert!(matches!(t.join().unwrap(), Err(FrameError::Json(_))));
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
        use tandem_runtime::ve::manager::template_name_ok;
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

    #[test]
    fn a_dead_privileged_side_is_reported_not_a_panic() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let (reply, _) = Remote::new(a).call(Call::Configured, vec![]);
        assert!(
            matches!(reply, Reply::Refused(Refusal::Failed(m)) if m.contains("does not answer"))
        );
    }
}
