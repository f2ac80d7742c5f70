//! Back up a bucket: list it, download what changed since the parent snapshot (a HEAD for
//! its metadata, then the content in pieces, pinned to the HEAD's ETag), reuse the rest,
//! and write the `objects/` tree and the manifest.

use super::manifest::{self, ObjectRecord};
use super::names::layout;
use super::{bucket_path, interrupted, pool, MANIFEST_NAME, OBJECTS_DIR, SOURCE_KIND};
use crate::backend::{Location, ObjectInfo, ObjectStore, ServiceOptions};
use crate::backup::{backup, BackupOptions, BackupOutcome, BuiltSource, Source, SourceContext};
use crate::backup::{profile, synthetic_file};
use crate::chunker::{chunk_slice, chunk_stream};
use crate::error::{Error, Result};
use crate::format::tree::{Content, Node, NodeKind, Tree};
use crate::format::BlobType;
use crate::id::{BlobId, SnapshotId};
use crate::progress::Progress;
use crate::repo::Repository;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

/// How often an object replaced while it is read is read again before the backup fails.
const CHANGED_RETRIES: usize = 3;

/// A backup source for every object below `location`; credentials come from `service`'s
/// overlay and the environment. Run it with [`crate::backup::backup`].
pub fn bucket_source(location: Location, service: ServiceOptions) -> Source {
    Source::Custom(Box::new(move |ctx: &SourceContext| {
        run(ctx, &location, &service)
    }))
}

/// Back up every object below the bucket URL `url` (`s3://BUCKET/PREFIX?endpoint=..`, any
/// location form) as a new snapshot; credentials from the environment.
pub fn backup_bucket(
    repo: &Repository,
    url: &str,
    opts: &BackupOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<BackupOutcome> {
    let location = Location::parse(url).map_err(|e| e.context("bucket"))?;
    let source = bucket_source(location, ServiceOptions::default());
    backup(repo, source, opts, progress, cancel)
}

/// One object as stored: its record (path filled in later) and its file node (unnamed).
struct Stored {
    record: ObjectRecord,
    node: Node,
}

/// The parent snapshot's objects by key.
type Parent = HashMap<String, (ObjectRecord, Node)>;

fn run(ctx: &SourceContext, location: &Location, service: &ServiceOptions) -> Result<BuiltSource> {
    let store = ObjectStore::open(location, service)?;
    let listed = store.list()?;
    let path = bucket_path(location);
    let (parent_id, parent) = find_parent(ctx, &path);
    let total: u64 = listed.iter().map(|o| o.size).sum();
    ctx.progress.finish();
    ctx.progress.start("backup", Some(total));
    // After a failure the other workers stop at their next object: the backup fails anyway.
    let failed = AtomicBool::new(false);
    let results: Vec<Result<Option<Stored>>> = pool()?.install(|| {
        listed
            .par_iter()
            .map(|info| {
                if failed.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let r = backup_object(ctx, &store, info, parent.get(&info.key));
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                r
            })
            .collect()
    });
    if ctx.cancel.load(Ordering::Relaxed) {
        return Err(interrupted());
    }
    let mut stored = Vec::with_capacity(results.len());
    for r in results {
        if let Some(s) = r? {
            stored.push(s);
        }
    }
    let root = save_snapshot_trees(ctx, &mut stored)?;
    let bytes: u64 = stored.iter().map(|s| s.record.size).sum();
    Ok(BuiltSource {
        root,
        paths: vec![path.into_bytes()],
        source: SOURCE_KIND.to_string(),
        info: vec![
            ("bucket".to_string(), location.to_string()),
            ("objects".to_string(), stored.len().to_string()),
            ("bytes".to_string(), bytes.to_string()),
        ],
        parent: parent_id,
    })
}

/// The newest bucket snapshot of this host and path, with its objects. One that cannot be
/// read is no parent: every object is downloaded again.
fn find_parent(ctx: &SourceContext, path: &str) -> (Option<SnapshotId>, Parent) {
    let found = ctx.repo.readable_snapshots().map(|(snaps, _damaged)| {
        snaps.into_iter().rev().find(|(_, s)| {
            s.source == SOURCE_KIND && s.host == ctx.host && s.paths == [path.as_bytes()]
        })
    });
    let (id, snap) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return (None, Parent::new()),
        Err(e) => {
            ctx.progress.warn(&format!(
                "cannot list snapshots to compare with ({e}); every object is downloaded"
            ));
            return (None, Parent::new());
        }
    };
    match manifest::load(ctx.repo, &snap) {
        Ok(objects) => {
            let mut parent = Parent::new();
            for rec in &objects.records {
                if let Ok(node) = objects.node(rec) {
                    parent.insert(rec.key.clone(), (rec.clone(), node.clone()));
                }
            }
            (Some(id), parent)
        }
        Err(e) => {
            ctx.progress.warn(&format!(
                "previous bucket snapshot {} cannot be read ({e}); every object is downloaded",
                id.short()
            ));
            (None, Parent::new())
        }
    }
}

fn rfc3339(ns: Option<i64>) -> Option<String> {
    ns.and_then(|n| jiff::Timestamp::from_nanosecond(n as i128).ok())
        .map(|t| t.to_string())
}

fn file_node(size: u64, mtime_ns: i64, content: Content) -> Node {
    synthetic_file(b"", 0o644, mtime_ns, size, content)
}

/// Back up one object. `Ok(None)`: left out with a warning (a key coffer cannot address,
/// or an object deleted meanwhile).
fn backup_object(
    ctx: &SourceContext,
    store: &ObjectStore,
    info: &ObjectInfo,
    parent: Option<&(ObjectRecord, Node)>,
) -> Result<Option<Stored>> {
    if ctx.cancel.load(Ordering::Relaxed) {
        return Err(interrupted());
    }
    ctx.progress.item(&info.key);
    let c = ctx.counters;
    if !ObjectStore::is_addressable(&info.key) || (info.key.ends_with('/') && info.size > 0) {
        c.read_errors.fetch_add(1, Ordering::Relaxed);
        ctx.progress.warn(&format!(
            "object {:?} is left out: coffer cannot read a key with an empty, `.` or `..` \
             segment, surrounding spaces, or a folder marker with content",
            info.key
        ));
        return Ok(None);
    }
    if info.key.ends_with('/') {
        return Ok(Some(marker(ctx, info, parent)));
    }
    if let Some(s) = reuse(ctx, store, info, parent)? {
        c.files_unmodified.fetch_add(1, Ordering::Relaxed);
        c.total_bytes.fetch_add(s.record.size, Ordering::Relaxed);
        ctx.progress.advance(s.record.size);
        return Ok(Some(s));
    }
    let Some(s) = download(ctx, store, info)? else {
        return Ok(None);
    };
    let counter = if parent.is_some() {
        &c.files_changed
    } else {
        &c.files_new
    };
    counter.fetch_add(1, Ordering::Relaxed);
    c.total_bytes.fetch_add(s.record.size, Ordering::Relaxed);
    c.bytes_read.fetch_add(s.record.size, Ordering::Relaxed);
    Ok(Some(s))
}

/// A `dir/` marker: empty, nothing to read. Its metadata is not fetched (services give
/// markers none of their own that restores could set).
fn marker(ctx: &SourceContext, info: &ObjectInfo, parent: Option<&(ObjectRecord, Node)>) -> Stored {
    let counter = if parent.is_some() {
        &ctx.counters.files_unmodified
    } else {
        &ctx.counters.files_new
    };
    counter.fetch_add(1, Ordering::Relaxed);
    Stored {
        record: ObjectRecord {
            key: info.key.clone(),
            path: String::new(),
            size: 0,
            etag: info.etag.clone(),
            last_modified: rfc3339(info.last_modified_ns),
            content_type: None,
            user_metadata: BTreeMap::new(),
            blake3: blake3::hash(b"").to_hex().to_string(),
        },
        node: file_node(
            0,
            info.last_modified_ns.unwrap_or(ctx.time_ns),
            Content::Chunks(vec![]),
        ),
    }
}

/// The parent's copy, if the object is unchanged (same ETag and size) and every blob of
/// its content is still in the repository (not in a pack a prune is deleting).
fn reuse(
    ctx: &SourceContext,
    store: &ObjectStore,
    info: &ObjectInfo,
    parent: Option<&(ObjectRecord, Node)>,
) -> Result<Option<Stored>> {
    let Some((prev, node)) = parent else {
        return Ok(None);
    };
    let same = prev.size == info.size && info.etag.is_some() && prev.etag == info.etag;
    if !same || !still_stored(ctx, &node.content) {
        return Ok(None);
    }
    let mut record = prev.clone();
    let listed_time = rfc3339(info.last_modified_ns);
    if record.last_modified != listed_time {
        // Same content, rewritten: a copy onto itself may have replaced its metadata.
        match store.stat(&info.key)? {
            Some(head) if head.etag == info.etag && head.size == info.size => {
                record.content_type = head.content_type;
                record.user_metadata = head.user_metadata;
                record.last_modified = listed_time;
            }
            _ => return Ok(None),
        }
    }
    let mtime = info.last_modified_ns.unwrap_or(node.mtime_ns);
    Ok(Some(Stored {
        record,
        node: file_node(node.size, mtime, node.content.clone()),
    }))
}

fn still_stored(ctx: &SourceContext, content: &Content) -> bool {
    match content {
        Content::Chunks(ids) => ids.iter().all(|id| ctx.saver.is_known(id)),
        Content::ChunkList { .. } => ctx
            .repo
            .content_blobs(content)
            .is_ok_and(|ids| ids.iter().all(|id| ctx.saver.is_known(id))),
        _ => false,
    }
}

/// HEAD the object for its metadata, then read the version the HEAD saw. An object
/// replaced meanwhile is read again; one deleted meanwhile is left out with a warning.
fn download(ctx: &SourceContext, store: &ObjectStore, info: &ObjectInfo) -> Result<Option<Stored>> {
    let gone = || {
        ctx.progress.warn(&format!(
            "object {:?} was deleted while the bucket was backed up; it is left out",
            info.key
        ));
        Ok(None)
    };
    let mut attempt = 1;
    loop {
        let Some(head) = store.stat(&info.key)? else {
            return gone();
        };
        let mut reader = store.reader(&info.key, head.size, head.etag.as_deref())?;
        let stored = store_content(ctx, &mut reader, head.size);
        let (content, size, hash) = match stored {
            Ok(s) => s,
            Err(_) if reader.vanished() => return gone(),
            Err(_) if reader.changed() && attempt < CHANGED_RETRIES => {
                attempt += 1;
                continue;
            }
            Err(e) => return Err(e.context(format!("object {:?}", info.key))),
        };
        // The listing's time when it is the listed version: listings and HEADs may round
        // times differently, and the next backup compares with its listing.
        let time_ns = if head.etag == info.etag {
            info.last_modified_ns.or(head.last_modified_ns)
        } else {
            head.last_modified_ns
        };
        return Ok(Some(Stored {
            record: ObjectRecord {
                key: info.key.clone(),
                path: String::new(),
                size,
                etag: head.etag,
                last_modified: rfc3339(time_ns),
                content_type: head.content_type,
                user_metadata: head.user_metadata,
                blake3: hash,
            },
            node: file_node(size, time_ns.unwrap_or(ctx.time_ns), content),
        }));
    }
}

/// Passes bytes through while hashing them.
struct Hashing<R> {
    inner: R,
    hasher: blake3::Hasher,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Chunk and store an object's content, cut as a file of that content would be (objects
/// are files: a dump in a bucket is cut like a dump in a folder, see `backup::profile`);
/// returns the content, its size and its BLAKE3 (hex). Small objects are read whole,
/// large ones streamed.
fn store_content(
    ctx: &SourceContext,
    reader: impl Read,
    size: u64,
) -> Result<(Content, u64, String)> {
    let config = ctx.repo.config();
    let gear = ctx.repo.keys().chunker_gear();
    let mut src = Hashing {
        inner: reader,
        hasher: blake3::Hasher::new(),
    };
    let mut ids: Vec<BlobId> = Vec::new();
    let mut n = 0u64;
    let mut save = |chunk: &[u8]| -> Result<()> {
        if ctx.cancel.load(Ordering::Relaxed) {
            return Err(interrupted());
        }
        ids.push(ctx.saver.save(BlobType::Data, chunk)?);
        n += chunk.len() as u64;
        ctx.progress.advance(chunk.len() as u64);
        Ok(())
    };
    if size <= config.files_chunker.max as u64 {
        let mut data = Vec::with_capacity(size as usize);
        src.read_to_end(&mut data)
            .map_err(|e| Error::io("reading", e))?;
        let params = profile::for_content(config, data.len() as u64, &data);
        chunk_slice(&data, params, gear, &mut save)?;
    } else {
        let (head, whole) = profile::sniff(&mut src).map_err(|e| Error::io("reading", e))?;
        let params = profile::for_content(config, size, &head);
        chunk_stream(whole, params, gear, |c| save(&c))?;
    }
    let hash = src.hasher.finalize().to_hex().to_string();
    Ok((ctx.saver.save_content(ids)?, n, hash))
}

/// A folder of the `objects/` tree while it is assembled.
#[derive(Default)]
struct Folder {
    files: BTreeMap<String, Node>,
    folders: BTreeMap<String, Folder>,
}

/// Give every object its path, store the `objects/` trees and the manifest, and return
/// the root tree's ID.
fn save_snapshot_trees(ctx: &SourceContext, stored: &mut [Stored]) -> Result<BlobId> {
    let keys: Vec<&str> = stored.iter().map(|s| s.record.key.as_str()).collect();
    let paths = layout(&keys);
    let mut top = Folder::default();
    for (s, path) in stored.iter_mut().zip(paths) {
        s.record.path = format!("/{OBJECTS_DIR}/{}", path.join("/"));
        let (leaf, dirs) = path.split_last().expect("a key has a segment");
        let mut folder = &mut top;
        for d in dirs {
            folder = folder.folders.entry(d.clone()).or_default();
        }
        folder.files.insert(leaf.clone(), s.node.clone());
    }
    let (objects_id, objects_mtime) = save_folder(ctx, top)?;
    let records: Vec<ObjectRecord> = stored.iter().map(|s| s.record.clone()).collect();
    let (manifest_content, manifest_size) = ctx.store_stream(&manifest::encode(&records)[..])?;
    let mut manifest_node = file_node(manifest_size, ctx.time_ns, manifest_content);
    manifest_node.name = MANIFEST_NAME.as_bytes().to_vec();
    ctx.counters.dirs.fetch_add(1, Ordering::Relaxed);
    let root = Tree::new(vec![
        dir_node(OBJECTS_DIR, objects_id, objects_mtime),
        manifest_node,
    ])?;
    ctx.store_tree(&root)
}

fn dir_node(name: &str, id: BlobId, mtime_ns: i64) -> Node {
    Node {
        name: name.as_bytes().to_vec(),
        kind: NodeKind::Dir,
        mode: 0o755,
        size: 0,
        content: Content::Subtree(id),
        ..file_node(0, mtime_ns, Content::None)
    }
}

/// Store a folder's tree (its subfolders first); returns its ID and its newest time, the
/// folder's mtime (so unchanged folders give identical trees night after night).
fn save_folder(ctx: &SourceContext, folder: Folder) -> Result<(BlobId, i64)> {
    let mut nodes = Vec::with_capacity(folder.files.len() + folder.folders.len());
    let mut newest = 0i64;
    for (name, sub) in folder.folders {
        let (id, mtime) = save_folder(ctx, sub)?;
        newest = newest.max(mtime);
        nodes.push(dir_node(&name, id, mtime));
        ctx.counters.dirs.fetch_add(1, Ordering::Relaxed);
    }
    for (name, mut node) in folder.files {
        newest = newest.max(node.mtime_ns);
        node.name = name.into_bytes();
        nodes.push(node);
    }
    Ok((ctx.store_tree(&Tree::new(nodes)?)?, newest))
}
