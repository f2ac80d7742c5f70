//! A PostgreSQL cluster under point-in-time recovery (`postgres_pitr` in a job): its WAL is
//! archived continuously by `coffer wal-push` (PostgreSQL's `archive_command`); a job run
//! takes its base backups on their own schedule (`base_backup`, by default the job's); a
//! drill restores the cluster to a random moment of the recovery window and proves the
//! server reached it.

mod drill;

use super::shown::{redact_url, sh};
use super::{without_secrets, BackupContext, DrillContext, Protected, Restored, SourceKind};
use crate::backup::BackupOutcome;
use crate::config::Job;
use crate::error::Result;
use crate::jobs::schedule::Schedule;
use crate::postgres::base::DEFAULT_ARCHIVE_WAIT;
use crate::postgres::{backup_base, PgBaseOptions};

/// The cluster, by connection URL, and when to take its base backups.
pub struct PgPitr {
    pub url: String,
    pub base_backup: Option<Schedule>,
}

/// The job's cluster under point-in-time recovery, if it names one.
pub fn of(job: &Job) -> Option<Box<dyn SourceKind>> {
    let p = job.postgres_pitr.as_ref()?;
    Some(Box::new(PgPitr {
        url: p.url.clone(),
        base_backup: p.base_backup.clone(),
    }))
}

impl SourceKind for PgPitr {
    fn kind(&self) -> &'static str {
        crate::postgres::base::SOURCE
    }
    fn label(&self) -> String {
        format!("postgres-pitr:{}", without_secrets(&self.url))
    }
    fn title(&self) -> String {
        format!(
            "PostgreSQL cluster `{}`, to any second (base backups and archived WAL)",
            redact_url(&self.url)
        )
    }
    fn item_kind(&self) -> &'static str {
        "files"
    }
    fn schedule(&self, job: &Job) -> Schedule {
        self.base_backup
            .clone()
            .or_else(|| job.schedule.clone())
            .unwrap_or(Schedule::Never)
    }
    /// Its recovery point is the newest archived WAL, which the job's RPO holds instead
    /// (`jobs::status::judge_wal`); base backups only bound how much WAL a restore replays.
    fn recovers_to_snapshot(&self) -> bool {
        false
    }
    fn protect(&self, job: &str, p: &mut Protected) {
        p.postgres.push((job.to_string(), self.url.clone()));
    }
    fn backup(&self, ctx: &BackupContext) -> Result<BackupOutcome> {
        let pg = PgBaseOptions {
            pg_bin: None,
            archive_wait: DEFAULT_ARCHIVE_WAIT,
        };
        backup_base(
            ctx.repo,
            &self.url,
            &pg,
            &ctx.options,
            ctx.progress,
            ctx.cancel,
        )
    }
    fn drill(&self, ctx: &DrillContext) -> Result<Restored> {
        let target = ctx.scratch_folder("a PostgreSQL cluster (postgres_pitr)")?;
        drill::drill(ctx, target)
    }
    fn runbook(&self, _job: &Job, _tags: &str) -> String {
        let url = sh(&redact_url(&self.url));
        format!(
            "   coffer status    # the WAL archive's newest segment: the latest moment that can be recovered\n   \
             coffer restore @2026-11-20T17:59:30Z --to-postgres-data /var/lib/postgresql/restored --start --port 5433\n   \
             # or `latest` for everything archived; DIR must be new or empty. A target the archive cannot\n   \
             # reach (before the oldest base backup, after its end, past a missing segment) is refused, naming why.\n   \
             # The restored server runs on 127.0.0.1:5433 with archiving off: check it, then stop it\n   \
             # (pg_ctl stop -D DIR), move DIR into place for the real server, start that, and turn archiving\n   \
             # on again (it continues on a new timeline):\n   \
             coffer setup-archiving {url} --apply\n"
        )
    }
}
