//! Upload bandwidth limits: a backend wrapper that paces `put`s to a byte rate, so a nightly
//! backup does not saturate the link production traffic uses. Each wrapped backend (each
//! region) has its own pace; the rate is shared and may change between jobs (0 = no limit).

use super::{Backend, Bytes, ObjectKind, ObjectName};
use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A rate in bytes per second that several throttles read; 0 means unlimited.
#[derive(Default)]
pub struct UploadLimit(AtomicU64);

impl UploadLimit {
    pub fn set(&self, bytes_per_sec: Option<u64>) {
        self.0.store(bytes_per_sec.unwrap_or(0), Ordering::Relaxed);
    }
    pub fn get(&self) -> Option<u64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            n => Some(n),
        }
    }
}

pub struct Throttled {
    inner: Arc<dyn Backend>,
    limit: Arc<UploadLimit>,
    /// When the bytes sent so far will have drained at the limit: a put waits until then,
    /// then pushes it on by its own size. Bursts are thus bounded by one object.
    free_at: Mutex<Instant>,
}

impl Throttled {
    pub fn new(inner: Arc<dyn Backend>, limit: Arc<UploadLimit>) -> Self {
        Throttled {
            inner,
            limit,
            free_at: Mutex::new(Instant::now()),
        }
    }

    fn pace(&self, bytes: usize) {
        let Some(rate) = self.limit.get() else {
            return;
        };
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let wait_until = {
            let mut free_at = self.free_at.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = (*free_at).max(now);
            *free_at = start + cost;
            start
        };
        let now = Instant::now();
        if wait_until > now {
            std::thread::sleep(wait_until - now);
        }
    }
}

impl Backend for Throttled {
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
        self.pace(bytes.len());
        self.inner.put(name, bytes)
    }
    fn delete(&self, name: &ObjectName) -> Result<()> {
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
        self.inner.delete_scratch(path)
    }
    fn reachable(&self) -> Result<()> {
        self.inner.reachable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{open, Location};

    #[test]
    fn puts_are_paced_to_the_rate() {
        let limit = Arc::new(UploadLimit::default());
        let b = Throttled::new(open(&Location::Memory).unwrap(), limit.clone());
        let put = |i: u8| {
            let data = vec![i; 100_000];
            b.put(&ObjectName::for_bytes(ObjectKind::Pack, &data), data.into())
                .unwrap()
        };
        put(1);
        put(2);
        // 1 MB/s: five puts of 100 kB cost 0.5 s, of which the first is free.
        limit.set(Some(1_000_000));
        let t = Instant::now();
        for i in 3..8 {
            put(i);
        }
        assert!(
            t.elapsed() >= Duration::from_millis(390),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(b.list(ObjectKind::Pack).unwrap().len(), 7);
    }
}
