//! Shared by every target: the fixed test key and the envelope helper.
#![allow(dead_code)]

use coffer::crypto::{Keys, MasterSecret, NONCE_LEN};
use std::sync::OnceLock;

/// Keys derived from the fixed master secret `[7; 32]`, built once per process.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys::derive(&MasterSecret::from_bytes([7u8; 32])))
}

/// Fixed nonce, so a sealed input is a pure function of the fuzz input (reproducible crashes)
/// and so a successfully decoded object can be re-encoded byte for byte.
pub const NONCE: [u8; NONCE_LEN] = [0x5a; NONCE_LEN];

/// `public || seal(aad = public, body)`: the envelope of config, index, snapshot, lock, plan
/// and wait files (see `coffer::format`'s `seal_envelope`, and each module's doc comment for
/// `public`).
pub fn envelope(public: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = public.to_vec();
    out.extend_from_slice(&keys().seal_with_nonce(NONCE, public, body));
    out
}

/// `magic || FORMAT_VERSION`: the 5-byte public part of index, snapshot, lock, plan and
/// wait files.
pub fn magic_and_version(magic: &[u8; 4]) -> Vec<u8> {
    let mut public = magic.to_vec();
    public.push(coffer::format::FORMAT_VERSION);
    public
}

/// The nonce at the front of the sealed box that starts at `public_len`.
pub fn nonce_at(bytes: &[u8], public_len: usize) -> [u8; NONCE_LEN] {
    bytes[public_len..public_len + NONCE_LEN]
        .try_into()
        .expect("a decoded envelope holds a full nonce")
}

/// magic + version, nonce, tag: the bytes a sealed `magic || FORMAT_VERSION` object adds to
/// its body.
pub const SMALL_ENVELOPE: usize = 5 + NONCE_LEN + 16;

/// The bytes to decode for a target whose objects have the public part `magic || version`:
/// the first input byte picks the mode, even for the raw rest (exercises the envelope checks),
/// odd for the rest sealed as a valid envelope (exercises the body parser). `None` for an
/// empty input.
pub fn raw_or_sealed(data: &[u8], magic: &[u8; 4]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    Some(if mode & 1 == 0 {
        rest.to_vec()
    } else {
        envelope(&magic_and_version(magic), rest)
    })
}
