//! Heartbeat frames as they arrive on the LANs: any bytes, never a panic, nothing
//! without the cluster key's MAC is accepted, and every accepted frame re-encodes to
//! the very bytes it came from (the layout is canonical), which decode to the same
//! frame again.
//!
//! A fuzzer cannot forge HMAC-SHA256, so raw input alone would almost never get past
//! the MAC to the field decoders. Each input is therefore tried twice: as it is, and
//! with its first bytes (header and body) signed under the key, as a peer holding the
//! key but sending arbitrary field values would.

#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use tandem_proto::{ClusterKey, FRAME_LEN, decode, encode};

const KEY: &[u8] = b"fuzz";
/// HMAC-SHA256 tag at the end of every frame.
const MAC_LEN: usize = 32;

fn check(key: &ClusterKey, bytes: &[u8]) {
    let Ok(frame) = decode(key, bytes) else {
        return;
    };
    let again = encode(key, &frame);
    assert_eq!(&again[..], bytes, "accepted frame does not re-encode to its bytes");
    assert_eq!(decode(key, &again), Ok(frame), "re-encoded frame decodes differently");
}

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::new(KEY).expect("non-empty key");
    check(&key, data);
    if let Some(body) = data.get(..FRAME_LEN - MAC_LEN) {
        let mut signed = [0u8; FRAME_LEN];
        signed[..body.len()].copy_from_slice(body);
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).expect("hmac takes any key length");
        mac.update(body);
        signed[body.len()..].copy_from_slice(&mac.finalize().into_bytes());
        check(&key, &signed);
    }
});
