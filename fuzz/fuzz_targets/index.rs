//! `IndexFile::decode`.
//!
//! First input byte picks the mode; the rest is
//! - even: the raw index file bytes;
//! - odd: the plaintext body, sealed here as a valid envelope (public = "CFFI" version,
//!   AAD = those 5 bytes) so the body parser is fuzzed.
//! Whenever decoding succeeds, re-encoding with the same nonce must give the same bytes.
#![no_main]

mod common;

use coffer::format::index::{self, IndexFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = common::keys();
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        common::envelope(&common::magic_and_version(index::MAGIC), rest)
    };
    if let Ok(idx) = IndexFile::decode(keys, &bytes) {
        for p in &idx.packs {
            for b in &p.blobs {
                assert!(b.offset as u64 + b.length as u64 <= p.size);
            }
        }
        let again = idx.encode(keys, Some(common::nonce_at(&bytes, 5)));
        assert_eq!(again, bytes, "index does not round-trip");
    }
});
