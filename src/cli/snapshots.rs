//! `coffer snapshots`: list snapshots, oldest first.

use super::common::{self, human_bytes, print_json};
use super::{Global, EXIT_FAILURE, EXIT_OK};
use coffer::browse::{format_time, format_time_rfc3339};
use coffer::Result;

#[derive(clap::Args)]
pub struct Args {
    /// List only snapshots with this tag (repeatable: every tag must be there).
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let repo = common::open(g)?;
    // Damaged snapshot objects are reported, and the others still listed.
    let (mut snaps, damaged) = repo.readable_snapshots()?;
    snaps.retain(|(_, s)| coffer::browse::has_tags(s, &a.tags));
    for (_, e) in &damaged {
        eprintln!("coffer: warning: skipped a damaged snapshot: {e} (run `coffer check`)");
    }
    let code = if damaged.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILURE
    };
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
    println!(
        "{:<8}  {:<19}  {:<12}  {:>10}  {:<12}  paths",
        "id", "time", "host", "size", "tags"
    );
    for (id, s) in &snaps {
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
    if !g.quiet {
        println!("{} snapshot(s)", snaps.len());
    }
    Ok(code)
}
