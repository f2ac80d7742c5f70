//! `wal::scan::segment_head` and `wal::scan::commit_times`: what `wal-push` reads inside the
//! file PostgreSQL hands it, before anything is stored.
//!
//! First input byte picks the mode; the rest is
//! - even: the segment's bytes as they are;
//! - odd: `p:u8`, then the segment's bytes, into which the target writes page headers that
//!   pass: a long header on page 0 (a page size of 1, 2 or 4 KiB and a segment size of 1 MiB
//!   << 0…3 from `p`, a start address aligned to it from the input's bytes 8..16, which may
//!   lie anywhere up to 2^64, and timeline 1 if the input says 0), and the magic and the
//!   right address on every later page (the info bits and `xlp_rem_len` stay the input's), so
//!   the record walk behind them is reached.
//!
//! Whenever `segment_head` accepts, its sizes are powers of two in PostgreSQL's ranges and the
//! start is on a segment boundary. Whenever `commit_times` finds a range, it is in order and
//! in whole microseconds, and the range found in any prefix of the segment lies inside it (a
//! prefix holds fewer whole records, never others).
#![no_main]

use coffer::wal::scan::{commit_times, segment_head};
use libfuzzer_sys::fuzz_target;

fn pages_that_pass(p: u8, seg: &mut [u8]) {
    if seg.len() < 40 {
        return;
    }
    let page = 1024usize << (p % 3);
    let segment_size = (1u32 << 20) << ((p >> 2) & 3);
    let mut start = u64::from_le_bytes(seg[8..16].try_into().unwrap());
    start &= !(u64::from(segment_size) - 1);
    let info = u16::from_le_bytes([seg[2], seg[3]]) | 0x0002;
    seg[2..4].copy_from_slice(&info.to_le_bytes());
    if seg[4..8] == [0; 4] {
        seg[4] = 1;
    }
    seg[32..36].copy_from_slice(&segment_size.to_le_bytes());
    seg[36..40].copy_from_slice(&(page as u32).to_le_bytes());
    let magic = [0x10, 0xd1];
    for (i, chunk) in seg.chunks_mut(page).enumerate() {
        if chunk.len() < 16 {
            break;
        }
        chunk[0..2].copy_from_slice(&magic);
        if i > 0 {
            let info = u16::from_le_bytes([chunk[2], chunk[3]]) & !0x0002;
            chunk[2..4].copy_from_slice(&info.to_le_bytes());
        }
        let addr = start.wrapping_add((i * page) as u64);
        chunk[8..16].copy_from_slice(&addr.to_le_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let seg = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let Some((&p, rest)) = rest.split_first() else {
            return;
        };
        let mut seg = rest.to_vec();
        pages_that_pass(p, &mut seg);
        seg
    };
    let Ok(head) = segment_head(&seg) else {
        return;
    };
    assert!(head.segment_size.is_power_of_two() && head.segment_size >= 1 << 20);
    assert!(head.segment_size <= 1 << 30);
    assert!(head.page_size.is_power_of_two() && (1 << 10..=1 << 16).contains(&head.page_size));
    assert_eq!(head.start_lsn % u64::from(head.segment_size), 0);
    assert_ne!(head.timeline, 0);

    let whole = commit_times(&seg, &head);
    if let Some((first, last)) = whole {
        assert!(first <= last, "commit times out of order");
        assert!(
            first % 1000 == 0 && last % 1000 == 0,
            "not whole microseconds"
        );
    }
    // A prefix: where the input's last byte says.
    let cut = seg.len() * usize::from(*data.last().unwrap()) / 255;
    if let Some((a, b)) = commit_times(&seg[..cut], &head) {
        let (first, last) = whole.expect("a prefix found commits the whole segment lacks");
        assert!(first <= a && b <= last, "a prefix found other commits");
    }
});
