//! `Report::decode`.
//!
//! First input byte picks the mode; the rest is
//! - even: the raw report bytes;
//! - odd: the plaintext body, sealed here as a valid envelope (public = "CFFR" version,
//!   AAD = those 5 bytes) so the body parser (its count, flags and strings) is fuzzed.
//!
//! Whenever decoding succeeds, the report must validate, its size must be exactly what its
//! fields take (so no count claimed more than the bytes held), and re-encoding with the same
//! nonce must give the same bytes.
#![no_main]

mod common;

use coffer::format::report::{Report, REPORT_MAGIC};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = common::raw_or_sealed(data, REPORT_MAGIC) else {
        return;
    };
    let keys = common::keys();
    if let Ok(report) = Report::decode(keys, &bytes) {
        report.validate().expect("a decoded report fails validate");
        // kind, job, time, duration, ok, snapshots, target, message, info.
        let body = 1
            + 2
            + report.job.len()
            + 8
            + 8
            + 1
            + 4
            + 32 * report.snapshots.len()
            + 1
            + if report.target_ns.is_some() { 8 } else { 0 }
            + 2
            + report.message.len()
            + 2
            + report
                .info
                .iter()
                .map(|(k, v)| 4 + k.len() + v.len())
                .sum::<usize>();
        assert_eq!(bytes.len(), common::SMALL_ENVELOPE + body, "report size");
        let again = report.encode(keys, Some(common::nonce_at(&bytes, 5)));
        assert_eq!(again, bytes, "report does not round-trip");
    }
});
