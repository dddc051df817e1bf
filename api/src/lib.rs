//! The control API of a tandem node: the one typed, versioned interface between
//! `clusterd` (the privileged side) and its clients — the `tandem` CLI, the web console
//! and the local console screen.
//!
//! What it does: defines every [`Request`] a client may send, every [`Reply`] and
//! [`Refusal`] it may get, the cluster's status and event types, the views of the
//! console's jobs (activation, VE 101 installation) with their typed progress events,
//! and the wire format ([`wire`]): one JSON line per message on a unix stream socket,
//! optionally followed by a raw payload whose length the line declares (the archive
//! going in for a check, the exported archive coming out). A blocking [`Client`] speaks
//! it.
//!
//! Who may ask what is decided on the privileged side, not here; this crate only
//! carries the proof: a request that changes the node carries the [`Token`] of a
//! session the privileged side opened at login (the unprivileged web process never
//! sees a password hash), unless the client is root on the node (the privileged side
//! reads the peer's credentials from the socket).
//!
//! What it does not do: no IO beyond the client's socket, no policy, no rendering.
//! Texts in replies are English; the web console renders the typed variants in the
//! operator's language.
//!
//! Versioning: every message carries [`API_VERSION`]; a daemon answers a request of
//! another version with [`Refusal::Version`] and nothing else.
#![warn(missing_docs)]

mod client;
mod reply;
mod request;
mod status;
mod views;
pub mod wire;

pub use client::{Api, Client, ClientError, Socket, ask};
pub use reply::{
    Lockout, LockoutScope, LoginRefusal, Mode, Refusal, Reply, SessionInfo, SessionKind,
};
pub use request::{
    DataChoice, NetworkForm, NotificationForm, PowerAction, Request, SettingsChange,
};
pub use status::{
    CountersJson, DroppedJson, EventJson, FactsJson, HwJson, HwSummaryJson, NodeFacts, PathJson,
    PeerJson, PingJson, RaidItemJson, RaidJson, ReplicaFacts, SensorJson, StatusJson, VeHealthJson,
};
pub use tandem_config::NodeId;
pub use views::{
    ActivationEvent, ActivationView, ArchiveSummary, BackupFailure, BackupView, ChangeRefusal,
    ChangeReport, CopyOutcome, FieldProblem, INSTALL_STEPS, InstallReport, InstallStep,
    InstallView, JobState, NodeSettings, OutboxView, Settings, SlotView, SupportView, TemplateCopy,
    TemplateView, UpdateHistoryEntry, UpdateJobView, UpdateOffer, UpdateServerView, UpdateView,
    VeBackupFile, VeBackupsView, VeJobKind, VeJobReport, VeJobView, VeView,
};

/// Control API version spoken by this build.
pub const API_VERSION: u32 = 2;

/// Default control socket path on a node.
pub const DEFAULT_SOCKET: &str = "/run/tandem/control.sock";

/// Longest passphrase or password a request may carry, in bytes.
pub const MAX_SECRET: usize = 1024;

/// Shortest passphrase of an exported archive, in characters.
pub const MIN_EXPORT_PASSPHRASE: usize = 8;

/// Shortest management or VE password, in characters.
pub const MIN_PASSWORD: usize = 8;

/// The built-in OS template of VEs (busybox and a web server), always available.
pub const MINIMAL_TEMPLATE: &str = "tandem-minimal";

/// User name of the management console.
pub const ADMIN_USER: &str = "admin";

/// The factory password of `admin`, valid only while the node is unconfigured (R2.4).
pub const FACTORY_PASSWORD: &str = "relation";

/// A password or passphrase: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret itself.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// A session token: 32 random bytes as 64 lower-case hex digits, minted by the
/// privileged side at login. Never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Length of a token in characters.
    pub const LEN: usize = 64;

    /// A token from its text, when it has the shape of one.
    #[must_use]
    pub fn parse(s: &str) -> Option<Token> {
        (s.len() == Token::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Token(s.to_owned()))
    }

    /// A token from 32 random bytes.
    #[must_use]
    pub fn from_bytes(b: &[u8; 32]) -> Token {
        Token(b.iter().map(|x| format!("{x:02x}")).collect())
    }

    /// The token's text (for a cookie or a form).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// Whether two secrets (passwords, tokens) are equal, in time that does not depend on
/// where they differ or how long they are (both are hashed first).
#[must_use]
pub fn same_secret(a: &str, b: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(a.as_bytes())
        .ct_eq(&Sha256::digest(b.as_bytes()))
        .into()
}

/// An error and all its causes on one line (`a: b: c`), for logs, events, the
/// outbox and the consoles' messages: the one error-chain printer of the workspace.
#[must_use]
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_one_shape_and_stay_out_of_logs() {
        let t = Token::from_bytes(&[0xab; 32]);
        assert_eq!(t.as_str().len(), Token::LEN);
        assert_eq!(Token::parse(t.as_str()), Some(t.clone()));
        assert_eq!(format!("{t:?}"), "Token([redacted])");
        for bad in ["", "AB", &"g".repeat(64), &"A".repeat(64), &"a".repeat(65)] {
            assert_eq!(Token::parse(bad), None, "{bad}");
        }
        assert_eq!(format!("{:?}", Secret::from("pw")), "Secret([redacted])");
    }

    #[test]
    fn templates_read_in_their_older_form_and_round_trip() {
        let old: Reply =
            serde_json::from_str(r#"{"templates":["tandem-minimal","debian-12"]}"#).unwrap();
        let Reply::Templates(list) = old else {
            panic!("{old:?}");
        };
        assert_eq!(list[0].name, MINIMAL_TEMPLATE);
        assert!(list[0].built_in);
        assert_eq!(
            (list[1].name.as_str(), list[1].built_in),
            ("debian-12", false)
        );
        assert!(list[1].used_by.is_empty() && list[1].file.is_none());
        let full = Reply::Templates(vec![TemplateView {
            name: "debian-12".into(),
            file: Some("debian-12.tar.xz".into()),
            bytes: 123,
            modified: Some(1_700_000_000),
            used_by: vec![101, 102],
            built_in: false,
        }]);
        let text = serde_json::to_string(&full).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), full);
        let r: Request =
            serde_json::from_str(r#"{"request":"template-add","file":"/root/d.tar.xz"}"#).unwrap();
        assert_eq!(
            r,
            Request::TemplateAdd {
                file: "/root/d.tar.xz".into(),
                name: None
            }
        );
        assert!(r.is_root_only());
        assert!(!Request::TemplateDelete { name: "x".into() }.is_root_only());
    }
}
