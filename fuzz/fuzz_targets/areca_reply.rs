//! Replies of an Areca controller's message unit: any bytes, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tandem_board::areca::decode_areca_reply(data);
});
