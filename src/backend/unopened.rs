//! A region that could not even be opened (a local folder that is unmounted or unreadable
//! at start): every operation fails with the error that opening it gave. Behind `Regions`
//! it is simply a region that is down: writes that reach the other regions succeed (as many
//! as `--min-regions` asks), the region is reported behind, and `sync` catches it up once
//! it is back. Without it, one lost folder would stop every command, `wal-push` included.

use super::{Backend, Bytes, ObjectKind, ObjectName};
use crate::error::{Error, Result};

pub struct Unopened {
    place: String,
    why: String,
}

impl Unopened {
    pub fn new(place: String, error: &Error) -> Self {
        Unopened {
            place,
            why: error.to_string(),
        }
    }

    fn fail<T>(&self) -> Result<T> {
        // Retryable: the region may come back (a remount, a fixed permission).
        Err(Error::backend(
            format!("{} could not be opened: {}", self.place, self.why),
            true,
        ))
    }
}

impl Backend for Unopened {
    fn describe(&self) -> String {
        self.place.clone()
    }
    fn get_limited(&self, _: &ObjectName, _: u64) -> Result<Vec<u8>> {
        self.fail()
    }
    fn get_range(&self, _: &ObjectName, _: u64, _: u64) -> Result<Vec<u8>> {
        self.fail()
    }
    fn put(&self, _: &ObjectName, _: Bytes) -> Result<()> {
        self.fail()
    }
    fn delete(&self, _: &ObjectName) -> Result<()> {
        self.fail()
    }
    fn list(&self, _: ObjectKind) -> Result<Vec<(ObjectName, u64)>> {
        self.fail()
    }
    fn stat(&self, _: &ObjectName) -> Result<Option<u64>> {
        self.fail()
    }
    fn scratch(&self) -> Result<Vec<(String, u64)>> {
        self.fail()
    }
    fn delete_scratch(&self, _: &str) -> Result<()> {
        self.fail()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Regions;
    use std::sync::Arc;

    #[test]
    fn an_unopened_region_is_a_region_that_is_down() {
        let good = crate::backend::open(&crate::backend::Location::Memory).unwrap();
        let down: Arc<dyn Backend> = Arc::new(Unopened::new(
            "/mnt/gone".into(),
            &Error::backend("Permission denied", false),
        ));
        let regions = Regions::new(vec![("a".into(), good), ("b".into(), down)], 1).unwrap();
        let n = ObjectName::for_bytes(ObjectKind::Wal, b"segment");
        regions.put(&n, Bytes::from_static(b"segment")).unwrap();
        assert_eq!(regions.get(&n).unwrap(), b"segment");
        assert_eq!(regions.list(ObjectKind::Wal).unwrap().len(), 1);
        let behind = regions.behind();
        assert_eq!(behind.len(), 1);
        assert!(behind[0].1.contains("could not be opened"), "{behind:?}");
        assert!(
            regions.reachable().is_err(),
            "a prune must not run without it"
        );
    }
}
