//! Index files: where each blob lives (pack, offset, length). Written after the packs they
//! describe and before any snapshot that needs them.
//!
//! Layout: `"CFFI" version:u8` then sealed body (AAD = those 5 bytes):
//! `supersedes_count:u32 index_id:[32]* pack_count:u32 pack*`, where
//! `pack = pack_id:[32] pack_size:u64 blob_count:u32 blob*` and
//! `blob = type:u8 id:[32] offset:u32 length:u32 raw_length:u32` (45 bytes).

use super::wire::{Reader, Writer};
use super::{open_envelope, seal_envelope, BlobType, FORMAT_VERSION};
use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::{BlobId, IndexId, PackId};

pub const MAGIC: &[u8; 4] = b"CFFI";
const BLOB_LEN: usize = 45;
const PACK_MIN_LEN: usize = 32 + 8 + 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexBlob {
    pub blob_type: BlobType,
    pub id: BlobId,
    pub offset: u32,
    pub length: u32,
    pub raw_length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    pub id: PackId,
    /// Size of the pack file in bytes (lets `check` spot truncation from a listing).
    pub size: u64,
    pub blobs: Vec<IndexBlob>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexFile {
    /// Index files whose content this one includes; readers may ignore those (garbage
    /// collection writes a combined index, then deletes the superseded ones).
    pub supersedes: Vec<IndexId>,
    pub packs: Vec<IndexPack>,
}

impl IndexFile {
    pub fn encode(&self, keys: &Keys, nonce: Option<[u8; NONCE_LEN]>) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.supersedes.len() as u32);
        for id in &self.supersedes {
            w.raw(&id.0);
        }
        w.u32(self.packs.len() as u32);
        for p in &self.packs {
            w.raw(&p.id.0);
            w.u64(p.size);
            w.u32(p.blobs.len() as u32);
            for b in &p.blobs {
                w.u8(b.blob_type as u8);
                w.raw(&b.id.0);
                w.u32(b.offset);
                w.u32(b.length);
                w.u32(b.raw_length);
            }
        }
        let mut public = MAGIC.to_vec();
        public.push(FORMAT_VERSION);
        seal_envelope(keys, nonce, public, &w.finish())
    }

    pub fn decode(keys: &Keys, bytes: &[u8]) -> Result<Self> {
        Reader::new(bytes, "index").header(MAGIC, FORMAT_VERSION)?;
        let body = open_envelope(keys, bytes, 5, "index")?;
        let mut r = Reader::new(&body, "index");
        let n = r.count(32)?;
        let mut supersedes = Vec::with_capacity(n);
        for _ in 0..n {
            supersedes.push(IndexId(r.array()?));
        }
        let n = r.count(PACK_MIN_LEN)?;
        let mut packs = Vec::with_capacity(n);
        for _ in 0..n {
            let id = PackId(r.array()?);
            let size = r.u64()?;
            let m = r.count(BLOB_LEN)?;
            let mut blobs = Vec::with_capacity(m);
            for _ in 0..m {
                let b = IndexBlob {
                    blob_type: BlobType::from_u8(r.u8()?)?,
                    id: BlobId(r.array()?),
                    offset: r.u32()?,
                    length: r.u32()?,
                    raw_length: r.u32()?,
                };
                if b.offset as u64 + b.length as u64 > size {
                    return Err(Error::corrupt(
                        "index places a blob beyond the end of its pack",
                    ));
                }
                blobs.push(b);
            }
            packs.push(IndexPack { id, size, blobs });
        }
        r.end()?;
        Ok(IndexFile { supersedes, packs })
    }
}
