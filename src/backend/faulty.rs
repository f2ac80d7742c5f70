//! A backend that fails on purpose, for tests of what sits above a backend (regions,
//! retries in use cases, repair). It wraps a real backend and injects one of a few faults,
//! switchable at any time from another thread.

use super::{Backend, Bytes, ObjectKind, ObjectName};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

pub struct Faulty {
    inner: Arc<dyn Backend>,
    /// Every operation fails (a region that is down).
    fail_all: AtomicBool,
    /// Writes still allowed before every later write fails; negative = unlimited.
    writes_left: AtomicI64,
    /// Reads return the stored bytes with one byte flipped (a rotten copy).
    flip_reads: AtomicBool,
    puts: AtomicU64,
}

impl Faulty {
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        Faulty {
            inner,
            fail_all: AtomicBool::new(false),
            writes_left: AtomicI64::new(-1),
            flip_reads: AtomicBool::new(false),
            puts: AtomicU64::new(0),
        }
    }
    /// Make every operation fail (or work again).
    pub fn set_fail_all(&self, on: bool) {
        self.fail_all.store(on, Ordering::SeqCst);
    }
    /// Let `n` more puts through, then fail every put after them.
    pub fn fail_writes_after(&self, n: u64) {
        self.writes_left
            .store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::SeqCst);
    }
    /// Flip a byte in what `get` and `get_range` return (the stored copy is untouched).
    pub fn set_flip_reads(&self, on: bool) {
        self.flip_reads.store(on, Ordering::SeqCst);
    }
    /// Back to a healthy backend.
    pub fn heal(&self) {
        self.set_fail_all(false);
        self.writes_left.store(-1, Ordering::SeqCst);
        self.set_flip_reads(false);
    }
    /// Puts that reached the inner backend.
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::SeqCst)
    }
    pub fn inner(&self) -> &Arc<dyn Backend> {
        &self.inner
    }

    fn check(&self, op: &str) -> Result<()> {
        if self.fail_all.load(Ordering::SeqCst) {
            return Err(Error::backend(
                format!("{}: injected fault: {op} failed", self.inner.describe()),
                true,
            ));
        }
        Ok(())
    }
    fn maybe_flip(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        if self.flip_reads.load(Ordering::SeqCst) && !bytes.is_empty() {
            let i = bytes.len() / 2;
            bytes[i] ^= 0x01;
        }
        bytes
    }
}

impl Backend for Faulty {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn get_limited(&self, name: &ObjectName, max_len: u64) -> Result<Vec<u8>> {
        self.check("get")?;
        self.inner
            .get_limited(name, max_len)
            .map(|b| self.maybe_flip(b))
    }
    fn get_range(&self, name: &ObjectName, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.check("get_range")?;
        self.inner
            .get_range(name, offset, len)
            .map(|b| self.maybe_flip(b))
    }
    fn put(&self, name: &ObjectName, bytes: Bytes) -> Result<()> {
        self.check("put")?;
        // Take one write from the allowance, unless it is unlimited (negative).
        let allowed = self
            .writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
                n if n < 0 => Some(n),
                0 => None,
                n => Some(n - 1),
            })
            .is_ok();
        if !allowed {
            return Err(Error::backend(
                format!(
                    "{}: injected fault: write of {name} refused",
                    self.inner.describe()
                ),
                true,
            ));
        }
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(name, bytes)
    }
    fn delete(&self, name: &ObjectName) -> Result<()> {
        self.check("delete")?;
        self.inner.delete(name)
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>> {
        self.check("list")?;
        self.inner.list(kind)
    }
    fn stat(&self, name: &ObjectName) -> Result<Option<u64>> {
        self.check("stat")?;
        self.inner.stat(name)
    }
    fn scratch(&self) -> Result<Vec<(String, u64)>> {
        self.check("list")?;
        self.inner.scratch()
    }
    fn delete_scratch(&self, path: &str) -> Result<()> {
        self.check("delete")?;
        self.inner.delete_scratch(path)
    }
}
