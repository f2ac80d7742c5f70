//! Pack files: many sealed blobs followed by a sealed header and a fixed trailer.
//!
//! ```text
//! blob_0 .. blob_n-1              each: sealed(codec:u8 payload), AAD = "coffer blob v1" type:u8
//! header                          sealed(count:u32 entry*), AAD = "coffer pack header v1"
//!                                 entry = type:u8 id:[32] length:u32 raw_length:u32 (41 bytes)
//! trailer (9 bytes)               "CFFP" version:u8 header_length:u32
//! ```
//! Blob offsets are implicit: blob i starts where blob i-1 ends, the first at 0.

use super::wire::{Reader, Writer};
use super::{BlobType, FORMAT_VERSION};
use crate::compress::{self, Codec};
use crate::crypto::{Keys, NONCE_LEN, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::id::BlobId;

pub const MAGIC: &[u8; 4] = b"CFFP";
pub const TRAILER_LEN: usize = 9;
const ENTRY_LEN: usize = 41;
const HEADER_AAD: &[u8] = b"coffer pack header v1";
/// Largest header a reader accepts: 1 Mi entries.
pub const MAX_HEADER_LEN: u32 = (SEAL_OVERHEAD + 4 + ENTRY_LEN * (1 << 20)) as u32;

/// One blob's entry in a pack header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    pub blob_type: BlobType,
    pub id: BlobId,
    /// Stored (sealed) length in the pack.
    pub length: u32,
    /// Plaintext length before compression.
    pub raw_length: u32,
}

fn blob_aad(blob_type: BlobType) -> [u8; 15] {
    let mut aad = *b"coffer blob v1\0";
    aad[14] = blob_type as u8;
    aad
}

/// Compress and seal one blob's plaintext.
pub fn seal_blob(keys: &Keys, blob_type: BlobType, plaintext: &[u8], zstd_level: i32) -> Vec<u8> {
    let (codec, payload) = compress::compress(plaintext, zstd_level);
    let mut framed = Vec::with_capacity(payload.len() + 1);
    framed.push(codec as u8);
    framed.extend_from_slice(&payload);
    keys.seal(&blob_aad(blob_type), &framed)
}

/// `seal_blob` with a fixed nonce and an explicit codec, for test vectors.
pub fn seal_blob_with_nonce(
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
    keys.seal_with_nonce(nonce, &blob_aad(blob_type), &framed)
}

/// Open and decompress one sealed blob, then check that its plaintext hashes to `id`.
pub fn open_blob(keys: &Keys, blob_type: BlobType, id: &BlobId, sealed: &[u8]) -> Result<Vec<u8>> {
    let framed = keys.open(&blob_aad(blob_type), sealed)?;
    let (&codec, payload) = framed
        .split_first()
        .ok_or_else(|| Error::corrupt("blob has no codec byte"))?;
    let plain = compress::decompress(codec, payload)?;
    if keys.blob_id(blob_type as u8, &plain) != *id {
        return Err(Error::corrupt(format!(
            "{} blob {} decrypts to data with a different hash",
            blob_type.name(),
            id.short()
        )));
    }
    Ok(plain)
}

/// Seal a header listing `entries` and append the trailer: the bytes that end a pack.
pub fn encode_header(
    keys: &Keys,
    entries: &[PackEntry],
    nonce: Option<[u8; NONCE_LEN]>,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(entries.len() as u32);
    for e in entries {
        w.u8(e.blob_type as u8);
        w.raw(&e.id.0);
        w.u32(e.length);
        w.u32(e.raw_length);
    }
    let body = w.finish();
    let mut out = match nonce {
        Some(n) => keys.seal_with_nonce(n, HEADER_AAD, &body),
        None => keys.seal(HEADER_AAD, &body),
    };
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

/// Open a sealed header. `blobs_len` is the number of pack bytes before the header: the
/// entries must exactly tile it.
pub fn decode_header(keys: &Keys, sealed: &[u8], blobs_len: u64) -> Result<Vec<PackEntry>> {
    // Offsets are u32 (here and in the index), so the blob area must fit one; checking it
    // first also keeps `decode_pack`'s offset sum from overflowing on a forged pack.
    if blobs_len > u32::MAX as u64 {
        return Err(Error::corrupt(format!(
            "pack holds {blobs_len} bytes of blobs, more than 32-bit offsets can address"
        )));
    }
    let body = keys
        .open(HEADER_AAD, sealed)
        .map_err(|e| e.context("pack header"))?;
    let mut r = Reader::new(&body, "pack header");
    let n = r.count(ENTRY_LEN)?;
    let mut entries = Vec::with_capacity(n);
    let mut total = 0u64;
    for _ in 0..n {
        let e = PackEntry {
            blob_type: BlobType::from_u8(r.u8()?)?,
            id: BlobId(r.array()?),
            length: r.u32()?,
            raw_length: r.u32()?,
        };
        if (e.length as usize) < SEAL_OVERHEAD + 1 {
            return Err(Error::corrupt(
                "pack header lists a blob shorter than its seal",
            ));
        }
        total += e.length as u64;
        entries.push(e);
    }
    r.end()?;
    if total != blobs_len {
        return Err(Error::corrupt(format!(
            "pack header covers {total} bytes but the pack holds {blobs_len} bytes of blobs"
        )));
    }
    Ok(entries)
}

/// Decode a whole pack held in memory: its entries with their offsets.
pub fn decode_pack(keys: &Keys, pack: &[u8]) -> Result<Vec<(u32, PackEntry)>> {
    if pack.len() < TRAILER_LEN {
        return Err(Error::corrupt("pack is shorter than its trailer"));
    }
    let header_len = decode_trailer(&pack[pack.len() - TRAILER_LEN..])? as usize;
    let header_start = pack
        .len()
        .checked_sub(TRAILER_LEN + header_len)
        .ok_or_else(|| Error::corrupt("pack is shorter than its header"))?;
    let entries = decode_header(
        keys,
        &pack[header_start..pack.len() - TRAILER_LEN],
        header_start as u64,
    )?;
    let mut offset = 0u32;
    Ok(entries
        .into_iter()
        .map(|e| {
            let at = offset;
            offset += e.length;
            (at, e)
        })
        .collect())
}
