//! Storage: one narrow trait over immutable named objects. Every service (local folder,
//! memory, S3, Azure Blob, SFTP) sits behind it, and wrappers (fault injection, several
//! regions) implement it too, so nothing above this layer knows which it talks to. Retries,
//! timeouts and concurrency limits live inside each service (`service.rs`).

pub mod faulty;
mod location;
pub mod regions;
mod service;
mod ssh_check;
pub mod throttle;
pub mod unopened;

pub use location::{AzblobLocation, KnownHosts, Location, S3Location, SftpLocation};
pub use regions::Regions;
pub use service::{ObjectInfo, ObjectReader, ObjectStore, ObjectWriter, ServiceOptions};

pub use bytes::Bytes;

use crate::error::{Error, Result};
use crate::format::{keyfile, pack};
use crate::id::{object_hash, ID_LEN};
use std::fmt;
use std::sync::Arc;

/// The kinds of object a repository stores, each in its own folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Config,
    Key,
    Index,
    Snapshot,
    Pack,
    /// "An operation is running" (garbage collection alongside backups, format-spec §12).
    Lock,
    /// A deletion plan of garbage collection.
    Plan,
    /// Which operations a plan waits for.
    Wait,
    /// The outcome of a check or restore drill (format-spec §5.11).
    Report,
    /// A record of objects deleted on purpose, which `sync` must not copy back (§5.12).
    Tombstone,
    /// A file PostgreSQL archived: a WAL segment, a timeline or backup history file (§5.13).
    Wal,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 11] = [
        ObjectKind::Config,
        ObjectKind::Key,
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Pack,
        ObjectKind::Lock,
        ObjectKind::Plan,
        ObjectKind::Wait,
        ObjectKind::Report,
        ObjectKind::Tombstone,
        ObjectKind::Wal,
    ];
    /// The folder holding this kind of object.
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "keys",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Pack => "data",
            ObjectKind::Lock => "locks",
            ObjectKind::Plan => "plans",
            ObjectKind::Wait => "waits",
            ObjectKind::Report => "reports",
            ObjectKind::Tombstone => "tombstones",
            ObjectKind::Wal => "wal",
        }
    }

    /// What one object of this kind is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Config => "config",
            ObjectKind::Key => "key file",
            ObjectKind::Index => "index file",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Pack => "pack",
            ObjectKind::Lock => "lock",
            ObjectKind::Plan => "plan",
            ObjectKind::Wait => "wait record",
            ObjectKind::Report => "report",
            ObjectKind::Tombstone => "tombstone",
            ObjectKind::Wal => "WAL file",
        }
    }

    /// The most bytes an object of this kind may hold (format-spec §3, "Sizes"). A reader
    /// refuses a larger object before reading it, so storage that plants a giant "snapshot"
    /// cannot make a client allocate gigabytes; writers never store a larger one.
    pub fn max_len(self) -> u64 {
        const KIB: u64 = 1 << 10;
        const MIB: u64 = 1 << 20;
        match self {
            // 106 bytes in v3; the margin lets a later version's config still be read far
            // enough to name its version (§7).
            ObjectKind::Config => KIB,
            ObjectKind::Key => keyfile::MAX_LEN as u64,
            ObjectKind::Index => 512 * MIB,
            ObjectKind::Snapshot => 16 * MIB,
            // A frame area below 2^32 bytes, the largest header, the trailer (§5.4).
            ObjectKind::Pack => {
                (1 << 32) - 1 + pack::MAX_HEADER_LEN as u64 + pack::TRAILER_LEN as u64
            }
            ObjectKind::Lock | ObjectKind::Wait | ObjectKind::Report => MIB,
            // 32 bytes per pack to delete: half a million packs in one prune.
            ObjectKind::Plan => 16 * MIB,
            // At most 100,000 names: 3,300,057 bytes (§5.12).
            ObjectKind::Tombstone => 4 * MIB,
            // The largest WAL segment (1 GiB), stored raw, with its header (§5.13).
            ObjectKind::Wal => crate::format::wal::MAX_OBJECT_LEN,
        }
    }
}

/// An object's name: its kind and the BLAKE3 hash of its stored bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName {
    pub kind: ObjectKind,
    pub hash: [u8; ID_LEN],
}

impl ObjectName {
    pub fn new(kind: ObjectKind, hash: [u8; ID_LEN]) -> Self {
        ObjectName { kind, hash }
    }
    /// The name that `bytes` must be stored under.
    pub fn for_bytes(kind: ObjectKind, bytes: &[u8]) -> Self {
        ObjectName::new(kind, object_hash(bytes))
    }
    /// Path relative to the repository root: `data/ab/abcd...`, `snapshots/abcd...`.
    pub fn path(&self) -> String {
        let hex = hex::encode(self.hash);
        match self.kind {
            ObjectKind::Pack => format!("data/{}/{}", &hex[..2], hex),
            k => format!("{}/{}", k.dir(), hex),
        }
    }
    /// Parse a path produced by `path`; anything else (temporary files...) is `None`.
    pub fn parse(path: &str) -> Option<Self> {
        let path = path.trim_start_matches('/');
        let (dir, rest) = path.split_once('/')?;
        let kind = ObjectKind::ALL.into_iter().find(|k| k.dir() == dir)?;
        let file = match kind {
            ObjectKind::Pack => {
                let (sub, file) = rest.split_once('/')?;
                if sub.len() != 2 || !file.starts_with(sub) {
                    return None;
                }
                file
            }
            _ => rest,
        };
        let mut hash = [0u8; ID_LEN];
        hex::decode_to_slice(file, &mut hash).ok()?;
        // Only the canonical lowercase form: `path()` must lead back to the same object.
        if hex::encode(hash) != file {
            return None;
        }
        Some(ObjectName { kind, hash })
    }
    /// Does `bytes` really hash to this name? Needs no key.
    pub fn verify(&self, bytes: &[u8]) -> bool {
        object_hash(bytes) == self.hash
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// Immutable named objects on some storage service. Implementations are thread-safe and
/// return `ErrorKind::NotFound` for a missing object.
pub trait Backend: Send + Sync {
    /// Where this is, for messages ("/srv/repo", "memory").
    fn describe(&self) -> String;
    /// A whole object, refused (`Corrupt`, naming its size) without being read when it
    /// holds more than `max_len` bytes: the caller passes the size a listing showed, or its
    /// kind's limit. Implementations provide this; wrappers pass `max_len` on.
    fn get_limited(&self, name: &ObjectName, max_len: u64) -> Result<Vec<u8>>;
    /// A whole object, at most its kind's `max_len`. Not overridden: every read has a limit.
    fn get(&self, name: &ObjectName) -> Result<Vec<u8>> {
        self.get_limited(name, name.kind.max_len())
    }
    fn get_range(&self, name: &ObjectName, offset: u64, len: u64) -> Result<Vec<u8>>;
    /// Store an object. Writing the same name twice is allowed (the bytes are the same).
    /// `Bytes` lets a pack go to opendal, and to several regions, without a copy.
    fn put(&self, name: &ObjectName, bytes: Bytes) -> Result<()>;
    /// Remove an object. Deleting an object that does not exist is not an error.
    fn delete(&self, name: &ObjectName) -> Result<()>;
    /// Every object of `kind` with its size in bytes.
    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>>;
    /// The size of an object, or `None` if it does not exist.
    fn stat(&self, name: &ObjectName) -> Result<Option<u64>>;
    /// Called by a reader whose ranged read of `name` failed authentication: where there is
    /// another copy (other regions), check every copy and rewrite the bad ones. Returns how
    /// many copies were rewritten; a single store has nothing to repair from.
    fn repair(&self, _name: &ObjectName) -> Result<usize> {
        Ok(0)
    }
    /// Files that unfinished writes left in the store's scratch folder (`tmp/`, format-spec
    /// §3), as paths relative to the repository with their sizes. Object stores publish an
    /// upload atomically and have none.
    fn scratch(&self) -> Result<Vec<(String, u64)>> {
        Ok(vec![])
    }
    /// Remove one file that `scratch` listed; one already gone is not an error.
    fn delete_scratch(&self, _path: &str) -> Result<()> {
        Ok(())
    }
    /// Fail unless the storage answers now (every region, where there are several).
    /// Deleting needs every copy reachable: a region that misses a deletion gets the
    /// object back from another one at the next sync.
    fn reachable(&self) -> Result<()> {
        self.list(ObjectKind::Config).map(|_| ())
    }
}

/// The error for an object larger than a reader accepts: names the object, its size and the
/// limit, and says that it was not read.
pub fn too_large(place: &str, name: &ObjectName, size: u64, max_len: u64) -> Error {
    Error::corrupt(format!(
        "{place}: {name} is {size} bytes, more than a {} may hold ({max_len}); \
         damaged or planted, so it was not read",
        name.kind.noun()
    ))
}

/// Open the storage at `location`, with the default timeouts, retries and concurrency.
pub fn open(location: &Location) -> Result<Arc<dyn Backend>> {
    if let Location::Local(path) = location {
        check_folder(path)?;
    }
    Ok(Arc::new(service::OpendalBackend::open(location)?))
}

/// Open the storage at `location` with explicit limits and credentials overlay.
pub fn open_with(location: &Location, options: &ServiceOptions) -> Result<Arc<dyn Backend>> {
    if let Location::Local(path) = location {
        check_folder(path)?;
    }
    Ok(Arc::new(service::OpendalBackend::open_with(
        location, options,
    )?))
}

/// A local repository must be a folder, or not exist yet (`init` creates it). A file given
/// by mistake (`-r /etc/hostname`) is the user's to fix: one line that says so, not the
/// storage library's internal error about its temporary folder.
fn check_folder(path: &std::path::Path) -> Result<()> {
    let not_a_folder = |what: &str| {
        Error::invalid(format!(
            "repository {}: {what}; give the repository's folder",
            path.display()
        ))
    };
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(not_a_folder("this is a file, not a folder")),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            Err(not_a_folder("a part of this path is a file, not a folder"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in ObjectKind::ALL {
            let n = ObjectName::for_bytes(kind, b"x");
            assert_eq!(ObjectName::parse(&n.path()), Some(n));
        }
        assert_eq!(ObjectName::parse("data/zz/abc"), None);
        assert_eq!(ObjectName::parse("tmp/abc"), None);
    }

    /// The limits of `max_len` are the table in format-spec §3, "Sizes": one source of
    /// truth, checked.
    #[test]
    fn size_limits_are_the_spec_table() {
        let spec = include_str!("../../format-spec/README.md");
        let rows: Vec<&str> = spec
            .lines()
            .skip_while(|l| !l.starts_with("| kind | largest size"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let mut seen = Vec::new();
        for row in rows {
            let cols: Vec<&str> = row.split('|').map(str::trim).collect();
            let digits: String = cols[2]
                .split(' ')
                .next()
                .unwrap()
                .chars()
                .filter(|c| *c != ',')
                .collect();
            let size: u64 = digits.parse().unwrap_or_else(|_| panic!("size in {row}"));
            for noun in cols[1].split(", ") {
                let kind = ObjectKind::ALL
                    .into_iter()
                    .find(|k| k.noun() == noun)
                    .unwrap_or_else(|| panic!("{noun:?} in the spec is no object kind"));
                assert_eq!(kind.max_len(), size, "{noun}");
                seen.push(kind);
            }
        }
        seen.sort();
        assert_eq!(seen, ObjectKind::ALL.to_vec(), "every kind has one row");
    }

    #[test]
    fn a_read_refuses_an_object_above_its_limit_unread() {
        let b = open(&Location::Memory).unwrap();
        let big = vec![7u8; 2000];
        let n = ObjectName::for_bytes(ObjectKind::Config, &big);
        b.put(&n, Bytes::from(big.clone())).unwrap();
        let e = b.get(&n).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Corrupt);
        assert!(e.message().contains("2000 bytes"), "{e}");
        assert!(e.message().contains(&n.to_string()), "{e}");
        assert_eq!(b.get_limited(&n, 2000).unwrap(), big);
        assert!(b.get_limited(&n, 1999).is_err());
    }

    #[test]
    fn memory_backend_conformance() {
        let b = open(&Location::Memory).unwrap();
        let n = ObjectName::for_bytes(ObjectKind::Pack, b"hello world");
        assert_eq!(b.stat(&n).unwrap(), None);
        assert_eq!(
            b.get(&n).unwrap_err().kind(),
            crate::error::ErrorKind::NotFound
        );
        b.put(&n, Bytes::from_static(b"hello world")).unwrap();
        assert_eq!(b.get(&n).unwrap(), b"hello world");
        assert_eq!(b.get_range(&n, 6, 5).unwrap(), b"world");
        assert_eq!(b.stat(&n).unwrap(), Some(11));
        assert_eq!(b.list(ObjectKind::Pack).unwrap(), vec![(n, 11)]);
        assert!(b.list(ObjectKind::Index).unwrap().is_empty());
        b.delete(&n).unwrap();
        assert!(b.list(ObjectKind::Pack).unwrap().is_empty());
    }
}
