//! `Snapshot::decode`.
//!
//! First input byte picks the mode; the rest is
//! - even: the raw snapshot file bytes;
//! - odd: the plaintext body, sealed here as a valid envelope (public = "CFFS" version,
//!   AAD = those 5 bytes) so the body parser is fuzzed.
//!
//! Whenever decoding succeeds, the lengths must validate and re-encoding with the same
//! nonce must give the same bytes.
#![no_main]

mod common;

use coffer::format::snapshot::{self, Snapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = common::keys();
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        common::envelope(&common::magic_and_version(snapshot::MAGIC), rest)
    };
    if let Ok(snap) = Snapshot::decode(keys, &bytes) {
        snap.validate_lengths()
            .expect("a decoded snapshot fails validate_lengths");
        let again = snap.encode(keys, Some(common::nonce_at(&bytes, 5)));
        assert_eq!(again, bytes, "snapshot does not round-trip");
    }
});
