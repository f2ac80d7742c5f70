//! `Lock::decode`.
//!
//! First input byte picks the mode; the rest is
//! - even: the raw lock file bytes;
//! - odd: the plaintext body, sealed here as a valid envelope (public = "CFFL" version,
//!   AAD = those 5 bytes) so the body parser is fuzzed.
//!
//! Whenever decoding succeeds, the lock must validate, its kind must be a known one, its size
//! must be exactly what its fields take, and re-encoding with the same nonce must give the
//! same bytes.
#![no_main]

mod common;

use coffer::format::gc::{Lock, LOCK_MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = common::raw_or_sealed(data, LOCK_MAGIC) else {
        return;
    };
    let keys = common::keys();
    if let Ok(lock) = Lock::decode(keys, &bytes) {
        lock.validate().expect("a decoded lock fails validate");
        assert!(matches!(lock.kind.name(), "backup" | "prune"));
        // operation, kind, counter, pid, host length, host.
        let body = 16 + 1 + 8 + 4 + 2 + lock.host.len();
        assert_eq!(bytes.len(), common::SMALL_ENVELOPE + body, "lock size");
        let again = lock.encode(keys, Some(common::nonce_at(&bytes, 5)));
        assert_eq!(again, bytes, "lock does not round-trip");
    }
});
