//! Configuration changes on a running cluster.
//!
//! Both nodes keep the whole cluster configuration. A change (made in the web console
//! or with `tandem config apply`) raises `cluster.revision` by one and goes to the other
//! node first; only when the other node has committed it does this node commit it too.
//! A node that was down when the change was made takes it later: clusterd sees the
//! other node's configuration digest in the heartbeat, and while the two differ each
//! node offers its configuration to the other, which takes it only when its revision is
//! higher than its own.
//!
//! The exchange runs over TCP on the crossover network, to the peer's internal address
//! and the heartbeat's port number. Each message is one frame:
//!
//! ```text
//! "TCS1" | length (u32, big-endian, of what follows) | nonce (12 bytes) | ciphertext
//! ```
//!
//! The ciphertext is ChaCha20-Poly1305 under a key derived (HKDF-SHA256) from the
//! cluster key, over a JSON [`Message`]; the associated data names the message's kind
//! and the sending node, so a frame cannot be reflected back to its sender or replayed
//! as another kind. An offer carries a random challenge that the reply repeats, so an
//! old reply does not answer a new offer. A replayed old offer changes nothing: its
//! revision is not higher than the one the node already has. The configuration holds
//! password hashes and private keys, which is why the frames are encrypted and not only
//! authenticated.
//!
//! What may change this way is what the web console's pages change: network settings,
//! heartbeat paths, VE network settings, notification, passwords, update-server
//! credentials. The cluster's identity, its keys, the heartbeat key and port and the
//! replication settings change only with a new archive and an activation: an offer
//! that changes them is refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tandem_config::{ApplianceConfig, NodeId, Store, UpdateError};

/// First bytes of every frame.
pub const MAGIC: &[u8; 4] = b"TCS1";
/// Largest frame body (nonce and ciphertext) accepted.
pub const MAX_BODY: usize = 1 << 20;
/// Header: magic and length.
pub const HEADER_LEN: usize = 8;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The AEAD key of the exchange, derived from the cluster key.
#[derive(Clone)]
pub struct SyncKey(ChaCha20Poly1305);

impl std::fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncKey(..)")
    }
}

impl SyncKey {
    /// The key for the cluster whose heartbeat key is `cluster_key`.
    #[must_use]
    pub fn derive(cluster_key: &[u8]) -> SyncKey {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"tandem"), cluster_key);
        let mut okm = [0u8; 32];
        // 32 bytes are always within HKDF-SHA256's output limit.
        let _ = hk.expand(b"configuration exchange v1", &mut okm);
        SyncKey(ChaCha20Poly1305::new(Key::from_slice(&okm)))
    }
}

/// What travels in a frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Message {
    /// "Here is my configuration; take it if it is newer than yours."
    Offer {
        /// Random, repeated in the reply.
        challenge: u64,
        /// The configuration file's text.
        config: String,
    },
    /// The answer to an offer.
    Reply {
        /// The offer's challenge.
        challenge: u64,
        /// What the node did with it.
        outcome: Outcome,
    },
    /// "Who are you?": host name, kernel, versions (the console's Home page).
    Describe {
        /// Random, repeated in the answer.
        challenge: u64,
    },
    /// The answer to [`Message::Describe`].
    Facts {
        /// The question's challenge.
        challenge: u64,
        /// The node's facts.
        facts: NodeFacts,
    },
}

pub use tandem_api::NodeFacts;

fn read_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// This node's facts, with configuration revision `revision`.
#[must_use]
pub fn local_facts(node: NodeId, revision: u64) -> NodeFacts {
    let dmi = |f: &str| read_line(&format!("/sys/class/dmi/id/{f}"));
    let hardware: Vec<String> = [
        dmi("sys_vendor"),
        dmi("product_name"),
        dmi("product_serial"),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect();
    NodeFacts {
        node: node.to_string(),
        hostname: read_line("/proc/sys/kernel/hostname"),
        kernel: read_line("/proc/sys/kernel/osrelease"),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        hardware: hardware.join(" "),
        revision,
    }
}

/// What a node did with an offered configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Outcome {
    /// Committed: the node now runs this revision.
    Accepted {
        /// The revision committed.
        revision: u64,
    },
    /// The node's own configuration is as new or newer.
    NotNewer {
        /// The node's revision.
        have: u64,
        /// Whether the node's configuration is the very same.
        same: bool,
    },
    /// Refused for the reason given; nothing changed.
    Refused {
        /// Why, in one line for the operator.
        reason: String,
    },
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Message::Offer { .. } => b'O',
            Message::Reply { .. } => b'R',
            Message::Describe { .. } => b'D',
            Message::Facts { .. } => b'F',
        }
    }
}

/// A frame that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first four bytes are not [`MAGIC`].
    #[error("not a configuration-exchange frame (bad magic)")]
    Magic,
    /// The length field is out of bounds.
    #[error("frame length {0} out of bounds (at most {MAX_BODY} bytes)")]
    Length(usize),
    /// Decryption failed: another cluster's key, a damaged frame, or a frame of
    /// another kind or sender.
    #[error("frame not authentic (another cluster's key, or a damaged or replayed frame)")]
    Authentication,
    /// Authentic, but not a message of this protocol.
    #[error("message not understood: {0}")]
    Message(String),
}

fn aad(kind: u8, sender: NodeId) -> [u8; 6] {
    let node = match sender {
        NodeId::Node1 => b'1',
        NodeId::Node2 => b'2',
    };
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], kind, node]
}

/// The frame for `msg` sent by `sender`.
#[must_use]
pub fn seal(key: &SyncKey, sender: NodeId, msg: &Message) -> Vec<u8> {
    // JSON encoding of these types cannot fail.
    let json = serde_json::to_vec(msg).unwrap_or_default();
    seal_raw(key, sender, msg.kind(), &json)
}

/// A frame of kind `kind` from `sender` around any plaintext (the fuzz target seals
/// arbitrary bytes this way to reach the message decoder).
///
/// # Panics
/// When the system's random source fails, which it does not on a running node.
#[must_use]
pub fn seal_raw(key: &SyncKey, sender: NodeId, kind: u8, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the system's random source");
    let ct = key
        .0
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plain,
                aad: &aad(kind, sender),
            },
        )
        .unwrap_or_default();
    let body_len = NONCE_LEN + ct.len();
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// The body length announced by a frame header.
///
/// # Errors
/// Bad magic or a length out of bounds.
pub fn body_len(header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    if &header[..4] != MAGIC {
        return Err(FrameError::Magic);
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if !(NONCE_LEN + TAG_LEN..=MAX_BODY).contains(&len) {
        return Err(FrameError::Length(len));
    }
    Ok(len)
}

/// The message in a frame body, which `sender` must have sealed as a message of kind
/// `kind` (`b'O'` offer, `b'R'` reply).
///
/// # Errors
/// Not authentic, or not a message of that kind.
pub fn open(key: &SyncKey, sender: NodeId, kind: u8, body: &[u8]) -> Result<Message, FrameError> {
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(FrameError::Length(body.len()));
    }
    let (nonce, ct) = body.split_at(NONCE_LEN);
    let plain = key
        .0
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: &aad(kind, sender),
            },
        )
        .map_err(|_| FrameError::Authentication)?;
    let msg: Message =
        serde_json::from_slice(&plain).map_err(|e| FrameError::Message(e.to_string()))?;
    if msg.kind() != kind {
        return Err(FrameError::Message("unexpected kind".into()));
    }
    Ok(msg)
}

/// What changed between two configurations, by console page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Sections that changed, in the file's order (`network`, `heartbeat`, …).
    pub sections: Vec<&'static str>,
    /// The management password changed.
    pub admin_password: bool,
}

impl Changes {
    /// Between `old` and `new`.
    #[must_use]
    pub fn between(old: &ApplianceConfig, new: &ApplianceConfig) -> Changes {
        let mut sections = Vec::new();
        let mut note = |name, changed: bool| {
            if changed {
                sections.push(name);
            }
        };
        note("network", old.network != new.network);
        note("heartbeat", old.heartbeat != new.heartbeat);
        note("ves", old.ves != new.ves);
        note("notification", old.notification != new.notification);
        note("passwords", old.passwords != new.passwords);
        note("updates", old.updates != new.updates);
        note("support", old.support != new.support);
        note("fencing", old.fencing != new.fencing);
        Changes {
            sections,
            admin_password: old.passwords.admin != new.passwords.admin,
        }
    }

    /// Whether the change takes effect only when each node starts again: network and
    /// heartbeat settings are set up at boot.
    #[must_use]
    pub fn needs_restart(&self) -> bool {
        self.sections
            .iter()
            .any(|s| matches!(*s, "network" | "heartbeat"))
    }

    /// The changed sections as one comma-separated string (`none` when empty).
    #[must_use]
    pub fn list(&self) -> String {
        if self.sections.is_empty() {
            "none".into()
        } else {
            self.sections.join(", ")
        }
    }
}

/// Why a configuration change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Another cluster's configuration.
    #[error("the configuration belongs to another cluster ({offered}, this node: {have})")]
    OtherCluster {
        /// The offered cluster id.
        offered: String,
        /// This node's.
        have: String,
    },
    /// Not newer than what the node has.
    #[error(
        "revision {offered} is not newer than this node's revision {have}{}",
        if *same { " (the same configuration)" } else { "" }
    )]
    NotNewer {
        /// The offered revision.
        offered: u64,
        /// This node's.
        have: u64,
        /// Same content.
        same: bool,
    },
    /// A part that only an activation may change.
    #[error(
        "the change touches {0}, which only a new configuration archive and an activation can change"
    )]
    Fixed(String),
    /// Different software on the two nodes.
    #[error("schema version {offered} differs from this node's {have}: update both nodes first")]
    Schema {
        /// The offered version.
        offered: u32,
        /// This node's.
        have: u32,
    },
}

/// Whether `new` may replace `old` on a running cluster.
///
/// # Errors
/// The reason it may not.
pub fn judge(old: &ApplianceConfig, new: &ApplianceConfig) -> Result<Changes, Refusal> {
    if old.cluster.id != new.cluster.id {
        return Err(Refusal::OtherCluster {
            offered: new.cluster.id.to_string(),
            have: old.cluster.id.to_string(),
        });
    }
    if new.schema_version != old.schema_version {
        return Err(Refusal::Schema {
            offered: new.schema_version,
            have: old.schema_version,
        });
    }
    if new.cluster.revision <= old.cluster.revision {
        return Err(Refusal::NotNewer {
            offered: new.cluster.revision,
            have: old.cluster.revision,
            same: old == new,
        });
    }
    let mut fixed = Vec::new();
    if old.cluster.name != new.cluster.name {
        fixed.push("cluster.name");
    }
    if old.heartbeat.auth_key != new.heartbeat.auth_key {
        fixed.push("heartbeat.auth-key");
    }
    if old.heartbeat.udp_port != new.heartbeat.udp_port {
        fixed.push("heartbeat.udp-port");
    }
    if old.replication != new.replication {
        fixed.push("replication");
    }
    if old.keys != new.keys {
        fixed.push("keys");
    }
    if old.network.node1.internal_address != new.network.node1.internal_address
        || old.network.node2.internal_address != new.network.node2.internal_address
        || old.network.internal_netmask != new.network.internal_netmask
    {
        fixed.push("the crossover addresses");
    }
    if !fixed.is_empty() {
        return Err(Refusal::Fixed(fixed.join(", ")));
    }
    Ok(Changes::between(old, new))
}

/// What [`accept`] did.
#[derive(Debug)]
pub struct Accepted {
    /// The configuration now committed.
    pub config: ApplianceConfig,
    /// What changed.
    pub changes: Changes,
    /// A durability doubt about the commit (see [`Store::update`]).
    pub warning: Option<String>,
}

/// Why [`accept`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The text is not a valid configuration.
    #[error("the configuration is not valid: {0}")]
    Invalid(String),
    /// Refused by [`judge`].
    #[error(transparent)]
    Refused(Refusal),
    /// The store failed or holds no configuration.
    #[error("{0}")]
    Store(String),
}

/// Commits the configuration `text` in `store` when [`judge`] allows it. A changed
/// management password also removes a password set on this node's console (R13.1):
/// the one set for the cluster counts from now on.
///
/// # Errors
/// Invalid text, a refusal, or a store failure; the store is then unchanged.
pub fn accept(store: &Store, text: &str) -> Result<Accepted, AcceptError> {
    let new = ApplianceConfig::from_toml(text).map_err(|e| AcceptError::Invalid(e.to_string()))?;
    let mut changes = None;
    let warning = store
        .update(|old| {
            changes = Some(judge(old, &new)?);
            Ok::<_, Refusal>(new.clone())
        })
        .map_err(|e| match e {
            UpdateError::Refused(r) => AcceptError::Refused(r),
            UpdateError::NotConfigured => {
                AcceptError::Store("this node has no committed configuration".into())
            }
            UpdateError::Stage(e) => AcceptError::Store(crate::error_chain(&e)),
        })?;
    let changes = changes.unwrap_or_default();
    if changes.admin_password {
        forget_console_password(store.dir());
    }
    Ok(Accepted {
        config: new,
        changes,
        warning,
    })
}

/// The file in which the node's console keeps a management password set there (R13.1).
pub const CONSOLE_PASSWORD: &str = "admin.hash";

fn forget_console_password(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(CONSOLE_PASSWORD));
}

/// The answer to an offer received from the peer: commit when newer, else say why not.
#[must_use]
pub fn answer(store: &Store, config: &str) -> (Outcome, Option<Accepted>) {
    match accept(store, config) {
        Ok(a) => (
            Outcome::Accepted {
                revision: a.config.cluster.revision,
            },
            Some(a),
        ),
        Err(AcceptError::Refused(Refusal::NotNewer { have, same, .. })) => {
            (Outcome::NotNewer { have, same }, None)
        }
        Err(e) => (
            Outcome::Refused {
                reason: e.to_string(),
            },
            None,
        ),
    }
}

/// Where the peer listens: its crossover address and the heartbeat port.
#[must_use]
pub fn peer_endpoint(cfg: &ApplianceConfig, me: NodeId) -> SocketAddr {
    let peer = cfg.network.node(me.peer()).internal_address.addr();
    SocketAddr::from((peer, cfg.heartbeat.udp_port.get()))
}

/// Where this node listens.
#[must_use]
pub fn own_endpoint(cfg: &ApplianceConfig, me: NodeId) -> SocketAddr {
    let own = cfg.network.node(me).internal_address.addr();
    SocketAddr::from((own, cfg.heartbeat.udp_port.get()))
}

/// Why an offer to the peer got no answer.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// No connection, or it broke or timed out.
    #[error("the other node does not answer at {addr}: {source}")]
    Unreachable {
        /// Where it was tried.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The answer was not an authentic reply to this offer.
    #[error("the other node's answer is not valid: {0}")]
    BadReply(FrameError),
}

/// Offers `config` (this node's configuration file text) to the peer at `addr` and
/// returns its answer. Blocks for at most about `timeout` per step.
///
/// # Errors
/// The peer cannot be reached or its answer is not an authentic reply.
pub fn offer(
    key: &SyncKey,
    me: NodeId,
    addr: SocketAddr,
    config: &str,
    timeout: Duration,
) -> Result<Outcome, OfferError> {
    let challenge = new_challenge(addr)?;
    let msg = Message::Offer {
        challenge,
        config: config.to_owned(),
    };
    match request(key, me, addr, &msg, b'R', timeout)? {
        Message::Reply {
            challenge: c,
            outcome,
        } if c == challenge => Ok(outcome),
        _ => Err(OfferError::BadReply(FrameError::Message(
            "the reply does not answer this offer".into(),
        ))),
    }
}

/// Asks the peer at `addr` for its facts.
///
/// # Errors
/// The peer cannot be reached or its answer is not an authentic one.
pub fn describe(
    key: &SyncKey,
    me: NodeId,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<NodeFacts, OfferError> {
    let challenge = new_challenge(addr)?;
    match request(
        key,
        me,
        addr,
        &Message::Describe { challenge },
        b'F',
        timeout,
    )? {
        Message::Facts {
            challenge: c,
            facts,
        } if c == challenge => Ok(facts),
        _ => Err(OfferError::BadReply(FrameError::Message(
            "the answer does not answer this question".into(),
        ))),
    }
}

fn new_challenge(addr: SocketAddr) -> Result<u64, OfferError> {
    let mut challenge = [0u8; 8];
    getrandom::fill(&mut challenge).map_err(|e| OfferError::Unreachable {
        addr,
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(u64::from_le_bytes(challenge))
}

/// Sends `msg` to the peer at `addr` and returns its answer, a message of kind
/// `answer_kind` sealed by the peer.
fn request(
    key: &SyncKey,
    me: NodeId,
    addr: SocketAddr,
    msg: &Message,
    answer_kind: u8,
    timeout: Duration,
) -> Result<Message, OfferError> {
    let unreachable = |source| OfferError::Unreachable { addr, source };
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    s.set_read_timeout(Some(timeout)).map_err(unreachable)?;
    s.set_write_timeout(Some(timeout)).map_err(unreachable)?;
    s.write_all(&seal(key, me, msg)).map_err(unreachable)?;
    let mut header = [0u8; HEADER_LEN];
    s.read_exact(&mut header).map_err(unreachable)?;
    let len = body_len(&header).map_err(OfferError::BadReply)?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(unreachable)?;
    open(key, me.peer(), answer_kind, &body).map_err(OfferError::BadReply)
}

/// How long each step of an offer to the peer may take.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(20);

/// What [`apply`] did.
#[derive(Debug)]
pub struct Applied {
    /// The revision now committed here.
    pub revision: u64,
    /// What changed.
    pub changes: Changes,
    /// The other node committed it too (false with `this_node_only`).
    pub peer: bool,
    /// Things the operator should know (clusterd not reached, durability doubts).
    pub notes: Vec<String>,
}

/// Why [`apply`] changed nothing (or, for [`ApplyError::Local`], nothing here).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The new configuration is not valid; every problem with its field.
    #[error("the new configuration is not valid:\n{0}")]
    Invalid(tandem_config::ConfigError),
    /// This node's store has no configuration or cannot be read.
    #[error("this node's configuration: {0}")]
    Store(String),
    /// Refused by the rule for a running cluster.
    #[error("{0}")]
    Refused(Refusal),
    /// The other node cannot be reached; nothing changed anywhere.
    #[error(
        "{source}. Nothing was changed. Check that the other node runs and the crossover cable; \
         if the other node is down, make the change on this node only: the other node takes it \
         when it is back"
    )]
    PeerUnreachable {
        /// The cause.
        #[source]
        source: OfferError,
    },
    /// The other node refused; nothing changed anywhere.
    #[error("the other node refused the change: {0}. Nothing was changed")]
    PeerRefused(String),
    /// The other node already has a newer configuration.
    #[error(
        "the other node already has revision {0}, newer than the configuration this change was \
         made on. Nothing was changed; this node takes the newer one in a moment: reload the page \
         and make the change again"
    )]
    PeerNewer(u64),
    /// The other node committed the change but this node could not.
    #[error(
        "the other node took revision {revision}, but this node could not: {reason}. The other \
         node offers it to this node again while the two differ"
    )]
    Local {
        /// The revision the other node has now.
        revision: u64,
        /// Why this node could not commit.
        reason: String,
    },
}

/// Makes `text` the cluster's configuration: checks it, has the other node commit it
/// (unless `this_node_only`), commits it here and has clusterd put it in effect
/// (`reload`). The other node goes first so that a refusal there changes nothing.
///
/// # Errors
/// See [`ApplyError`]; in every case but [`ApplyError::Local`] nothing changed on
/// either node.
pub fn apply(
    store: &Store,
    me: NodeId,
    text: &str,
    this_node_only: bool,
    reload: &dyn Fn() -> Result<(), String>,
) -> Result<Applied, ApplyError> {
    let new = ApplianceConfig::from_toml(text).map_err(ApplyError::Invalid)?;
    let old = store
        .current()
        .map_err(|e| ApplyError::Store(crate::error_chain(&e)))?
        .ok_or_else(|| ApplyError::Store("no configuration is committed on this node".into()))?;
    judge(&old, &new).map_err(ApplyError::Refused)?;
    let text = new.to_toml();
    let mut peer = false;
    if !this_node_only {
        let key = SyncKey::derive(old.heartbeat.auth_key.as_bytes());
        let outcome = offer(&key, me, peer_endpoint(&old, me), &text, OFFER_TIMEOUT)
            .map_err(|source| ApplyError::PeerUnreachable { source })?;
        match outcome {
            Outcome::Accepted { .. } | Outcome::NotNewer { same: true, .. } => peer = true,
            Outcome::NotNewer { have, .. } => return Err(ApplyError::PeerNewer(have)),
            Outcome::Refused { reason } => return Err(ApplyError::PeerRefused(reason)),
        }
    }
    let accepted = accept(store, &text).or_else(|e| match e {
        // The other node offered it here in the meantime (it differed from this one).
        AcceptError::Refused(Refusal::NotNewer { same: true, .. }) => Ok(Accepted {
            changes: Changes::between(&old, &new),
            config: new.clone(),
            warning: None,
        }),
        e => Err(e),
    });
    let accepted = accepted.map_err(|e| {
        if peer {
            ApplyError::Local {
                revision: new.cluster.revision,
                reason: e.to_string(),
            }
        } else {
            match e {
                AcceptError::Refused(r) => ApplyError::Refused(r),
                other => ApplyError::Store(other.to_string()),
            }
        }
    })?;
    let mut notes: Vec<String> = accepted.warning.into_iter().collect();
    if let Err(e) = reload() {
        notes.push(format!(
            "the cluster daemon did not take the change now ({e}); it takes it when it starts again"
        ));
    }
    Ok(Applied {
        revision: accepted.config.cluster.revision,
        changes: accepted.changes,
        peer,
        notes,
    })
}

/// What clusterd needs to take part in the exchange.
#[derive(Debug, Clone)]
pub struct SyncSetup {
    /// The node's configuration store.
    pub store: std::path::PathBuf,
    /// This node.
    pub node: NodeId,
    /// The exchange key.
    pub key: SyncKey,
    /// Where this node listens (its crossover address).
    pub listen: SocketAddr,
    /// Where the other node listens.
    pub peer: SocketAddr,
}

impl SyncSetup {
    /// The setup for `node` of the cluster configured in `cfg`, kept in `store`.
    #[must_use]
    pub fn new(cfg: &ApplianceConfig, node: NodeId, store: std::path::PathBuf) -> SyncSetup {
        SyncSetup {
            store,
            node,
            key: SyncKey::derive(cfg.heartbeat.auth_key.as_bytes()),
            listen: own_endpoint(cfg, node),
            peer: peer_endpoint(cfg, node),
        }
    }
}

/// Longest time a connection may take to deliver its offer.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers the other node's offers and questions on `listener` until the task is
/// dropped; `committed` hears of every configuration committed. Connections are handled one at a time
/// (changes are rare; a slow peer cannot pile up work).
pub async fn serve(
    listener: tokio::net::TcpListener,
    setup: SyncSetup,
    committed: impl Fn(Accepted),
    report: impl Fn(String),
) {
    loop {
        let Ok((stream, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match tokio::time::timeout(RECEIVE_TIMEOUT, receive(stream, &setup)).await {
            Ok(Ok(Some(a))) => committed(a),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => report(format!("configuration exchange with {from} refused: {e}")),
            Err(_) => report(format!(
                "configuration exchange with {from}: no complete offer within {} s",
                RECEIVE_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Reads one offer, answers it and returns what was committed.
async fn receive(
    mut stream: tokio::net::TcpStream,
    setup: &SyncSetup,
) -> Result<Option<Accepted>, FrameError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut header = [0u8; HEADER_LEN];
    stream
        .read_exact(&mut header)
        .await
        .map_err(|e| FrameError::Message(format!("reading: {e}")))?;
    let mut body = vec![0u8; body_len(&header)?];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| FrameError::Message(format!("reading: {e}")))?;
    let peer = setup.node.peer();
    let (challenge, config) = match open(&setup.key, peer, b'O', &body) {
        Ok(Message::Offer { challenge, config }) => (challenge, config),
        Ok(_) => return Err(FrameError::Message("not an offer".into())),
        Err(offer_error) => match open(&setup.key, peer, b'D', &body) {
            Ok(Message::Describe { challenge }) => {
                let dir = setup.store.clone();
                let node = setup.node;
                let facts = tokio::task::spawn_blocking(move || {
                    let revision = Store::open(&dir)
                        .ok()
                        .and_then(|s| s.current().ok().flatten())
                        .map_or(0, |c| c.cluster.revision);
                    local_facts(node, revision)
                })
                .await
                .map_err(|e| FrameError::Message(e.to_string()))?;
                let answer = seal(&setup.key, setup.node, &Message::Facts { challenge, facts });
                let _ = stream.write_all(&answer).await;
                return Ok(None);
            }
            _ => return Err(offer_error),
        },
    };
    let dir = setup.store.clone();
    let (outcome, accepted) = tokio::task::spawn_blocking(move || match Store::open(&dir) {
        Ok(store) => answer(&store, &config),
        Err(e) => (
            Outcome::Refused {
                reason: format!(
                    "this node's configuration store: {}",
                    crate::error_chain(&e)
                ),
            },
            None,
        ),
    })
    .await
    .map_err(|e| FrameError::Message(e.to_string()))?;
    let reply = seal(
        &setup.key,
        setup.node,
        &Message::Reply { challenge, outcome },
    );
    // The change is committed whether or not the answer arrives: report it anyway.
    let _ = stream.write_all(&reply).await;
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ApplianceConfig {
        tandem_config::init::new_cluster(&tandem_config::init::InitOptions::default())
            .unwrap()
            .0
    }

    #[test]
    fn frames_open_only_for_the_right_key_kind_and_sender() {
        let k = SyncKey::derive(b"0123456789abcdef0123456789abcdef");
        let msg = Message::Offer {
            challenge: 7,
            config: "x".into(),
        };
        let f = seal(&k, NodeId::Node1, &msg);
        let header: [u8; HEADER_LEN] = f[..HEADER_LEN].try_into().unwrap();
        assert_eq!(body_len(&header).unwrap(), f.len() - HEADER_LEN);
        let body = &f[HEADER_LEN..];
        assert_eq!(open(&k, NodeId::Node1, b'O', body).unwrap(), msg);
        // Reflected to its sender, read as a reply, or under another cluster's key.
        assert_eq!(
            open(&k, NodeId::Node2, b'O', body),
            Err(FrameError::Authentication)
        );
        assert_eq!(
            open(&k, NodeId::Node1, b'R', body),
            Err(FrameError::Authentication)
        );
        let other = SyncKey::derive(b"another cluster key, 32 bytes...");
        assert_eq!(
            open(&other, NodeId::Node1, b'O', body),
            Err(FrameError::Authentication)
        );
        // One flipped bit anywhere.
        for i in 0..body.len() {
            let mut b = body.to_vec();
            b[i] ^= 0x10;
            assert_eq!(
                open(&k, NodeId::Node1, b'O', &b),
                Err(FrameError::Authentication),
                "bit flip at {i}"
            );
        }
        // Two frames of one message differ (fresh nonce).
        assert_ne!(seal(&k, NodeId::Node1, &msg), f);
    }

    #[test]
    fn headers_are_bounded() {
        let mut h = *b"TCS1\0\0\0\0";
        assert_eq!(body_len(&h), Err(FrameError::Length(0)));
        h[4..].copy_from_slice(&u32::try_from(MAX_BODY + 1).unwrap().to_be_bytes());
        assert_eq!(body_len(&h), Err(FrameError::Length(MAX_BODY + 1)));
        h[4..].copy_from_slice(&100u32.to_be_bytes());
        assert_eq!(body_len(&h), Ok(100));
        assert_eq!(body_len(b"HTTP/1.1"), Err(FrameError::Magic));
    }

    #[test]
    fn judge_takes_newer_revisions_of_the_changeable_parts_only() {
        let old = cfg();
        let mut new = old.clone();
        new.cluster.revision += 1;
        new.notification.copy_vendor = !old.notification.copy_vendor;
        let c = judge(&old, &new).unwrap();
        assert_eq!(c.sections, vec!["notification"]);
        assert!(!c.needs_restart());

        new.network.dns_servers.clear();
        assert!(judge(&old, &new).unwrap().needs_restart());

        // Same or older revision.
        let mut same = old.clone();
        assert_eq!(
            judge(&old, &same),
            Err(Refusal::NotNewer {
                offered: old.cluster.revision,
                have: old.cluster.revision,
                same: true
            })
        );
        same.notification.copy_vendor = !same.notification.copy_vendor;
        assert!(matches!(
            judge(&old, &same),
            Err(Refusal::NotNewer { same: false, .. })
        ));

        // Parts only an activation changes.
        let mut fixed = old.clone();
        fixed.cluster.revision += 1;
        fixed.replication.port = 7799.try_into().unwrap();
        fixed.keys = cfg().keys;
        assert_eq!(
            judge(&old, &fixed),
            Err(Refusal::Fixed("replication, keys".into()))
        );
        let other = {
            let mut o = cfg();
            o.cluster.revision = 9;
            o
        };
        assert!(matches!(
            judge(&old, &other),
            Err(Refusal::OtherCluster { .. })
        ));
    }

    fn store_with(c: &ApplianceConfig) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("config")).unwrap();
        store.stage(c).unwrap();
        store.commit().unwrap();
        (dir, store)
    }

    #[test]
    fn accept_commits_newer_changes_and_forgets_a_console_password() {
        let old = cfg();
        let (_d, store) = store_with(&old);
        std::fs::write(store.dir().join(CONSOLE_PASSWORD), "x").unwrap();
        let mut new = old.clone();
        new.cluster.revision += 1;
        new.passwords.admin = tandem_config::secrets::hash_password("a new one").unwrap();
        let (outcome, accepted) = answer(&store, &new.to_toml());
        assert_eq!(
            outcome,
            Outcome::Accepted {
                revision: new.cluster.revision
            }
        );
        assert!(accepted.unwrap().changes.admin_password);
        assert_eq!(store.current().unwrap().unwrap(), new);
        assert_eq!(store.previous().unwrap().unwrap(), old);
        assert!(!store.dir().join(CONSOLE_PASSWORD).exists());

        // The same offer again: nothing happens.
        let (outcome, accepted) = answer(&store, &new.to_toml());
        assert_eq!(
            outcome,
            Outcome::NotNewer {
                have: new.cluster.revision,
                same: true
            }
        );
        assert!(accepted.is_none());

        // Garbage and refusals leave the store alone.
        let before = std::fs::read(store.dir().join("config.toml")).unwrap();
        let (outcome, _) = answer(&store, "schema-version = 2\n[cluster]\n");
        assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome:?}");
        let mut fixed = new.clone();
        fixed.cluster.revision += 1;
        fixed.heartbeat.udp_port = 7000.try_into().unwrap();
        let (outcome, _) = answer(&store, &fixed.to_toml());
        assert_eq!(
            outcome,
            Outcome::Refused {
                reason: "the change touches heartbeat.udp-port, which only a new configuration archive and an activation can change".into()
            }
        );
        assert_eq!(
            std::fs::read(store.dir().join("config.toml")).unwrap(),
            before
        );
    }

    #[test]
    fn an_offer_over_tcp_is_answered_by_the_peer() {
        let old = cfg();
        let (_d, store) = store_with(&old);
        let key = SyncKey::derive(old.heartbeat.auth_key.as_bytes());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server_key = key.clone();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut h = [0u8; HEADER_LEN];
            s.read_exact(&mut h).unwrap();
            let mut body = vec![0u8; body_len(&h).unwrap()];
            s.read_exact(&mut body).unwrap();
            let Message::Offer { challenge, config } =
                open(&server_key, NodeId::Node1, b'O', &body).unwrap()
            else {
                panic!("not an offer")
            };
            let (outcome, _) = answer(&store, &config);
            let reply = Message::Reply { challenge, outcome };
            s.write_all(&seal(&server_key, NodeId::Node2, &reply))
                .unwrap();
            store
        });
        let mut new = old.clone();
        new.cluster.revision += 1;
        new.notification.addresses = vec!["ops@example.com".parse().unwrap()];
        let outcome = offer(
            &key,
            NodeId::Node1,
            addr,
            &new.to_toml(),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            outcome,
            Outcome::Accepted {
                revision: new.cluster.revision
            }
        );
        let store = server.join().unwrap();
        assert_eq!(store.current().unwrap().unwrap(), new);

        // Nobody listening: a clear error naming the address.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let e = offer(&key, NodeId::Node1, dead_addr, "x", Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains(&dead_addr.to_string()), "{e}");
    }

    #[test]
    fn the_daemons_side_answers_offers_and_questions() {
        let old = cfg();
        let (_d, store) = store_with(&old);
        let key = SyncKey::derive(old.heartbeat.auth_key.as_bytes());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let setup = SyncSetup {
            store: store.dir().to_owned(),
            node: NodeId::Node2,
            key: key.clone(),
            listen: addr,
            peer: addr,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let r = std::sync::Arc::clone(&reports);
        rt.spawn(serve(
            listener,
            setup,
            move |a| {
                let _ = tx.send(a);
            },
            move |t| r.lock().unwrap().push(t),
        ));
        let ask = |f: Box<dyn FnOnce() -> Result<String, OfferError> + Send>| {
            rt.block_on(async { tokio::task::spawn_blocking(f).await.unwrap() })
        };
        let k = key.clone();
        let facts = ask(Box::new(move || {
            describe(&k, NodeId::Node1, addr, Duration::from_secs(10)).map(|f| format!("{f:?}"))
        }))
        .unwrap();
        assert!(facts.contains("node: \"node2\""), "{facts}");
        assert!(
            facts.contains(&format!("revision: {}", old.cluster.revision)),
            "{facts}"
        );
        assert!(facts.contains(env!("CARGO_PKG_VERSION")), "{facts}");

        let mut new = old.clone();
        new.cluster.revision += 1;
        new.notification.addresses = vec!["ops@example.com".parse().unwrap()];
        let (k, text) = (key.clone(), new.to_toml());
        let outcome = ask(Box::new(move || {
            offer(&k, NodeId::Node1, addr, &text, Duration::from_secs(10)).map(|o| format!("{o:?}"))
        }))
        .unwrap();
        assert!(outcome.starts_with("Accepted"), "{outcome}");
        let accepted = rt.block_on(rx.recv()).unwrap();
        assert_eq!(accepted.config, new);

        // A question sealed as if from node2 itself (a reflected frame) is refused.
        let k = key.clone();
        let e = ask(Box::new(move || {
            describe(&k, NodeId::Node2, addr, Duration::from_secs(10)).map(|f| format!("{f:?}"))
        }))
        .unwrap_err();
        assert!(matches!(e, OfferError::Unreachable { .. }), "{e}");
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
        assert!(
            reports
                .lock()
                .unwrap()
                .iter()
                .any(|t| t.contains("not authentic")),
            "{:?}",
            reports.lock().unwrap()
        );
    }
}
