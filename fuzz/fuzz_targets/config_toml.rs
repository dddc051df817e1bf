//! The configuration parser on arbitrary text. It must never panic, and whatever it accepts
//! must write back to TOML that reads as the same configuration.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_config::ApplianceConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = ApplianceConfig::from_toml(text) {
        let again = ApplianceConfig::from_toml(&cfg.to_toml()).expect("normalised form reads back");
        assert_eq!(again, cfg);
        let _ = cfg.to_toml_redacted();
    }
});
