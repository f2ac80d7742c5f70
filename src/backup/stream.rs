//! Chunk a byte stream and store its chunks, several chunks at a time in parallel.

use crate::chunker::{chunk_slice, chunk_stream, ChunkerParams, Gear};
use crate::error::{Error, ErrorKind, Result};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::progress::Progress;
use crate::repo::BlobSaver;
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
