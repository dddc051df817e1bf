//! What a client may ask.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Secret;

/// A request to clusterd. On the wire it is flattened into the request line
/// (`{"version":2,"request":"status"}`); see [`crate::wire`].
///
/// The groups below say who may ask; the privileged side enforces it:
///
/// - *anyone who may connect* (root and the web console's group): the cluster's state;
/// - *a session* (the token in the request line, or a root client): everything that
///   changes the node or reveals the configuration;
/// - *root only* (the node's own console and CLI): lifting the login lockout, setting
///   the console password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// The cluster's state ([`crate::Reply::Status`]).
    Status,
    /// The latest hardware readings ([`crate::Reply::Hw`]).
    Hw,
    /// The recent events, then (with `follow`) every new one as it happens.
    Events {
        /// Keep the connection and stream new events.
        #[serde(default)]
        follow: bool,
    },
    /// This node's facts and the other node's ([`crate::Reply::Facts`]).
    Facts,
    /// Whether the node is configured and whether clusterd runs in recovery mode
    /// ([`crate::Reply::Mode`]).
    Mode,
    /// Log in as `user` with `password`, for a client at `source`. Answered by
    /// [`crate::Reply::LoggedIn`] or [`crate::Reply::LoginRefused`].
    Login {
        /// The user name typed.
        user: String,
        /// The password typed.
        password: Secret,
        /// The address the login came from (the login throttle counts per address).
        source: IpAddr,
    },
    /// The session of the request's token ([`crate::Reply::Session`]); refreshes its
    /// idle time.
    Session,
    /// Ends the session of the request's token.
    Logout,
    /// The login lockout in force for `source` (or, without it, the worst one)
    /// ([`crate::Reply::Lockout`]).
    LoginLockout {
        /// The address a login would come from.
        #[serde(default)]
        source: Option<IpAddr>,
    },
    /// Root only: lift the login lockout and forget every failed login.
    LiftLockout,
    /// Root only: set the console password of `admin` (R13.1).
    SetConsolePassword {
        /// The new password.
        password: Secret,
    },

    /// Move the services to the other node (R9.8).
    Switchover,
    /// Put the committed configuration in effect (after it changed on disk).
    ReloadConfig,
    /// Check the archive in the payload (recovery mode): decrypted once and kept for
    /// [`Request::Activate`] of this session.
    CheckArchive {
        /// Its passphrase.
        passphrase: Option<Secret>,
    },
    /// The archive this session checked last ([`crate::Reply::Checked`]), if it still
    /// holds one.
    CheckedArchive,
    /// Stage the archive this session checked last and activate it (recovery mode).
    Activate {
        /// What happens to the replicated data.
        choice: DataChoice,
        /// The cluster name as typed (required for [`DataChoice::DestroyData`]).
        confirm_name: String,
    },
    /// The activation's progress ([`crate::Reply::Activation`]).
    Activation,
    /// The committed configuration without secrets ([`crate::Reply::Settings`]).
    Settings,
    /// This node's VEs, when the data area is mounted here.
    VeList,
    /// The committed configuration as an archive encrypted with `passphrase`, in the
    /// reply's payload.
    Export {
        /// The passphrase.
        passphrase: Secret,
    },
    /// Restart or power off this node.
    Power {
        /// Which.
        action: PowerAction,
    },
    /// The OS templates of the data area, which VE 101 can be installed from
    /// ([`crate::Reply::Templates`]).
    VeTemplates,
    /// Install VE 101 from `template` in the background, with the configured host name
    /// and address.
    InstallVe101 {
        /// One of [`Request::VeTemplates`]' names.
        template: String,
    },
    /// The installation of VE 101 ([`crate::Reply::Install`]).
    Ve101Install,
    /// Set the root password inside VE 101.
    Ve101Password {
        /// The new password.
        new: Secret,
        /// Typed again.
        confirm: Secret,
    },
    /// Set the password of `user` inside VE `id` on the active node.
    VePassword {
        /// The VE.
        id: u32,
        /// The user inside the VE.
        user: String,
        /// The new password.
        new: Secret,
        /// Typed again.
        confirm: Secret,
    },
    /// Change settings on both nodes (or on this one only, the other being down),
    /// starting from configuration `revision` (the one the page showed).
    ChangeSettings {
        /// The change.
        change: Box<SettingsChange>,
        /// The revision the page showed.
        revision: u64,
        /// The other node is down: change this node only.
        this_node_only: bool,
    },
    /// Make the configuration in the payload (TOML) the cluster's, on both nodes
    /// (or on this one only).
    ApplyConfig {
        /// The other node is down: change this node only.
        this_node_only: bool,
    },
    /// Back up the OS templates of the data area into its `backups/templatecache`.
    BackupTemplates,
    /// Back up VE `id` into the data area's `backups/ve` (its cgroup frozen while it is
    /// read), then copy it off the pair when a target is configured; runs in the
    /// background ([`Request::VeBackupJob`]).
    VeBackup {
        /// The VE.
        id: u32,
    },
    /// Restore VE backup `file` (a name in `backups/ve`, or a path) to VE `to` (default:
    /// the VE it was made of, which must be stopped); runs in the background
    /// ([`Request::VeBackupJob`]).
    VeRestore {
        /// The backup file.
        file: String,
        /// A new VE ID.
        #[serde(default)]
        to: Option<u32>,
    },
    /// Start VE `id` on the active node; clusterd watches it from then on and
    /// restarts it when it crashes (R8.2).
    VeStart {
        /// The VE.
        id: u32,
    },
    /// Stop VE `id` (SIGTERM to its first process, SIGKILL after `grace_secs`,
    /// default 10): it is not restarted.
    VeStop {
        /// The VE.
        id: u32,
        /// Seconds to wait after SIGTERM.
        #[serde(default)]
        grace_secs: Option<u64>,
    },
    /// Stop and start VE `id`.
    VeRestart {
        /// The VE.
        id: u32,
    },
    /// Set parameters of VE `id`'s file (`KEY`, `VALUE` pairs as `tandem ve set` and
    /// `vzctl set --save` take them); the whole file is checked before it is
    /// replaced, and a running VE takes the change when it starts again.
    VeSet {
        /// The VE.
        id: u32,
        /// The parameters.
        changes: Vec<(String, String)>,
    },
    /// The VE backup or restore running, or the last one ([`crate::Reply::VeJob`]).
    VeBackupJob,
    /// Delete VE `id`'s backups on the data area but the newest `keep`
    /// ([`crate::Reply::VeBackupsPruned`]); the copies off the pair are left alone.
    VeBackupsPrune {
        /// The VE.
        id: u32,
        /// How many stay (at least 1).
        keep: u32,
    },
    /// The VE backups on the data area ([`crate::Reply::VeBackups`]).
    VeBackups,
    /// Root only: add the rootfs tarball `file` (a path on this node; `.tar`,
    /// `.tar.gz`, `.tar.xz` or `.tar.zst`) to the data area's OS templates as `name`
    /// (default: the file's name without its suffix), checked whole before anything
    /// is written ([`crate::Reply::TemplateAdded`]). On the active node.
    TemplateAdd {
        /// The tarball.
        file: String,
        /// The template's name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Root only: fetch the tarball at `url` (`http://` or `https://`) onto the data
    /// area and add it as OS template `name` (default: the URL's file name without
    /// its suffix) as [`Request::TemplateAdd`] does ([`crate::Reply::TemplateAdded`]);
    /// the fetched file is not kept. On the active node.
    TemplateFetch {
        /// Where the tarball is.
        url: String,
        /// The template's name.
        #[serde(default)]
        name: Option<String>,
    },
    /// Delete OS template `name` from the data area; refused while a VE's file names
    /// it, and for the built-in template.
    TemplateDelete {
        /// The template.
        name: String,
    },
    /// This node's e-mail outbox: what waits, since when, the last error
    /// ([`crate::Reply::Outbox`]).
    MailOutbox,
    /// Queue a test message to the configured recipients
    /// ([`crate::Reply::MailTestQueued`]).
    MailTest,
    /// This node's system slots, the update running or the last one, the trial of a
    /// new system and the update history ([`crate::Reply::Update`]).
    UpdateStatus,
    /// Ask the configured update server now what it offers that is newer than the
    /// running system ([`crate::Reply::Update`], its `server` part); refused when no
    /// server is configured. clusterd also asks by itself once a day.
    UpdateCheck,
    /// Download the bundle the update server offered at its last check onto this
    /// node and have it checked (signature, system, version), in the background
    /// ([`crate::Reply::UpdateStarted`]; [`Request::UpdateStatus`]'s
    /// `server.download` follows it and names the file to install).
    UpdateDownload,
    /// On the node that runs the services: the rolling update of the pair
    /// ([`Request::UpdateRolling`]) with the bundle [`Request::UpdateDownload`]
    /// fetched and checked (the console's one click; no path travels).
    UpdateRollingDownloaded,
    /// Root only: install the update bundle `file` (a path on this node) into the
    /// inactive slot and restart into it; runs in the background
    /// ([`Request::UpdateStatus`]). Refused on the node that runs the services.
    UpdateInstall {
        /// The bundle.
        file: String,
        /// Accept a bundle older than the running system.
        #[serde(default)]
        force_downgrade: bool,
    },
    /// Go back to the system in the other slot (it must have run well before) and
    /// restart into it. Refused on the node that runs the services.
    UpdateRollback,
    /// Root only, on the node that runs the services: update both nodes from the
    /// bundle `file` (a path on this node), one after the other — the other node
    /// first, then the services move to it, then this node; the services end on the
    /// other node. Runs in the background
    /// ([`Request::UpdateStatus`]'s `rolling`); the bundle is checked here first.
    UpdateRolling {
        /// The bundle.
        file: String,
        /// Move the services back to this node at the end (a second switchover).
        #[serde(default)]
        switch_back: bool,
        /// Accept a bundle older than the running system.
        #[serde(default)]
        force_downgrade: bool,
    },
    /// Switch the remote-support tunnel of this node on for `hours` (default and
    /// limit: `support.max-hours`): an outbound SSH connection to the configured
    /// support server with a reverse forward to this node's SSH server. Switched on
    /// again, the time starts anew ([`crate::Reply::Support`]).
    SupportOn {
        /// For how long.
        #[serde(default)]
        hours: Option<u32>,
    },
    /// Switch the remote-support tunnel of this node off ([`crate::Reply::Support`]).
    SupportOff,
    /// The remote-support tunnel of this node ([`crate::Reply::Support`]).
    SupportStatus,
    /// The operator checked that the silent peer is down (its fence failed) and
    /// confirms it: this node then takes over. `node` is the peer's name as typed.
    FenceConfirm {
        /// The silent peer's name, typed (`node1` or `node2`).
        node: String,
    },
    /// Root only (DRBD's split-brain handler): DRBD found a split brain of the
    /// replicated data. Nothing is discarded; the operator resolves it.
    SplitBrainDetected,
    /// Root only (DRBD's fence-peer handler, writes suspended): the replication lost
    /// the other node while this node holds the data. With fencing required and the
    /// other node silent on every heartbeat path, this node powers it off (after
    /// node1's tiebreak delay) before writes resume; the handler follows the fence in
    /// the status.
    ReplicationPeerLost,
    /// This node's part of resolving a split brain of the replicated data, with DRBD's
    /// own means: on the victim `secondary` and `connect --discard-my-data` (its
    /// changes since the split are thrown away), on the survivor `connect`. Asked on
    /// both nodes. `confirm_name` is the cluster's name as typed.
    ResolveSplitBrain {
        /// The node whose data stays (`node1` or `node2`), typed.
        survivor: String,
        /// The cluster's name, typed.
        confirm_name: String,
    },
    /// Start from this node's own copy of the data although it is not known good
    /// (outdated, or only consistent after a reboot), because the other node's copy is
    /// lost. The peer must be silent; fencing still applies. `confirm_name` is the
    /// cluster's name as typed.
    ForcePrimary {
        /// The cluster's name, typed.
        confirm_name: String,
    },
}

impl Request {
    /// The request's name on the wire (`status`, `change-settings`, ...).
    #[must_use]
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("request").and_then(|r| r.as_str().map(str::to_owned)))
            .unwrap_or_default()
    }

    /// Whether any client that may connect may ask it (it changes nothing and reveals
    /// no configuration).
    #[must_use]
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            Request::Status
                | Request::Hw
                | Request::Events { .. }
                | Request::Facts
                | Request::Mode
                | Request::Login { .. }
                | Request::Session
                | Request::Logout
                | Request::LoginLockout { .. }
        )
    }

    /// Whether only root on the node may ask it.
    #[must_use]
    pub fn is_root_only(&self) -> bool {
        matches!(
            self,
            Request::LiftLockout
                | Request::SetConsolePassword { .. }
                | Request::ReloadConfig
                | Request::SplitBrainDetected
                | Request::ReplicationPeerLost
                | Request::UpdateInstall { .. }
                | Request::UpdateRolling { .. }
                | Request::TemplateAdd { .. }
                | Request::TemplateFetch { .. }
        )
    }
}

/// What happens to the replicated data at activation (the operator's choice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataChoice {
    /// Take a full copy from the other node (only this node was reinstalled).
    FetchFromPeer,
    /// Create a new, empty data area (both nodes were reinstalled, or a new cluster).
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

/// What [`Request::Power`] does to this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerAction {
    /// Restart the node.
    Reboot,
    /// Switch the node off.
    Poweroff,
}

impl PowerAction {
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

/// The Network page's fields, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkForm {
    /// node1's host name.
    pub node1_hostname: String,
    /// node1's external address.
    pub node1_address: String,
    /// node2's host name.
    pub node2_hostname: String,
    /// node2's external address.
    pub node2_address: String,
    /// Netmask of the external network.
    pub netmask: String,
    /// Default gateway.
    pub gateway: String,
    /// Ping nodes, separated by spaces or commas.
    pub ping_nodes: String,
    /// DNS search path, separated by spaces or commas.
    pub dns_search: String,
    /// First DNS server.
    pub dns_server1: String,
    /// Second DNS server (may be empty).
    pub dns_server2: String,
    /// Time servers (NTP), each a name or address with an optional `:port`, separated
    /// by spaces, commas or newlines; empty: none (the clock is not synchronised).
    #[serde(default)]
    pub time_servers: String,
    /// Serial heartbeat on.
    pub serial_heartbeat: bool,
    /// External heartbeat on.
    pub external_heartbeat: bool,
}

/// The Notification page's fields, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationForm {
    /// Recipients, one per line (or separated by commas or spaces).
    pub addresses: String,
    /// Relay host as `HOST[:PORT]`, empty for none.
    pub relay_host: String,
    /// Copy to the vendor's support.
    pub copy_vendor: bool,
}

/// One change from the console's settings pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettingsChange {
    /// The Network page.
    Network(NetworkForm),
    /// The Notification page.
    Notification(NotificationForm),
    /// The management password (user `admin`): the current one, the new one typed
    /// twice. Every session on both nodes ends when it changed.
    AdminPassword {
        /// The password in use now.
        current: Secret,
        /// The new password.
        new: Secret,
        /// Typed again.
        confirm: Secret,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_simple_wire_form() {
        let v = serde_json::to_value(Request::Status).unwrap();
        assert_eq!(v, serde_json::json!({"request": "status"}));
        let r: Request = serde_json::from_str(r#"{"request":"events","follow":true}"#).unwrap();
        assert_eq!(r, Request::Events { follow: true });
        let r: Request = serde_json::from_str(r#"{"request":"events"}"#).unwrap();
        assert_eq!(r, Request::Events { follow: false });
        assert_eq!(
            Request::ChangeSettings {
                change: Box::new(SettingsChange::Notification(NotificationForm::default())),
                revision: 1,
                this_node_only: false
            }
            .name(),
            "change-settings"
        );
        assert!(Request::Status.is_open() && !Request::Switchover.is_open());
        assert!(Request::LiftLockout.is_root_only());
    }

    #[test]
    fn a_network_form_without_time_servers_still_parses() {
        let mut v = serde_json::to_value(NetworkForm {
            time_servers: "ntp.example.net".into(),
            ..NetworkForm::default()
        })
        .unwrap();
        v.as_object_mut().unwrap().remove("time_servers");
        let f: NetworkForm = serde_json::from_value(v).unwrap();
        assert_eq!(f, NetworkForm::default());
    }
}
