//! `coffer check [--read-data] [--read-data-subset PERCENT]`: exit 1 if anything is damaged.

use super::common::{self, print_json};
use super::progress::Bar;
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::check::{check, CheckOptions};
use coffer::sync::{sync, SyncOptions};
use coffer::{Error, Result};

#[derive(clap::Args)]
#[command(
    after_help = "With a PostgreSQL WAL archive (`wal-push`), check also opens every WAL file's \
header; with --read-data it reads every WAL file whole, checks it against its name without the \
key, and opens its body against the header's hash. It follows the chain of segments that \
every kept base backup replays, per timeline and across timeline switches (as the history \
files say): a missing segment is a problem, named with the span of time it cuts out of the \
recovery window, as is a timeline above 1 without its history file. WAL without any base \
backup is a note, not a problem.\n\n\
Exit status: 0 no problem; 1 a problem was found (or regions differ); 2 usage error."
)]
pub struct Args {
    /// Read and verify every byte of every pack.
    #[arg(long)]
    pub read_data: bool,
    /// Read and verify this share of the packs, e.g. 10 or 10% (chosen at random each run,
    /// rounded up: at least one pack).
    #[arg(long, value_name = "PERCENT")]
    pub read_data_subset: Option<String>,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let subset = match &a.read_data_subset {
        Some(s) => {
            let v: f64 = s.trim_end_matches('%').parse().map_err(|_| {
                Error::invalid(format!("--read-data-subset {s:?} is not a percentage"))
            })?;
            if !(0.0..=100.0).contains(&v) {
                return Err(Error::invalid(
                    "--read-data-subset must be between 0 and 100",
                ));
            }
            Some(v)
        }
        None => None,
    };
    let (repo, store) = common::open_store(g)?;
    let opts = CheckOptions {
        read_data: a.read_data || subset.is_some(),
        read_data_subset: subset,
    };
    let bar = Bar::new(g.quiet, g.json);
    // With several regions: the same objects everywhere, and with --read-data every copy's
    // bytes. This comparison only reports; but the check's own reads go through the regions,
    // which rewrite a bad copy they meet with a verified one (counted in `repaired`).
    let regions = match &store.regions {
        Some(_) => Some(sync(
            &store.each_region(),
            SyncOptions {
                verify: a.read_data && subset.is_none(),
                dry_run: true,
            },
            &bar,
        )?),
        None => None,
    };
    let report = check(&repo, &opts, &bar)?;
    let regions_ok = regions.as_ref().map_or(true, |r| r.in_sync(true));
    // Damaged copies that the check's reads already replaced with verified bytes: damage
    // was found (exit 1) even if none is left.
    let repaired = store.regions.as_ref().map(|r| r.repairs());
    let ok = report.ok() && regions_ok && repaired.unwrap_or(0) == 0;
    let code = if ok { EXIT_OK } else { EXIT_FAILURE };
    if g.json {
        print_json(&serde_json::json!({
            "ok": ok, "report": report, "regions": regions, "repaired": repaired,
            "exit_code": code
        }));
        return Ok(code);
    }
    let repaired = repaired.unwrap_or(0);
    // The regions differed only by damaged copies, and this check's reads rewrote them all.
    let all_repaired = regions.as_ref().is_some_and(|r| {
        let damaged: u64 = r.regions.iter().map(|r| r.damaged).sum();
        r.lost.is_empty()
            && repaired >= damaged
            && r.regions
                .iter()
                .all(|r| r.unreachable.is_none() && r.missing == 0)
    });
    if let Some(r) = &regions {
        for region in &r.regions {
            if let Some(why) = &region.unreachable {
                println!("region {}: unreachable: {why}", region.region);
            } else if region.missing + region.damaged > 0 {
                let hint = if !all_repaired {
                    " (run `coffer sync`)"
                } else {
                    ""
                };
                println!(
                    "region {}: {} object(s) missing, {} damaged copies{hint}",
                    region.region, region.missing, region.damaged
                );
            }
        }
        for lost in &r.lost {
            println!("damaged: {lost}: no region holds a good copy");
        }
    }
    if repaired > 0 {
        println!(
            "repaired: {repaired} damaged copies rewritten from a verified copy in another region while reading"
        );
    }
    for p in &report.problems {
        println!("damaged: {}: {}", p.object, p.problem);
    }
    for a in &report.affected {
        println!(
            "  affects snapshot {} path {}: {}",
            &a.snapshot[..8],
            a.path,
            a.reason
        );
    }
    for n in &report.notes {
        println!("note: {n}");
    }
    if let Some(w) = &report.wal {
        print_wal(w, g.quiet);
    }
    if !g.quiet || !ok {
        println!(
            "checked {} snapshots, {} packs ({} read in full), {} blobs: {}",
            report.snapshots,
            report.packs,
            report.packs_read,
            report.blobs,
            if ok {
                "no problems found".to_string()
            } else if report.ok() && all_repaired {
                "damaged copies found in a region, and rewritten from verified copies".to_string()
            } else if report.ok() {
                "regions differ".to_string()
            } else {
                format!(
                    "{} problem(s), {} affected path(s){}",
                    report.problems.len(),
                    report.affected.len(),
                    if report.repairable() {
                        "; run `coffer repair` to fix what can be fixed (`coffer repair --dry-run` shows what it would do)"
                    } else {
                        ""
                    }
                )
            }
        );
    }
    Ok(code)
}

/// One line on the WAL archive: its size, what was read, and the chain's state.
fn print_wal(w: &coffer::wal::verify::WalCheck, quiet: bool) {
    let c = &w.chain;
    if quiet && c.complete() {
        return;
    }
    let timelines: Vec<String> = c.timelines.iter().map(|t| t.to_string()).collect();
    let read = if w.read > 0 {
        format!(", {} read in full", w.read)
    } else {
        String::new()
    };
    let chain = if c.base_backups == 0 {
        "no base backup to check the chain from".to_string()
    } else if c.complete() {
        format!(
            "chain complete from {} base backup(s) to {}",
            c.base_backups,
            c.newest.as_deref().unwrap_or("-")
        )
    } else {
        format!(
            "{} gap(s), {} timeline(s) without history file",
            c.gaps.len(),
            c.missing_history.len()
        )
    };
    println!(
        "WAL archive: {} file(s), {}{read}, timeline(s) {}: {chain}",
        w.files,
        common::human_bytes(w.bytes),
        timelines.join(", ")
    );
}
