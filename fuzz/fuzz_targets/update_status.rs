//! What the update engine answers (`rauc status`, `rauc info` JSON), the update
//! record on the configuration partition, what the other node asks over SSH in a
//! rolling update and the update server's list of bundles: any bytes, never a panic;
//! a status that parses names a booted slot; a command taken is exactly one of the
//! few named; a bundle offered is newer and names a plain file.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_runtime::update::{rauc, record, server};

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = server::parse_index(data)
        && let Some(offer) = server::newest(&index, "0.1.0")
    {
        assert!(!offer.file.contains('/') && !offer.file.starts_with('.'));
        assert_ne!(offer.version, "0.1.0");
    }
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
