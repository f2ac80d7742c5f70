//! The three objects of garbage collection alongside backups (format-spec §12): locks that
//! say "an operation is running", deletion plans, and the wait records that say which
//! operations a plan must outlive. All three are sealed envelopes with no public fields, so
//! a region that is tampered with cannot forge or alter one without the key.
//!
//! Layouts (after `magic:[4] version:u8`, the body is sealed with those 5 bytes as AAD):
//! - lock `CFFL`: `operation:[16] kind:u8 counter:u64 pid:u32 host:str16`
//! - plan `CFFG`: `operation:[16] packs:count pack_id:[32]* indexes:count index_id:[32]*`
//! - wait `CFFW`: `plan:[32] operations:count operation:[16]*`

use super::wire::{checked_len16, Reader, Writer};
use super::{open_envelope, seal_envelope, FORMAT_VERSION};
use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::{IndexId, PackId};

pub const LOCK_MAGIC: &[u8; 4] = b"CFFL";
pub const PLAN_MAGIC: &[u8; 4] = b"CFFG";
pub const WAIT_MAGIC: &[u8; 4] = b"CFFW";

/// A random ID naming one running operation (a backup or a prune) across its lock's
/// refreshes: the lock object's name changes on every refresh, this does not.
pub type OperationId = [u8; 16];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LockKind {
    /// A backup (or anything else that writes snapshots and deduplicates against the index).
    Backup = 1,
    /// A prune: at most one runs at a time.
    Prune = 2,
}

impl LockKind {
    fn from_u8(v: u8) -> Result<Self> {
        match v {
            1 => Ok(LockKind::Backup),
            2 => Ok(LockKind::Prune),
            _ => Err(Error::corrupt(format!("lock has unknown kind {v}"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LockKind::Backup => "backup",
            LockKind::Prune => "prune",
        }
    }
}

/// "Operation `operation` is running." Refreshing writes the same operation with
/// `counter + 1` (a new object, so a new name) and deletes the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub operation: OperationId,
    pub kind: LockKind,
    pub counter: u64,
    pub pid: u32,
    pub host: String,
}

/// A deletion plan: these packs and index files go once every operation the plan's wait
/// record names has finished, unless a snapshot still needs them (§12).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The prune that made the plan.
    pub operation: OperationId,
    /// Packs to delete: those with nothing reachable, and those whose live blobs were
    /// copied into new packs.
    pub packs: Vec<PackId>,
    /// Index files to delete: every live entry of theirs is in index files written before
    /// this plan was stored.
    pub indexes: Vec<IndexId>,
}

/// The operations that were running just after a plan was stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wait {
    /// The plan object's name (the hash of its bytes).
    pub plan: [u8; 32],
    pub operations: Vec<OperationId>,
}

fn seal(keys: &Keys, nonce: Option<[u8; NONCE_LEN]>, magic: &[u8; 4], body: Vec<u8>) -> Vec<u8> {
    let mut public = magic.to_vec();
    public.push(FORMAT_VERSION);
    seal_envelope(keys, nonce, public, &body)
}

fn open(keys: &Keys, bytes: &[u8], magic: &[u8; 4], what: &'static str) -> Result<Vec<u8>> {
    Reader::new(bytes, what).header(magic, FORMAT_VERSION)?;
    open_envelope(keys, bytes, 5, what)
}

impl Lock {
    pub fn validate(&self) -> Result<()> {
        checked_len16("host", self.host.as_bytes())
    }

    pub fn encode(&self, keys: &Keys, nonce: Option<[u8; NONCE_LEN]>) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.operation);
        w.u8(self.kind as u8);
        w.u64(self.counter);
        w.u32(self.pid);
        w.bytes16(self.host.as_bytes());
        seal(keys, nonce, LOCK_MAGIC, w.finish())
    }

    pub fn decode(keys: &Keys, bytes: &[u8]) -> Result<Self> {
        let body = open(keys, bytes, LOCK_MAGIC, "lock")?;
        let mut r = Reader::new(&body, "lock");
        let lock = Lock {
            operation: r.array()?,
            kind: LockKind::from_u8(r.u8()?)?,
            counter: r.u64()?,
            pid: r.u32()?,
            host: r.str16()?,
        };
        r.end()?;
        Ok(lock)
    }
}

impl Plan {
    pub fn encode(&self, keys: &Keys, nonce: Option<[u8; NONCE_LEN]>) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.operation);
        w.u32(self.packs.len() as u32);
        for p in &self.packs {
            w.raw(&p.0);
        }
        w.u32(self.indexes.len() as u32);
        for i in &self.indexes {
            w.raw(&i.0);
        }
        seal(keys, nonce, PLAN_MAGIC, w.finish())
    }

    pub fn decode(keys: &Keys, bytes: &[u8]) -> Result<Self> {
        let body = open(keys, bytes, PLAN_MAGIC, "plan")?;
        let mut r = Reader::new(&body, "plan");
        let operation = r.array()?;
        let n = r.count(32)?;
        let mut packs = Vec::with_capacity(n);
        for _ in 0..n {
            packs.push(PackId(r.array()?));
        }
        let n = r.count(32)?;
        let mut indexes = Vec::with_capacity(n);
        for _ in 0..n {
            indexes.push(IndexId(r.array()?));
        }
        r.end()?;
        Ok(Plan {
            operation,
            packs,
            indexes,
        })
    }
}

impl Wait {
    pub fn encode(&self, keys: &Keys, nonce: Option<[u8; NONCE_LEN]>) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(&self.plan);
        w.u32(self.operations.len() as u32);
        for o in &self.operations {
            w.raw(o);
        }
        seal(keys, nonce, WAIT_MAGIC, w.finish())
    }

    pub fn decode(keys: &Keys, bytes: &[u8]) -> Result<Self> {
        let body = open(keys, bytes, WAIT_MAGIC, "wait record")?;
        let mut r = Reader::new(&body, "wait record");
        let plan = r.array()?;
        let n = r.count(16)?;
        let mut operations = Vec::with_capacity(n);
        for _ in 0..n {
            operations.push(r.array()?);
        }
        r.end()?;
        Ok(Wait { plan, operations })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterSecret;

    fn keys() -> Keys {
        Keys::derive(&MasterSecret::from_bytes([7; 32]))
    }

    #[test]
    fn round_trips() {
        let k = keys();
        let lock = Lock {
            operation: [1; 16],
            kind: LockKind::Prune,
            counter: 3,
            pid: 42,
            host: "db-1".into(),
        };
        assert_eq!(Lock::decode(&k, &lock.encode(&k, None)).unwrap(), lock);
        let plan = Plan {
            operation: [2; 16],
            packs: vec![PackId([3; 32]), PackId([4; 32])],
            indexes: vec![IndexId([5; 32])],
        };
        assert_eq!(Plan::decode(&k, &plan.encode(&k, None)).unwrap(), plan);
        let wait = Wait {
            plan: [6; 32],
            operations: vec![[7; 16], [8; 16]],
        };
        assert_eq!(Wait::decode(&k, &wait.encode(&k, None)).unwrap(), wait);
    }

    #[test]
    fn kinds_cannot_stand_in_for_each_other() {
        let k = keys();
        let wait = Wait::default().encode(&k, None);
        assert!(Plan::decode(&k, &wait).is_err());
        let mut plan = Plan::default().encode(&k, None);
        assert!(Lock::decode(&k, &plan).is_err());
        // A forged header (the magic is authenticated) fails authentication.
        plan[..4].copy_from_slice(WAIT_MAGIC);
        assert!(Wait::decode(&k, &plan).is_err());
    }
}
