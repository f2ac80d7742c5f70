//! Which locks are stale, judged without comparing clocks of different machines
//! (format-spec §12): an observer remembers when it first saw each lock object, on its own
//! clock, and declares a lock stale when a later observation of its own finds the very same
//! object (same name, so same refresh counter) after the margin. A live operation rewrites
//! its lock every `LOCK_REFRESH`, so its lock object never lives that long.

use crate::backend::ObjectName;
use crate::error::{Error, Result};
use crate::format::gc::Lock;
use crate::hostfile;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The observer's first sightings of lock objects, kept in its local state folder.
pub struct Sightings {
    path: Option<PathBuf>,
    /// Lock object path → seconds on this machine's clock when first seen.
    seen: BTreeMap<String, u64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Sightings {
    /// Load the sightings kept in `dir` (none without a state folder: then no lock is ever
    /// judged stale, and an operator removes a dead one by hand).
    pub fn load(dir: Option<PathBuf>) -> Sightings {
        let path = dir.map(|d| d.join("lock-sightings.json"));
        let seen = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Sightings { path, seen }
    }

    /// Split `locks` into live and stale ones. A lock seen for the first time is live; it
    /// is stale when this observer saw the same object at least `margin` ago. Sightings of
    /// objects that no longer exist are forgotten.
    #[allow(clippy::type_complexity)]
    pub fn judge(
        &mut self,
        locks: Vec<(ObjectName, Lock)>,
        margin: Duration,
    ) -> (Vec<(ObjectName, Lock)>, Vec<(ObjectName, Lock)>) {
        let now = now_secs();
        let listed: std::collections::HashSet<String> =
            locks.iter().map(|(n, _)| n.path()).collect();
        self.seen.retain(|k, _| listed.contains(k));
        let (mut live, mut stale) = (Vec::new(), Vec::new());
        for (name, lock) in locks {
            let path = name.path();
            match self.seen.get(&path) {
                // A clock that went backwards shows as a negative age: not stale.
                Some(&first) if now.saturating_sub(first) >= margin.as_secs() && now >= first => {
                    stale.push((name, lock))
                }
                Some(_) => live.push((name, lock)),
                None => {
                    self.seen.insert(path, now);
                    live.push((name, lock));
                }
            }
        }
        (live, stale)
    }

    /// Keep the sightings for the next observation.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&self.seen).map_err(|e| Error::invalid(e.to_string()))?;
        // Two prunes may share the folder: each writes its own temporary file (a random
        // name, created with O_EXCL, so a planted symlink is never written through).
        hostfile::replace(path, &bytes, hostfile::PRIVATE_FILE)
            .map_err(|e| Error::io(path.display(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ObjectKind;
    use crate::format::gc::LockKind;

    fn lock(n: u8) -> (ObjectName, Lock) {
        (
            ObjectName::for_bytes(ObjectKind::Lock, &[n]),
            Lock {
                operation: [n; 16],
                kind: LockKind::Backup,
                counter: 0,
                pid: 1,
                host: "h".into(),
            },
        )
    }

    #[test]
    fn a_lock_is_stale_only_on_a_later_sighting_of_the_same_object() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sightings::load(Some(dir.path().into()));
        // First sighting: live, even with a zero margin.
        let (live, stale) = s.judge(vec![lock(1)], Duration::ZERO);
        assert_eq!((live.len(), stale.len()), (1, 0));
        s.save().unwrap();
        // A later observer (another process) with the saved state: now stale.
        let mut s = Sightings::load(Some(dir.path().into()));
        let (live, stale) = s.judge(vec![lock(1), lock(2)], Duration::ZERO);
        assert_eq!(stale[0].1.operation, [1; 16]);
        assert_eq!(live[0].1.operation, [2; 16]);
        // With a margin of an hour, nothing seen seconds ago is stale.
        let (live, stale) = s.judge(vec![lock(1), lock(2)], Duration::from_secs(3600));
        assert_eq!((live.len(), stale.len()), (2, 0));
        // A refreshed lock is a new object: its age starts again.
        let (live, _) = s.judge(vec![lock(3)], Duration::ZERO);
        assert_eq!(live.len(), 1);
        assert_eq!(s.seen.len(), 1);
    }

    /// The sightings used to go through `lock-sightings.json.PID.tmp` with `std::fs::write`,
    /// which follows a symlink planted there.
    #[test]
    fn saving_follows_no_symlink_at_the_old_temporary_name() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let old_tmp = dir
            .path()
            .join(format!("lock-sightings.json.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        let mut s = Sightings::load(Some(dir.path().into()));
        s.judge(vec![lock(1)], Duration::ZERO);
        s.save().unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let path = dir.path().join("lock-sightings.json");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Sightings::load(Some(dir.path().into())).seen.len(), 1);
    }
}
