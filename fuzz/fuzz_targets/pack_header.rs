//! `pack::decode_trailer`, `pack::decode_header` and `pack::decode_pack`. (Blobs inside a
//! pack, `pack::open_blob`, have their own target: `blob`.)
//!
//! First input byte picks the mode; the rest is
//! - even: raw bytes, given to `decode_trailer` and to `decode_pack` as a whole pack;
//! - odd: `blobs_len:u32le` then a plaintext header body (`count:u32 entry*`). The body is
//!   sealed here with AAD "coffer pack header v1" and handed to `decode_header`; on success,
//!   `encode_header` with the same nonce must reproduce it. If `blobs_len` is at most 1 MiB a
//!   whole pack (zeroed blob area + sealed header + trailer) is also built and given to
//!   `decode_pack`, which must agree with `decode_header`.
#![no_main]

mod common;

use coffer::format::pack::{self, PackEntry};
use coffer::format::FORMAT_VERSION;
use libfuzzer_sys::fuzz_target;

/// From the `format::pack` module docs (the constant there is private).
const HEADER_AAD: &[u8] = b"coffer pack header v1";
/// Largest blob area built for `decode_pack` in mode 1.
const MAX_BLOBS_LEN: usize = 1 << 20;

fn trailer(header_len: u32) -> Vec<u8> {
    let mut t = pack::MAGIC.to_vec();
    t.push(FORMAT_VERSION);
    t.extend_from_slice(&header_len.to_le_bytes());
    t
}

fn check_pack(pack_bytes: &[u8], decoded: &[(u32, PackEntry)]) {
    // Offsets are the prefix sums of the lengths, and the blobs fit in front of the header.
    let mut offset = 0u64;
    for (at, e) in decoded {
        assert_eq!(*at as u64, offset);
        offset += e.length as u64;
    }
    assert!(offset as usize + pack::TRAILER_LEN <= pack_bytes.len());
}

fn raw(bytes: &[u8]) {
    let keys = common::keys();
    let _ = pack::decode_trailer(bytes);
    if bytes.len() >= pack::TRAILER_LEN {
        let _ = pack::decode_trailer(&bytes[bytes.len() - pack::TRAILER_LEN..]);
    }
    if let Ok(decoded) = pack::decode_pack(keys, bytes) {
        check_pack(bytes, &decoded);
    }
}

fn sealed_header(rest: &[u8]) {
    let keys = common::keys();
    if rest.len() < 4 {
        return;
    }
    let blobs_len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as u64;
    let body = &rest[4..];
    let sealed = keys.seal_with_nonce(common::NONCE, HEADER_AAD, body);
    let header = pack::decode_header(keys, &sealed, blobs_len);
    if let Ok(entries) = &header {
        let total: u64 = entries.iter().map(|e| e.length as u64).sum();
        assert_eq!(total, blobs_len);
        // Round trip: encode_header with the same nonce reproduces header + trailer.
        let mut expected = sealed.clone();
        expected.extend_from_slice(&trailer(sealed.len() as u32));
        assert_eq!(
            pack::encode_header(keys, entries, Some(common::NONCE)),
            expected,
            "pack header does not round-trip"
        );
    }
    if blobs_len as usize <= MAX_BLOBS_LEN {
        let mut pack_bytes = vec![0u8; blobs_len as usize];
        pack_bytes.extend_from_slice(&sealed);
        pack_bytes.extend_from_slice(&trailer(sealed.len() as u32));
        let whole = pack::decode_pack(keys, &pack_bytes);
        let trailer_ok = pack::decode_trailer(&trailer(sealed.len() as u32)).is_ok();
        match (&header, &whole) {
            (Ok(entries), Ok(decoded)) => {
                assert!(trailer_ok);
                assert_eq!(entries.len(), decoded.len());
                for (e, (_, d)) in entries.iter().zip(decoded) {
                    assert_eq!(e, d);
                }
                check_pack(&pack_bytes, decoded);
            }
            (Ok(_), Err(e)) => assert!(!trailer_ok, "decode_pack fails where decode_header succeeds: {e}"),
            (Err(_), Ok(_)) => panic!("decode_pack succeeds where decode_header fails"),
            (Err(_), Err(_)) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(rest)
    } else {
        sealed_header(rest)
    }
});
