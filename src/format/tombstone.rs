//! Tombstones (format-spec §5.12): the record a deleting command (`forget`, `key remove`,
//! `key passwd`, and `prune` for WAL files) stores *before* it deletes, naming what it deletes. `sync` reads them so
//! that it never copies a deleted object back from a region that missed the deletion, and
//! deletes such objects where they remain.
//!
//! The list of names is public, so a sync without the key can still refrain from copying
//! them, and it is the associated data of the sealed body, so only a key holder can write a
//! tombstone that a keyed sync acts on.
//!
//! Layout: `"CFFT" version:u8 count:u32 (kind:u8 name:[32])*count`, then the body
//! `time_ns:i64` sealed with every byte before it as associated data. Entries are sorted by
//! (kind, name) with no repeats, so decoding is canonical.

use super::wire::{Reader, Writer};
use super::{open_envelope, seal_envelope, FORMAT_VERSION};
use crate::crypto::{Keys, NONCE_LEN, SEAL_OVERHEAD};
use crate::error::{Error, Result};

pub const TOMBSTONE_MAGIC: &[u8; 4] = b"CFFT";

/// Names one tombstone may hold: a forget of more snapshots writes several tombstones.
/// Bounds a tombstone to about 3.3 MB.
pub const MAX_NAMES: usize = 100_000;

/// Bytes of one entry: the kind byte and the object's name.
const ENTRY_LEN: usize = 33;

/// Bytes of the sealed box after the names: nonce, the time (an `i64`), tag.
const BOX_LEN: usize = SEAL_OVERHEAD + 8;

/// One named object: its kind and its name (the BLAKE3 of its stored bytes).
pub type Buried = (BuriedKind, [u8; 32]);

/// What a tombstone can name. The numbers are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum BuriedKind {
    /// A key file (`keys/`), removed by `key remove` or replaced by `key passwd`.
    Key = 1,
    /// A snapshot (`snapshots/`), removed by `forget`.
    Snapshot = 2,
    /// A WAL file (`wal/`), removed by `prune` once no kept base backup needs it.
    Wal = 3,
}

impl BuriedKind {
    fn from_u8(v: u8) -> Result<Self> {
        match v {
            1 => Ok(BuriedKind::Key),
            2 => Ok(BuriedKind::Snapshot),
            3 => Ok(BuriedKind::Wal),
            _ => Err(Error::corrupt(format!(
                "tombstone names an object of unknown kind {v}"
            ))),
        }
    }
}

/// "These objects were deleted on purpose, at this time."
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    /// The deleted objects: kind and name (the BLAKE3 of the object's bytes), sorted, unique.
    pub names: Vec<Buried>,
    /// When the deleting command ran, ns since the Unix epoch, by its machine's clock
    /// (informational).
    pub time_ns: i64,
}

impl Tombstone {
    /// A tombstone for `names` (sorted and deduplicated here).
    pub fn new(mut names: Vec<Buried>, time_ns: i64) -> Result<Self> {
        names.sort();
        names.dedup();
        let t = Tombstone { names, time_ns };
        t.validate()?;
        Ok(t)
    }

    pub fn validate(&self) -> Result<()> {
        if self.names.is_empty() || self.names.len() > MAX_NAMES {
            return Err(Error::invalid(format!(
                "a tombstone names 1 to {MAX_NAMES} objects, not {}",
                self.names.len()
            )));
        }
        if self.names.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid(
                "a tombstone's names must be sorted and unique",
            ));
        }
        Ok(())
    }

    pub fn encode(&self, keys: &Keys, nonce: Option<[u8; NONCE_LEN]>) -> Vec<u8> {
        let mut public = Writer::new();
        public.raw(TOMBSTONE_MAGIC);
        public.u8(FORMAT_VERSION);
        public.u32(self.names.len() as u32);
        for (kind, name) in &self.names {
            public.u8(*kind as u8);
            public.raw(name);
        }
        let mut body = Writer::new();
        body.i64(self.time_ns);
        seal_envelope(keys, nonce, public.finish(), &body.finish())
    }

    /// The names alone, **not authenticated**: what a process without the key can read.
    /// Returns them with the length of the public part (where the sealed box starts). The
    /// box must have its exact length, so a truncated or extended object is refused here too.
    pub fn peek(bytes: &[u8]) -> Result<(Vec<Buried>, usize)> {
        let mut r = Reader::new(bytes, "tombstone");
        r.header(TOMBSTONE_MAGIC, FORMAT_VERSION)?;
        let n = r.count(ENTRY_LEN)?;
        if n == 0 || n > MAX_NAMES {
            return Err(Error::corrupt(format!(
                "tombstone names {n} objects (1 to {MAX_NAMES} allowed)"
            )));
        }
        let mut names = Vec::with_capacity(n);
        for _ in 0..n {
            let kind = BuriedKind::from_u8(r.u8()?)?;
            let entry = (kind, r.array()?);
            if names.last().is_some_and(|last| *last >= entry) {
                return Err(Error::corrupt(
                    "tombstone names are not sorted or not unique",
                ));
            }
            names.push(entry);
        }
        match r.remaining() {
            BOX_LEN => Ok((names, bytes.len() - BOX_LEN)),
            n if n < BOX_LEN => Err(Error::corrupt("tombstone is truncated")),
            n => Err(Error::corrupt(format!(
                "tombstone has {} unexpected trailing bytes",
                n - BOX_LEN
            ))),
        }
    }

    /// Decode and authenticate: only a tombstone sealed with the repository's key passes.
    pub fn decode(keys: &Keys, bytes: &[u8]) -> Result<Self> {
        let (names, public_len) = Self::peek(bytes)?;
        let body = open_envelope(keys, bytes, public_len, "tombstone")?;
        let mut r = Reader::new(&body, "tombstone");
        let time_ns = r.i64()?;
        r.end()?;
        Ok(Tombstone { names, time_ns })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterSecret;

    fn keys() -> Keys {
        Keys::derive(&MasterSecret::from_bytes([7; 32]))
    }

    fn sample() -> Tombstone {
        Tombstone::new(
            vec![
                (BuriedKind::Snapshot, [2; 32]),
                (BuriedKind::Key, [9; 32]),
                (BuriedKind::Snapshot, [1; 32]),
                (BuriedKind::Snapshot, [2; 32]),
            ],
            -5,
        )
        .unwrap()
    }

    #[test]
    fn round_trips_sorted_and_unique() {
        let k = keys();
        let t = sample();
        assert_eq!(
            t.names,
            [
                (BuriedKind::Key, [9; 32]),
                (BuriedKind::Snapshot, [1; 32]),
                (BuriedKind::Snapshot, [2; 32])
            ]
        );
        let bytes = t.encode(&k, None);
        assert_eq!(bytes.len(), 5 + 4 + 3 * 33 + 24 + 8 + 16);
        assert_eq!(Tombstone::decode(&k, &bytes).unwrap(), t);
        assert_eq!(Tombstone::peek(&bytes).unwrap(), (t.names.clone(), 108));
    }

    #[test]
    fn only_the_key_authenticates_the_names() {
        let k = keys();
        let mut bytes = sample().encode(&k, None);
        let other = Keys::derive(&MasterSecret::from_bytes([8; 32]));
        assert!(Tombstone::decode(&other, &bytes).is_err());
        // A name changed in the public list: still readable without the key, refused with it.
        bytes[10] ^= 1;
        assert!(Tombstone::peek(&bytes).is_ok());
        assert!(Tombstone::decode(&k, &bytes).is_err());
    }

    #[test]
    fn refuses_empty_unsorted_and_unknown_kinds() {
        assert!(Tombstone::new(vec![], 0).is_err());
        let k = keys();
        let seal = |entries: &[(u8, [u8; 32])]| {
            let mut public = b"CFFT\x03".to_vec();
            public.extend((entries.len() as u32).to_le_bytes());
            for (kind, name) in entries {
                public.push(*kind);
                public.extend(name);
            }
            seal_envelope(&k, None, public, &0i64.to_le_bytes())
        };
        Tombstone::decode(&k, &seal(&[(1, [1; 32]), (2, [0; 32]), (3, [0; 32])])).unwrap();
        for bad in [
            &[][..],
            &[(2, [1; 32]), (1, [1; 32])],
            &[(2, [1; 32]), (2, [1; 32])],
            &[(4, [1; 32])],
            &[(0, [1; 32])],
        ] {
            assert!(Tombstone::decode(&k, &seal(bad)).is_err(), "{bad:?}");
            assert!(Tombstone::peek(&seal(bad)).is_err(), "{bad:?}");
        }
    }
}
