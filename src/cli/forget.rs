//! `coffer forget`: apply a retention policy (restic's rules, see `coffer::retention`) and
//! delete the snapshot objects it removes. The data they referred to stays until prune.

use super::common::{self, print_json};
use super::prune;
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::backend::{ObjectKind, ObjectName};
use coffer::browse::{format_time, format_time_rfc3339};
use coffer::gc::PruneOptions;
use coffer::retention::{self, Candidate, Policy, Within, UNLIMITED};
use coffer::{Error, Result};
use std::collections::HashMap;

const DATA_NOTE: &str = "forget deletes snapshot objects only: the data they referred to stays \
in the repository until `coffer prune` (or `forget --prune`)";

#[derive(clap::Args)]
#[command(
    after_help = "The rules are restic's. Snapshots are grouped by host and paths and each group is evaluated on its own, newest first. \
--keep-last N keeps the N newest; --keep-hourly/daily/weekly/monthly/yearly N keep the newest \
snapshot of each of the N newest hours, days, ISO weeks, months or years that have one (in the \
local time zone), and the group's oldest snapshot too while a count is left; --keep-within \
DURATION keeps every snapshot newer than DURATION before the group's newest one; --keep-tag T \
keeps every snapshot tagged T. A snapshot is kept if any rule keeps it.\n\n\
A policy with no rule, or one that would remove every snapshot of a group, is refused unless \
--force is given.\n\n\
forget deletes snapshot objects only: the data they referred to stays in the repository until \
prune. --prune runs `coffer prune` (with its defaults) right after; see `coffer prune --help`."
)]
pub struct Args {
    /// Keep the N newest snapshots ('unlimited' or -1: all).
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours that have one.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days that have one.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks that have one.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months that have one.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years that have one.
    #[arg(long, value_name = "N", value_parser = parse_count, allow_negative_numbers = true)]
    pub keep_yearly: Option<u32>,
    /// Keep snapshots newer than DURATION (e.g. 30d, 1y6m, 2y5m7d3h) before the group's
    /// newest snapshot. Units as in restic: y years, m MONTHS, d days, h hours (elsewhere
    /// in coffer, m is minutes).
    #[arg(long, value_name = "DURATION", value_parser = parse_within)]
    pub keep_within: Option<Within>,
    /// Keep every snapshot with this tag (repeatable: any of the tags).
    #[arg(long = "keep-tag", value_name = "T", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub keep_tags: Vec<String>,
    /// Run `coffer prune` right after, to delete the data no snapshot uses any more.
    #[arg(long)]
    pub prune: bool,
    #[command(flatten)]
    pub filter: super::select::Filter,
    /// Show what would be kept and removed, and why; change nothing.
    #[arg(long, short = 'n')]
    pub dry_run: bool,
    /// Allow a policy that keeps nothing, or that removes every snapshot of a group.
    #[arg(long)]
    pub force: bool,
}

fn parse_count(s: &str) -> std::result::Result<u32, String> {
    match s {
        "unlimited" | "-1" => Ok(UNLIMITED),
        _ => s
            .parse::<u32>()
            .map_err(|_| "expected a number of snapshots, or 'unlimited'".to_string()),
    }
}

fn parse_within(s: &str) -> std::result::Result<Within, String> {
    Within::parse(s).map_err(|e| e.to_string())
}

fn count_json(c: Option<u32>) -> serde_json::Value {
    match c {
        None | Some(0) => serde_json::Value::Null,
        Some(UNLIMITED) => "unlimited".into(),
        Some(n) => n.into(),
    }
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let policy = Policy {
        keep_last: a.keep_last,
        keep_hourly: a.keep_hourly,
        keep_daily: a.keep_daily,
        keep_weekly: a.keep_weekly,
        keep_monthly: a.keep_monthly,
        keep_yearly: a.keep_yearly,
        keep_within: a.keep_within,
        keep_tags: a.keep_tags.clone(),
    };
    if policy.is_empty() && !a.force {
        return Err(Error::invalid(
            "no retention policy given, so every snapshot would be removed: give at least one \
             --keep-* option with a value above 0 (or --force to remove every snapshot)",
        ));
    }
    let repo = common::open(g)?;
    // A damaged snapshot object is left alone (its host and paths are unknown) and reported.
    let (mut snaps, damaged) = repo.readable_snapshots()?;
    for (id, e) in &damaged {
        eprintln!(
            "coffer: warning: snapshot {} is damaged and was left in place: {e} (run `coffer check`)",
            id.short()
        );
    }
    // --tag, --host, --path: the policy applies to these snapshots only; others stay.
    let filter = a.filter.snapshots();
    snaps.retain(|(_, s)| filter.matches(s));
    let candidates: Vec<Candidate> = snaps.iter().map(|(id, s)| Candidate::new(*id, s)).collect();
    let now = repo.clock().now();
    let tz = jiff::tz::TimeZone::system();
    let plan = retention::plan(&candidates, &policy, now, &tz, a.force).map_err(|e| {
        if policy.is_empty() {
            e
        } else {
            Error::invalid(format!("{}: use --force to allow it", e.message()))
        }
    })?;

    let mut failed: Vec<(String, String)> = Vec::new();
    let mut deleted = 0usize;
    let doomed: Vec<ObjectName> = plan
        .removed()
        .map(|d| ObjectName::new(ObjectKind::Snapshot, d.id.0))
        .collect();
    if !a.dry_run && !doomed.is_empty() {
        // One tombstone for the run, stored before anything is deleted (format-spec §5.12).
        for (name, result) in repo.bury(&doomed)? {
            match result {
                Ok(()) => deleted += 1,
                Err(e) => failed.push((hex::encode(name.hash), e.to_string())),
            }
        }
    }
    let mut code = if failed.is_empty() && damaged.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    };
    // Prune only after a forget that fully worked: a snapshot that could not be deleted
    // would keep its data anyway, and the user should see that first.
    let pruned = if a.prune && !a.dry_run && code == EXIT_OK {
        let opts = PruneOptions {
            host: common::hostname(),
            ..PruneOptions::default()
        };
        match prune::execute(g, &repo, &opts) {
            Ok(r) => Some(Ok(r)),
            Err(e) => {
                code = EXIT_FAILURE;
                Some(Err(e))
            }
        }
    } else {
        None
    };
    // A dry run with --prune: what the prune would do with the WAL archive once these
    // snapshots are gone (base backups among them free WAL).
    let wal_preview = if a.prune && a.dry_run {
        let forgotten = plan.removed().map(|d| d.id).collect();
        Some(coffer::gc::preview_wal(&repo, &forgotten)?)
    } else {
        None
    };
    let kept = plan.kept().count();
    let removed = plan.removed().count();
    let by_id: HashMap<_, _> = snaps.iter().map(|(id, s)| (*id, s)).collect();

    if g.json {
        let groups: Vec<_> = plan
            .groups
            .iter()
            .map(|grp| {
                serde_json::json!({
                    "host": grp.host,
                    "paths": grp.paths.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
                    "snapshots": grp.snapshots.iter().map(|d| serde_json::json!({
                        "id": d.id.to_hex(),
                        "short_id": d.id.short(),
                        "time": format_time_rfc3339(d.time_ns),
                        "time_ns": d.time_ns,
                        "tags": by_id.get(&d.id).map(|s| s.tags.clone()).unwrap_or_default(),
                        "keep": d.keep,
                        "reasons": d.reasons,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&serde_json::json!({
            "dry_run": a.dry_run,
            "policy": {
                "keep_last": count_json(policy.keep_last),
                "keep_hourly": count_json(policy.keep_hourly),
                "keep_daily": count_json(policy.keep_daily),
                "keep_weekly": count_json(policy.keep_weekly),
                "keep_monthly": count_json(policy.keep_monthly),
                "keep_yearly": count_json(policy.keep_yearly),
                "keep_within": policy.keep_within.filter(|w| !w.is_zero()).map(|w| w.to_string()),
                "keep_tags": policy.keep_tags,
                "description": policy.describe(),
            },
            "groups": groups,
            "kept": kept,
            "removed": removed,
            "deleted": deleted,
            "failed": failed.iter().map(|(id, e)| serde_json::json!({"id": id, "error": e})).collect::<Vec<_>>(),
            "damaged_left": damaged.iter().map(|(id, _)| id.to_hex()).collect::<Vec<_>>(),
            "note": DATA_NOTE,
            "prune": match &pruned {
                Some(Ok(r)) => serde_json::to_value(r).unwrap_or_default(),
                Some(Err(e)) => serde_json::json!({"error": e.message()}),
                None => serde_json::Value::Null,
            },
            "wal_preview": wal_preview,
            "exit_code": code,
        }));
    } else {
        if !g.quiet {
            println!("policy: {}", policy.describe());
            for grp in &plan.groups {
                let paths: Vec<_> = grp
                    .paths
                    .iter()
                    .map(|p| String::from_utf8_lossy(p))
                    .collect();
                let k = grp.snapshots.iter().filter(|d| d.keep).count();
                println!(
                    "\nhost {}, paths {}: keep {k}, remove {}",
                    grp.host,
                    paths.join(" "),
                    grp.snapshots.len() - k
                );
                for d in &grp.snapshots {
                    let tags = by_id
                        .get(&d.id)
                        .map(|s| s.tags.join(","))
                        .unwrap_or_default();
                    let line = format!(
                        "  {:<6}  {}  {}  {:<12}  {}",
                        if d.keep { "keep" } else { "remove" },
                        d.id.short(),
                        format_time(d.time_ns),
                        tags,
                        d.reasons.join(", ")
                    );
                    println!("{}", line.trim_end());
                }
            }
            println!("");
        }
        for (id, e) in &failed {
            eprintln!(
                "coffer: error: could not delete snapshot {id}: {e} (its tombstone is stored: \
                 `coffer sync` with the password deletes it where it remains)"
            );
        }
        if let Some(w) = &wal_preview {
            prune::print_wal(w, true);
        }
        if a.dry_run {
            println!(
                "dry run: would remove {removed} snapshot(s) and keep {kept}; nothing was changed"
            );
        } else if !g.quiet || !failed.is_empty() {
            println!(
                "removed {deleted} of {removed} snapshot(s), kept {kept}{}",
                if failed.is_empty() {
                    String::new()
                } else {
                    format!("; {} could not be deleted", failed.len())
                }
            );
        }
        match &pruned {
            Some(Ok(r)) if !g.quiet => prune::print_human(r),
            Some(Err(e)) => eprintln!("coffer: error: prune failed: {e}"),
            _ if !g.quiet && removed > 0 && !a.prune => println!("{DATA_NOTE}"),
            _ => {}
        }
    }
    Ok(code)
}
