//! `KeyFile::decode` (and, with tiny argon2 parameters only, `KeyFile::unwrap`).
//!
//! Argon2 runs on every unwrap, so cost is capped: `unwrap` is only called when the decoded
//! parameters are at most 64 KiB x 2 passes x 1 lane. First input byte picks the mode; the
//! rest is
//! - even: raw key file bytes, decoded; on success re-encoding must reproduce them and, if the
//!   parameters are tiny, unwrapping with a guessed password must fail cleanly;
//! - odd: fields for `KeyFile::create` (tiny argon2 params, password, host, user, a byte to
//!   flip). The created file must round-trip, unwrap to the master secret with the right
//!   password, refuse a wrong one, and refuse (decode or unwrap) after any single byte flip.
#![no_main]

mod common;

use coffer::crypto::{KdfParams, MasterSecret};
use coffer::format::keyfile::KeyFile;
use coffer::ErrorKind;
use libfuzzer_sys::fuzz_target;

fn tiny(kdf: &KdfParams) -> bool {
    kdf.memory_kib <= 64 && kdf.iterations <= 2 && kdf.parallelism <= 1
}

fn raw(bytes: &[u8]) {
    if let Ok(kf) = KeyFile::decode(bytes) {
        assert!(kf.kdf.is_within_bounds());
        assert_eq!(kf.encode(), bytes, "key file does not round-trip");
        if tiny(&kf.kdf) {
            let _ = kf.unwrap(b"correct horse");
        }
    }
}

/// Take `n` bytes (fewer at the end of input).
fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

fn byte(data: &mut &[u8]) -> u8 {
    take(data, 1).first().copied().unwrap_or(0)
}

fn field<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let n = byte(data) as usize;
    take(data, n)
}

fn created(mut data: &[u8]) {
    let kdf = KdfParams {
        memory_kib: 8 + (byte(&mut data) % 57) as u32, // 8..=64
        iterations: 1 + (byte(&mut data) % 2) as u32,  // 1..=2
        parallelism: 1,
    };
    let mut ns = [0u8; 8];
    let t = take(&mut data, 8);
    ns[..t.len()].copy_from_slice(t);
    let created_ns = i64::from_le_bytes(ns);
    let flip_at = u16::from_le_bytes([byte(&mut data), byte(&mut data)]) as usize;
    let flip_mask = byte(&mut data) | 1;
    let password = field(&mut data);
    let host = String::from_utf8_lossy(field(&mut data)).into_owned();
    let user = String::from_utf8_lossy(data).into_owned();
    if user.len() > u16::MAX as usize {
        return; // create() rightly refuses it; not interesting here
    }
    let mut salt = [0u8; 32];
    salt[0] = flip_mask;
    let master = MasterSecret::from_bytes([9u8; 32]);

    let kf = match KeyFile::create(
        &master,
        password,
        kdf,
        created_ns,
        &host,
        &user,
        Some((salt, common::NONCE)),
    ) {
        Ok(kf) => kf,
        Err(e) => panic!("KeyFile::create fails for valid input: {e}"),
    };
    let bytes = kf.encode();
    let decoded = KeyFile::decode(&bytes).expect("a created key file does not decode");
    assert_eq!(decoded, kf);
    let got = decoded
        .unwrap(password)
        .expect("right password does not unwrap");
    assert_eq!(got.expose(), master.expose());
    let mut wrong = password.to_vec();
    wrong.push(0);
    let err = decoded
        .unwrap(&wrong)
        .err()
        .expect("wrong password unwraps");
    assert_eq!(err.kind(), ErrorKind::WrongPassword);

    // Every byte is authenticated: a flipped byte fails decode or unwrap.
    let mut bad = bytes.clone();
    let i = flip_at % bad.len();
    bad[i] ^= flip_mask;
    if let Ok(kf2) = KeyFile::decode(&bad) {
        if tiny(&kf2.kdf) {
            assert!(kf2.unwrap(password).is_err(), "flip at {i} not caught");
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
        created(rest)
    }
});
