//! `coffer backup`: store paths or stdin as a new snapshot.

use super::common::{self, print_json};
use super::progress::Bar;
use super::{Global, EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL};
use coffer::backup::{backup, BackupOptions, Source};
use coffer::browse::{find_snapshot, format_time, parse_time};
use coffer::progress::NoProgress;
use coffer::sync::{sync, SyncOptions};
use coffer::{Error, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("pg_source").args(["postgres", "postgres_base"]))]
pub struct Args {
    /// Files and directories to back up (stored under their absolute paths).
    #[arg(required_unless_present_any = ["stdin", "postgres", "postgres_base", "bucket", "files_from"], conflicts_with = "stdin")]
    pub paths: Vec<PathBuf>,
    /// Back up what is read from standard input, as one file.
    #[arg(long, requires = "stdin_name")]
    pub stdin: bool,
    /// The file name to give the stdin stream in the snapshot.
    #[arg(long, value_name = "NAME")]
    pub stdin_name: Option<String>,
    /// Tag the snapshot (repeatable).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Host name to record (default: this machine's).
    #[arg(long, value_name = "H")]
    pub host: Option<String>,
    /// Skip files matching GLOB (repeatable); a pattern with '/' matches the whole path.
    #[arg(long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    #[command(flatten)]
    pub filters: super::filters::Filters,
    /// The snapshot's time, e.g. 2026-11-20T03:00 (for imports and tests; default now).
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
    /// Compare against this snapshot instead of the latest with the same host and paths.
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// Back up a PostgreSQL database with its pg_dump (plain SQL streamed into the store, one
    /// snapshot per database; exits 1 and saves nothing if pg_dump fails), e.g.
    /// postgresql://backup:PASSWORD@db:5432/app.
    #[arg(long, value_name = "URL", conflicts_with_all = ["paths", "stdin", "excludes", "parent"])]
    pub postgres: Option<String>,
    /// With --postgres: also store roles and tablespaces (pg_dumpall --globals-only) as globals.sql.
    #[arg(long, requires = "postgres")]
    pub postgres_globals: bool,
    /// With --postgres or --postgres-base: folder holding pg_dump, pg_dumpall and psql
    /// (default: the oldest version at least as new as the server in
    /// /usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or PATH).
    #[arg(long, value_name = "DIR", requires = "pg_source")]
    pub pg_bin: Option<PathBuf>,
    /// Take a physical base backup of the PostgreSQL cluster at URL, for point-in-time
    /// recovery with the archived WAL. Run it on the database host, as the data directory's
    /// owner or root: coffer reads the data directory itself. The server must archive its
    /// WAL (see `coffer setup-archiving`). Page checksums are verified where the cluster has
    /// them; pages that fail are reported and the command exits 1 (the snapshot is saved).
    #[arg(long, value_name = "URL", conflicts_with_all = ["paths", "stdin", "postgres", "excludes", "parent", "bucket"])]
    pub postgres_base: Option<String>,
    /// With --postgres-base: how long to wait for PostgreSQL to archive the WAL the backup
    /// needs (pg_backup_stop), e.g. 90s or 10m (default 5m); after that the backup fails and
    /// saves nothing.
    #[arg(long, value_name = "DURATION", value_parser = parse_wait, requires = "postgres_base")]
    pub wait_for_archive: Option<std::time::Duration>,
    /// Back up every object below a bucket URL (s3://BUCKET/PREFIX?endpoint=..&region=..,
    /// azblob://.. or a folder) with its content type and user metadata; objects whose ETag
    /// and size are unchanged since the last bucket snapshot are not downloaded.
    #[arg(long, value_name = "URL", conflicts_with_all = ["paths", "stdin", "postgres", "excludes", "parent"])]
    pub bucket: Option<String>,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let (repo, store) = common::open_store(g)?;
    let parent = match &a.parent {
        Some(p) => Some(find_snapshot(&repo, p)?.0),
        None => None,
    };
    let opts = BackupOptions {
        tags: a.tags.clone(),
        host: a.host.clone().unwrap_or_else(common::hostname),
        user: common::username(),
        time_ns: a.time.as_deref().map(parse_time).transpose()?,
        excludes: vec![],
        exclude: a.filters.exclude_options(&a.excludes)?,
        parent,
        // Tests of stale locks cannot wait five minutes for a refresh.
        lock_refresh: std::env::var("COFFER_TEST_LOCK_REFRESH_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_secs),
    };
    let source = if a.stdin {
        let name = a
            .stdin_name
            .clone()
            .ok_or_else(|| Error::invalid("--stdin needs --stdin-name NAME"))?;
        Source::Stream {
            name,
            reader: Box::new(std::io::stdin()),
        }
    } else if a.postgres.is_none() && a.postgres_base.is_none() && a.bucket.is_none() {
        Source::Paths(a.filters.paths(&a.paths)?)
    } else {
        // Not used: the database or bucket is the source.
        Source::Paths(vec![])
    };
    let bar = Bar::new(g.quiet, g.json);
    let out = match &a.postgres {
        Some(url) => super::pg::backup(&repo, url, a, &opts, &bar)?,
        None if a.postgres_base.is_some() => {
            let url = a.postgres_base.as_deref().unwrap_or_default();
            super::pgbase::backup(&repo, url, a, &opts, &bar)?
        }
        None if a.bucket.is_some() => super::bucket::backup(&repo, a, &opts, &bar)?,
        None => backup(&repo, source, &opts, &bar, common::cancel_flag())?,
    };
    let s = &out.snapshot.summary;
    let mut behind = store.behind();
    let written = behind.len();
    // Writes that reached a region now do not make it whole if it lacked objects before
    // (it was down in an earlier run, or lost its data): the new snapshot there may refer to
    // packs it does not hold. Compare the listings (no data is read) of the regions that
    // took this run's writes (one that failed them may hang again) to say so.
    let took_writes: Vec<_> = store
        .each_region()
        .into_iter()
        .filter(|(name, _)| !behind.iter().any(|(b, _)| b == name))
        .collect();
    if store.regions.is_some() && took_writes.len() > 1 {
        let opts = SyncOptions {
            verify: false,
            dry_run: true,
        };
        match sync(&took_writes, opts, &NoProgress) {
            Ok(report) => {
                for r in report.regions {
                    if let Some(why) = r.unreachable {
                        behind.push((r.region, format!("cannot be listed: {why}")));
                    } else if r.missing > 0 {
                        let why = format!("lacks {} objects that other regions hold", r.missing);
                        behind.push((r.region, why));
                    }
                }
            }
            Err(e) => eprintln!("coffer: warning: the regions could not be compared: {e}"),
        }
    }
    let bad_pages = super::pgbase::checksum_failures(&out.snapshot);
    let code = if bad_pages > 0 {
        EXIT_FAILURE
    } else if s.read_errors > 0 {
        EXIT_PARTIAL
    } else {
        EXIT_OK
    };
    if g.json {
        print_json(&serde_json::json!({
            "snapshot": out.id.to_hex(),
            "time": coffer::browse::format_time_rfc3339(out.snapshot.time_ns),
            "parent": out.snapshot.parent.map(|p| p.to_hex()),
            "summary": s,
            "postgres": super::pg::summary_json(&out.snapshot),
            "postgres_base": super::pgbase::summary_json(&out.snapshot),
            "regions_behind": behind
                .iter()
                .map(|(r, e)| serde_json::json!({"region": r, "error": e}))
                .collect::<Vec<_>>(),
            "exit_code": code,
        }));
    } else if !g.quiet {
        println!(
            "files: {} new, {} changed, {} unmodified; {} directories",
            s.files_new, s.files_changed, s.files_unmodified, s.dirs
        );
        println!(
            "read {} of {}; added {} ({} stored) in {} packs",
            common::human_bytes(s.bytes_read),
            common::human_bytes(s.total_bytes),
            common::human_bytes(s.bytes_added_raw),
            common::human_bytes(s.bytes_added_stored),
            s.packs_added
        );
        println!(
            "snapshot {} saved at {}",
            out.id.short(),
            format_time(out.snapshot.time_ns)
        );
        super::pg::print_summary(&out.snapshot);
        super::pgbase::print_summary(&out.snapshot);
    }
    for (i, (region, why)) in behind.iter().enumerate() {
        if i < written {
            eprintln!(
                "coffer: warning: region {region} did not take every object of this snapshot; \
                 it is behind until `coffer sync` catches it up"
            );
        } else {
            eprintln!(
                "coffer: warning: region {region} is behind ({why}); \
                 `coffer sync` will catch it up"
            );
        }
    }
    if bad_pages > 0 {
        super::term::error(&format!(
            "{bad_pages} page(s) failed checksum verification (listed above): the cluster's \
             data is damaged there, and so is this base backup (snapshot {} was saved); \
             restore those tables from an older backup or a dump, or check the storage",
            out.id.short()
        ));
    }
    if s.read_errors > 0 {
        eprintln!(
            "coffer: warning: {} file(s) or folder(s) could not be read and are missing from the snapshot",
            s.read_errors
        );
    }
    Ok(code)
}

/// `--wait-for-archive`: `90s`, `5m`, `1h`.
fn parse_wait(s: &str) -> std::result::Result<std::time::Duration, String> {
    coffer::jobs::units::parse_duration(s)
}
