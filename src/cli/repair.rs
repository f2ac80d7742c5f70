//! `coffer repair [--dry-run] [--forget-broken] [--stale-lock-after DURATION]`: fix what
//! can be fixed safely, while backups run (format-spec §12.7).

use super::common::{self, human_bytes, print_json};
use super::progress::Bar;
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::browse::format_time;
use coffer::jobs::units::parse_duration;
use coffer::repair::{repair, RepairOptions, RepairReport};
use coffer::Result;
use std::time::Duration;

#[derive(clap::Args)]
#[command(after_help = "repair, in this order:\n\
- removes damaged locks, deletion plans and wait records (bytes that do not match their name): \
one damaged plan stops every backup and prune, one damaged lock or wait record every prune;\n\
- indexes again, from the packs' own headers, every pack that no readable index file lists, \
then removes damaged index files once every pack is indexed elsewhere;\n\
- writes index files again without the packs that are gone, so that backups store that data \
again instead of relying on it;\n\
- lists the snapshots that need data that is gone (how many files each loses, and why); \
--forget-broken removes them. Restore what is left of one first if you need it: restore \
writes every file it can and names the others;\n\
- removes temporary files of failed writes, as prune does.\n\n\
Nothing that a snapshot needs is ever deleted. Backups may run meanwhile; a prune may not \
(repair and prune take the same lock, and the second one exits 1). Every region must answer.\n\n\
Exit status: 0 nothing left broken; 1 something repair cannot fix is left (snapshots that \
need lost data, unless --forget-broken removed them; packs that cannot be read), or a \
failure; 2 bad arguments.")]
pub struct Args {
    /// Report what would be done; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Remove the snapshots that need data that is gone.
    #[arg(long)]
    pub forget_broken: bool,
    /// Treat a lock object this observer saw unchanged this long ago as left by a dead
    /// process (as for prune).
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub stale_lock_after: Duration,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let repo = common::open(g)?;
    let opts = RepairOptions {
        dry_run: a.dry_run,
        forget_broken: a.forget_broken,
        stale_after: a.stale_lock_after,
        host: common::hostname(),
    };
    let bar = Bar::new(g.quiet, g.json);
    let report = repair(&repo, &opts, &bar, common::cancel_flag())?;
    let code = if report.left_broken() {
        EXIT_FAILURE
    } else {
        EXIT_OK
    };
    if g.json {
        print_json(&serde_json::json!({"report": report, "exit_code": code}));
    } else {
        print_human(&report);
    }
    Ok(code)
}

fn print_human(r: &RepairReport) {
    let did = |done: &str, would: &str| if r.dry_run { would } else { done }.to_string();
    for l in &r.stale_locks_removed {
        println!("removed a stale lock: {l}");
    }
    for (what, list) in [
        ("damaged lock", &r.locks_removed),
        ("damaged plan", &r.plans_removed),
        ("wait record", &r.waits_removed),
    ] {
        for line in list {
            println!("{} {what} {line}", did("removed", "would remove"));
        }
    }
    if !r.packs_indexed.is_empty() {
        println!(
            "{} {} pack(s) that no readable index file listed",
            did("indexed", "would index"),
            r.packs_indexed.len()
        );
    }
    for p in &r.packs_unreadable {
        println!("cannot index: {p}");
    }
    for f in &r.index_files_removed {
        println!("{} damaged index file {f}", did("removed", "would remove"));
    }
    for f in &r.index_files_kept {
        println!("kept damaged index file {f}: a pack above cannot be indexed, and it may list it");
    }
    if !r.index_files_rewritten.is_empty() {
        println!(
            "{} {} index file(s) without {} pack(s) that are gone: {}",
            did("rewrote", "would rewrite"),
            r.index_files_rewritten.len(),
            r.packs_missing.len(),
            r.packs_missing.join(", ")
        );
    }
    for b in &r.broken_snapshots {
        let when = if b.time_ns != 0 {
            format!(" {} {}", format_time(b.time_ns), b.host)
        } else {
            String::new()
        };
        println!(
            "broken snapshot {}{when} {}: {} file(s) or folder(s) lost: {}",
            &b.snapshot[..8],
            b.paths.join(" "),
            b.lost,
            b.reason
        );
    }
    if r.snapshots_forgotten > 0 {
        println!(
            "{} {} broken snapshot(s); `coffer prune` deletes the data only they used",
            did("removed", "would remove"),
            r.snapshots_forgotten
        );
    } else if !r.broken_snapshots.is_empty() {
        println!(
            "{} snapshot(s) need data that is gone: restore what is left of them if you need it, then run `coffer repair --forget-broken`",
            r.broken_snapshots.len()
        );
    }
    if r.scratch_files > 0 {
        println!(
            "{} {} temporary file(s) of failed writes in tmp/ ({})",
            did("removed", "found"),
            r.scratch_files,
            human_bytes(r.scratch_bytes)
        );
    }
    if r.dry_run {
        println!("dry run: nothing was changed");
    } else if !r.changed() && !r.left_broken() {
        println!("nothing to repair");
    } else if !r.left_broken() {
        println!("repaired");
    }
}
