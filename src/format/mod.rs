//! The byte layout of every stored object, encode and decode, no I/O. `format-spec/` is the
//! normative description of these bytes; `tests/vectors.rs` ties the two together.
//!
//! Objects named by the hash of their bytes: config, key files, packs, index files and
//! snapshots. Blobs (data chunks, trees, chunk lists) live inside packs.

pub mod config;
pub mod gc;
pub mod index;
pub mod keyfile;
pub mod pack;
pub mod report;
pub mod snapshot;
pub mod tombstone;
pub mod tree;
pub mod wal;
pub mod wire;

use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};

/// The repository format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 3;

/// Kinds of blob stored in packs. The numbers are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlobType {
    /// A chunk of file or stream contents.
    Data = 0,
    /// A directory listing.
    Tree = 1,
    /// A list of chunk IDs (part of a large file's content).
    ChunkList = 2,
}

impl BlobType {
    pub fn from_u8(v: u8) -> Result<Self> {
        match v {
            0 => Ok(BlobType::Data),
            1 => Ok(BlobType::Tree),
            2 => Ok(BlobType::ChunkList),
            _ => Err(Error::corrupt(format!("unknown blob type {v}"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
            BlobType::ChunkList => "chunk list",
        }
    }
}

/// An "envelope" object: `magic(4) version(1) public-fields sealed(body)`, where the AEAD's
/// associated data is every byte before the sealed box, so the public part is authenticated.
pub(crate) fn seal_envelope(
    keys: &Keys,
    nonce: Option<[u8; NONCE_LEN]>,
    public: Vec<u8>,
    body: &[u8],
) -> Vec<u8> {
    let sealed = keys.seal_fixed_or_random(nonce, &public, body);
    let mut out = public;
    out.extend_from_slice(&sealed);
    out
}

/// Split an envelope after `public_len` bytes and open its body.
pub(crate) fn open_envelope(
    keys: &Keys,
    bytes: &[u8],
    public_len: usize,
    what: &str,
) -> Result<Vec<u8>> {
    if bytes.len() < public_len {
        return Err(Error::corrupt(format!("{what} is truncated")));
    }
    let (public, sealed) = bytes.split_at(public_len);
    keys.open(public, sealed)
        .map_err(|e| e.context(format!("{what} fails authentication")))
}
