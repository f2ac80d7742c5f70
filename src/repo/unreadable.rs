//! Packs that failed to read in this process. A backup stops deduplicating against them
//! (format-spec §12.1 B2): a blob whose indexed copy cannot be read is stored again rather
//! than named by a snapshot that could never be restored.

use crate::id::PackId;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub(super) struct UnreadablePacks {
    /// Set with the first pack: lets the saver's hot path skip the mutex while no read failed.
    any: AtomicBool,
    packs: Mutex<HashSet<PackId>>,
}

impl UnreadablePacks {
    pub fn record(&self, pack: PackId) {
        self.packs.lock().expect("unreadable packs").insert(pack);
        self.any.store(true, Ordering::SeqCst);
    }

    pub fn any(&self) -> bool {
        self.any.load(Ordering::SeqCst)
    }

    pub fn contains(&self, pack: &PackId) -> bool {
        self.any() && self.packs.lock().expect("unreadable packs").contains(pack)
    }
}
