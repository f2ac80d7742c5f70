//! `coffer sync [--verify] [--dry-run]`: bring every region up to date. Needs no password:
//! objects are checked against their names, which needs no key. With a password given
//! (never prompted for), tombstones are authenticated and what they name is deleted where a
//! region still holds it; without one, it is only not copied (format-spec §5.12).

use super::common::{self, print_json};
use super::progress::Bar;
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::backend::Backend;
use coffer::repo::{OpenOptions, Repository};
use coffer::sync::{sync_with_keys, SyncOptions};
use coffer::{Error, Result};
use std::sync::Arc;

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

/// Was a password given without asking for one (`--password-file`, `COFFER_PASSWORD_FILE`,
/// `COFFER_PASSWORD`, or the job file's `password_file`)? `sync` runs unattended without one.
fn password_given(g: &Global) -> bool {
    g.password_file.is_some() || common::password_in_environment()
}

/// The repository (for its keys), when a password is given; a password that opens nothing
/// is an error rather than a silent fall back to a sync that deletes nothing. Each region is
/// tried on its own (every region holds the same master key), without a cache: through all
/// regions at once, the key file that opens might be one that only a region that missed its
/// deletion holds, and reading it would call that region behind.
fn keyed_repository(
    g: &Global,
    regions: &[(String, Arc<dyn Backend>)],
) -> Result<Option<Repository>> {
    if !password_given(g) {
        return Ok(None);
    }
    let password = common::password(g, "Repository password: ")?;
    let mut first_error = None;
    for (name, backend) in regions {
        let opts = OpenOptions {
            cache_dir: None,
            ..common::open_options(g)
        };
        match Repository::open(backend.clone(), password.as_bytes(), opts) {
            Ok(repo) => return Ok(Some(repo)),
            Err(e) => {
                first_error.get_or_insert(e.context(format!("region {name}")));
            }
        }
    }
    let e = first_error.expect("a repository has at least one region");
    Err(Error::new(
        e.kind(),
        format!(
            "{e} (sync uses a password it is given to act on tombstones; unset \
             COFFER_PASSWORD and COFFER_PASSWORD_FILE to sync without it)"
        ),
    ))
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let store = common::store(g)?;
    let regions = store.each_region();
    let repo = keyed_repository(g, &regions)?;
    let opts = SyncOptions {
        verify: a.verify,
        dry_run: a.dry_run,
    };
    let bar = Bar::new(g.quiet, g.json);
    let report = sync_with_keys(&regions, opts, repo.as_ref().map(|r| r.keys()), &bar)?;
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
        let buried = match (r.buried, report.keyed, a.dry_run) {
            (0, _, _) => String::new(),
            (n, true, false) => {
                format!("; {n} deleted elsewhere, {} deleted here", r.buried_deleted)
            }
            (n, true, true) => format!("; {n} deleted elsewhere, would delete here"),
            (n, false, _) => format!("; {n} deleted elsewhere, left here"),
        };
        println!(
            "region {}: {} objects; {} missing, {} damaged; {verb} {} ({}){buried}",
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
    for bad in &report.bad_tombstones {
        println!(
            "damaged tombstone: {bad}; it deletes nothing and was not copied (planted or \
             damaged: delete it by hand)"
        );
    }
    let left = report.buried_left();
    if left > 0 && !report.keyed {
        println!(
            "{left} object(s) that tombstones name were left in place and not copied: give the \
             password (COFFER_PASSWORD or --password-file) to delete them"
        );
    }
    if !g.quiet || !ok {
        println!(
            "{} objects compared across {} regions, {} copies verified: {}",
            report.objects,
            report.regions.len(),
            report.copies_verified,
            verdict(ok, a.dry_run, &report.regions)
        );
    }
    Ok(code)
}

/// The last line's verdict. Advice must be right: `sync` cannot copy into a region it cannot
/// reach, so an unreachable region is named as such, not as one `sync` would fix.
fn verdict(ok: bool, dry_run: bool, regions: &[coffer::sync::RegionReport]) -> String {
    let unreachable: Vec<&str> = regions
        .iter()
        .filter(|r| r.unreachable.is_some())
        .map(|r| r.region.as_str())
        .collect();
    if ok {
        "regions are in sync".to_string()
    } else if !unreachable.is_empty() {
        format!(
            "region(s) {} could not be reached: check the address, the credentials and the \
             network, then run `coffer sync{}` again",
            unreachable.join(", "),
            if dry_run { " --dry-run" } else { "" }
        )
    } else if dry_run {
        "regions differ (run `coffer sync`)".to_string()
    } else {
        "some regions could not be brought up to date".to_string()
    }
}
