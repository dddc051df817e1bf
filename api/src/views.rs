//! What the console's pages show: the checked archive, the configured values without
//! secrets, the VEs, the background jobs (activation, VE 101) with their typed
//! progress, the template backup, the outcome of a settings change.

use serde::{Deserialize, Serialize};

use crate::{DataChoice, NodeId};

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
    /// Time servers (NTP), each a name or address with an optional `:port`; none: the
    /// clock is not synchronised.
    #[serde(default)]
    pub time_servers: Vec<String>,
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
    /// What clusterd's watch says (`running`, `restarting in N s`, `given up after N
    /// crashes`, `stopped`); empty for a VE it has not started.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub health: String,
}

/// Where a background job is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// None was started since clusterd started.
    Idle,
    /// It runs.
    Running,
    /// Every step worked.
    Succeeded,
    /// A step failed: why, with its causes.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// One step of an activation, as it happens (R3.3–R3.5). `Display` gives the line the
/// `tandem activate` command prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationEvent {
    /// Activation of `cluster` began on this node.
    Started {
        /// Cluster name.
        cluster: String,
        /// This node's configured host name.
        hostname: String,
        /// This node.
        node: NodeId,
    },
    /// The crossover port has its address.
    Crossover {
        /// The interface.
        nic: String,
        /// `address/prefix`.
        address: String,
    },
    /// Replication is set up; the node waits for the other one on the crossover link.
    WaitingForPeer {
        /// The DRBD resource.
        resource: String,
        /// The backing device.
        backing: String,
        /// The other node's host name.
        peer: String,
        /// Its crossover address and replication port.
        endpoint: String,
    },
    /// The other node is still not connected (R3.5).
    PeerMissing,
    /// Destroy: the other node is not connected; this node goes on alone.
    GoingOnAlone {
        /// The other node's host name.
        peer: String,
    },
    /// Destroy: the filesystem of the data area is being made.
    CreatingFilesystem,
    /// Destroy: the service VE 1 was created.
    ServiceVe {
        /// Its host name.
        hostname: String,
        /// Its address.
        address: String,
    },
    /// Destroy: the data area is ready.
    DataAreaCreated,
    /// Fetch: the full copy began.
    CopyStarted,
    /// Fetch: the copy's progress (replication's one-line summary).
    CopyProgress {
        /// Connection, roles, disks, resync progress.
        replication: String,
    },
    /// Fetch: the copy is complete.
    CopyComplete,
    /// The configuration is committed: activation is done.
    Committed,
}

impl std::fmt::Display for ActivationEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActivationEvent::Started {
                cluster,
                hostname,
                node,
            } => write!(f, "activating {cluster} as {hostname} ({node})"),
            ActivationEvent::Crossover { nic, address } => write!(f, "crossover {nic}: {address}"),
            ActivationEvent::WaitingForPeer {
                resource,
                backing,
                peer,
                endpoint,
            } => write!(
                f,
                "replication {resource} on {backing} set up; waiting for {peer} on the crossover link ({endpoint})"
            ),
            ActivationEvent::PeerMissing => f.write_str(
                "the other node is not connected yet: continue activation on the other node or check the crossover cable",
            ),
            ActivationEvent::GoingOnAlone { peer } => write!(
                f,
                "{peer} is not connected: going on alone; it takes a full copy when it is activated with \"fetch data from the other node\""
            ),
            ActivationEvent::CreatingFilesystem => {
                f.write_str("creating the filesystem of the data area")
            }
            ActivationEvent::ServiceVe { hostname, address } => {
                write!(f, "service VE 1 ({hostname}, {address}) created")
            }
            ActivationEvent::DataAreaCreated => f.write_str("data area created"),
            ActivationEvent::CopyStarted => {
                f.write_str("taking a full copy of the data area from the other node")
            }
            ActivationEvent::CopyProgress { replication } => {
                write!(f, "replication: {replication}")
            }
            ActivationEvent::CopyComplete => f.write_str("the copy of the data area is complete"),
            ActivationEvent::Committed => f.write_str("configuration activated"),
        }
    }
}

/// The activation as its progress page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationView {
    /// Where it is.
    pub state: JobState,
    /// The choice it runs with.
    pub choice: Option<DataChoice>,
    /// What happened so far, in order (bounded: the first ones and the latest).
    pub events: Vec<ActivationEvent>,
    /// After success: the node's new address (`https://<configured address>/`).
    pub new_url: Option<String>,
}

impl ActivationView {
    /// Whether the other node was missing at some point (R3.5).
    #[must_use]
    pub fn peer_missing(&self) -> bool {
        self.events.contains(&ActivationEvent::PeerMissing)
    }
}

/// One step of a VE installation.
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

/// Create, set ONBOOT, start.
pub const INSTALL_STEPS: usize = 3;

impl InstallReport {
    /// Whether every step ran and worked.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.steps.len() == INSTALL_STEPS && self.steps.iter().all(|s| s.ok)
    }
}

/// Where the installation of VE 101 is, as its progress page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallView {
    /// Idle, running, succeeded (every step worked) or failed (a step failed).
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

/// What happened to one template in a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyOutcome {
    /// There was no backup of it: copied.
    Copied,
    /// Its backup differed: replaced.
    Replaced,
    /// Its backup is identical (size and SHA-256): left alone.
    Unchanged,
}

impl CopyOutcome {
    /// `copied`, `replaced`, `unchanged`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CopyOutcome::Copied => "copied",
            CopyOutcome::Replaced => "replaced",
            CopyOutcome::Unchanged => "unchanged",
        }
    }
}

/// One template file and what the backup did with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateCopy {
    /// File name (`debian-12.tar.gz`).
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Copied, replaced or unchanged.
    pub outcome: CopyOutcome,
}

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
    /// Every session was ended (the management password changed): log in again.
    pub sessions_ended: bool,
    /// Anything else the operator should know.
    pub notes: Vec<String>,
}

/// A problem with one form field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldProblem {
    /// The form field (`node1_address`, …), or the configuration path when no field
    /// of the form matches.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldProblem {
    /// A problem with `field`.
    #[must_use]
    pub fn new(field: &str, message: impl Into<String>) -> FieldProblem {
        FieldProblem {
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

/// Why a settings change was not made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeRefusal {
    /// Problems with the form's fields; nothing changed.
    Fields(Vec<FieldProblem>),
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

/// What a VE job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VeJobKind {
    /// A backup of a VE (and its copy off the pair, when a target is configured).
    Backup,
    /// A restore from a backup file.
    Restore,
}

/// The VE backup or restore running in clusterd, or the last one (R12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VeJobView {
    /// Idle, running, succeeded or failed (why).
    pub state: JobState,
    /// What it does.
    pub kind: Option<VeJobKind>,
    /// The VE (a backup's; a restore's target once the manifest was read).
    pub ve: Option<u32>,
    /// What it does now (`reading`, `copying off`, …).
    pub phase: String,
    /// Bytes of VE data read or written so far.
    pub bytes_done: u64,
    /// Bytes of VE data in all (an estimate during a backup).
    pub bytes_total: u64,
    /// Milliseconds since it started.
    pub elapsed_ms: u64,
    /// What a finished job did.
    pub report: Option<VeJobReport>,
}

/// What a finished VE backup or restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VeJobReport {
    /// The backup file (made or read).
    pub file: String,
    /// Its size.
    pub file_bytes: u64,
    /// Regular files in it.
    pub files: u64,
    /// Their bytes.
    pub data_bytes: u64,
    /// How long the VE was frozen, in microseconds (a backup of a running VE).
    pub freeze_us: Option<u64>,
    /// Where the backup was copied off to.
    pub copied_to: Option<String>,
    /// Why the copy-off failed (the backup itself is made).
    pub copy_error: Option<String>,
    /// Older backups of the VE deleted on the target (its `keep`).
    pub deleted_on_target: Vec<String>,
    /// Entries of the VE not backed up (sockets, device nodes, …).
    pub skipped: Vec<String>,
    /// The VE restored to.
    pub restored_to: Option<u32>,
    /// The restored VE's addresses were removed (restored to a new ID).
    pub addresses_removed: bool,
}

/// This node's e-mail outbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxView {
    /// Whether the configuration names anybody to mail.
    pub recipients: bool,
    /// Where mail goes: the relay (`host:port`), or `None` for the recipients' MX.
    pub relay: Option<String>,
    /// Messages waiting.
    pub queued: u64,
    /// When the oldest waiting message was queued (seconds since 1970, UTC).
    pub oldest_queued: Option<u64>,
    /// The error of the latest failed attempt among the waiting messages.
    pub last_error: Option<String>,
}

/// The remote-support tunnel of this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportView {
    /// The support server (`user@host:port`), when the configuration names one.
    pub server: Option<String>,
    /// Why the tunnel cannot be switched on, when it cannot (no `[support]` section,
    /// no host key).
    pub unavailable: Option<String>,
    /// Whether it is on.
    pub on: bool,
    /// Who switched it on (the console's user and address, or `root` on the node).
    pub by: Option<String>,
    /// Since when (seconds since 1970, UTC).
    pub since: Option<u64>,
    /// When it closes by itself (seconds since 1970, UTC).
    pub until: Option<u64>,
    /// The port on the support server that leads to this node's SSH server, while the
    /// connection is up.
    pub port: Option<u16>,
    /// While on and not connected: when the next attempt is made (seconds since
    /// 1970, UTC); `None` while an attempt runs.
    pub retry_at: Option<u64>,
    /// What ended the last connection or attempt.
    pub last_error: Option<String>,
    /// The public half of the node's support key (for the support server's
    /// `authorized_keys`).
    pub client_key: Option<String>,
}

/// The VE backups on the data area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VeBackupsView {
    /// Where they are.
    pub dir: String,
    /// Oldest first.
    pub files: Vec<VeBackupFile>,
    /// The copy-off target (`user@host:path`), when one is configured.
    pub target: Option<String>,
    /// The public key the node logs in to the target with (for its `authorized_keys`).
    pub client_key: String,
}

/// One VE backup file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VeBackupFile {
    /// File name.
    pub name: String,
    /// The VE.
    pub ve: u32,
    /// When it was made (UTC, `20261206T234000Z`).
    pub time: String,
    /// Size.
    pub bytes: u64,
    /// Where it was copied off to; `None`: only on the pair's own disk.
    pub copied_to: Option<String>,
}

/// One OS template of the data area ([`crate::Reply::Templates`]).
///
/// Read from the older form of the reply too, a bare name (`"debian-12"`): the other
/// fields then have their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "TemplateWire")]
pub struct TemplateView {
    /// The name `tandem ve create --template` takes.
    pub name: String,
    /// Its file in the template directory (`debian-12.tar.xz`); `None` for the
    /// built-in template.
    pub file: Option<String>,
    /// The file's size.
    pub bytes: u64,
    /// When the file was last written (seconds since 1970, UTC).
    pub modified: Option<u64>,
    /// The VEs whose file names it (`OSTEMPLATE`), ascending.
    pub used_by: Vec<u32>,
    /// The built-in template (made from the node's busybox, no file).
    pub built_in: bool,
}

/// [`TemplateView`] as it may come on the wire: a bare name, or every field.
#[derive(Deserialize)]
#[serde(untagged)]
enum TemplateWire {
    Name(String),
    Full(TemplateFields),
}

#[derive(Deserialize)]
struct TemplateFields {
    name: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    modified: Option<u64>,
    #[serde(default)]
    used_by: Vec<u32>,
    #[serde(default)]
    built_in: bool,
}

impl From<TemplateWire> for TemplateView {
    fn from(w: TemplateWire) -> TemplateView {
        match w {
            TemplateWire::Name(name) => TemplateView {
                built_in: name == crate::MINIMAL_TEMPLATE,
                name,
                file: None,
                bytes: 0,
                modified: None,
                used_by: Vec::new(),
            },
            TemplateWire::Full(f) => TemplateView {
                name: f.name,
                file: f.file,
                bytes: f.bytes,
                modified: f.modified,
                used_by: f.used_by,
                built_in: f.built_in,
            },
        }
    }
}

/// This node's system slots and updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateView {
    /// The running system's version.
    pub version: String,
    /// The boot name of the slot that runs (`A`/`B`), when the update service tells.
    pub booted: Option<String>,
    /// The system slots.
    pub slots: Vec<SlotView>,
    /// Why the slots are unknown (the update service did not answer).
    pub slots_error: Option<String>,
    /// The install running, or the last one since clusterd started.
    pub job: UpdateJobView,
    /// This start tries a new system: what it waits for.
    pub trial: Option<String>,
    /// The history, oldest first.
    pub history: Vec<UpdateHistoryEntry>,
    /// The version written to the other slot whose first start is pending (the
    /// trial not decided yet).
    #[serde(default)]
    pub pending: Option<String>,
    /// The rolling update of the pair this node leads: where it stands.
    #[serde(default)]
    pub rolling: Option<String>,
    /// The update server's last answer (`None`: no server configured).
    #[serde(default)]
    pub server: Option<UpdateServerView>,
}

/// What the configured update server offered at its last check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateServerView {
    /// The server's URL.
    pub url: String,
    /// When it was last asked (seconds since 1970; `None`: not yet).
    pub checked_at: Option<u64>,
    /// The newest version it offers that this node may install (`None`: nothing
    /// newer than the running system).
    pub offer: Option<UpdateOffer>,
    /// Why the last check failed.
    pub error: Option<String>,
    /// The download of the offered bundle onto this node, running or the last one
    /// (`file`: where it is kept once done).
    #[serde(default)]
    pub download: Option<UpdateJobView>,
}

/// A bundle the update server offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateOffer {
    /// Its version.
    pub version: String,
    /// Its file name on the server.
    pub file: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of the file, hexadecimal (as the server's list says).
    #[serde(default)]
    pub sha256: String,
    /// What changed, in the vendor's words.
    #[serde(default)]
    pub changes: String,
}

/// One system slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotView {
    /// Boot name (`A`/`B`).
    pub bootname: String,
    /// Its partition.
    pub device: String,
    /// `booted`, `inactive`, `active`.
    pub state: String,
    /// `good` or `bad` for the boot loader.
    pub boot_status: String,
    /// The version installed there by an update (`None`: written by the installer,
    /// or never).
    pub version: Option<String>,
}

/// An update install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateJobView {
    /// Where it is.
    pub state: JobState,
    /// The bundle.
    pub file: Option<String>,
    /// The version being installed.
    pub to_version: Option<String>,
    /// Per cent done (RAUC's count).
    pub percent: u8,
    /// The step.
    pub step: String,
}

/// One line of the update history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateHistoryEntry {
    /// When (seconds since the epoch).
    pub at: u64,
    /// What happened.
    pub text: String,
    /// Whether it went well.
    pub ok: bool,
}
