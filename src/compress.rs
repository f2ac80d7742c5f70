//! zstd compression of blob payloads, with a skip for data that does not shrink and a cap
//! on decompressed size so a hostile blob cannot exhaust memory.

use crate::error::{Error, Result};
use std::cell::RefCell;

/// How a blob's payload is encoded inside its sealed box (the first plaintext byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// Stored as is: compression did not save enough to pay for decompression.
    None = 0,
    /// One zstd frame.
    Zstd = 1,
}

/// Largest decompressed blob any reader accepts (chunks, trees, chunk lists).
pub const MAX_BLOB_SIZE: usize = 64 * 1024 * 1024;

thread_local! {
    // zstd contexts are costly to create (a compression context at level 3 allocates over a
    // megabyte): with 4 KiB chunks, creating one per blob took a third of a restore's time.
    // Each thread keeps one of each.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn zstd_compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().map(|(l, _)| *l) != Some(level) {
            *c = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        c.as_mut().expect("just set").1.compress(data)
    })
}

fn zstd_decompress(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        d.as_mut().expect("just set").decompress(data, capacity)
    })
}

/// Compress `data` at `level`; keep it raw unless zstd saves at least 1/32 of it.
pub fn compress(data: &[u8], level: i32) -> (Codec, Vec<u8>) {
    if data.len() >= 64 {
        if let Ok(out) = zstd_compress(data, level) {
            if out.len() + data.len() / 32 < data.len() {
                return (Codec::Zstd, out);
            }
        }
    }
    (Codec::None, data.to_vec())
}

/// Undo `compress`, refusing output larger than `MAX_BLOB_SIZE`.
/// The frame must declare its decompressed size (coffer's writer always does); the output
/// buffer is sized from it, and a frame that lies about it is refused.
pub fn decompress(codec: u8, data: &[u8]) -> Result<Vec<u8>> {
    let out = match codec {
        c if c == Codec::None as u8 => data.to_vec(),
        c if c == Codec::Zstd as u8 => {
            let declared = zstd::zstd_safe::get_frame_content_size(data)
                .ok()
                .flatten()
                .ok_or_else(|| Error::corrupt("zstd frame does not declare its size"))?;
            if declared > MAX_BLOB_SIZE as u64 {
                return Err(Error::corrupt(
                    "zstd frame declares more than the blob size limit",
                ));
            }
            let out = zstd_decompress(data, declared as usize)
                .map_err(|e| Error::corrupt(format!("zstd payload does not decompress: {e}")))?;
            if out.len() as u64 != declared {
                return Err(Error::corrupt("zstd frame is shorter than it declares"));
            }
            out
        }
        other => return Err(Error::corrupt(format!("unknown codec {other}"))),
    };
    if out.len() > MAX_BLOB_SIZE {
        return Err(Error::corrupt("blob is larger than the blob size limit"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_skip() {
        let text = b"abcabcabc".repeat(1000);
        let (codec, packed) = compress(&text, 3);
        assert_eq!(codec, Codec::Zstd);
        assert_eq!(decompress(codec as u8, &packed).unwrap(), text);
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let (codec, raw) = compress(&noise, 3);
        assert_eq!(codec, Codec::None);
        assert_eq!(raw, noise);
        assert!(decompress(7, b"x").is_err());
        assert!(decompress(1, b"not zstd").is_err());
    }
}
