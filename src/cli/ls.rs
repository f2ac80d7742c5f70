//! `coffer ls SNAPSHOT [PATH]`: list a snapshot's entries (below PATH).

use super::common::{self, print_json};
use super::{term, Global, EXIT_OK};
use coffer::browse::{find_snapshot_tagged, format_time, normalise, walk_snapshot};
use coffer::format::tree::NodeKind;
use coffer::Result;
use std::os::unix::ffi::OsStrExt;

#[derive(clap::Args)]
pub struct Args {
    /// ID, ID prefix, `latest` or `@TIME`.
    pub snapshot: String,
    /// Choose `latest` or `@TIME` among the snapshots with this tag only (repeatable: every
    /// tag must be there), e.g. `--tag job:app --tag source:files`.
    #[arg(long = "tag", value_name = "T")]
    pub tags: Vec<String>,
    /// Only entries at or below this path.
    pub path: Option<std::ffi::OsString>,
    /// Show type, mode, size and mtime.
    #[arg(short, long)]
    pub long: bool,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let repo = common::open(g)?;
    let (id, snap) = find_snapshot_tagged(&repo, &a.snapshot, &a.tags)?;
    let under = a.path.as_deref().map(|p| normalise(p.as_bytes()));
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    walk_snapshot(
        &repo,
        &snap.root,
        &mut |path, node| {
            let inside = match &under {
                None => true,
                Some(u) if u == b"/" => true,
                Some(u) => {
                    path == u.as_slice()
                        || (path.starts_with(u) && path.get(u.len()) == Some(&b'/'))
                }
            };
            let on_the_way = under
                .as_ref()
                .is_some_and(|u| u.starts_with(path) && u.get(path.len()) == Some(&b'/'));
            if inside {
                rows.push((path.to_vec(), node.clone()));
            }
            inside || on_the_way
        },
        &mut |path, e| errors.push((path.to_vec(), e.to_string())),
    )?;
    if let Some(u) = &under {
        if rows.is_empty() && u != b"/" {
            return Err(coffer::Error::not_found(format!(
                "{} is not in snapshot {}",
                String::from_utf8_lossy(u),
                id.short()
            )));
        }
    }
    if g.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(p, n)| {
                serde_json::json!({
                    "path": String::from_utf8_lossy(p),
                    "type": n.kind.name(),
                    "mode": format!("{:o}", n.mode),
                    "uid": n.uid, "gid": n.gid,
                    "size": n.size,
                    "mtime_ns": n.mtime_ns,
                    "link_target": (n.kind == NodeKind::Symlink).then(|| String::from_utf8_lossy(&n.link_target).into_owned()),
                })
            })
            .collect();
        let errors: Vec<_> = errors
            .iter()
            .map(|(p, e)| format!("{}: {e}", String::from_utf8_lossy(p)))
            .collect();
        print_json(
            &serde_json::json!({"snapshot": id.to_hex(), "entries": list, "errors": errors}),
        );
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for (p, n) in &rows {
            let r = if a.long {
                writeln!(
                    out,
                    "{:<8} {:>5o} {:>6}:{:<6} {:>12} {}  {}{}",
                    n.kind.name(),
                    n.mode,
                    n.uid,
                    n.gid,
                    n.size,
                    format_time(n.mtime_ns),
                    term::name(p),
                    if n.kind == NodeKind::Symlink {
                        format!(" -> {}", term::name(&n.link_target))
                    } else {
                        String::new()
                    }
                )
            } else {
                writeln!(out, "{}", term::name(p))
            };
            if let Err(e) = r {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(coffer::Error::io("writing output", e));
                }
                break; // stdout closed (e.g. piped into head)
            }
        }
        for (p, e) in &errors {
            term::error(&format!("{}: {e}", term::name(p)));
        }
    }
    Ok(if errors.is_empty() {
        EXIT_OK
    } else {
        super::EXIT_FAILURE
    })
}
