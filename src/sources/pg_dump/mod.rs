//! PostgreSQL databases by `pg_dump` (`postgres` in a job): one snapshot per database, its
//! dump with the row count of every table, restored into a database by `psql`.

mod drill;

use super::shown::{redact_url, sh};
use super::{without_secrets, BackupContext, DrillContext, Protected, Restored, SourceKind};
use crate::backup::BackupOutcome;
use crate::config::Job;
use crate::error::Result;
use crate::postgres::{backup_database, PgBackupOptions};

/// One database, by connection URL.
pub struct PgDump(pub String);

/// The job's databases.
pub fn of(job: &Job) -> Vec<Box<dyn SourceKind>> {
    job.postgres
        .iter()
        .map(|url| Box::new(PgDump(url.clone())) as Box<dyn SourceKind>)
        .collect()
}

impl SourceKind for PgDump {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn label(&self) -> String {
        format!("postgres:{}", without_secrets(&self.0))
    }
    fn title(&self) -> String {
        format!("PostgreSQL database `{}`", redact_url(&self.0))
    }
    fn item_kind(&self) -> &'static str {
        "tables"
    }
    fn protect(&self, job: &str, p: &mut Protected) {
        p.postgres.push((job.to_string(), self.0.clone()));
    }
    fn backup(&self, ctx: &BackupContext) -> Result<BackupOutcome> {
        let pg = PgBackupOptions {
            globals: ctx.job.postgres_globals,
            ..Default::default()
        };
        backup_database(
            ctx.repo,
            &self.0,
            &pg,
            &ctx.options,
            ctx.progress,
            ctx.cancel,
        )
    }
    fn drill(&self, ctx: &DrillContext) -> Result<Restored> {
        let scratch =
            ctx.section.postgres.as_deref().ok_or_else(|| {
                ctx.missing("PostgreSQL", "a scratch database (postgres = \"URL\")")
            })?;
        let (_, snap) = ctx.newest_or_missing(self)?;
        drill::drill(ctx, &self.0, snap, scratch)
    }
    fn runbook(&self, job: &Job, tags: &str) -> String {
        format!(
            "   coffer restore latest {tags} --to-postgres {}{}\n   \
             # the password from PGPASSWORD or ~/.pgpass; creates the database if missing, refuses one\n   \
             # that holds tables (--force replaces it), and checks every table's row count\n",
            sh(&redact_url(&self.0)),
            if job.postgres_globals { " --globals" } else { "" }
        )
    }
}
