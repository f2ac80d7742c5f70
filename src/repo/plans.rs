//! Deletion plans and their wait records (format-spec §12), as any operation reads them:
//! a backup treats every pack a plan names as absent, so it never deduplicates against a
//! pack that a prune may delete.

use super::{IndexFilter, Repository};
use crate::backend::{ObjectKind, ObjectName};
use crate::error::{Error, ErrorKind, Result};
use crate::format::gc::{Plan, Wait};

/// Objects of one kind as they were read: the readable ones, the damaged ones (bytes that
/// do not match their name), and the ones whose bytes match their name but that do not open
/// or decode (not written with this repository's key, or corrupt before they were named).
pub struct Readable<T> {
    pub objects: Vec<(ObjectName, T)>,
    pub damaged: Vec<(ObjectName, Error)>,
    pub undecodable: Vec<(ObjectName, Error)>,
}

impl<T> Readable<T> {
    /// Every object that cannot be used, whatever the reason.
    pub fn unusable(&self) -> impl Iterator<Item = &(ObjectName, Error)> {
        self.damaged.iter().chain(&self.undecodable)
    }

    /// The readable objects, or an error naming the first unusable one: `blocks` says what
    /// it blocks, and the error says that `coffer repair` removes it.
    fn or_unusable(self, what: &str, blocks: &str) -> Result<Vec<(ObjectName, T)>> {
        if let Some((name, e)) = self.unusable().next() {
            return Err(unusable(what, name, e, blocks));
        }
        Ok(self.objects)
    }
}

/// The error for an object that a command cannot do without, and that repair removes.
pub(super) fn unusable(what: &str, name: &ObjectName, e: &Error, blocks: &str) -> Error {
    Error::corrupt(format!(
        "{what} {name} is damaged ({}): {blocks}; run `coffer repair`, which removes it safely",
        reason(name, e)
    ))
}

/// Why `name` cannot be used, without the name that the error may already start with.
pub fn reason(name: &ObjectName, e: &Error) -> String {
    let prefix = format!("{name}: ");
    e.message()
        .strip_prefix(&prefix)
        .unwrap_or(e.message())
        .to_string()
}

impl Repository {
    /// Every stored deletion plan with its name. A plan that vanishes while it is read
    /// was completed by a prune meanwhile. A damaged plan is an error: nobody can tell
    /// which packs it deletes.
    pub fn plans(&self) -> Result<Vec<(ObjectName, Plan)>> {
        self.plan_objects()?.or_unusable(
            "deletion plan",
            "backups and prunes cannot tell which packs it deletes",
        )
    }

    /// Every stored wait record with its name; a damaged one is an error.
    pub fn waits(&self) -> Result<Vec<(ObjectName, Wait)>> {
        self.wait_objects()?.or_unusable(
            "wait record",
            "prune cannot tell which backups its plan waits for",
        )
    }

    /// Every plan, readable or damaged (for `coffer repair`).
    pub fn plan_objects(&self) -> Result<Readable<Plan>> {
        self.read_all(ObjectKind::Plan, Plan::decode)
    }

    /// Every wait record, readable or damaged (for `coffer repair`).
    pub fn wait_objects(&self) -> Result<Readable<Wait>> {
        self.read_all(ObjectKind::Wait, Wait::decode)
    }

    /// Read and decode every object of `kind`. One that vanishes while it is read is
    /// skipped; any failure of the storage is an error.
    pub(super) fn read_all<T>(
        &self,
        kind: ObjectKind,
        decode: impl Fn(&crate::crypto::Keys, &[u8]) -> Result<T>,
    ) -> Result<Readable<T>> {
        let mut out = Readable {
            objects: Vec::new(),
            damaged: Vec::new(),
            undecodable: Vec::new(),
        };
        for (name, _) in self.backend.list(kind)? {
            match self.read_object(&name) {
                Ok(bytes) => match decode(&self.keys, &bytes) {
                    Ok(t) => out.objects.push((name, t)),
                    Err(e) => out.undecodable.push((name, e)),
                },
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if e.kind() == ErrorKind::Corrupt => out.damaged.push((name, e)),
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
