//! `Wait::decode`.
//!
//! First input byte picks the mode; the rest is
//! - even: the raw wait record bytes;
//! - odd: the plaintext body, sealed here as a valid envelope (public = "CFFW" version,
//!   AAD = those 5 bytes) so the body parser (and its count) is fuzzed.
//!
//! Whenever decoding succeeds, the record's size must be exactly what its operations take
//! (so the count never claimed more than the bytes held), and re-encoding with the same nonce
//! must give the same bytes.
#![no_main]

mod common;

use coffer::format::gc::{Wait, WAIT_MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = common::raw_or_sealed(data, WAIT_MAGIC) else {
        return;
    };
    let keys = common::keys();
    if let Ok(wait) = Wait::decode(keys, &bytes) {
        // plan name, operation count, operation IDs.
        let body = 32 + 4 + 16 * wait.operations.len();
        assert_eq!(
            bytes.len(),
            common::SMALL_ENVELOPE + body,
            "wait record size"
        );
        let again = wait.encode(keys, Some(common::nonce_at(&bytes, 5)));
        assert_eq!(again, bytes, "wait record does not round-trip");
    }
});
