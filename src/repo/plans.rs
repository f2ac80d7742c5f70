//! Deletion plans and their wait records (format-spec §12), as any operation reads them:
//! a backup treats every pack a plan names as absent, so it never deduplicates against a
//! pack that a prune may delete.

use super::{IndexFilter, Repository};
use crate::backend::{ObjectKind, ObjectName};
use crate::error::{ErrorKind, Result};
use crate::format::gc::{Plan, Wait};

impl Repository {
    /// Every stored deletion plan with its name. A plan that vanishes while it is read
    /// was completed by a prune meanwhile.
    pub fn plans(&self) -> Result<Vec<(ObjectName, Plan)>> {
        self.read_all(ObjectKind::Plan, Plan::decode)
    }

    /// Every stored wait record with its name.
    pub fn waits(&self) -> Result<Vec<(ObjectName, Wait)>> {
        self.read_all(ObjectKind::Wait, Wait::decode)
    }

    fn read_all<T>(
        &self,
        kind: ObjectKind,
        decode: impl Fn(&crate::crypto::Keys, &[u8]) -> Result<T>,
    ) -> Result<Vec<(ObjectName, T)>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(kind)? {
            match self.read_object(&name) {
                Ok(bytes) => out.push((name, decode(&self.keys, &bytes)?)),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Read the deletion plans and leave their packs out of the index from now on. A
    /// backup calls this after storing its lock and before it reads the index (§12, B2).
    pub fn exclude_planned_packs(&self) -> Result<usize> {
        let mut filter = IndexFilter::default();
        for (_, plan) in self.plans()? {
            filter.packs.extend(plan.packs);
        }
        let n = filter.packs.len();
        self.set_index_filter(filter);
        Ok(n)
    }
}
