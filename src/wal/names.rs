//! The names PostgreSQL gives the files it archives (`%f`), and what they say: which
//! timeline, and where in the WAL. A name is checked here before anything is read, so a
//! path that is not a WAL file (a typo in `archive_command`) is refused as a usage error.

use crate::format::wal::WalKind;

/// One parsed WAL file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalName {
    pub kind: WalKind,
    pub timeline: u32,
    /// Segments: the log and segment numbers of the name (`XXXXXXXX`, `YYYYYYYY`).
    /// History files: 0.
    pub log: u32,
    pub seg: u32,
    /// Backup history files: the start offset in the segment (`OOOOOOOO`).
    pub offset: u32,
}

fn hex8(s: &str) -> Option<u32> {
    // Upper-case hex only, exactly as PostgreSQL writes it.
    if s.len() != 8
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

fn segment_part(s: &str) -> Option<(u32, u32, u32)> {
    if s.len() != 24 {
        return None;
    }
    Some((hex8(&s[..8])?, hex8(&s[8..16])?, hex8(&s[16..])?))
}

impl WalName {
    /// Parse a name; `None` if it is not one PostgreSQL archives.
    pub fn parse(name: &str) -> Option<WalName> {
        let (kind, timeline, log, seg, offset) = if let Some(t) = name.strip_suffix(".history") {
            (WalKind::History, hex8(t)?, 0, 0, 0)
        } else if let Some(s) = name.strip_suffix(".partial") {
            let (t, l, g) = segment_part(s)?;
            (WalKind::Partial, t, l, g, 0)
        } else if let Some(rest) = name.strip_suffix(".backup") {
            let (s, off) = rest.split_once('.')?;
            let (t, l, g) = segment_part(s)?;
            (WalKind::Backup, t, l, g, hex8(off)?)
        } else {
            let (t, l, g) = segment_part(name)?;
            (WalKind::Segment, t, l, g, 0)
        };
        // Timeline 0 does not exist; PostgreSQL starts at 1.
        (timeline != 0).then_some(WalName {
            kind,
            timeline,
            log,
            seg,
            offset,
        })
    }

    /// The segment number in a WAL of `segment_size`-byte segments, if the name's segment
    /// field is in range for that size.
    pub fn segment_number(&self, segment_size: u32) -> Option<u64> {
        let per_log = segments_per_log(segment_size)?;
        (u64::from(self.seg) < per_log).then(|| u64::from(self.log) * per_log + u64::from(self.seg))
    }

    /// The LSN of the first byte this name stands for (a segment's start, a backup's start).
    pub fn lsn(&self, segment_size: u32) -> Option<u64> {
        let n = self.segment_number(segment_size)?;
        n.checked_mul(u64::from(segment_size))?
            .checked_add(u64::from(self.offset))
    }
}

/// How many segments one 4 GiB "log" of the name holds.
fn segments_per_log(segment_size: u32) -> Option<u64> {
    (segment_size.is_power_of_two() && segment_size >= 1 << 20)
        .then(|| 0x1_0000_0000u64 / u64::from(segment_size))
}

/// The name of segment `number` of `timeline` with `segment_size`-byte segments.
pub fn segment_name(timeline: u32, number: u64, segment_size: u32) -> String {
    let per_log = segments_per_log(segment_size).unwrap_or(256);
    format!(
        "{timeline:08X}{:08X}{:08X}",
        number / per_log,
        number % per_log
    )
}

/// An LSN as PostgreSQL prints it: `16/B374D848`.
pub fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parse an LSN written as PostgreSQL prints it.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let ok = |p: &str| !p.is_empty() && p.len() <= 8 && p.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok(hi) || !ok(lo) {
        return None;
    }
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_and_round_trips() {
        let s = WalName::parse("00000002000000010000003F").unwrap();
        assert_eq!(
            (s.kind, s.timeline, s.log, s.seg),
            (WalKind::Segment, 2, 1, 0x3F)
        );
        assert_eq!(s.segment_number(16 << 20), Some(256 + 63));
        assert_eq!(
            segment_name(2, 256 + 63, 16 << 20),
            "00000002000000010000003F"
        );
        assert_eq!(s.lsn(16 << 20), Some(0x1_3F00_0000));
        let h = WalName::parse("0000000A.history").unwrap();
        assert_eq!((h.kind, h.timeline), (WalKind::History, 10));
        let p = WalName::parse("000000010000000000000005.partial").unwrap();
        assert_eq!(p.kind, WalKind::Partial);
        let b = WalName::parse("000000010000000000000003.00000028.backup").unwrap();
        assert_eq!((b.kind, b.offset), (WalKind::Backup, 0x28));
        assert_eq!(b.lsn(16 << 20), Some((3 << 24) + 0x28));
    }

    #[test]
    fn other_names_are_refused() {
        for n in [
            "",
            "00000001000000000000000",
            "000000010000000000000003.ready",
            "00000001000000000000000g",
            "00000001000000000000000a",
            "00000000000000000000000A",
            "../00000001000000000000000A",
            "0000000A.history.partial",
            "000000010000000000000003.backup",
        ] {
            assert!(WalName::parse(n).is_none(), "{n}");
        }
        // A segment field beyond what the segment size allows.
        let s = WalName::parse("000000010000000000000100").unwrap();
        assert_eq!(s.segment_number(16 << 20), None);
        assert_eq!(s.segment_number(1 << 20).unwrap(), 256);
    }

    #[test]
    fn lsns_read_and_print_as_postgresql_does() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(lsn_text(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("0/0"), Some(0));
        for bad in ["", "1", "/1", "1/", "123456789/0", "x/1"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
    }
}
