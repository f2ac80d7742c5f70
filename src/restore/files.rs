//! Writing regular files pack by pack: every pack that holds needed blobs is fetched once
//! (as few byte ranges as possible), each blob in it is decrypted and verified once, and its
//! bytes are written at their offsets into every file that uses them. A file's metadata is
//! set when its last chunk has landed. A blob that cannot be read fails only the files
//! that need it.

use super::apply_metadata;
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::Node;
use crate::format::BlobType;
use crate::id::{BlobId, PackId};
use crate::index::{fetch_runs, BlobLocation};
use crate::progress::Progress;
use crate::repo::Repository;
use rayon::prelude::*;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// One file to write.
pub struct FileTask<'a> {
    pub path: PathBuf,
    pub node: &'a Node,
}

/// A blob needed by the restore and where its bytes go: (file task, offset in file).
struct BlobUse {
    id: BlobId,
    loc: BlobLocation,
    targets: Vec<(usize, u64)>,
}

struct State {
    /// Chunks still to be written, per file.
    remaining: Vec<AtomicUsize>,
    /// The first error of each file, if any.
    errors: Vec<Mutex<Option<String>>>,
}

impl State {
    fn fail(&self, file: usize, why: &str) {
        let mut e = self.errors[file].lock().expect("error lock");
        if e.is_none() {
            *e = Some(why.to_string());
        }
    }
    fn failed(&self, file: usize) -> bool {
        self.errors[file].lock().expect("error lock").is_some()
    }
}

/// Write `tasks`; returns each file's error (None = restored exactly, metadata set).
pub fn restore_files(
    repo: &Repository,
    tasks: &[FileTask],
    progress: &dyn Progress,
    cancel: &AtomicBool,
) -> Result<Vec<Option<String>>> {
    let index = repo.index()?;
    let state = State {
        remaining: tasks.iter().map(|_| AtomicUsize::new(0)).collect(),
        errors: tasks.iter().map(|_| Mutex::new(None)).collect(),
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
    // Create every file at its final size; files without chunks are finished at once.
    for (i, t) in tasks.iter().enumerate() {
        if state.failed(i) {
            continue;
        }
        let created = std::fs::File::create(&t.path).and_then(|f| f.set_len(t.node.size));
        if let Err(e) = created {
            state.fail(i, &e.to_string());
        } else if state.remaining[i].load(Ordering::Relaxed) == 0 {
            finish(&state, i, t);
        }
    }
    let mut packs: Vec<(PackId, Vec<BlobUse>)> = by_pack.into_iter().collect();
    packs.sort_by_key(|(id, _)| *id);
    packs.par_iter_mut().for_each(|(_, uses)| {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        uses.sort_by_key(|u| (u.loc.frame_offset, u.loc.offset));
        for segment in fetch_runs(uses, |u| &u.loc) {
            restore_segment(repo, segment, tasks, &state, progress);
        }
    });
    if cancel.load(Ordering::Relaxed) {
        return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
    }
    Ok(state
        .errors
        .into_iter()
        .map(|e| e.into_inner().expect("error lock"))
        .collect())
}

fn restore_segment(
    repo: &Repository,
    uses: &[BlobUse],
    tasks: &[FileTask],
    state: &State,
    progress: &dyn Progress,
) {
    repo.open_run(
        uses,
        |u| (BlobType::Data, &u.id, &u.loc),
        |u, plain| {
            for (file, offset) in &u.targets {
                let written = match plain {
                    Ok(data) if !state.failed(*file) => write_at(&tasks[*file].path, data, *offset),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.to_string()),
                };
                match written {
                    Ok(()) => {
                        if let Ok(data) = plain {
                            progress.advance(data.len() as u64);
                        }
                    }
                    Err(why) => state.fail(*file, &why),
                }
                if state.remaining[*file].fetch_sub(1, Ordering::AcqRel) == 1 {
                    finish(state, *file, &tasks[*file]);
                }
            }
        },
    );
}

fn write_at(path: &std::path::Path, data: &[u8], offset: u64) -> std::result::Result<(), String> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    f.write_all_at(data, offset).map_err(|e| e.to_string())
}

/// The last chunk of a file has been written: set its metadata (unless it failed).
fn finish(state: &State, file: usize, task: &FileTask) {
    if state.failed(file) {
        return;
    }
    if let Err(e) = apply_metadata(&task.path, task.node) {
        state.fail(file, &e.to_string());
    }
}
