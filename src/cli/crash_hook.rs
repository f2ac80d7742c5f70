//! A test hook for crash safety: with `COFFER_TEST_CRASH_AFTER=N` in the environment, the
//! process kills itself with SIGKILL just before its (N+1)-th change to the repository (a
//! put or a delete), so tests can stop a command at every point where the repository
//! changes and then check what it left. Nothing else uses it.
//!
//! Every region's backend is wrapped (`common::open_region`) and all of them draw on one
//! count per process: so the hook also stops `sync` and `key`, which write to the regions
//! without opening a repository, and with several regions it can stop a write that reached
//! one region but not the next.

use coffer::backend::{Backend, Bytes, ObjectKind, ObjectName};
use coffer::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

pub const VARIABLE: &str = "COFFER_TEST_CRASH_AFTER";

struct CrashAfter {
    inner: Arc<dyn Backend>,
    changes_left: &'static AtomicU64,
}

/// The changes this process may still make, shared by every wrapped backend; `None` when
/// the hook is not set.
fn changes_left() -> Option<&'static AtomicU64> {
    static LEFT: OnceLock<Option<AtomicU64>> = OnceLock::new();
    LEFT.get_or_init(|| {
        std::env::var(VARIABLE)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(AtomicU64::new)
    })
    .as_ref()
}

/// Wrap `backend` if the hook is set.
pub fn wrap(backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
    match changes_left() {
        Some(changes_left) => Arc::new(CrashAfter {
            inner: backend,
            changes_left,
        }),
        None => backend,
    }
}

impl CrashAfter {
    fn before_change(&self) {
        let allowed = self
            .changes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !allowed {
            // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, nothing runs after.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

impl Backend for CrashAfter {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn get_limited(&self, name: &ObjectName, max_len: u64) -> Result<Vec<u8>> {
        self.inner.get_limited(name, max_len)
    }
    fn get_range(&self, name: &ObjectName, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.inner.get_range(name, offset, len)
    }
    fn put(&self, name: &ObjectName, bytes: Bytes) -> Result<()> {
        self.before_change();
        self.inner.put(name, bytes)
    }
    fn delete(&self, name: &ObjectName) -> Result<()> {
        self.before_change();
        self.inner.delete(name)
    }
    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>> {
        self.inner.list(kind)
    }
    fn stat(&self, name: &ObjectName) -> Result<Option<u64>> {
        self.inner.stat(name)
    }
    fn repair(&self, name: &ObjectName) -> Result<usize> {
        self.inner.repair(name)
    }
    fn scratch(&self) -> Result<Vec<(String, u64)>> {
        self.inner.scratch()
    }
    fn delete_scratch(&self, path: &str) -> Result<()> {
        self.before_change();
        self.inner.delete_scratch(path)
    }
    fn reachable(&self) -> Result<()> {
        self.inner.reachable()
    }
}
