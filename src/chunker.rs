//! Content-defined chunking (FastCDC 2020) with a per-repository secret seed, so chunk
//! boundaries, and therefore stored sizes, differ between repositories.

use crate::error::{Error, Result};
use fastcdc::v2020::{FastCDC, Normalization, StreamCDC};
use std::io::Read;

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

    /// The ranges fastcdc accepts; a config outside them is refused as corrupt.
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

/// Split an in-memory buffer into chunks (the same cut points as `chunk_stream`), calling
/// `each` with every chunk in order. Cheaper than streaming for small files: the streaming
/// chunker allocates a buffer of the maximum chunk size for every reader.
pub fn chunk_slice<'a>(
    data: &'a [u8],
    params: ChunkerParams,
    seed: u64,
    mut each: impl FnMut(&'a [u8]) -> Result<()>,
) -> Result<()> {
    if data.len() <= params.min as usize {
        return if data.is_empty() { Ok(()) } else { each(data) };
    }
    let cdc = FastCDC::with_level_and_seed(
        data,
        params.min,
        params.avg,
        params.max,
        Normalization::Level1,
        seed,
    );
    for c in cdc {
        each(&data[c.offset..c.offset + c.length])?;
    }
    Ok(())
}

/// Split a reader into chunks, calling `each` with every chunk's bytes in order.
/// Stops early (returning the error) if `each` fails.
pub fn chunk_stream<R: Read>(
    reader: R,
    params: ChunkerParams,
    seed: u64,
    mut each: impl FnMut(Vec<u8>) -> Result<()>,
) -> Result<()> {
    let cdc = StreamCDC::with_level_and_seed(
        reader,
        params.min,
        params.avg,
        params.max,
        Normalization::Level1,
        seed,
    );
    for chunk in cdc {
        match chunk {
            Ok(c) => each(c.data)?,
            Err(fastcdc::v2020::Error::IoError(e)) => return Err(Error::io("reading", e)),
            Err(e) => return Err(Error::new(crate::error::ErrorKind::Io, e.to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn cuts(data: &[u8], seed: u64) -> Vec<usize> {
        let mut out = vec![];
        chunk_stream(data, ChunkerParams::STREAM, seed, |c| {
            out.push(c.len());
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn seed_moves_boundaries_and_chunks_cover_input() {
        let data = pseudo_random(4 << 20);
        let a = cuts(&data, 1);
        let b = cuts(&data, 2);
        assert_eq!(a.iter().sum::<usize>(), data.len());
        assert_eq!(b.iter().sum::<usize>(), data.len());
        assert_ne!(a, b);
        assert_eq!(a, cuts(&data, 1));
        let mut sliced = vec![];
        chunk_slice(&data, ChunkerParams::STREAM, 1, |c| {
            sliced.push(c.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            a, sliced,
            "slice and stream chunking must cut at the same points"
        );
    }
}
