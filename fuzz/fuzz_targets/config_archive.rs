//! The configuration archive reader on arbitrary bytes: the tar walk, member checks,
//! manifest and configuration parsing, and (for inputs that look encrypted) the age header.
//! It must never panic, and an accepted archive must carry a valid configuration.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_config::archive::read_archive;

fuzz_target!(|data: &[u8]| {
    for pass in [None, Some("fuzz")] {
        if let Ok(c) = read_archive(data, pass) {
            assert!(c.config.validate().is_ok());
            assert_eq!(c.config.cluster.id, c.manifest.cluster_id);
        }
    }
});
