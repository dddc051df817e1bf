//! The OS template check on arbitrary bytes: the compression told by the first bytes,
//! the gzip, xz and zstd decoders, the tar walk and every member check (nothing is
//! written). The input is read as it is and, so that the fuzzer also reaches the tar
//! layer through a decoder, compressed with zstd first. It must never panic, and an
//! accepted tarball must have been read to its end.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_runtime::ve::template::check;

fuzz_target!(|data: &[u8]| {
    let packed = zstd::encode_all(data, 1).unwrap_or_default();
    for input in [data, &packed[..]] {
        if let Ok(c) = check(input, input.len() as u64) {
            assert_eq!(c.file_bytes, input.len() as u64);
        }
    }
});
