//! SDR records as a BMC returns them: any bytes, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tandem_board::ipmi::sdr::decode_sdr(data);
});
