//! Reading snapshots: choosing one by ID, prefix, `latest` or `@TIME`; walking its trees;
//! finding a path; streaming one file; comparing two snapshots.

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Content, Node, NodeKind, Tree};
use crate::format::BlobType;
use crate::id::{BlobId, SnapshotId};
use crate::repo::Repository;
use std::collections::HashMap;
use std::io::Write;

/// Parse a time for `@TIME`: RFC 3339 with an offset (`2026-11-20T03:00:00Z`), or a civil
/// date-time or date in the system time zone (`2026-11-20T03:00`, `2026-11-20 03:00`,
/// `2026-11-20`). Returns nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64> {
    let bad = || {
        Error::invalid(format!(
            "cannot read {s:?} as a time; use e.g. 2026-11-20T03:00, 2026-11-20 or 2026-11-20T03:00:00Z"
        ))
    };
    if let Ok(ts) = s.parse::<jiff::Timestamp>() {
        return Ok(ts.as_nanosecond() as i64);
    }
    let civil = s
        .replacen(' ', "T", 1)
        .parse::<jiff::civil::DateTime>()
        .or_else(|_| {
            s.parse::<jiff::civil::Date>()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })
        .map_err(|_| bad())?;
    let zoned = civil
        .to_zoned(jiff::tz::TimeZone::system())
        .map_err(|_| bad())?;
    Ok(zoned.timestamp().as_nanosecond() as i64)
}

/// Format nanoseconds since the epoch as local time, to the second.
pub fn format_time(ns: i64) -> String {
    match jiff::Timestamp::from_nanosecond(ns as i128) {
        Ok(ts) => ts
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => format!("{ns}ns"),
    }
}

/// RFC 3339 in UTC with nanoseconds, for JSON.
pub fn format_time_rfc3339(ns: i64) -> String {
    jiff::Timestamp::from_nanosecond(ns as i128)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ns.to_string())
}

/// Resolve a SNAPSHOT argument: an ID, a unique ID prefix, `latest`, or `@TIME`.
/// A damaged snapshot object does not hide the others: an ID or prefix that names no damaged
/// snapshot still selects; `latest` and `@TIME` might mean the damaged one, so they fail.
pub fn find_snapshot(repo: &Repository, spec: &str) -> Result<(SnapshotId, Snapshot)> {
    find_snapshot_tagged(repo, spec, &[])
}

/// [`find_snapshot`] among the snapshots that carry every one of `tags` (all snapshots when
/// `tags` is empty): `latest` with the tags `job:app` and `source:files` is the newest
/// snapshot of that job's files.
pub fn find_snapshot_tagged(
    repo: &Repository,
    spec: &str,
    tags: &[String],
) -> Result<(SnapshotId, Snapshot)> {
    let (mut snaps, damaged) = repo.readable_snapshots()?;
    if !tags.is_empty() {
        snaps.retain(|(_, s)| has_tags(s, tags));
        if snaps.is_empty() {
            return Err(Error::not_found(format!(
                "no snapshot has the tag(s) {}",
                tags.join(", ")
            )));
        }
    }
    let spec_l = spec.to_ascii_lowercase();
    let by_id = !spec_l.is_empty() && spec_l.bytes().all(|b| b.is_ascii_hexdigit());
    if let Some((_, e)) = damaged
        .into_iter()
        .find(|(id, _)| !by_id || id.to_hex().starts_with(&spec_l))
    {
        return Err(e);
    }
    select(snaps, spec)
}

/// Does the snapshot carry every one of `tags`?
pub fn has_tags(s: &Snapshot, tags: &[String]) -> bool {
    tags.iter().all(|t| s.tags.contains(t))
}

/// Which snapshots a command considers, with restic's meanings: every `tags` entry must be
/// there; any of `hosts` (none given: any host); every one of `paths` among the snapshot's
/// paths.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    pub tags: Vec<String>,
    pub hosts: Vec<String>,
    pub paths: Vec<Vec<u8>>,
}

impl SnapshotFilter {
    pub fn matches(&self, s: &Snapshot) -> bool {
        has_tags(s, &self.tags)
            && (self.hosts.is_empty() || self.hosts.contains(&s.host))
            && self.paths.iter().all(|p| s.paths.contains(p))
    }
}

/// The `n` newest snapshots of each group of the same host and paths (restic's
/// `snapshots --latest N`), oldest first; `snaps` is oldest first.
pub fn latest_per_group(
    snaps: Vec<(SnapshotId, Snapshot)>,
    n: usize,
) -> Vec<(SnapshotId, Snapshot)> {
    let mut seen: std::collections::HashMap<(String, Vec<Vec<u8>>), usize> =
        std::collections::HashMap::new();
    let mut keep: Vec<(SnapshotId, Snapshot)> = snaps
        .into_iter()
        .rev()
        .filter(|(_, s)| {
            let count = seen.entry((s.host.clone(), s.paths.clone())).or_default();
            *count += 1;
            *count <= n
        })
        .collect();
    keep.reverse();
    keep
}

/// Pick the snapshot `spec` names. A spec the user mistyped (an ID that names no snapshot,
/// an ambiguous prefix, a time that cannot be read) is bad input, exit 2. A well-formed
/// question with no answer (`latest` in an empty repository, a time before every snapshot)
/// is not found, exit 1.
pub fn select(snaps: Vec<(SnapshotId, Snapshot)>, spec: &str) -> Result<(SnapshotId, Snapshot)> {
    // The spec's form first, so that a typo is reported as one even without snapshots.
    let at = match spec.strip_prefix('@') {
        Some(t) => Some((t, parse_time(t)?)),
        None => None,
    };
    let spec_l = spec.to_ascii_lowercase();
    if at.is_none()
        && spec != "latest"
        && (spec_l.is_empty() || !spec_l.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(Error::invalid(format!(
            "{spec:?} is not a snapshot ID, ID prefix, `latest` or `@TIME`"
        )));
    }
    if snaps.is_empty() {
        return Err(Error::not_found("the repository has no snapshots"));
    }
    if spec == "latest" {
        return Ok(snaps.into_iter().last().expect("non-empty"));
    }
    if let Some((t, at)) = at {
        return snaps
            .into_iter()
            .rev()
            .find(|(_, s)| s.time_ns <= at)
            .ok_or_else(|| Error::not_found(format!("no snapshot at or before {t}")));
    }
    let mut matching: Vec<_> = snaps
        .into_iter()
        .filter(|(id, _)| id.to_hex().starts_with(&spec_l))
        .collect();
    match matching.len() {
        0 => Err(Error::invalid(format!(
            "no snapshot with ID {spec}; `coffer snapshots` lists them"
        ))),
        1 => Ok(matching.pop().expect("one")),
        n => Err(Error::invalid(format!(
            "snapshot prefix {spec} is ambiguous ({n} snapshots match)"
        ))),
    }
}

/// Visit every node below `root` in depth-first pre-order with its absolute path. `visit`
/// returns whether to descend into a directory. A tree that cannot be read is reported to
/// `on_error` and skipped.
pub fn walk_snapshot(
    repo: &Repository,
    root: &BlobId,
    visit: &mut dyn FnMut(&[u8], &Node) -> bool,
    on_error: &mut dyn FnMut(&[u8], &Error),
) -> Result<()> {
    let tree = repo.read_tree(root)?;
    walk_tree(repo, &tree, b"", visit, on_error);
    Ok(())
}

fn walk_tree(
    repo: &Repository,
    tree: &Tree,
    prefix: &[u8],
    visit: &mut dyn FnMut(&[u8], &Node) -> bool,
    on_error: &mut dyn FnMut(&[u8], &Error),
) {
    for node in &tree.nodes {
        let mut path = prefix.to_vec();
        path.push(b'/');
        path.extend_from_slice(&node.name);
        if !visit(&path, node) {
            continue;
        }
        if let Content::Subtree(id) = &node.content {
            match repo.read_tree(id) {
                Ok(sub) => walk_tree(repo, &sub, &path, visit, on_error),
                Err(e) => on_error(&path, &e),
            }
        }
    }
}

/// Normalise a user-given path inside a snapshot to `/a/b` form. Paths are raw bytes, so
/// names that are not UTF-8 can be selected too.
pub fn normalise(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1);
    for part in path
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty() && *p != b".")
    {
        out.push(b'/');
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// The node at an absolute path inside a snapshot.
pub fn find_node(repo: &Repository, root: &BlobId, path: &[u8]) -> Result<Node> {
    let mut tree = repo.read_tree(root)?;
    let parts: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    let not_found = || {
        Error::not_found(format!(
            "{} is not in the snapshot",
            String::from_utf8_lossy(path)
        ))
    };
    for (i, part) in parts.iter().enumerate() {
        let node = tree.get(part).ok_or_else(not_found)?.clone();
        if i + 1 == parts.len() {
            return Ok(node);
        }
        match &node.content {
            Content::Subtree(id) => tree = repo.read_tree(id)?,
            _ => return Err(not_found()),
        }
    }
    Err(Error::invalid("give a path to a file inside the snapshot"))
}

/// Write one file's contents to `out`.
pub fn dump_file(repo: &Repository, node: &Node, out: &mut dyn Write) -> Result<u64> {
    if node.kind != NodeKind::File {
        return Err(Error::invalid(format!(
            "{} is a {}, not a file",
            String::from_utf8_lossy(&node.name),
            node.kind.name()
        )));
    }
    let chunks = repo.file_chunks(&node.content)?;
    let windows: Vec<&[BlobId]> = chunks.chunks(DUMP_WINDOW).collect();
    let Some(first) = windows.first() else {
        return Ok(0);
    };
    // Read window k+1 while window k is written: fetching and decrypting overlap output.
    let mut n = 0;
    let mut current = read_data_blobs(repo, first)?;
    for (k, window) in windows.iter().enumerate() {
        let (next, written) = std::thread::scope(|scope| {
            let next = windows
                .get(k + 1)
                .map(|w| scope.spawn(move || read_data_blobs(repo, w)));
            let written = write_window(window, &current, out);
            let next = next.map(|h| h.join().expect("dump reader panicked"));
            (next, written)
        });
        n += written?;
        match next {
            Some(next) => current = next?,
            None => break,
        }
    }
    Ok(n)
}

fn write_window(
    ids: &[BlobId],
    blobs: &HashMap<BlobId, Vec<u8>>,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut n = 0;
    for id in ids {
        let data = &blobs[id];
        out.write_all(data).map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Error::new(ErrorKind::Interrupted, "output closed")
            } else {
                Error::io("writing output", e)
            }
        })?;
        n += data.len() as u64;
    }
    Ok(n)
}

/// Chunks read ahead by `dump`: with 4 KiB stream chunks, about 8 MiB at a time.
const DUMP_WINDOW: usize = 2048;
// A dump taken after many nights mixes chunks from every night's frames, so a frame can be
// opened in more than one window (about a third more decompression on the benchmark's
// dumps). Keeping opened frames between windows (`FrameCache`) removed that CPU time but
// raised peak memory by 25-35 MB through allocator fragmentation, so dump does not.

/// Read data blobs, returning their plaintexts by ID. Blobs are grouped into
/// runs of nearby blobs in the same pack, each run fetched with one request, and runs are
/// fetched and decrypted in parallel: a dump of small chunks costs a few requests per pack,
/// not one per chunk.
fn read_data_blobs(repo: &Repository, ids: &[BlobId]) -> Result<HashMap<BlobId, Vec<u8>>> {
    use rayon::prelude::*;
    let index = repo.index()?;
    let mut wanted: Vec<(BlobId, crate::index::BlobLocation)> = Vec::with_capacity(ids.len());
    for id in ids {
        let loc = index
            .get(id)
            .filter(|l| l.blob_type == BlobType::Data)
            .ok_or_else(|| crate::repo::not_in_index(BlobType::Data, id))?;
        wanted.push((*id, loc));
    }
    wanted.sort_by_key(|(_, l)| (l.pack, l.frame_offset, l.offset));
    wanted.dedup_by_key(|(id, _)| *id);
    let runs = crate::index::fetch_runs(&wanted, |(_, l)| l);
    let opened: Vec<Vec<(BlobId, Vec<u8>)>> = runs
        .par_iter()
        .map(|run| {
            let mut out = Vec::with_capacity(run.len());
            let mut failed = None;
            repo.open_run(
                run,
                |(id, l)| (BlobType::Data, id, l),
                |(id, _), plain| match plain {
                    Ok(p) => out.push((*id, p.to_vec())),
                    Err(e) => {
                        failed.get_or_insert_with(|| e.clone());
                    }
                },
            );
            failed.map_or(Ok(out), Err)
        })
        .collect::<Result<_>>()?;
    Ok(opened.into_iter().flatten().collect())
}

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// "+" added, "-" removed, "M" content changed, "T" type changed, "U" metadata only.
    pub change: &'static str,
    pub path: String,
}

/// Compare two snapshots' trees; identical subtrees are skipped without reading them.
pub fn diff(repo: &Repository, a: &BlobId, b: &BlobId) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    diff_trees(repo, Some(a), Some(b), b"", &mut out)?;
    Ok(out)
}

fn diff_trees(
    repo: &Repository,
    a: Option<&BlobId>,
    b: Option<&BlobId>,
    prefix: &[u8],
    out: &mut Vec<Change>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let ta = a
        .map(|id| repo.read_tree(id))
        .transpose()?
        .unwrap_or_default();
    let tb = b
        .map(|id| repo.read_tree(id))
        .transpose()?
        .unwrap_or_default();
    let mut names: Vec<&[u8]> = ta
        .nodes
        .iter()
        .chain(&tb.nodes)
        .map(|n| n.name.as_slice())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let mut path = prefix.to_vec();
        path.push(b'/');
        path.extend_from_slice(name);
        let shown = String::from_utf8_lossy(&path).into_owned();
        let subtree = |n: Option<&Node>| match n.map(|n| &n.content) {
            Some(Content::Subtree(id)) => Some(*id),
            _ => None,
        };
        let (na, nb) = (ta.get(name), tb.get(name));
        match (na, nb) {
            (Some(x), None) => {
                out.push(Change {
                    change: "-",
                    path: shown,
                });
                if let Some(id) = subtree(Some(x)) {
                    diff_trees(repo, Some(&id), None, &path, out)?;
                }
            }
            (None, Some(y)) => {
                out.push(Change {
                    change: "+",
                    path: shown,
                });
                if let Some(id) = subtree(Some(y)) {
                    diff_trees(repo, None, Some(&id), &path, out)?;
                }
            }
            (Some(x), Some(y)) => {
                if x.kind != y.kind {
                    out.push(Change {
                        change: "T",
                        path: shown,
                    });
                } else if x.kind == NodeKind::Dir {
                    let (sa, sb) = (subtree(Some(x)), subtree(Some(y)));
                    diff_trees(repo, sa.as_ref(), sb.as_ref(), &path, out)?;
                } else if x.content != y.content
                    || x.link_target != y.link_target
                    || x.size != y.size
                {
                    out.push(Change {
                        change: "M",
                        path: shown,
                    });
                } else if x.mode != y.mode
                    || x.mtime_ns != y.mtime_ns
                    || x.uid != y.uid
                    || x.gid != y.gid
                {
                    out.push(Change {
                        change: "U",
                        path: shown,
                    });
                }
            }
            (None, None) => {}
        }
    }
    Ok(())
}
