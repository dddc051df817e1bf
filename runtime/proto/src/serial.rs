//! Byte-stream framing for the serial heartbeat path.
//!
//! Each frame is COBS-encoded (so it contains no zero byte) and written between zero
//! delimiters: `00 <cobs bytes> 00`. The leading delimiter flushes whatever line noise
//! the receiver has accumulated, so a frame after noise is never lost with it. The
//! receiver needs no length field and resynchronises at the next zero whatever it saw.

use crate::FRAME_LEN;

/// Largest payload the deframer accepts (one heartbeat frame).
pub const MAX_SERIAL_FRAME: usize = FRAME_LEN;
/// COBS adds one code byte per 254 data bytes, plus the leading code byte.
const MAX_ENCODED: usize = MAX_SERIAL_FRAME + MAX_SERIAL_FRAME / 254 + 1;
/// Bytes [`encode_serial`] writes for a full frame (payload, overhead, two delimiters).
pub const SERIAL_BUF_LEN: usize = MAX_ENCODED + 2;

/// Why a delimited chunk of the serial stream was not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeframeError {
    /// More bytes than any frame before a delimiter (noise or a lost delimiter).
    #[error("serial chunk longer than {MAX_ENCODED} bytes discarded")]
    Overlong,
    /// The chunk is not valid COBS (noise or a corrupted frame).
    #[error("serial chunk of {len} bytes is not a valid encoding")]
    BadEncoding {
        /// Bytes in the chunk.
        len: usize,
    },
}

/// Writes `payload` (at most [`MAX_SERIAL_FRAME`] bytes) as a delimited COBS frame
/// into `out` and returns the bytes to send, or `None` if the payload is too long.
pub fn encode_serial<'a>(payload: &[u8], out: &'a mut [u8; SERIAL_BUF_LEN]) -> Option<&'a [u8]> {
    if payload.len() > MAX_SERIAL_FRAME {
        return None;
    }
    out[0] = 0;
    let mut code_at = 1;
    let mut w = 2;
    let mut code: u8 = 1;
    for &b in payload {
        if b == 0 {
            out[code_at] = code;
            code_at = w;
            w += 1;
            code = 1;
        } else {
            out[w] = b;
            w += 1;
            code += 1;
            if code == 0xFF {
                out[code_at] = code;
                code_at = w;
                w += 1;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    out[w] = 0;
    w += 1;
    Some(&out[..w])
}

/// Resynchronising receiver state machine: feed it bytes one at a time.
#[derive(Debug, Clone)]
pub struct SerialDeframer {
    raw: [u8; MAX_ENCODED],
    len: usize,
    /// Skipping to the next delimiter after an overlong chunk.
    discarding: bool,
    out: [u8; MAX_SERIAL_FRAME],
}

impl Default for SerialDeframer {
    fn default() -> Self {
        Self::new()
    }
}

impl SerialDeframer {
    /// An empty deframer.
    #[must_use]
    pub fn new() -> Self {
        SerialDeframer {
            raw: [0; MAX_ENCODED],
            len: 0,
            discarding: false,
            out: [0; MAX_SERIAL_FRAME],
        }
    }

    /// Feeds one byte. Returns a decoded payload or an error when `byte` ends a chunk;
    /// `None` while inside a chunk or for empty chunks (back-to-back delimiters).
    pub fn push(&mut self, byte: u8) -> Option<Result<&[u8], DeframeError>> {
        if byte != 0 {
            if self.discarding {
                return None;
            }
            if self.len == MAX_ENCODED {
                self.discarding = true;
                self.len = 0;
                return Some(Err(DeframeError::Overlong));
            }
            self.raw[self.len] = byte;
            self.len += 1;
            return None;
        }
        let len = core::mem::replace(&mut self.len, 0);
        if core::mem::replace(&mut self.discarding, false) || len == 0 {
            return None;
        }
        match cobs_decode(&self.raw[..len], &mut self.out) {
            Some(n) => Some(Ok(&self.out[..n])),
            None => Some(Err(DeframeError::BadEncoding { len })),
        }
    }
}

fn cobs_decode(src: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut r = 0;
    let mut w = 0;
    while r < src.len() {
        let code = usize::from(src[r]);
        if code == 0 || r + code > src.len() {
            return None;
        }
        r += 1;
        for _ in 1..code {
            *out.get_mut(w)? = src[r];
            w += 1;
            r += 1;
        }
        // A zero follows each block except a full (0xFF) one and the last one.
        if code != 0xFF && r < src.len() {
            *out.get_mut(w)? = 0;
            w += 1;
        }
    }
    Some(w)
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::*;

    fn frame_bytes(seed: u8) -> [u8; FRAME_LEN] {
        let mut f = [0u8; FRAME_LEN];
        for (i, b) in f.iter_mut().enumerate() {
            // Plenty of zeros, as real frames have.
            *b = if i % 5 == 0 {
                0
            } else {
                seed.wrapping_add(u8::try_from(i).unwrap())
            };
        }
        f
    }

    fn feed(d: &mut SerialDeframer, bytes: &[u8], got: &mut Vec<Vec<u8>>, errs: &mut usize) {
        for &b in bytes {
            match d.push(b) {
                Some(Ok(p)) => got.push(p.to_vec()),
                Some(Err(_)) => *errs += 1,
                None => {}
            }
        }
    }

    #[test]
    fn round_trip() {
        let f = frame_bytes(3);
        let mut buf = [0u8; SERIAL_BUF_LEN];
        let wire = encode_serial(&f, &mut buf).unwrap().to_vec();
        assert!(!wire[1..wire.len() - 1].contains(&0));
        let mut d = SerialDeframer::new();
        let (mut got, mut errs) = (Vec::new(), 0);
        feed(&mut d, &wire, &mut got, &mut errs);
        assert_eq!(got, vec![f.to_vec()]);
        assert_eq!(errs, 0);
    }

    #[test]
    fn resynchronises_after_noise() {
        let f = frame_bytes(9);
        let mut buf = [0u8; SERIAL_BUF_LEN];
        let wire = encode_serial(&f, &mut buf).unwrap().to_vec();
        let mut d = SerialDeframer::new();
        let (mut got, mut errs) = (Vec::new(), 0);
        // Noise, then half a frame, then 500 bytes without delimiter, then two frames.
        feed(&mut d, &[0x41, 0x42, 0x43], &mut got, &mut errs);
        feed(&mut d, &wire[..40], &mut got, &mut errs);
        feed(&mut d, &[0x55; 500], &mut got, &mut errs);
        feed(&mut d, &wire, &mut got, &mut errs);
        feed(&mut d, &wire, &mut got, &mut errs);
        assert_eq!(got, vec![f.to_vec(), f.to_vec()]);
        // The noise chunk and the overlong chunk, each reported once.
        assert_eq!(errs, 2);
    }

    #[test]
    fn too_long_payload_refused() {
        let mut buf = [0u8; SERIAL_BUF_LEN];
        assert!(encode_serial(&[1u8; MAX_SERIAL_FRAME + 1], &mut buf).is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_payload_round_trips(p in proptest::collection::vec(proptest::num::u8::ANY, 1..=MAX_SERIAL_FRAME), noise in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut buf = [0u8; SERIAL_BUF_LEN];
            let wire = encode_serial(&p, &mut buf).unwrap().to_vec();
            let mut d = SerialDeframer::new();
            let (mut got, mut errs) = (Vec::new(), 0);
            feed(&mut d, &noise, &mut got, &mut errs);
            got.clear();
            feed(&mut d, &wire, &mut got, &mut errs);
            // The leading delimiter may flush the noise as a (garbage) payload first;
            // the frame itself always comes out intact and last.
            proptest::prop_assert!(got.len() <= 2);
            proptest::prop_assert_eq!(got.last(), Some(&p));
        }
    }
}
