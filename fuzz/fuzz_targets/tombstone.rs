//! `Tombstone::decode` and `Tombstone::peek` (the names, read without the key).
//!
//! First input byte picks the mode; the rest is
//! - even: the raw tombstone bytes;
//! - odd: everything after `"CFFT" 3` up to the last 8 bytes (the count and the names), then
//!   the body (the last 8 bytes, or fewer), sealed here as a valid envelope whose associated
//!   data is that public part, so the list parser behind the authentication is fuzzed.
//!
//! Whatever `peek` accepts must be a canonical list (sorted, unique, 1 to `MAX_NAMES` names
//! of known kinds, spelled exactly as the input spells it) followed by a box of exactly 48
//! bytes. Whenever decoding succeeds, `peek` must agree on the names, the size must be exactly
//! 57 + 33 × names, and re-encoding with the same nonce must give the same bytes.
#![no_main]

mod common;

use coffer::format::tombstone::{Tombstone, MAX_NAMES, TOMBSTONE_MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let (tail, body) = rest.split_at(rest.len().saturating_sub(8));
        let mut public = common::magic_and_version(TOMBSTONE_MAGIC);
        public.extend_from_slice(tail);
        common::envelope(&public, body)
    };
    if let Ok((names, public_len)) = Tombstone::peek(&bytes) {
        assert!(!names.is_empty() && names.len() <= MAX_NAMES, "name count");
        assert!(names.windows(2).all(|w| w[0] < w[1]), "names not canonical");
        assert_eq!(public_len, 9 + 33 * names.len(), "public length");
        assert_eq!(bytes.len(), public_len + 48, "box length");
        let mut public = common::magic_and_version(TOMBSTONE_MAGIC);
        public.extend_from_slice(&(names.len() as u32).to_le_bytes());
        for (kind, name) in &names {
            public.push(*kind as u8);
            public.extend_from_slice(name);
        }
        assert_eq!(public, bytes[..public_len], "names do not round-trip");
    }
    let keys = common::keys();
    if let Ok(t) = Tombstone::decode(keys, &bytes) {
        t.validate().expect("a decoded tombstone fails validate");
        let (names, public_len) = Tombstone::peek(&bytes).expect("decoded, so peek reads it");
        assert_eq!(names, t.names, "peek and decode disagree");
        assert_eq!(bytes.len(), 57 + 33 * t.names.len(), "tombstone size");
        let again = t.encode(keys, Some(common::nonce_at(&bytes, public_len)));
        assert_eq!(again, bytes, "tombstone does not round-trip");
    }
});
