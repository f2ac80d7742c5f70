//! `IndexFile::decode` and `decode_body` (what the local cache keeps), and the in-memory
//! index built from what they accept (`IndexBuilder`, `Index::get`).
//!
//! First input byte picks the mode; the rest is
//! - even: the raw index file bytes;
//! - odd: the plaintext body, sealed here as a valid envelope (public = "CFFI" version,
//!   AAD = those 5 bytes) so the body parser is fuzzed.
//!
//! Whenever decoding succeeds: re-encoding with the same nonce gives the same bytes,
//! `decode_body` agrees with `decode`, every pack's frames fit inside the pack and 32-bit
//! offsets, and every blob is found in the in-memory index inside its frame, with its frame
//! inside its pack.
#![no_main]

mod common;

use coffer::format::index::{self, IndexFile};
use coffer::index::IndexBuilder;
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
    let Ok(idx) = IndexFile::decode(keys, &bytes) else {
        return;
    };
    let again = idx.encode(keys, Some(common::nonce_at(&bytes, 5)));
    assert_eq!(again, bytes, "index does not round-trip");
    let body = idx.encode_body();
    assert_eq!(
        IndexFile::decode_body(&body).expect("an encoded body does not decode"),
        idx
    );
    let mut builder = IndexBuilder::new();
    builder.add_file(&idx);
    let built = builder.build();
    for p in &idx.packs {
        let total: u64 = p.frames.iter().map(|f| f.length as u64).sum();
        assert!(total <= p.size && total <= u32::MAX as u64);
    }
    for p in &idx.packs {
        for f in &p.frames {
            assert!(!f.blobs.is_empty());
            for b in &f.blobs {
                let loc = built.get(&b.id).expect("a listed blob is not in the index");
                assert!(loc.offset as u64 + loc.raw_length as u64 <= loc.frame_raw_length as u64);
                assert!(loc.frame_offset as u64 + loc.frame_length as u64 <= u32::MAX as u64);
                let size = built
                    .packs()
                    .iter()
                    .find(|(id, _)| *id == loc.pack)
                    .map(|(_, size)| *size)
                    .expect("a blob's pack is not in the index");
                assert!(loc.frame_offset as u64 + loc.frame_length as u64 <= size);
            }
        }
    }
});
