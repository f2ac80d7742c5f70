//! `pack::open_frame` and `pack::verify_blob`: authentication, the codec byte, zstd
//! decompression (capped at `compress::MAX_BLOB_SIZE`), the frame's length check, and the
//! blob-ID check of each blob cut from the opened frame.
//!
//! Input: `type:u8 codec:u8 shape:u8 payload`. `codec payload` is sealed here as a frame of
//! that type (AAD = "coffer frame v2" type, from the `format::pack` module docs), so every
//! input gets past authentication. The low 3 bits of `shape` cut the payload into 1..=8 blobs
//! (equal shares, the last takes the rest); bit 7 set makes the header lie about the frame's
//! length by one byte.
//!
//! A stored (codec 0) frame must open to `payload` when the length is right and be refused
//! when it is not; each blob must then verify under its own ID and type and not under
//! another type, and a blob cut one byte too long must fail. Other codecs must fail, or
//! return exactly the declared length, without panicking. For stored inputs, `seal_frame`'s
//! output (zstd or raw, as the writer decides) must open to the same plaintext.
#![no_main]

mod common;

use coffer::format::pack;
use coffer::format::BlobType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let keys = common::keys();
    let [ty, codec, shape, payload @ ..] = data else {
        return;
    };
    // Out-of-range types cannot be sealed by the writer; fold them onto the real ones.
    let blob_type = BlobType::from_u8(*ty % 3).expect("0..=2 are blob types");
    let other = BlobType::from_u8((*ty % 3 + 1) % 3).expect("0..=2 are blob types");
    let mut aad = *b"coffer frame v2\0";
    aad[15] = blob_type as u8;
    let mut framed = vec![*codec];
    framed.extend_from_slice(payload);
    let sealed = keys.seal_with_nonce(common::NONCE, &aad, &framed);
    let lie = shape & 0x80 != 0;
    let raw_length = payload.len() as u64 + lie as u64;
    let opened = pack::open_frame(keys, blob_type, &sealed, raw_length);
    if let Ok(plain) = &opened {
        assert_eq!(
            plain.len() as u64,
            raw_length,
            "open_frame ignores the length"
        );
    }
    if *codec != 0 {
        return;
    }
    if lie {
        assert!(opened.is_err(), "a frame of the wrong length opens");
        return;
    }
    let plain = opened.expect("stored frame fails to open");
    assert_eq!(plain, payload);
    // The box binds the type.
    assert!(pack::open_frame(keys, other, &sealed, raw_length).is_err());

    // Cut the plaintext into blobs, as a header's raw lengths would.
    let n = (shape & 7) as usize + 1;
    let mut cuts = vec![0];
    for k in 1..n {
        cuts.push(payload.len() * k / n);
    }
    cuts.push(payload.len());
    for w in cuts.windows(2) {
        let blob = &plain[w[0]..w[1]];
        let id = keys.blob_id(blob_type as u8, blob);
        pack::verify_blob(keys, blob_type, &id, blob).expect("a blob fails its own ID");
        assert!(pack::verify_blob(keys, other, &id, blob).is_err());
        if w[1] < plain.len() {
            let longer = &plain[w[0]..w[1] + 1];
            assert!(pack::verify_blob(keys, blob_type, &id, longer).is_err());
        }
    }

    // The writer's path round-trips (zstd level 1 keeps this cheap).
    let sealed = pack::seal_frame(keys, blob_type, payload, 1);
    assert_eq!(
        pack::open_frame(keys, blob_type, &sealed, payload.len() as u64)
            .expect("seal_frame output fails to open"),
        payload
    );
});
