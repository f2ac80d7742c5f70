//! Snapshots: one point in time of a set of paths (or a stream), pointing at a root tree.
//!
//! Layout: `"CFFS" version:u8` then sealed body (AAD = those 5 bytes):
//! `time_ns:i64 host:str16 user:str16 tag_count:u16 tag:str16* path_count:u16 path:bytes16*
//! root:[32] has_parent:u8 parent:[32]? source:str16 info_count:u16 (key:str16 value:str16)*
//! summary: 12 x u64` in the order of `Summary`'s fields.

use super::wire::{checked_len16, Reader, Writer};
use super::{open_envelope, seal_envelope, FORMAT_VERSION};
use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::{BlobId, SnapshotId};
use serde::Serialize;

pub const MAGIC: &[u8; 4] = b"CFFS";

/// What a backup did, kept with the snapshot for `snapshots` and monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Summary {
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub dirs: u64,
    /// Files and directories that could not be read (the snapshot lacks them).
    pub read_errors: u64,
    /// Bytes of file content in the snapshot.
    pub total_bytes: u64,
    /// Bytes of content read and chunked by this backup (unchanged files are not read).
    pub bytes_read: u64,
    /// Blobs this backup added to the repository, and their plaintext size.
    pub blobs_added: u64,
    pub bytes_added_raw: u64,
    /// Bytes this backup added to the repository as stored (packs and index).
    pub bytes_added_stored: u64,
    pub packs_added: u64,
    pub duration_ns: u64,
}

impl Summary {
    fn fields(&self) -> [u64; 12] {
        [
            self.files_new,
            self.files_changed,
            self.files_unmodified,
            self.dirs,
            self.read_errors,
            self.total_bytes,
            self.bytes_read,
            self.blobs_added,
            self.bytes_added_raw,
            self.bytes_added_stored,
            self.packs_added,
            self.duration_ns,
        ]
    }
    fn from_fields(f: [u64; 12]) -> Self {
        Summary {
            files_new: f[0],
            files_changed: f[1],
            files_unmodified: f[2],
            dirs: f[3],
            read_errors: f[4],
            total_bytes: f[5],
            bytes_read: f[6],
            blobs_added: f[7],
            bytes_added_raw: f[8],
            bytes_added_stored: f[9],
            packs_added: f[10],
            duration_ns: f[11],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub time_ns: i64,
    pub host: String,
    pub user: String,
    pub tags: Vec<String>,
    /// Absolute paths that were backed up, as raw bytes.
    pub paths: Vec<Vec<u8>>,
    pub root: BlobId,
    pub parent: Option<SnapshotId>,
    /// "files", "stdin" (later "postgres", "bucket").
    pub source: String,
    /// Source details, e.g. ("stdin-name", "db.sql").
    pub info: Vec<(String, String)>,
    pub summary: Summary,
}

impl Snapshot {
    /// Check lengths that the encoding bounds, before the snapshot is written.
    pub fn validate_lengths(&self) -> Result<()> {
        if self.tags.len() > u16::MAX as usize
            || self.paths.len() > u16::MAX as usize
            || self.info.len() > u16::MAX as usize
        {
            return Err(Error::invalid("too many tags, paths or info entries"));
        }
        checked_len16("host", self.host.as_bytes())?;
        checked_len16("user", self.user.as_bytes())?;
        checked_len16("source", self.source.as_bytes())?;
        for t in &self.tags {
            checked_len16("tag", t.as_bytes())?;
        }
        for p in &self.paths {
            checked_len16("path", p)?;
        }
        for (k, v) in &self.info {
            checked_len16("info key", k.as_bytes())?;
            checked_len16("info value", v.as_bytes())?;
        }
        Ok(())
    }

    pub fn encode(&self, keys: &Keys, nonce: Option<[u8; NONCE_LEN]>) -> Vec<u8> {
        let mut w = Writer::new();
        w.i64(self.time_ns);
        w.bytes16(self.host.as_bytes());
        w.bytes16(self.user.as_bytes());
        w.u16(self.tags.len() as u16);
        for t in &self.tags {
            w.bytes16(t.as_bytes());
        }
        w.u16(self.paths.len() as u16);
        for p in &self.paths {
            w.bytes16(p);
        }
        w.raw(&self.root.0);
        match &self.parent {
            Some(p) => {
                w.u8(1);
                w.raw(&p.0);
            }
            None => w.u8(0),
        }
        w.bytes16(self.source.as_bytes());
        w.u16(self.info.len() as u16);
        for (k, v) in &self.info {
            w.bytes16(k.as_bytes());
            w.bytes16(v.as_bytes());
        }
        for f in self.summary.fields() {
            w.u64(f);
        }
        let mut public = MAGIC.to_vec();
        public.push(FORMAT_VERSION);
        seal_envelope(keys, nonce, public, &w.finish())
    }

    pub fn decode(keys: &Keys, bytes: &[u8]) -> Result<Self> {
        Reader::new(bytes, "snapshot").header(MAGIC, FORMAT_VERSION)?;
        let body = open_envelope(keys, bytes, 5, "snapshot")?;
        let mut r = Reader::new(&body, "snapshot");
        let time_ns = r.i64()?;
        let host = r.str16()?;
        let user = r.str16()?;
        let n = r.u16()?;
        let mut tags = Vec::new();
        for _ in 0..n {
            tags.push(r.str16()?);
        }
        let n = r.u16()?;
        let mut paths = Vec::new();
        for _ in 0..n {
            paths.push(r.bytes16()?.to_vec());
        }
        let root = BlobId(r.array()?);
        let parent = match r.u8()? {
            0 => None,
            1 => Some(SnapshotId(r.array()?)),
            _ => return Err(Error::corrupt("snapshot parent flag is not 0 or 1")),
        };
        let source = r.str16()?;
        let n = r.u16()?;
        let mut info = Vec::new();
        for _ in 0..n {
            info.push((r.str16()?, r.str16()?));
        }
        let mut f = [0u64; 12];
        for v in f.iter_mut() {
            *v = r.u64()?;
        }
        r.end()?;
        Ok(Snapshot {
            time_ns,
            host,
            user,
            tags,
            paths,
            root,
            parent,
            source,
            info,
            summary: Summary::from_fields(f),
        })
    }
}
