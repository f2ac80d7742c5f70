//! Writes seed inputs for every fuzz target to `fuzz/seeds/<target>/`, built with coffer's own
//! encoders so the fuzzer starts from valid objects (several decoders have range and
//! ordering checks that random mutation takes a long time to satisfy). Each seed starts with
//! the target's mode byte (see the target's doc comment). Rerun after a format change:
//!
//!     cargo +nightly run --manifest-path fuzz/Cargo.toml --example gen_seeds
//!
//! Not a fuzz target: `cargo fuzz` builds only the `[[bin]]`s.

use coffer::crypto::{KdfParams, Keys, MasterSecret, NONCE_LEN};
use coffer::format::config::Config;
use coffer::format::gc::{Lock, LockKind, Plan, Wait};
use coffer::format::index::{IndexFile, IndexPack};
use coffer::format::keyfile::KeyFile;
use coffer::format::pack::{self, Frame, FrameBlob};
use coffer::format::report::{Report, ReportKind};
use coffer::format::snapshot::{Snapshot, Summary};
use coffer::format::tombstone::{BuriedKind, Tombstone};
use coffer::format::tree::{ChunkList, Content, Node, NodeKind, Tree};
use coffer::format::wal::{WalCodec, WalHeader, WalKind, PREFIX_LEN};
use coffer::format::BlobType;
use coffer::id::{BlobId, IndexId, PackId, RepoId, SnapshotId};
use coffer::wal::synthetic::{SegmentBuilder, RM_LOGICALMSG};
use std::fs;
use std::path::{Path, PathBuf};

/// Same as `fuzz_targets/common.rs`.
const NONCE: [u8; NONCE_LEN] = [0x5a; NONCE_LEN];
/// Same as `fuzz_targets/wal.rs`: the body box's nonce.
const BODY_NONCE: [u8; NONCE_LEN] = [0xa5; NONCE_LEN];

/// 4 KiB of a segment in pages of 1 KiB (segment 5 of timeline 1, 1 MiB segments): a message
/// that continues on the next page, commits and an abort, a commit whose record header is
/// split over two pages, and a switch.
fn wal_segment() -> Vec<u8> {
    let t = 1_795_000_000_123_456_000i64;
    let mut b = SegmentBuilder::new(0x1817_1615_1413_1211, 1, 5 << 20, 1 << 20, 1024, 4096, 0x4f_ffd0);
    b.record(RM_LOGICALMSG, 0, 700, &[7u8; 1500]);
    b.commit(700, t);
    b.abort(701, t - 1_000_000_000);
    // From 0x500690 (page 1), a record of 352 bytes (323 of data) puts the next commit 16
    // bytes before page 2.
    assert_eq!(b.record(RM_LOGICALMSG, 0, 702, &[9u8; 323]), 0x50_0690);
    assert_eq!(b.commit(702, t + 1_000), 0x50_07f0);
    b.switch();
    b.into_bytes()
}

fn write(dir: &Path, target: &str, name: &str, mode: Option<u8>, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).unwrap();
    let mut out = Vec::new();
    out.extend(mode);
    out.extend_from_slice(bytes);
    fs::write(d.join(name), out).unwrap();
}

/// The body of an envelope object: open the sealed part after `public_len` bytes.
fn body(keys: &Keys, bytes: &[u8], public_len: usize) -> Vec<u8> {
    keys.open(&bytes[..public_len], &bytes[public_len..]).unwrap()
}

fn id(b: u8) -> [u8; 32] {
    [b; 32]
}

fn node(name: &[u8], kind: NodeKind, content: Content) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_001,
        size: 4096,
        dev: 2049,
        inode: 42,
        nlink: 1,
        rdev: 0,
        link_target: if kind == NodeKind::Symlink { b"../target".to_vec() } else { vec![] },
        content,
    }
}

fn main() {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let keys = Keys::derive(&MasterSecret::from_bytes([7u8; 32]));

    // config: public = 37 bytes.
    let cfg = Config::new(RepoId(id(0x11))).encode(&keys, Some(NONCE));
    write(&dir, "config", "raw", Some(0), &cfg);
    write(&dir, "config", "body", Some(1), &body(&keys, &cfg, 37));

    // index: public = 5 bytes.
    let idx = IndexFile {
        supersedes: vec![IndexId(id(1)), IndexId(id(2))],
        packs: vec![
            IndexPack {
                id: PackId(id(3)),
                size: 1000,
                frames: vec![
                    Frame {
                        blob_type: BlobType::Data,
                        length: 100,
                        blobs: vec![
                            FrameBlob { id: BlobId(id(4)), raw_length: 200 },
                            FrameBlob { id: BlobId(id(16)), raw_length: 50 },
                        ],
                    },
                    Frame { blob_type: BlobType::Tree, length: 300, blobs: vec![FrameBlob { id: BlobId(id(5)), raw_length: 300 }] },
                ],
            },
            IndexPack { id: PackId(id(6)), size: 0, frames: vec![] },
        ],
    }
    .encode(&keys, Some(NONCE));
    write(&dir, "index", "raw", Some(0), &idx);
    write(&dir, "index", "body", Some(1), &body(&keys, &idx, 5));
    let empty = IndexFile::default().encode(&keys, Some(NONCE));
    write(&dir, "index", "body-empty", Some(1), &body(&keys, &empty, 5));

    // snapshot: public = 5 bytes.
    let snap = Snapshot {
        time_ns: 1_700_000_000_000_000_000,
        host: "host".into(),
        user: "user".into(),
        tags: vec!["daily".into(), "db".into()],
        paths: vec![b"/home".to_vec(), b"/etc/\xff".to_vec()],
        root: BlobId(id(8)),
        parent: Some(SnapshotId(id(9))),
        source: "files".into(),
        info: vec![("stdin-name".into(), "db.sql".into())],
        summary: Summary { files_new: 3, dirs: 2, total_bytes: 12345, ..Summary::default() },
    };
    let s = snap.encode(&keys, Some(NONCE));
    write(&dir, "snapshot", "raw", Some(0), &s);
    write(&dir, "snapshot", "body", Some(1), &body(&keys, &s, 5));
    let minimal = Snapshot { tags: vec![], paths: vec![], parent: None, info: vec![], ..snap };
    let s = minimal.encode(&keys, Some(NONCE));
    write(&dir, "snapshot", "body-minimal", Some(1), &body(&keys, &s, 5));

    // tree and chunk list: unsealed blob plaintexts, no mode byte.
    let tree = Tree::new(vec![
        node(b"a.txt", NodeKind::File, Content::Chunks(vec![BlobId(id(10)), BlobId(id(11))])),
        node(b"big.iso", NodeKind::File, Content::ChunkList { level: 1, id: BlobId(id(12)) }),
        node(b"dir", NodeKind::Dir, Content::Subtree(BlobId(id(13)))),
        node(b"empty", NodeKind::File, Content::Chunks(vec![])),
        node(b"fifo", NodeKind::Fifo, Content::None),
        node(b"link", NodeKind::Symlink, Content::None),
        node(b"sda", NodeKind::BlockDevice, Content::None),
        node(b"sock", NodeKind::Socket, Content::None),
        node(b"tty", NodeKind::CharDevice, Content::None),
    ])
    .unwrap();
    write(&dir, "tree", "tree", None, &tree.encode());
    write(&dir, "tree", "tree-empty", None, &Tree::default().encode());
    let list = ChunkList { level: 0, ids: vec![BlobId(id(14)), BlobId(id(15))] };
    write(&dir, "tree", "chunk-list", None, &list.encode());

    // pack_header: mode 0 a whole pack, mode 1 frames_len + header body. Two frames: data
    // (two blobs, zstd) and tree (one blob).
    let data = b"hello, pack".repeat(8);
    let more = b"and another chunk".repeat(5);
    let tree_bytes = tree.encode();
    let groups = [(BlobType::Data, vec![&data[..], &more[..]]), (BlobType::Tree, vec![&tree_bytes[..]])];
    let mut whole = Vec::new();
    let mut frames = Vec::new();
    for (t, blobs) in &groups {
        let sealed = pack::seal_frame(&keys, *t, &blobs.concat(), 3);
        whole.extend_from_slice(&sealed);
        frames.push(Frame {
            blob_type: *t,
            length: sealed.len() as u32,
            blobs: blobs.iter().map(|b| FrameBlob { id: keys.blob_id(*t as u8, b), raw_length: b.len() as u32 }).collect(),
        });
    }
    let header = pack::encode_header(&keys, &frames, Some(NONCE));
    let frames_len = whole.len() as u32;
    whole.extend_from_slice(&header);
    write(&dir, "pack_header", "pack", Some(0), &whole);
    let sealed_header = &header[..header.len() - pack::TRAILER_LEN];
    let mut h = frames_len.to_le_bytes().to_vec();
    h.extend(keys.open(b"coffer pack header v2", sealed_header).unwrap());
    write(&dir, "pack_header", "header", Some(1), &h);
    let empty_header = pack::encode_header(&keys, &[], Some(NONCE));
    let mut h = 0u32.to_le_bytes().to_vec();
    h.extend(keys.open(b"coffer pack header v2", &empty_header[..empty_header.len() - pack::TRAILER_LEN]).unwrap());
    write(&dir, "pack_header", "header-empty", Some(1), &h);

    // frame: type, codec, shape (blob count - 1 in the low bits), payload; no mode byte.
    let plain = [&data[..], &more[..]].concat();
    write(&dir, "frame", "stored", None, &[&[0u8, 0u8, 1u8][..], &plain].concat());
    write(&dir, "frame", "stored-tree", None, &[&[1u8, 0u8, 0u8][..], &tree_bytes].concat());
    let (codec, packed) = coffer::compress::compress(&plain, 3);
    write(&dir, "frame", "zstd", None, &[&[2u8, codec as u8, 3u8][..], &packed].concat());

    // keyfile: mode 0 a real key file with tiny argon2 params (so the target also unwraps it).
    let tiny = KdfParams { memory_kib: 8, iterations: 1, parallelism: 1 };
    let kf = KeyFile::create(&MasterSecret::from_bytes([9; 32]), b"pw", tiny, 1_700_000_000, "host", "user", Some(([3; 32], NONCE))).unwrap();
    write(&dir, "keyfile", "raw", Some(0), &kf.encode());
    // mode 1: memory, iterations, created_ns(8), flip_at(2), flip_mask, password, host, user.
    let mut c = vec![0u8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 0, 4, 2];
    c.extend_from_slice(b"pw");
    c.push(4);
    c.extend_from_slice(b"host");
    c.extend_from_slice(b"user");
    write(&dir, "keyfile", "create", Some(1), &c);

    // lock, plan, wait: public = 5 bytes each.
    let lock = Lock { operation: [0x11; 16], kind: LockKind::Prune, counter: 7, pid: 4242, host: "host".into() };
    let l = lock.encode(&keys, Some(NONCE));
    write(&dir, "lock", "raw", Some(0), &l);
    write(&dir, "lock", "body", Some(1), &body(&keys, &l, 5));
    let backup = Lock { kind: LockKind::Backup, counter: 0, host: String::new(), ..lock };
    write(&dir, "lock", "body-backup", Some(1), &body(&keys, &backup.encode(&keys, Some(NONCE)), 5));
    let plan = Plan { operation: [0x11; 16], packs: vec![PackId(id(0xc1)), PackId(id(0xc2))], indexes: vec![IndexId(id(0xd1))] };
    let p = plan.encode(&keys, Some(NONCE));
    write(&dir, "plan", "raw", Some(0), &p);
    write(&dir, "plan", "body", Some(1), &body(&keys, &p, 5));
    write(&dir, "plan", "body-empty", Some(1), &body(&keys, &Plan::default().encode(&keys, Some(NONCE)), 5));
    let wait = Wait { plan: coffer::id::object_hash(&p), operations: vec![[0x21; 16], [0x22; 16]] };
    let w = wait.encode(&keys, Some(NONCE));
    write(&dir, "wait", "raw", Some(0), &w);
    write(&dir, "wait", "body", Some(1), &body(&keys, &w, 5));
    write(&dir, "wait", "body-empty", Some(1), &body(&keys, &Wait::default().encode(&keys, Some(NONCE)), 5));

    // report: a passing drill with a target, and a failed check with nothing optional.
    let report = Report {
        kind: ReportKind::Drill,
        job: "app".into(),
        time_ns: 1_795_000_000_123_456_789,
        duration_ns: 83_250_000_000,
        ok: true,
        snapshots: vec![SnapshotId(id(0xab))],
        target_ns: Some(900_000_000_000),
        message: "restored".into(),
        info: vec![("files.bytes".into(), "2560".into())],
    };
    let r = report.encode(&keys, Some(NONCE));
    write(&dir, "report", "raw", Some(0), &r);
    write(&dir, "report", "body", Some(1), &body(&keys, &r, 5));
    let check = Report { kind: ReportKind::Check, ok: false, snapshots: vec![], target_ns: None, info: vec![], ..report };
    write(&dir, "report", "body-check", Some(1), &body(&keys, &check.encode(&keys, Some(NONCE)), 5));

    // tombstone: a key file and two snapshots; odd mode takes everything after "CFFT" 3,
    // the time last.
    let t = Tombstone::new(
        vec![(BuriedKind::Key, id(0x17)), (BuriedKind::Snapshot, id(0x4d)), (BuriedKind::Snapshot, id(0xab))],
        1_795_000_000_123_456_789,
    )
    .unwrap();
    let b = t.encode(&keys, Some(NONCE));
    write(&dir, "tombstone", "raw", Some(0), &b);
    let public_len = 9 + 33 * t.names.len();
    let sealed = [&b[5..public_len], &body(&keys, &b, public_len)[..]].concat();
    write(&dir, "tombstone", "sealed", Some(1), &sealed);

    // wal: one object of each kind, raw (mode 0), then as `n`, the header's plaintext and the
    // stored body, for the target to seal (mode 1) or to fix the size and hash of (mode 3).
    let seg = wal_segment();
    let wal_header = |kind, name: &str, file: &[u8], codec| WalHeader {
        kind,
        name: name.into(),
        system_id: 0x1817_1615_1413_1211,
        timeline: 1,
        start_lsn: if kind == WalKind::History { 0 } else { 5 << 20 },
        segment_size: match kind {
            WalKind::Segment => file.len() as u32,
            WalKind::Partial => 1 << 20,
            _ => 0,
        },
        size: file.len() as u64,
        hash: coffer::id::object_hash(file),
        mtime_ns: 1_795_000_000_123_456_789,
        pushed_ns: 1_795_000_001_123_456_789,
        commits: (kind == WalKind::Segment || kind == WalKind::Partial)
            .then_some((1_794_999_999_123_456_000, 1_795_000_000_123_457_000)),
        codec,
    };
    let history = b"1\t0/5000028\tno recovery target specified\n".to_vec();
    let backup = b"START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\nSTOP WAL LOCATION: 0/5000100 (file 000000010000000000000005)\nLABEL: seed\n".to_vec();
    let files = [
        ("partial-zstd", wal_header(WalKind::Partial, "000000010000000000000005.partial", &seg, WalCodec::Zstd), &seg),
        ("segment-raw", wal_header(WalKind::Segment, "000000010000000000000005", &seg, WalCodec::Raw), &seg),
        ("history-raw", wal_header(WalKind::History, "00000002.history", &history, WalCodec::Raw), &history),
        ("backup-zstd", wal_header(WalKind::Backup, "000000010000000000000005.00000028.backup", &backup, WalCodec::Zstd), &backup),
    ];
    for (name, h, file) in files {
        let stored = match h.codec {
            WalCodec::Raw => file.clone(),
            WalCodec::Zstd => zstd::bulk::compress(file, 1).unwrap(),
        };
        let obj = h.encode(&keys, &stored, Some((NONCE, BODY_NONCE))).unwrap();
        write(&dir, "wal", name, Some(0), &obj);
        let box_len = u16::from_le_bytes([obj[5], obj[6]]) as usize;
        let plain = keys.open(&obj[..PREFIX_LEN], &obj[PREFIX_LEN..PREFIX_LEN + box_len]).unwrap();
        let sealed = [&[plain.len() as u8][..], &plain, &stored].concat();
        write(&dir, "wal", &format!("{name}-sealed"), Some(1), &sealed);
        write(&dir, "wal", &format!("{name}-fixed"), Some(3), &sealed);
    }

    // wal_scan: the segment as it is (mode 0), and with the target writing the page headers
    // (mode 1, p = 0: pages of 1 KiB in segments of 1 MiB).
    write(&dir, "wal_scan", "segment", Some(0), &seg);
    write(&dir, "wal_scan", "segment-pages", Some(1), &[&[0u8][..], &seg].concat());

    println!("seeds written to {}", dir.display());
}
