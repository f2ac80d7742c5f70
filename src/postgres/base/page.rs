//! PostgreSQL data pages: the header fields a backup reads, and the page checksum.
//!
//! The checksum is the one PostgreSQL computes when the cluster was initialised with
//! `--data-checksums` (`src/include/storage/checksum_impl.h`, written here from its
//! description). The page is read as a table of 32 columns of little 32-bit words; each
//! column is folded into its own hash, started from a fixed offset basis, with an FNV-1a
//! step that also mixes in the value shifted right by 17 bits
//! (`h = (h ^ v) * FNV_PRIME ^ ((h ^ v) >> 17)`), then with two more steps of the value 0.
//! The 32 hashes are XORed together, the page's block number within its relation (not
//! within its 1 GiB segment file) is XORed in, and the result is reduced modulo 65,535 and
//! offset by one, so 0 never appears. `pd_checksum` counts as 0 while the sum is computed.
//!
//! Pages hold their header in the machine's byte order. coffer reads the data directory on
//! the database host itself (see `base/mod.rs`), so that is this machine's order too.

/// The header of a page, as far as a backup needs it (`PageHeaderData`): `pd_lsn` at 0
/// (two 32-bit halves, high first), `pd_checksum` at 8, `pd_upper` at 14.
const LSN_AT: usize = 0;
const CHECKSUM_AT: usize = 8;
const UPPER_AT: usize = 14;

/// Hashes folded in parallel; a fixed part of the algorithm (changing it changes the sums).
const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;
/// The partial hashes' starting values (offset bases).
const BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

/// A write-ahead log position (`pg_lsn`), printed as PostgreSQL prints it: `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::wal::names::lsn_text(self.0))
    }
}

impl std::str::FromStr for Lsn {
    type Err = String;
    fn from_str(s: &str) -> Result<Lsn, String> {
        crate::wal::names::parse_lsn(s)
            .map(Lsn)
            .ok_or_else(|| format!("{s:?} is not a WAL position like 16/B374D848"))
    }
}

fn u16_at(page: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([page[at], page[at + 1]])
}

fn u32_at(page: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(page[at..at + 4].try_into().expect("4 bytes"))
}

/// The page's `pd_lsn`: the end of the last WAL record that changed it.
pub fn lsn(page: &[u8]) -> Lsn {
    let hi = u32_at(page, LSN_AT) as u64;
    let lo = u32_at(page, LSN_AT + 4) as u64;
    Lsn((hi << 32) | lo)
}

/// The checksum stored in the page (`pd_checksum`).
pub fn stored_checksum(page: &[u8]) -> u16 {
    u16_at(page, CHECKSUM_AT)
}

/// A page that was allocated but never initialised (`PageIsNew`: `pd_upper` is 0). Such a
/// page carries no checksum.
pub fn is_new(page: &[u8]) -> bool {
    u16_at(page, UPPER_AT) == 0
}

/// PostgreSQL's checksum of `page` as block `blkno` of its relation. `page` is one whole
/// page: a multiple of 128 bytes (8,192 in every usual build).
pub fn checksum(page: &[u8], blkno: u32) -> u16 {
    debug_assert!(page.len() % (4 * N_SUMS) == 0 && page.len() > CHECKSUM_AT + 2);
    let mut sums = BASE_OFFSETS;
    let step = |sum: &mut u32, value: u32| {
        let tmp = *sum ^ value;
        *sum = tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17);
    };
    for (row_at, row) in page.chunks_exact(4 * N_SUMS).enumerate() {
        for (j, sum) in sums.iter_mut().enumerate() {
            let at = 4 * j;
            // pd_checksum (bytes 8..10, in the first row) counts as zero.
            let value = if row_at == 0 && at == CHECKSUM_AT {
                let w = u32_at(row, at);
                let mask = u32::from_ne_bytes([0, 0, 0xFF, 0xFF]);
                w & mask
            } else {
                u32_at(row, at)
            };
            step(sum, value);
        }
    }
    for _ in 0..2 {
        for sum in sums.iter_mut() {
            step(sum, 0);
        }
    }
    let folded = sums.iter().fold(0u32, |acc, s| acc ^ s) ^ blkno;
    ((folded % 65_535) + 1) as u16
}

/// What checking one page found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The stored checksum matches.
    Good,
    /// A new page, all zeros: nothing to check.
    Empty,
    /// Written at or after the backup's start: it may be torn, and WAL replay rewrites it
    /// from a full-page image, so its checksum says nothing yet.
    Recent,
    /// The checksum does not match (or a new page holds data): `computed` is what the page
    /// should carry.
    Bad { stored: u16, computed: u16 },
}

/// Check one page, block `blkno` of its relation, for a backup that started at `start`.
pub fn verify(page: &[u8], blkno: u32, start: Lsn) -> Verdict {
    if is_new(page) {
        // PostgreSQL accepts a new page only if it is all zeros.
        return if page.iter().all(|&b| b == 0) {
            Verdict::Empty
        } else {
            Verdict::Bad {
                stored: stored_checksum(page),
                computed: 0,
            }
        };
    }
    if lsn(page) >= start {
        return Verdict::Recent;
    }
    let (stored, computed) = (stored_checksum(page), checksum(page, blkno));
    if stored == computed {
        Verdict::Good
    } else {
        Verdict::Bad { stored, computed }
    }
}

#[cfg(test)]
#[path = "page_tests.rs"]
mod tests;
