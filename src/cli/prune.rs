//! `coffer prune [--dry-run] [--repack-threshold PERCENT] [--stale-lock-after DURATION]`:
//! delete what no snapshot reaches, in every region, while backups go on (format-spec §12).
//! Also run by `coffer forget --prune`.

use super::common::{self, human_bytes, print_json};
use super::progress::Bar;
use super::{Global, EXIT_OK};
use coffer::format::wal::WalKind;
use coffer::gc::{prune, PruneOptions, PruneReport, WalPrune};
use coffer::jobs::units::{parse_duration, parse_percent};
use coffer::repo::Repository;
use coffer::wal::WalName;
use coffer::Result;
use std::time::Duration;

#[derive(clap::Args, Clone)]
#[command(
    after_help = "prune marks every blob the snapshots reach, deletes the packs that hold none, \
copies the reachable blobs out of packs whose unused share is at least --repack-threshold, and \
rewrites the index files that named the packs it deletes. It deletes in every region, and \
refuses to start (changing nothing) unless every region answers.\n\n\
PostgreSQL WAL archive (`wal-push`): prune deletes the archived WAL files that no kept base \
backup needs, recording them in a tombstone first so that `sync` never copies them back. It \
keeps, per timeline, every segment from the start of the oldest kept base backup (on that \
timeline or an earlier one) on, every timeline history file, and the backup history files in \
that window: every point in time after the oldest kept base backup stays recoverable. With WAL \
but no base backup (or a base backup that does not say where it starts) nothing is deleted and \
a warning says why; while a backup runs, the WAL deletions wait for the next prune. --dry-run \
lists the files that would go.\n\n\
Backups may run meanwhile, from any machine: prune never waits for them and they never wait for \
prune. Deletions that a running backup might still rely on are stored as a plan and carried out \
by a later prune, after that backup has ended (then prune reports the plan as pending). No \
clocks are compared: a backup that died is recognised when its lock object has not changed for \
--stale-lock-after, measured on this machine between two of its own prune runs.\n\n\
Exit status: 0 done (also with a pending plan), 1 failure or another prune is running (nothing \
that a snapshot needs is ever deleted; a later prune finishes the job), 2 bad arguments."
)]
pub struct Args {
    /// Report what would be freed; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Repack a pack when at least this percentage of its contents is unused (0-100;
    /// 0 repacks every pack with any unused blob, as secure deletion needs).
    #[arg(long, value_name = "PERCENT", default_value = "20", value_parser = parse_percent)]
    pub repack_threshold: f64,
    /// Treat a lock object this observer saw unchanged this long ago as left by a dead
    /// process (e.g. 30m, 2h, 0s). Locks are refreshed every 5 minutes.
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub stale_lock_after: Duration,
}

pub fn options(a: &Args) -> PruneOptions {
    PruneOptions {
        dry_run: a.dry_run,
        repack_threshold: a.repack_threshold,
        stale_after: a.stale_lock_after,
        host: common::hostname(),
    }
}

/// Run a prune with a progress bar.
pub fn execute(g: &Global, repo: &Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let bar = Bar::new(g.quiet, g.json);
    prune(repo, opts, &bar, common::cancel_flag())
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let repo = common::open(g)?;
    let report = execute(g, &repo, &options(a))?;
    if g.json {
        print_json(&serde_json::json!({"report": report, "exit_code": EXIT_OK}));
    } else {
        print_human(&report);
    }
    Ok(EXIT_OK)
}

pub fn print_human(r: &PruneReport) {
    for l in &r.stale_locks_removed {
        println!("removed a stale lock: {l}");
    }
    if r.snapshots > 0 || r.packs_before > 0 || r.packs_unindexed > 0 {
        println!(
            "{} snapshot(s), {} pack(s): {} blob(s) in use, {} unused",
            r.snapshots, r.packs_before, r.blobs_used, r.blobs_unused
        );
        let verb = if r.dry_run {
            "would delete"
        } else {
            "deleting"
        };
        let unindexed = if r.packs_unindexed > 0 {
            format!(
                " and {} pack(s) that no index lists (left by failed writes)",
                r.packs_unindexed
            )
        } else {
            String::new()
        };
        println!(
            "{verb} {} unused pack(s){unindexed}, repacking {} pack(s): frees about {}",
            r.packs_unused,
            r.packs_repacked,
            human_bytes(r.bytes_to_free)
        );
        if r.packs_written > 0 {
            println!(
                "wrote {} new pack(s) and index files, {}",
                r.packs_written,
                human_bytes(r.bytes_written)
            );
        }
    }
    if r.plans_completed > 0 {
        println!(
            "finished {} deletion plan(s): deleted {} pack(s) and {} index file(s), freed {}{}",
            r.plans_completed,
            r.packs_deleted,
            r.index_files_deleted,
            human_bytes(r.bytes_freed),
            if r.packs_rescued > 0 {
                format!(
                    "; kept {} planned pack(s) that new snapshots use",
                    r.packs_rescued
                )
            } else {
                String::new()
            }
        );
    }
    for p in &r.plans_pending {
        if p.waiting_for.is_empty() {
            println!(
                "plan {} ({} packs) is stored, not yet carried out",
                p.plan, p.packs
            );
        } else {
            println!(
                "plan {} ({} packs) waits for: {}; run prune again after they end",
                p.plan,
                p.packs,
                p.waiting_for.join(", ")
            );
        }
    }
    if r.scratch_files > 0 {
        println!(
            "{} {} temporary file(s) of failed writes in tmp/ ({})",
            if r.dry_run { "found" } else { "removed" },
            r.scratch_files,
            human_bytes(r.scratch_bytes)
        );
    }
    print_wal(&r.wal, r.dry_run);
    if r.dry_run {
        println!("dry run: nothing was changed");
    } else if r.plans_completed == 0
        && r.plans_pending.is_empty()
        && r.scratch_files == 0
        && r.wal.deleted == 0
    {
        println!("nothing to delete");
    }
}

/// The WAL archive's share of a prune: counts, the files that go (as runs of names), and
/// why nothing went when that is so.
pub fn print_wal(w: &WalPrune, dry_run: bool) {
    if w.files == 0 && w.unreadable == 0 {
        return;
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    println!(
        "WAL archive: {} file(s), {}: {verb} {} file(s) ({}) that no kept base backup needs, kept {} ({})",
        w.files,
        human_bytes(w.bytes),
        w.deleted,
        human_bytes(w.deleted_bytes),
        w.kept,
        human_bytes(w.kept_bytes)
    );
    if dry_run {
        for (first, last, n) in wal_runs(&w.deleted_names) {
            if n == 1 {
                println!("  would delete {first}");
            } else {
                println!("  would delete {first} … {last} ({n} files)");
            }
        }
    }
    if let Some(why) = &w.held {
        super::term::warn(&format!("WAL archive: {why}"));
    }
    if w.unreadable > 0 {
        super::term::warn(&format!(
            "WAL archive: {} object(s) whose header does not open are kept (run `coffer check`)",
            w.unreadable
        ));
    }
    for f in &w.failed {
        eprintln!(
            "coffer: error: could not delete WAL file {f} (its tombstone is stored: `coffer sync` \
             with the password deletes it where it remains)"
        );
    }
}

/// Names in archive order, as runs of consecutive segments of one timeline: (first, last,
/// how many). Other files are runs of one.
fn wal_runs(names: &[String]) -> Vec<(String, String, usize)> {
    let mut runs: Vec<(String, String, usize)> = Vec::new();
    let next_of = |a: &str, b: &str| {
        let (Some(x), Some(y)) = (WalName::parse(a), WalName::parse(b)) else {
            return false;
        };
        let number = |n: &WalName| (u64::from(n.log) << 32) | u64::from(n.seg);
        x.kind == WalKind::Segment
            && y.kind == WalKind::Segment
            && x.timeline == y.timeline
            // Any segment size: the next name either counts up or starts the next log.
            && (number(&y) == number(&x) + 1 || (y.log == x.log + 1 && y.seg == 0))
    };
    for n in names {
        match runs.last_mut() {
            Some((_, last, count)) if next_of(last, n) => {
                *last = n.clone();
                *count += 1;
            }
            _ => runs.push((n.clone(), n.clone(), 1)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::wal_runs;

    #[test]
    fn consecutive_segments_print_as_one_run() {
        let names: Vec<String> = [
            "000000010000000000000001",
            "000000010000000000000002",
            "0000000100000000000000FF",
            "000000010000000100000000",
            "000000010000000000000003.00000028.backup",
            "000000020000000100000001",
        ]
        .map(String::from)
        .to_vec();
        let runs = wal_runs(&names);
        let counts: Vec<usize> = runs.iter().map(|r| r.2).collect();
        assert_eq!(counts, [2, 2, 1, 1]);
        assert_eq!(runs[1].1, "000000010000000100000000");
    }
}
