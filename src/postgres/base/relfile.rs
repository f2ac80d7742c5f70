//! Relation files: cut at fixed, page-aligned boundaries, and each page's checksum verified
//! as it is read.
//!
//! A relation file is an array of pages that change in place. Cut every `block` bytes from
//! the start of the file (`layout::choose_block`), an unchanged block gives the same
//! chunk as in the last base backup, so a second backup stores little more than the blocks
//! that changed. Content-defined cuts would find the same boundaries only by luck: a page
//! is mostly fixed-layout binary data.
//!
//! The file is read while the server writes it. A page read halfway through a write is
//! torn; that is harmless for the restore (WAL replay rewrites every page changed since
//! the backup started, from a full-page image), and for the check a page whose checksum
//! fails is read once more before it is called bad, as `pg_basebackup` does.

use super::page::{self, Lsn, Verdict};
use crate::error::{Error, ErrorKind, Result};
use crate::format::BlobType;
use crate::id::BlobId;
use crate::progress::Progress;
use crate::repo::BlobSaver;
use rayon::prelude::*;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How many bytes of a file are read, then checked and stored in parallel, at a time.
const BATCH_BYTES: usize = 8 << 20;

/// What checking pages found, over the whole backup.
#[derive(Default)]
pub struct PageCounts {
    pub checked: AtomicU64,
    pub failures: AtomicU64,
}

/// How pages are read, checked and stored.
pub struct Relations<'a, 'r> {
    pub saver: &'a BlobSaver<'r>,
    /// Bytes per page.
    pub page: u32,
    /// Files are cut every this many bytes: a whole number of pages
    /// (`layout::choose_block`).
    pub block: u32,
    /// Pages per segment file: block numbers continue from one segment to the next.
    pub segment_pages: u32,
    /// Verify checksums (the cluster has them).
    pub verify: bool,
    /// The backup's start: pages written since are not checked.
    pub start: Lsn,
    pub counts: &'a PageCounts,
    pub cancel: &'a AtomicBool,
    pub progress: &'a dyn Progress,
}

impl Relations<'_, '_> {
    /// Store the relation file `file` (segment `segment`; `name` for messages). Returns the
    /// chunk IDs and the bytes stored: the file may shrink (vacuum truncates relations) or
    /// grow while it is read, and what was read is stored.
    pub fn store(&self, file: &File, segment: u32, name: &str) -> Result<(Vec<BlobId>, u64)> {
        let block = self.block as usize;
        let batch_len = (BATCH_BYTES / block).max(1) * block;
        let mut ids = Vec::new();
        let mut offset = 0u64;
        let mut buf = vec![0u8; batch_len];
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::new(ErrorKind::Interrupted, "interrupted"));
            }
            let n = read_full(file, &mut buf, offset).map_err(|e| Error::io(name, e))?;
            if n == 0 {
                break;
            }
            let saved: Result<Vec<BlobId>> = buf[..n]
                .par_chunks_mut(block)
                .enumerate()
                .map(|(i, chunk)| {
                    if self.verify {
                        let at = offset + (i * block) as u64;
                        self.check_pages(file, chunk, at, segment, name)?;
                    }
                    let id = self.saver.save(BlobType::Data, chunk)?;
                    self.progress.advance(chunk.len() as u64);
                    Ok(id)
                })
                .collect();
            ids.extend(saved?);
            offset += n as u64;
            if n < batch_len {
                break;
            }
        }
        Ok((ids, offset))
    }

    /// Check every whole page of `chunk`, which starts at byte `at` of the file. A page
    /// that fails is read again once; the second reading replaces the first in the chunk
    /// (it is as good a copy, and the one that was checked). A trailing partial page (the
    /// file is being extended) is not checked: WAL replay completes it.
    fn check_pages(
        &self,
        file: &File,
        chunk: &mut [u8],
        at: u64,
        segment: u32,
        name: &str,
    ) -> Result<()> {
        let page_len = self.page as usize;
        for (i, page) in chunk.chunks_exact_mut(page_len).enumerate() {
            let page_at = at + (i * page_len) as u64;
            let in_file = (page_at / page_len as u64) as u32;
            let blkno = segment
                .wrapping_mul(self.segment_pages)
                .wrapping_add(in_file);
            let mut verdict = page::verify(page, blkno, self.start);
            if let Verdict::Bad { .. } = verdict {
                let mut again = vec![0u8; page_len];
                let n = read_full(file, &mut again, page_at).map_err(|e| Error::io(name, e))?;
                if n < page_len {
                    // Truncated away since (vacuum): nothing of it is restored.
                    continue;
                }
                page.copy_from_slice(&again);
                verdict = page::verify(page, blkno, self.start);
            }
            match verdict {
                Verdict::Good => {
                    self.counts.checked.fetch_add(1, Ordering::Relaxed);
                }
                Verdict::Bad { stored, computed } => {
                    self.counts.checked.fetch_add(1, Ordering::Relaxed);
                    self.counts.failures.fetch_add(1, Ordering::Relaxed);
                    let why = if page::is_new(page) {
                        "an uninitialised page holds data".to_string()
                    } else {
                        format!("checksum {stored:#06x} stored, {computed:#06x} computed")
                    };
                    self.progress.warn(&format!(
                        "{name}: block {in_file}: page checksum verification failed ({why})"
                    ));
                }
                Verdict::Empty | Verdict::Recent => {}
            }
        }
        Ok(())
    }
}

/// Read from `offset` until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(k) => done += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
