//! Locks: the objects that say "an operation is running" (format-spec §12). A backup holds
//! one from before it reads the index until after its snapshot is stored; a prune holds
//! one while it plans and deletes. Locks never block a backup: they only tell a prune which
//! operations a deletion plan has to wait for.
//!
//! A held lock is refreshed every `REFRESH` by a thread of its own: the refresh writes the
//! same operation with the next counter (a new object) and then deletes the old object, so
//! an observer that sees the same lock object for a long time knows its owner is gone.

use super::{Readable, Repository};
use crate::backend::{Backend, ObjectKind, ObjectName};
use crate::crypto::{random_bytes, Keys};
use crate::error::Result;
use crate::format::gc::{Lock, LockKind, OperationId};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a held lock is rewritten. Prune's default staleness margin is six times this.
pub const REFRESH: Duration = Duration::from_secs(300);

struct Shared {
    /// The lock object currently stored, and its counter.
    current: Mutex<(ObjectName, u64)>,
    /// A prune removed the lock as stale: the operation must not commit, and the lock is
    /// not brought back by refreshing.
    lost: std::sync::atomic::AtomicBool,
    stop: Mutex<bool>,
    wake: Condvar,
}

/// A held lock; dropping it stops the refreshes and deletes the lock object.
pub struct LockGuard {
    backend: Arc<dyn Backend>,
    operation: OperationId,
    shared: Arc<Shared>,
    refresher: Option<JoinHandle<()>>,
    released: bool,
}

impl Repository {
    /// Store a lock of `kind` for a new operation and keep it fresh until the guard drops.
    pub fn lock(&self, kind: LockKind, host: &str, refresh: Duration) -> Result<LockGuard> {
        let mut lock = Lock {
            operation: random_bytes(),
            kind,
            counter: 0,
            pid: std::process::id(),
            host: host.chars().take(255).collect(),
        };
        let name = self.write_object(ObjectKind::Lock, lock.encode(&self.keys, None))?;
        let shared = Arc::new(Shared {
            current: Mutex::new((name, 0)),
            lost: Default::default(),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let (backend, keys, state) = (self.backend.clone(), self.keys.clone(), shared.clone());
        let warn = self.warn.clone();
        let operation = lock.operation;
        let refresher = std::thread::Builder::new()
            .name("coffer-lock".into())
            .spawn(move || loop {
                {
                    let stopped = state.stop.lock().expect("lock state");
                    // Checked before waiting: a release that came before this thread first
                    // ran must not wait out a whole refresh period in `join`. The flag is
                    // set under the same mutex, so no wake-up is lost.
                    if *stopped {
                        return;
                    }
                    let (stopped, _) = state
                        .wake
                        .wait_timeout(stopped, refresh)
                        .expect("lock state");
                    if *stopped {
                        return;
                    }
                } // The refresh itself runs without the mutex, so a release never waits on it.
                lock.counter += 1;
                match refresh_once(&*backend, &keys, &lock, &state) {
                    Ok(true) => {}
                    Ok(false) => {
                        warn("this operation's lock was removed by a prune that judged it stale: it will not commit");
                        return;
                    }
                    Err(e) => warn(&format!("could not refresh this operation's lock: {e}")),
                }
            })
            .ok();
        Ok(LockGuard {
            backend: self.backend.clone(),
            operation,
            shared,
            refresher,
            released: false,
        })
    }

    /// Every lock object that can be read, with its name. A lock that vanishes while it is
    /// read was refreshed or released. One whose bytes match its name but that does not
    /// open was not written with this repository's key: nobody's lock, ignored. A damaged
    /// one (bytes that do not match its name) is an error: it may be a running backup's,
    /// and a prune must not go on without knowing what to wait for.
    pub fn locks(&self) -> Result<Vec<(ObjectName, Lock)>> {
        let listed = self.lock_objects()?;
        if let Some((name, e)) = listed.damaged.first() {
            return Err(super::plans::unusable(
                "lock",
                name,
                e,
                "it may belong to a running backup, so prune cannot tell what to wait for",
            ));
        }
        for (name, e) in &listed.undecodable {
            (self.warn)(&format!("ignoring a lock that does not open {name}: {e}"));
        }
        Ok(listed.objects)
    }

    /// Every lock object, readable, damaged or undecodable (for `coffer repair`).
    pub fn lock_objects(&self) -> Result<Readable<Lock>> {
        self.read_all(ObjectKind::Lock, Lock::decode)
    }
}

/// Store the next lock object, then retire the previous one. If the previous one is gone,
/// a prune removed it as stale: the new one is taken back and `false` returned. (A prune
/// that deleted the old object and then lists the new one counts the operation as alive,
/// see `gc::live_locks`, so either way the two sides agree.)
fn refresh_once(backend: &dyn Backend, keys: &Keys, lock: &Lock, state: &Shared) -> Result<bool> {
    let bytes = lock.encode(keys, None);
    let name = ObjectName::for_bytes(ObjectKind::Lock, &bytes);
    backend.put(&name, bytes.into())?;
    let old = state.current.lock().expect("lock state").0;
    if backend.stat(&old)?.is_none() {
        state.lost.store(true, std::sync::atomic::Ordering::SeqCst);
        backend.delete(&name)?;
        return Ok(false);
    }
    *state.current.lock().expect("lock state") = (name, lock.counter);
    backend.delete(&old)?;
    Ok(true)
}

impl LockGuard {
    pub fn operation(&self) -> OperationId {
        self.operation
    }

    /// Is this lock still stored? A prune that judged it stale deletes it; an operation
    /// that finds its lock gone must not commit anything that relied on the index it read.
    pub fn still_held(&self) -> Result<bool> {
        if self.shared.lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(false);
        }
        let name = self.shared.current.lock().expect("lock state").0;
        Ok(self.backend.stat(&name)?.is_some())
    }

    fn stop_refreshing(&mut self) {
        *self.shared.stop.lock().expect("lock state") = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
    }

    /// Stop refreshing and delete the lock object.
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.stop_refreshing();
        let name = self.shared.current.lock().expect("lock state").0;
        self.backend.delete(&name)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.released {
            self.stop_refreshing();
            let name = self.shared.current.lock().expect("lock state").0;
            let _ = self.backend.delete(&name);
        }
    }
}
