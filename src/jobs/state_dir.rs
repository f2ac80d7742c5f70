//! Where this machine keeps what must outlive the cache: the job state (`state.rs`) and the
//! run lock. The cache may be deleted at any time (DESIGN.md, "State, cache and secrets on the
//! host"); failure history and the lock may not, and every coffer of the machine that runs
//! the same jobs must find them in the same place whatever `--cache-dir` it was given.

use super::state;
use crate::error::{Error, Result};
use crate::hostfile;
use std::path::{Path, PathBuf};

/// The system units' folder (systemd's `StateDirectory=coffer`).
pub const SYSTEM_STATE_DIR: &str = "/var/lib/coffer";

/// `/var/lib/coffer` for root, so the timer's runs and an administrator's `sudo coffer run`
/// share one state and one run lock; else `$XDG_STATE_HOME/coffer`, or
/// `~/.local/state/coffer`. `None` when there is no home folder to put it in.
pub fn default_state_dir() -> Option<PathBuf> {
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from(SYSTEM_STATE_DIR));
    }
    // The XDG spec ignores a relative path: it would change with the working folder.
    if let Some(x) = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|x| x.is_absolute())
    {
        return Some(x.join("coffer"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/state/coffer"))
}

/// The job state folder inside a state folder.
pub fn jobs_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("jobs")
}

/// Coffer up to 0.1 kept the job state in `<cache>/jobs`. When that folder exists and
/// `new_jobs` does not yet, copy each job's state over once, so an upgrade does not forget
/// the failed attempts that `coffer status` reports and the retry pace depends on. The old
/// files are copied, not moved: an older coffer still running (a timer not yet restarted)
/// keeps working, and the cache they sit in may be deleted at any time anyway. Returns how
/// many jobs' state was copied.
pub fn adopt_from_cache(old_jobs: &Path, new_jobs: &Path) -> Result<usize> {
    if std::fs::symlink_metadata(new_jobs).is_ok() || !old_jobs.is_dir() {
        return Ok(0);
    }
    let entries = std::fs::read_dir(old_jobs).map_err(|e| Error::io(old_jobs.display(), e))?;
    let mut copied = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(job) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .filter(|j| !j.is_empty() && !j.starts_with('.'))
        else {
            continue;
        };
        // Read through `state::load` (no symlink followed, only what parses as job state).
        let found = state::load(old_jobs, job);
        if found != state::JobState::default() {
            state::save(new_jobs, job, &found)?;
            copied += 1;
        }
    }
    // Made even when there was nothing to copy, so the old folder is looked at only once.
    hostfile::private_dir(new_jobs).map_err(|e| Error::io(new_jobs.display(), e))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::state::{Attempt, JobState};
    use crate::jobs::Step;

    fn failed(message: &str) -> JobState {
        let mut s = JobState::default();
        s.record(
            Step::Backup,
            Attempt {
                time_ns: 1,
                duration_ns: 2,
                ok: false,
                message: message.into(),
            },
        );
        s
    }

    #[test]
    fn the_old_state_in_the_cache_is_adopted_once() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("cache/jobs");
        let new = dir.path().join("state/jobs");
        state::save(&old, "app", &failed("database \"missing\" does not exist")).unwrap();
        std::fs::write(old.join("run.lock"), b"").unwrap();
        std::fs::write(old.join("broken.json"), b"{not json").unwrap();
        assert_eq!(adopt_from_cache(&old, &new).unwrap(), 1);
        assert_eq!(state::load(&new, "app"), state::load(&old, "app"));
        assert!(!new.join("run.lock").exists() && !new.join("broken.json").exists());
        // Once: a later failure recorded in the new place is not overwritten by the old one.
        state::save(&new, "app", &failed("newer")).unwrap();
        assert_eq!(adopt_from_cache(&old, &new).unwrap(), 0);
        assert_eq!(state::load(&new, "app"), failed("newer"));
    }

    #[test]
    fn nothing_to_adopt_makes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("state/jobs");
        assert_eq!(adopt_from_cache(&dir.path().join("none"), &new).unwrap(), 0);
        assert!(!new.exists());
    }
}
