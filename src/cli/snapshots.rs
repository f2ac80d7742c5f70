//! `coffer snapshots`: list snapshots, oldest first.

use super::common::{self, human_bytes, print_json};
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::browse::{format_time, format_time_rfc3339};
use coffer::format::snapshot::Snapshot;
use coffer::id::SnapshotId;
use coffer::Result;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub filter: super::select::Filter,
    /// Only the N newest snapshots of each host and set of paths.
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// List in groups of the same host, paths and/or tags, e.g. host,paths (restic's
    /// --group-by).
    #[arg(long, value_name = "KEYS", value_delimiter = ',', value_parser = ["host", "paths", "tags"])]
    pub group_by: Vec<String>,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let repo = common::open(g)?;
    // Damaged snapshot objects are reported, and the others still listed.
    let (mut snaps, damaged) = repo.readable_snapshots()?;
    let filter = a.filter.snapshots();
    snaps.retain(|(_, s)| filter.matches(s));
    if let Some(n) = a.latest {
        snaps = coffer::browse::latest_per_group(snaps, n);
    }
    for (_, e) in &damaged {
        eprintln!("coffer: warning: skipped a damaged snapshot: {e} (run `coffer check`)");
    }
    let code = if damaged.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    };
    if g.json && !a.group_by.is_empty() {
        let groups: Vec<_> = groups(&snaps, &a.group_by)
            .into_iter()
            .map(|(key, members)| {
                serde_json::json!({
                    "group_key": key,
                    "snapshots": members.iter().map(|(id, _)| id.to_hex()).collect::<Vec<_>>(),
                })
            })
            .collect();
        print_json(&groups);
        return Ok(code);
    }
    if g.json {
        let list: Vec<_> = snaps
            .iter()
            .map(|(id, s)| {
                serde_json::json!({
                    "id": id.to_hex(),
                    "short_id": id.short(),
                    "time": format_time_rfc3339(s.time_ns),
                    "time_ns": s.time_ns,
                    "host": s.host,
                    "user": s.user,
                    "tags": s.tags,
                    "paths": s.paths.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>(),
                    "source": s.source,
                    "info": s.info.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
                    "parent": s.parent.map(|p| p.to_hex()),
                    "root": s.root.to_hex(),
                    "summary": s.summary,
                })
            })
            .collect();
        print_json(&list);
        return Ok(code);
    }
    if !a.group_by.is_empty() {
        for (key, members) in groups(&snaps, &a.group_by) {
            println!("group {}:", key);
            table(&members);
            println!("");
        }
    } else {
        let all: Vec<&(SnapshotId, Snapshot)> = snaps.iter().collect();
        table(&all);
    }
    if !g.quiet {
        println!("{} snapshot(s)", snaps.len());
    }
    Ok(code)
}

/// Snapshots in groups by `keys` (host, paths, tags), in order of each group's first.
fn groups<'a>(
    snaps: &'a [(SnapshotId, Snapshot)],
    keys: &[String],
) -> Vec<(serde_json::Value, Vec<&'a (SnapshotId, Snapshot)>)> {
    let mut out: Vec<(serde_json::Value, Vec<&(SnapshotId, Snapshot)>)> = Vec::new();
    for snap in snaps {
        let s = &snap.1;
        let mut key = serde_json::Map::new();
        for k in keys {
            let v = match k.as_str() {
                "host" => serde_json::json!(s.host),
                "paths" => serde_json::json!(s
                    .paths
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect::<Vec<_>>()),
                _ => serde_json::json!(s.tags),
            };
            key.insert(k.clone(), v);
        }
        let key = serde_json::Value::Object(key);
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(snap),
            None => out.push((key, vec![snap])),
        }
    }
    out
}

fn table(snaps: &[&(SnapshotId, Snapshot)]) {
    println!(
        "{:<8}  {:<19}  {:<12}  {:>10}  {:<12}  paths",
        "id", "time", "host", "size", "tags"
    );
    for (id, s) in snaps.iter().map(|p| (&p.0, &p.1)) {
        let paths: Vec<_> = s.paths.iter().map(|p| super::term::name(p)).collect();
        println!(
            "{:<8}  {:<19}  {:<12}  {:>10}  {:<12}  {}",
            id.short(),
            format_time(s.time_ns),
            s.host,
            human_bytes(s.summary.total_bytes),
            s.tags.join(","),
            paths.join(" ")
        );
    }
}
