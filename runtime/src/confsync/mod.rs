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

mod apply;
mod facts;
mod frame;
mod peer;
mod rules;
mod serve;

use std::net::SocketAddr;

use tandem_config::{ApplianceConfig, NodeId};

pub use apply::{Applied, ApplyError, apply};
pub use facts::{NodeFacts, local_facts};
pub use frame::{
    FrameError, HEADER_LEN, MAGIC, MAX_BODY, Message, Outcome, SyncKey, body_len, open, seal,
    seal_raw,
};
pub use peer::{OFFER_TIMEOUT, OfferError, describe, offer};
pub use rules::{AcceptError, Accepted, CONSOLE_PASSWORD, Changes, Refusal, accept, answer, judge};
pub use serve::serve;

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
