//! The test vectors in `format-spec/vectors/`, tied to the code byte for byte.
//!
//! Every normal run only *reads* the vector files: it decodes each one with the fixed key and
//! compares the fields with the values written out below, re-encodes them with the same fixed
//! nonces and compares the bytes, checks the object names listed in the vectors README, and
//! rebuilds the vectors a second time from the spec alone (raw BLAKE3, XChaCha20-Poly1305,
//! argon2 and zstd calls, no coffer encoder) so that the spec text and the code cannot drift
//! apart. If the code changes the bytes, these tests fail.
//!
//! After a deliberate format change (only ever with a version bump, see
//! `format-spec/README.md` §7), rewrite the files and the README table with:
//! `cargo test --test vectors -- --ignored regenerate`
//! then update the literal values below (and the IDs in the README's "Fixed inputs") from what
//! that run prints.

use coffer::backend::{ObjectKind, ObjectName};
use coffer::chunker::{chunk_stream, ChunkerParams, Gear};
use coffer::compress::Codec;
use coffer::crypto::{KdfParams, Keys, MasterSecret, NONCE_LEN};
use coffer::format::config::Config;
use coffer::format::gc::{Lock, LockKind, OperationId, Plan, Wait};
use coffer::format::index::{IndexFile, IndexPack};
use coffer::format::keyfile::KeyFile;
use coffer::format::pack::{self, Frame, FrameBlob};
use coffer::format::report::{Report, ReportKind};
use coffer::format::snapshot::{Snapshot, Summary};
use coffer::format::tombstone::{BuriedKind, Tombstone};
use coffer::format::tree::{ChunkList, Content, Node, NodeKind, Tree};
use coffer::format::wal::{WalCodec, WalHeader, WalKind, HEAD_LEN};
use coffer::format::BlobType;
use coffer::id::{object_hash, BlobId, IndexId, PackId, RepoId, SnapshotId};
use coffer::wal::scan::{self, SegmentHead};
use coffer::wal::synthetic::{SegmentBuilder, RM_LOGICALMSG};
use coffer::{ErrorKind, Result};
use std::path::PathBuf;

// ---------------------------------------------------------------------------------------------
// Fixed inputs (documented in format-spec/vectors/README.md).

/// The master secret: bytes 0x00, 0x01, ..., 0x1f.
fn master_bytes() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}
const PASSWORD: &[u8] = b"coffer test vectors";
/// The key file's argon2 salt: bytes 0x20, ..., 0x3f.
fn salt() -> [u8; 32] {
    std::array::from_fn(|i| 0x20 + i as u8)
}
/// The repository ID: bytes 0x40, ..., 0x5f.
fn repo_id() -> RepoId {
    RepoId(std::array::from_fn(|i| 0x40 + i as u8))
}
/// Each sealed box gets its own nonce: 24 copies of one byte.
fn nonce(n: u8) -> [u8; NONCE_LEN] {
    [n; NONCE_LEN]
}
const N_CONFIG: u8 = 1;
const N_KEY: u8 = 2;
const N_FRAME0: u8 = 3;
const N_FRAME1: u8 = 4;
const N_FRAME2: u8 = 5;
const N_HEADER: u8 = 6;
const N_INDEX: u8 = 7;
const N_SNAPSHOT: u8 = 8;
const N_LOCK: u8 = 9;
const N_PLAN: u8 = 10;
const N_WAIT: u8 = 11;
const N_REPORT: u8 = 12;
const N_TOMBSTONE: u8 = 13;
const N_WAL_HEADER: u8 = 14;
const N_WAL_BODY: u8 = 15;
const KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};
/// 2026-11-18T11:06:40.123456789Z in nanoseconds since the Unix epoch.
const T0: i64 = 1_795_000_000_123_456_789;

/// The operation of the lock and the plan (a prune): 16 bytes 0x11.
const PRUNE_OP: OperationId = [0x11; 16];
/// The two operations (backups) the wait record names: 16 bytes 0x21, 16 bytes 0x22.
const BACKUP_OPS: [OperationId; 2] = [[0x21; 16], [0x22; 16]];
/// The plan's packs (32 bytes 0xc1, 32 bytes 0xc2) and index file (32 bytes 0xd1).
const PLAN_PACKS: [[u8; 32]; 2] = [[0xc1; 32], [0xc2; 32]];
const PLAN_INDEX: [u8; 32] = [0xd1; 32];
/// The report's drill: 83.25 s against an RTO target of 15 minutes.
const DRILL_NS: u64 = 83_250_000_000;
const RTO_NS: u64 = 900_000_000_000;
const REPORT_MESSAGE: &str = "restored and verified 2 sources";

/// The WAL segment (`wal.bin`): segment 3 of timeline 1, in segments of 64 KiB (a size the
/// format accepts, smaller than PostgreSQL's smallest, to keep the vector small) and pages
/// of 8 KiB, of the cluster whose system identifier is stored as the bytes 11 12 … 18.
const WAL_NAME: &str = "000000010000000000000003";
const WAL_SYSTEM_ID: u64 = 0x1817_1615_1413_1211;
const WAL_SEGMENT_SIZE: u32 = 65_536;
const WAL_PAGE_SIZE: u32 = 8192;
const WAL_START: u64 = 3 * WAL_SEGMENT_SIZE as u64;
/// `xl_prev` of the segment's first record: an address in segment 2.
const WAL_FIRST_PREV: u64 = 0x2_ffd0;
/// T0 cut to the microsecond (PostgreSQL's times are microseconds), and one second.
const TA: i64 = T0 - T0 % 1000;
const SECOND: i64 = 1_000_000_000;
/// zstd level of the WAL body: what `wal-push` uses.
const WAL_ZSTD_LEVEL: i32 = 1;

/// The data chunk stored first in the pack's data frame (frame 0, zstd).
fn chunk_a() -> Vec<u8> {
    b"coffer test vector: a compressible line\n".repeat(32)
}

// ---------------------------------------------------------------------------------------------
// Literal expected values: keyed blob IDs and sizes. `regenerate` prints them.

const CHUNK_A_LEN: u32 = 1280;
const CHUNK_A_ID: &str = "4395d7d3aca7aeeae8990ef43f9ce8a5d865ef88985acbbe018d65e3516e59a6";
const EMPTY_TREE_ID: &str = "8eb71d7075ef915ba5da8511598f591d37cb4c04f131d4c084e73ec5b1a10516";
const CHUNK_LIST_ID: &str = "fd2a8aa6501eb3cb1aa8483b5a3a620e3f910ff2439f4b83f6aab5ae0782d31a";
const TREE_ID: &str = "efa033bf599a74b4def7695d54bf95cbf4a01c631755c73a86d2a7315e5245a9";
/// The empty tree's 5 bytes (`01 00 00 00 00`) stored as a data chunk instead.
const EMPTY_TREE_AS_DATA_ID: &str =
    "eb1be96be67058de5775b00029dfbfc2c694e387c7bad6f986e7864b4edb8789";
const TREE_LEN: u32 = 924;
const CHUNK_LIST_LEN: u32 = 70;
/// Sealed lengths of the pack's three frames: 24 nonce + 1 codec + payload + 16 tag.
/// Frame 0 is zstd (chunk A ‖ the 5 empty-tree bytes as data), frames 1 (tree ‖ empty tree)
/// and 2 (the chunk list) are stored raw: 41 + 929 and 41 + 70.
const FRAME0_LEN: u32 = 105;
const FRAME1_LEN: u32 = 970;
const FRAME2_LEN: u32 = 111;
/// The sealed header: 24 + 4 + 3 × 9 (frames) + 5 × 36 (blobs) + 16.
const HEADER_LEN: u32 = 251;
const PACK_LEN: u64 = 1446;
const PACK_ID: &str = "eb3ff87153c287fc4d83e38e36df4368d3044812a038a90bc0b901f44c36f771";
/// The garbage-collection objects' lengths: 5 public bytes + 24 nonce + body + 16 tag, with
/// bodies of 16 + 1 + 8 + 4 + 2 + 11 (lock), 16 + 4 + 2 × 32 + 4 + 32 (plan) and
/// 32 + 4 + 2 × 16 (wait record).
const LOCK_LEN: usize = 87;
const PLAN_LEN: usize = 165;
const WAIT_LEN: usize = 113;
/// 5 + 24 + 16 around a body of 1 + (2 + 3) + 8 + 8 + 1 + (4 + 2 × 32) + (1 + 8) + (2 + 31)
/// + 2 + (2 + 11 + 2 + 4) + (2 + 4 + 2 + 9) (report).
const REPORT_LEN: usize = 216;
/// 5 (magic, version) + 4 (count) + 3 × 33 (names) + 24 + 8 (time) + 16 (tombstone).
const TOMBSTONE_LEN: usize = 156;
/// `wal.bin`: the addresses of the segment's six records, the BLAKE3 of the segment, the
/// header box (40 around 101 bytes of fixed fields and the 24-byte name) and the object.
const WAL_RECORD_LSNS: [u64; 6] = [0x3_0028, 0x3_2f40, 0x3_2f68, 0x3_2f90, 0x3_3ff0, 0x3_4030];
const WAL_SEGMENT_HASH: &str = "f25e7c7d6a89163c375636dc7fe822813793cca86471c9d5cac8a835caeb3140";
const WAL_BOX_LEN: usize = 165;
const WAL_LEN: usize = 705;
/// The name of `plan.bin` (the BLAKE3 of its bytes), which `wait.bin` names.
const PLAN_HASH: &str = "296203b7adc7f74e6dbf27864c1c43a45ea73b9f7b97b54b2d03334cf8da40b2";
/// The first and last entries of the fixed key's gear table (spec §4.1), and the chunk
/// lengths of `chunker_input()` with the pinned sizes and that table.
const GEAR_FIRST: u64 = 0xbd43_52cf_65dd_b482;
const GEAR_LAST: u64 = 0xc7ff_f548_ce24_83ab;
const CHUNK_LENGTHS: &[usize] = &[
    72983, 48082, 43545, 25657, 56836, 75150, 103292, 68936, 20822, 75532, 68292, 40399, 76800,
    137403, 117247, 17600,
];

/// Blob types, as the byte that starts the hashed input of a blob ID (spec §5.9).
const DATA: u8 = BlobType::Data as u8;
const TREE: u8 = BlobType::Tree as u8;
const CHUNK_LIST: u8 = BlobType::ChunkList as u8;

fn id(hex: &str) -> BlobId {
    BlobId::from_hex(hex).expect("a literal ID")
}

// ---------------------------------------------------------------------------------------------
// The expected contents, field by field.

fn keys() -> Keys {
    Keys::derive(&MasterSecret::from_bytes(master_bytes()))
}

fn expected_config() -> Config {
    Config {
        repo_id: repo_id(),
        files_chunker: ChunkerParams {
            min: 512 * 1024,
            avg: 1024 * 1024,
            max: 8 * 1024 * 1024,
        },
        stream_chunker: ChunkerParams {
            min: 16 * 1024,
            avg: 64 * 1024,
            max: 256 * 1024,
        },
        pack_target: 16 * 1024 * 1024,
        zstd_level: 3,
    }
}

fn expected_empty_tree() -> Tree {
    Tree { nodes: vec![] }
}

fn expected_chunk_list(keys: &Keys) -> ChunkList {
    let a = keys.blob_id(DATA, &chunk_a());
    ChunkList {
        level: 0,
        ids: vec![a, a],
    }
}

/// Defaults shared by the tree's nodes; each node overrides what makes it awkward.
fn node(name: &[u8], kind: NodeKind, content: Content) -> Node {
    Node {
        name: name.to_vec(),
        kind,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        mtime_ns: T0,
        ctime_ns: T0 + 1,
        size: 0,
        dev: 0x803,
        inode: 0,
        nlink: 1,
        rdev: 0,
        link_target: vec![],
        content,
    }
}

/// A directory with one node of every kind, in byte order of their names.
fn expected_tree(keys: &Keys) -> Tree {
    let a = keys.blob_id(DATA, &chunk_a());
    let list = keys.blob_id(CHUNK_LIST, &expected_chunk_list(keys).encode());
    let empty = keys.blob_id(TREE, &expected_empty_tree().encode());
    let nodes = vec![
        // A large file through a chunk list (whose two entries are the same chunk).
        Node {
            mode: 0o600,
            uid: 70,
            gid: 70,
            size: 2 * CHUNK_A_LEN as u64,
            inode: 11,
            ..node(
                b"big.sql",
                NodeKind::File,
                Content::ChunkList { level: 0, id: list },
            )
        },
        Node {
            mode: 0o660,
            uid: 0,
            gid: 6,
            inode: 12,
            rdev: 0x0800,
            ..node(b"blk", NodeKind::BlockDevice, Content::None)
        },
        // A name that is not UTF-8 (Latin-1 "café.txt"), hard-linked with "new\nline".
        Node {
            size: CHUNK_A_LEN as u64,
            inode: 13,
            nlink: 2,
            ..node(b"caf\xe9.txt", NodeKind::File, Content::Chunks(vec![a]))
        },
        // An empty file: no chunks at all; times before and at the epoch.
        Node {
            mtime_ns: -1,
            ctime_ns: 0,
            inode: 14,
            ..node(b"empty", NodeKind::File, Content::Chunks(vec![]))
        },
        Node {
            mode: 0o600,
            inode: 15,
            ..node(b"fifo", NodeKind::Fifo, Content::None)
        },
        // A symlink whose target is not UTF-8 either.
        Node {
            mode: 0o777,
            inode: 16,
            link_target: b"caf\xe9.txt".to_vec(),
            ..node(b"link", NodeKind::Symlink, Content::None)
        },
        // A name with a newline; the same inode as "caf\xe9.txt".
        Node {
            size: CHUNK_A_LEN as u64,
            inode: 13,
            nlink: 2,
            ..node(b"new\nline", NodeKind::File, Content::Chunks(vec![a]))
        },
        Node {
            mode: 0o666,
            uid: 0,
            gid: 0,
            inode: 17,
            rdev: 0x0103,
            ..node(b"null", NodeKind::CharDevice, Content::None)
        },
        Node {
            mode: 0o755,
            dev: u64::MAX,
            inode: 18,
            ..node(b"sock", NodeKind::Socket, Content::None)
        },
        // A sticky, world-writable directory owned by nobody.
        Node {
            mode: 0o1777,
            uid: 65534,
            gid: 65534,
            inode: 19,
            nlink: 2,
            ..node(b"sub", NodeKind::Dir, Content::Subtree(empty))
        },
    ];
    let tree = Tree::new(nodes.clone()).expect("a valid tree");
    assert_eq!(
        tree.nodes, nodes,
        "the literal nodes are already in byte order"
    );
    tree
}

fn expected_key_file() -> KeyFile {
    KeyFile::create(
        &MasterSecret::from_bytes(master_bytes()),
        PASSWORD,
        KDF,
        T0,
        "vector-host",
        "vector-user",
        Some((salt(), nonce(N_KEY))),
    )
    .expect("key file")
}

/// One frame of the pack vector: its type, codec, nonce and blobs (plaintexts, in order).
struct VectorFrame {
    blob_type: BlobType,
    codec: Codec,
    nonce: u8,
    blobs: Vec<Vec<u8>>,
}

impl VectorFrame {
    /// The frame's plaintext: its blobs back to back.
    fn plaintext(&self) -> Vec<u8> {
        self.blobs.concat()
    }
}

/// The pack's three frames, one per blob type. The data frame holds chunk A and the empty
/// tree's 5 bytes *as data*; the tree frame holds `tree.bin` and the empty tree itself, so
/// the same 5 bytes are stored twice under two typed IDs. The chunk-list frame holds
/// `chunklist.bin` alone. Together they are every blob the snapshot vector reaches.
fn vector_frames(keys: &Keys) -> Vec<VectorFrame> {
    let empty = expected_empty_tree().encode();
    vec![
        VectorFrame {
            blob_type: BlobType::Data,
            codec: Codec::Zstd,
            nonce: N_FRAME0,
            blobs: vec![chunk_a(), empty.clone()],
        },
        VectorFrame {
            blob_type: BlobType::Tree,
            codec: Codec::None,
            nonce: N_FRAME1,
            blobs: vec![expected_tree(keys).encode(), empty],
        },
        VectorFrame {
            blob_type: BlobType::ChunkList,
            codec: Codec::None,
            nonce: N_FRAME2,
            blobs: vec![expected_chunk_list(keys).encode()],
        },
    ]
}

/// The frames sealed with their fixed nonces.
fn sealed_frames(keys: &Keys) -> Vec<Vec<u8>> {
    vector_frames(keys)
        .iter()
        .map(|f| {
            pack::seal_frame_with_nonce(keys, f.blob_type, &f.plaintext(), f.codec, nonce(f.nonce))
        })
        .collect()
}

/// The frame descriptions of the pack header (and of the index), computed from the blobs
/// (the literal checks are in the tests).
fn expected_frames(keys: &Keys) -> Vec<Frame> {
    vector_frames(keys)
        .iter()
        .zip(sealed_frames(keys))
        .map(|(f, sealed)| Frame {
            blob_type: f.blob_type,
            length: sealed.len() as u32,
            blobs: f
                .blobs
                .iter()
                .map(|b| FrameBlob {
                    id: keys.blob_id(f.blob_type as u8, b),
                    raw_length: b.len() as u32,
                })
                .collect(),
        })
        .collect()
}

/// Pack = frame 0 (data, zstd) ‖ frame 1 (trees, raw) ‖ frame 2 (chunk list, raw) ‖
/// sealed header ‖ trailer.
fn encode_pack(keys: &Keys) -> Vec<u8> {
    let mut out = sealed_frames(keys).concat();
    out.extend_from_slice(&pack::encode_header(
        keys,
        &expected_frames(keys),
        Some(nonce(N_HEADER)),
    ));
    out
}

fn expected_index(keys: &Keys, pack_bytes: &[u8]) -> IndexFile {
    IndexFile {
        supersedes: vec![IndexId([0xe1; 32]), IndexId([0xe2; 32])],
        packs: vec![IndexPack {
            id: PackId(object_hash(pack_bytes)),
            size: pack_bytes.len() as u64,
            frames: expected_frames(keys),
        }],
    }
}

fn expected_snapshot(keys: &Keys) -> Snapshot {
    Snapshot {
        time_ns: T0,
        host: "vector-host".into(),
        user: "vector-user".into(),
        tags: vec!["nightly".into(), "vector".into()],
        paths: vec![b"/srv/app".to_vec(), b"/srv/caf\xe9".to_vec()],
        root: keys.blob_id(TREE, &expected_tree(keys).encode()),
        parent: Some(SnapshotId([0xab; 32])),
        source: "files".into(),
        info: vec![
            ("job".into(), "app".into()),
            ("note".into(), "ünïcode".into()),
        ],
        summary: Summary {
            files_new: 1,
            files_changed: 2,
            files_unmodified: 3,
            dirs: 4,
            read_errors: 5,
            total_bytes: 6,
            bytes_read: 7,
            blobs_added: 8,
            bytes_added_raw: 9,
            bytes_added_stored: 10,
            packs_added: 11,
            duration_ns: u64::MAX,
        },
    }
}

/// A prune's lock: the fields every lock has, none of them zero.
fn expected_lock() -> Lock {
    Lock {
        operation: PRUNE_OP,
        kind: LockKind::Prune,
        counter: 7,
        pid: 4242,
        host: "vector-host".into(),
    }
}

/// The prune's deletion plan: two packs and one index file.
fn expected_plan() -> Plan {
    Plan {
        operation: PRUNE_OP,
        packs: PLAN_PACKS.map(PackId).to_vec(),
        indexes: vec![IndexId(PLAN_INDEX)],
    }
}

/// The wait record of `plan.bin`: it names the plan by its object hash, and two backups.
fn expected_wait(plan_bytes: &[u8]) -> Wait {
    Wait {
        plan: object_hash(plan_bytes),
        operations: BACKUP_OPS.to_vec(),
    }
}

/// A passing drill of job `app` that restored `snapshot.bin` (named by its object hash) and
/// one more snapshot.
fn expected_report(snapshot_bytes: &[u8]) -> Report {
    Report {
        kind: ReportKind::Drill,
        job: "app".into(),
        time_ns: T0,
        duration_ns: DRILL_NS,
        ok: true,
        snapshots: vec![
            SnapshotId(object_hash(snapshot_bytes)),
            SnapshotId([0xab; 32]),
        ],
        target_ns: Some(RTO_NS),
        message: REPORT_MESSAGE.into(),
        info: vec![
            ("files.bytes".into(), "2560".into()),
            ("note".into(), "ünïcode".into()),
        ],
    }
}

/// The name of the WAL file that `tombstone.bin` names: bytes 0x60, ..., 0x7f (no vector is
/// that object; a tombstone's names are only names).
fn buried_wal_name() -> [u8; 32] {
    std::array::from_fn(|i| 0x60 + i as u8)
}

/// The deletion of `key.bin` and `snapshot.bin`, named by their object names, and of the WAL
/// file `buried_wal_name()`, at T0.
fn expected_tombstone(key_bytes: &[u8], snapshot_bytes: &[u8]) -> Tombstone {
    Tombstone {
        names: vec![
            (BuriedKind::Key, object_hash(key_bytes)),
            (BuriedKind::Snapshot, object_hash(snapshot_bytes)),
            (BuriedKind::Wal, buried_wal_name()),
        ],
        time_ns: T0,
    }
}

/// `len` bytes of filler: byte k is k mod 256.
fn filler(len: usize) -> Vec<u8> {
    (0..len).map(|k| k as u8).collect()
}

/// The synthetic segment of `wal.bin` (format-spec/vectors/README.md): a 12,000-byte
/// message that continues on page 1, a commit, an abort, a message sized so that the next
/// commit's record header straddles pages 1 and 2, that commit, and a switch.
fn wal_segment() -> Vec<u8> {
    let mut b = SegmentBuilder::new(
        WAL_SYSTEM_ID,
        1,
        WAL_START,
        WAL_SEGMENT_SIZE,
        WAL_PAGE_SIZE,
        WAL_SEGMENT_SIZE as usize,
        WAL_FIRST_PREV,
    );
    let lsns = [
        b.record(RM_LOGICALMSG, 0, 1000, &filler(12_000)),
        b.commit(1000, TA - 2 * SECOND),
        b.abort(1001, TA - 3 * SECOND),
        b.record(RM_LOGICALMSG, 0, 1002, &filler(4_163)),
        b.commit(1002, TA - SECOND),
        b.switch(),
    ];
    assert_eq!(lsns, WAL_RECORD_LSNS, "the records' addresses");
    b.into_bytes()
}

/// The header `wal-push` would write for the segment, archived one second after T0.
fn expected_wal_header(file: &[u8]) -> WalHeader {
    WalHeader {
        kind: WalKind::Segment,
        name: WAL_NAME.into(),
        system_id: WAL_SYSTEM_ID,
        timeline: 1,
        start_lsn: WAL_START,
        segment_size: WAL_SEGMENT_SIZE,
        size: file.len() as u64,
        hash: *blake3::hash(file).as_bytes(),
        mtime_ns: T0,
        pushed_ns: T0 + SECOND,
        commits: Some((TA - 3 * SECOND, TA - SECOND)),
        codec: WalCodec::Zstd,
    }
}

fn encode_wal(keys: &Keys) -> Vec<u8> {
    let file = wal_segment();
    let stored = zstd::bulk::compress(&file, WAL_ZSTD_LEVEL).unwrap();
    expected_wal_header(&file)
        .encode(
            keys,
            &stored,
            Some((nonce(N_WAL_HEADER), nonce(N_WAL_BODY))),
        )
        .expect("a valid header")
}

/// Every vector file, encoded from the expected values with the fixed nonces.
fn encode_all() -> Vec<(&'static str, Vec<u8>)> {
    let keys = keys();
    let pack_bytes = encode_pack(&keys);
    let plan_bytes = expected_plan().encode(&keys, Some(nonce(N_PLAN)));
    let snapshot_bytes = expected_snapshot(&keys).encode(&keys, Some(nonce(N_SNAPSHOT)));
    vec![
        (
            "config.bin",
            expected_config().encode(&keys, Some(nonce(N_CONFIG))),
        ),
        ("key.bin", expected_key_file().encode()),
        ("pack.bin", pack_bytes.clone()),
        (
            "index.bin",
            expected_index(&keys, &pack_bytes).encode(&keys, Some(nonce(N_INDEX))),
        ),
        ("snapshot.bin", snapshot_bytes.clone()),
        ("tree.bin", expected_tree(&keys).encode()),
        ("chunklist.bin", expected_chunk_list(&keys).encode()),
        (
            "lock.bin",
            expected_lock().encode(&keys, Some(nonce(N_LOCK))),
        ),
        ("plan.bin", plan_bytes.clone()),
        (
            "wait.bin",
            expected_wait(&plan_bytes).encode(&keys, Some(nonce(N_WAIT))),
        ),
        (
            "report.bin",
            expected_report(&snapshot_bytes).encode(&keys, Some(nonce(N_REPORT))),
        ),
        (
            "tombstone.bin",
            expected_tombstone(&expected_key_file().encode(), &snapshot_bytes)
                .encode(&keys, Some(nonce(N_TOMBSTONE))),
        ),
        ("wal.bin", encode_wal(&keys)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("format-spec/vectors")
}

fn read(name: &str) -> Vec<u8> {
    let path = vectors_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The backend folder and blob type of each vector file.
enum Stored {
    Object(ObjectKind),
    Blob(BlobType),
}

fn stored_as(file: &str) -> Stored {
    match file {
        "config.bin" => Stored::Object(ObjectKind::Config),
        "key.bin" => Stored::Object(ObjectKind::Key),
        "pack.bin" => Stored::Object(ObjectKind::Pack),
        "index.bin" => Stored::Object(ObjectKind::Index),
        "snapshot.bin" => Stored::Object(ObjectKind::Snapshot),
        "tree.bin" => Stored::Blob(BlobType::Tree),
        "chunklist.bin" => Stored::Blob(BlobType::ChunkList),
        "lock.bin" => Stored::Object(ObjectKind::Lock),
        "plan.bin" => Stored::Object(ObjectKind::Plan),
        "wait.bin" => Stored::Object(ObjectKind::Wait),
        "report.bin" => Stored::Object(ObjectKind::Report),
        "tombstone.bin" => Stored::Object(ObjectKind::Tombstone),
        "wal.bin" => Stored::Object(ObjectKind::Wal),
        other => panic!("unknown vector {other}"),
    }
}

/// Decode a pack completely: the header, then every frame (decrypt, decompress, check its
/// length) and every blob in it (cut from the frame's plaintext, check its ID).
fn read_pack(keys: &Keys, bytes: &[u8]) -> Result<Vec<(Frame, Vec<Vec<u8>>)>> {
    let frames = pack::decode_pack(keys, bytes)?;
    let mut out = vec![];
    for (offset, f) in pack::frame_offsets(&frames) {
        let sealed = &bytes[offset as usize..offset as usize + f.length as usize];
        let plain = pack::open_frame(keys, f.blob_type, sealed, f.raw_length())?;
        let mut at = 0;
        let mut blobs = vec![];
        for b in &f.blobs {
            let blob = &plain[at..at + b.raw_length as usize];
            pack::verify_blob(keys, f.blob_type, &b.id, blob)?;
            blobs.push(blob.to_vec());
            at += b.raw_length as usize;
        }
        assert_eq!(at, plain.len(), "open_frame checked the frame's length");
        out.push((f.clone(), blobs));
    }
    Ok(out)
}

/// The xorshift64 byte stream used as chunker input.
fn chunker_input() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn chunk_lengths(gear: &Gear) -> Vec<usize> {
    let mut out = vec![];
    // Explicit sizes (the v1 stream defaults when these boundaries were pinned), so that
    // tuning the defaults does not move the pinned cut points.
    let params = ChunkerParams {
        min: 16 * 1024,
        avg: 64 * 1024,
        max: 256 * 1024,
    };
    chunk_stream(&chunker_input()[..], params, gear, |c| {
        out.push(c.len());
        Ok(())
    })
    .unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// (a) decode to the expected values, re-encode byte for byte.

#[test]
fn config_vector() {
    let keys = keys();
    let bytes = read("config.bin");
    let config = Config::decode(&keys, &bytes).unwrap();
    assert_eq!(config, expected_config());
    assert_eq!(Config::peek_repo_id(&bytes).unwrap(), repo_id());
    assert_eq!(config.encode(&keys, Some(nonce(N_CONFIG))), bytes);
}

#[test]
fn key_file_vector() {
    let bytes = read("key.bin");
    let kf = KeyFile::decode(&bytes).unwrap();
    assert_eq!(kf.kdf, KDF);
    assert_eq!(kf.salt, salt());
    assert_eq!(kf.created_ns, T0);
    assert_eq!(kf.host, "vector-host");
    assert_eq!(kf.user, "vector-user");
    assert_eq!(kf.wrapped.len(), 72);
    assert_eq!(&kf.wrapped[..NONCE_LEN], &nonce(N_KEY));
    assert_eq!(kf.encode(), bytes);
    assert_eq!(expected_key_file().encode(), bytes);
}

#[test]
fn key_file_opens_with_the_password() {
    let kf = KeyFile::decode(&read("key.bin")).unwrap();
    let master = kf.unwrap(PASSWORD).unwrap();
    assert_eq!(master.expose(), &master_bytes());
    let err = kf
        .unwrap(b"not the password")
        .err()
        .expect("a wrong password must fail");
    assert_eq!(err.kind(), ErrorKind::WrongPassword);
}

/// The frames the pack header and the index must list, from the literal values above.
fn literal_frames() -> Vec<Frame> {
    let blob = |hex: &str, raw_length: u32| FrameBlob {
        id: id(hex),
        raw_length,
    };
    vec![
        Frame {
            blob_type: BlobType::Data,
            length: FRAME0_LEN,
            blobs: vec![
                blob(CHUNK_A_ID, CHUNK_A_LEN),
                blob(EMPTY_TREE_AS_DATA_ID, 5),
            ],
        },
        Frame {
            blob_type: BlobType::Tree,
            length: FRAME1_LEN,
            blobs: vec![blob(TREE_ID, TREE_LEN), blob(EMPTY_TREE_ID, 5)],
        },
        Frame {
            blob_type: BlobType::ChunkList,
            length: FRAME2_LEN,
            blobs: vec![blob(CHUNK_LIST_ID, CHUNK_LIST_LEN)],
        },
    ]
}

#[test]
fn pack_vector() {
    let keys = keys();
    let bytes = read("pack.bin");
    assert_eq!(bytes.len() as u64, PACK_LEN);
    assert_eq!(
        PackId(object_hash(&bytes)),
        PackId::from_hex(PACK_ID).unwrap()
    );
    let frames_len = (FRAME0_LEN + FRAME1_LEN + FRAME2_LEN) as usize;
    assert_eq!(
        bytes.len(),
        frames_len + HEADER_LEN as usize + pack::TRAILER_LEN
    );
    let trailer = &bytes[bytes.len() - pack::TRAILER_LEN..];
    let header_len = pack::decode_trailer(trailer).unwrap();
    assert_eq!(header_len, HEADER_LEN);
    assert_eq!(header_len as usize, 24 + 4 + 3 * 9 + 5 * 36 + 16);
    assert_eq!(
        trailer,
        [&b"CFFP\x03"[..], &HEADER_LEN.to_le_bytes()].concat()
    );
    assert_eq!(pack::decode_pack(&keys, &bytes).unwrap(), literal_frames());
    let offsets: Vec<u32> = pack::frame_offsets(&literal_frames())
        .map(|(o, _)| o)
        .collect();
    assert_eq!(offsets, [0, FRAME0_LEN, FRAME0_LEN + FRAME1_LEN]);
    // Every blob, cut from its opened frame, is what the vectors say.
    let empty = expected_empty_tree().encode();
    let opened = read_pack(&keys, &bytes).unwrap();
    let blobs: Vec<Vec<Vec<u8>>> = opened.into_iter().map(|(_, b)| b).collect();
    assert_eq!(
        blobs,
        [
            vec![chunk_a(), empty.clone()],
            vec![read("tree.bin"), empty],
            vec![read("chunklist.bin")],
        ]
    );
    // Frame 0 is zstd, frames 1 and 2 raw: the codec byte is the first plaintext byte of
    // each box, whose associated data is "coffer frame v2" and the type byte.
    let sealed = |k: usize| {
        let at = offsets[k] as usize;
        let len = literal_frames()[k].length as usize;
        &bytes[at..at + len]
    };
    let framed0 = keys.open(b"coffer frame v2\x00", sealed(0)).unwrap();
    let framed1 = keys.open(b"coffer frame v2\x01", sealed(1)).unwrap();
    let framed2 = keys.open(b"coffer frame v2\x02", sealed(2)).unwrap();
    assert_eq!(framed0[0], Codec::Zstd as u8);
    assert_eq!(
        zstd::bulk::decompress(&framed0[1..], 1 << 20).unwrap(),
        [chunk_a(), expected_empty_tree().encode()].concat()
    );
    assert_eq!(framed1[0], Codec::None as u8);
    assert_eq!(
        &framed1[1..],
        [read("tree.bin"), expected_empty_tree().encode()].concat()
    );
    assert_eq!(framed2[0], Codec::None as u8);
    assert_eq!(&framed2[1..], read("chunklist.bin"));
    // The header's box: "coffer pack header v2".
    let header = &bytes[frames_len..bytes.len() - pack::TRAILER_LEN];
    assert_eq!(&header[..NONCE_LEN], &nonce(N_HEADER), "the header's nonce");
    assert!(keys.open(b"coffer pack header v2", header).is_ok());
    // Re-encoding with the same nonces gives the same bytes. (The zstd frame is what
    // libzstd 1.5.7 writes at level 3; only frame 0 would change with another libzstd.)
    assert_eq!(encode_pack(&keys), bytes);
}

#[test]
fn index_vector() {
    let keys = keys();
    let bytes = read("index.bin");
    let index = IndexFile::decode(&keys, &bytes).unwrap();
    assert_eq!(index.supersedes, [IndexId([0xe1; 32]), IndexId([0xe2; 32])]);
    assert_eq!(index.packs.len(), 1);
    let p = &index.packs[0];
    assert_eq!(p.id, PackId::from_hex(PACK_ID).unwrap());
    assert_eq!(p.size, PACK_LEN);
    assert_eq!(p.frames, literal_frames());
    assert_eq!(index, expected_index(&keys, &read("pack.bin")));
    assert_eq!(index.encode(&keys, Some(nonce(N_INDEX))), bytes);
    // The body is the pack's header body behind the pack's ID and size: both list frames
    // the same way.
    let body = keys.open(b"CFFI\x03", &bytes[5..]).unwrap();
    let pack_bytes = read("pack.bin");
    let header = keys
        .open(
            b"coffer pack header v2",
            &pack_bytes[pack_bytes.len() - pack::TRAILER_LEN - HEADER_LEN as usize
                ..pack_bytes.len() - pack::TRAILER_LEN],
        )
        .unwrap();
    assert_eq!(body.len(), 4 + 2 * 32 + 4 + 32 + 8 + header.len());
    assert!(body.ends_with(&header));
    assert_eq!(index.encode_body(), body);
}

#[test]
fn snapshot_vector() {
    let keys = keys();
    let bytes = read("snapshot.bin");
    let s = Snapshot::decode(&keys, &bytes).unwrap();
    assert_eq!(s.time_ns, T0);
    assert_eq!(s.host, "vector-host");
    assert_eq!(s.user, "vector-user");
    assert_eq!(s.tags, ["nightly", "vector"]);
    assert_eq!(s.paths, [b"/srv/app".to_vec(), b"/srv/caf\xe9".to_vec()]);
    assert_eq!(s.root, id(TREE_ID));
    assert_eq!(s.parent, Some(SnapshotId([0xab; 32])));
    assert_eq!(s.source, "files");
    assert_eq!(
        s.info,
        [
            ("job".to_string(), "app".to_string()),
            ("note".into(), "ünïcode".into())
        ]
    );
    assert_eq!(s.summary.files_new, 1);
    assert_eq!(s.summary.packs_added, 11);
    assert_eq!(s.summary.duration_ns, u64::MAX);
    assert_eq!(s, expected_snapshot(&keys));
    assert_eq!(s.encode(&keys, Some(nonce(N_SNAPSHOT))), bytes);
}

#[test]
fn tree_vector() {
    let keys = keys();
    let bytes = read("tree.bin");
    assert_eq!(bytes.len() as u32, TREE_LEN);
    assert_eq!(keys.blob_id(TREE, &bytes), id(TREE_ID));
    let tree = Tree::decode(&bytes).unwrap();
    let names: Vec<&[u8]> = tree.nodes.iter().map(|n| n.name.as_slice()).collect();
    let want: [&[u8]; 10] = [
        b"big.sql",
        b"blk",
        b"caf\xe9.txt",
        b"empty",
        b"fifo",
        b"link",
        b"new\nline",
        b"null",
        b"sock",
        b"sub",
    ];
    assert_eq!(names, want);
    let get = |n: &[u8]| tree.get(n).unwrap();
    assert_eq!(
        get(b"big.sql").content,
        Content::ChunkList {
            level: 0,
            id: id(CHUNK_LIST_ID)
        }
    );
    assert_eq!(
        get(b"caf\xe9.txt").content,
        Content::Chunks(vec![id(CHUNK_A_ID)])
    );
    assert_eq!(get(b"empty").content, Content::Chunks(vec![]));
    assert_eq!(get(b"empty").mtime_ns, -1);
    assert_eq!(get(b"link").link_target, b"caf\xe9.txt");
    assert_eq!(get(b"link").kind, NodeKind::Symlink);
    assert_eq!(
        (
            get(b"new\nline").dev,
            get(b"new\nline").inode,
            get(b"new\nline").nlink
        ),
        (0x803, 13, 2)
    );
    assert_eq!(
        (
            get(b"caf\xe9.txt").dev,
            get(b"caf\xe9.txt").inode,
            get(b"caf\xe9.txt").nlink
        ),
        (0x803, 13, 2)
    );
    assert_eq!(
        (get(b"null").kind, get(b"null").rdev),
        (NodeKind::CharDevice, 0x0103)
    );
    assert_eq!(
        (get(b"blk").kind, get(b"blk").rdev),
        (NodeKind::BlockDevice, 0x0800)
    );
    assert_eq!(get(b"sub").content, Content::Subtree(id(EMPTY_TREE_ID)));
    assert_eq!(get(b"sub").mode, 0o1777);
    assert_eq!(get(b"sock").dev, u64::MAX);
    assert_eq!(tree, expected_tree(&keys));
    assert_eq!(tree.encode(), bytes);
    assert_eq!(
        keys.blob_id(TREE, &expected_empty_tree().encode()),
        id(EMPTY_TREE_ID)
    );
    assert_eq!(expected_empty_tree().encode(), [1, 0, 0, 0, 0]);
}

#[test]
fn chunk_list_vector() {
    let keys = keys();
    let bytes = read("chunklist.bin");
    assert_eq!(keys.blob_id(CHUNK_LIST, &bytes), id(CHUNK_LIST_ID));
    let list = ChunkList::decode(&bytes).unwrap();
    assert_eq!(
        list,
        ChunkList {
            level: 0,
            ids: vec![id(CHUNK_A_ID), id(CHUNK_A_ID)],
        }
    );
    assert_eq!(list.encode(), bytes);
}

#[test]
fn lock_vector() {
    let keys = keys();
    let bytes = read("lock.bin");
    assert_eq!(bytes.len(), LOCK_LEN);
    assert_eq!(&bytes[..5], b"CFFL\x03");
    assert_eq!(&bytes[5..5 + NONCE_LEN], &nonce(N_LOCK), "the lock's nonce");
    let lock = Lock::decode(&keys, &bytes).unwrap();
    assert_eq!(lock.operation, [0x11; 16]);
    assert_eq!(lock.kind, LockKind::Prune);
    assert_eq!(lock.kind as u8, 2);
    assert_eq!(lock.counter, 7);
    assert_eq!(lock.pid, 4242);
    assert_eq!(lock.host, "vector-host");
    assert_eq!(lock, expected_lock());
    lock.validate().unwrap();
    assert_eq!(lock.encode(&keys, Some(nonce(N_LOCK))), bytes);
    // A refresh is the same operation with the next counter: a new object, a new name.
    let refreshed = Lock {
        counter: 8,
        ..lock.clone()
    }
    .encode(&keys, Some(nonce(N_LOCK)));
    assert_eq!(refreshed.len(), bytes.len());
    assert_ne!(
        ObjectName::for_bytes(ObjectKind::Lock, &refreshed),
        ObjectName::for_bytes(ObjectKind::Lock, &bytes)
    );
}

#[test]
fn plan_vector() {
    let keys = keys();
    let bytes = read("plan.bin");
    assert_eq!(bytes.len(), PLAN_LEN);
    assert_eq!(&bytes[..5], b"CFFG\x03");
    assert_eq!(&bytes[5..5 + NONCE_LEN], &nonce(N_PLAN), "the plan's nonce");
    assert_eq!(hex::encode(object_hash(&bytes)), PLAN_HASH);
    let plan = Plan::decode(&keys, &bytes).unwrap();
    assert_eq!(plan.operation, [0x11; 16]);
    assert_eq!(plan.packs, [PackId([0xc1; 32]), PackId([0xc2; 32])]);
    assert_eq!(plan.indexes, [IndexId([0xd1; 32])]);
    assert_eq!(plan, expected_plan());
    assert_eq!(plan.encode(&keys, Some(nonce(N_PLAN))), bytes);
}

#[test]
fn wait_vector() {
    let keys = keys();
    let bytes = read("wait.bin");
    assert_eq!(bytes.len(), WAIT_LEN);
    assert_eq!(&bytes[..5], b"CFFW\x03");
    assert_eq!(&bytes[5..5 + NONCE_LEN], &nonce(N_WAIT), "the wait's nonce");
    let wait = Wait::decode(&keys, &bytes).unwrap();
    // The plan is named by the hash of its stored bytes: `plans/<PLAN_HASH>`.
    assert_eq!(hex::encode(wait.plan), PLAN_HASH);
    assert_eq!(
        ObjectName::new(ObjectKind::Plan, wait.plan).path(),
        format!("plans/{PLAN_HASH}")
    );
    assert!(ObjectName::new(ObjectKind::Plan, wait.plan).verify(&read("plan.bin")));
    assert_eq!(wait.operations, [[0x21; 16], [0x22; 16]]);
    assert_eq!(wait, expected_wait(&read("plan.bin")));
    assert_eq!(wait.encode(&keys, Some(nonce(N_WAIT))), bytes);
}

#[test]
fn report_vector() {
    let keys = keys();
    let bytes = read("report.bin");
    assert_eq!(bytes.len(), REPORT_LEN);
    assert_eq!(&bytes[..5], b"CFFR\x03");
    assert_eq!(
        &bytes[5..5 + NONCE_LEN],
        &nonce(N_REPORT),
        "the report's nonce"
    );
    let report = Report::decode(&keys, &bytes).unwrap();
    assert_eq!(report.kind, ReportKind::Drill);
    assert_eq!(report.kind as u8, 2);
    assert_eq!(report.job, "app");
    assert_eq!(report.time_ns, T0);
    assert_eq!(report.duration_ns, DRILL_NS);
    assert!(report.ok);
    // The first snapshot is `snapshot.bin`, by its object name.
    assert_eq!(
        ObjectName::new(ObjectKind::Snapshot, report.snapshots[0].0),
        ObjectName::for_bytes(ObjectKind::Snapshot, &read("snapshot.bin"))
    );
    assert_eq!(report.snapshots[1], SnapshotId([0xab; 32]));
    assert_eq!(report.target_ns, Some(RTO_NS));
    assert_eq!(report.message, REPORT_MESSAGE);
    assert_eq!(report.info("files.bytes"), Some("2560"));
    assert_eq!(report, expected_report(&read("snapshot.bin")));
    report.validate().unwrap();
    assert_eq!(report.encode(&keys, Some(nonce(N_REPORT))), bytes);
}

#[test]
fn tombstone_vector() {
    let keys = keys();
    let bytes = read("tombstone.bin");
    assert_eq!(bytes.len(), TOMBSTONE_LEN);
    assert_eq!(&bytes[..9], b"CFFT\x03\x03\x00\x00\x00");
    // The names are in clear (and authenticated): key.bin, snapshot.bin, then a WAL file.
    let key_name = ObjectName::for_bytes(ObjectKind::Key, &read("key.bin"));
    let snapshot_name = ObjectName::for_bytes(ObjectKind::Snapshot, &read("snapshot.bin"));
    assert_eq!(bytes[9], 1);
    assert_eq!(bytes[10..42], key_name.hash);
    assert_eq!(bytes[42], 2);
    assert_eq!(bytes[43..75], snapshot_name.hash);
    assert_eq!(bytes[75], 3);
    assert_eq!(bytes[76..108], buried_wal_name());
    assert_eq!(
        &bytes[108..108 + NONCE_LEN],
        &nonce(N_TOMBSTONE),
        "the tombstone's nonce"
    );
    let (names, public) = Tombstone::peek(&bytes).unwrap();
    assert_eq!(public, 108);
    let t = Tombstone::decode(&keys, &bytes).unwrap();
    assert_eq!(t.names, names);
    assert_eq!(t.time_ns, T0);
    assert_eq!(
        t,
        expected_tombstone(&read("key.bin"), &read("snapshot.bin"))
    );
    assert_eq!(t.encode(&keys, Some(nonce(N_TOMBSTONE))), bytes);
}

#[test]
fn wal_vector() {
    let keys = keys();
    let bytes = read("wal.bin");
    assert_eq!(bytes.len(), WAL_LEN);
    // "CFFA", version 3, the header box's length; each box starts with its nonce.
    assert_eq!(&bytes[..5], b"CFFA\x03");
    assert_eq!(bytes[5..7], (WAL_BOX_LEN as u16).to_le_bytes());
    assert_eq!(&bytes[7..7 + NONCE_LEN], &nonce(N_WAL_HEADER));
    let body_at = 7 + WAL_BOX_LEN;
    assert_eq!(&bytes[body_at..body_at + NONCE_LEN], &nonce(N_WAL_BODY));
    // The header alone, from the first bytes a catalog reads.
    let (h, at) = WalHeader::decode(&keys, &bytes[..HEAD_LEN.min(bytes.len())]).unwrap();
    assert_eq!(at, body_at);
    assert_eq!(h.kind, WalKind::Segment);
    assert_eq!(h.kind as u8, 1);
    assert_eq!(h.name, WAL_NAME);
    assert_eq!(h.system_id, WAL_SYSTEM_ID);
    assert_eq!((h.timeline, h.start_lsn), (1, 0x3_0000));
    assert_eq!((h.segment_size, h.size), (65_536, 65_536));
    assert_eq!(hex::encode(h.hash), WAL_SEGMENT_HASH);
    assert_eq!((h.mtime_ns, h.pushed_ns), (T0, T0 + SECOND));
    assert_eq!(
        h.commits,
        Some((1_794_999_997_123_456_000, 1_794_999_999_123_456_000))
    );
    assert_eq!(h.codec, WalCodec::Zstd);
    // The header box opens on its own, with the first 7 bytes as associated data, to the
    // fields in the spec's order.
    let plain = keys.open(&bytes[..7], &bytes[7..body_at]).unwrap();
    assert_eq!(plain.len(), WAL_BOX_LEN - 40);
    assert_eq!(plain[0], 1);
    assert_eq!(&plain[1..27], [&[24, 0][..], WAL_NAME.as_bytes()].concat());
    assert_eq!(*plain.last().unwrap(), WalCodec::Zstd as u8);
    // The whole object: the body box (associated data: every byte before it) holds one
    // zstd frame that declares the file's length and opens to the synthetic segment.
    let (h2, file) = WalHeader::decode_file(&keys, &bytes).unwrap();
    assert_eq!(h2, h);
    assert_eq!(file, wal_segment());
    let stored = keys.open(&bytes[..body_at], &bytes[body_at..]).unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&stored).ok(),
        Some(Some(65_536))
    );
    assert_eq!(h, expected_wal_header(&file));
    assert_eq!(
        h.encode(
            &keys,
            &stored,
            Some((nonce(N_WAL_HEADER), nonce(N_WAL_BODY)))
        )
        .unwrap(),
        bytes
    );
    assert_eq!(encode_wal(&keys), bytes);
}

/// The segment in `wal.bin` is what coffer's scanner reads: its first page says what the
/// header says, and walking its records finds the header's commit times. `segment_head`
/// itself refuses it (wal-push archives only PostgreSQL's sizes, 1 MiB and up; the format
/// takes any power of two up to 1 GiB), so the walk gets the head from the page's fields.
#[test]
fn wal_vector_segment_is_what_the_scanner_reads() {
    let file = wal_segment();
    let u16_at = |at: usize| u16::from_le_bytes(file[at..at + 2].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
    let head = SegmentHead {
        magic: u16_at(0),
        timeline: u32_at(4),
        start_lsn: u64_at(8),
        system_id: u64_at(24),
        segment_size: u32_at(32),
        page_size: u32_at(36),
    };
    assert_eq!(
        head,
        SegmentHead {
            magic: 0xd110,
            timeline: 1,
            start_lsn: WAL_START,
            system_id: WAL_SYSTEM_ID,
            segment_size: WAL_SEGMENT_SIZE,
            page_size: WAL_PAGE_SIZE,
        }
    );
    assert_eq!(u16_at(2), 0x0002, "page 0 has the long header");
    // Pages 1 and 2 begin with the rest of a record: 3,877 bytes of the first message, and
    // 18 of the last commit (whose 24-byte record header is split 16 + 8).
    assert_eq!((u16_at(8192 + 2), u32_at(8192 + 16)), (0x0001, 3877));
    assert_eq!((u16_at(16384 + 2), u32_at(16384 + 16)), (0x0001, 18));
    for page in 3..8 {
        assert_eq!(u16_at(page * 8192 + 2), 0, "page {page}");
        assert_eq!(u64_at(page * 8192 + 8), WAL_START + page as u64 * 8192);
    }
    let err = scan::segment_head(&file).expect_err("64 KiB segments are not PostgreSQL's");
    assert!(err.message().contains("segment size of 65536"), "{err}");
    assert_eq!(
        scan::commit_times(&file, &head),
        expected_wal_header(&file).commits
    );
}

/// The three garbage-collection objects and the report share one envelope; the magic, which
/// the box authenticates, is what keeps one from being read as another.
#[test]
fn gc_objects_cannot_stand_in_for_each_other() {
    let keys = keys();
    type Decode<'a> = Box<dyn Fn(&[u8]) -> Result<()> + 'a>;
    let kinds: Vec<(&str, &[u8; 4], Decode)> = vec![
        (
            "lock.bin",
            b"CFFL",
            Box::new(|b| Lock::decode(&keys, b).map(drop)),
        ),
        (
            "plan.bin",
            b"CFFG",
            Box::new(|b| Plan::decode(&keys, b).map(drop)),
        ),
        (
            "wait.bin",
            b"CFFW",
            Box::new(|b| Wait::decode(&keys, b).map(drop)),
        ),
        (
            "report.bin",
            b"CFFR",
            Box::new(|b| Report::decode(&keys, b).map(drop)),
        ),
    ];
    // A tombstone's names are public fields, which the others do not have: read as one of
    // the others it fails authentication, and none of them reads as a tombstone.
    let tombstone = read("tombstone.bin");
    for (other, magic, decode) in &kinds {
        assert!(decode(&tombstone).is_err(), "tombstone as {other}");
        let mut forged = tombstone.clone();
        forged[..4].copy_from_slice(*magic);
        assert!(decode(&forged).is_err(), "tombstone as {other}");
        let mut forged = read(other);
        forged[..4].copy_from_slice(b"CFFT");
        let err = Tombstone::decode(&keys, &forged).expect_err("another kind as a tombstone");
        assert_eq!(
            err.kind(),
            ErrorKind::Corrupt,
            "{other} as a tombstone: {err}"
        );
    }
    for (file, _, _) in &kinds {
        let bytes = read(file);
        for (other, magic, decode) in &kinds {
            if other == file {
                decode(&bytes).unwrap();
                continue;
            }
            // As it is: the wrong magic.
            let err = decode(&bytes).expect_err("another kind's object");
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{file} as {other}: {err}");
            assert!(err.message().contains("wrong magic"), "{err}");
            // With the other magic written in: the box no longer opens.
            let mut forged = bytes.clone();
            forged[..4].copy_from_slice(*magic);
            let err = decode(&forged).expect_err("a forged magic");
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{file} as {other}: {err}");
            assert!(err.message().contains("fails authentication"), "{err}");
        }
    }
}

/// Blob IDs are typed (spec §5.9): equal plaintexts stored as different types get different
/// IDs, so a data chunk can never stand in for a tree or a chunk list, or the other way round.
#[test]
fn blob_ids_are_typed() {
    let keys = keys();
    // A 5-byte file holding exactly the empty tree's encoding: its own ID, not the tree's.
    let empty = expected_empty_tree().encode();
    assert_eq!(keys.blob_id(TREE, &empty), id(EMPTY_TREE_ID));
    assert_eq!(keys.blob_id(DATA, &empty), id(EMPTY_TREE_AS_DATA_ID));
    assert_ne!(id(EMPTY_TREE_AS_DATA_ID), id(EMPTY_TREE_ID));
    // Every vector plaintext gets three distinct IDs, one per type.
    for bytes in [chunk_a(), read("tree.bin"), read("chunklist.bin"), vec![]] {
        let ids = [DATA, TREE, CHUNK_LIST].map(|t| keys.blob_id(t, &bytes));
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        assert_ne!(ids[1], ids[2]);
    }
    // The pack stores the empty tree's 5 bytes twice: as data in frame 0 and as a tree in
    // frame 1, under the two IDs. Each opens only as its own type, under its own ID.
    let pack_bytes = read("pack.bin");
    let frames = literal_frames();
    let sealed: Vec<&[u8]> = pack::frame_offsets(&frames)
        .map(|(at, f)| &pack_bytes[at as usize..(at + f.length) as usize])
        .collect();
    let data_frame =
        pack::open_frame(&keys, BlobType::Data, sealed[0], frames[0].raw_length()).unwrap();
    let tree_frame =
        pack::open_frame(&keys, BlobType::Tree, sealed[1], frames[1].raw_length()).unwrap();
    let as_data = &data_frame[CHUNK_A_LEN as usize..];
    let as_tree = &tree_frame[TREE_LEN as usize..];
    assert_eq!(as_data, empty);
    assert_eq!(as_tree, empty);
    pack::verify_blob(&keys, BlobType::Data, &id(EMPTY_TREE_AS_DATA_ID), as_data).unwrap();
    pack::verify_blob(&keys, BlobType::Tree, &id(EMPTY_TREE_ID), as_tree).unwrap();
    for (t, wrong) in [
        (BlobType::Data, EMPTY_TREE_ID),
        (BlobType::Tree, EMPTY_TREE_AS_DATA_ID),
    ] {
        let err = pack::verify_blob(&keys, t, &id(wrong), &empty)
            .expect_err("a blob checked under another type's ID");
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }
    // The frame's box binds its type: a frame never opens as another type.
    for (k, f) in frames.iter().enumerate() {
        for t in [BlobType::Data, BlobType::Tree, BlobType::ChunkList] {
            let r = pack::open_frame(&keys, t, sealed[k], f.raw_length());
            assert_eq!(r.is_ok(), t == f.blob_type, "frame {k} opened as {t:?}");
        }
    }
    // The tree cannot be fetched under the ID its bytes would have as data (or as a chunk
    // list); nor chunk A as a tree.
    let tree = read("tree.bin");
    let tree_blob = &tree_frame[..TREE_LEN as usize];
    assert_eq!(tree_blob, tree);
    for t in [DATA, CHUNK_LIST] {
        let err = pack::verify_blob(&keys, BlobType::Tree, &keys.blob_id(t, &tree), tree_blob)
            .expect_err("a tree checked under another type's ID");
        assert_eq!(err.kind(), ErrorKind::Corrupt);
    }
    let err = pack::verify_blob(
        &keys,
        BlobType::Data,
        &keys.blob_id(TREE, &chunk_a()),
        &data_frame[..CHUNK_A_LEN as usize],
    )
    .expect_err("a data chunk checked under its ID as a tree");
    assert_eq!(err.kind(), ErrorKind::Corrupt);
}

#[test]
fn chunker_boundaries_are_pinned() {
    let keys = keys();
    assert_eq!(keys.chunker_gear()[0], GEAR_FIRST);
    assert_eq!(keys.chunker_gear()[255], GEAR_LAST);
    let lengths = chunk_lengths(keys.chunker_gear());
    assert_eq!(lengths.iter().sum::<usize>(), 1 << 20);
    assert_eq!(lengths, CHUNK_LENGTHS);
}

// ---------------------------------------------------------------------------------------------
// (c) a flipped byte anywhere is refused, as corruption (or as an unknown version).

fn flips(bytes: &[u8]) -> impl Iterator<Item = (usize, Vec<u8>)> + '_ {
    (0..bytes.len()).flat_map(move |i| {
        [0x01u8, 0x80].into_iter().map(move |bit| {
            let mut b = bytes.to_vec();
            b[i] ^= bit;
            (i, b)
        })
    })
}

fn assert_kind<T>(what: &str, at: usize, r: Result<T>, want: ErrorKind) {
    match r {
        Ok(_) => panic!("{what}: a flip at byte {at} was not detected"),
        Err(e) => assert_eq!(e.kind(), want, "{what}: flip at byte {at}: {e}"),
    }
}

/// The version byte of an object is read before anything else is checked.
fn kind_for(at: usize, version_at: usize) -> ErrorKind {
    if at == version_at {
        ErrorKind::Unsupported
    } else {
        ErrorKind::Corrupt
    }
}

#[test]
fn flipped_bytes_are_detected() {
    let keys = keys();
    let config = read("config.bin");
    for (i, b) in flips(&config) {
        assert_kind("config", i, Config::decode(&keys, &b), kind_for(i, 4));
    }
    let index = read("index.bin");
    for (i, b) in flips(&index) {
        assert_kind("index", i, IndexFile::decode(&keys, &b), kind_for(i, 4));
    }
    let snapshot = read("snapshot.bin");
    for (i, b) in flips(&snapshot) {
        assert_kind("snapshot", i, Snapshot::decode(&keys, &b), kind_for(i, 4));
    }
    let lock = read("lock.bin");
    for (i, b) in flips(&lock) {
        assert_kind("lock", i, Lock::decode(&keys, &b), kind_for(i, 4));
    }
    let plan = read("plan.bin");
    for (i, b) in flips(&plan) {
        assert_kind("plan", i, Plan::decode(&keys, &b), kind_for(i, 4));
    }
    let wait = read("wait.bin");
    for (i, b) in flips(&wait) {
        assert_kind("wait", i, Wait::decode(&keys, &b), kind_for(i, 4));
    }
    let report = read("report.bin");
    for (i, b) in flips(&report) {
        assert_kind("report", i, Report::decode(&keys, &b), kind_for(i, 4));
    }
    let tombstone = read("tombstone.bin");
    for (i, b) in flips(&tombstone) {
        assert_kind("tombstone", i, Tombstone::decode(&keys, &b), kind_for(i, 4));
    }
    let wal = read("wal.bin");
    for (i, b) in flips(&wal) {
        assert_kind(
            "WAL file",
            i,
            WalHeader::decode_file(&keys, &b),
            kind_for(i, 4),
        );
    }
    let pack_bytes = read("pack.bin");
    let version_at = pack_bytes.len() - 5;
    for (i, b) in flips(&pack_bytes) {
        assert_kind("pack", i, read_pack(&keys, &b), kind_for(i, version_at));
    }
    // Trees and chunk lists are blob plaintexts: inside a pack their frame's AEAD covers them
    // (frames 1 and 2 above); on their own their keyed ID does.
    for (file, t) in [("tree.bin", TREE), ("chunklist.bin", CHUNK_LIST)] {
        let bytes = read(file);
        let good = keys.blob_id(t, &bytes);
        for (i, b) in flips(&bytes) {
            assert_ne!(keys.blob_id(t, &b), good, "{file}: flip at {i}");
        }
    }
}

/// Versions 1 and 2 were never released: such an object (or a future one) is refused as
/// unsupported, saying which version it is and which this coffer reads, before anything else
/// is checked.
#[test]
fn other_versions_are_refused_by_name() {
    let keys = keys();
    assert_eq!(coffer::format::FORMAT_VERSION, 3);
    let pack_bytes = read("pack.bin");
    let trailer = pack_bytes[pack_bytes.len() - pack::TRAILER_LEN..].to_vec();
    type Decode<'a> = Box<dyn Fn(&[u8]) -> Result<()> + 'a>;
    let objects: Vec<(&str, Vec<u8>, usize, Decode)> = vec![
        (
            "config",
            read("config.bin"),
            4,
            Box::new(|b| Config::decode(&keys, b).map(drop)),
        ),
        (
            "config",
            read("config.bin"),
            4,
            Box::new(|b| Config::peek_repo_id(b).map(drop)),
        ),
        (
            "key file",
            read("key.bin"),
            4,
            Box::new(|b| KeyFile::decode(b).map(drop)),
        ),
        (
            "index",
            read("index.bin"),
            4,
            Box::new(|b| IndexFile::decode(&keys, b).map(drop)),
        ),
        (
            "snapshot",
            read("snapshot.bin"),
            4,
            Box::new(|b| Snapshot::decode(&keys, b).map(drop)),
        ),
        (
            "lock",
            read("lock.bin"),
            4,
            Box::new(|b| Lock::decode(&keys, b).map(drop)),
        ),
        (
            "plan",
            read("plan.bin"),
            4,
            Box::new(|b| Plan::decode(&keys, b).map(drop)),
        ),
        (
            "wait record",
            read("wait.bin"),
            4,
            Box::new(|b| Wait::decode(&keys, b).map(drop)),
        ),
        (
            "report",
            read("report.bin"),
            4,
            Box::new(|b| Report::decode(&keys, b).map(drop)),
        ),
        (
            "tombstone",
            read("tombstone.bin"),
            4,
            Box::new(|b| Tombstone::decode(&keys, b).map(drop)),
        ),
        (
            "tombstone",
            read("tombstone.bin"),
            4,
            Box::new(|b| Tombstone::peek(b).map(drop)),
        ),
        (
            "WAL file",
            read("wal.bin"),
            4,
            Box::new(|b| WalHeader::decode(&keys, b).map(drop)),
        ),
        (
            "WAL file",
            read("wal.bin"),
            4,
            Box::new(|b| WalHeader::decode_file(&keys, b).map(drop)),
        ),
        (
            "pack trailer",
            trailer,
            4,
            Box::new(|b| pack::decode_trailer(b).map(drop)),
        ),
        (
            "pack trailer",
            pack_bytes.clone(),
            pack_bytes.len() - 5,
            Box::new(|b| pack::decode_pack(&keys, b).map(drop)),
        ),
    ];
    for (what, bytes, at, decode) in &objects {
        assert_eq!(bytes[*at], 3, "{what}: the vector's version byte");
        decode(bytes).unwrap();
        for v in [0u8, 1, 2, 4, 0xff] {
            let mut b = bytes.clone();
            b[*at] = v;
            let err = decode(&b).expect_err("another version");
            assert_eq!(err.kind(), ErrorKind::Unsupported, "{what} v{v}: {err}");
            assert_eq!(
                err.message(),
                format!("{what} has format version {v}; this coffer reads version 3"),
            );
        }
    }
}

/// A key file is authenticated only by its password: a damaged one that still parses fails
/// like a wrong password would. Its name (the BLAKE3 of its bytes) is what tells the two apart.
#[test]
fn flipped_key_file_bytes_are_detected() {
    let bytes = read("key.bin");
    let name = ObjectName::for_bytes(ObjectKind::Key, &bytes);
    for (i, b) in flips(&bytes) {
        assert!(!name.verify(&b), "key file: flip at {i} keeps the name");
        match KeyFile::decode(&b) {
            Err(e) => assert_eq!(e.kind(), kind_for(i, 4), "key file: flip at byte {i}: {e}"),
            Ok(kf) => {
                // Keep this test fast: a flip may ask argon2 for more memory (still in bounds).
                if kf.kdf.memory_kib > 128 * 1024 || kf.kdf.iterations > 4 {
                    continue;
                }
                let e = kf
                    .unwrap(PASSWORD)
                    .err()
                    .unwrap_or_else(|| panic!("key file: flip at {i} opens"));
                assert_eq!(
                    e.kind(),
                    ErrorKind::WrongPassword,
                    "key file: flip at byte {i}: {e}"
                );
            }
        }
    }
}

#[test]
fn truncated_vectors_are_refused() {
    let keys = keys();
    let config = read("config.bin");
    let key = read("key.bin");
    let pack_bytes = read("pack.bin");
    let index = read("index.bin");
    let snapshot = read("snapshot.bin");
    for n in 0..config.len() {
        assert_kind(
            "config",
            n,
            Config::decode(&keys, &config[..n]),
            ErrorKind::Corrupt,
        );
    }
    for n in 0..key.len() {
        assert_kind(
            "key file",
            n,
            KeyFile::decode(&key[..n]),
            ErrorKind::Corrupt,
        );
    }
    for n in 0..pack_bytes.len() {
        assert!(
            read_pack(&keys, &pack_bytes[..n]).is_err(),
            "pack cut at {n}"
        );
    }
    for n in 0..index.len() {
        assert_kind(
            "index",
            n,
            IndexFile::decode(&keys, &index[..n]),
            ErrorKind::Corrupt,
        );
    }
    for n in 0..snapshot.len() {
        assert_kind(
            "snapshot",
            n,
            Snapshot::decode(&keys, &snapshot[..n]),
            ErrorKind::Corrupt,
        );
    }
    let lock = read("lock.bin");
    for n in 0..lock.len() {
        assert_kind(
            "lock",
            n,
            Lock::decode(&keys, &lock[..n]),
            ErrorKind::Corrupt,
        );
    }
    let plan = read("plan.bin");
    for n in 0..plan.len() {
        assert_kind(
            "plan",
            n,
            Plan::decode(&keys, &plan[..n]),
            ErrorKind::Corrupt,
        );
    }
    let wait = read("wait.bin");
    for n in 0..wait.len() {
        assert_kind(
            "wait",
            n,
            Wait::decode(&keys, &wait[..n]),
            ErrorKind::Corrupt,
        );
    }
    let report = read("report.bin");
    for n in 0..report.len() {
        assert_kind(
            "report",
            n,
            Report::decode(&keys, &report[..n]),
            ErrorKind::Corrupt,
        );
    }
    let tombstone = read("tombstone.bin");
    for n in 0..tombstone.len() {
        assert_kind(
            "tombstone",
            n,
            Tombstone::decode(&keys, &tombstone[..n]),
            ErrorKind::Corrupt,
        );
    }
    // A WAL file's header is read from the first bytes alone: cut anywhere before the end
    // of its box it is refused; the whole object, cut anywhere, is refused.
    let wal = read("wal.bin");
    for n in 0..wal.len() {
        assert_kind(
            "WAL file",
            n,
            WalHeader::decode_file(&keys, &wal[..n]),
            ErrorKind::Corrupt,
        );
        if n < 7 + WAL_BOX_LEN {
            assert_kind(
                "WAL file header",
                n,
                WalHeader::decode(&keys, &wal[..n]),
                ErrorKind::Corrupt,
            );
        } else {
            assert!(
                WalHeader::decode(&keys, &wal[..n]).is_ok(),
                "header cut at {n}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (d) object names: each stored vector's BLAKE3 is the name the vectors README gives it.

/// Rows of the README's vector table: (file, kind column, name column).
fn readme_rows() -> Vec<(String, String, String)> {
    let readme = std::fs::read_to_string(vectors_dir().join("README.md")).expect("vectors README");
    let block = readme
        .split("<!-- vectors:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- vectors:end -->").next())
        .expect("the README has a vectors:begin/end block");
    block
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect();
            (cells[0].clone(), cells[1].clone(), cells[2].clone())
        })
        .collect()
}

#[test]
fn object_names_match_the_readme() {
    let keys = keys();
    let rows = readme_rows();
    let files: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        files,
        [
            "config.bin",
            "key.bin",
            "pack.bin",
            "index.bin",
            "snapshot.bin",
            "tree.bin",
            "chunklist.bin",
            "lock.bin",
            "plan.bin",
            "wait.bin",
            "report.bin",
            "tombstone.bin",
            "wal.bin"
        ]
    );
    for (file, _, name) in &rows {
        let bytes = read(file);
        match stored_as(file) {
            Stored::Object(kind) => {
                let parsed =
                    ObjectName::parse(name).unwrap_or_else(|| panic!("{file}: bad name {name}"));
                assert_eq!(parsed.kind, kind, "{file}");
                assert!(
                    parsed.verify(&bytes),
                    "{file}: BLAKE3 of the bytes is not {name}"
                );
                assert_eq!(parsed, ObjectName::for_bytes(kind, &bytes));
                assert_eq!(parsed.path(), *name);
            }
            Stored::Blob(t) => {
                assert_eq!(
                    keys.blob_id(t as u8, &bytes).to_hex(),
                    *name,
                    "{file}: keyed blob ID"
                );
            }
        }
    }
    // The IDs and the seed the README quotes (under "Fixed inputs", and the plan's name under
    // `wait.bin`) are the literals here.
    let readme = std::fs::read_to_string(vectors_dir().join("README.md")).unwrap();
    for literal in [
        WAL_SEGMENT_HASH,
        CHUNK_A_ID,
        EMPTY_TREE_ID,
        EMPTY_TREE_AS_DATA_ID,
        PLAN_HASH,
        &format!("{GEAR_FIRST:#018x}"),
        &format!("{GEAR_LAST:#018x}"),
    ] {
        assert!(
            readme.contains(literal),
            "the vectors README lacks {literal}"
        );
    }
    // The wait record names the plan by the name the table gives it.
    assert_eq!(
        ObjectName::for_bytes(ObjectKind::Plan, &read("plan.bin")).path(),
        format!("plans/{PLAN_HASH}")
    );
    // The pack is stored under data/<first two hex digits>/<hash>.
    assert_eq!(
        ObjectName::for_bytes(ObjectKind::Pack, &read("pack.bin")).path(),
        format!("data/{}/{}", &PACK_ID[..2], PACK_ID)
    );
}

#[test]
fn object_names_are_canonical() {
    let hex = "ab".repeat(32);
    let upper = hex.to_uppercase();
    for (good, kind) in [
        (format!("snapshots/{hex}"), ObjectKind::Snapshot),
        (format!("data/ab/{hex}"), ObjectKind::Pack),
        (format!("locks/{hex}"), ObjectKind::Lock),
        (format!("plans/{hex}"), ObjectKind::Plan),
        (format!("waits/{hex}"), ObjectKind::Wait),
        (format!("reports/{hex}"), ObjectKind::Report),
        (format!("tombstones/{hex}"), ObjectKind::Tombstone),
        (format!("wal/{hex}"), ObjectKind::Wal),
    ] {
        let name = ObjectName::parse(&good).unwrap_or_else(|| panic!("{good}"));
        assert_eq!(name.kind, kind, "{good}");
        assert_eq!(name.path(), good);
    }
    for bad in [
        format!("snapshots/{upper}"),
        format!("data/AB/{upper}"),
        format!("data/{hex}"),
        format!("data/cd/{hex}"),
        format!("tmp/{hex}"),
        format!("snapshots/{}", &hex[..62]),
        format!("snapshots/{hex}.tmp"),
        format!("locks/{upper}"),
        format!("lock/{hex}"),
        format!("plans/{hex}.tmp"),
        format!("waits/ab/{hex}"),
        format!("reports/{upper}"),
        format!("report/{hex}"),
        format!("tombstones/{upper}"),
        format!("tombstone/{hex}"),
        format!("tombstones/{hex}.tmp"),
        format!("wal/{upper}"),
        format!("wal/ab/{hex}"),
        format!("wal/{WAL_NAME}"),
        format!("gc/{hex}"),
    ] {
        assert_eq!(ObjectName::parse(&bad), None, "{bad}");
    }
}

// ---------------------------------------------------------------------------------------------
// The vectors rebuilt from the spec alone: raw primitives, no coffer encoder.

mod from_the_spec {
    use super::*;
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};

    /// §7: the version byte after every stored object's magic. (The associated data of
    /// frames and pack headers still spells "v2": format version 3 did not change them.)
    const VERSION: u8 = 3;

    fn seal(key: &[u8; 32], nonce: u8, aad: &[u8], msg: &[u8]) -> Vec<u8> {
        let n = [nonce; 24];
        let ct = XChaCha20Poly1305::new(key.into())
            .encrypt(XNonce::from_slice(&n), Payload { msg, aad })
            .unwrap();
        [&n[..], &ct].concat()
    }

    struct W(Vec<u8>);
    impl W {
        fn u8(&mut self, v: u8) -> &mut Self {
            self.0.push(v);
            self
        }
        fn u16(&mut self, v: u16) -> &mut Self {
            self.0.extend(v.to_le_bytes());
            self
        }
        fn u32(&mut self, v: u32) -> &mut Self {
            self.0.extend(v.to_le_bytes());
            self
        }
        fn u64(&mut self, v: u64) -> &mut Self {
            self.0.extend(v.to_le_bytes());
            self
        }
        fn i64(&mut self, v: i64) -> &mut Self {
            self.0.extend(v.to_le_bytes());
            self
        }
        fn raw(&mut self, v: &[u8]) -> &mut Self {
            self.0.extend(v);
            self
        }
        fn s16(&mut self, v: &[u8]) -> &mut Self {
            self.u16(v.len() as u16).raw(v)
        }
    }
    fn w() -> W {
        W(vec![])
    }

    struct Derived {
        aead: [u8; 32],
        id_key: [u8; 32],
    }

    fn derived() -> Derived {
        let m = master_bytes();
        Derived {
            aead: blake3::derive_key("coffer v1 2026-11 aead key", &m),
            id_key: blake3::derive_key("coffer v1 2026-11 blob id key", &m),
        }
    }

    /// §5.9: `id = BLAKE3-keyed(blob_id_key, type_byte || plaintext)`.
    fn blob_id(d: &Derived, blob_type: u8, plain: &[u8]) -> [u8; 32] {
        *blake3::keyed_hash(&d.id_key, &[&[blob_type][..], plain].concat()).as_bytes()
    }

    /// §4.1: `gear[i]` = u64 LE of the first 8 bytes of `BLAKE3-keyed(gear key, "gear" || i)`.
    fn gear(m: &[u8; 32]) -> [u64; 256] {
        let key = blake3::derive_key("coffer v3 2026-12 chunker gear key", m);
        std::array::from_fn(|i| {
            let out = blake3::keyed_hash(&key, &[b"gear".as_slice(), &[i as u8]].concat());
            u64::from_le_bytes(out.as_bytes()[..8].try_into().unwrap())
        })
    }

    /// §2 and §4.1: FastCDC 2020 with normalization level 1 over the keyed table, from
    /// fastcdc's cut-point function alone (not coffer's chunker): the small mask for
    /// log2(avg) + 1 bits, the large one for log2(avg) − 1, the second table shifted left.
    #[test]
    fn chunk_boundaries() {
        use fastcdc::v2020::{cut_gear, logarithm2, MASKS};
        let table = gear(&master_bytes());
        let shifted = table.map(|g| g << 1);
        let (min, avg, max) = (16 * 1024, 64 * 1024, 256 * 1024);
        let bits = logarithm2(avg as u32) as usize;
        let (mask_s, mask_l) = (MASKS[bits + 1], MASKS[bits - 1]);
        let input = chunker_input();
        let mut lengths = vec![];
        let mut at = 0;
        while at < input.len() {
            let (_, n) = cut_gear(
                &input[at..],
                min,
                avg,
                max,
                mask_s,
                mask_l,
                mask_s << 1,
                mask_l << 1,
                &table,
                &shifted,
            );
            lengths.push(n);
            at += n;
        }
        assert_eq!(lengths, CHUNK_LENGTHS);
    }

    #[test]
    fn subkeys() {
        let m = master_bytes();
        let d = derived();
        assert_eq!(keys().chunker_gear(), &gear(&m));
        for t in [0, 1, 2] {
            assert_eq!(keys().blob_id(t, b"").0, blob_id(&d, t, b""));
            assert_eq!(keys().blob_id(t, b"abc").0, blob_id(&d, t, b"abc"));
        }
        // The type byte is hashed first: the empty tree's bytes as a tree and as data.
        assert_eq!(hex::encode(blob_id(&d, 1, &[1, 0, 0, 0, 0])), EMPTY_TREE_ID);
        assert_eq!(
            hex::encode(blob_id(&d, 0, &[1, 0, 0, 0, 0])),
            EMPTY_TREE_AS_DATA_ID
        );
        assert_eq!(
            hex::encode(blake3::keyed_hash(&d.id_key, &[1, 1, 0, 0, 0, 0]).as_bytes()),
            EMPTY_TREE_ID
        );
        // The AEAD key: a box sealed here opens with coffer's keys.
        let sealed = seal(&d.aead, 9, b"aad", b"msg");
        assert_eq!(keys().open(b"aad", &sealed).unwrap(), b"msg");
    }

    #[test]
    fn config() {
        let d = derived();
        let public = w().raw(b"CFFC").u8(VERSION).raw(&repo_id().0).0.clone();
        let mut body = w();
        for v in [
            512 << 10,
            1 << 20,
            8 << 20,
            16 << 10,
            64 << 10,
            256 << 10,
            16 << 20,
        ] {
            body.u32(v);
        }
        body.u8(3);
        let want = [public.clone(), seal(&d.aead, N_CONFIG, &public, &body.0)].concat();
        assert_eq!(want, read("config.bin"));
    }

    #[test]
    fn key_file() {
        let public = w()
            .raw(b"CFFK")
            .u8(VERSION)
            .u8(1)
            .u32(64)
            .u32(1)
            .u32(1)
            .raw(&salt())
            .i64(T0)
            .s16(b"vector-host")
            .s16(b"vector-user")
            .0
            .clone();
        let mut wrapping = [0u8; 32];
        argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(64, 1, 1, Some(32)).unwrap(),
        )
        .hash_password_into(PASSWORD, &salt(), &mut wrapping)
        .unwrap();
        let want = [
            public.clone(),
            seal(&wrapping, N_KEY, &public, &master_bytes()),
        ]
        .concat();
        assert_eq!(want, read("key.bin"));
    }

    fn tree_bytes(d: &Derived) -> Vec<u8> {
        let a = blob_id(d, 0, &chunk_a());
        let list = blob_id(d, 2, &chunk_list_bytes(d));
        let empty = blob_id(d, 1, &[1, 0, 0, 0, 0]);
        let mut t = w();
        t.u8(1).u32(10);
        // name, kind, mode, uid, gid, mtime, ctime, size, dev, inode, nlink, rdev, target
        let node = |t: &mut W,
                    name: &[u8],
                    kind: u8,
                    mode: u32,
                    ug: (u32, u32),
                    times: (i64, i64),
                    size: u64,
                    dev: u64,
                    inode: u64,
                    nlink: u32,
                    rdev: u64,
                    target: &[u8]| {
            t.s16(name)
                .u8(kind)
                .u32(mode)
                .u32(ug.0)
                .u32(ug.1)
                .i64(times.0)
                .i64(times.1);
            t.u64(size).u64(dev).u64(inode).u32(nlink).u64(rdev);
            t.u32(target.len() as u32).raw(target);
        };
        let t0 = (T0, T0 + 1);
        let user = (1000, 1000);
        node(
            &mut t,
            b"big.sql",
            1,
            0o600,
            (70, 70),
            t0,
            2560,
            0x803,
            11,
            1,
            0,
            b"",
        );
        t.u8(2).u8(0).raw(&list);
        node(
            &mut t,
            b"blk",
            6,
            0o660,
            (0, 6),
            t0,
            0,
            0x803,
            12,
            1,
            0x800,
            b"",
        );
        t.u8(0);
        node(
            &mut t,
            b"caf\xe9.txt",
            1,
            0o644,
            user,
            t0,
            1280,
            0x803,
            13,
            2,
            0,
            b"",
        );
        t.u8(1).u32(1).raw(&a);
        node(
            &mut t,
            b"empty",
            1,
            0o644,
            user,
            (-1, 0),
            0,
            0x803,
            14,
            1,
            0,
            b"",
        );
        t.u8(1).u32(0);
        node(&mut t, b"fifo", 4, 0o600, user, t0, 0, 0x803, 15, 1, 0, b"");
        t.u8(0);
        node(
            &mut t,
            b"link",
            3,
            0o777,
            user,
            t0,
            0,
            0x803,
            16,
            1,
            0,
            b"caf\xe9.txt",
        );
        t.u8(0);
        node(
            &mut t,
            b"new\nline",
            1,
            0o644,
            user,
            t0,
            1280,
            0x803,
            13,
            2,
            0,
            b"",
        );
        t.u8(1).u32(1).raw(&a);
        node(
            &mut t,
            b"null",
            5,
            0o666,
            (0, 0),
            t0,
            0,
            0x803,
            17,
            1,
            0x103,
            b"",
        );
        t.u8(0);
        node(
            &mut t,
            b"sock",
            7,
            0o755,
            user,
            t0,
            0,
            u64::MAX,
            18,
            1,
            0,
            b"",
        );
        t.u8(0);
        node(
            &mut t,
            b"sub",
            2,
            0o1777,
            (65534, 65534),
            t0,
            0,
            0x803,
            19,
            2,
            0,
            b"",
        );
        t.u8(3).raw(&empty);
        t.0.clone()
    }

    fn chunk_list_bytes(d: &Derived) -> Vec<u8> {
        let a = blob_id(d, 0, &chunk_a());
        w().u8(1).u8(0).u32(2).raw(&a).raw(&a).0.clone()
    }

    #[test]
    fn tree_and_chunk_list() {
        let d = derived();
        assert_eq!(chunk_list_bytes(&d), read("chunklist.bin"));
        assert_eq!(tree_bytes(&d), read("tree.bin"));
    }

    /// §5.4: `seal(AEAD key, "coffer frame v2" ‖ type, codec ‖ payload)`.
    fn frame(d: &Derived, nonce: u8, blob_type: u8, codec: u8, plain: &[u8]) -> Vec<u8> {
        let payload = match codec {
            0 => plain.to_vec(),
            _ => zstd::bulk::compress(plain, 3).unwrap(),
        };
        let aad = [&b"coffer frame v2"[..], &[blob_type]].concat();
        assert_eq!(aad.len(), 16);
        seal(&d.aead, nonce, &aad, &[&[codec][..], &payload].concat())
    }

    /// The frames of the pack vector: (type, codec, nonce, blob plaintexts).
    fn frames(d: &Derived) -> Vec<(u8, u8, u8, Vec<Vec<u8>>)> {
        let empty = vec![1, 0, 0, 0, 0];
        vec![
            (0, 1, N_FRAME0, vec![chunk_a(), empty.clone()]),
            (1, 0, N_FRAME1, vec![tree_bytes(d), empty]),
            (2, 0, N_FRAME2, vec![chunk_list_bytes(d)]),
        ]
    }

    /// §5.4: `frame_count:u32`, then per frame `type:u8 length:u32 blob_count:u32` and per
    /// blob `id[32] raw_length:u32`. Shared by the pack header and the index (§5.5).
    fn frame_table(d: &Derived, sealed: &[Vec<u8>]) -> Vec<u8> {
        let mut t = w();
        t.u32(sealed.len() as u32);
        for ((blob_type, _, _, blobs), s) in frames(d).iter().zip(sealed) {
            t.u8(*blob_type).u32(s.len() as u32).u32(blobs.len() as u32);
            for b in blobs {
                t.raw(&blob_id(d, *blob_type, b)).u32(b.len() as u32);
            }
        }
        t.0.clone()
    }

    fn sealed_frames(d: &Derived) -> Vec<Vec<u8>> {
        frames(d)
            .iter()
            .map(|(t, codec, n, blobs)| frame(d, *n, *t, *codec, &blobs.concat()))
            .collect()
    }

    fn pack_bytes(d: &Derived) -> Vec<u8> {
        let sealed = sealed_frames(d);
        let header = seal(
            &d.aead,
            N_HEADER,
            b"coffer pack header v2",
            &frame_table(d, &sealed),
        );
        let trailer = w()
            .raw(b"CFFP")
            .u8(VERSION)
            .u32(header.len() as u32)
            .0
            .clone();
        [sealed.concat(), header, trailer].concat()
    }

    #[test]
    fn pack() {
        let d = derived();
        let sealed = sealed_frames(&d);
        assert_eq!(
            sealed.iter().map(Vec::len).collect::<Vec<_>>(),
            [FRAME0_LEN, FRAME1_LEN, FRAME2_LEN].map(|l| l as usize)
        );
        assert_eq!(pack_bytes(&d), read("pack.bin"));
    }

    #[test]
    fn index() {
        let d = derived();
        let pack = pack_bytes(&d);
        let public = w().raw(b"CFFI").u8(VERSION).0.clone();
        let mut body = w();
        body.u32(2).raw(&[0xe1; 32]).raw(&[0xe2; 32]);
        body.u32(1)
            .raw(blake3::hash(&pack).as_bytes())
            .u64(pack.len() as u64)
            .raw(&frame_table(&d, &sealed_frames(&d)));
        let want = [public.clone(), seal(&d.aead, N_INDEX, &public, &body.0)].concat();
        assert_eq!(want, read("index.bin"));
    }

    #[test]
    fn snapshot() {
        let d = derived();
        let public = w().raw(b"CFFS").u8(VERSION).0.clone();
        let mut body = w();
        body.i64(T0).s16(b"vector-host").s16(b"vector-user");
        body.u16(2).s16(b"nightly").s16(b"vector");
        body.u16(2).s16(b"/srv/app").s16(b"/srv/caf\xe9");
        body.raw(&blob_id(&d, 1, &tree_bytes(&d)))
            .u8(1)
            .raw(&[0xab; 32]);
        body.s16(b"files")
            .u16(2)
            .s16(b"job")
            .s16(b"app")
            .s16("note".as_bytes())
            .s16("ünïcode".as_bytes());
        for v in 1..=11 {
            body.u64(v);
        }
        body.u64(u64::MAX);
        let want = [public.clone(), seal(&d.aead, N_SNAPSHOT, &public, &body.0)].concat();
        assert_eq!(want, read("snapshot.bin"));
    }

    /// §12: `"CFFL" version`, sealed `operation[16] kind:u8 counter:u64 pid:u32 host:str16`.
    fn lock_bytes(d: &Derived) -> Vec<u8> {
        let public = w().raw(b"CFFL").u8(VERSION).0.clone();
        let mut body = w();
        body.raw(&[0x11; 16]).u8(2).u64(7).u32(4242);
        body.s16(b"vector-host");
        assert_eq!(body.0.len(), 42);
        [public.clone(), seal(&d.aead, N_LOCK, &public, &body.0)].concat()
    }

    /// §12: `"CFFG" version`, sealed `operation[16] count pack_id[32]* count index_id[32]*`.
    fn plan_bytes(d: &Derived) -> Vec<u8> {
        let public = w().raw(b"CFFG").u8(VERSION).0.clone();
        let mut body = w();
        body.raw(&[0x11; 16]);
        body.u32(2).raw(&[0xc1; 32]).raw(&[0xc2; 32]);
        body.u32(1).raw(&[0xd1; 32]);
        assert_eq!(body.0.len(), 120);
        [public.clone(), seal(&d.aead, N_PLAN, &public, &body.0)].concat()
    }

    /// §12: `"CFFW" version`, sealed `plan[32] count operation[16]*`, where `plan` is the
    /// plan object's name: the BLAKE3 of its stored bytes.
    fn wait_bytes(d: &Derived) -> Vec<u8> {
        let public = w().raw(b"CFFW").u8(VERSION).0.clone();
        let mut body = w();
        body.raw(blake3::hash(&plan_bytes(d)).as_bytes());
        body.u32(2).raw(&[0x21; 16]).raw(&[0x22; 16]);
        assert_eq!(body.0.len(), 68);
        [public.clone(), seal(&d.aead, N_WAIT, &public, &body.0)].concat()
    }

    /// §5.11: `"CFFR" version`, sealed `kind:u8 job:str16 time:i64 duration:u64 ok:u8
    /// count snapshot[32]* has_target:u8 target:u64 message:str16 u16 (str16 str16)*`. The
    /// first snapshot is `snapshot.bin` by its object name.
    fn report_bytes(d: &Derived) -> Vec<u8> {
        let public = w().raw(b"CFFR").u8(VERSION).0.clone();
        let mut body = w();
        body.u8(2).s16(b"app").i64(T0).u64(83_250_000_000).u8(1);
        body.u32(2)
            .raw(blake3::hash(&read("snapshot.bin")).as_bytes())
            .raw(&[0xab; 32]);
        body.u8(1).u64(900_000_000_000);
        body.s16(b"restored and verified 2 sources");
        body.u16(2).s16(b"files.bytes").s16(b"2560");
        body.s16(b"note").s16("ünïcode".as_bytes());
        assert_eq!(body.0.len(), 171);
        [public.clone(), seal(&d.aead, N_REPORT, &public, &body.0)].concat()
    }

    /// §5.12: the names in clear after the count, the time sealed with all of that as AAD.
    fn tombstone_bytes(d: &Derived) -> Vec<u8> {
        let public = w()
            .raw(b"CFFT")
            .u8(VERSION)
            .u32(3)
            .u8(1)
            .raw(blake3::hash(&read("key.bin")).as_bytes())
            .u8(2)
            .raw(blake3::hash(&read("snapshot.bin")).as_bytes())
            .u8(3)
            .raw(&std::array::from_fn::<u8, 32, _>(|i| 0x60 + i as u8))
            .0
            .clone();
        let body = w().i64(T0).0.clone();
        [public.clone(), seal(&d.aead, N_TOMBSTONE, &public, &body)].concat()
    }

    /// format-spec/vectors/README.md, `wal.bin`: eight 8 KiB pages, each with its header,
    /// and six records laid out as PostgreSQL lays them out.
    fn wal_segment_bytes() -> Vec<u8> {
        const PAGE: usize = 8192;
        const START: u64 = 0x3_0000;
        let mut seg = vec![0u8; 8 * PAGE];
        for i in 0..8 {
            let info: u16 = if i == 0 { 2 } else { 0 };
            let header = w()
                .u16(0xd110)
                .u16(info)
                .u32(1)
                .u64(START + (i * PAGE) as u64)
                .0
                .clone();
            seg[i * PAGE..i * PAGE + 16].copy_from_slice(&header);
        }
        let long = w()
            .u64(0x1817_1615_1413_1211)
            .u32(65_536)
            .u32(8192)
            .0
            .clone();
        seg[24..40].copy_from_slice(&long);
        // (resource manager, info, xid, main data)
        let us = |seconds_before: i64| {
            (TA / 1000 - 946_684_800_000_000 - seconds_before * 1_000_000)
                .to_le_bytes()
                .to_vec()
        };
        let filler = |n: usize| (0..n).map(|k| k as u8).collect::<Vec<u8>>();
        let records: [(u8, u8, u32, Vec<u8>); 6] = [
            (21, 0x00, 1000, filler(12_000)),
            (1, 0x00, 1000, us(2)),
            (1, 0x20, 1001, us(3)),
            (21, 0x00, 1002, filler(4_163)),
            (1, 0x00, 1002, us(1)),
            (0, 0x40, 0, vec![]),
        ];
        let mut off = 40; // the next free byte, as an offset in the segment
        let mut prev = 0x2_ffd0u64;
        for (rmid, info, xid, main) in records {
            let mut data = w();
            match main.len() {
                0 => {}
                n if n <= 255 => {
                    data.u8(255).u8(n as u8);
                }
                n => {
                    data.u8(254).u32(n as u32);
                }
            }
            data.raw(&main);
            let total = 24 + data.0.len();
            let mut rec = w();
            rec.u32(total as u32).u32(xid).u64(prev).u8(info).u8(rmid);
            rec.u16(0).u32(0).raw(&data.0);
            off = (off + 7) & !7;
            if off % PAGE == 0 {
                off += 24;
            }
            prev = START + off as u64;
            for (k, byte) in rec.0.iter().enumerate() {
                if off % PAGE == 0 {
                    seg[off + 2] |= 1; // XLP_FIRST_IS_CONTRECORD
                    seg[off + 16..off + 20].copy_from_slice(&((total - k) as u32).to_le_bytes());
                    off += 24;
                }
                seg[off] = *byte;
                off += 1;
            }
        }
        seg
    }

    /// §5.13: `"CFFA" 3 h:u16 ‖ seal(A = those 7 bytes, header) ‖ seal(A = every byte
    /// before, zstd frame of the file)`.
    #[test]
    fn wal() {
        let d = derived();
        let file = wal_segment_bytes();
        assert_eq!(blake3::hash(&file).to_hex().as_str(), WAL_SEGMENT_HASH);
        let mut header = w();
        header.u8(1).s16(b"000000010000000000000003");
        header
            .u64(0x1817_1615_1413_1211)
            .u32(1)
            .u64(0x3_0000)
            .u32(65_536);
        header.u64(65_536).raw(blake3::hash(&file).as_bytes());
        header.i64(T0).i64(T0 + 1_000_000_000);
        header.u8(1).i64(TA - 3_000_000_000).i64(TA - 1_000_000_000);
        header.u8(1);
        assert_eq!(header.0.len(), 101 + 24);
        let prefix = w()
            .raw(b"CFFA")
            .u8(VERSION)
            .u16(header.0.len() as u16 + 40)
            .0
            .clone();
        let head = [
            prefix.clone(),
            seal(&d.aead, N_WAL_HEADER, &prefix, &header.0),
        ]
        .concat();
        let stored = zstd::bulk::compress(&file, 1).unwrap();
        let want = [head.clone(), seal(&d.aead, N_WAL_BODY, &head, &stored)].concat();
        assert_eq!(want, read("wal.bin"));
    }

    #[test]
    fn tombstone() {
        let d = derived();
        assert_eq!(tombstone_bytes(&d).len(), 9 + 3 * 33 + 24 + 8 + 16);
        assert_eq!(tombstone_bytes(&d), read("tombstone.bin"));
    }

    #[test]
    fn lock() {
        let d = derived();
        assert_eq!(lock_bytes(&d).len(), 5 + 24 + 42 + 16);
        assert_eq!(lock_bytes(&d), read("lock.bin"));
    }

    #[test]
    fn plan() {
        let d = derived();
        assert_eq!(plan_bytes(&d).len(), 5 + 24 + 120 + 16);
        assert_eq!(plan_bytes(&d), read("plan.bin"));
        assert_eq!(
            hex::encode(blake3::hash(&plan_bytes(&d)).as_bytes()),
            PLAN_HASH
        );
    }

    #[test]
    fn wait() {
        let d = derived();
        assert_eq!(wait_bytes(&d).len(), 5 + 24 + 68 + 16);
        assert_eq!(wait_bytes(&d), read("wait.bin"));
    }

    #[test]
    fn report() {
        let d = derived();
        assert_eq!(report_bytes(&d).len(), 5 + 24 + 171 + 16);
        assert_eq!(report_bytes(&d), read("report.bin"));
    }
}

// ---------------------------------------------------------------------------------------------
// Regeneration (never part of a normal run).

#[test]
#[ignore = "rewrites format-spec/vectors; run only after a deliberate format change"]
fn regenerate_vectors() {
    let dir = vectors_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let keys = keys();
    let mut table = String::from(
        "| file | stored as | name: BLAKE3 path, or keyed blob ID | bytes |\n|---|---|---|---|\n",
    );
    for (file, bytes) in encode_all() {
        std::fs::write(dir.join(file), &bytes).unwrap();
        let (what, name) = match stored_as(file) {
            Stored::Object(kind) => (
                format!("{} object", kind.dir()),
                ObjectName::for_bytes(kind, &bytes).path(),
            ),
            Stored::Blob(t) => (
                format!("{} blob (plaintext)", t.name()),
                keys.blob_id(t as u8, &bytes).to_hex(),
            ),
        };
        table += &format!("| `{file}` | {what} | `{name}` | {} |\n", bytes.len());
    }
    let readme_path = dir.join("README.md");
    let readme = std::fs::read_to_string(&readme_path)
        .expect("vectors README with a vectors:begin/end block");
    let (head, rest) = readme
        .split_once("<!-- vectors:begin -->\n")
        .expect("begin marker");
    let (_, tail) = rest.split_once("<!-- vectors:end -->").expect("end marker");
    std::fs::write(
        &readme_path,
        format!("{head}<!-- vectors:begin -->\n{table}<!-- vectors:end -->{tail}"),
    )
    .unwrap();

    // The literal values at the top of this file.
    let pack_bytes = read("pack.bin");
    let frames = pack::decode_pack(&keys, &pack_bytes).unwrap();
    let tree = read("tree.bin");
    println!("const CHUNK_A_LEN: u32 = {};", chunk_a().len());
    println!(
        "const CHUNK_A_ID: &str = \"{}\";",
        keys.blob_id(DATA, &chunk_a())
    );
    println!(
        "const EMPTY_TREE_ID: &str = \"{}\";",
        keys.blob_id(TREE, &expected_empty_tree().encode())
    );
    println!(
        "const CHUNK_LIST_ID: &str = \"{}\";",
        keys.blob_id(CHUNK_LIST, &read("chunklist.bin"))
    );
    println!(
        "const EMPTY_TREE_AS_DATA_ID: &str = \"{}\";",
        keys.blob_id(DATA, &expected_empty_tree().encode())
    );
    println!("const TREE_ID: &str = \"{}\";", keys.blob_id(TREE, &tree));
    println!("const TREE_LEN: u32 = {};", tree.len());
    println!(
        "const CHUNK_LIST_LEN: u32 = {};",
        read("chunklist.bin").len()
    );
    for (k, f) in frames.iter().enumerate() {
        println!("const FRAME{k}_LEN: u32 = {};", f.length);
    }
    println!(
        "const HEADER_LEN: u32 = {};",
        pack::decode_trailer(&pack_bytes[pack_bytes.len() - pack::TRAILER_LEN..]).unwrap()
    );
    println!("const PACK_LEN: u64 = {};", pack_bytes.len());
    println!(
        "const PACK_ID: &str = \"{}\";",
        hex::encode(object_hash(&pack_bytes))
    );
    println!("const LOCK_LEN: usize = {};", read("lock.bin").len());
    println!("const PLAN_LEN: usize = {};", read("plan.bin").len());
    println!("const WAIT_LEN: usize = {};", read("wait.bin").len());
    println!("const REPORT_LEN: usize = {};", read("report.bin").len());
    println!(
        "const TOMBSTONE_LEN: usize = {};",
        read("tombstone.bin").len()
    );
    println!(
        "const WAL_SEGMENT_HASH: &str = \"{}\";",
        blake3::hash(&wal_segment()).to_hex()
    );
    println!("const WAL_LEN: usize = {};", read("wal.bin").len());
    println!(
        "const PLAN_HASH: &str = \"{}\";",
        hex::encode(object_hash(&read("plan.bin")))
    );
    println!("const GEAR_FIRST: u64 = {:#018x};", keys.chunker_gear()[0]);
    println!("const GEAR_LAST: u64 = {:#018x};", keys.chunker_gear()[255]);
    println!(
        "const CHUNK_LENGTHS: &[usize] = &{:?};",
        chunk_lengths(keys.chunker_gear())
    );
}
