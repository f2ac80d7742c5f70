//! WAL files (format-spec §5.13): one object in `wal/` per file PostgreSQL archived (a
//! segment, a partial segment, a timeline history file or a backup history file).
//!
//! Layout: `"CFFA" version:u8 header_len:u16 header_box body_box`. The header box holds what
//! the archive's catalog needs (which file, which cluster and timeline, its LSN range and
//! the times of its first and last commit), so a reader lists the archive by reading only
//! the first few hundred bytes of each object. The body box holds the file's bytes,
//! compressed; its associated data is every byte before it, so a header cannot be paired
//! with another file's body.

use super::wire::{Reader, Writer};
use super::FORMAT_VERSION;
use crate::crypto::{Keys, NONCE_LEN, SEAL_OVERHEAD};
use crate::error::{Error, Result};

pub const WAL_MAGIC: &[u8; 4] = b"CFFA";

/// Bytes before the header box: magic, version, the box's length.
pub const PREFIX_LEN: usize = 7;

/// The largest header box a reader accepts. A header is 101 bytes of fixed fields (the
/// name's length included) and a name of at most `MAX_NAME_LEN`, so coffer's largest is
/// 205 bytes sealed; the bound leaves room and fixes how much a catalog reads (`HEAD_LEN`).
pub const MAX_HEADER_BOX: usize = 512;

/// Bytes a reader fetches to get any header: the prefix and the largest header box.
pub const HEAD_LEN: usize = PREFIX_LEN + MAX_HEADER_BOX;

/// PostgreSQL's WAL file names are at most 40 bytes (a backup history file); anything
/// longer is not one.
pub const MAX_NAME_LEN: usize = 64;

/// The largest file: PostgreSQL's largest WAL segment size is 1 GiB.
pub const MAX_FILE_LEN: u64 = 1 << 30;

/// The largest object: the largest file, stored raw, with both boxes and the prefix.
pub const MAX_OBJECT_LEN: u64 = MAX_FILE_LEN + (HEAD_LEN + SEAL_OVERHEAD) as u64;

/// What kind of file PostgreSQL archived. The numbers are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum WalKind {
    /// A complete segment, `TTTTTTTTXXXXXXXXYYYYYYYY`.
    Segment = 1,
    /// The last, incomplete segment of a timeline that was promoted away from,
    /// `TTTTTTTTXXXXXXXXYYYYYYYY.partial`.
    Partial = 2,
    /// A timeline history file, `TTTTTTTT.history`.
    History = 3,
    /// A backup history file, `TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup`.
    Backup = 4,
}

impl WalKind {
    pub fn from_u8(v: u8) -> Result<Self> {
        match v {
            1 => Ok(WalKind::Segment),
            2 => Ok(WalKind::Partial),
            3 => Ok(WalKind::History),
            4 => Ok(WalKind::Backup),
            _ => Err(Error::corrupt(format!("WAL file of unknown kind {v}"))),
        }
    }
}

/// How the body is stored. The numbers are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WalCodec {
    Raw = 0,
    /// One zstd frame that declares its size.
    Zstd = 1,
}

/// What the archive knows of one archived file without reading its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalHeader {
    pub kind: WalKind,
    /// The file's name as PostgreSQL gave it (`%f`).
    pub name: String,
    /// The cluster's system identifier (from the segment's first page; for other kinds,
    /// the archive's cluster, or 0 when the pusher did not know it).
    pub system_id: u64,
    pub timeline: u32,
    /// Segments: the LSN of the segment's first byte. Backup history files: the backup's
    /// start LSN. History files: 0.
    pub start_lsn: u64,
    /// Segments: `wal_segment_size`. Other kinds: 0.
    pub segment_size: u32,
    /// The file's length in bytes.
    pub size: u64,
    /// BLAKE3 of the file's bytes.
    pub hash: [u8; 32],
    /// When PostgreSQL last wrote the file (its mtime), ns since the Unix epoch.
    pub mtime_ns: i64,
    /// When it was archived, by the pusher's clock.
    pub pushed_ns: i64,
    /// The commit (or abort) times of the first and last transactions that end in this
    /// file, ns since the Unix epoch; `None` when it ends none.
    pub commits: Option<(i64, i64)>,
    pub codec: WalCodec,
}

/// A header's fixed fields, the name's `u16` length included: all but the name's bytes.
const FIXED_LEN: usize = 1 + 2 + 8 + 4 + 8 + 4 + 8 + 32 + 8 + 8 + 1 + 8 + 8 + 1;

impl WalHeader {
    fn encode_plain(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.kind as u8);
        w.bytes16(self.name.as_bytes());
        w.u64(self.system_id);
        w.u32(self.timeline);
        w.u64(self.start_lsn);
        w.u32(self.segment_size);
        w.u64(self.size);
        w.raw(&self.hash);
        w.i64(self.mtime_ns);
        w.i64(self.pushed_ns);
        match self.commits {
            Some((first, last)) => {
                w.u8(1);
                w.i64(first);
                w.i64(last);
            }
            None => {
                w.u8(0);
                w.i64(0);
                w.i64(0);
            }
        }
        w.u8(self.codec as u8);
        w.finish()
    }

    fn decode_plain(plain: &[u8]) -> Result<Self> {
        let mut r = Reader::new(plain, "WAL file header");
        let kind = WalKind::from_u8(r.u8()?)?;
        let name = r.str16()?;
        let h = WalHeader {
            kind,
            name,
            system_id: r.u64()?,
            timeline: r.u32()?,
            start_lsn: r.u64()?,
            segment_size: r.u32()?,
            size: r.u64()?,
            hash: r.array()?,
            mtime_ns: r.i64()?,
            pushed_ns: r.i64()?,
            commits: {
                let has = r.u8()?;
                let (first, last) = (r.i64()?, r.i64()?);
                match has {
                    0 if first == 0 && last == 0 => None,
                    1 => Some((first, last)),
                    _ => return Err(Error::corrupt("WAL file header: bad commit-time flag")),
                }
            },
            codec: match r.u8()? {
                0 => WalCodec::Raw,
                1 => WalCodec::Zstd,
                c => return Err(Error::corrupt(format!("WAL file of unknown codec {c}"))),
            },
        };
        r.end()?;
        h.validate()?;
        Ok(h)
    }

    /// What every header must satisfy; a writer checks it too, so it never stores one a
    /// reader refuses.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::corrupt(format!("WAL file header: {why}")));
        if self.name.is_empty() || self.name.len() > MAX_NAME_LEN {
            return bad(format!("a name of {} bytes", self.name.len()));
        }
        if self.size > MAX_FILE_LEN {
            return bad(format!("a file of {} bytes", self.size));
        }
        if matches!(self.kind, WalKind::Segment | WalKind::Partial)
            && (!self.segment_size.is_power_of_two()
                || self.size > self.segment_size as u64
                || self.segment_size as u64 > MAX_FILE_LEN)
        {
            return bad(format!(
                "a segment of {} bytes in segments of {}",
                self.size, self.segment_size
            ));
        }
        if self.kind == WalKind::Segment && self.size != self.segment_size as u64 {
            return bad("a complete segment of the wrong size".into());
        }
        if let Some((first, last)) = self.commits {
            if first > last {
                return bad("its first commit is after its last".into());
            }
        }
        Ok(())
    }

    /// Seal `self` and `stored` (the body, already compressed as `self.codec` says) into
    /// an object. Nonces are random unless given (for test vectors).
    pub fn encode(
        &self,
        keys: &Keys,
        stored: &[u8],
        nonces: Option<([u8; NONCE_LEN], [u8; NONCE_LEN])>,
    ) -> Result<Vec<u8>> {
        self.validate().map_err(|e| Error::invalid(e.to_string()))?;
        let plain = self.encode_plain();
        let box_len = plain.len() + SEAL_OVERHEAD;
        debug_assert!(plain.len() <= FIXED_LEN + MAX_NAME_LEN);
        let mut out = Vec::with_capacity(PREFIX_LEN + box_len + stored.len() + SEAL_OVERHEAD);
        out.extend_from_slice(WAL_MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&(box_len as u16).to_le_bytes());
        let sealed = keys.seal_fixed_or_random(nonces.map(|n| n.0), &out, &plain);
        out.extend_from_slice(&sealed);
        let body = keys.seal_fixed_or_random(nonces.map(|n| n.1), &out, stored);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// The header from an object's first bytes (at least the prefix and the header box;
    /// `HEAD_LEN` bytes always suffice). Returns it with where the body box starts.
    pub fn decode(keys: &Keys, head: &[u8]) -> Result<(Self, usize)> {
        let mut r = Reader::new(head, "WAL file");
        r.header(WAL_MAGIC, FORMAT_VERSION)?;
        let box_len = r.u16()? as usize;
        if !(SEAL_OVERHEAD + FIXED_LEN + 1..=MAX_HEADER_BOX).contains(&box_len) {
            return Err(Error::corrupt(format!(
                "WAL file header box of {box_len} bytes"
            )));
        }
        let sealed = r.take(box_len)?;
        let plain = keys
            .open(&head[..PREFIX_LEN], sealed)
            .map_err(|e| e.context("WAL file header fails authentication"))?;
        Ok((Self::decode_plain(&plain)?, PREFIX_LEN + box_len))
    }

    /// Open a whole object: its header and the file's bytes, checked against the header's
    /// size and hash.
    pub fn decode_file(keys: &Keys, bytes: &[u8]) -> Result<(Self, Vec<u8>)> {
        let (h, body_at) = Self::decode(keys, bytes)?;
        let (before, sealed) = bytes.split_at(body_at);
        let stored = keys
            .open(before, sealed)
            .map_err(|e| e.context(format!("WAL file {} fails authentication", h.name)))?;
        let file = match h.codec {
            WalCodec::Raw => stored,
            WalCodec::Zstd => {
                // One frame and nothing after it: zstd would go on to read more frames
                // (skippable or empty ones), so two bodies could stand for one file.
                let frame_len = zstd::zstd_safe::find_frame_compressed_size(&stored).ok();
                if frame_len != Some(stored.len()) {
                    return Err(Error::corrupt(format!(
                        "WAL file {}: its body is not exactly one zstd frame",
                        h.name
                    )));
                }
                let declared = zstd::zstd_safe::get_frame_content_size(&stored)
                    .ok()
                    .flatten();
                if declared != Some(h.size) {
                    return Err(Error::corrupt(format!(
                        "WAL file {}: its frame does not declare the header's size",
                        h.name
                    )));
                }
                zstd::bulk::decompress(&stored, h.size as usize).map_err(|e| {
                    Error::corrupt(format!("WAL file {} does not decompress: {e}", h.name))
                })?
            }
        };
        if file.len() as u64 != h.size || *blake3::hash(&file).as_bytes() != h.hash {
            return Err(Error::corrupt(format!(
                "WAL file {}: its bytes do not match its header",
                h.name
            )));
        }
        Ok((h, file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterSecret;

    fn keys() -> Keys {
        Keys::derive(&MasterSecret::from_bytes([7; 32]))
    }

    fn header(file: &[u8]) -> WalHeader {
        WalHeader {
            kind: WalKind::Segment,
            name: "000000010000000000000003".into(),
            system_id: 7_345_123_456_789,
            timeline: 1,
            start_lsn: 3 << 24,
            segment_size: file.len() as u32,
            size: file.len() as u64,
            hash: *blake3::hash(file).as_bytes(),
            mtime_ns: 1_764_000_000_000_000_000,
            pushed_ns: 1_764_000_001_000_000_000,
            commits: Some((1_763_999_990_000_000_000, 1_764_000_000_000_000_000)),
            codec: WalCodec::Zstd,
        }
    }

    #[test]
    fn round_trip_and_header_alone() {
        let k = keys();
        let file = vec![5u8; 1 << 16];
        let h = header(&file);
        let stored = zstd::bulk::compress(&file, 3).unwrap();
        let obj = h.encode(&k, &stored, None).unwrap();
        let (got, _) = WalHeader::decode(&k, &obj[..HEAD_LEN.min(obj.len())]).unwrap();
        assert_eq!(got, h);
        let (got, bytes) = WalHeader::decode_file(&k, &obj).unwrap();
        assert_eq!((got, bytes), (h, file));
    }

    #[test]
    fn a_body_from_another_object_or_a_flipped_bit_is_refused() {
        let k = keys();
        let a = vec![1u8; 4096];
        let b = vec![2u8; 4096];
        let mut hb = header(&b);
        hb.name = "000000010000000000000004".into();
        let oa = header(&a)
            .encode(&k, &zstd::bulk::compress(&a, 3).unwrap(), None)
            .unwrap();
        let ob = hb
            .encode(&k, &zstd::bulk::compress(&b, 3).unwrap(), None)
            .unwrap();
        let (_, at_a) = WalHeader::decode(&k, &oa).unwrap();
        let (_, at_b) = WalHeader::decode(&k, &ob).unwrap();
        let mut spliced = oa[..at_a].to_vec();
        spliced.extend_from_slice(&ob[at_b..]);
        assert!(WalHeader::decode_file(&k, &spliced).is_err());
        for i in [0, 5, 10, oa.len() - 1] {
            let mut bad = oa.clone();
            bad[i] ^= 1;
            assert!(WalHeader::decode_file(&k, &bad).is_err(), "bit flip at {i}");
        }
        assert!(WalHeader::decode_file(&k, &oa[..oa.len() - 1]).is_err());
    }

    /// format-spec §5.13: a header box is 142 bytes with a one-byte name and 205 with the
    /// longest, inside the 142 … 512 a reader accepts; one byte less is refused.
    #[test]
    fn header_boxes_are_the_sizes_the_spec_gives() {
        let k = keys();
        for (name_len, box_len) in [(1, 142), (24, 165), (MAX_NAME_LEN, 205)] {
            let h = WalHeader {
                name: "0".repeat(name_len),
                ..header(&[0u8; 4096])
            };
            let obj = h.encode(&k, b"", None).unwrap();
            assert_eq!(u16::from_le_bytes([obj[5], obj[6]]) as usize, box_len);
            assert_eq!(WalHeader::decode(&k, &obj).unwrap().1, PREFIX_LEN + box_len);
        }
        let mut short = b"CFFA\x03".to_vec();
        short.extend_from_slice(&141u16.to_le_bytes());
        short.resize(PREFIX_LEN + 141 + 40, 0);
        let err = WalHeader::decode(&k, &short).unwrap_err();
        assert!(err.message().contains("header box of 141 bytes"), "{err}");
        assert_eq!(MAX_OBJECT_LEN, (1 << 30) + 7 + 512 + 40);
    }

    #[test]
    fn writers_refuse_what_readers_refuse() {
        let k = keys();
        let mut h = header(&[0u8; 4096]);
        h.size = 100;
        assert!(h.encode(&k, b"", None).is_err(), "short complete segment");
        let mut h = header(&[0u8; 4096]);
        h.name = "x".repeat(MAX_NAME_LEN + 1);
        assert!(h.encode(&k, b"", None).is_err(), "long name");
        let mut h = header(&[0u8; 4096]);
        h.commits = Some((2, 1));
        assert!(h.encode(&k, b"", None).is_err(), "commits out of order");
    }
}
