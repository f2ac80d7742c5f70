//! A bounded cache of open descriptors, least recently used out first. A restore can touch
//! hundreds of thousands of files and folders; holding all of them open would exhaust the
//! process's descriptor limit, so at most `capacity` stay open and the rest are reopened
//! (and checked) when needed again.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;

pub(crate) struct FdCache {
    /// Descriptor and last use, by the caller's number for the file or folder.
    map: HashMap<usize, (Arc<OwnedFd>, u64)>,
    tick: u64,
    capacity: usize,
}

impl FdCache {
    pub(crate) fn new(capacity: usize) -> Self {
        FdCache {
            map: HashMap::new(),
            tick: 0,
            capacity: capacity.max(1),
        }
    }

    pub(crate) fn get(&mut self, key: usize) -> Option<Arc<OwnedFd>> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(&key).map(|(fd, used)| {
            *used = tick;
            fd.clone()
        })
    }

    /// Add a descriptor, closing the least recently used one when full. A descriptor that
    /// another thread still holds stays open until that thread drops it (`Arc`).
    pub(crate) fn insert(&mut self, key: usize, fd: Arc<OwnedFd>) {
        self.tick += 1;
        if self.map.len() >= self.capacity && !self.map.contains_key(&key) {
            // A linear scan: the capacity is small, and a miss costs system calls anyway.
            let oldest = self.map.iter().min_by_key(|(_, (_, used))| *used);
            if let Some(&k) = oldest.map(|(k, _)| k) {
                self.map.remove(&k);
            }
        }
        self.map.insert(key, (fd, self.tick));
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<Arc<OwnedFd>> {
        self.map.remove(&key).map(|(fd, _)| fd)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> Arc<OwnedFd> {
        Arc::new(std::fs::File::open("/").unwrap().into())
    }

    #[test]
    fn holds_at_most_its_capacity_and_drops_the_least_recently_used() {
        let mut c = FdCache::new(2);
        c.insert(1, fd());
        c.insert(2, fd());
        assert!(c.get(1).is_some()); // 2 is now the least recently used
        c.insert(3, fd());
        assert_eq!(c.len(), 2);
        assert!(c.get(2).is_none());
        assert!(c.get(1).is_some() && c.get(3).is_some());
        assert!(c.remove(3).is_some());
        assert_eq!(c.len(), 1);
    }
}
