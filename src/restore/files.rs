//! Writing regular files pack by pack: every pack that holds needed blobs is fetched once
//! (as few byte ranges as possible), each blob in it is decrypted and verified once, and its
//! bytes are written at their offsets into every file that uses them. A blob that cannot
//! be read fails only the files that need it.
//!
//! Every file is created first, empty and at its final size, with
//! `openat(O_CREAT|O_EXCL|O_NOFOLLOW)` and mode 0600 in its folder's descriptor; its device
//! and inode are recorded. Its descriptor stays open (in a bounded cache) while its blobs
//! land; one that fell out of the cache is reopened with `O_NOFOLLOW` in the folder and
//! must be the same inode. Owner, mode and mtime are set on the descriptor when the last
//! chunk has landed; a file that fails stays 0600.

use super::at::{self, FileId};
use super::dirs::{Dir, DirTree};
use super::fdcache::FdCache;
use super::meta::{self, Owners};
use super::stop::Stop;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::Node;
use crate::format::BlobType;
use crate::id::{BlobId, PackId};
use crate::index::{fetch_runs, BlobLocation};
use crate::progress::Progress;
use crate::repo::Repository;
use rayon::prelude::*;
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Files kept open while their blobs land.
const OPEN_FILES: usize = 256;

/// One file to write: its name in folder `dir`.
pub struct FileTask<'a> {
    pub dir: Dir,
    pub node: &'a Node,
}

/// What the restore of the file-writing stage needs to share.
pub(super) struct Place<'a> {
    pub dirs: &'a DirTree,
    pub owners: &'a Owners,
    pub stop: &'a Stop,
}

/// A blob needed by the restore and where its bytes go: (file task, offset in file).
struct BlobUse {
    id: BlobId,
    loc: BlobLocation,
    targets: Vec<(usize, u64)>,
}

struct State<'a> {
    tasks: &'a [FileTask<'a>],
    place: &'a Place<'a>,
    /// Chunks still to be written, per file.
    remaining: Vec<AtomicUsize>,
    /// The first error of each file, if any.
    errors: Vec<Mutex<Option<String>>>,
    /// Device and inode of each file created.
    ids: Vec<OnceLock<FileId>>,
    open: Mutex<FdCache>,
}

impl State<'_> {
    fn fail(&self, file: usize, why: &str) {
        let mut e = self.errors[file].lock().unwrap_or_else(|e| e.into_inner());
        if e.is_none() {
            *e = Some(why.to_string());
        }
    }
    fn fail_io(&self, file: usize, e: std::io::Error) {
        self.place.stop.fatal(&e);
        self.fail(file, &e.to_string());
    }
    fn failed(&self, file: usize) -> bool {
        self.errors[file]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }
    fn cache(&self) -> std::sync::MutexGuard<'_, FdCache> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open descriptor of `file`: cached, or reopened in its folder and checked.
    fn descriptor(&self, file: usize) -> std::io::Result<Arc<OwnedFd>> {
        if let Some(fd) = self.cache().get(file) {
            return Ok(fd);
        }
        let task = &self.tasks[file];
        let dir = self.place.dirs.get(task.dir)?;
        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&*dir, task.node.name.as_slice(), flags, Mode::empty())?;
        if Some(at::file_id(fd.as_fd())?) != self.ids[file].get().copied() {
            return Err(at::replaced());
        }
        let fd = Arc::new(fd);
        self.cache().insert(file, fd.clone());
        Ok(fd)
    }

    /// Create `file` empty at its final size, private, and record it.
    fn create(&self, file: usize) -> std::io::Result<()> {
        let task = &self.tasks[file];
        let dir = self.place.dirs.get(task.dir)?;
        let fd = create_file(dir.as_fd(), &task.node.name)?;
        let _ = self.ids[file].set(at::file_id(fd.as_fd())?);
        if task.node.size > 0 {
            rustix::fs::ftruncate(&fd, task.node.size)?;
        }
        if self.remaining[file].load(Ordering::Relaxed) == 0 {
            return meta::apply_fd(fd.as_fd(), task.node, self.place.owners);
        }
        self.cache().insert(file, Arc::new(fd));
        Ok(())
    }

    /// The last chunk of a file has been written: set its metadata (unless it failed),
    /// and close it.
    fn finish(&self, file: usize) {
        if !self.failed(file) {
            let done = self.descriptor(file).and_then(|fd| {
                meta::apply_fd(fd.as_fd(), self.tasks[file].node, self.place.owners)
            });
            if let Err(e) = done {
                self.fail_io(file, e);
            }
        }
        self.cache().remove(file);
    }
}

/// `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`, mode 0600. Whatever non-folder is in the way (a
/// file from an earlier restore, or a symlink) is removed first, never written through.
pub(super) fn create_file(dir: BorrowedFd, name: &[u8]) -> std::io::Result<OwnedFd> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mode = Mode::from_raw_mode(0o600);
    match rustix::fs::openat(dir, name, flags, mode) {
        Err(Errno::EXIST) => {
            remove_non_folder(dir, name)?;
            Ok(rustix::fs::openat(dir, name, flags, mode)?)
        }
        r => Ok(r?),
    }
}

/// Remove the entry `name` of `dir` unless it is a folder (which may hold anything: it is
/// left alone and the new entry fails).
pub(super) fn remove_non_folder(dir: BorrowedFd, name: &[u8]) -> std::io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => Err(std::io::Error::other(
            "a folder of that name is in the way; move it away and restore again",
        )),
        Err(e) => Err(e.into()),
    }
}

/// Write `tasks`; returns each file's device and inode (restored exactly, metadata set) or
/// its error.
pub(super) fn restore_files(
    repo: &Repository,
    tasks: &[FileTask],
    place: &Place,
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Vec<std::result::Result<FileId, String>>> {
    let index = repo.index()?;
    let state = State {
        tasks,
        place,
        remaining: tasks.iter().map(|_| AtomicUsize::new(0)).collect(),
        errors: tasks.iter().map(|_| Mutex::new(None)).collect(),
        ids: tasks.iter().map(|_| OnceLock::new()).collect(),
        open: Mutex::new(FdCache::new(OPEN_FILES)),
    };
    // Plan: which blobs from which packs, going where.
    let mut by_pack: HashMap<PackId, Vec<BlobUse>> = HashMap::new();
    let mut position: HashMap<BlobId, (PackId, usize)> = HashMap::new();
    for (i, t) in tasks.iter().enumerate() {
        let chunks = match repo.file_chunks(&t.node.content) {
            Ok(c) => c,
            Err(e) => {
                state.fail(i, &e.to_string());
                continue;
            }
        };
        let mut offset = 0u64;
        for id in chunks {
            let Some(loc) = index.get(&id).filter(|l| l.blob_type == BlobType::Data) else {
                state.fail(
                    i,
                    &crate::repo::not_in_index(BlobType::Data, &id).to_string(),
                );
                break;
            };
            let (pack, k) = *position.entry(id).or_insert_with(|| {
                let uses = by_pack.entry(loc.pack).or_default();
                uses.push(BlobUse {
                    id,
                    loc,
                    targets: vec![],
                });
                (loc.pack, uses.len() - 1)
            });
            by_pack.get_mut(&pack).expect("planned pack")[k]
                .targets
                .push((i, offset));
            state.remaining[i].fetch_add(1, Ordering::Relaxed);
            offset += loc.raw_length as u64;
        }
        if offset != t.node.size && !state.failed(i) {
            state.fail(
                i,
                &format!(
                    "its chunks hold {offset} bytes but the snapshot records {}",
                    t.node.size
                ),
            );
        }
    }
    // Create every file; files without chunks are finished at once.
    for i in 0..tasks.len() {
        if place.stop.stopped() || cancel.load(Ordering::Relaxed) {
            break;
        }
        if !state.failed(i) {
            if let Err(e) = state.create(i) {
                state.fail_io(i, e);
            }
        }
    }
    let mut packs: Vec<(PackId, Vec<BlobUse>)> = by_pack.into_iter().collect();
    packs.sort_by_key(|(id, _)| *id);
    let go_on = || !cancel.load(Ordering::Relaxed) && !place.stop.stopped();
    packs.par_iter_mut().for_each(|(_, uses)| {
        uses.sort_by_key(|u| (u.loc.frame_offset, u.loc.offset));
        for segment in fetch_runs(uses, |u| &u.loc) {
            if !go_on() {
                return;
            }
            restore_segment(repo, segment, &state, progress);
        }
    });
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
    }
    Ok(state
        .errors
        .into_iter()
        .zip(state.ids)
        .map(
            |(e, id)| match e.into_inner().unwrap_or_else(|e| e.into_inner()) {
                Some(e) => Err(e),
                None => id.into_inner().ok_or_else(|| "not created".to_string()),
            },
        )
        .collect())
}

fn restore_segment(repo: &Repository, uses: &[BlobUse], state: &State, progress: &dyn Progress) {
    repo.open_run(
        uses,
        |u| (BlobType::Data, &u.id, &u.loc),
        |u, plain| {
            for (file, offset) in &u.targets {
                let written = match plain {
                    // Not written, so its final mode must not be set either.
                    Ok(_) if state.place.stop.stopped() => {
                        state.fail(*file, "not written: the restore stopped");
                        Ok(())
                    }
                    Ok(data) if !state.failed(*file) => state
                        .descriptor(*file)
                        .and_then(|fd| write_all_at(fd.as_fd(), data, *offset)),
                    Ok(_) => Ok(()),
                    Err(e) => {
                        state.fail(*file, &e.to_string());
                        Ok(())
                    }
                };
                match written {
                    Ok(()) => {
                        if let Ok(data) = plain {
                            progress.advance(data.len() as u64);
                        }
                    }
                    Err(e) => state.fail_io(*file, e),
                }
                if state.remaining[*file].fetch_sub(1, Ordering::AcqRel) == 1 {
                    state.finish(*file);
                }
            }
        },
    );
}

fn write_all_at(fd: BorrowedFd, mut data: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !data.is_empty() {
        match rustix::io::pwrite(fd, data, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
