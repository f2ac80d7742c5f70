//! Synthetic WAL segments laid out as PostgreSQL 15 writes them, for the format's test vector
//! (`format-spec/vectors/wal.bin`), tests and fuzz seeds. Only in builds with the `vectors`
//! feature (and unit tests): nothing in coffer writes WAL.
//!
//! The layout is what `scan` reads (`access/xlog_internal.h`, `access/xlogrecord.h`): every
//! page starts with a header (the long one on a segment's first page), a record starts at
//! the next 8-aligned address after the one before and never inside a page header, and a
//! record that does not fit continues after the next page's header, which then carries
//! `XLP_FIRST_IS_CONTRECORD` and the number of the record's bytes still to come
//! (`xlp_rem_len`). Record CRCs are left 0: coffer does not check them.

/// PostgreSQL 15's `XLOG_PAGE_MAGIC`.
pub const XLOG_PAGE_MAGIC: u16 = 0xD110;
/// `xlp_info` bits.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// Header sizes (MAXALIGNed): short page header, long page header, `XLogRecord`.
pub const SHORT_HEADER: usize = 24;
pub const LONG_HEADER: usize = 40;
pub const RECORD_HEADER: usize = 24;
/// Resource managers and record types.
pub const RM_XLOG: u8 = 0;
pub const RM_XACT: u8 = 1;
pub const RM_LOGICALMSG: u8 = 21;
pub const XLOG_SWITCH: u8 = 0x40;
pub const XLOG_XACT_COMMIT: u8 = 0x00;
pub const XLOG_XACT_ABORT: u8 = 0x20;
/// PostgreSQL's epoch (2000-01-01 UTC) in microseconds after the Unix epoch.
pub const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// A segment being written, record by record.
pub struct SegmentBuilder {
    seg: Vec<u8>,
    start: u64,
    page: usize,
    /// The address where the next record may start (before alignment).
    at: u64,
    /// The address of the last record written: the next one's `xl_prev`.
    prev: u64,
}

impl SegmentBuilder {
    /// `len` bytes (a multiple of `page_size`; a whole segment is `segment_size`) starting
    /// at `start_lsn`, every page with its header and nothing else. The first record's
    /// `xl_prev` is `prev`, an address in the segment before.
    pub fn new(
        system_id: u64,
        timeline: u32,
        start_lsn: u64,
        segment_size: u32,
        page_size: u32,
        len: usize,
        prev: u64,
    ) -> SegmentBuilder {
        let page = page_size as usize;
        assert!(page >= LONG_HEADER && len % page == 0, "whole pages only");
        let mut seg = vec![0u8; len];
        for (i, p) in seg.chunks_mut(page).enumerate() {
            let info = if i == 0 { XLP_LONG_HEADER } else { 0 };
            p[0..2].copy_from_slice(&XLOG_PAGE_MAGIC.to_le_bytes());
            p[2..4].copy_from_slice(&info.to_le_bytes());
            p[4..8].copy_from_slice(&timeline.to_le_bytes());
            p[8..16].copy_from_slice(&(start_lsn + (i * page) as u64).to_le_bytes());
        }
        seg[24..32].copy_from_slice(&system_id.to_le_bytes());
        seg[32..36].copy_from_slice(&segment_size.to_le_bytes());
        seg[36..40].copy_from_slice(&page_size.to_le_bytes());
        SegmentBuilder {
            seg,
            start: start_lsn,
            page,
            at: start_lsn + LONG_HEADER as u64,
            prev,
        }
    }

    fn offset(&self, lsn: u64) -> usize {
        (lsn - self.start) as usize
    }

    /// Append a record: `XLogRecord`, then the main data's header (`255, u8 length` up to
    /// 255 bytes, else `254, u32 length`; none if `main` is empty), then `main`. Returns its
    /// address. Panics if the segment has no room (a test's mistake).
    pub fn record(&mut self, rmid: u8, info: u8, xid: u32, main: &[u8]) -> u64 {
        let mut rec = vec![0u8; RECORD_HEADER];
        match main.len() {
            0 => {}
            n @ 1..=255 => rec.extend_from_slice(&[255, n as u8]),
            n => {
                rec.push(254);
                rec.extend_from_slice(&(n as u32).to_le_bytes());
            }
        }
        rec.extend_from_slice(main);
        let total = rec.len();
        rec[0..4].copy_from_slice(&(total as u32).to_le_bytes());
        rec[4..8].copy_from_slice(&xid.to_le_bytes());
        rec[8..16].copy_from_slice(&self.prev.to_le_bytes());
        rec[16] = info;
        rec[17] = rmid;

        let mut at = (self.at + 7) & !7;
        if self.offset(at) % self.page == 0 {
            at += SHORT_HEADER as u64;
        }
        let lsn = at;
        for (written, byte) in rec.into_iter().enumerate() {
            let off = self.offset(at);
            assert!(
                off < self.seg.len(),
                "the record does not fit in the segment"
            );
            if off % self.page == 0 {
                // A new page: the record goes on after its header, which says so.
                let p = &mut self.seg[off..];
                let info = u16::from_le_bytes([p[2], p[3]]) | XLP_FIRST_IS_CONTRECORD;
                p[2..4].copy_from_slice(&info.to_le_bytes());
                p[16..20].copy_from_slice(&((total - written) as u32).to_le_bytes());
                at += SHORT_HEADER as u64;
            }
            let off = self.offset(at);
            self.seg[off] = byte;
            at += 1;
        }
        self.at = at;
        self.prev = lsn;
        lsn
    }

    /// A transaction end: `xl_xact_commit` or `xl_xact_abort`, whose only field without
    /// `XLOG_XACT_HAS_INFO` is the time, µs since 2000-01-01 UTC. `time_ns` is ns since the
    /// Unix epoch, cut to the microsecond.
    fn xact_end(&mut self, info: u8, xid: u32, time_ns: i64) -> u64 {
        let us = time_ns.div_euclid(1000) - PG_EPOCH_US;
        self.record(RM_XACT, info, xid, &us.to_le_bytes())
    }

    pub fn commit(&mut self, xid: u32, time_ns: i64) -> u64 {
        self.xact_end(XLOG_XACT_COMMIT, xid, time_ns)
    }

    pub fn abort(&mut self, xid: u32, time_ns: i64) -> u64 {
        self.xact_end(XLOG_XACT_ABORT, xid, time_ns)
    }

    /// `XLOG_SWITCH`: a bare record header; PostgreSQL writes nothing more in the segment.
    pub fn switch(&mut self) -> u64 {
        self.record(RM_XLOG, XLOG_SWITCH, 0, &[])
    }

    /// Make the next record name `lsn` as the one before it: a stale record, as a recycled
    /// segment holds after the end of the new WAL.
    pub fn set_prev(&mut self, lsn: u64) {
        self.prev = lsn;
    }

    /// Where the next record would start (before alignment).
    pub fn end_lsn(&self) -> u64 {
        self.at
    }

    pub fn bytes(&self) -> &[u8] {
        &self.seg
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.seg
    }
}
