//! Throughput of each pipeline stage and of a whole backup, in MB/s (criterion prints
//! "thrpt"). Run with `cargo bench --bench pipeline`; CI runs a smoke pass with `--test`.

use coffer::backend::{self, Location};
use coffer::backup::{backup, BackupOptions, Source};
use coffer::chunker::{chunk_stream, ChunkerParams};
use coffer::clock::SystemClock;
use coffer::crypto::{KdfParams, Keys, MasterSecret};
use coffer::progress::NoProgress;
use coffer::repo::{OpenOptions, Repository};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const MB: usize = 1 << 20;

/// Text-like data that compresses about as well as logs or SQL dumps.
fn compressible(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let words = [
        &b"INSERT "[..],
        b"INTO ",
        b"users ",
        b"VALUES ",
        b"('alice', ",
        b"42, ",
        b"NULL), ",
        b"\n",
    ];
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % words.len() as u64) as usize]);
        out.extend_from_slice(format!("{}", x % 100_000).as_bytes());
    }
    out.truncate(n);
    out
}

fn random(n: usize) -> Vec<u8> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn stages(c: &mut Criterion) {
    let data = compressible(64 * MB);
    let keys = Keys::derive(&MasterSecret::from_bytes([1; 32]));
    let mut g = c.benchmark_group("stages");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    for (name, params) in [
        ("chunk files profile", ChunkerParams::FILES),
        ("chunk stream profile", ChunkerParams::STREAM),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0;
                chunk_stream(&data[..], params, keys.chunker_gear(), |c| {
                    n += c.len();
                    Ok(())
                })
                .unwrap();
                n
            })
        });
    }
    g.bench_function("keyed blake3", |b| b.iter(|| keys.blob_id(0, &data)));
    // zstd is slow enough that 8 MiB makes a stable sample; throughput follows the input.
    g.throughput(Throughput::Bytes(8 * MB as u64));
    g.bench_function("zstd -3", |b| {
        b.iter(|| coffer::compress::compress(&data[..8 * MB], 3))
    });
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("seal xchacha20-poly1305", |b| {
        b.iter(|| keys.seal(b"bench", &data))
    });
    g.finish();
}

fn whole_backup(c: &mut Criterion) {
    // A tree in /dev/shm (memory) backed up into the memory backend: no disk in the loop.
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm"
    } else {
        "/tmp"
    };
    let dir = tempfile::tempdir_in(base).unwrap();
    let mut total = 0u64;
    for d in 0..20 {
        let sub = dir.path().join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..50 {
            let data = if f % 2 == 0 {
                compressible(40_000 + f * 997)
            } else {
                random(20_000 + f * 13)
            };
            total += data.len() as u64;
            std::fs::write(sub.join(format!("f{f}")), data).unwrap();
        }
        let big = compressible(4 * MB + d);
        total += big.len() as u64;
        std::fs::write(sub.join("big"), big).unwrap();
    }
    let mut g = c.benchmark_group("backup");
    g.throughput(Throughput::Bytes(total));
    g.sample_size(10);
    g.bench_function("first backup of an in-memory tree", |b| {
        b.iter(|| {
            let be = backend::open(&Location::Memory).unwrap();
            let opts = || OpenOptions {
                cache_dir: None,
                clock: Arc::new(SystemClock),
                host: "bench".into(),
                user: "bench".into(),
                warn: Arc::new(|_: &str| {}),
                kdf_limit: coffer::crypto::KdfLimit::DEFAULT,
            };
            let kdf = KdfParams {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            };
            Repository::init(be.clone(), b"pw", kdf, &opts()).unwrap();
            let repo = Repository::open(be, b"pw", opts()).unwrap();
            let cancel = AtomicBool::new(false);
            let bo = BackupOptions {
                host: "bench".into(),
                ..Default::default()
            };
            backup(
                &repo,
                Source::Paths(vec![dir.path().to_path_buf()]),
                &bo,
                &NoProgress,
                &cancel,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, stages, whole_backup);
criterion_main!(benches);
