//! `chronyc -c tracking` output as clusterd reads it: any text, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(t) = tandem_runtime::chrony::parse_tracking(text)
    {
        let _ = t.synchronised();
    }
});
