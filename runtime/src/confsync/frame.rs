//! The exchange's frames: `"TCS1" | length | nonce | ciphertext`, ChaCha20-Poly1305
//! under a key derived from the cluster key, the associated data naming the message's
//! kind and sender. Pure functions of the bytes and the key (a fuzz target reaches them).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tandem_config::NodeId;

use super::NodeFacts;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
