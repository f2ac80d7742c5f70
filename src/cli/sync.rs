//! `coffer sync [--verify] [--dry-run]`: bring every region up to date. Needs no password:
//! objects are checked against their names, which needs no key.

use super::common::{self, print_json};
use super::progress::Bar;
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::sync::{sync, SyncOptions};
use coffer::Result;

#[derive(clap::Args)]
pub struct Args {
    /// Read every copy in every region and replace the ones that fail their name check
    /// (otherwise only missing objects, and copies whose size disagrees, are dealt with).
    #[arg(long)]
    pub verify: bool,
    /// Report what is missing or damaged; copy nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let store = common::store(g)?;
    let regions = store.each_region();
    let opts = SyncOptions {
        verify: a.verify,
        dry_run: a.dry_run,
    };
    let bar = Bar::new(g.quiet, g.json);
    let report = sync(&regions, opts, &bar)?;
    let ok = report.in_sync(a.dry_run);
    let code = if ok { EXIT_OK } else { EXIT_FAILURE };
    if g.json {
        print_json(&serde_json::json!({"ok": ok, "report": report, "exit_code": code}));
        return Ok(code);
    }
    for r in &report.regions {
        if let Some(why) = &r.unreachable {
            println!("region {}: unreachable: {why}", r.region);
            continue;
        }
        let verb = if a.dry_run { "would copy" } else { "copied" };
        let todo = r.missing + r.damaged;
        println!(
            "region {}: {} objects; {} missing, {} damaged; {verb} {} ({})",
            r.region,
            r.objects,
            r.missing,
            r.damaged,
            if a.dry_run { todo } else { r.copied },
            common::human_bytes(if a.dry_run {
                r.bytes_to_copy
            } else {
                r.bytes_copied
            }),
        );
        for f in &r.failed {
            println!("  failed: {f}");
        }
    }
    for lost in &report.lost {
        println!("lost: {lost}: no region holds a good copy");
    }
    if !g.quiet || !ok {
        println!(
            "{} objects compared across {} regions, {} copies verified: {}",
            report.objects,
            report.regions.len(),
            report.copies_verified,
            if ok {
                "regions are in sync"
            } else if a.dry_run {
                "regions differ (run `coffer sync`)"
            } else {
                "some regions could not be brought up to date"
            }
        );
    }
    Ok(code)
}
