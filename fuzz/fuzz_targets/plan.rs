//! `Plan::decode`.
//!
//! First input byte picks the mode; the rest is
//! - even: the raw plan file bytes;
//! - odd: the plaintext body, sealed here as a valid envelope (public = "CFFG" version,
//!   AAD = those 5 bytes) so the body parser (and its two counts) is fuzzed.
//!
//! Whenever decoding succeeds, the plan's size must be exactly what its lists take (so a
//! count never claimed more than the bytes held), and re-encoding with the same nonce must
//! give the same bytes.
#![no_main]

mod common;

use coffer::format::gc::{Plan, PLAN_MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = common::raw_or_sealed(data, PLAN_MAGIC) else {
        return;
    };
    let keys = common::keys();
    if let Ok(plan) = Plan::decode(keys, &bytes) {
        // operation, pack count, pack IDs, index count, index IDs.
        let body = 16 + 4 + 32 * plan.packs.len() + 4 + 32 * plan.indexes.len();
        assert_eq!(bytes.len(), common::SMALL_ENVELOPE + body, "plan size");
        let again = plan.encode(keys, Some(common::nonce_at(&bytes, 5)));
        assert_eq!(again, bytes, "plan does not round-trip");
    }
});
