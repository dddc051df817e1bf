//! Frames of the configuration exchange as they arrive on the crossover link: any
//! bytes, never a panic, nothing without the cluster key is accepted.
//!
//! A fuzzer cannot forge the AEAD tag, so raw input alone would never reach the message
//! decoder. Each input is therefore tried twice: as a frame as it is, and as the
//! plaintext of a frame sealed under the key, as a peer holding the key but sending
//! arbitrary messages would.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_config::NodeId;
use tandem_runtime::confsync::{HEADER_LEN, SyncKey, body_len, open, seal_raw};

fuzz_target!(|data: &[u8]| {
    let key = SyncKey::derive(b"fuzz");
    if data.len() >= HEADER_LEN {
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&data[..HEADER_LEN]);
        if let Ok(len) = body_len(&header) {
            let body = &data[HEADER_LEN..];
            let body = &body[..len.min(body.len())];
            for kind in [b'O', b'R', b'D', b'F'] {
                assert!(
                    open(&key, NodeId::Node1, kind, body).is_err(),
                    "forged frame accepted"
                );
            }
        }
    }
    // Authentic frames of every kind with arbitrary plaintext.
    let kind = [b'O', b'R', b'D', b'F'][usize::from(data.first().copied().unwrap_or(0) % 4)];
    let frame = seal_raw(&key, NodeId::Node2, kind, data);
    let _ = open(&key, NodeId::Node2, kind, &frame[HEADER_LEN..]);
});
