//! `Config::decode` (and `peek_repo_id`).
//!
//! First input byte picks the mode; the rest is
//! - even: the raw config file bytes (exercises magic/version/length checks and authentication);
//! - odd: the plaintext *body*, sealed here as a valid envelope (public = "CFFC" version
//!   repo_id, AAD = those 37 bytes) so the body parser and range checks are fuzzed.
//!
//! Whenever decoding succeeds, re-encoding with the same nonce must give the same bytes.
#![no_main]

mod common;

use coffer::format::config::{self, Config};
use libfuzzer_sys::fuzz_target;

const PUBLIC_LEN: usize = 4 + 1 + 32;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let keys = common::keys();
    let bytes = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut public = common::magic_and_version(config::MAGIC);
        public.extend_from_slice(&[0x11; 32]);
        common::envelope(&public, rest)
    };
    let peeked = Config::peek_repo_id(&bytes);
    if let Ok(cfg) = Config::decode(keys, &bytes) {
        assert_eq!(peeked.ok(), Some(cfg.repo_id));
        let again = cfg.encode(keys, Some(common::nonce_at(&bytes, PUBLIC_LEN)));
        assert_eq!(again, bytes, "config does not round-trip");
    }
});
