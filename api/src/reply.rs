//! What clusterd answers.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::status::{EventJson, FactsJson, HwJson, StatusJson};
use crate::views::{
    ActivationView, ArchiveSummary, BackupView, ChangeRefusal, ChangeReport, InstallView,
    OutboxView, Settings, SupportView, TemplateView, UpdateView, VeBackupsView, VeJobView, VeView,
};
use crate::{PowerAction, Token};

/// The answer to a [`crate::Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reply {
    /// Done; nothing to report (also ends the backlog of `events` without `follow`).
    Done,
    /// The cluster's state.
    Status(Box<StatusJson>),
    /// The latest hardware readings.
    Hw(Box<HwJson>),
    /// One event (`events`).
    Event(EventJson),
    /// Events were dropped because the reader was too slow (`events` with `follow`).
    EventsDropped(u64),
    /// This node's facts and the other node's.
    Facts(Box<FactsJson>),
    /// How clusterd runs.
    Mode(Mode),
    /// A session was opened: send its token with every request that needs one.
    LoggedIn(SessionInfo),
    /// The login was refused.
    LoginRefused(LoginRefusal),
    /// The session of the request's token (its token field is the request's).
    Session(SessionInfo),
    /// The login throttle's state (`None`: no lockout).
    Lockout(Option<Lockout>),
    /// The archive in the payload is valid; it is kept for activation.
    Checked(ArchiveSummary),
    /// The activation started.
    ActivationStarted,
    /// The activation's progress.
    Activation(ActivationView),
    /// The committed configuration without secrets.
    Settings(Box<Settings>),
    /// This node's VEs.
    Ves(Vec<VeView>),
    /// The archive is in the payload, with this file name.
    Exported {
        /// File name for the download.
        file_name: String,
    },
    /// The node was told to restart or power off.
    PowerSignalled(PowerAction),
    /// The OS templates of the data area, the built-in one first, each with its file,
    /// size, time and the VEs that use it.
    Templates(Vec<TemplateView>),
    /// The installation of VE 101 started in the background.
    InstallStarted,
    /// The installation of VE 101.
    Install(InstallView),
    /// The backup of the template cache ran.
    TemplatesBackedUp(BackupView),
    /// VE 101's root password is set.
    Ve101PasswordSet,
    /// The password inside the VE is set.
    VePasswordSet,
    /// The VE backup or restore started in the background.
    VeJobStarted,
    /// The VE backup or restore running, or the last one.
    VeJob(Box<VeJobView>),
    /// The VE backups on the data area.
    VeBackups(Box<VeBackupsView>),
    /// The backup files deleted from the data area.
    VeBackupsPruned(Vec<String>),
    /// The OS template was added to the data area.
    TemplateAdded(TemplateView),
    /// This node's e-mail outbox.
    Outbox(OutboxView),
    /// The test message is in the outbox (it goes out with the next delivery pass).
    MailTestQueued,
    /// The system slots and updates of this node.
    Update(Box<UpdateView>),
    /// The update started in the background (install, then restart).
    UpdateStarted,
    /// The remote-support tunnel of this node.
    Support(SupportView),
    /// The settings change is in effect.
    Changed(ChangeReport),
    /// The settings change was not made.
    ChangeRefused(ChangeRefusal),
    /// Refused; nothing was changed.
    Refused(Refusal),
}

impl Reply {
    /// Whether the request was done (anything but a refusal).
    #[must_use]
    pub fn is_ok(&self) -> bool {
        !matches!(
            self,
            Reply::Refused(_) | Reply::LoginRefused(_) | Reply::ChangeRefused(_)
        )
    }

    /// The refusal, when the request was refused.
    #[must_use]
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Reply::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// How clusterd runs on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mode {
    /// A configuration is committed.
    pub configured: bool,
    /// clusterd serves only the recovery requests (the node is not a cluster member).
    pub recovery: bool,
}

/// Which sessions: opened with the factory (or console) password on an unconfigured
/// node, or with the management password on a configured one. A session never crosses
/// from one kind to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionKind {
    /// Recovery mode: upload and activate an archive.
    Recovery,
    /// A configured node: the management pages.
    Cluster,
}

/// An open session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The token (at login; a session check repeats the request's).
    pub token: Token,
    /// The token every form of this session must carry (CSRF).
    pub csrf: Token,
    /// Which pages it opens.
    pub kind: SessionKind,
    /// Where its login came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<std::net::IpAddr>,
    /// Seconds until it ends without use.
    pub idle_left_s: u64,
    /// Seconds until it ends whatever happens (its absolute lifetime).
    pub lifetime_left_s: u64,
}

/// Why a login was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginRefusal {
    /// Wrong user name or password; failed logins from this address so far.
    Wrong {
        /// Failed logins from this address (this one included).
        failures: u32,
    },
    /// Too early after the last failed login: not checked, and counted as failed.
    Wait {
        /// Seconds until the next attempt is checked.
        seconds: u64,
        /// Failed logins from this address (this one included).
        failures: u32,
    },
    /// Logins are locked.
    Locked(Lockout),
}

/// A lockout of the web console's login.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockout {
    /// From one address or from every address.
    pub scope: LockoutScope,
    /// Failed logins that caused it.
    pub failures: u32,
    /// Seconds until it ends by itself (the node's console lifts it sooner).
    pub seconds_left: u64,
}

/// Whom a lockout shuts out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockoutScope {
    /// Logins from this address.
    Address(IpAddr),
    /// Logins from every address (too many failures in all).
    Everyone,
}

/// Why a request was refused. Each variant is shown to the operator in their language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// The request line was not a request of this version.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Another API version.
    #[error("unsupported api version {got}, this daemon speaks {speaks}")]
    Version {
        /// The request's version.
        got: u32,
        /// This daemon's.
        speaks: u32,
    },
    /// The request line is longer than the limit.
    #[error("request longer than {0} bytes")]
    TooLong(usize),
    /// The request needs a session and has none, or its session ended (idle, lifetime,
    /// logout, password change).
    #[error("no valid session: log in again")]
    NoSession,
    /// Only root on the node may ask this.
    #[error("only root on the node may ask for this")]
    RootOnly,
    /// The session's kind does not open this request.
    #[error("this session does not open this request")]
    WrongSession,
    /// clusterd runs in recovery mode (the node is not a cluster member).
    #[error("this node is not a cluster member (recovery mode): {0} is not available")]
    RecoveryMode(String),
    /// The cluster loop does not answer (clusterd is stopping, or stuck).
    #[error("the cluster loop does not answer: {0}")]
    ClusterDown(String),
    /// clusterd runs as a cluster member: recovery requests are closed.
    #[error("this node is configured: recovery actions are closed")]
    Configured,
    /// The node is not configured: cluster actions are not available.
    #[error("this node is not configured")]
    NotConfigured,
    /// An activation runs already.
    #[error("an activation is already running")]
    Running,
    /// No archive was checked in this session.
    #[error("no checked archive: upload and check the configuration archive first")]
    NoArchive,
    /// The typed cluster name differs from the archive's.
    #[error("the cluster name typed differs from the archive's ({expected})")]
    NameMismatch {
        /// The archive's cluster name (not secret: it is shown on the upload page).
        expected: String,
    },
    /// The archive was refused; every problem.
    #[error("the archive was refused: {}", .0.join("; "))]
    Archive(Vec<String>),
    /// The data area is not mounted on this node (it is the passive one).
    #[error("the data area is not mounted on this node")]
    NoDataArea,
    /// The configuration has no VE 101 (`ves.ve101`).
    #[error("the configuration has no VE 101")]
    NoVe101,
    /// The template asked for is not one of those offered.
    #[error("there is no OS template {name:?} (available: {})", .available.join(", "))]
    BadTemplate {
        /// The name asked for.
        name: String,
        /// The names offered.
        available: Vec<String>,
    },
    /// The VE exists already.
    #[error("VE {0} exists already")]
    VeExists(u32),
    /// An installation of VE 101 runs already.
    #[error("an installation of VE 101 is already running")]
    InstallRunning,
    /// A passphrase or password that is too long or too short.
    #[error(
        "the passphrase must have {} to {} characters",
        crate::MIN_EXPORT_PASSPHRASE,
        crate::MAX_SECRET
    )]
    BadSecret,
    /// The cluster refused a switchover (the reason from the core).
    #[error("switchover refused: {0}")]
    Switchover(String),
    /// The configuration archive can be exported only while both nodes run normally.
    #[error("the configuration archive can be downloaded only while both nodes run normally")]
    PeerNotNormal,
    /// The request's payload is missing, too large or not what the request needs.
    #[error("payload: {0}")]
    Payload(String),
    /// A local step failed (the message has its causes).
    #[error("{0}")]
    Failed(String),
}
