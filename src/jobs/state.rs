//! What this machine remembers of its own job runs: the last attempt of each step, kept so a
//! failing step is retried at a measured pace and its failure can be reported even when the
//! repository could not be reached. One JSON file per job in the state folder (`state_dir.rs`
//! says where it is), and beside them the last failure to write the metrics file; losing them
//! loses failure history, which `coffer status` would then not report, since successes are
//! read from the repository.

use super::Step;
use crate::error::{Error, Result};
use crate::hostfile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The last attempt of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub time_ns: i64,
    pub duration_ns: u64,
    pub ok: bool,
    /// What went wrong, or a one-line summary of what was done.
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// Keyed by step name (`backup`, `check`, ...).
    #[serde(default)]
    pub last: BTreeMap<String, Attempt>,
}

impl JobState {
    pub fn get(&self, step: Step) -> Option<&Attempt> {
        self.last.get(step.name())
    }
    pub fn record(&mut self, step: Step, attempt: Attempt) {
        self.last.insert(step.name().to_string(), attempt);
    }
}

fn file(dir: &Path, job: &str) -> PathBuf {
    dir.join(format!("{job}.json"))
}

/// More than any state file holds (a few attempts with one-line messages).
const MAX_STATE_FILE: u64 = 1 << 20;

/// The job's state; empty when there is none yet or the file cannot be read (it is advisory).
/// A symlink in its place is not followed.
pub fn load(dir: &Path, job: &str) -> JobState {
    hostfile::read_own(&file(dir, job), MAX_STATE_FILE)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Replace the job's state atomically, in a private folder (its messages name hosts,
/// databases and errors): a temporary file with a random name, then a rename.
pub fn save(dir: &Path, job: &str, state: &JobState) -> Result<()> {
    hostfile::private_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
    let path = file(dir, job);
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| Error::invalid(e.to_string()))?;
    hostfile::replace(&path, &bytes, hostfile::PRIVATE_FILE)
        .map_err(|e| Error::io(path.display(), e))
}

/// The last write of the metrics file failed: which file, when, and why. Kept until a write
/// succeeds, so `coffer status` can say that monitoring is blind (a warning in a run's log is
/// read by nobody).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFailure {
    pub path: PathBuf,
    pub time_ns: i64,
    pub error: String,
}

/// Not `*.json`, so it can never be taken for a job's file.
const METRICS_FAILURE: &str = "metrics-write.failed";

/// Remember how the metrics file's last write went: a failure replaces the record, a success
/// removes it.
pub fn record_metrics_write(dir: &Path, failure: Option<&MetricsFailure>) -> Result<()> {
    let path = dir.join(METRICS_FAILURE);
    match failure {
        Some(f) => {
            hostfile::private_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
            let bytes = serde_json::to_vec_pretty(f).map_err(|e| Error::invalid(e.to_string()))?;
            hostfile::replace(&path, &bytes, hostfile::PRIVATE_FILE)
                .map_err(|e| Error::io(path.display(), e))
        }
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path.display(), e)),
            _ => Ok(()),
        },
    }
}

/// The metrics file's last failed write, if the last write failed.
pub fn metrics_failure(dir: &Path) -> Option<MetricsFailure> {
    hostfile::read_own(&dir.join(METRICS_FAILURE), MAX_STATE_FILE)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), "app"), JobState::default());
        let mut s = JobState::default();
        s.record(
            Step::Backup,
            Attempt {
                time_ns: 5,
                duration_ns: 7,
                ok: false,
                message: "pg_dump failed".into(),
            },
        );
        save(dir.path(), "app", &s).unwrap();
        assert_eq!(load(dir.path(), "app"), s);
        assert!(!load(dir.path(), "app").get(Step::Backup).unwrap().ok);
    }

    /// The state used to go through `.JOB.json.PID` with `std::fs::write`, which follows a
    /// symlink planted there; a 0755 folder and 0644 files let anyone read the messages.
    #[test]
    fn saving_follows_no_planted_symlink_and_keeps_the_state_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("jobs");
        std::fs::create_dir(&state_dir).unwrap();
        std::fs::set_permissions(&state_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let old_tmp = state_dir.join(format!(".app.json.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &old_tmp).unwrap();
        save(&state_dir, "app", &JobState::default()).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(load(&state_dir, "app"), JobState::default());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state_dir), 0o700);
        assert_eq!(mode(&state_dir.join("app.json")), 0o600);
    }

    #[test]
    fn a_metrics_failure_is_kept_until_a_write_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("jobs");
        assert_eq!(metrics_failure(&state_dir), None);
        record_metrics_write(&state_dir, None).unwrap();
        let f = MetricsFailure {
            path: "/nowhere/coffer.prom".into(),
            time_ns: 9,
            error: "No such file or directory".into(),
        };
        record_metrics_write(&state_dir, Some(&f)).unwrap();
        assert_eq!(metrics_failure(&state_dir), Some(f));
        assert_eq!(load(&state_dir, "metrics-write"), JobState::default());
        record_metrics_write(&state_dir, None).unwrap();
        assert_eq!(metrics_failure(&state_dir), None);
    }
}
