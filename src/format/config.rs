//! The repository config: format version, repository ID, chunker and pack parameters.
//!
//! Layout: `"CFFC" version:u8 repo_id:[32]` then a sealed body (AAD = those 37 bytes):
//! `files.min files.avg files.max stream.min stream.avg stream.max pack_target:u32 zstd_level:u8`.

use super::wire::{Reader, Writer};
use super::{open_envelope, seal_envelope, FORMAT_VERSION};
use crate::chunker::ChunkerParams;
use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::RepoId;

pub const MAGIC: &[u8; 4] = b"CFFC";
const PUBLIC_LEN: usize = 4 + 1 + 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub repo_id: RepoId,
    /// Chunk sizes for files from a directory tree.
    pub files_chunker: ChunkerParams,
    /// Chunk sizes for streams (stdin, database dumps).
    pub stream_chunker: ChunkerParams,
    /// A pack is closed once its blobs reach this many bytes.
    pub pack_target: u32,
    /// zstd level for new blobs (1..=19).
    pub zstd_level: u8,
}

impl Config {
    pub fn new(repo_id: RepoId) -> Self {
        Config {
            repo_id,
            files_chunker: ChunkerParams::FILES,
            stream_chunker: ChunkerParams::STREAM,
            pack_target: 16 * 1024 * 1024,
            zstd_level: 3,
        }
    }

    /// Read the repository ID without the key (it names the cache folder).
    pub fn peek_repo_id(bytes: &[u8]) -> Result<RepoId> {
        let mut r = Reader::new(bytes, "config");
        r.header(MAGIC, FORMAT_VERSION)?;
        Ok(RepoId(r.array()?))
    }

    pub fn encode(&self, keys: &Keys, nonce: Option<[u8; NONCE_LEN]>) -> Vec<u8> {
        let mut public = Writer::new();
        public.raw(MAGIC);
        public.u8(FORMAT_VERSION);
        public.raw(&self.repo_id.0);
        let mut body = Writer::new();
        for p in [self.files_chunker, self.stream_chunker] {
            body.u32(p.min);
            body.u32(p.avg);
            body.u32(p.max);
        }
        body.u32(self.pack_target);
        body.u8(self.zstd_level);
        seal_envelope(keys, nonce, public.finish(), &body.finish())
    }

    pub fn decode(keys: &Keys, bytes: &[u8]) -> Result<Self> {
        let repo_id = Self::peek_repo_id(bytes)?;
        let body = open_envelope(keys, bytes, PUBLIC_LEN, "config")?;
        let mut r = Reader::new(&body, "config");
        let mut chunker = || -> Result<ChunkerParams> {
            let p = ChunkerParams {
                min: r.u32()?,
                avg: r.u32()?,
                max: r.u32()?,
            };
            p.validate()?;
            Ok(p)
        };
        let files_chunker = chunker()?;
        let stream_chunker = chunker()?;
        let pack_target = r.u32()?;
        let zstd_level = r.u8()?;
        r.end()?;
        if !(1024..=1 << 30).contains(&pack_target) || !(1..=19).contains(&zstd_level) {
            return Err(Error::corrupt(
                "config has out-of-range pack size or zstd level",
            ));
        }
        Ok(Config {
            repo_id,
            files_chunker,
            stream_chunker,
            pack_target,
            zstd_level,
        })
    }
}
