//! Line noise on the serial cable: the deframer must never panic and must
//! stay bounded whatever arrives.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_proto::SerialDeframer;

fuzz_target!(|data: &[u8]| {
    let mut d = SerialDeframer::new();
    for &b in data {
        if let Some(Ok(frame)) = d.push(b) {
            assert!(frame.len() <= tandem_proto::MAX_SERIAL_FRAME);
        }
    }
});
