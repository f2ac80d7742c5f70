//! Collects sealed blobs into a pack until it reaches the target size, then closes it with
//! its header and names it by the hash of its bytes.

use crate::crypto::{Keys, SEAL_OVERHEAD};
use crate::error::{Error, Result};
use crate::format::index::IndexPack;
use crate::format::pack::{self, Frame};
use crate::id::{object_hash, PackId};

/// A pack is also closed once its sealed header reaches this many bytes, half of what readers
/// accept: frames of small, well-compressed blobs can list more blobs than the pack target
/// would allow for. One more frame adds at most 9 + 36 × (1 MiB / 5) bytes (5-byte trees).
const HEADER_TARGET: usize = pack::MAX_HEADER_LEN as usize / 2;
/// A sealed header listing no frames.
const EMPTY_HEADER_LEN: usize = SEAL_OVERHEAD + 4;

pub struct PackWriter {
    target: usize,
    buf: Vec<u8>,
    frames: Vec<Frame>,
    /// Length of the sealed header that would list `frames`.
    header_len: usize,
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
            frames: Vec::new(),
            header_len: EMPTY_HEADER_LEN,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Append a sealed frame; returns the closed pack when the target size is reached.
    pub fn add(
        &mut self,
        keys: &Keys,
        frame: Frame,
        sealed: &[u8],
    ) -> Result<Option<FinishedPack>> {
        debug_assert_eq!(frame.length as usize, sealed.len());
        if self.buf.capacity() == 0 {
            // One allocation per pack instead of a doubling series.
            self.buf.reserve_exact(self.target + self.target / 8);
        }
        self.buf.extend_from_slice(sealed);
        self.header_len += 9 + 36 * frame.blobs.len();
        self.frames.push(frame);
        if self.buf.len() >= self.target || self.header_len >= HEADER_TARGET {
            return self.finish(keys).map(Some);
        }
        Ok(None)
    }

    /// Close the current pack (must not be empty).
    pub fn finish(&mut self, keys: &Keys) -> Result<FinishedPack> {
        let frames = std::mem::take(&mut self.frames);
        let mut bytes = std::mem::take(&mut self.buf);
        self.header_len = EMPTY_HEADER_LEN;
        bytes.extend_from_slice(&pack::encode_header(keys, &frames, None));
        // Check before publishing: the header we wrote must read back as what we meant.
        if pack::decode_pack(keys, &bytes)? != frames {
            return Err(Error::corrupt(
                "a freshly written pack header does not read back",
            ));
        }
        let id = PackId(object_hash(&bytes));
        let index = IndexPack {
            id,
            size: bytes.len() as u64,
            frames,
        };
        Ok(FinishedPack { id, bytes, index })
    }
}
