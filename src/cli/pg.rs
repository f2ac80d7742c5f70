//! The PostgreSQL parts of `backup --postgres URL` and `restore --to-postgres URL`.

use super::common::{self, human_bytes, print_json};
use super::progress::Bar;
use super::{backup, restore, Global, EXIT_FAILURE, EXIT_OK};
use coffer::backup::{BackupOptions, BackupOutcome};
use coffer::browse::find_snapshot_tagged;
use coffer::format::snapshot::Snapshot;
use coffer::postgres::{
    backup_database, info, recorded_row_counts, restore_database, PgBackupOptions,
    PgRestoreOptions, SOURCE,
};
use coffer::repo::Repository;
use coffer::Result;

pub fn backup(
    repo: &Repository,
    url: &str,
    a: &backup::Args,
    opts: &BackupOptions,
    bar: &Bar,
) -> Result<BackupOutcome> {
    let pg = PgBackupOptions {
        globals: a.postgres_globals,
        pg_bin: a.pg_bin.clone(),
    };
    backup_database(repo, url, &pg, opts, bar, common::cancel_flag())
}

/// What a PostgreSQL snapshot recorded, for `backup --json`; null for other snapshots.
pub fn summary_json(s: &Snapshot) -> serde_json::Value {
    if s.source != SOURCE {
        return serde_json::Value::Null;
    }
    let get = |k: &str| info(s, k);
    let number = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok());
    serde_json::json!({
        "database": get("database"),
        "server": get("server"),
        "server_version": get("server-version"),
        "pg_dump_version": get("pg-dump-version"),
        "dump_file": get("dump-file"),
        "globals_file": get("globals-file"),
        "tables": number("tables"),
        "rows": number("rows"),
        "row_counts": recorded_row_counts(s)
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
    })
}

/// One line about a PostgreSQL snapshot, after the usual backup summary.
pub fn print_summary(s: &Snapshot) {
    if s.source != SOURCE {
        return;
    }
    let get = |k: &str| info(s, k).unwrap_or("?");
    println!(
        "database {} on {} (PostgreSQL {}): {} tables, {} rows; dumped by pg_dump {}{}",
        get("database"),
        get("server"),
        get("server-version"),
        get("tables"),
        get("rows"),
        get("pg-dump-version"),
        if info(s, "globals-file").is_some() {
            ", with roles and tablespaces"
        } else {
            ""
        }
    );
}

pub fn restore(g: &Global, a: &restore::Args, url: &str) -> Result<i32> {
    let repo = common::open(g)?;
    let (id, snap) = find_snapshot_tagged(&repo, &a.snapshot, &a.tags)?;
    let opts = PgRestoreOptions {
        force: a.force,
        globals: a.globals,
        pg_bin: a.pg_bin.clone(),
        drill_scratch: false,
    };
    let bar = Bar::new(g.quiet, g.json);
    let report = restore_database(&repo, &snap, url, &opts, &bar, common::cancel_flag())?;
    let code = if report.mismatches.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    };
    if g.json {
        let mut v = serde_json::to_value(&report).expect("JSON of plain data");
        v["snapshot"] = id.to_hex().into();
        v["exit_code"] = code.into();
        print_json(&v);
    } else if !g.quiet {
        let how = match (report.created, report.replaced) {
            (true, _) => "created",
            (_, true) => "dropped and created again",
            _ => "was empty",
        };
        println!(
            "restored {} ({} of SQL{}) into database {} ({how}) in {:.1}s",
            id.short(),
            human_bytes(report.bytes),
            if report.globals {
                ", after roles and tablespaces"
            } else {
                ""
            },
            report.database,
            report.seconds
        );
        let recorded = report.tables.iter().filter(|t| t.expected.is_some());
        println!(
            "{} tables, {} rows; row counts match the snapshot for {} of {} recorded tables",
            report.tables.len(),
            report.rows,
            recorded.clone().filter(|t| t.ok()).count(),
            recorded.count()
        );
        if !report.counts_recorded {
            eprintln!("coffer: warning: the snapshot has no per-table row counts to compare");
        }
    }
    for t in &report.mismatches {
        let actual = t.actual.map_or("the table is missing".to_string(), |n| {
            format!("{n} restored")
        });
        eprintln!(
            "coffer: error: table {}: the snapshot recorded {} rows, {actual}",
            t.table,
            t.expected.unwrap_or(0)
        );
    }
    Ok(code)
}
