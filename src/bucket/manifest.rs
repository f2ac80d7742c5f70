//! `metadata.jsonl`: one JSON object per line for every object of a bucket snapshot,
//! sorted by key. It is what restores keys and metadata, and what the next backup compares
//! ETags and sizes with; the tree under `objects/` holds the contents.

use super::{MANIFEST_NAME, OBJECTS_DIR};
use crate::browse::{dump_file, find_node, walk_snapshot};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind};
use crate::repo::Repository;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One object of the bucket as the snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// The key below the backed-up prefix, exactly as the service held it.
    pub key: String,
    /// Its file in the snapshot, e.g. `/objects/photos/cat.jpg` (see `names.rs`).
    pub path: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,
    /// BLAKE3 of the content as read from the bucket, hex (unkeyed: it checks a restored
    /// object without the repository).
    pub blake3: String,
}

impl ObjectRecord {
    /// A `dir/` marker: an empty object that stands for a folder.
    pub fn is_marker(&self) -> bool {
        self.key.ends_with('/')
    }
}

/// The manifest's bytes: one line per record, in the given order.
pub fn encode(records: &[ObjectRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r).expect("JSON of plain data");
        out.push(b'\n');
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<Vec<ObjectRecord>> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let rec: ObjectRecord = serde_json::from_slice(line)
            .map_err(|e| Error::corrupt(format!("{MANIFEST_NAME} line {}: {e}", i + 1)))?;
        out.push(rec);
    }
    Ok(out)
}

/// A bucket snapshot's records, each with its file node (whose content is the object's).
pub struct SnapshotObjects {
    pub records: Vec<ObjectRecord>,
    /// Path (as in `ObjectRecord::path`) -> file node.
    pub nodes: HashMap<String, Node>,
}

impl SnapshotObjects {
    pub fn node(&self, rec: &ObjectRecord) -> Result<&Node> {
        self.nodes
            .get(&rec.path)
            .filter(|n| n.kind == NodeKind::File)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "{MANIFEST_NAME} names {} for key {:?}, which is not a file of the snapshot",
                    rec.path, rec.key
                ))
            })
    }
}

/// Read a bucket snapshot's manifest and the file nodes of its objects.
pub fn load(repo: &Repository, snapshot: &Snapshot) -> Result<SnapshotObjects> {
    if snapshot.source != super::SOURCE_KIND {
        return Err(Error::invalid(format!(
            "this snapshot is not of a bucket (its source is {:?}); \
             restore it with --target DIR instead",
            snapshot.source
        )));
    }
    let manifest = find_node(repo, &snapshot.root, format!("/{MANIFEST_NAME}").as_bytes())?;
    let mut bytes = Vec::with_capacity(manifest.size as usize);
    dump_file(repo, &manifest, &mut bytes)?;
    let records = decode(&bytes)?;
    let mut nodes = HashMap::new();
    let mut first_error = None;
    walk_snapshot(
        repo,
        &snapshot.root,
        &mut |path, node| {
            let inside = path.starts_with(format!("/{OBJECTS_DIR}").as_bytes());
            if inside && node.kind == NodeKind::File {
                nodes.insert(String::from_utf8_lossy(path).into_owned(), node.clone());
            }
            inside
        },
        &mut |path, e| {
            first_error.get_or_insert_with(|| {
                e.clone()
                    .context(String::from_utf8_lossy(path).into_owned())
            });
        },
    )?;
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(SnapshotObjects { records, nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_lines() {
        let recs = vec![
            ObjectRecord {
                key: "a b/ü\n\"x\"".into(),
                path: "/objects/a b/ü\n\"x\"".into(),
                size: 5,
                etag: Some("\"abc\"".into()),
                last_modified: Some("2026-11-20T03:00:00Z".into()),
                content_type: Some("image/png".into()),
                user_metadata: [("owner".to_string(), "alice".to_string())].into(),
                blake3: "00".repeat(32),
            },
            ObjectRecord {
                key: "dir/".into(),
                path: "/objects/dir/%".into(),
                size: 0,
                etag: None,
                last_modified: None,
                content_type: None,
                user_metadata: BTreeMap::new(),
                blake3: "11".repeat(32),
            },
        ];
        let bytes = encode(&recs);
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 2);
        assert_eq!(decode(&bytes).unwrap(), recs);
        assert!(decode(b"{not json}\n").is_err());
    }
}
