//! Opened frames kept for reuse, newest first, up to a byte limit. Reading one blob opens its
//! whole frame (up to about 1 MiB), so readers that come back to the same frames keep them:
//! a walk over trees reads many trees from a few frames, and `dump` of a dump taken after
//! many nights reads each old frame's blobs in several windows.

use crate::index::FrameKey;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

pub struct FrameCache {
    limit: usize,
    frames: Mutex<VecDeque<(FrameKey, Arc<Vec<u8>>)>>,
}

impl FrameCache {
    pub fn new(limit_bytes: usize) -> Self {
        FrameCache {
            limit: limit_bytes,
            frames: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(FrameKey, Arc<Vec<u8>>)>> {
        // Plain data: still usable after a panic elsewhere.
        self.frames.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The opened frame, if kept; it becomes the newest.
    pub fn get(&self, key: &FrameKey) -> Option<Arc<Vec<u8>>> {
        let mut frames = self.lock();
        let k = frames.iter().position(|(f, _)| f == key)?;
        let hit = frames.remove(k)?;
        let plain = hit.1.clone();
        frames.push_front(hit);
        Some(plain)
    }

    /// Keep an opened frame, dropping the oldest ones beyond the limit (never the new one).
    pub fn insert(&self, key: FrameKey, plain: Arc<Vec<u8>>) {
        let mut frames = self.lock();
        if frames.iter().any(|(f, _)| *f == key) {
            return;
        }
        frames.push_front((key, plain));
        let mut total: usize = frames.iter().map(|(_, p)| p.len()).sum();
        while total > self.limit && frames.len() > 1 {
            if let Some((_, p)) = frames.pop_back() {
                total -= p.len();
            }
        }
    }
}
