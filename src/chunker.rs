//! Content-defined chunking (FastCDC 2020, normalization level 1) over a gear table derived
//! from the repository key, so chunk boundaries, and therefore stored sizes, differ between
//! repositories and cannot be predicted without the key (format-spec §4.1).
//!
//! The cut-point search is fastcdc's own `cut_gear`; this module supplies the keyed table and
//! the loops over a slice and over a reader. fastcdc's `FastCDC` and `StreamCDC` only take a
//! 64-bit seed XORed into its fixed table, which leaves the table's structure public.

use crate::error::{Error, Result};
use fastcdc::v2020::{cut_gear, logarithm2, MASKS};
use std::io::Read;

/// The gear table: one 64-bit value per byte value, derived from the key
/// (`Keys::chunker_gear`).
pub type Gear = [u64; 256];

/// FastCDC's normalization level: the small mask has this many bits more than the average
/// size implies, the large mask this many fewer (fastcdc's `Normalization::Level1`).
const NORMALIZATION: u32 = 1;

/// Minimum, average and maximum chunk sizes in bytes (stored in the repository config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl ChunkerParams {
    /// For ordinary files: large chunks keep the index small.
    pub const FILES: ChunkerParams = ChunkerParams {
        min: 512 * 1024,
        avg: 1024 * 1024,
        max: 8 * 1024 * 1024,
    };
    /// For streams such as database dumps, whose changes are scattered: small chunks. On six
    /// nightly 150 MB `pg_dump`s (benches/compare.sh data) the mean growth per night was
    /// 24 MB at 64 KiB average, 17.5 at 16 KiB, 13.9 at 8 KiB and 10.9 at 4 KiB, against a
    /// first night of 26, 30, 34 and 40 MB: per-chunk compression loses on small chunks, but
    /// after a few nights 4 KiB stores the least. See format-spec/README.md, "Chunk sizes".
    pub const STREAM: ChunkerParams = ChunkerParams {
        min: 1024,
        avg: 4 * 1024,
        max: 16 * 1024,
    };

    /// The ranges FastCDC is defined for; a config outside them is refused as corrupt.
    pub fn validate(&self) -> Result<()> {
        let ok = (64..=1 << 20).contains(&self.min)
            && (256..=4 << 20).contains(&self.avg)
            && (1024..=16 << 20).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(Error::corrupt(format!(
                "chunker sizes {}/{}/{} are out of range",
                self.min, self.avg, self.max
            )))
        }
    }
}

/// Finds cut points: FastCDC's masks for the sizes, and the gear table with its copy shifted
/// left by one bit (FastCDC rolls two bytes per step, the first through the shifted table).
struct Cutter<'g> {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: &'g Gear,
    gear_ls: Box<Gear>,
}

impl<'g> Cutter<'g> {
    fn new(params: ChunkerParams, gear: &'g Gear) -> Cutter<'g> {
        // Sizes come from a validated config; clamp anyway, so that no input can index
        // outside the mask table.
        let bits = logarithm2(params.avg).clamp(8, 22);
        Cutter {
            min: params.min as usize,
            avg: params.avg as usize,
            max: params.max as usize,
            mask_s: MASKS[(bits + NORMALIZATION) as usize],
            mask_l: MASKS[(bits - NORMALIZATION) as usize],
            gear,
            gear_ls: Box::new(gear.map(|g| g << 1)),
        }
    }

    /// The length of the chunk that starts `data`: at least 1 when `data` is not empty, and
    /// at most `max`. Needs at least `max` bytes of `data`, or all that is left of the input.
    fn cut(&self, data: &[u8]) -> usize {
        let (_, n) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            self.gear,
            &self.gear_ls,
        );
        n
    }
}

/// Split an in-memory buffer into chunks (the same cut points as `chunk_stream`), calling
/// `each` with every chunk in order. Cheaper than streaming for small files.
pub fn chunk_slice<'a>(
    data: &'a [u8],
    params: ChunkerParams,
    gear: &Gear,
    mut each: impl FnMut(&'a [u8]) -> Result<()>,
) -> Result<()> {
    if data.len() <= params.min as usize {
        return if data.is_empty() { Ok(()) } else { each(data) };
    }
    let cutter = Cutter::new(params, gear);
    let mut at = 0;
    while at < data.len() {
        let n = cutter.cut(&data[at..]).max(1);
        each(&data[at..at + n])?;
        at += n;
    }
    Ok(())
}

/// Split a reader into chunks, calling `each` with every chunk's bytes in order.
/// Stops early (returning the error) if `each` fails.
pub fn chunk_stream<R: Read>(
    mut reader: R,
    params: ChunkerParams,
    gear: &Gear,
    mut each: impl FnMut(Vec<u8>) -> Result<()>,
) -> Result<()> {
    let cutter = Cutter::new(params, gear);
    let max = params.max as usize;
    // Room for two maximal chunks: unconsumed bytes (less than `max`) are moved to the front
    // at most once per `max` bytes consumed, so moving costs less than one copy of the input.
    let capacity = 2 * max;
    let mut buf: Vec<u8> = Vec::new();
    let (mut start, mut end) = (0usize, 0usize);
    let mut eof = false;
    loop {
        if end - start < max && !eof {
            buf.copy_within(start..end, 0);
            (start, end) = (0, end - start);
            buf.resize(capacity, 0);
            while end < capacity {
                match reader.read(&mut buf[end..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => end += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::io("reading", e)),
                }
            }
        }
        if start == end {
            return Ok(());
        }
        let n = cutter.cut(&buf[start..end]).max(1);
        each(buf[start..start + n].to_vec())?;
        start += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastcdc::v2020::{get_gear_with_seed, FastCDC, Normalization, StreamCDC};

    fn pseudo_random(n: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// A gear table from a key, as `Keys` derives it.
    fn keyed(byte: u8) -> Gear {
        use crate::crypto::{Keys, MasterSecret};
        *Keys::derive(&MasterSecret::from_bytes([byte; 32])).chunker_gear()
    }

    fn stream_cuts(data: &[u8], params: ChunkerParams, gear: &Gear) -> Vec<usize> {
        let mut out = vec![];
        chunk_stream(data, params, gear, |c| {
            out.push(c.len());
            Ok(())
        })
        .unwrap();
        out
    }

    fn slice_cuts(data: &[u8], params: ChunkerParams, gear: &Gear) -> Vec<usize> {
        let mut out = vec![];
        chunk_slice(data, params, gear, |c| {
            out.push(c.len());
            Ok(())
        })
        .unwrap();
        out
    }

    const SMALL: ChunkerParams = ChunkerParams {
        min: 64,
        avg: 256,
        max: 1024,
    };
    const MID: ChunkerParams = ChunkerParams {
        min: 16 * 1024,
        avg: 64 * 1024,
        max: 256 * 1024,
    };

    /// A reader that hands out a few bytes at a time, so the stream's buffering is exercised
    /// at every offset.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.1 = self.1 % 7 + 1;
            let n = self.1.min(out.len()).min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn cut_points_are_fastcdcs_for_its_own_tables() {
        // With fastcdc's table (XORed with a seed, as it does), our loops must cut exactly
        // where fastcdc's iterators do: the chunker keeps FastCDC's behaviour (minimum,
        // normalization, maximum) and only the table changes.
        let random = pseudo_random(3 << 20);
        let zeros = vec![0u8; 1 << 20];
        for params in [SMALL, ChunkerParams::STREAM, MID, ChunkerParams::FILES] {
            for seed in [0, 0x2e1f_bb69_b110_b297] {
                let gear = *get_gear_with_seed(seed).0;
                for data in [&random[..], &zeros[..], &random[..params.min as usize + 1]] {
                    let theirs: Vec<usize> = FastCDC::with_level_and_seed(
                        data,
                        params.min,
                        params.avg,
                        params.max,
                        Normalization::Level1,
                        seed,
                    )
                    .map(|c| c.length)
                    .collect();
                    let streamed: Vec<usize> = StreamCDC::with_level_and_seed(
                        data,
                        params.min,
                        params.avg,
                        params.max,
                        Normalization::Level1,
                        seed,
                    )
                    .map(|c| c.unwrap().length)
                    .collect();
                    assert_eq!(theirs, streamed);
                    assert_eq!(slice_cuts(data, params, &gear), theirs, "{params:?}");
                    assert_eq!(stream_cuts(data, params, &gear), theirs, "{params:?}");
                }
            }
        }
    }

    #[test]
    fn all_zero_input_is_cut_at_the_maximum_with_fastcdcs_table() {
        // fastcdc's table never finds a cut point in zeros: the maximum applies.
        let gear = *get_gear_with_seed(0).0;
        let cuts = stream_cuts(&vec![0u8; 10_000], SMALL, &gear);
        assert_eq!(
            cuts,
            [1024; 9].iter().chain(&[784]).copied().collect::<Vec<_>>()
        );
    }

    #[test]
    fn cut_points_are_skipped_below_the_minimum() {
        // A zero table makes every position a cut point; the first one looked at is `min`.
        let cuts = slice_cuts(&pseudo_random(1000), SMALL, &[0; 256]);
        assert_eq!(
            cuts,
            [64; 15].iter().chain(&[40]).copied().collect::<Vec<_>>()
        );
    }

    #[test]
    fn chunks_respect_the_sizes_and_cover_the_input() {
        let data = pseudo_random(4 << 20);
        for params in [SMALL, ChunkerParams::STREAM, MID] {
            let cuts = stream_cuts(&data, params, &keyed(1));
            assert_eq!(cuts.iter().sum::<usize>(), data.len());
            let (last, rest) = cuts.split_last().unwrap();
            assert!(rest
                .iter()
                .all(|&n| n >= params.min as usize && n <= params.max as usize));
            assert!(*last <= params.max as usize);
            // Normalized chunking keeps the mean near the average size.
            let mean = data.len() / cuts.len();
            assert!(
                mean > params.avg as usize / 2 && mean < params.avg as usize * 2,
                "{params:?}: mean {mean}"
            );
        }
    }

    #[test]
    fn the_key_moves_boundaries_and_the_same_key_does_not() {
        let data = pseudo_random(4 << 20);
        let a = stream_cuts(&data, ChunkerParams::STREAM, &keyed(1));
        let b = stream_cuts(&data, ChunkerParams::STREAM, &keyed(2));
        assert_ne!(a, b);
        assert_eq!(a, stream_cuts(&data, ChunkerParams::STREAM, &keyed(1)));
        assert_eq!(
            a,
            slice_cuts(&data, ChunkerParams::STREAM, &keyed(1)),
            "slice and stream chunking must cut at the same points"
        );
        // Reads of a few bytes at a time cut at the same points, and give the same bytes.
        let mut trickled = vec![];
        chunk_stream(Trickle(&data, 0), ChunkerParams::STREAM, &keyed(1), |c| {
            trickled.push(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(trickled.iter().map(Vec::len).collect::<Vec<_>>(), a);
        assert_eq!(trickled.concat(), data);
    }

    #[test]
    fn the_keyed_table_is_not_fastcdcs_with_a_seed() {
        // The weak keying this replaced: one value XORed into every entry of a public table.
        let public = get_gear_with_seed(0).0;
        let gear = keyed(1);
        let x0 = gear[0] ^ public[0];
        assert!(gear.iter().zip(public.iter()).any(|(g, p)| g ^ p != x0));
    }

    #[test]
    fn small_and_empty_inputs() {
        let gear = keyed(1);
        assert!(slice_cuts(&[], SMALL, &gear).is_empty());
        assert!(stream_cuts(&[], SMALL, &gear).is_empty());
        assert_eq!(slice_cuts(&[7; 64], SMALL, &gear), [64]);
        assert_eq!(stream_cuts(&[7; 64], SMALL, &gear), [64]);
    }

    #[test]
    fn a_read_error_is_reported() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk gone"))
            }
        }
        let err = chunk_stream(Failing, SMALL, &keyed(1), |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), crate::error::ErrorKind::Io);
    }
}
