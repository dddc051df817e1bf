//! Heartbeat wire format of the tandem cluster.
//!
//! What it does:
//! - encodes and decodes the one heartbeat frame both nodes exchange on every path
//!   (serial null-modem, internal crossover, external LAN): a fixed 104-byte layout,
//!   versioned, authenticated with HMAC-SHA256 under the cluster key, carrying the
//!   sender's boot generation and a sequence number so that the receiver can refuse
//!   replays, and the receiver's generation as the sender last heard it ("your
//!   generation") so that the receiver can tell a frame sent after the peer heard its
//!   current boot from one captured earlier (the replay *policy* lives in
//!   `tandem-core`, which sees all paths);
//! - frames heartbeats on a byte stream (the serial cable) with COBS and a zero
//!   delimiter, and deframes them with a resynchronising state machine
//!   ([`SerialDeframer`]) that recovers from line noise at the next delimiter.
//!
//! What it does not do: no IO, no allocation, no clock, no replay window (see
//! `tandem-core`). Decoding is a pure function of the bytes and the key, so a fuzz
//! target is a two-liner around [`decode`] or [`SerialDeframer::push`].
//!
//! Layout (version 2, all integers big-endian):
//!
//! | bytes   | field                                                       |
//! |---------|-------------------------------------------------------------|
//! | 0..4    | magic `TNDM`                                                |
//! | 4       | version (2)                                                 |
//! | 5       | kind (1 = heartbeat)                                        |
//! | 6..8    | length (104)                                                |
//! | 8..16   | sender, role, resources, flags, ping total, ping reach, path, reserved (0) |
//! | 16..24  | sender's boot generation                                    |
//! | 24..32  | sequence number                                             |
//! | 32..40  | your generation: the receiver's generation last heard (0: none) |
//! | 40..72  | configuration digest (SHA-256)                              |
//! | 72..104 | HMAC-SHA256 over bytes 0..72                                |
//!
//! Limitations: one frame kind (heartbeat) in version 2; a receiver refuses any other
//! version (including version 1, which had no "your generation") rather than guessing. The MAC is checked before any field is interpreted,
//! so a peer with another key is indistinguishable from line noise except by counter.
#![no_std]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

mod serial;

pub use serial::{DeframeError, MAX_SERIAL_FRAME, SERIAL_BUF_LEN, SerialDeframer, encode_serial};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// First four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"TNDM";
/// Wire version written by this crate; the only one it accepts.
pub const VERSION: u8 = 2;
/// Frame kind byte of a heartbeat.
pub const KIND_HEARTBEAT: u8 = 1;
/// Size of a version-2 heartbeat frame in bytes (header, body and MAC).
pub const FRAME_LEN: usize = 104;
/// Length of the authenticated part (everything before the MAC).
const AUTH_LEN: usize = 72;
/// Length of the SHA-256 configuration digest carried in every frame.
pub const DIGEST_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// One of the two cluster nodes: the one node identity of the workspace (the
/// configuration, the control API and the heartbeat all use this type). Written
/// `node1`, `node2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum NodeId {
    /// `node1`
    Node1,
    /// `node2`
    Node2,
}

impl NodeId {
    /// Both nodes, in order.
    pub const ALL: [NodeId; 2] = [NodeId::Node1, NodeId::Node2];

    /// The other node of the pair.
    #[must_use]
    pub fn peer(self) -> NodeId {
        match self {
            NodeId::Node1 => NodeId::Node2,
            NodeId::Node2 => NodeId::Node1,
        }
    }

    /// The node's name as operators write it (`node1`, `node2`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            NodeId::Node1 => "node1",
            NodeId::Node2 => "node2",
        }
    }

    /// The same as [`NodeId::name`].
    #[must_use]
    pub fn as_str(self) -> &'static str {
        self.name()
    }

    fn to_wire(self) -> u8 {
        match self {
            NodeId::Node1 => 1,
            NodeId::Node2 => 2,
        }
    }

    fn from_wire(b: u8) -> Option<NodeId> {
        match b {
            1 => Some(NodeId::Node1),
            2 => Some(NodeId::Node2),
            _ => None,
        }
    }
}

impl core::fmt::Display for NodeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A text that names no node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a node name (expected node1 or node2)")]
pub struct NotANode;

impl core::str::FromStr for NodeId {
    type Err = NotANode;
    fn from_str(s: &str) -> Result<NodeId, NotANode> {
        match s {
            "node1" => Ok(NodeId::Node1),
            "node2" => Ok(NodeId::Node2),
            _ => Err(NotANode),
        }
    }
}

/// One of the three heartbeat paths of R1.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathId {
    /// Serial null-modem cable.
    Serial,
    /// Internal network (crossover cable).
    Internal,
    /// External network (users, management).
    External,
}

impl PathId {
    /// All paths, in index order.
    pub const ALL: [PathId; 3] = [PathId::Serial, PathId::Internal, PathId::External];

    /// Stable index 0..3, used for per-path arrays.
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            PathId::Serial => 0,
            PathId::Internal => 1,
            PathId::External => 2,
        }
    }

    /// Lower-case name used in status and events.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            PathId::Serial => "serial",
            PathId::Internal => "internal",
            PathId::External => "external",
        }
    }

    fn from_wire(b: u8) -> Option<PathId> {
        PathId::ALL.get(usize::from(b)).copied()
    }

    fn to_wire(self) -> u8 {
        match self {
            PathId::Serial => 0,
            PathId::Internal => 1,
            PathId::External => 2,
        }
    }
}

/// Role of a node as announced in its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Just started, waiting to hear the peer or for initdead to pass.
    Starting,
    /// Not running the services.
    Passive,
    /// Running the resource chain forward (taking over).
    Acquiring,
    /// Running the services.
    Active,
    /// Running the resource chain backwards (giving up).
    Releasing,
}

impl Role {
    /// True for the roles in which a node holds or is taking the resources.
    #[must_use]
    pub fn holds_resources(self) -> bool {
        matches!(self, Role::Acquiring | Role::Active | Role::Releasing)
    }

    /// Lower-case name used in status and events.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Passive => "passive",
            Role::Acquiring => "acquiring",
            Role::Active => "active",
            Role::Releasing => "releasing",
        }
    }

    fn to_wire(self) -> u8 {
        match self {
            Role::Starting => 0,
            Role::Passive => 1,
            Role::Acquiring => 2,
            Role::Active => 3,
            Role::Releasing => 4,
        }
    }

    fn from_wire(b: u8) -> Option<Role> {
        Some(match b {
            0 => Role::Starting,
            1 => Role::Passive,
            2 => Role::Acquiring,
            3 => Role::Active,
            4 => Role::Releasing,
            _ => return None,
        })
    }
}

/// State of the sender's resource chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceState {
    /// Nothing held.
    Stopped,
    /// Chain running forward.
    Starting,
    /// All resources up.
    Running,
    /// Chain running backwards.
    Stopping,
    /// A resource failed; the chain stopped where it was.
    Failed,
}

impl ResourceState {
    /// Lower-case name used in status.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ResourceState::Stopped => "stopped",
            ResourceState::Starting => "starting",
            ResourceState::Running => "running",
            ResourceState::Stopping => "stopping",
            ResourceState::Failed => "failed",
        }
    }

    fn to_wire(self) -> u8 {
        match self {
            ResourceState::Stopped => 0,
            ResourceState::Starting => 1,
            ResourceState::Running => 2,
            ResourceState::Stopping => 3,
            ResourceState::Failed => 4,
        }
    }

    fn from_wire(b: u8) -> Option<ResourceState> {
        Some(match b {
            0 => ResourceState::Stopped,
            1 => ResourceState::Starting,
            2 => ResourceState::Running,
            3 => ResourceState::Stopping,
            4 => ResourceState::Failed,
            _ => return None,
        })
    }
}

/// Flag bits of the frame's flag byte.
const FLAG_DATA_GOOD: u8 = 0x01;
const FLAG_WANT_SWITCHOVER: u8 = 0x02;
const FLAG_HANDOVER: u8 = 0x04;
const FLAGS_KNOWN: u8 = FLAG_DATA_GOOD | FLAG_WANT_SWITCHOVER | FLAG_HANDOVER;

/// A decoded, authenticated heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Sending node.
    pub sender: NodeId,
    /// Path the sender put this copy on (a frame arriving on another path shows
    /// miswiring or an injection).
    pub path: PathId,
    /// Sender's role.
    pub role: Role,
    /// Sender's resource chain state.
    pub resources: ResourceState,
    /// Sender's replicated data is known good (it may take over).
    pub data_good: bool,
    /// Sender (passive) asks the active node to hand the services over.
    pub want_switchover: bool,
    /// Sender (just released) asks the receiver to take the services.
    pub handover: bool,
    /// Number of ping nodes the sender has configured.
    pub ping_total: u8,
    /// Number of ping nodes the sender currently reaches.
    pub ping_reach: u8,
    /// Sender's boot generation; strictly increases across restarts.
    pub generation: u64,
    /// Sequence number within the generation; one per send tick, same on all paths.
    pub sequence: u64,
    /// The receiver's boot generation as the sender last heard it, 0 when it has not
    /// heard the receiver in its own current generation. A receiver acts on requests
    /// and role claims only in frames that echo its current generation: those were
    /// sent after the peer heard this boot, so they cannot be replays from before it.
    pub your_generation: u64,
    /// SHA-256 digest of the sender's cluster configuration.
    pub config_digest: [u8; DIGEST_LEN],
}

/// Why a buffer is not a valid heartbeat frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a frame.
    #[error("frame truncated: {len} bytes, need {FRAME_LEN}")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// More bytes than a frame.
    #[error("frame oversized: {len} bytes, at most {FRAME_LEN}")]
    Oversized {
        /// Bytes received.
        len: usize,
    },
    /// The magic number is wrong: not a tandem frame.
    #[error("bad magic {found:02x?}")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A version this build does not speak.
    #[error("unsupported frame version {version}")]
    UnsupportedVersion {
        /// Version byte found.
        version: u8,
    },
    /// Not a heartbeat.
    #[error("unknown frame kind {kind}")]
    UnknownKind {
        /// Kind byte found.
        kind: u8,
    },
    /// The length field disagrees with the layout.
    #[error("length field {declared} does not match frame size {FRAME_LEN}")]
    BadLength {
        /// Declared length.
        declared: u16,
    },
    /// The MAC does not verify under the cluster key: forged, corrupted, or another key.
    #[error("authentication failed")]
    BadMac,
    /// An authenticated frame holds a value this version does not define.
    #[error("field {field} has undefined value {value}")]
    BadField {
        /// Field name.
        field: &'static str,
        /// Byte found.
        value: u8,
    },
}

/// The cluster key, ready to sign and verify. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct ClusterKey {
    mac: HmacSha256,
}

impl core::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// The cluster key was unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An empty key would authenticate nothing.
    #[error("cluster key is empty")]
    Empty,
}

impl ClusterKey {
    /// Prepares `key` (any length; at least 32 random bytes recommended).
    ///
    /// # Errors
    /// [`KeyError::Empty`] for an empty key.
    pub fn new(key: &[u8]) -> Result<ClusterKey, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        // HMAC accepts keys of any length, so this cannot fail; map it anyway rather
        // than unwrap so a future hmac change surfaces as an error, not a panic.
        let mac = HmacSha256::new_from_slice(key).map_err(|_| KeyError::Empty)?;
        Ok(ClusterKey { mac })
    }

    fn tag(&self, data: &[u8]) -> [u8; 32] {
        let mut m = self.mac.clone();
        m.update(data);
        m.finalize().into_bytes().into()
    }

    fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut m = self.mac.clone();
        m.update(data);
        // Constant-time comparison inside hmac.
        m.verify_slice(tag).is_ok()
    }
}

/// Encodes `frame` into its [`FRAME_LEN`]-byte wire form, signed with `key`.
#[must_use]
pub fn encode(key: &ClusterKey, frame: &Frame) -> [u8; FRAME_LEN] {
    let mut b = [0u8; FRAME_LEN];
    b[0..4].copy_from_slice(&MAGIC);
    b[4] = VERSION;
    b[5] = KIND_HEARTBEAT;
    // FRAME_LEN is a small constant; the conversion is checked at compile time below.
    b[6..8].copy_from_slice(&FRAME_LEN_U16.to_be_bytes());
    b[8] = frame.sender.to_wire();
    b[9] = frame.role.to_wire();
    b[10] = frame.resources.to_wire();
    let mut flags = 0;
    if frame.data_good {
        flags |= FLAG_DATA_GOOD;
    }
    if frame.want_switchover {
        flags |= FLAG_WANT_SWITCHOVER;
    }
    if frame.handover {
        flags |= FLAG_HANDOVER;
    }
    b[11] = flags;
    b[12] = frame.ping_total;
    b[13] = frame.ping_reach;
    b[14] = frame.path.to_wire();
    b[15] = 0;
    b[16..24].copy_from_slice(&frame.generation.to_be_bytes());
    b[24..32].copy_from_slice(&frame.sequence.to_be_bytes());
    b[32..40].copy_from_slice(&frame.your_generation.to_be_bytes());
    b[40..AUTH_LEN].copy_from_slice(&frame.config_digest);
    let tag = key.tag(&b[..AUTH_LEN]);
    b[AUTH_LEN..].copy_from_slice(&tag);
    b
}

const FRAME_LEN_U16: u16 = 104;
const _: () = assert!(FRAME_LEN_U16 as usize == FRAME_LEN);

/// Decodes and authenticates one frame.
///
/// Structure is checked first (size, magic, version, kind, length), then the MAC,
/// and only then are the fields interpreted, so unauthenticated bytes never reach
/// the field decoders.
///
/// # Errors
/// A [`DecodeError`] naming the first thing that was wrong.
pub fn decode(key: &ClusterKey, buf: &[u8]) -> Result<Frame, DecodeError> {
    if buf.len() < FRAME_LEN {
        // A short buffer with a wrong magic is still reported as what it is first.
        if buf.len() >= 4 && buf[0..4] != MAGIC {
            let mut found = [0u8; 4];
            found.copy_from_slice(&buf[0..4]);
            return Err(DecodeError::BadMagic { found });
        }
        return Err(DecodeError::Truncated { len: buf.len() });
    }
    if buf.len() > FRAME_LEN {
        return Err(DecodeError::Oversized { len: buf.len() });
    }
    let mut found = [0u8; 4];
    found.copy_from_slice(&buf[0..4]);
    if found != MAGIC {
        return Err(DecodeError::BadMagic { found });
    }
    if buf[4] != VERSION {
        return Err(DecodeError::UnsupportedVersion { version: buf[4] });
    }
    if buf[5] != KIND_HEARTBEAT {
        return Err(DecodeError::UnknownKind { kind: buf[5] });
    }
    let declared = u16::from_be_bytes([buf[6], buf[7]]);
    if declared != FRAME_LEN_U16 {
        return Err(DecodeError::BadLength { declared });
    }
    if !key.verify(&buf[..AUTH_LEN], &buf[AUTH_LEN..]) {
        return Err(DecodeError::BadMac);
    }
    let field = |field: &'static str, value: u8| DecodeError::BadField { field, value };
    let sender = NodeId::from_wire(buf[8]).ok_or(field("sender", buf[8]))?;
    let role = Role::from_wire(buf[9]).ok_or(field("role", buf[9]))?;
    let resources = ResourceState::from_wire(buf[10]).ok_or(field("resources", buf[10]))?;
    let flags = buf[11];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(field("flags", flags));
    }
    let ping_total = buf[12];
    let ping_reach = buf[13];
    if ping_reach > ping_total {
        return Err(field("ping_reach", ping_reach));
    }
    let path = PathId::from_wire(buf[14]).ok_or(field("path", buf[14]))?;
    if buf[15] != 0 {
        return Err(field("reserved", buf[15]));
    }
    let mut g = [0u8; 8];
    g.copy_from_slice(&buf[16..24]);
    let mut s = [0u8; 8];
    s.copy_from_slice(&buf[24..32]);
    let mut y = [0u8; 8];
    y.copy_from_slice(&buf[32..40]);
    let mut config_digest = [0u8; DIGEST_LEN];
    config_digest.copy_from_slice(&buf[40..AUTH_LEN]);
    Ok(Frame {
        sender,
        path,
        role,
        resources,
        data_good: flags & FLAG_DATA_GOOD != 0,
        want_switchover: flags & FLAG_WANT_SWITCHOVER != 0,
        handover: flags & FLAG_HANDOVER != 0,
        ping_total,
        ping_reach,
        generation: u64::from_be_bytes(g),
        sequence: u64::from_be_bytes(s),
        your_generation: u64::from_be_bytes(y),
        config_digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Frame {
        Frame {
            sender: NodeId::Node2,
            path: PathId::External,
            role: Role::Active,
            resources: ResourceState::Running,
            data_good: true,
            want_switchover: false,
            handover: true,
            ping_total: 3,
            ping_reach: 2,
            generation: 0x0102_0304_0506_0708,
            sequence: 42,
            your_generation: 0x1112_1314_1516_1718,
            config_digest: [7; DIGEST_LEN],
        }
    }

    fn key() -> ClusterKey {
        ClusterKey::new(b"cluster key for tests").unwrap()
    }

    #[test]
    fn round_trip() {
        let f = sample();
        let b = encode(&key(), &f);
        assert_eq!(decode(&key(), &b), Ok(f));
    }

    #[test]
    fn wrong_key_is_bad_mac() {
        let b = encode(&key(), &sample());
        let other = ClusterKey::new(b"another key").unwrap();
        assert_eq!(decode(&other, &b), Err(DecodeError::BadMac));
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let b = encode(&key(), &sample());
        for i in 0..FRAME_LEN * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert!(decode(&key(), &c).is_err(), "bit {i} flipped was accepted");
        }
    }

    #[test]
    fn sizes_are_checked() {
        let b = encode(&key(), &sample());
        assert_eq!(
            decode(&key(), &b[..FRAME_LEN - 1]),
            Err(DecodeError::Truncated { len: FRAME_LEN - 1 })
        );
        let mut long = [0u8; FRAME_LEN + 1];
        long[..FRAME_LEN].copy_from_slice(&b);
        assert_eq!(
            decode(&key(), &long),
            Err(DecodeError::Oversized { len: FRAME_LEN + 1 })
        );
        assert_eq!(
            decode(&key(), b"GET / HTTP/1.1\r\n"),
            Err(DecodeError::BadMagic { found: *b"GET " })
        );
    }

    #[test]
    fn version_is_checked_before_mac() {
        for old_or_new in [1, 3] {
            let mut b = encode(&key(), &sample());
            b[4] = old_or_new;
            assert_eq!(
                decode(&key(), &b),
                Err(DecodeError::UnsupportedVersion {
                    version: old_or_new
                })
            );
        }
    }

    #[test]
    fn layout_is_fixed() {
        let b = encode(&key(), &sample());
        assert_eq!(b.len(), 104);
        assert_eq!(&b[..8], b"TNDM\x02\x01\x00\x68");
        assert_eq!(b[16..24], 0x0102_0304_0506_0708u64.to_be_bytes());
        assert_eq!(b[24..32], 42u64.to_be_bytes());
        assert_eq!(b[32..40], 0x1112_1314_1516_1718u64.to_be_bytes());
        assert_eq!(b[40..72], [7; DIGEST_LEN]);
    }

    /// The heartbeat fuzz target's seeds are real frames of this layout, signed with the
    /// fuzz target's key: a layout change must come with new seeds.
    #[test]
    fn fuzz_seeds_decode() {
        let fuzz_key = ClusterKey::new(b"fuzz").unwrap();
        for seed in [
            &include_bytes!("../../../fuzz/seeds/heartbeat_frame/active.bin")[..],
            &include_bytes!("../../../fuzz/seeds/heartbeat_frame/handover.bin")[..],
        ] {
            let f = decode(&fuzz_key, seed).unwrap();
            assert_eq!(encode(&fuzz_key, &f)[..], *seed);
        }
    }

    #[test]
    fn empty_key_refused() {
        assert_eq!(ClusterKey::new(b"").err(), Some(KeyError::Empty));
    }

    #[test]
    fn signed_undefined_role_is_a_field_error() {
        // A peer with the right key but a newer, unknown role value.
        let k = key();
        let mut b = encode(&k, &sample());
        b[9] = 9;
        let tag = k.tag(&b[..AUTH_LEN]);
        b[AUTH_LEN..].copy_from_slice(&tag);
        assert_eq!(
            decode(&k, &b),
            Err(DecodeError::BadField {
                field: "role",
                value: 9
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode(&key(), &data);
        }

        #[test]
        fn round_trip_any(gen_: u64, seq: u64, yours: u64, reach in 0u8..5, extra in 0u8..5, digest: [u8; 32], flags in 0u8..8, role in 0u8..5, res in 0u8..5, path in 0u8..3) {
            let f = Frame {
                sender: NodeId::Node1,
                path: PathId::from_wire(path).unwrap(),
                role: Role::from_wire(role).unwrap(),
                resources: ResourceState::from_wire(res).unwrap(),
                data_good: flags & 1 != 0,
                want_switchover: flags & 2 != 0,
                handover: flags & 4 != 0,
                ping_total: reach + extra,
                ping_reach: reach,
                generation: gen_,
                sequence: seq,
                your_generation: yours,
                config_digest: digest,
            };
            proptest::prop_assert_eq!(decode(&key(), &encode(&key(), &f)), Ok(f));
        }
    }
}
