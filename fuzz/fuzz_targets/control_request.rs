//! Request lines of the control API as clusterd reads them from its socket (the web
//! console's process is one client, and it parses what the network sends it): any
//! bytes, never a panic; a line that parses serialises back to one that parses to the
//! same request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem_api::wire::{parse_request, request_line};

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = parse_request(data) {
        let again = request_line(
            line.token.as_ref(),
            &line.request,
            usize::try_from(line.payload).unwrap_or(usize::MAX),
        )
        .expect("a parsed request serialises");
        let back = parse_request(&again[..again.len() - 1]).expect("and parses again");
        assert_eq!(back, line);
    }
});
