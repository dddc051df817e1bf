//! The asking side: offering this node's configuration to the other node and asking
//! for its facts, one connection per question, every step bounded in time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use tandem_config::NodeId;

use super::NodeFacts;
use super::frame::{FrameError, HEADER_LEN, Message, Outcome, SyncKey, body_len, open, seal};

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
