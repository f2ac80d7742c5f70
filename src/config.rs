//! The job file (`coffer.toml`, `--config F`): `[repository]` gives the regions and the password
//! file when the command line and environment do not; each `[[job]]` says what to back up, when,
//! how long to keep it, how to check and drill it, and its RPO and RTO; `[monitoring]` says where
//! to report. A mistake names the line and the field (toml's own position, since every value
//! type is checked while parsing).

use crate::error::{Error, Result};
use crate::jobs::schedule::Schedule;
use crate::jobs::units;
use crate::retention::{Policy, Within, UNLIMITED};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub repository: Option<RepositorySection>,
    #[serde(default, rename = "job")]
    pub jobs: Vec<Job>,
    #[serde(default)]
    pub monitoring: Monitoring,
}

/// One `[[job]]`: a set of sources backed up together on one schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    pub name: String,
    /// Files and folders.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// `--exclude` globs for `paths`.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// PostgreSQL connection URLs; each database is dumped with `pg_dump`.
    #[serde(default)]
    pub postgres: Vec<String>,
    /// Also store roles and other globals (`pg_dumpall --globals-only`) with each database.
    #[serde(default)]
    pub postgres_globals: bool,
    /// Buckets or prefixes, as URLs of any supported service.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// Point-in-time recovery of one PostgreSQL cluster, whose `archive_command` pushes its
    /// WAL into the repository (`coffer wal-push`). `status`, the metrics and the run report
    /// hold the archive's newest segment to the job's `rpo`.
    #[serde(default)]
    pub postgres_pitr: Option<PitrSection>,
    /// When to back up `paths`, `postgres` and `buckets` (and the base backups of
    /// `postgres_pitr` when it gives no `base_backup` schedule of its own). A job whose only
    /// source is `postgres_pitr` with `base_backup` needs none.
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// What to keep; without it nothing is forgotten.
    #[serde(default)]
    pub retention: Option<RetentionSection>,
    #[serde(default)]
    pub check: Option<CheckSection>,
    #[serde(default)]
    pub drill: Option<DrillSection>,
    /// Most data a disaster may lose: the newest snapshot must be younger than this.
    #[serde(default)]
    pub rpo: Option<DurationValue>,
    /// Longest a recovery may take: the last drill must have restored within this.
    #[serde(default)]
    pub rto: Option<DurationValue>,
    /// Tags added to every snapshot of the job (besides `job:NAME`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Worker threads for chunking, compression and encryption (default: one per core).
    #[serde(default)]
    pub threads: Option<usize>,
    /// Most bytes per second sent to each region, e.g. "20MiB/s".
    #[serde(default)]
    pub upload_limit: Option<Rate>,
    /// CPU priority of the job's work and of pg_dump, 0 (normal) to 19 (lowest).
    #[serde(default)]
    pub nice: Option<u8>,
    /// Use only idle disk time ("idle") or the normal best-effort class ("normal").
    #[serde(default)]
    pub io_priority: Option<IoPriority>,
}

/// `retention = { keep_daily = 7, ... }`, with the rules of `coffer forget`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<WithinValue>,
    #[serde(default)]
    pub keep_tag: Vec<String>,
    /// Delete unused data after forgetting (default true).
    #[serde(default = "yes")]
    pub prune: bool,
}

fn yes() -> bool {
    true
}

impl RetentionSection {
    pub fn policy(&self) -> Policy {
        // In a file, 0 would be a mistake rather than "no rule"; `unlimited` is spelled -1
        // on the command line and has no TOML form other than a very large number.
        let count = |c: Option<u32>| c.map(|n| if n == u32::MAX { UNLIMITED } else { n });
        Policy {
            keep_last: count(self.keep_last),
            keep_hourly: count(self.keep_hourly),
            keep_daily: count(self.keep_daily),
            keep_weekly: count(self.keep_weekly),
            keep_monthly: count(self.keep_monthly),
            keep_yearly: count(self.keep_yearly),
            keep_within: self.keep_within.as_ref().map(|w| w.0),
            keep_tags: self.keep_tag.clone(),
        }
    }
}

/// `check = { schedule = "weekly", read_data_subset = "10%" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    pub schedule: Schedule,
    /// Read and verify this share of the packs at each check (structure only without it).
    #[serde(default)]
    pub read_data_subset: Option<Percent>,
    /// Read every byte at each check.
    #[serde(default)]
    pub read_data: bool,
}

/// `drill = { schedule = "weekly", target = "/var/lib/coffer/drill", postgres = "...", bucket = "..." }`:
/// where a drill restores to. Each source kind needs its scratch place.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillSection {
    pub schedule: Schedule,
    /// Scratch folder for files (and for anything else when no other place is given).
    #[serde(default)]
    pub target: Option<PathBuf>,
    /// Scratch database URL for PostgreSQL sources; it is dropped and recreated by each drill.
    #[serde(default)]
    pub postgres: Option<String>,
    /// Scratch bucket URL (or prefix) for bucket sources; emptied by each drill.
    #[serde(default)]
    pub bucket: Option<String>,
}

/// `postgres_pitr = { url = "postgresql://...", base_backup = "daily 01:00" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PitrSection {
    /// The cluster, as a connection URL.
    pub url: String,
    /// When to take a base backup.
    #[serde(default)]
    pub base_backup: Option<Schedule>,
}

/// `[monitoring]`: where every run reports.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitoring {
    /// Prometheus text-format metrics, rewritten after every run (node_exporter textfile collector).
    #[serde(default)]
    pub prometheus_textfile: Option<PathBuf>,
    /// POSTed a JSON document after every run, on success and on failure.
    #[serde(default)]
    pub webhook: Option<String>,
    /// Healthchecks-style ping URL: URL/start when a run starts, URL on success, URL/fail on failure.
    #[serde(default)]
    pub ping_url: Option<String>,
}

/// A duration written as `26h`, `15m`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct DurationValue(pub Duration);

impl TryFrom<String> for DurationValue {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        units::parse_duration(&s).map(DurationValue)
    }
}

/// A keep-within duration, `30d` or `1y6m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct WithinValue(pub Within);

impl TryFrom<String> for WithinValue {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Within::parse(&s)
            .map(WithinValue)
            .map_err(|e| e.to_string())
    }
}

/// A percentage written `10%`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Percent(pub f64);

impl TryFrom<String> for Percent {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        units::parse_percent(&s).map(Percent)
    }
}

/// Bytes per second, written `20MiB/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Rate(pub u64);

impl TryFrom<String> for Rate {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        units::parse_rate(&s).map(Rate)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoPriority {
    Idle,
    Normal,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySection {
    /// `[NAME=]URL` per region, in read order.
    #[serde(default)]
    pub regions: Vec<String>,
    pub password_file: Option<PathBuf>,
    /// How many regions must take every write.
    pub min_regions: Option<usize>,
}

impl ConfigFile {
    /// Parse `text` (from `path`, named in errors). A mistake names the line and the field.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let bad = |msg: String| Error::invalid(format!("{}: {}", path.display(), msg.trim()));
        let file: ConfigFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        file.validate(text).map_err(bad)?;
        Ok(file)
    }

    /// Rules that span fields, checked after parsing; errors name the job and its line.
    fn validate(&self, text: &str) -> std::result::Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for job in &self.jobs {
            let at = |field: &str| {
                format!(
                    "line {}, job {:?}, field `{field}`",
                    line_of_job(text, &job.name),
                    job.name
                )
            };
            if job.name.is_empty()
                || !job
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!(
                    "{}: a job name must be letters, digits, '-', '_' or '.'",
                    at("name")
                ));
            }
            if !seen.insert(job.name.as_str()) {
                return Err(format!("{}: two jobs have this name", at("name")));
            }
            let plain =
                !job.paths.is_empty() || !job.postgres.is_empty() || !job.buckets.is_empty();
            if !plain && job.postgres_pitr.is_none() {
                return Err(format!(
                    "{}: the job has nothing to back up; give paths, postgres, buckets or \
                     postgres_pitr",
                    at("paths")
                ));
            }
            let pitr_own = job
                .postgres_pitr
                .as_ref()
                .map_or(true, |p| p.base_backup.is_some());
            if job.schedule.is_none() && (plain || !pitr_own) {
                return Err(format!(
                    "{}: missing: when to back up the job's sources, e.g. schedule = \"daily 02:00\"",
                    at("schedule")
                ));
            }
            if job.nice.is_some_and(|n| n > 19) {
                return Err(format!("{}: must be 0 to 19", at("nice")));
            }
            if job.threads == Some(0) {
                return Err(format!("{}: must be at least 1", at("threads")));
            }
            if let Some(r) = &job.retention {
                if r.policy().is_empty() {
                    return Err(format!(
                        "{}: the policy keeps nothing; give at least one keep_* rule",
                        at("retention")
                    ));
                }
            }
        }
        Ok(())
    }

    /// The job with this name.
    pub fn job(&self, name: &str) -> Result<&Job> {
        self.jobs.iter().find(|j| j.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.jobs.iter().map(|j| j.name.as_str()).collect();
            Error::invalid(format!(
                "no job named {name:?} in the job file (jobs: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// Only the `[repository]` section of the file at `path`: every command reads it, and a
    /// mistake in a job must not stop `snapshots` or `restore` in a disaster.
    pub fn load_repository(path: &Path) -> Result<Option<RepositorySection>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("config file {}", path.display()), e))?;
        Self::parse_repository(path, &text)
    }

    /// `load_repository` of text already read (from `path`, named in errors).
    pub fn parse_repository(path: &Path, text: &str) -> Result<Option<RepositorySection>> {
        #[derive(Deserialize)]
        struct RepositoryOnly {
            #[serde(default)]
            repository: Option<RepositorySection>,
        }
        let file: RepositoryOnly = toml::from_str(text)
            .map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.to_string().trim())))?;
        Ok(file.repository)
    }

    /// Read the file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("config file {}", path.display()), e))?;
        Self::parse(path, &text)
    }
}

/// The line of the `name = "..."` that introduces a job (1-based), for messages about it.
fn line_of_job(text: &str, name: &str) -> usize {
    let quoted = format!("\"{name}\"");
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with("name") && l.contains(&quoted)
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_repository_section_beside_jobs() {
        let c = ConfigFile::parse(
            Path::new("coffer.toml"),
            "[repository]\nregions = [\"eu=/srv/a\", \"us=/srv/b\"]\npassword_file = \"/etc/p\"\n\n[[job]]\nname = \"app\"\npaths = [\"/srv\"]\nschedule = \"daily 02:30\"\n",
        )
        .unwrap();
        let r = c.repository.unwrap();
        assert_eq!(r.regions, vec!["eu=/srv/a", "us=/srv/b"]);
        assert_eq!(r.password_file, Some(PathBuf::from("/etc/p")));
    }

    #[test]
    fn a_cluster_under_pitr_alone_is_a_job_and_its_base_backups_need_a_schedule() {
        let job = |body: &str| {
            ConfigFile::parse(
                Path::new("coffer.toml"),
                &format!("[[job]]\nname = \"db\"\n{body}"),
            )
            .map_err(|e| e.to_string())
        };
        let pitr = "postgres_pitr = { url = \"postgresql://u@h/postgres\"";
        // Base backups on their own schedule: no job schedule needed.
        let c = job(&format!("{pitr}, base_backup = \"daily 01:00\" }}\n")).unwrap();
        assert!(c.jobs[0].schedule.is_none());
        // Without one, the job's schedule says when.
        job(&format!("{pitr} }}\nschedule = \"daily 02:00\"\n")).unwrap();
        let e = job(&format!("{pitr} }}\n")).unwrap_err();
        assert!(e.contains("schedule") && e.contains("missing"), "{e}");
        // Other sources always need the job's schedule.
        let e = job(&format!(
            "paths = [\"/srv\"]\n{pitr}, base_backup = \"daily 01:00\" }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("schedule"), "{e}");
        let e = job("schedule = \"daily 02:00\"\n").unwrap_err();
        assert!(e.contains("nothing to back up"), "{e}");
    }

    #[test]
    fn a_mistake_names_the_line_and_the_field() {
        let e = ConfigFile::parse(
            Path::new("coffer.toml"),
            "[repository]\nregions = [\"a\"]\nregoins = 3\n",
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("line 3") && m.contains("regoins"), "{m}");
        let e = ConfigFile::parse(Path::new("c.toml"), "[repository]\nregions = 7\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    const EXAMPLE: &str = r#"
[repository]
regions = ["eu=/srv/a"]

[[job]]
name = "app"
postgres = ["postgresql://backup@db.internal:5432/app"]
paths = ["/srv/app/config"]
buckets = ["s3://storage/public?endpoint=https://storage.internal"]
schedule = "daily 02:30"
retention = { keep_daily = 7, keep_weekly = 4, keep_monthly = 12 }
check = { schedule = "weekly", read_data_subset = "10%" }
drill = { schedule = "weekly", postgres = "postgresql://backup@scratch.internal/drill", target = "/var/lib/coffer/drill", bucket = "s3://scratch/drill" }
rpo = "26h"
rto = "15m"
upload_limit = "20MiB/s"
nice = 10
io_priority = "idle"

[monitoring]
prometheus_textfile = "/var/lib/node_exporter/textfile/coffer.prom"
webhook = "https://hooks.internal/coffer"
"#;

    /// The example of DESIGN.md's CLI contract, as written there: its drill names no scratch
    /// bucket, which fails that source's drill, not the file.
    #[test]
    fn reads_the_contract_example() {
        let design = EXAMPLE
            .replacen(", bucket = \"s3://scratch/drill\"", "", 1)
            .replacen(
                "upload_limit = \"20MiB/s\"\nnice = 10\nio_priority = \"idle\"\n",
                "",
                1,
            );
        let c = ConfigFile::parse(Path::new("coffer.toml"), &design).unwrap();
        assert!(c
            .job("app")
            .unwrap()
            .drill
            .as_ref()
            .unwrap()
            .bucket
            .is_none());
    }

    #[test]
    fn reads_the_documented_job_file() {
        let c = ConfigFile::parse(Path::new("coffer.toml"), EXAMPLE).unwrap();
        let job = c.job("app").unwrap();
        assert_eq!(job.schedule.as_ref().unwrap().to_string(), "daily 02:30");
        assert_eq!(job.rpo.unwrap().0, Duration::from_secs(26 * 3600));
        assert_eq!(job.rto.unwrap().0, Duration::from_secs(15 * 60));
        assert_eq!(
            job.check.as_ref().unwrap().read_data_subset,
            Some(Percent(10.0))
        );
        assert_eq!(job.retention.as_ref().unwrap().policy().keep_daily, Some(7));
        assert!(job.retention.as_ref().unwrap().prune);
        assert_eq!(job.upload_limit, Some(Rate(20 << 20)));
        assert_eq!(job.io_priority, Some(IoPriority::Idle));
        assert!(c.monitoring.webhook.is_some());
        assert!(c.job("nope").is_err());
    }

    #[test]
    fn job_mistakes_name_the_line_and_the_field() {
        let cases = [
            (
                "schedule = \"daily 02:30\"",
                "schedule = \"dialy 02:30\"",
                "schedule",
            ),
            ("rpo = \"26h\"", "rpo = \"26 hourz\"", "rpo"),
            ("nice = 10", "nice = 10\nthreds = 2", "threds"),
            (
                "read_data_subset = \"10%\"",
                "read_data_subset = \"110%\"",
                "read_data_subset",
            ),
        ];
        for (from, to, field) in cases {
            let text = EXAMPLE.replacen(from, to, 1);
            let line = text
                .lines()
                .position(|l| l.contains(to.lines().last().unwrap()))
                .unwrap()
                + 1;
            let m = ConfigFile::parse(Path::new("coffer.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(
                m.contains(&format!("line {line}")) && m.contains(field),
                "{field}: {m}"
            );
        }
        let no_nice = EXAMPLE.replacen("nice = 10", "nice = 25", 1);
        let m = ConfigFile::parse(Path::new("c.toml"), &no_nice)
            .unwrap_err()
            .to_string();
        assert!(m.contains("line 6") && m.contains("nice"), "{m}");
    }
}
