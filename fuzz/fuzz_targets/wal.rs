//! `WalHeader::decode` (a WAL file's header, from the object's first bytes) and
//! `WalHeader::decode_file` (the whole object: both boxes, the codec, the size and the hash).
//!
//! First input byte picks the mode; the rest is
//! - `mode % 4` 0 or 2: the raw stored object;
//! - 1: `n:u8`, the header's plaintext (n bytes, or what there is), then the stored body (the
//!   rest), sealed here as a writer seals them (`"CFFA" 3 h:u16`, the header box with those 7
//!   bytes as associated data, the body box with every byte before it), so the header parser
//!   and the codec checks behind the boxes are reached;
//! - 3: as 1, but first the header's size and hash are set to those of the body decompressed
//!   by a reference (`zstd::bulk::decompress` up to 1 MiB, if the header's last byte says
//!   zstd; the body itself otherwise), so fuzzed zstd bodies reach the end of `decode_file`,
//!   which must then agree with the reference.
//!
//! Whenever `decode` succeeds, the header is valid, its box ends where the prefix says, the
//! first `HEAD_LEN` bytes alone give the same header, and encoding it again with the same
//! nonce gives the same bytes. Whenever `decode_file` succeeds, it agrees with `decode`, the
//! file has the header's length and hash, and encoding the opened body again with the same
//! nonces gives the object byte for byte.
#![no_main]

mod common;

use coffer::crypto::NONCE_LEN;
use coffer::format::wal::{
    WalCodec, WalHeader, HEAD_LEN, MAX_FILE_LEN, MAX_NAME_LEN, PREFIX_LEN, WAL_MAGIC,
};
use coffer::format::FORMAT_VERSION;
use coffer::id::object_hash;
use libfuzzer_sys::fuzz_target;

/// The body box's nonce (the header box uses `common::NONCE`).
const BODY_NONCE: [u8; NONCE_LEN] = [0xa5; NONCE_LEN];

/// The reference's limit: more is never fixed up, so `decode_file` never inflates much.
const REFERENCE_LIMIT: usize = 1 << 20;

/// Seal a header plaintext and a stored body into an object.
fn seal(plain: &[u8], stored: &[u8]) -> Vec<u8> {
    let keys = common::keys();
    let mut obj = WAL_MAGIC.to_vec();
    obj.push(FORMAT_VERSION);
    obj.extend_from_slice(&((plain.len() + 40) as u16).to_le_bytes());
    let header = keys.seal_with_nonce(common::NONCE, &obj, plain);
    obj.extend_from_slice(&header);
    let body = keys.seal_with_nonce(BODY_NONCE, &obj, stored);
    obj.extend_from_slice(&body);
    obj
}

/// Mode 3: write the reference's size and hash of the file into the plaintext, where a header
/// with this name length has them (kind, name, system id, timeline, start LSN, segment size,
/// then size and hash). Returns the reference's file.
fn fix_up(plain: &mut [u8], stored: &[u8]) -> Option<Vec<u8>> {
    let name_len = u16::from_le_bytes(plain.get(1..3)?.try_into().ok()?) as usize;
    let size_at = 3 + name_len + 8 + 4 + 8 + 4;
    let file = match plain.last()? {
        1 => zstd::bulk::decompress(stored, REFERENCE_LIMIT).ok()?,
        _ => stored.to_vec(),
    };
    plain
        .get_mut(size_at..size_at + 8)?
        .copy_from_slice(&(file.len() as u64).to_le_bytes());
    plain
        .get_mut(size_at + 8..size_at + 40)?
        .copy_from_slice(&object_hash(&file));
    Some(file)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut reference = None;
    let bytes = match mode % 4 {
        0 | 2 => rest.to_vec(),
        _ => {
            let Some((&n, rest)) = rest.split_first() else {
                return;
            };
            let (plain, stored) = rest.split_at((n as usize).min(rest.len()));
            let mut plain = plain.to_vec();
            if mode % 4 == 3 {
                reference = fix_up(&mut plain, stored);
            }
            seal(&plain, stored)
        }
    };
    let keys = common::keys();

    let head = WalHeader::decode(keys, &bytes);
    if let Ok((h, body_at)) = &head {
        h.validate().expect("a decoded header fails validate");
        assert!(h.size <= MAX_FILE_LEN && !h.name.is_empty() && h.name.len() <= MAX_NAME_LEN);
        let box_len = u16::from_le_bytes([bytes[5], bytes[6]]) as usize;
        assert_eq!(*body_at, PREFIX_LEN + box_len, "where the body starts");
        let (again, at) = WalHeader::decode(keys, &bytes[..HEAD_LEN.min(bytes.len())])
            .expect("the first HEAD_LEN bytes hold the header");
        assert_eq!(
            (&again, at),
            (h, *body_at),
            "the header alone reads differently"
        );
        let nonces = (common::nonce_at(&bytes, PREFIX_LEN), BODY_NONCE);
        let encoded = h
            .encode(keys, b"", Some(nonces))
            .expect("a valid header encodes");
        assert_eq!(
            encoded[..*body_at],
            bytes[..*body_at],
            "the header does not round-trip"
        );
    }

    match WalHeader::decode_file(keys, &bytes) {
        Ok((h, file)) => {
            let (first, body_at) = head.expect("decode_file read a header decode refuses");
            assert_eq!(h, first, "decode and decode_file disagree");
            assert_eq!(file.len() as u64, h.size, "file length");
            assert_eq!(object_hash(&file), h.hash, "file hash");
            let stored = keys
                .open(&bytes[..body_at], &bytes[body_at..])
                .expect("decode_file opened this body");
            if h.codec == WalCodec::Raw {
                assert_eq!(stored, file, "a raw body is the file");
            }
            if let Some(r) = reference {
                assert_eq!(r, file, "decode_file and the reference zstd disagree");
            }
            let nonces = (
                common::nonce_at(&bytes, PREFIX_LEN),
                common::nonce_at(&bytes, body_at),
            );
            let again = h.encode(keys, &stored, Some(nonces)).expect("encodes");
            assert_eq!(again, bytes, "the WAL file does not round-trip");
        }
        Err(e) => {
            // The reference read the body and set the header's size and hash from it: a
            // valid header then opens, unless its zstd frame does not declare that size.
            if let (Some(r), Ok((h, body_at))) = (&reference, &head) {
                let stored = keys
                    .open(&bytes[..*body_at], &bytes[*body_at..])
                    .expect("sealed here");
                let declared = zstd::zstd_safe::get_frame_content_size(&stored)
                    .ok()
                    .flatten();
                assert!(
                    h.codec == WalCodec::Zstd && declared != Some(r.len() as u64),
                    "decode_file refused what the reference read: {e}"
                );
            }
        }
    }
});
