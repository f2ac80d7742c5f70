//! What coffer reads inside a WAL segment, from PostgreSQL's on-disk WAL layout (the page
//! and record headers of `access/xlog_internal.h` and `access/xlogrecord.h`):
//! - the first page's long header: the cluster's system identifier, the segment and page
//!   sizes, the timeline and the segment's address, so that a segment from another cluster
//!   or a file that is not a segment is refused before it is archived;
//! - the commit and abort records: their times tell a restore which segments it needs to
//!   reach a target time, and whether the archive reaches it at all.
//!
//! The input is a file from the database host, but it is read as hostile anyway: every
//! length is checked, nothing panics, and the scan stops quietly at the first byte that
//! does not fit (a recycled segment's stale tail, a record that continues in the next
//! segment). A commit it misses only makes the recorded range narrower, which makes a
//! restore fetch one segment more, never fewer.

use crate::error::{Error, Result};

/// `xlp_info`: this page begins with the rest of a record from the page before.
const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `xlp_info`: this page has the long header (the first page of a segment).
const XLP_LONG_HEADER: u16 = 0x0002;
/// The short page header, MAXALIGNed: magic, info, timeline, page address, remaining length.
const SHORT_HEADER: usize = 24;
/// The long page header, MAXALIGNed: the short one plus system identifier, segment size and
/// page size.
const LONG_HEADER: usize = 40;
/// `XLogRecord`: total length, xid, previous record, info, resource manager, padding, CRC.
const RECORD_HEADER: usize = 24;
/// Resource managers and record types this scan looks at.
const RM_XLOG: u8 = 0;
const XLOG_SWITCH: u8 = 0x40;
const RM_XACT: u8 = 1;
const XACT_OPMASK: u8 = 0x70;
/// Commit, abort, commit prepared, abort prepared: the records a recovery target time
/// is compared with.
const XACT_ENDS: [u8; 4] = [0x00, 0x20, 0x30, 0x40];
/// Block ids in a record's header area.
const BLOCK_ID_DATA_SHORT: u8 = 255;
const BLOCK_ID_DATA_LONG: u8 = 254;
const BLOCK_ID_ORIGIN: u8 = 253;
const BLOCK_ID_TOPLEVEL_XID: u8 = 252;
/// PostgreSQL's epoch (2000-01-01) in microseconds after the Unix epoch.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// What a segment's first page says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHead {
    pub system_id: u64,
    pub timeline: u32,
    /// The address of the segment's first byte.
    pub start_lsn: u64,
    pub segment_size: u32,
    pub page_size: u32,
    pub magic: u16,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn align8(n: usize) -> usize {
    n.saturating_add(7) & !7
}

/// Read and check a segment's first page header.
pub fn segment_head(seg: &[u8]) -> Result<SegmentHead> {
    let not = |why: &str| Err(Error::invalid(format!("not a WAL segment: {why}")));
    if seg.len() < LONG_HEADER {
        return not("shorter than a page header");
    }
    let info = u16_at(seg, 2).unwrap_or(0);
    if info & XLP_LONG_HEADER == 0 {
        return not("its first page has no long header");
    }
    let head = SegmentHead {
        magic: u16_at(seg, 0).unwrap_or(0),
        timeline: u32_at(seg, 4).unwrap_or(0),
        start_lsn: u64_at(seg, 8).unwrap_or(0),
        system_id: u64_at(seg, 24).unwrap_or(0),
        segment_size: u32_at(seg, 32).unwrap_or(0),
        page_size: u32_at(seg, 36).unwrap_or(0),
    };
    if !head.segment_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&head.segment_size) {
        return not(&format!("a segment size of {}", head.segment_size));
    }
    if !head.page_size.is_power_of_two() || !(1 << 10..=1 << 16).contains(&head.page_size) {
        return not(&format!("a page size of {}", head.page_size));
    }
    if head.start_lsn % u64::from(head.segment_size) != 0 {
        return not("its address is not at a segment boundary");
    }
    if head.timeline == 0 {
        return not("timeline 0");
    }
    Ok(head)
}

/// The earliest and latest commit or abort times (ns since the Unix epoch) of the records
/// that begin in this segment; `None` if there are none. `head` is what `segment_head` read
/// from `seg`; bytes past `head.segment_size` are not part of the segment and are not read.
pub fn commit_times(seg: &[u8], head: &SegmentHead) -> Option<(i64, i64)> {
    // A head made elsewhere could hold anything: a page must at least hold its header.
    if (head.page_size as usize) < LONG_HEADER {
        return None;
    }
    let seg = &seg[..seg.len().min(head.segment_size as usize)];
    let payload = Payload::of(seg, head);
    let mut pos = payload.first_record;
    let mut prev_lsn: Option<u64> = None;
    let mut range: Option<(i64, i64)> = None;
    while let Some(total) = payload.u32(pos) {
        let total = total as usize;
        if total < RECORD_HEADER || pos + total > payload.bytes.len() {
            break;
        }
        let rec = &payload.bytes[pos..pos + total];
        let Some(lsn) = payload.lsn_of(pos) else {
            break;
        };
        // Each record names the one before it: a stale record of a recycled segment
        // does not.
        if prev_lsn.is_some_and(|p| u64_at(rec, 8) != Some(p)) {
            break;
        }
        let (info, rmid) = (rec[16], rec[17]);
        if rmid == RM_XLOG && info & 0xF0 == XLOG_SWITCH {
            break;
        }
        if rmid == RM_XACT && XACT_ENDS.contains(&(info & XACT_OPMASK)) {
            if let Some(t) = main_data(rec).and_then(xact_time_ns) {
                range = Some(match range {
                    None => (t, t),
                    Some((a, b)) => (a.min(t), b.max(t)),
                });
            }
        }
        prev_lsn = Some(lsn);
        pos = align8(pos + total);
    }
    range
}

/// A record's main data: after the record header come block headers, ended by the main
/// data's length; the main data is the record's last bytes. Records with block
/// references are not transaction ends, so they are skipped rather than parsed.
fn main_data(rec: &[u8]) -> Option<&[u8]> {
    let mut at = RECORD_HEADER;
    loop {
        let id = *rec.get(at)?;
        at += 1;
        let len = match id {
            BLOCK_ID_DATA_SHORT => usize::from(*rec.get(at)?),
            BLOCK_ID_DATA_LONG => u32_at(rec, at)? as usize,
            BLOCK_ID_ORIGIN => {
                at += 2;
                continue;
            }
            BLOCK_ID_TOPLEVEL_XID => {
                at += 4;
                continue;
            }
            _ => return None,
        };
        return rec.get(rec.len().checked_sub(len)?..);
    }
}

/// The transaction's end time, first in both commit and abort records: a `TimestampTz`,
/// microseconds since 2000-01-01 UTC.
fn xact_time_ns(main: &[u8]) -> Option<i64> {
    let us = i64::from_le_bytes(main.get(..8)?.try_into().ok()?);
    us.checked_add(PG_EPOCH_US)?.checked_mul(1000)
}

/// A segment's record bytes with the page headers taken out, so that records that cross
/// pages read as one slice. Positions in it map back to LSNs through the page table.
struct Payload {
    bytes: Vec<u8>,
    /// For each page kept: where its bytes begin in `bytes`, and the LSN of that byte.
    pages: Vec<(usize, u64)>,
    /// Where the first record that begins in this segment starts.
    first_record: usize,
}

impl Payload {
    fn of(seg: &[u8], head: &SegmentHead) -> Payload {
        let page = head.page_size as usize;
        let mut p = Payload {
            bytes: Vec::with_capacity(seg.len()),
            pages: vec![],
            first_record: 0,
        };
        for (i, chunk) in seg.chunks(page).enumerate() {
            // A segment at the very top of the address space ends there: a page past it
            // (only in a hostile file) is not read.
            let Some(addr) = head.start_lsn.checked_add((i * page) as u64) else {
                break;
            };
            let info = u16_at(chunk, 2).unwrap_or(0);
            let long = info & XLP_LONG_HEADER != 0;
            let header = if long { LONG_HEADER } else { SHORT_HEADER };
            let Some(data_lsn) = addr.checked_add(header as u64) else {
                break;
            };
            // A page of another address or magic is stale (a recycled file) or unused.
            if chunk.len() < header
                || u16_at(chunk, 0) != Some(head.magic)
                || u64_at(chunk, 8) != Some(addr)
                || long != (i == 0)
            {
                break;
            }
            if i == 0 && info & XLP_FIRST_IS_CONTRECORD != 0 {
                // The rest of a record that began in the previous segment.
                let rem = u32_at(chunk, 16).unwrap_or(0) as usize;
                p.first_record = align8(rem);
            }
            p.pages.push((p.bytes.len(), data_lsn));
            p.bytes.extend_from_slice(&chunk[header..]);
        }
        p
    }

    fn u32(&self, at: usize) -> Option<u32> {
        u32_at(&self.bytes, at).filter(|&n| n != 0)
    }

    fn lsn_of(&self, at: usize) -> Option<u64> {
        let i = self.pages.partition_point(|&(start, _)| start <= at);
        let (start, lsn) = self.pages.get(i.checked_sub(1)?)?;
        lsn.checked_add((at - start) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::synthetic::SegmentBuilder;

    const PAGE: u32 = 8192;
    const SEG: u32 = 1 << 20;

    /// A whole 1 MiB segment of timeline 1 of cluster 42, empty but for its page headers.
    fn builder(start: u64) -> SegmentBuilder {
        SegmentBuilder::new(42, 1, start, SEG, PAGE, SEG as usize, 0)
    }

    /// `us` microseconds after PostgreSQL's epoch, in ns after the Unix epoch.
    fn ns(us: i64) -> i64 {
        (us + PG_EPOCH_US) * 1000
    }

    #[test]
    fn reads_the_header_and_every_commit_across_pages() {
        let mut b = builder(5 * SEG as u64);
        for i in 0..2000 {
            // Filler records of various sizes make commits straddle page boundaries.
            b.record(10, 0, 7, &vec![7u8; (i * 37) % 200]);
            b.commit(7, ns(1_000_000 + i as i64));
        }
        let head = segment_head(b.bytes()).unwrap();
        assert_eq!((head.system_id, head.timeline), (42, 1));
        assert_eq!(head.start_lsn, 5 * SEG as u64);
        assert_eq!(
            commit_times(b.bytes(), &head),
            Some((ns(1_000_000), ns(1_001_999)))
        );
    }

    #[test]
    fn stops_at_a_switch_and_at_stale_records() {
        let mut b = builder(0);
        b.commit(7, ns(5));
        b.switch();
        b.commit(7, ns(9));
        let head = segment_head(b.bytes()).unwrap();
        assert_eq!(commit_times(b.bytes(), &head), Some((ns(5), ns(5))));

        // A record whose "previous record" is wrong is stale data: not read.
        let mut b = builder(0);
        b.commit(7, ns(5));
        b.set_prev(12345);
        b.commit(7, ns(9));
        assert_eq!(commit_times(b.bytes(), &head), Some((ns(5), ns(5))));
    }

    /// Bytes after the segment's size are not part of it, and addresses never overflow,
    /// whatever the head says.
    #[test]
    fn reads_no_further_than_the_segment_nor_past_the_top_of_the_address_space() {
        let top = u64::MAX - (u64::from(SEG) - 1);
        let mut b = builder(top);
        b.commit(7, ns(5));
        let head = segment_head(b.bytes()).unwrap();
        assert_eq!(head.start_lsn, top);
        let mut longer = b.bytes().to_vec();
        longer.extend_from_slice(b.bytes());
        assert_eq!(commit_times(&longer, &head), Some((ns(5), ns(5))));
        for page_size in [0, 1, 39] {
            let odd = SegmentHead { page_size, ..head };
            assert_eq!(commit_times(&longer, &odd), None);
        }
        let unaligned = SegmentHead {
            start_lsn: u64::MAX - 100,
            ..head
        };
        assert_eq!(commit_times(&longer, &unaligned), None);
    }

    #[test]
    fn garbage_never_panics_and_is_refused_as_a_segment() {
        assert!(segment_head(&[]).is_err());
        assert!(segment_head(&[0xff; 100]).is_err());
        let b = builder(0);
        let head = segment_head(b.bytes()).unwrap();
        let mut state = 1u64;
        for _ in 0..200 {
            let mut seg = b.bytes().to_vec();
            for _ in 0..64 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                let at = (state >> 33) as usize % seg.len();
                seg[at] = (state >> 20) as u8;
            }
            let _ = commit_times(&seg, &head);
            let _ = commit_times(&seg[..(state as usize) % seg.len()], &head);
        }
    }
}
