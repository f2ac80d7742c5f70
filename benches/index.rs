//! The blob index at scale: memory and lookup speed for millions of chunks.
//!
//! `cargo bench --bench index` builds an index of `COFFER_BENCH_BLOBS` blobs (default
//! 10,000,000: 4 KiB dump chunks, 256 per 1 MiB frame, 16 frames per pack, 16 packs per
//! index file, as a backup writes them), through the real path: index files stored in the
//! SQLite cache, then loaded into memory. It prints the index's own size, the process's
//! resident memory and the load time, then criterion measures lookups of present and absent
//! IDs. `cargo test --all-targets` runs it as a smoke test with 100,000 blobs.

use coffer::format::index::{IndexFile, IndexPack};
use coffer::format::pack::{Frame, FrameBlob};
use coffer::format::BlobType;
use coffer::id::{BlobId, IndexId, PackId, RepoId};
use coffer::index::cache::Cache;
use coffer::index::Index;
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Instant;

const BLOBS_PER_FRAME: u32 = 256;
const FRAMES_PER_PACK: u32 = 16;
const PACKS_PER_INDEX: u32 = 16;

fn blob_id(n: u64) -> BlobId {
    BlobId(*blake3::hash(&n.to_le_bytes()).as_bytes())
}

/// Memory figures of this process from /proc (kB): (resident now, peak resident).
fn rss_kb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One index file of synthetic packs, numbering blobs from `first`.
fn index_file(file: u64, first: &mut u64, left: &mut u64) -> IndexFile {
    let mut packs = Vec::new();
    for p in 0..PACKS_PER_INDEX as u64 {
        let mut frames = Vec::new();
        for _ in 0..FRAMES_PER_PACK {
            let n = (*left).min(BLOBS_PER_FRAME as u64);
            if n == 0 {
                break;
            }
            let blobs = (0..n)
                .map(|k| FrameBlob {
                    id: blob_id(*first + k),
                    raw_length: 4096,
                })
                .collect();
            *first += n;
            *left -= n;
            frames.push(Frame {
                blob_type: BlobType::Data,
                length: 300_000,
                blobs,
            });
        }
        if frames.is_empty() {
            break;
        }
        packs.push(IndexPack {
            id: PackId(*blake3::hash(&(file * 1000 + p).to_be_bytes()).as_bytes()),
            size: 300_000 * frames.len() as u64 + 100_000,
            frames,
        });
    }
    IndexFile {
        supersedes: vec![],
        packs,
    }
}

fn build(count: u64) -> (Index, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = RepoId([7; 32]);
    let mut cache = Cache::open(dir.path(), &repo).expect("cache");
    let (mut first, mut left, mut file) = (0u64, count, 0u64);
    let started = Instant::now();
    while left > 0 {
        // Add in batches of 64 files, as a first open of a big repository would.
        let mut batch: Vec<(IndexId, IndexFile)> = Vec::new();
        while batch.len() < 64 && left > 0 {
            file += 1;
            let f = index_file(file, &mut first, &mut left);
            batch.push((IndexId(*blake3::hash(&file.to_le_bytes()).as_bytes()), f));
        }
        let refs: Vec<_> = batch.iter().map(|(id, f)| (*id, f)).collect();
        cache.add_indexes(&refs).expect("add");
    }
    eprintln!(
        "index bench: {count} blobs in {file} index files written to the cache in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (before, _) = rss_kb();
    let started = Instant::now();
    let index = cache
        .load_index(&Default::default(), &Default::default())
        .expect("load");
    let load = started.elapsed().as_secs_f64();
    let (after, peak) = rss_kb();
    eprintln!(
        "index bench: loaded in {load:.1} s; index tables {:.0} MB ({:.1} bytes per blob); \
         resident before load {:.0} MB, after {:.0} MB; peak resident {:.0} MB",
        index.memory_bytes() as f64 / 1e6,
        index.memory_bytes() as f64 / count as f64,
        before as f64 / 1e3,
        after as f64 / 1e3,
        peak as f64 / 1e3,
    );
    assert_eq!(index.blob_count() as u64, count);
    (index, dir)
}

fn lookups(c: &mut Criterion) {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this as a smoke test,
    // which must stay small.
    let full = std::env::args().any(|a| a == "--bench");
    let count: u64 = std::env::var("COFFER_BENCH_BLOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 10_000_000 } else { 100_000 });
    let (index, _dir) = build(count);
    let mut g = c.benchmark_group("index");
    let mut k = 0u64;
    g.bench_function(format!("lookup present ({count} blobs)"), |b| {
        b.iter(|| {
            k = (k + 7919) % count;
            assert!(index.get(&blob_id(k)).is_some());
        })
    });
    g.bench_function(format!("lookup absent ({count} blobs)"), |b| {
        b.iter(|| {
            k += 1;
            assert!(!index.contains(&blob_id(count + k)));
        })
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
