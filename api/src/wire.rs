//! The wire format: one JSON line per message, then the payload the line declares.
//!
//! A request line is a JSON object with `version` ([`crate::API_VERSION`]), the
//! session `token` when the request needs one, `payload` (the number of raw bytes that
//! follow the line; absent for none) and the [`Request`] flattened into it:
//!
//! ```text
//! {"version":2,"request":"status"}
//! {"version":2,"token":"3f…","payload":20480,"request":"check-archive","passphrase":"…"}
//! <20480 bytes of archive>
//! ```
//!
//! A reply line is `{"version":2,"reply":…}` with the same optional `payload`. A
//! request line holds at most [`MAX_REQUEST_LINE`] bytes and a payload at most
//! [`MAX_PAYLOAD`]: the server reads no further and answers [`Refusal::TooLong`] or
//! [`Refusal::Payload`], then closes the connection. One request per line, one reply per
//! request, except `events` with `follow`, whose replies keep coming.

use serde::{Deserialize, Serialize};

use crate::{API_VERSION, Refusal, Reply, Request, Token};

/// Longest request line, without its newline.
pub const MAX_REQUEST_LINE: usize = 16 * 1024;
/// Largest payload either way: a configuration archive (or configuration file).
pub const MAX_PAYLOAD: usize = tandem_config::archive::MAX_ARCHIVE_BYTES;
/// Longest reply line a client reads (a status with every sensor fits many times).
pub const MAX_REPLY_LINE: usize = 4 * 1024 * 1024;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A request as it travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLine {
    /// [`API_VERSION`].
    pub version: u32,
    /// The session's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Token>,
    /// Bytes of payload after the line.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payload: u64,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// A reply as it travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyLine {
    /// [`API_VERSION`].
    pub version: u32,
    /// Bytes of payload after the line.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub payload: u64,
    /// The reply.
    pub reply: Reply,
}

/// What every line has, read before the rest so that a request of another version is
/// answered as such, whatever its shape.
#[derive(Deserialize)]
struct Head {
    version: u32,
    #[serde(default)]
    payload: u64,
}

/// A request line that was read but cannot be served; the payload it declares (to be
/// skipped or refused) comes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// Why.
    pub refusal: Refusal,
    /// The payload declared (0 when the line could not even say).
    pub payload: u64,
}

/// Parses a request line (without its newline).
///
/// # Errors
/// Not JSON, another version, not a request, or a payload beyond [`MAX_PAYLOAD`].
pub fn parse_request(line: &[u8]) -> Result<RequestLine, BadLine> {
    let head: Head = serde_json::from_slice(line).map_err(|e| BadLine {
        refusal: Refusal::Malformed(e.to_string()),
        payload: 0,
    })?;
    let bad = |refusal| BadLine {
        refusal,
        payload: head.payload,
    };
    if head.version != API_VERSION {
        return Err(bad(Refusal::Version {
            got: head.version,
            speaks: API_VERSION,
        }));
    }
    if usize::try_from(head.payload).map_or(true, |p| p > MAX_PAYLOAD) {
        return Err(bad(Refusal::Payload(format!(
            "{} bytes declared, at most {MAX_PAYLOAD} accepted",
            head.payload
        ))));
    }
    serde_json::from_slice(line).map_err(|e| {
        let msg = e.to_string();
        bad(Refusal::Malformed(if msg.contains("unknown variant") {
            format!("unknown request: {msg}")
        } else {
            msg
        }))
    })
}

/// A request line with its newline.
///
/// # Errors
/// Serialising failed (it does not for these types).
pub fn request_line(
    token: Option<&Token>,
    request: &Request,
    payload: usize,
) -> serde_json::Result<Vec<u8>> {
    let mut v = serde_json::to_vec(&RequestLine {
        version: API_VERSION,
        token: token.cloned(),
        payload: payload as u64,
        request: request.clone(),
    })?;
    v.push(b'\n');
    Ok(v)
}

/// A reply line with its newline.
///
/// # Errors
/// Serialising failed (it does not for these types).
pub fn reply_line(reply: &Reply, payload: usize) -> serde_json::Result<Vec<u8>> {
    let mut v = serde_json::to_vec(&ReplyLine {
        version: API_VERSION,
        payload: payload as u64,
        reply: reply.clone(),
    })?;
    v.push(b'\n');
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;

    #[test]
    fn lines_round_trip_with_token_and_payload() {
        let t = Token::from_bytes(&[7; 32]);
        let req = Request::CheckArchive {
            passphrase: Some(Secret::from("p")),
        };
        let line = request_line(Some(&t), &req, 12).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let back = parse_request(&line[..line.len() - 1]).unwrap();
        assert_eq!(back.token, Some(t));
        assert_eq!(back.payload, 12);
        assert_eq!(back.request, req);
        let simple = parse_request(br#"{"version":2,"request":"status"}"#).unwrap();
        assert_eq!((simple.request, simple.payload), (Request::Status, 0));
    }

    #[test]
    fn bad_lines_say_why() {
        let e = parse_request(br#"{"version":1,"request":"status","payload":5}"#).unwrap_err();
        assert_eq!(
            e.refusal,
            Refusal::Version {
                got: 1,
                speaks: API_VERSION
            }
        );
        assert_eq!(e.payload, 5);
        let e = parse_request(br#"{"version":2,"request":"reboot-everything"}"#).unwrap_err();
        assert!(e.refusal.to_string().contains("unknown request"), "{e:?}");
        let e = parse_request(b"xx").unwrap_err();
        assert!(matches!(e.refusal, Refusal::Malformed(_)));
        let big = format!(
            r#"{{"version":2,"request":"status","payload":{}}}"#,
            MAX_PAYLOAD + 1
        );
        let e = parse_request(big.as_bytes()).unwrap_err();
        assert!(matches!(e.refusal, Refusal::Payload(_)), "{e:?}");
    }
}
