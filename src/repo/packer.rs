//! Collects sealed blobs into a pack until it reaches the target size, then closes it with
//! its header and names it by the hash of its bytes.

use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::format::index::{IndexBlob, IndexPack};
use crate::format::pack::{self, PackEntry};
use crate::id::{object_hash, PackId};

pub struct PackWriter {
    target: usize,
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A closed pack, ready to upload, with the index entry describing it.
pub struct FinishedPack {
    pub id: PackId,
    pub bytes: Vec<u8>,
    pub index: IndexPack,
}

impl PackWriter {
    pub fn new(target: u32) -> Self {
        PackWriter {
            target: target as usize,
            buf: Vec::new(),
            entries: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Append a sealed blob; returns the closed pack when the target size is reached.
    pub fn add(
        &mut self,
        keys: &Keys,
        entry: PackEntry,
        sealed: &[u8],
    ) -> Result<Option<FinishedPack>> {
        debug_assert_eq!(entry.length as usize, sealed.len());
        self.buf.extend_from_slice(sealed);
        self.entries.push(entry);
        if self.buf.len() >= self.target {
            return self.finish(keys).map(Some);
        }
        Ok(None)
    }

    /// Close the current pack (must not be empty).
    pub fn finish(&mut self, keys: &Keys) -> Result<FinishedPack> {
        let entries = std::mem::take(&mut self.entries);
        let mut bytes = std::mem::take(&mut self.buf);
        let blobs_len = bytes.len();
        bytes.extend_from_slice(&pack::encode_header(keys, &entries, None));
        // Check before publishing: the header we wrote must read back as what we meant.
        let decoded = pack::decode_pack(keys, &bytes)?;
        if decoded.len() != entries.len() || decoded.iter().zip(&entries).any(|((_, a), b)| a != b)
        {
            return Err(Error::corrupt(
                "a freshly written pack header does not read back",
            ));
        }
        debug_assert_eq!(
            decoded.last().map(|(o, e)| *o as usize + e.length as usize),
            Some(blobs_len)
        );
        let id = PackId(object_hash(&bytes));
        let index = IndexPack {
            id,
            size: bytes.len() as u64,
            blobs: decoded
                .into_iter()
                .map(|(offset, e)| IndexBlob {
                    blob_type: e.blob_type,
                    id: e.id,
                    offset,
                    length: e.length,
                    raw_length: e.raw_length,
                })
                .collect(),
        };
        Ok(FinishedPack { id, bytes, index })
    }
}
