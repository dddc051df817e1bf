//! What the update engine answers (`rauc status`, `rauc info` JSON), the update
//! record on the configuration partition and what the other node asks over SSH in a
//! rolling update: any bytes, never a panic; a status that parses names a booted
//! slot; a command taken is exactly one of the few named.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_runtime::update::{rauc, record};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(s) = rauc::parse_status(text) {
        assert!(!s.booted.is_empty() || s.booted_slot().is_none());
    }
    let _ = rauc::parse_info(text);
    if let Ok(c) = tandem_runtime::update::peer::PeerCommand::parse(text) {
        assert_eq!(c.line(), text.trim());
    }
    if let Ok(r) = serde_json::from_str::<record::Record>(text) {
        let _ = record::classify("A", &r);
    }
});
