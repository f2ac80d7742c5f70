//! Chunk a byte stream and store its chunks, several chunks at a time in parallel.

use super::profile;
use crate::chunker::{chunk_slice, chunk_stream, ChunkerParams, Gear};
use crate::error::{Error, ErrorKind, Result};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::progress::Progress;
use crate::repo::{BlobSaver, Repository};
use rayon::prelude::*;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

/// Chunks are hashed, compressed and sealed in batches of about this many bytes; the batch
/// bounds the memory one stream holds while both cores work on it.
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Store everything `reader` yields; returns the chunk IDs in order and the byte count.
pub fn store_stream<R: Read>(
    saver: &BlobSaver,
    reader: R,
    params: ChunkerParams,
    gear: &Gear,
    cancel: &AtomicBool,
    progress: &dyn Progress,
) -> Result<(Vec<BlobId>, u64)> {
    let mut ids = Vec::new();
    let mut total = 0u64;
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0usize;
    let flush = |batch: &mut Vec<Vec<u8>>, ids: &mut Vec<BlobId>| -> Result<()> {
        let saved: Result<Vec<BlobId>> = batch
            .par_iter()
            .map(|chunk| {
                let id = saver.save(BlobType::Data, chunk)?;
                progress.advance(chunk.len() as u64);
                Ok(id)
            })
            .collect();
        ids.extend(saved?);
        batch.clear();
        Ok(())
    };
    chunk_stream(reader, params, gear, |chunk| {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
        }
        total += chunk.len() as u64;
        batch_bytes += chunk.len();
        batch.push(chunk);
        if batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            flush(&mut batch, &mut ids)?;
        }
        Ok(())
    })?;
    flush(&mut batch, &mut ids)?;
    Ok((ids, total))
}

/// Store a small file's bytes, already in memory; returns the chunk IDs in order.
pub fn store_bytes(
    saver: &BlobSaver,
    data: &[u8],
    params: ChunkerParams,
    gear: &Gear,
    progress: &dyn Progress,
) -> Result<Vec<BlobId>> {
    let mut chunks = Vec::new();
    chunk_slice(data, params, gear, |c| {
        chunks.push(c);
        Ok(())
    })?;
    let save = |c: &&[u8]| {
        let id = saver.save(BlobType::Data, c)?;
        progress.advance(c.len() as u64);
        Ok(id)
    };
    if chunks.len() == 1 {
        return chunks.iter().map(save).collect();
    }
    chunks.par_iter().map(save).collect()
}

/// Store an open file's content, expected to be `size` bytes, with the profile its size and
/// first bytes call for (`profile.rs`); returns the chunk IDs and the byte count. A file
/// that grew or shrank meanwhile is read to its end: the count is what was stored.
pub fn store_file(
    repo: &Repository,
    saver: &BlobSaver,
    file: std::fs::File,
    size: u64,
    cancel: &AtomicBool,
    progress: &dyn Progress,
) -> Result<(Vec<BlobId>, u64)> {
    let config = repo.config();
    let gear = repo.keys().chunker_gear();
    if size <= config.files_chunker.max as u64 {
        let data = read_small(file, size)?;
        let params = profile::for_content(config, data.len() as u64, &data);
        let ids = store_bytes(saver, &data, params, gear, progress)?;
        return Ok((ids, data.len() as u64));
    }
    let (head, whole) = profile::sniff(file).map_err(|e| Error::io("reading", e))?;
    let params = profile::for_content(config, size, &head);
    store_stream(saver, whole, params, gear, cancel, progress)
}

/// Read a file expected to be `size` bytes, to its end.
fn read_small(mut file: std::fs::File, size: u64) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(size as usize);
    file.read_to_end(&mut data)
        .map_err(|e| Error::io("reading", e))?;
    Ok(data)
}
