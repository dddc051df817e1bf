//! The VE backup reader on arbitrary bytes: the zstd stream, the tar walk, the manifest
//! and every member check, without a staging directory (nothing is written). The input
//! is read as it is and, so that the fuzzer reaches the tar and manifest layers, also
//! as the decompressed stream (compressed here first). It must never panic, and an
//! accepted backup's manifest must pass its own check.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_runtime::ve::archive::{read_backup, read_manifest};

fuzz_target!(|data: &[u8]| {
    let packed = zstd::encode_all(data, 1).unwrap_or_default();
    for input in [data, &packed[..]] {
        if let Ok(m) = read_backup(input, &mut |_| Ok(None), &mut |_| {}) {
            assert!(m.check().is_ok());
        }
        let _ = read_manifest(input);
    }
});
