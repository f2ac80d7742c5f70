//! The backup use case: store a directory tree or a stream as a new snapshot.
//!
//! Order of writes (see format-spec): packs, then the index files that describe them, then
//! the snapshot. An interrupted backup leaves packs and index files but no snapshot; the
//! next backup finds their blobs in the index and does not upload them again.

pub(crate) mod dirfd;
pub mod exclude;
pub mod profile;
mod stream;
mod walk;

use crate::error::{Error, ErrorKind, Result};
use crate::format::gc::LockKind;
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::{Content, Node, NodeKind, Tree};
use crate::format::BlobType;
use crate::id::SnapshotId;
use crate::progress::Progress;
use crate::repo::LOCK_REFRESH;
use crate::repo::{BlobSaver, Repository};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use walk::{PathTrie, Walker};

/// What to back up.
pub enum Source {
    /// Files and directories; stored under their absolute paths.
    Paths(Vec<PathBuf>),
    /// A byte stream stored as one file named `name` (e.g. `pg_dump db | coffer backup --stdin`).
    Stream {
        name: String,
        reader: Box<dyn Read + Send>,
    },
    /// Any other source (a database dump, a bucket): the closure stores its data through the
    /// context's saver and says what the snapshot records. It runs while the backup's lock is
    /// held; if it fails, no snapshot is written.
    Custom(Box<CustomSource>),
}

/// Builds a custom source's root tree; see [`Source::Custom`].
pub type CustomSource = dyn FnOnce(&SourceContext) -> Result<BuiltSource> + Send;

/// What a custom source may use while it stores its data.
pub struct SourceContext<'a> {
    pub repo: &'a Repository,
    pub saver: &'a BlobSaver<'a>,
    pub counters: &'a Counters,
    pub cancel: &'a AtomicBool,
    pub progress: &'a dyn Progress,
    /// The snapshot's time.
    pub time_ns: i64,
    pub host: &'a str,
}

impl SourceContext<'_> {
    /// Store a byte stream with the stream chunker (small chunks that dedup night to night);
    /// returns the file's content and size.
    pub fn store_stream(&self, reader: impl Read) -> Result<(Content, u64)> {
        let params = self.repo.config().stream_chunker;
        let gear = self.repo.keys().chunker_gear();
        let (ids, size) =
            stream::store_stream(self.saver, reader, params, gear, self.cancel, self.progress)?;
        Ok((self.saver.save_content(ids)?, size))
    }

    /// Store an open file's content (about `size` bytes) as a directory backup would: the
    /// chunk profile its size and first bytes call for. Returns the content and the bytes
    /// stored.
    pub fn store_file(&self, file: std::fs::File, size: u64) -> Result<(Content, u64)> {
        let (ids, size) = stream::store_file(
            self.repo,
            self.saver,
            file,
            size,
            self.cancel,
            self.progress,
        )?;
        Ok((self.saver.save_content(ids)?, size))
    }

    /// Store a tree blob; returns its ID.
    pub fn store_tree(&self, tree: &Tree) -> Result<crate::id::BlobId> {
        self.saver.save(BlobType::Tree, &tree.encode())
    }
}

/// A file node for data that did not come from a file (a stream, a dump, an object): owned
/// by the user running coffer, with the given mode and time.
pub fn synthetic_file(name: &[u8], mode: u32, time_ns: i64, size: u64, content: Content) -> Node {
    Node {
        name: name.to_vec(),
        kind: NodeKind::File,
        mode,
        // SAFETY: getuid and getgid have no preconditions.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        mtime_ns: time_ns,
        ctime_ns: time_ns,
        size,
        dev: 0,
        inode: 0,
        nlink: 1,
        rdev: 0,
        link_target: vec![],
        content,
    }
}

/// A custom source's result: the snapshot's root tree and what it records of the source.
pub struct BuiltSource {
    pub root: crate::id::BlobId,
    /// The snapshot's paths (used to group snapshots for retention and to find parents).
    pub paths: Vec<Vec<u8>>,
    /// The snapshot's source kind, e.g. "postgres" or "bucket".
    pub source: String,
    pub info: Vec<(String, String)>,
    /// The snapshot this one was compared against, if any.
    pub parent: Option<SnapshotId>,
}

#[derive(Default, Clone)]
pub struct BackupOptions {
    pub tags: Vec<String>,
    pub host: String,
    pub user: String,
    /// The snapshot's time; now if `None`.
    pub time_ns: Option<i64>,
    pub excludes: Vec<String>,
    /// The other ways to leave things out (`--iexclude`, `--exclude-if-present`, ...).
    pub exclude: exclude::ExcludeOptions,
    /// Compare against this snapshot instead of the latest one with the same host and paths.
    pub parent: Option<SnapshotId>,
    /// How often the backup's lock is rewritten (default `LOCK_REFRESH`, five minutes).
    pub lock_refresh: Option<std::time::Duration>,
}

pub struct BackupOutcome {
    pub id: SnapshotId,
    pub snapshot: Snapshot,
}

/// Counters shared by the worker threads of one backup.
#[derive(Default)]
pub struct Counters {
    pub files_new: AtomicU64,
    pub files_changed: AtomicU64,
    pub files_unmodified: AtomicU64,
    pub dirs: AtomicU64,
    pub read_errors: AtomicU64,
    pub total_bytes: AtomicU64,
    pub bytes_read: AtomicU64,
}

/// Make a path absolute without resolving its last component (a symlink stays a symlink).
pub fn absolute_path(path: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(path).map_err(|e| Error::io(path.display(), e))?;
    let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
        return Ok(PathBuf::from("/"));
    };
    let parent = parent
        .canonicalize()
        .unwrap_or_else(|_| parent.to_path_buf());
    Ok(parent.join(name))
}

pub fn backup(
    repo: &Repository,
    source: Source,
    opts: &BackupOptions,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<BackupOutcome> {
    let started = std::time::Instant::now();
    let time_ns = opts.time_ns.unwrap_or_else(|| repo.clock().now());
    let mut rules = opts.exclude.clone();
    rules.globs.extend(opts.excludes.iter().cloned());
    let excludes = exclude::ExcludeRules::new(&rules)?;
    let counters = Counters::default();
    // Garbage collection alongside backups (format-spec §12): the lock is stored before
    // the index is read, and packs that a deletion plan names count as absent.
    let lock = repo.lock(
        LockKind::Backup,
        &opts.host,
        opts.lock_refresh.unwrap_or(LOCK_REFRESH),
    )?;
    repo.exclude_planned_packs()?;
    // One listing of the packs: indexed packs that are gone are left out of the index (their
    // blobs are stored again), and packs left by a backup that was killed are indexed, so
    // their blobs are reused.
    let listing = repo.reconcile_packs()?;
    if listing.missing > 0 {
        progress.warn(&format!(
            "{} indexed pack(s) are missing or have the wrong size: this backup stores their blobs again instead of using them. Run `coffer check` to see which snapshots they break, then `coffer repair`",
            listing.missing
        ));
    }
    let saver = BlobSaver::new(repo)?;

    let (root, paths, source_name, info, parent_id) = match source {
        Source::Custom(build) => {
            progress.start("backup", None);
            let ctx = SourceContext {
                repo,
                saver: &saver,
                counters: &counters,
                cancel,
                progress,
                time_ns,
                host: &opts.host,
            };
            match build(&ctx) {
                Ok(b) => (Ok(b.root), b.paths, b.source, b.info, b.parent),
                Err(e) => (Err(e), vec![], String::new(), vec![], None),
            }
        }
        Source::Paths(paths) => {
            let mut abs = Vec::new();
            for p in &paths {
                abs.push(absolute_path(p)?);
            }
            abs.sort();
            abs.dedup();
            if !abs.iter().any(|p| std::fs::symlink_metadata(p).is_ok()) {
                return Err(Error::not_found(format!(
                    "none of the paths to back up exist ({}); nothing was saved",
                    abs.iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let path_bytes: Vec<Vec<u8>> = abs
                .iter()
                .map(|p| p.as_os_str().as_bytes().to_vec())
                .collect();
            let parent = find_parent(repo, opts, &path_bytes)?;
            let parent_root = match &parent {
                Some((_, s)) => repo.read_tree(&s.root).ok(),
                None => None,
            };
            let mut trie = PathTrie::default();
            for p in &abs {
                trie.insert(p);
            }
            progress.start("backup", None);
            let walker = Walker {
                repo,
                saver: &saver,
                excludes: &excludes,
                cancel,
                progress,
                counters: &counters,
            };
            let root = walker.save_paths(&trie, parent_root.as_ref());
            (
                root,
                path_bytes,
                "files".to_string(),
                vec![],
                parent.map(|(id, _)| id),
            )
        }
        Source::Stream { name, reader } => {
            if !crate::format::tree::is_valid_name(name.as_bytes()) {
                return Err(Error::invalid(format!(
                    "--stdin-name {name:?} must be a plain file name"
                )));
            }
            progress.start("backup", None);
            let params = repo.config().stream_chunker;
            let gear = repo.keys().chunker_gear();
            let root = stream::store_stream(&saver, reader, params, gear, cancel, progress)
                .and_then(|(ids, size)| {
                    counters.files_new.fetch_add(1, Ordering::Relaxed);
                    counters.total_bytes.fetch_add(size, Ordering::Relaxed);
                    counters.bytes_read.fetch_add(size, Ordering::Relaxed);
                    let content = saver.save_content(ids)?;
                    let node = synthetic_file(name.as_bytes(), 0o600, time_ns, size, content);
                    saver.save(BlobType::Tree, &Tree::new(vec![node])?.encode())
                });
            let info = vec![("stdin-name".to_string(), name.clone())];
            (
                root,
                vec![format!("/{name}").into_bytes()],
                "stdin".to_string(),
                info,
                None,
            )
        }
    };
    // Whatever happened, make what was uploaded durable and indexed, so a later backup
    // reuses it. Only then report an interruption or failure.
    let flushed = saver.flush();
    let root = root?;
    flushed?;
    progress.finish();
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
    }
    let st = saver.stats();
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let snapshot = Snapshot {
        time_ns,
        host: opts.host.clone(),
        user: opts.user.clone(),
        tags: opts.tags.clone(),
        paths,
        root,
        parent: parent_id,
        source: source_name,
        info,
        summary: Summary {
            files_new: c(&counters.files_new),
            files_changed: c(&counters.files_changed),
            files_unmodified: c(&counters.files_unmodified),
            dirs: c(&counters.dirs),
            read_errors: c(&counters.read_errors),
            total_bytes: c(&counters.total_bytes),
            bytes_read: c(&counters.bytes_read),
            blobs_added: st.blobs_added,
            bytes_added_raw: st.bytes_added_raw,
            bytes_added_stored: st.bytes_added_stored,
            packs_added: st.packs_added,
            duration_ns: started.elapsed().as_nanos() as u64,
        },
    };
    // A prune that judged this backup dead deleted its lock and may delete packs it
    // deduplicated against: then the snapshot must not be written.
    if !lock.still_held()? {
        return Err(Error::new(
            ErrorKind::Interrupted,
            "this backup's lock was removed (a prune judged it stale): no snapshot was written; run the backup again",
        ));
    }
    let id = repo.save_snapshot(&snapshot)?;
    // The snapshot is stored: a lock that cannot be deleted (a region went down) only
    // delays prunes until they judge it stale.
    if let Err(e) = lock.release() {
        progress.warn(&format!("could not remove this backup's lock: {e}"));
    }
    Ok(BackupOutcome { id, snapshot })
}

/// The snapshot to compare against: the one asked for, or the newest with the same host and
/// the same paths.
fn find_parent(
    repo: &Repository,
    opts: &BackupOptions,
    paths: &[Vec<u8>],
) -> Result<Option<(SnapshotId, Snapshot)>> {
    // A damaged snapshot cannot be a parent, and must not block new backups.
    let (snaps, _damaged) = repo.readable_snapshots()?;
    if let Some(want) = opts.parent {
        return match snaps.into_iter().find(|(id, _)| *id == want) {
            Some(s) => Ok(Some(s)),
            None => Err(Error::not_found(format!(
                "parent snapshot {} not found",
                want.short()
            ))),
        };
    }
    Ok(snaps
        .into_iter()
        .rev()
        .find(|(_, s)| s.source == "files" && s.host == opts.host && s.paths == paths))
}
