//! `pack::open_blob`: authentication, the codec byte, zstd decompression (capped at
//! `compress::MAX_BLOB_SIZE`) and the blob-ID check.
//!
//! Input: `type:u8 codec:u8 payload`. `codec payload` is sealed here as a blob of that type
//! (AAD = "coffer blob v1\0" type, from the `format::pack` module docs), so every input gets
//! past authentication, and opened with `id = blob_id(type, payload)`: a stored (codec 0) blob must
//! open to `payload`; other codecs must fail or decompress without panicking. For stored
//! inputs, `seal_blob`'s output must also open to the same plaintext.
#![no_main]

mod common;

use coffer::format::pack;
use coffer::format::BlobType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = common::keys();
    let [ty, codec, payload @ ..] = data else {
        return;
    };
    // Out-of-range types cannot be sealed by the writer; fold them onto the real ones.
    let blob_type = BlobType::from_u8(*ty % 3).expect("0..=2 are blob types");
    let mut aad = *b"coffer blob v1\0";
    aad[14] = blob_type as u8;
    let mut framed = vec![*codec];
    framed.extend_from_slice(payload);
    let sealed = keys.seal_with_nonce(common::NONCE, &aad, &framed);
    let id = keys.blob_id(blob_type as u8, payload);
    let opened = pack::open_blob(keys, blob_type, &id, &sealed);
    if *codec == 0 {
        assert_eq!(opened.expect("stored blob fails to open"), payload);
        // A blob sealed as another type must not open (the type is in the AAD).
        let other = BlobType::from_u8((*ty % 3 + 1) % 3).unwrap();
        assert!(pack::open_blob(keys, other, &id, &sealed).is_err());
        // The writer's path round-trips (zstd level 1 keeps this cheap).
        let sealed = pack::seal_blob(keys, blob_type, payload, 1);
        assert_eq!(
            pack::open_blob(keys, blob_type, &id, &sealed).expect("seal_blob output fails to open"),
            payload
        );
    }
});
