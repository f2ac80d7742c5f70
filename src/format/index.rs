//! Index files: which frames each pack holds and which blobs each frame holds. Written
//! after the packs they describe and before any snapshot that needs them.
//!
//! Layout: `"CFFI" version:u8` then sealed body (AAD = those 5 bytes):
//! `supersedes_count:u32 index_id:[32]* pack_count:u32 pack*`, where
//! `pack = pack_id:[32] pack_size:u64 frames` and `frames` is encoded as in a pack header
//! (`format::pack::encode_frames`): offsets are implicit there too.

use super::pack::{decode_frames, encode_frames, Frame};
use super::wire::{Reader, Writer};
use super::{open_envelope, seal_envelope, FORMAT_VERSION};
use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::{IndexId, PackId};

pub const MAGIC: &[u8; 4] = b"CFFI";
const PACK_MIN_LEN: usize = 32 + 8 + 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    pub id: PackId,
    /// Size of the pack file in bytes (lets `check` spot truncation from a listing).
    pub size: u64,
    pub frames: Vec<Frame>,
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
        let mut public = MAGIC.to_vec();
        public.push(FORMAT_VERSION);
        seal_envelope(keys, nonce, public, &self.encode_body())
    }

    /// The plaintext body (also what the local cache keeps).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(self.supersedes.len() as u32);
        for id in &self.supersedes {
            w.raw(&id.0);
        }
        w.u32(self.packs.len() as u32);
        for p in &self.packs {
            w.raw(&p.id.0);
            w.u64(p.size);
            encode_frames(&mut w, &p.frames);
        }
        w.finish()
    }

    pub fn decode(keys: &Keys, bytes: &[u8]) -> Result<Self> {
        Reader::new(bytes, "index").header(MAGIC, FORMAT_VERSION)?;
        let body = open_envelope(keys, bytes, 5, "index")?;
        Self::decode_body(&body)
    }

    /// Decode a plaintext body, checking that every pack's frames fit inside the pack.
    pub fn decode_body(body: &[u8]) -> Result<Self> {
        let mut r = Reader::new(body, "index");
        let n = r.count(32)?;
        let mut supersedes = Vec::with_capacity(n);
        for _ in 0..n {
            supersedes.push(IndexId(r.array()?));
        }
        let n = r.count(PACK_MIN_LEN)?;
        let mut packs = Vec::with_capacity(n);
        let mut listed = std::collections::HashSet::with_capacity(n);
        for _ in 0..n {
            let id = PackId(r.array()?);
            // Two entries for one pack cannot both be its header: which frames would hold?
            if !listed.insert(id) {
                return Err(Error::corrupt(format!(
                    "index lists pack {} twice",
                    id.short()
                )));
            }
            let size = r.u64()?;
            let (frames, total) = decode_frames(&mut r)?;
            if total > size || total > u32::MAX as u64 {
                return Err(Error::corrupt(
                    "index places a frame beyond the end of its pack",
                ));
            }
            packs.push(IndexPack { id, size, frames });
        }
        r.end()?;
        Ok(IndexFile { supersedes, packs })
    }
}
