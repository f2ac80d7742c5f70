//! `pack::decode_trailer`, `pack::decode_header`, `pack::decode_pack` and
//! `pack::frame_offsets`. (Opening the frames themselves, `pack::open_frame`, has its own
//! target: `frame`.)
//!
//! First input byte picks the mode; the rest is
//! - even: raw bytes, given to `decode_trailer` and to `decode_pack` as a whole pack;
//! - odd: `frames_len:u32le` then a plaintext header body (`frame_count:u32 frame*`). The
//!   body is sealed here with AAD "coffer pack header v2" and handed to `decode_header`; on
//!   success, `encode_header` with the same nonce must reproduce it. If `frames_len` is at
//!   most 1 MiB a whole pack (zeroed frame area + sealed header + trailer) is also built and
//!   given to `decode_pack`, which must agree with `decode_header`.
//!
//! Whatever decodes must obey the format's rules (spec §5.4): every frame longer than a
//! seal, with at least one blob and at most 64 MiB of plaintext; frames tiling the frame
//! area from offset 0.
#![no_main]

mod common;

use coffer::compress::MAX_BLOB_SIZE;
use coffer::crypto::SEAL_OVERHEAD;
use coffer::format::pack::{self, Frame};
use coffer::format::FORMAT_VERSION;
use libfuzzer_sys::fuzz_target;

/// From the `format::pack` module docs (the constant there is private).
const HEADER_AAD: &[u8] = b"coffer pack header v2";
/// Largest frame area built for `decode_pack` in mode 1.
const MAX_FRAMES_LEN: usize = 1 << 20;

fn trailer(header_len: u32) -> Vec<u8> {
    let mut t = pack::MAGIC.to_vec();
    t.push(FORMAT_VERSION);
    t.extend_from_slice(&header_len.to_le_bytes());
    t
}

/// The rules every decoded frame table obeys; returns the length of the frame area.
fn check_frames(frames: &[Frame]) -> u64 {
    let mut offset = 0u64;
    for (at, f) in pack::frame_offsets(frames) {
        assert_eq!(at as u64, offset, "frames do not tile from 0");
        assert!(f.length as usize > SEAL_OVERHEAD);
        assert!(!f.blobs.is_empty());
        assert!(f.raw_length() <= MAX_BLOB_SIZE as u64);
        offset += f.length as u64;
    }
    assert!(offset <= u32::MAX as u64);
    offset
}

fn check_pack(pack_bytes: &[u8], decoded: &[Frame]) {
    let frames_len = check_frames(decoded);
    let header_len = pack::decode_trailer(&pack_bytes[pack_bytes.len() - pack::TRAILER_LEN..])
        .expect("decode_pack accepted a bad trailer");
    assert_eq!(
        frames_len as usize + header_len as usize + pack::TRAILER_LEN,
        pack_bytes.len()
    );
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
    let frames_len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as u64;
    let body = &rest[4..];
    let sealed = keys.seal_with_nonce(common::NONCE, HEADER_AAD, body);
    let header = pack::decode_header(keys, &sealed, frames_len);
    if let Ok(frames) = &header {
        assert_eq!(check_frames(frames), frames_len);
        // Round trip: encode_header with the same nonce reproduces header + trailer.
        let mut expected = sealed.clone();
        expected.extend_from_slice(&trailer(sealed.len() as u32));
        assert_eq!(
            pack::encode_header(keys, frames, Some(common::NONCE)),
            expected,
            "pack header does not round-trip"
        );
    }
    if frames_len as usize <= MAX_FRAMES_LEN {
        let mut pack_bytes = vec![0u8; frames_len as usize];
        pack_bytes.extend_from_slice(&sealed);
        pack_bytes.extend_from_slice(&trailer(sealed.len() as u32));
        let whole = pack::decode_pack(keys, &pack_bytes);
        let trailer_ok = pack::decode_trailer(&trailer(sealed.len() as u32)).is_ok();
        match (&header, &whole) {
            (Ok(frames), Ok(decoded)) => {
                assert!(trailer_ok);
                assert_eq!(frames, decoded);
                check_pack(&pack_bytes, decoded);
            }
            (Ok(_), Err(e)) => assert!(
                !trailer_ok,
                "decode_pack fails where decode_header succeeds: {e}"
            ),
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
