//! Pack files: compressed, sealed frames of blobs, then a sealed header and a fixed trailer.
//!
//! ```text
//! frame_0 .. frame_n-1     each: sealed(codec:u8 payload), AAD = "coffer frame v2" type:u8;
//!                          the payload decompresses to the frame's blobs' plaintexts, back to back
//! header                   sealed(frame_count:u32 frame*), AAD = "coffer pack header v2"
//!                          frame = type:u8 length:u32 blob_count:u32 (id:[32] raw_length:u32)*
//! trailer (9 bytes)        "CFFP" version:u8 header_length:u32
//! ```
//! Offsets are implicit: frame i starts where frame i-1 ends, the first at 0, and blob j of a
//! frame starts in the frame's plaintext where blob j-1 ends. Compressing many small blobs
//! together is what makes 4 KiB chunks pay off: zstd sees the neighbours of each chunk.

use super::wire::{Reader, Writer};
use super::{BlobType, FORMAT_VERSION};
#[cfg(feature = "vectors")]
use crate::compress::Codec;
use crate::compress::{self, MAX_BLOB_SIZE};
use crate::crypto::{Keys, NONCE_LEN, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::id::BlobId;

pub const MAGIC: &[u8; 4] = b"CFFP";
pub const TRAILER_LEN: usize = 9;
/// Encoded size of a frame's fixed part and of one of its blobs.
const FRAME_FIXED_LEN: usize = 1 + 4 + 4;
const FRAME_BLOB_LEN: usize = 32 + 4;
const HEADER_AAD: &[u8] = b"coffer pack header v2";
/// Largest header a reader accepts (about 1 Mi blobs).
pub const MAX_HEADER_LEN: u32 = 40 << 20;

/// A frame's blob: its ID and plaintext length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameBlob {
    pub id: BlobId,
    pub raw_length: u32,
}

/// One frame of a pack: blobs of one type, compressed and sealed together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub blob_type: BlobType,
    /// Stored (sealed) length in the pack.
    pub length: u32,
    pub blobs: Vec<FrameBlob>,
}

impl Frame {
    /// Length of the frame's plaintext: its blobs back to back.
    pub fn raw_length(&self) -> u64 {
        self.blobs.iter().map(|b| b.raw_length as u64).sum()
    }
}

fn frame_aad(blob_type: BlobType) -> [u8; 16] {
    let mut aad = *b"coffer frame v2\0";
    aad[15] = blob_type as u8;
    aad
}

/// Compress and seal a frame's plaintext (its blobs back to back).
pub fn seal_frame(keys: &Keys, blob_type: BlobType, plaintext: &[u8], zstd_level: i32) -> Vec<u8> {
    let (codec, payload) = compress::compress(plaintext, zstd_level);
    let mut framed = Vec::with_capacity(payload.len() + 1);
    framed.push(codec as u8);
    framed.extend_from_slice(&payload);
    keys.seal(&frame_aad(blob_type), &framed)
}

/// `seal_frame` with a fixed nonce and an explicit codec, for test vectors (only in builds
/// with the `vectors` feature, like `Keys::seal_with_nonce`).
#[cfg(feature = "vectors")]
pub fn seal_frame_with_nonce(
    keys: &Keys,
    blob_type: BlobType,
    plaintext: &[u8],
    codec: Codec,
    nonce: [u8; NONCE_LEN],
) -> Vec<u8> {
    let payload = match codec {
        Codec::None => plaintext.to_vec(),
        Codec::Zstd => zstd::bulk::compress(plaintext, 3).expect("zstd in memory"),
    };
    let mut framed = vec![codec as u8];
    framed.extend_from_slice(&payload);
    keys.seal_with_nonce(nonce, &frame_aad(blob_type), &framed)
}

/// Open and decompress one sealed frame; its plaintext must be `raw_length` bytes.
pub fn open_frame(
    keys: &Keys,
    blob_type: BlobType,
    sealed: &[u8],
    raw_length: u64,
) -> Result<Vec<u8>> {
    let framed = keys.open(&frame_aad(blob_type), sealed)?;
    let (&codec, payload) = framed
        .split_first()
        .ok_or_else(|| Error::corrupt("frame has no codec byte"))?;
    let plain = compress::decompress(codec, payload)?;
    if plain.len() as u64 != raw_length {
        return Err(Error::corrupt(format!(
            "frame holds {} bytes, its header says {raw_length}",
            plain.len()
        )));
    }
    Ok(plain)
}

/// Check that a blob's plaintext, cut from an opened frame, hashes to its ID.
pub fn verify_blob(keys: &Keys, blob_type: BlobType, id: &BlobId, plain: &[u8]) -> Result<()> {
    if keys.blob_id(blob_type as u8, plain) != *id {
        return Err(Error::corrupt(format!(
            "{} blob {} decrypts to data with a different hash",
            blob_type.name(),
            id.short()
        )));
    }
    Ok(())
}

/// Append frame descriptions (shared by pack headers and index files).
pub fn encode_frames(w: &mut Writer, frames: &[Frame]) {
    w.u32(frames.len() as u32);
    for f in frames {
        w.u8(f.blob_type as u8);
        w.u32(f.length);
        w.u32(f.blobs.len() as u32);
        for b in &f.blobs {
            w.raw(&b.id.0);
            w.u32(b.raw_length);
        }
    }
}

/// Read frame descriptions; returns them with the total of their stored lengths. Each frame
/// must be longer than a seal and its plaintext no larger than one blob may be.
pub fn decode_frames(r: &mut Reader) -> Result<(Vec<Frame>, u64)> {
    let n = r.count(FRAME_FIXED_LEN)?;
    let mut frames = Vec::with_capacity(n);
    let mut total = 0u64;
    for _ in 0..n {
        let blob_type = BlobType::from_u8(r.u8()?)?;
        let length = r.u32()?;
        if (length as usize) < SEAL_OVERHEAD + 1 {
            return Err(Error::corrupt("a frame is shorter than its seal"));
        }
        let m = r.count(FRAME_BLOB_LEN)?;
        if m == 0 {
            return Err(Error::corrupt("a frame holds no blobs"));
        }
        let mut blobs = Vec::with_capacity(m);
        let mut raw = 0u64;
        for _ in 0..m {
            let b = FrameBlob {
                id: BlobId(r.array()?),
                raw_length: r.u32()?,
            };
            raw += b.raw_length as u64;
            blobs.push(b);
        }
        if raw > MAX_BLOB_SIZE as u64 {
            return Err(Error::corrupt(format!(
                "a frame's blobs add up to {raw} bytes, more than the {MAX_BLOB_SIZE}-byte limit"
            )));
        }
        total += length as u64;
        frames.push(Frame {
            blob_type,
            length,
            blobs,
        });
    }
    Ok((frames, total))
}

/// Seal a header listing `frames` and append the trailer: the bytes that end a pack.
pub fn encode_header(keys: &Keys, frames: &[Frame], nonce: Option<[u8; NONCE_LEN]>) -> Vec<u8> {
    let mut w = Writer::new();
    encode_frames(&mut w, frames);
    let body = w.finish();
    let mut out = keys.seal_fixed_or_random(nonce, HEADER_AAD, &body);
    let header_len = out.len() as u32;
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&header_len.to_le_bytes());
    out
}

/// Parse the 9-byte trailer; returns the sealed header's length.
pub fn decode_trailer(trailer: &[u8]) -> Result<u32> {
    let mut r = Reader::new(trailer, "pack trailer");
    r.header(MAGIC, FORMAT_VERSION)?;
    let len = r.u32()?;
    r.end()?;
    if len < SEAL_OVERHEAD as u32 + 4 || len > MAX_HEADER_LEN {
        return Err(Error::corrupt(format!(
            "pack header length {len} is out of range"
        )));
    }
    Ok(len)
}

/// Open a sealed header. `frames_len` is the number of pack bytes before the header: the
/// frames must exactly tile it.
pub fn decode_header(keys: &Keys, sealed: &[u8], frames_len: u64) -> Result<Vec<Frame>> {
    // Offsets are u32 (here and in the index), so the frame area must fit one.
    if frames_len > u32::MAX as u64 {
        return Err(Error::corrupt(format!(
            "pack holds {frames_len} bytes of frames, more than 32-bit offsets can address"
        )));
    }
    let body = keys
        .open(HEADER_AAD, sealed)
        .map_err(|e| e.context("pack header"))?;
    let mut r = Reader::new(&body, "pack header");
    let (frames, total) = decode_frames(&mut r)?;
    r.end()?;
    if total != frames_len {
        return Err(Error::corrupt(format!(
            "pack header covers {total} bytes but the pack holds {frames_len} bytes of frames"
        )));
    }
    Ok(frames)
}

/// Decode the header of a whole pack held in memory.
pub fn decode_pack(keys: &Keys, pack: &[u8]) -> Result<Vec<Frame>> {
    if pack.len() < TRAILER_LEN {
        return Err(Error::corrupt("pack is shorter than its trailer"));
    }
    let header_len = decode_trailer(&pack[pack.len() - TRAILER_LEN..])? as usize;
    let header_start = pack
        .len()
        .checked_sub(TRAILER_LEN + header_len)
        .ok_or_else(|| Error::corrupt("pack is shorter than its header"))?;
    decode_header(
        keys,
        &pack[header_start..pack.len() - TRAILER_LEN],
        header_start as u64,
    )
}

/// Each frame with its offset in the pack (frames tile the pack from offset 0).
pub fn frame_offsets(frames: &[Frame]) -> impl Iterator<Item = (u32, &Frame)> {
    frames.iter().scan(0u32, |at, f| {
        let here = *at;
        *at = at.wrapping_add(f.length);
        Some((here, f))
    })
}
