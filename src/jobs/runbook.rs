//! The disaster-recovery runbook: a Markdown document, made from the job file (and, when the
//! repository can be read, the last drills), that tells someone on a new machine exactly what
//! to type, in order, to bring every job back. It must work when the repository cannot be
//! reached, so everything but the drill figures comes from the job file alone.
//!
//! It holds no secret: URLs lose their passwords and any query key that is not known to be
//! harmless, and the password itself is only pointed at.

use super::status::{human, local_time, JobStatus};
use crate::config::{ConfigFile, Job};
use crate::sources;
pub use crate::sources::shown::redact_url;
use crate::sources::shown::sh;
use jiff::tz::TimeZone;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the runbook is made from.
pub struct RunbookInput<'a> {
    pub config_path: &'a Path,
    pub config: &'a ConfigFile,
    /// Each region's name and URL, in read order (URLs as `Location` prints them: no secret).
    pub regions: Vec<(String, String)>,
    /// Where the backup machine reads the password from, if from a file.
    pub password_file: Option<PathBuf>,
    /// The jobs' status, or why the repository could not be read.
    pub statuses: Result<Vec<JobStatus>, String>,
    pub now_ns: i64,
    pub tz: TimeZone,
    pub host: String,
}

/// The `--tag` arguments that narrow `coffer snapshots` and `coffer restore latest|@TIME` to
/// the snapshots of `source` in `job` (every job snapshot carries both tags), shell-quoted.
fn tag_args(job: &str, source: &str) -> String {
    format!(
        "--tag {} --tag {}",
        sh(&format!("job:{job}")),
        sh(&format!("source:{source}"))
    )
}

pub fn render(input: &RunbookInput) -> String {
    let mut out = String::new();
    let cfg = input.config;
    let w = &mut out;
    let _ = writeln!(w, "# Disaster-recovery runbook\n");
    let _ = writeln!(
        w,
        "For the jobs in `{}`, written by `coffer runbook` on {} at {}. Keep a copy where a \
         disaster cannot reach it (another site, a printout) and write it again after every \
         change to the job file or after a drill.\n",
        input.config_path.display(),
        input.host,
        local_time(input.now_ns, &input.tz)
    );
    if let Err(why) = &input.statuses {
        let _ = writeln!(
            w,
            "> The repository could not be read when this was written ({why}), so the drill \
             figures (expected RTO) are unknown.\n"
        );
    }
    regions_section(w, input);
    password_section(w, input);
    prepare_section(w, input);
    for (i, job) in cfg.jobs.iter().enumerate() {
        let status = input
            .statuses
            .as_ref()
            .ok()
            .and_then(|s| s.iter().find(|s| s.job == job.name));
        job_section(w, i + 4, job, status, &input.tz);
    }
    let _ = writeln!(w, "## {}. Afterwards\n", cfg.jobs.len() + 4);
    let _ = writeln!(
        w,
        "- Start the applications and check them.\n- Install the job file and the schedule on \
         the new machine (`coffer schedule install`), then `coffer run` and `coffer status`: \
         exit 0 means every job is within its RPO and passed its last check and drill."
    );
    out
}

fn regions_section(w: &mut String, input: &RunbookInput) {
    let _ = writeln!(w, "## 1. Where the backups are\n");
    let n = input.regions.len();
    if n == 0 {
        let _ = writeln!(
            w,
            "The job file names no region; the backup machine is given the repository with \
             `--repo` or `COFFER_REPOSITORY`. Find its URL there.\n"
        );
        return;
    }
    let _ = writeln!(
        w,
        "The repository has {n} region(s), each a full copy: any one that survives is enough.\n"
    );
    let _ = writeln!(w, "| region | URL |\n|---|---|");
    for (name, url) in &input.regions {
        let _ = writeln!(w, "| {name} | `{}` |", redact_url(url));
    }
    let mut creds = Vec::new();
    let has = |p: &str| input.regions.iter().any(|(_, u)| u.starts_with(p));
    if has("s3://") {
        creds.push(
            "S3 regions read `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_REGION`)",
        );
    }
    if has("azblob://") {
        creds.push(
            "Azure regions read `AZURE_STORAGE_ACCOUNT` and `AZURE_STORAGE_KEY` (or `AZURE_STORAGE_CONNECTION_STRING`)",
        );
    }
    if has("sftp://") {
        creds.push(
            "SFTP regions log in with an SSH key (`COFFER_SFTP_KEY` or the user's ssh setup)",
        );
    }
    let _ = writeln!(w);
    if !creds.is_empty() {
        let _ = writeln!(
            w,
            "Storage credentials are not in this document: {}.\n",
            creds.join("; ")
        );
    }
}

fn password_section(w: &mut String, input: &RunbookInput) {
    let _ = writeln!(w, "## 2. The password\n");
    match &input.password_file {
        Some(f) => {
            let _ = writeln!(
                w,
                "The backup machine reads it from `{}`. On a new machine, take it from where it \
                 is kept apart from the systems (password manager, sealed envelope) and put it in \
                 a file only root can read:\n",
                f.display()
            );
            let _ = writeln!(
                w,
                "```sh\ninstall -m 600 /dev/null {0}\n${{EDITOR:-vi}} {0}\nexport COFFER_PASSWORD_FILE={0}\n```\n",
                sh(&f.display().to_string())
            );
        }
        None => {
            let _ = writeln!(
                w,
                "The job file names no `password_file`: the backup machine is given it in \
                 `COFFER_PASSWORD` or `--password-file`. Take it from where it is kept apart from \
                 the systems and `export COFFER_PASSWORD_FILE=FILE`.\n"
            );
        }
    }
    let _ = writeln!(w, "Without the password nothing can be read, by anyone.\n");
}

fn prepare_section(w: &mut String, input: &RunbookInput) {
    let _ = writeln!(
        w,
        "## 3. Prepare the new machine and verify the repository\n"
    );
    let repos: Vec<String> = input
        .regions
        .iter()
        .map(|(n, u)| format!("{n}={}", redact_url(u)))
        .collect();
    let _ = writeln!(
        w,
        "Install coffer (the same version or newer: `coffer --version`) and, for databases, \
         the PostgreSQL client tools (`psql`) of the server's major version. Name the surviving \
         region(s) only:\n"
    );
    let _ = writeln!(w, "```sh");
    if !repos.is_empty() {
        let _ = writeln!(w, "export COFFER_REPOSITORY={}", sh(&repos.join(",")));
    }
    let _ = writeln!(
        w,
        "coffer snapshots        # the repository opens: every snapshot, oldest first"
    );
    let _ = writeln!(
        w,
        "coffer check            # verify: exit 0 = the structure is sound; 1 = damage, see its report"
    );
    let _ = writeln!(w, "```\n");
    let _ = writeln!(
        w,
        "Every command below exits 0 on success and 1 on failure; stop at the first failure. \
         `--json` makes any of them print one JSON document for scripts.\n"
    );
}

fn job_section(w: &mut String, n: usize, job: &Job, status: Option<&JobStatus>, tz: &TimeZone) {
    let _ = writeln!(w, "## {n}. Job `{}`\n", job.name);
    let rpo = match job.rpo {
        Some(r) => {
            let r = human(r.0.as_nanos() as u64);
            format!("RPO {r}: up to {r} of changes may be lost.")
        }
        None => "No RPO is set for this job.".to_string(),
    };
    let _ = writeln!(w, "- Backed up {}. {rpo}", schedules(job));
    let _ = writeln!(w, "- {}", expected_rto(job, status, tz));
    if let Some(s) = status {
        if let Some(t) = s.last_backup_ns {
            let _ = writeln!(
                w,
                "- Newest complete backup when this was written: {}.",
                local_time(t, tz)
            );
        }
    }
    let _ = writeln!(w, "\nRestore each source, in this order:\n");
    for (i, src) in sources::of(job).iter().enumerate() {
        let label = src.label();
        let _ = writeln!(w, "{}. {}", i + 1, src.title());
        let tags = tag_args(&job.name, &label);
        let _ = writeln!(
            w,
            "\n   ```sh\n   coffer snapshots {tags}    # what there is of this source, oldest first"
        );
        let _ = write!(w, "{}", src.runbook(job, &tags));
        let _ = writeln!(w, "   ```\n");
    }
    let _ = writeln!(
        w,
        "To recover the state at or before a time instead (point-in-time), write `@TIME` in place \
         of `latest` and keep the tags, e.g. `coffer restore @2026-11-20T03:00 {} ...` (a time \
         without an offset is in this machine's time zone; `coffer snapshots` with the same tags \
         lists the times).\n",
        tag_args(&job.name, "...")
    );
}

/// When the job's sources are backed up: one schedule, or each source's.
fn schedules(job: &Job) -> String {
    let kinds = sources::of(job);
    let each: Vec<(String, String)> = kinds
        .iter()
        .map(|k| (k.label(), k.schedule(job).to_string()))
        .collect();
    match each.first() {
        Some((_, first)) if each.iter().all(|(_, s)| s == first) => first.clone(),
        _ => each
            .iter()
            .map(|(label, s)| format!("{label} {s}"))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

fn expected_rto(job: &Job, status: Option<&JobStatus>, tz: &TimeZone) -> String {
    let target = job.rto.map_or("no RTO is set".to_string(), |r| {
        format!("RTO target {}", human(r.0.as_nanos() as u64))
    });
    let Some(status) = status else {
        return format!("Expected RTO: unknown (the repository could not be read); {target}.");
    };
    match &status.last_drill {
        Some(d) if d.ok => format!(
            "Expected RTO: {}, measured by the last drill at {}; {target}.",
            human(d.duration_ns),
            local_time(d.time_ns, tz)
        ),
        Some(d) => format!(
            "Expected RTO: unknown: the last drill, at {}, FAILED ({}); {target}.",
            local_time(d.time_ns, tz),
            d.message
        ),
        None => format!("Expected RTO: unknown: no drill has run; {target}."),
    }
}

#[cfg(test)]
#[path = "runbook_tests.rs"]
mod tests;
