//! Hostile input for every decoder of the repository format: every truncation of a valid
//! vector, every single-bit flip, and a few thousand pseudo-random buffers (some entirely
//! random, some sharing a valid prefix, some a valid vector with a few bytes changed). No
//! decoder may panic. Sealed objects must refuse all of it; plain encodings (trees, chunk
//! lists, the pack trailer) may accept some inputs, but then they must be canonical: encoding
//! what was decoded gives the input back.
//!
//! A second tier reaches the parsers *behind* the authentication: the body of each sealed
//! object is damaged and then sealed again with the right key, as a buggy writer or a key
//! holder would. Those parsers must not panic either, and must refuse every truncation.
//!
//! A third tier forges index files with the right key (as a buggy writer would) and reads
//! through a `Repository`: every lie about frames and blobs must end in an error, never a
//! panic or wrong data.
//!
//! WAL files get the same three tiers (their header and their body sealed again), and the
//! scanner `wal-push` runs over a segment before archiving it gets every cut, every bit flip,
//! random buffers, impossible heads and the densest segment there is.
//!
//! The inputs are the vectors in `format-spec/vectors/` (see `tests/vectors.rs`).
//!
//! A counting allocator (this test binary's global allocator) records the largest allocation
//! each thread makes, so the tests can show that a forged count is refused *before* anything
//! is allocated for it.

use coffer::crypto::{Keys, MasterSecret, NONCE_LEN};
use coffer::format::config::Config;
use coffer::format::gc::{Lock, LockKind, Plan, Wait, LOCK_MAGIC, PLAN_MAGIC, WAIT_MAGIC};
use coffer::format::index::IndexFile;
use coffer::format::keyfile::KeyFile;
use coffer::format::pack::{self, Frame, FrameBlob};
use coffer::format::report::{Report, ReportKind, REPORT_MAGIC};
use coffer::format::snapshot::Snapshot;
use coffer::format::tombstone::{BuriedKind, Tombstone, MAX_NAMES, TOMBSTONE_MAGIC};
use coffer::format::tree::{ChunkList, NodeKind, Tree};
use coffer::format::wal::{WalCodec, WalHeader, WalKind, PREFIX_LEN, WAL_MAGIC};
use coffer::format::BlobType;
use coffer::wal::scan::{self as wal_scan, SegmentHead};
use coffer::wal::synthetic::{SegmentBuilder, RM_LOGICALMSG};
use coffer::{ErrorKind, Result};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

const RANDOM_CASES: usize = 3000;
const HEADER_AAD: &[u8] = b"coffer pack header v2";

/// The associated data of a frame's box: "coffer frame v2" and the type byte.
fn frame_aad(t: BlobType) -> Vec<u8> {
    [&b"coffer frame v2"[..], &[t as u8]].concat()
}

fn keys() -> Keys {
    Keys::derive(&MasterSecret::from_bytes(std::array::from_fn(|i| i as u8)))
}

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("format-spec/vectors")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The system allocator, noting the largest allocation (or reallocation) of each thread.
struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: an allocation during thread teardown must not panic.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call goes straight to `System` with the caller's arguments; the bookkeeping
// touches a thread-local `Cell` only, and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Run `f` on this thread and return its result with the largest single allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get))
}

/// xorshift64: reproducible, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Pseudo-random inputs shaped after `valid`.
fn random_inputs(valid: &[u8], seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(RANDOM_CASES);
    for i in 0..RANDOM_CASES {
        let buf = match i % 4 {
            // Pure noise, of about the right size.
            0 => {
                let n = rng.below(2 * valid.len() + 16);
                rng.bytes(n)
            }
            // A valid prefix, then noise.
            1 => {
                let keep = rng.below(valid.len() + 1);
                let n = rng.below(valid.len() + 16);
                [&valid[..keep], &rng.bytes(n)].concat()
            }
            // The valid bytes with a few of them changed.
            2 => {
                let mut b = valid.to_vec();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(b.len());
                    b[at] = rng.next() as u8;
                }
                b
            }
            // The valid bytes with a run inserted or removed.
            _ => {
                let mut b = valid.to_vec();
                let at = rng.below(b.len() + 1);
                if rng.next() & 1 == 0 {
                    let n = 1 + rng.below(64);
                    let ins = rng.bytes(n);
                    b.splice(at..at, ins);
                } else {
                    let n = rng.below(b.len() - at + 1);
                    b.drain(at..at + n);
                }
                b
            }
        };
        out.push(buf);
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// Every input must be refused.
    Err,
    /// Only require that the decoder returns (Ok inputs go to the `on_ok` check).
    NoPanic,
}

fn show(buf: &[u8]) -> String {
    let head: String = buf.iter().take(48).map(|b| format!("{b:02x}")).collect();
    format!(
        "{} bytes: {head}{}",
        buf.len(),
        if buf.len() > 48 { "..." } else { "" }
    )
}

/// Run one case: no panic, and Err if required.
fn run<T>(
    what: &str,
    case: &str,
    buf: &[u8],
    expect: Expect,
    decode: &dyn Fn(&[u8]) -> Result<T>,
    on_ok: &dyn Fn(&[u8], T),
) {
    let r = catch_unwind(AssertUnwindSafe(|| decode(buf)))
        .unwrap_or_else(|_| panic!("{what}: decoder panicked on {case} ({})", show(buf)));
    match r {
        Ok(v) => {
            assert!(
                expect != Expect::Err,
                "{what}: accepted {case} ({})",
                show(buf)
            );
            on_ok(buf, v);
        }
        Err(e) => assert!(!e.message().is_empty(), "{what}: an error needs a message"),
    }
}

/// Truncations (always refused), bit flips and random buffers (as `expect` says).
fn hammer<T>(
    what: &str,
    valid: &[u8],
    expect: Expect,
    seed: u64,
    decode: &dyn Fn(&[u8]) -> Result<T>,
    on_ok: &dyn Fn(&[u8], T),
) {
    assert!(decode(valid).is_ok(), "{what}: the valid input must decode");
    for n in 0..valid.len() {
        run(
            what,
            &format!("a cut at {n}"),
            &valid[..n],
            Expect::Err,
            decode,
            on_ok,
        );
    }
    for bit in 0..valid.len() * 8 {
        let mut b = valid.to_vec();
        b[bit / 8] ^= 1 << (bit % 8);
        run(what, &format!("bit flip {bit}"), &b, expect, decode, on_ok);
    }
    let mut extended = valid.to_vec();
    extended.push(0);
    run(
        what,
        "a trailing byte",
        &extended,
        Expect::Err,
        decode,
        on_ok,
    );
    for (i, b) in random_inputs(valid, seed).iter().enumerate() {
        if b == valid {
            continue;
        }
        run(what, &format!("random case {i}"), b, expect, decode, on_ok);
    }
}

fn never_ok<T>(_: &[u8], _: T) {
    unreachable!("a sealed decoder accepted damaged input")
}

// ---------------------------------------------------------------------------------------------
// Tier 1: the stored bytes, attacked without the key.

#[test]
fn config_refuses_hostile_input() {
    let keys = keys();
    let valid = read("config.bin");
    hammer(
        "config",
        &valid,
        Expect::Err,
        1,
        &|b| Config::decode(&keys, b),
        &never_ok,
    );
    // peek_repo_id reads the unauthenticated prefix only (trailing bytes are the sealed body):
    // it may accept anything that starts right, but must not panic.
    let peek = |b: &[u8]| Config::peek_repo_id(b);
    for n in 0..37 {
        run(
            "config peek",
            &format!("a cut at {n}"),
            &valid[..n],
            Expect::Err,
            &peek,
            &|_, _| {},
        );
    }
    for (i, b) in random_inputs(&valid, 2).iter().enumerate() {
        run(
            "config peek",
            &format!("random case {i}"),
            b,
            Expect::NoPanic,
            &peek,
            &|_, _| {},
        );
    }
}

#[test]
fn key_file_refuses_hostile_input() {
    let valid = read("key.bin");
    // A key file is authenticated by its password only; parsing alone cannot catch every
    // flip. What parses must still fail to open with the real password.
    let on_ok = |buf: &[u8], kf: KeyFile| {
        if buf == valid.as_slice() || kf.kdf.memory_kib > 64 * 1024 || kf.kdf.iterations > 4 {
            return; // too costly to run argon2 here; decoding was the point
        }
        assert!(
            kf.unwrap(b"coffer test vectors").is_err(),
            "damaged key file opens ({})",
            show(buf)
        );
    };
    hammer(
        "key file",
        &valid,
        Expect::NoPanic,
        3,
        &KeyFile::decode,
        &on_ok,
    );
}

#[test]
fn pack_trailer_refuses_hostile_input() {
    let pack_bytes = read("pack.bin");
    let valid = &pack_bytes[pack_bytes.len() - pack::TRAILER_LEN..];
    hammer(
        "pack trailer",
        valid,
        Expect::NoPanic,
        4,
        &pack::decode_trailer,
        &|_, _| {},
    );
    // The magic and the version are never negotiable.
    for bit in 0..5 * 8 {
        let mut b = valid.to_vec();
        b[bit / 8] ^= 1 << (bit % 8);
        assert!(pack::decode_trailer(&b).is_err(), "trailer bit {bit}");
    }
    // Header lengths outside what a header can be.
    for len in [0u32, 43, pack::MAX_HEADER_LEN + 1, u32::MAX] {
        let b = [&b"CFFP\x03"[..], &len.to_le_bytes()].concat();
        assert!(pack::decode_trailer(&b).is_err(), "header length {len}");
    }
}

#[test]
fn pack_header_refuses_hostile_input() {
    let keys = keys();
    let pack_bytes = read("pack.bin");
    let header_len = pack::decode_trailer(&pack_bytes[pack_bytes.len() - 9..]).unwrap() as usize;
    let start = pack_bytes.len() - 9 - header_len;
    let valid = &pack_bytes[start..pack_bytes.len() - 9];
    let frames_len = start as u64;
    hammer(
        "pack header",
        valid,
        Expect::Err,
        5,
        &|b| pack::decode_header(&keys, b, frames_len),
        &never_ok,
    );
    // The frames must tile the frame area exactly, which must fit 32-bit offsets.
    for wrong in [
        0,
        frames_len - 1,
        frames_len + 1,
        u32::MAX as u64 + 1,
        u64::MAX,
    ] {
        assert!(
            pack::decode_header(&keys, valid, wrong).is_err(),
            "frame area {wrong}"
        );
    }
}

/// A pack read completely: the header, every frame (decrypt, decompress, check its length)
/// and every blob (cut from its frame, check its ID).
fn read_pack(keys: &Keys, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let frames = pack::decode_pack(keys, bytes)?;
    let mut out = vec![];
    for (offset, f) in pack::frame_offsets(&frames) {
        let sealed = &bytes[offset as usize..offset as usize + f.length as usize];
        let plain = pack::open_frame(keys, f.blob_type, sealed, f.raw_length())?;
        let mut at = 0;
        for b in &f.blobs {
            let blob = &plain[at..at + b.raw_length as usize];
            pack::verify_blob(keys, f.blob_type, &b.id, blob)?;
            out.push(blob.to_vec());
            at += b.raw_length as usize;
        }
    }
    Ok(out)
}

#[test]
fn pack_refuses_hostile_input() {
    let keys = keys();
    let valid = read("pack.bin");
    // decode_pack checks the header; frames are checked when they are opened. Whatever it
    // accepts tiles the bytes before the header, so slicing frames out of it cannot panic.
    let tiles = |b: &[u8], frames: Vec<Frame>| {
        let end = pack::frame_offsets(&frames)
            .last()
            .map_or(0, |(at, f)| at as usize + f.length as usize);
        assert!(end + pack::TRAILER_LEN <= b.len());
    };
    hammer(
        "pack (header only)",
        &valid,
        Expect::NoPanic,
        6,
        &|b| pack::decode_pack(&keys, b),
        &tiles,
    );
    hammer(
        "pack (all frames and blobs)",
        &valid,
        Expect::Err,
        7,
        &|b| read_pack(&keys, b),
        &never_ok,
    );
}

#[test]
fn index_refuses_hostile_input() {
    let keys = keys();
    let valid = read("index.bin");
    hammer(
        "index",
        &valid,
        Expect::Err,
        8,
        &|b| IndexFile::decode(&keys, b),
        &never_ok,
    );
}

#[test]
fn snapshot_refuses_hostile_input() {
    let keys = keys();
    let valid = read("snapshot.bin");
    hammer(
        "snapshot",
        &valid,
        Expect::Err,
        9,
        &|b| Snapshot::decode(&keys, b),
        &never_ok,
    );
}

#[test]
fn lock_refuses_hostile_input() {
    let keys = keys();
    hammer(
        "lock",
        &read("lock.bin"),
        Expect::Err,
        13,
        &|b| Lock::decode(&keys, b),
        &never_ok,
    );
}

#[test]
fn plan_refuses_hostile_input() {
    let keys = keys();
    hammer(
        "plan",
        &read("plan.bin"),
        Expect::Err,
        14,
        &|b| Plan::decode(&keys, b),
        &never_ok,
    );
}

#[test]
fn wait_refuses_hostile_input() {
    let keys = keys();
    hammer(
        "wait record",
        &read("wait.bin"),
        Expect::Err,
        15,
        &|b| Wait::decode(&keys, b),
        &never_ok,
    );
}

/// The magic of a lock, a plan or a wait record is checked first, and the box authenticates
/// it: no stored object of one kind reads as another, with its own magic or a forged one.
#[test]
fn gc_objects_refuse_the_wrong_magic() {
    let keys = keys();
    let files = [
        ("lock.bin", LOCK_MAGIC),
        ("plan.bin", PLAN_MAGIC),
        ("wait.bin", WAIT_MAGIC),
    ];
    let decode = |magic: &[u8; 4], b: &[u8]| match magic {
        b"CFFL" => Lock::decode(&keys, b).map(drop),
        b"CFFG" => Plan::decode(&keys, b).map(drop),
        _ => Wait::decode(&keys, b).map(drop),
    };
    let others: [&[u8; 4]; 6] = [b"CFFS", b"CFFI", b"CFFC", b"cffl", b"\0\0\0\0", b"CFFX"];
    for (file, own) in files {
        let valid = read(file);
        decode(own, &valid).unwrap();
        for (_, magic) in files.iter().filter(|(_, m)| *m != own) {
            let mut b = valid.clone();
            let r = catch_unwind(AssertUnwindSafe(|| decode(magic, &b))).expect("no panic");
            let err = r.expect_err("another kind's object");
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{file}: {err}");
            assert!(err.message().contains("wrong magic"), "{file}: {err}");
            b[..4].copy_from_slice(*magic);
            let err = decode(magic, &b).expect_err("a forged magic");
            assert!(
                err.message().contains("fails authentication"),
                "{file}: {err}"
            );
        }
        for magic in others {
            let mut b = valid.clone();
            b[..4].copy_from_slice(magic);
            let err = decode(own, &b).expect_err("a foreign magic");
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{file}: {err}");
            assert!(err.message().contains("wrong magic"), "{file}: {err}");
        }
    }
}

#[test]
fn tree_survives_hostile_input() {
    let valid = read("tree.bin");
    let canonical =
        |buf: &[u8], t: Tree| assert_eq!(t.encode(), buf, "tree decoding is not canonical");
    hammer(
        "tree",
        &valid,
        Expect::NoPanic,
        10,
        &Tree::decode,
        &canonical,
    );
    let empty = Tree { nodes: vec![] }.encode();
    hammer(
        "empty tree",
        &empty,
        Expect::NoPanic,
        11,
        &Tree::decode,
        &canonical,
    );
}

#[test]
fn chunk_list_survives_hostile_input() {
    let valid = read("chunklist.bin");
    let canonical = |buf: &[u8], l: ChunkList| {
        assert_eq!(l.encode(), buf, "chunk list decoding is not canonical")
    };
    hammer(
        "chunk list",
        &valid,
        Expect::NoPanic,
        12,
        &ChunkList::decode,
        &canonical,
    );
}

/// A name is one path component. A tree naming `..`, `/`, an empty name or one holding NUL
/// is refused when decoded, so a snapshot written by another key holder cannot make restore
/// (or a drill) write outside its target (security review L13).
#[test]
fn tree_names_that_leave_the_folder_are_refused() {
    let tree = Tree::decode(&read("tree.bin")).unwrap();
    for bad in [
        &b""[..],
        b".",
        b"..",
        b"/",
        b"../../etc/passwd",
        b"/etc/passwd",
        b"a/b",
        b"a\0b",
    ] {
        // One node, so that the name check (not the sort order check) is what refuses it.
        let mut node = tree.nodes[0].clone();
        node.name = bad.to_vec();
        let t = Tree { nodes: vec![node] };
        let err = Tree::decode(&t.encode()).expect_err("a name that is not one component");
        assert_eq!(err.kind(), coffer::ErrorKind::Corrupt, "{bad:?}");
        assert!(err.to_string().contains("invalid name"), "{bad:?}: {err}");
        assert!(Tree::new(t.nodes.clone()).is_err(), "{bad:?}");
    }
}

/// Only a symlink may carry a link target: a tree with a target on any other kind of node
/// is refused by the decoder (and by `Tree::new`, so a writer cannot make one).
#[test]
fn link_target_only_on_symlinks() {
    let valid = read("tree.bin");
    let tree = Tree::decode(&valid).unwrap();
    let mut tried = 0;
    for (i, n) in tree.nodes.iter().enumerate() {
        if n.kind == NodeKind::Symlink {
            assert!(!n.link_target.is_empty());
            // An empty target is not refused by the format.
            let mut t = tree.clone();
            t.nodes[i].link_target.clear();
            assert!(Tree::decode(&t.encode()).is_ok());
            continue;
        }
        for target in [&b"x"[..], b"/etc/passwd", &[0u8]] {
            let mut t = tree.clone();
            t.nodes[i].link_target = target.to_vec();
            let err = Tree::decode(&t.encode()).expect_err("a link target on a non-symlink");
            assert_eq!(err.kind(), coffer::ErrorKind::Corrupt, "{:?}", n.kind);
            assert!(Tree::new(t.nodes.clone()).is_err(), "{:?}", n.kind);
        }
        tried += 1;
    }
    assert_eq!(
        tried, 9,
        "the vector tree has nine nodes that are not symlinks"
    );
}

/// Counts and lengths that claim far more than the input holds are refused before anything
/// is allocated for them.
#[test]
fn forged_counts_are_refused() {
    let max = u32::MAX.to_le_bytes();
    assert!(Tree::decode(&[&[1u8][..], &max].concat()).is_err());
    assert!(ChunkList::decode(&[&[1u8, 0][..], &max].concat()).is_err());
    assert!(
        ChunkList::decode(&[&[1u8, 9][..], &0u32.to_le_bytes()].concat()).is_err(),
        "level 9"
    );
    // A node whose name or link target claims 4 GiB.
    let mut node = vec![1u8, 1, 0, 0, 0];
    node.extend_from_slice(&0xffffu16.to_le_bytes());
    node.extend_from_slice(&[0; 100]);
    assert!(Tree::decode(&node).is_err());
}

// ---------------------------------------------------------------------------------------------
// Tier 2: damaged bodies sealed again with the right key.

fn nonce() -> [u8; NONCE_LEN] {
    [0x99; NONCE_LEN]
}

/// Split an envelope object into its public part and its opened body.
fn open_envelope(keys: &Keys, bytes: &[u8], public_len: usize) -> (Vec<u8>, Vec<u8>) {
    let (public, sealed) = bytes.split_at(public_len);
    (
        public.to_vec(),
        keys.open(public, sealed).expect("vector opens"),
    )
}

fn reseal(keys: &Keys, public: &[u8], body: &[u8]) -> Vec<u8> {
    [public.to_vec(), keys.seal_with_nonce(nonce(), public, body)].concat()
}

#[test]
fn config_body_survives_hostile_input() {
    let keys = keys();
    let (public, body) = open_envelope(&keys, &read("config.bin"), 37);
    let decode = |b: &[u8]| Config::decode(&keys, &reseal(&keys, &public, b));
    hammer(
        "config body",
        &body,
        Expect::NoPanic,
        21,
        &decode,
        &|_, _| {},
    );
}

#[test]
fn index_body_survives_hostile_input() {
    let keys = keys();
    let (public, body) = open_envelope(&keys, &read("index.bin"), 5);
    let decode = |b: &[u8]| IndexFile::decode(&keys, &reseal(&keys, &public, b));
    hammer(
        "index body",
        &body,
        Expect::NoPanic,
        22,
        &decode,
        &|_, _| {},
    );
    // The cache keeps decrypted bodies and decodes them with `decode_body`: the same parser,
    // and canonical, so a cached body is exactly what the index file held.
    let canonical = |buf: &[u8], f: IndexFile| {
        assert_eq!(f.encode_body(), buf, "index body decoding is not canonical")
    };
    hammer(
        "index body (plaintext)",
        &body,
        Expect::NoPanic,
        25,
        &IndexFile::decode_body,
        &canonical,
    );
    // Forged counts: supersedes, packs, frames, blobs in a frame.
    let max = u32::MAX.to_le_bytes();
    assert!(decode(&max).is_err());
    assert!(decode(&[&0u32.to_le_bytes()[..], &max].concat()).is_err());
    let pack_with_many_frames =
        [&0u32.to_le_bytes()[..], &1u32.to_le_bytes(), &[0; 40], &max].concat();
    assert!(decode(&pack_with_many_frames).is_err());
    let frame_with_many_blobs = [
        &0u32.to_le_bytes()[..],
        &1u32.to_le_bytes(),
        &[0; 32],
        &u64::MAX.to_le_bytes(),
        &1u32.to_le_bytes(),
        &[0],
        &41u32.to_le_bytes(),
        &max,
    ]
    .concat();
    assert!(decode(&frame_with_many_blobs).is_err());
}

/// An index file that lists one pack twice is refused (spec §5.5): only one list of frames
/// can be the pack's header, and the in-memory index would keep the first and lose the
/// second's blobs. The `index` fuzz target found it accepted; the same pack with the same
/// frames twice is refused too, and two different packs are fine.
#[test]
fn an_index_listing_a_pack_twice_is_refused() {
    let keys = keys();
    let pack = |id: u8, raw: u32| {
        [
            &[id; 32][..],
            &1000u64.to_le_bytes(),
            &frame_table(&[(0, 100, &[raw])]),
        ]
        .concat()
    };
    let body = |packs: &[Vec<u8>]| {
        let mut out = 0u32.to_le_bytes().to_vec();
        out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
        for p in packs {
            out.extend_from_slice(p);
        }
        out
    };
    let public = b"CFFI\x03";
    for twice in [
        body(&[pack(0x33, 10), pack(0x33, 20)]),
        body(&[pack(0x33, 10), pack(0x44, 5), pack(0x33, 10)]),
    ] {
        let e = IndexFile::decode_body(&twice).unwrap_err();
        assert!(e.message().contains("twice"), "{e}");
        assert!(IndexFile::decode(&keys, &reseal(&keys, public, &twice)).is_err());
    }
    let two = body(&[pack(0x33, 10), pack(0x44, 20)]);
    let f = IndexFile::decode_body(&two).unwrap();
    assert_eq!(f.packs.len(), 2);
    assert_eq!(f.encode_body(), two);
}

/// A frame as `frame_table` takes it: (type, sealed length, raw length of each blob).
type FrameSpec<'a> = (u8, u32, &'a [u32]);

/// A frame table as a pack header body and an index both encode it (spec §5.4), built by
/// hand so that any value can be forged.
fn frame_table(frames: &[FrameSpec]) -> Vec<u8> {
    let mut out = (frames.len() as u32).to_le_bytes().to_vec();
    for (k, (t, length, raws)) in frames.iter().enumerate() {
        out.push(*t);
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&(raws.len() as u32).to_le_bytes());
        for (j, raw) in raws.iter().enumerate() {
            out.extend_from_slice(&[(k * 16 + j) as u8; 32]);
            out.extend_from_slice(&raw.to_le_bytes());
        }
    }
    out
}

/// An index body listing one pack of `size` bytes with the given frames.
fn index_body(size: u64, frames: &[FrameSpec]) -> Vec<u8> {
    [
        &0u32.to_le_bytes()[..],
        &1u32.to_le_bytes(),
        &[0x33; 32],
        &size.to_le_bytes(),
        &frame_table(frames),
    ]
    .concat()
}

const MIB32: u32 = 32 << 20;

/// Frame descriptions that break a rule of §5.4, each refused by the pack header's and the
/// index's decoders alike; and the valid ones next to them, accepted.
#[test]
fn forged_frame_tables_are_refused() {
    let keys = keys();
    let header = |frames_len: u64, body: &[u8]| {
        pack::decode_header(
            &keys,
            &keys.seal_with_nonce(nonce(), HEADER_AAD, body),
            frames_len,
        )
    };
    let index = |body: &[u8]| {
        let public = b"CFFI\x03";
        let direct = IndexFile::decode_body(body);
        let sealed = IndexFile::decode(&keys, &reseal(&keys, public, body));
        assert_eq!(
            direct.as_ref().ok(),
            sealed.as_ref().ok(),
            "decode and decode_body disagree"
        );
        assert_eq!(
            direct.as_ref().err().map(|e| e.message().to_string()),
            sealed.as_ref().err().map(|e| e.message().to_string()),
        );
        direct
    };
    let refused: &[(&str, &[FrameSpec])] = &[
        ("a frame with no blobs", &[(0, 41, &[])]),
        (
            "a frame with no blobs after a good one",
            &[(0, 41, &[1]), (1, 41, &[])],
        ),
        (
            "blobs adding up to 64 MiB + 1",
            &[(0, 41, &[MIB32, MIB32 + 1])],
        ),
        (
            "blobs adding up to 2^33 - 2",
            &[(0, 41, &[u32::MAX, u32::MAX])],
        ),
        ("one blob over 64 MiB", &[(2, 41, &[(64 << 20) + 1])]),
        (
            "a frame of 40 bytes (a seal without a codec byte)",
            &[(0, 40, &[0])],
        ),
        ("a frame of 0 bytes", &[(0, 0, &[0])]),
        ("blob type 3", &[(3, 41, &[1])]),
        ("blob type 255", &[(255, 41, &[1])]),
    ];
    for (what, frames) in refused {
        let table = frame_table(frames);
        let len: u64 = frames.iter().map(|f| f.1 as u64).sum();
        let err = header(len, &table).expect_err(what);
        assert_eq!(err.kind(), coffer::ErrorKind::Corrupt, "{what}: {err}");
        let err = index(&index_body(u64::MAX, frames)).expect_err(what);
        assert_eq!(err.kind(), coffer::ErrorKind::Corrupt, "{what}: {err}");
    }
    let accepted: &[(&str, &[FrameSpec])] = &[
        ("the smallest frame", &[(0, 41, &[0])]),
        (
            "blobs adding up to exactly 64 MiB",
            &[(0, 41, &[MIB32, MIB32])],
        ),
        ("one blob of 64 MiB", &[(1, 41, &[64 << 20])]),
        (
            "three frames of three types",
            &[(0, 41, &[1, 2]), (1, 50, &[3]), (2, 60, &[4, 5, 6])],
        ),
    ];
    for (what, frames) in accepted {
        let table = frame_table(frames);
        let len: u64 = frames.iter().map(|f| f.1 as u64).sum();
        let decoded = header(len, &table).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(decoded.len(), frames.len());
        let f = index(&index_body(len, frames)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(f.packs[0].frames, decoded);
        assert_eq!(f.encode_body(), index_body(len, frames));
    }

    // A header's frames must tile the frame area exactly: not less, not more.
    let two = frame_table(&[(0, 41, &[1]), (1, 50, &[2])]);
    assert!(header(91, &two).is_ok());
    for wrong in [0, 41, 50, 90, 92, 1 << 32] {
        assert!(header(wrong, &two).is_err(), "frame area {wrong}");
    }
    // Frames of 2^32 - 1 bytes each do not fit 32-bit offsets, even when they tile.
    let huge = frame_table(&[(0, u32::MAX, &[1]), (0, u32::MAX, &[1])]);
    assert!(header(2 * u32::MAX as u64, &huge).is_err());
    // An index's frames must fit inside the pack (and 32-bit offsets), but need not tile it:
    // the header and trailer follow them.
    let frames: &[FrameSpec] = &[(0, 41, &[1]), (1, 50, &[2])];
    assert!(index(&index_body(91, frames)).is_ok());
    assert!(index(&index_body(91 + 300, frames)).is_ok());
    for size in [0, 41, 90] {
        let err = index(&index_body(size, frames)).expect_err("frames beyond the pack");
        assert_eq!(err.kind(), coffer::ErrorKind::Corrupt);
    }
    let huge: &[FrameSpec] = &[(0, u32::MAX, &[1]), (0, 1, &[1])];
    assert!(index(&index_body(u64::MAX, huge)).is_err());
    let max_offset: &[FrameSpec] = &[(0, u32::MAX - 41, &[1]), (0, 41, &[1])];
    assert!(index(&index_body(u64::MAX, max_offset)).is_ok());
}

#[test]
fn snapshot_body_survives_hostile_input() {
    let keys = keys();
    let (public, body) = open_envelope(&keys, &read("snapshot.bin"), 5);
    let decode = |b: &[u8]| Snapshot::decode(&keys, &reseal(&keys, &public, b));
    hammer(
        "snapshot body",
        &body,
        Expect::NoPanic,
        23,
        &decode,
        &|_, _| {},
    );
}

#[test]
fn lock_body_survives_hostile_input() {
    let keys = keys();
    let (public, body) = open_envelope(&keys, &read("lock.bin"), 5);
    let decode = |b: &[u8]| Lock::decode(&keys, &reseal(&keys, &public, b));
    // Whatever decodes is canonical: encoding it again gives the same stored bytes.
    let canonical = |b: &[u8], lock: Lock| {
        lock.validate().expect("a decoded lock is valid");
        assert_eq!(lock.encode(&keys, Some(nonce())), reseal(&keys, &public, b));
    };
    hammer("lock body", &body, Expect::NoPanic, 26, &decode, &canonical);
}

#[test]
fn plan_body_survives_hostile_input() {
    let keys = keys();
    let (public, body) = open_envelope(&keys, &read("plan.bin"), 5);
    let decode = |b: &[u8]| Plan::decode(&keys, &reseal(&keys, &public, b));
    let canonical = |b: &[u8], plan: Plan| {
        assert_eq!(plan.encode(&keys, Some(nonce())), reseal(&keys, &public, b));
    };
    hammer("plan body", &body, Expect::NoPanic, 27, &decode, &canonical);
}

#[test]
fn wait_body_survives_hostile_input() {
    let keys = keys();
    let (public, body) = open_envelope(&keys, &read("wait.bin"), 5);
    let decode = |b: &[u8]| Wait::decode(&keys, &reseal(&keys, &public, b));
    let canonical = |b: &[u8], wait: Wait| {
        assert_eq!(wait.encode(&keys, Some(nonce())), reseal(&keys, &public, b));
    };
    hammer(
        "wait record body",
        &body,
        Expect::NoPanic,
        28,
        &decode,
        &canonical,
    );
}

/// Decode `bytes` (built beforehand) and expect a `Corrupt` error whose message contains
/// `says`, with no panic and no allocation over 4 KiB: the vector bodies are at most 120
/// bytes, so only an allocation sized by a forged count could be larger.
fn refused_small<T>(what: &str, says: &str, decode: impl FnOnce() -> Result<T>) {
    let (r, largest) = largest_allocation(|| catch_unwind(AssertUnwindSafe(decode)));
    let err = r
        .unwrap_or_else(|_| panic!("{what}: decoder panicked"))
        .err()
        .unwrap_or_else(|| panic!("{what}: accepted"));
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
    assert!(err.message().contains(says), "{what}: {err}");
    assert!(largest <= 4096, "{what}: allocated {largest} bytes");
}

/// Bodies that authenticate (sealed with the right key, as a buggy writer or a key holder
/// could) but claim more entries than they hold, from one too many up to 2^32 - 1, are
/// refused before anything is allocated for the entries.
#[test]
fn gc_objects_refuse_forged_counts() {
    // The counter sees what a decoder that trusted a count would do.
    let (v, largest) = largest_allocation(|| Vec::<[u8; 32]>::with_capacity(1 << 15));
    assert!(v.capacity() >= 1 << 15 && largest >= 1 << 20, "{largest}");
    let keys = keys();
    let (plan_public, plan) = open_envelope(&keys, &read("plan.bin"), 5);
    let (wait_public, wait) = open_envelope(&keys, &read("wait.bin"), 5);
    // The vector bodies: plan = operation[16] 2 packs[64] 1 index[32]; wait = plan[32]
    // 2 operations[32].
    assert_eq!(plan.len(), 16 + 4 + 64 + 4 + 32);
    assert_eq!(&plan[16..20], &2u32.to_le_bytes());
    assert_eq!(&plan[84..88], &1u32.to_le_bytes());
    assert_eq!(wait.len(), 32 + 4 + 32);
    assert_eq!(&wait[32..36], &2u32.to_le_bytes());
    for count in [3u32, 4, 1 << 16, 1 << 24, u32::MAX - 1, u32::MAX] {
        let n = count.to_le_bytes();
        // The plan's pack count: 100 bytes follow it, room for 3 IDs. With 3, the third
        // swallows the index count, which is then read from the index ID (d1d1d1d1) and
        // claims too many in its turn.
        let mut b = plan.clone();
        b[16..20].copy_from_slice(&n);
        let sealed = reseal(&keys, &plan_public, &b);
        refused_small(&format!("plan with {count} packs"), "claims", || {
            Plan::decode(&keys, &sealed)
        });
        // The plan's index count: 32 bytes follow it.
        let mut b = plan.clone();
        b[84..88].copy_from_slice(&n);
        let sealed = reseal(&keys, &plan_public, &b);
        refused_small(&format!("plan with {count} index files"), "claims", || {
            Plan::decode(&keys, &sealed)
        });
        // The wait record's operation count: 32 bytes follow it, room for 2.
        let mut b = wait.clone();
        b[32..36].copy_from_slice(&n);
        let sealed = reseal(&keys, &wait_public, &b);
        refused_small(&format!("wait with {count} operations"), "claims", || {
            Wait::decode(&keys, &sealed)
        });
    }
    // Bodies that stop right after a count of 2^32 - 1: nothing behind the count at all.
    let max = u32::MAX.to_le_bytes();
    let sealed = reseal(&keys, &plan_public, &[&[0x11; 16][..], &max].concat());
    refused_small("plan: a bare pack count", "claims", || {
        Plan::decode(&keys, &sealed)
    });
    let sealed = reseal(
        &keys,
        &plan_public,
        &[&[0x11; 16][..], &0u32.to_le_bytes(), &max].concat(),
    );
    refused_small("plan: a bare index count", "claims", || {
        Plan::decode(&keys, &sealed)
    });
    let sealed = reseal(&keys, &wait_public, &[&[0x33; 32][..], &max].concat());
    refused_small("wait: a bare operation count", "claims", || {
        Wait::decode(&keys, &sealed)
    });
    // The lock's host claims 65,535 bytes and holds 11.
    let (lock_public, lock) = open_envelope(&keys, &read("lock.bin"), 5);
    let mut b = lock.clone();
    b[29..31].copy_from_slice(&u16::MAX.to_le_bytes());
    let sealed = reseal(&keys, &lock_public, &b);
    refused_small("lock: a long host", "truncated", || {
        Lock::decode(&keys, &sealed)
    });
    // The honest counts still decode, with small allocations.
    let plan_sealed = reseal(&keys, &plan_public, &plan);
    let wait_sealed = reseal(&keys, &wait_public, &wait);
    let (r, largest) = largest_allocation(|| {
        Plan::decode(&keys, &plan_sealed)?;
        Wait::decode(&keys, &wait_sealed)
    });
    assert_eq!(r.unwrap().operations.len(), 2);
    assert!(largest <= 4096, "{largest}");
}

/// The fields behind the counts, in bodies that authenticate: an unknown lock kind, a host
/// that is not UTF-8, a byte too many, a byte too few.
#[test]
fn gc_object_fields_are_checked() {
    let keys = keys();
    let (public, lock) = open_envelope(&keys, &read("lock.bin"), 5);
    assert_eq!(lock[16], LockKind::Prune as u8);
    let decode = |b: &[u8]| {
        let sealed = reseal(&keys, &public, b);
        catch_unwind(AssertUnwindSafe(|| Lock::decode(&keys, &sealed))).expect("no panic")
    };
    for kind in [1u8, 2] {
        let mut b = lock.clone();
        b[16] = kind;
        assert_eq!(decode(&b).unwrap().kind as u8, kind);
    }
    for kind in [0u8, 3, 4, 0x7f, 0x80, 0xfe, 0xff] {
        let mut b = lock.clone();
        b[16] = kind;
        let err = decode(&b).expect_err("an unknown lock kind");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "kind {kind}: {err}");
        assert_eq!(err.message(), format!("lock has unknown kind {kind}"));
    }
    // The host: "vector-host" at 31..42; a Latin-1 byte makes it not UTF-8.
    assert_eq!(&lock[31..], b"vector-host");
    let mut b = lock.clone();
    b[31] = 0xe9;
    let err = decode(&b).expect_err("a host that is not UTF-8");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.message().contains("not UTF-8"), "{err}");
    // Trailing bytes after a complete body, and bodies one byte short, for all three.
    let bodies = [
        ("lock.bin", "lock"),
        ("plan.bin", "plan"),
        ("wait.bin", "wait record"),
    ];
    for (file, what) in bodies {
        let (public, body) = open_envelope(&keys, &read(file), 5);
        let decode = |b: &[u8]| {
            let sealed = reseal(&keys, &public, b);
            catch_unwind(AssertUnwindSafe(|| match file {
                "lock.bin" => Lock::decode(&keys, &sealed).map(drop),
                "plan.bin" => Plan::decode(&keys, &sealed).map(drop),
                _ => Wait::decode(&keys, &sealed).map(drop),
            }))
            .expect("no panic")
        };
        decode(&body).unwrap();
        for extra in [&[0u8][..], &[0; 16], &[0xff; 32], &body] {
            let err = decode(&[&body[..], extra].concat()).expect_err("trailing bytes");
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
            assert_eq!(
                err.message(),
                format!("{what} has {} unexpected trailing bytes", extra.len())
            );
        }
        for n in 0..body.len() {
            let err = decode(&body[..n]).expect_err("a short body");
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{what} cut at {n}: {err}");
        }
        // And the stored object with a byte appended or removed: the box does not open.
        let stored = read(file);
        for b in [
            [&stored[..], &[0]].concat(),
            stored[..stored.len() - 1].to_vec(),
        ] {
            let r = catch_unwind(AssertUnwindSafe(|| match file {
                "lock.bin" => Lock::decode(&keys, &b).map(drop),
                "plan.bin" => Plan::decode(&keys, &b).map(drop),
                _ => Wait::decode(&keys, &b).map(drop),
            }))
            .expect("no panic");
            let err = r.expect_err("a stored object one byte off");
            assert!(
                err.message().contains("fails authentication"),
                "{what}: {err}"
            );
        }
    }
}

#[test]
fn pack_header_body_survives_hostile_input() {
    let keys = keys();
    let pack_bytes = read("pack.bin");
    let header_len = pack::decode_trailer(&pack_bytes[pack_bytes.len() - 9..]).unwrap() as usize;
    let start = pack_bytes.len() - 9 - header_len;
    let body = keys
        .open(HEADER_AAD, &pack_bytes[start..pack_bytes.len() - 9])
        .unwrap();
    let decode = |b: &[u8]| {
        pack::decode_header(
            &keys,
            &keys.seal_with_nonce(nonce(), HEADER_AAD, b),
            start as u64,
        )
    };
    hammer(
        "pack header body",
        &body,
        Expect::NoPanic,
        24,
        &decode,
        &|_, _| {},
    );
    assert!(decode(&u32::MAX.to_le_bytes()).is_err());
    // A frame claiming more blobs than the body holds.
    let many = [
        &1u32.to_le_bytes()[..],
        &[0],
        &41u32.to_le_bytes(),
        &u32::MAX.to_le_bytes(),
    ]
    .concat();
    assert!(
        pack::decode_header(&keys, &keys.seal_with_nonce(nonce(), HEADER_AAD, &many), 41).is_err()
    );
}

/// Frames: any codec byte, any payload, sealed with the right key under the right type, are
/// refused unless their plaintext has the length the header gives; a blob cut from one is
/// refused unless it really is the blob its ID names.
#[test]
fn frames_refuse_hostile_payloads() {
    let keys = keys();
    let real = b"the real plaintext";
    let id = keys.blob_id(BlobType::Data as u8, real);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for i in 0..RANDOM_CASES {
        let n = rng.below(300);
        let mut framed = rng.bytes(n);
        if i % 2 == 0 && !framed.is_empty() {
            framed[0] = (i % 3) as u8; // mostly known codecs, some unknown
        }
        let raw_length = match i % 3 {
            0 => n.saturating_sub(1) as u64, // what a raw frame of these bytes holds
            1 => real.len() as u64,
            _ => rng.next() >> rng.below(64),
        };
        let sealed = keys.seal_with_nonce(nonce(), &frame_aad(BlobType::Data), &framed);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pack::open_frame(&keys, BlobType::Data, &sealed, raw_length)
        }))
        .unwrap_or_else(|_| panic!("open_frame panicked on {}", show(&framed)));
        if let Ok(plain) = r {
            assert_eq!(plain.len() as u64, raw_length, "random frame {i}");
            assert!(
                pack::verify_blob(&keys, BlobType::Data, &id, &plain).is_err(),
                "random frame {i} holds the real blob"
            );
        }
    }
    // Two blobs in a raw tree frame. The box binds the type: the frame opens as a tree only.
    let (a, b) = (&b"first blob "[..], &b"second blob"[..]);
    let plain = [a, b].concat();
    let framed = [&[0u8][..], &plain].concat();
    let as_tree = keys.seal_with_nonce(nonce(), &frame_aad(BlobType::Tree), &framed);
    let len = plain.len() as u64;
    for t in [BlobType::Data, BlobType::ChunkList] {
        let err = pack::open_frame(&keys, t, &as_tree, len).expect_err("another type");
        assert_eq!(err.kind(), coffer::ErrorKind::Corrupt);
    }
    let opened = pack::open_frame(&keys, BlobType::Tree, &as_tree, len).unwrap();
    assert_eq!(opened, plain);
    // Blob IDs bind the type too, and each blob only checks against its own ID.
    let (ta, tb) = (
        keys.blob_id(BlobType::Tree as u8, a),
        keys.blob_id(BlobType::Tree as u8, b),
    );
    pack::verify_blob(&keys, BlobType::Tree, &ta, &opened[..a.len()]).unwrap();
    pack::verify_blob(&keys, BlobType::Tree, &tb, &opened[a.len()..]).unwrap();
    assert!(pack::verify_blob(&keys, BlobType::Tree, &tb, &opened[..a.len()]).is_err());
    assert!(pack::verify_blob(&keys, BlobType::Tree, &ta, &opened[..a.len() + 1]).is_err());
    assert!(pack::verify_blob(&keys, BlobType::Data, &ta, &opened[..a.len()]).is_err());
    let da = keys.blob_id(BlobType::Data as u8, a);
    assert!(pack::verify_blob(&keys, BlobType::Tree, &da, &opened[..a.len()]).is_err());
    // The plaintext must have exactly the length the header gives.
    for wrong in [0, len - 1, len + 1, 64 << 20, u64::MAX] {
        let err = pack::open_frame(&keys, BlobType::Tree, &as_tree, wrong)
            .expect_err("a frame of another length");
        assert_eq!(err.kind(), coffer::ErrorKind::Corrupt, "raw length {wrong}");
    }
    // The same for a zstd frame: its declared size is checked against the header's too.
    let z = [&[1u8][..], &zstd::bulk::compress(&plain, 3).unwrap()].concat();
    let zsealed = keys.seal_with_nonce(nonce(), &frame_aad(BlobType::Tree), &z);
    assert_eq!(
        pack::open_frame(&keys, BlobType::Tree, &zsealed, len).unwrap(),
        plain
    );
    for wrong in [0, len - 1, len + 1] {
        assert!(pack::open_frame(&keys, BlobType::Tree, &zsealed, wrong).is_err());
    }
    // An empty box (no codec byte), a raw payload over 64 MiB and a zstd bomb (declaring
    // 64 MiB + 1) are refused, whatever length the header claims.
    let limit = coffer::compress::MAX_BLOB_SIZE;
    let empty = keys.seal_with_nonce(nonce(), &frame_aad(BlobType::Data), b"");
    assert!(pack::open_frame(&keys, BlobType::Data, &empty, 0).is_err());
    let big = [&[0u8][..], &vec![7u8; limit + 1]].concat();
    let sealed = keys.seal_with_nonce(nonce(), &frame_aad(BlobType::Data), &big);
    let err = pack::open_frame(&keys, BlobType::Data, &sealed, limit as u64 + 1).unwrap_err();
    assert_eq!(err.kind(), coffer::ErrorKind::Corrupt);
    let bomb = zstd::bulk::compress(&vec![0u8; limit + 1], 3).unwrap();
    assert!(bomb.len() < 1 << 20);
    let sealed = keys.seal_with_nonce(
        nonce(),
        &frame_aad(BlobType::Data),
        &[&[1u8][..], &bomb].concat(),
    );
    let err = pack::open_frame(&keys, BlobType::Data, &sealed, limit as u64 + 1).unwrap_err();
    assert_eq!(err.kind(), coffer::ErrorKind::Corrupt);
    // A frame with only empty blobs is a frame with an empty plaintext.
    let codec_only = keys.seal_with_nonce(nonce(), &frame_aad(BlobType::Data), &[0]);
    assert_eq!(
        pack::open_frame(&keys, BlobType::Data, &codec_only, 0).unwrap(),
        b""
    );
}

/// A zstd payload must declare its decompressed size in its (first) frame header, at most
/// 64 MiB, and decompress to exactly that many bytes; a raw payload is bounded too. These are
/// checked before the output buffer is sized from the declaration.
#[test]
fn zstd_frames_must_declare_their_size() {
    use coffer::compress::{decompress, MAX_BLOB_SIZE};
    use coffer::ErrorKind;
    let keys = keys();
    let aad = frame_aad(BlobType::Data);
    let plain = b"coffer zstd size rules: ".repeat(40);
    let id = keys.blob_id(BlobType::Data as u8, &plain);
    let open = |payload: &[u8]| {
        let framed = [&[1u8][..], payload].concat();
        let sealed = keys.seal_with_nonce(nonce(), &aad, &framed);
        let opened = pack::open_frame(&keys, BlobType::Data, &sealed, plain.len() as u64)?;
        pack::verify_blob(&keys, BlobType::Data, &id, &opened)?;
        Ok::<_, coffer::Error>(opened)
    };
    let refused = |what: &str, payload: &[u8]| {
        let err = open(payload).expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
        let err = decompress(1, payload).expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
    };

    // What coffer writes (one-shot API, content size in the header) opens.
    let with_size = zstd::bulk::compress(&plain, 3).unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&with_size).ok(),
        Some(Some(plain.len() as u64))
    );
    assert_eq!(open(&with_size).unwrap(), plain);

    // The same content in a frame without Frame_Content_Size: refused, whichever way made.
    let mut c = zstd::bulk::Compressor::new(3).unwrap();
    c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
        .unwrap();
    let without_size = c.compress(&plain).unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&without_size).ok(),
        Some(None)
    );
    assert_eq!(
        zstd::bulk::decompress(&without_size, plain.len()).unwrap(),
        plain
    );
    refused("a frame without a declared size", &without_size);
    let streamed = zstd::stream::encode_all(&plain[..], 3).unwrap();
    refused("a streamed frame without a declared size", &streamed);

    // Hand-made frames: magic, a frame header with Single_Segment set, then one last raw
    // block. `fcs` is the Frame_Content_Size field (1, 4 or 8 bytes, little-endian); its
    // length picks the descriptor.
    let frame = |fcs: &[u8], content: &[u8]| {
        let fhd: u8 = match fcs.len() {
            1 => 0x20,
            4 => 0xa0,
            8 => 0xe0,
            n => panic!("no FCS field of {n} bytes"),
        };
        let block = ((content.len() as u32) << 3) | 1; // last block, raw
        [
            &[0x28, 0xb5, 0x2f, 0xfd, fhd][..],
            fcs,
            &block.to_le_bytes()[..3],
            content,
        ]
        .concat()
    };
    assert_eq!(decompress(1, &frame(&[3], b"abc")).unwrap(), b"abc");
    assert_eq!(
        decompress(1, &frame(&3u32.to_le_bytes(), b"abc")).unwrap(),
        b"abc"
    );
    assert_eq!(
        decompress(1, &frame(&3u64.to_le_bytes(), b"abc")).unwrap(),
        b"abc"
    );
    // Declares more than 64 MiB: refused from the header alone, before any allocation
    // (1 TiB, 2^63, and the first size above the limit).
    for declared in [1u64 << 40, 1 << 63, MAX_BLOB_SIZE as u64 + 1] {
        refused(
            &format!("a frame declaring {declared} bytes"),
            &frame(&declared.to_le_bytes(), b""),
        );
    }
    refused(
        "a frame declaring 64 MiB + 1 in a 4-byte field",
        &frame(&(MAX_BLOB_SIZE as u32 + 1).to_le_bytes(), b"abc"),
    );
    // Declares a size its content does not have, shorter or longer.
    refused(
        "a frame declaring 10 bytes but holding 3",
        &frame(&[10], b"abc"),
    );
    refused(
        "a frame declaring 0 bytes but holding 3",
        &frame(&[0], b"abc"),
    );
    // A second frame with content is more than the first frame declared.
    refused(
        "two frames",
        &[frame(&[3], b"abc"), frame(&[3], b"def")].concat(),
    );

    // Raw (codec 0) payloads: at most 64 MiB as well.
    let big = vec![0u8; MAX_BLOB_SIZE + 1];
    let err = decompress(0, &big).expect_err("a raw payload above 64 MiB");
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_eq!(
        decompress(0, &big[..MAX_BLOB_SIZE]).unwrap().len(),
        MAX_BLOB_SIZE
    );
}

/// Header frame tables that lie (sealed with the key, so they open, and tiling the frame
/// area, so they decode) are caught when the frames are opened and the blobs checked.
#[test]
fn lying_frame_tables_are_caught_at_open() {
    let keys = keys();
    let pack_bytes = read("pack.bin");
    let frames = pack::decode_pack(&keys, &pack_bytes).unwrap();
    let frames_len: u32 = frames.iter().map(|f| f.length).sum();
    assert_eq!(read_pack(&keys, &pack_bytes).unwrap().len(), 5);
    type Lie = fn(&mut Vec<Frame>);
    let lies: &[(&str, Lie)] = &[
        ("frames 1 and 2 swapped", |f| f.swap(1, 2)),
        ("frames 0 and 1 swapped", |f| f.swap(0, 1)),
        ("frame 0 typed as a tree", |f| {
            f[0].blob_type = BlobType::Tree
        }),
        ("frame 2 typed as data", |f| f[2].blob_type = BlobType::Data),
        ("a byte moved between frames 0 and 1", |f| {
            f[0].length += 1;
            f[1].length -= 1;
        }),
        ("a byte moved between the trees of frame 1", |f| {
            f[1].blobs[0].raw_length += 1;
            f[1].blobs[1].raw_length -= 1;
        }),
        ("the trees of frame 1 listed in the other order", |f| {
            f[1].blobs.swap(0, 1)
        }),
        ("the IDs of frame 1 swapped", |f| {
            let (a, b) = (f[1].blobs[0].id, f[1].blobs[1].id);
            f[1].blobs[0].id = b;
            f[1].blobs[1].id = a;
        }),
        ("frame 1's plaintext one byte short", |f| {
            f[1].blobs[0].raw_length -= 1
        }),
        ("frame 2's plaintext one byte long", |f| {
            f[2].blobs[0].raw_length += 1
        }),
        ("frame 0's second blob split in two", |f| {
            let b = f[0].blobs[1];
            f[0].blobs[1].raw_length = 2;
            f[0].blobs.push(FrameBlob {
                raw_length: b.raw_length - 2,
                ..b
            });
        }),
        ("the empty tree listed in the data frame", |f| {
            let t = f[1].blobs[1];
            f[0].blobs[1].id = t.id;
        }),
    ];
    for (what, lie) in lies {
        let mut forged_frames = frames.clone();
        lie(&mut forged_frames);
        assert_ne!(forged_frames, frames, "{what}");
        let mut forged = pack_bytes[..frames_len as usize].to_vec();
        forged.extend_from_slice(&pack::encode_header(&keys, &forged_frames, Some(nonce())));
        assert_eq!(
            pack::decode_pack(&keys, &forged).as_ref().ok(),
            Some(&forged_frames),
            "{what}: the header decodes"
        );
        let err = read_pack(&keys, &forged).expect_err(what);
        assert_eq!(err.kind(), coffer::ErrorKind::Corrupt, "{what}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tier 3: index files forged with the right key, read through a `Repository`.

mod repository {
    use super::*;
    use coffer::backend::{Backend, Location, ObjectKind, ObjectName};
    use coffer::clock::FixedClock;
    use coffer::crypto::KdfParams;
    use coffer::format::index::IndexPack;
    use coffer::format::tree::{Content, Node};
    use coffer::id::{BlobId, PackId};
    use coffer::progress::NoProgress;
    use coffer::repo::{OpenOptions, Repository};
    use coffer::ErrorKind;
    use std::sync::{Arc, Mutex};

    const PASSWORD: &[u8] = b"hostile index";

    struct Fixture {
        backend: Arc<dyn Backend>,
        repo: Repository,
        warnings: Arc<Mutex<Vec<String>>>,
        _dirs: (tempfile::TempDir, Option<tempfile::TempDir>),
        pack: PackId,
        pack_size: u64,
        frames: Vec<Frame>,
        /// (type, ID, plaintext) of every blob in the pack.
        blobs: Vec<(BlobType, BlobId, Vec<u8>)>,
    }

    fn options(
        cache: Option<&tempfile::TempDir>,
        warnings: &Arc<Mutex<Vec<String>>>,
    ) -> OpenOptions {
        let w = warnings.clone();
        OpenOptions {
            cache_dir: cache.map(|c| c.path().to_path_buf()),
            clock: Arc::new(FixedClock(1_800_000_000_000_000_000)),
            host: "host".into(),
            user: "user".into(),
            warn: Arc::new(move |m: &str| w.lock().unwrap().push(m.to_string())),
            kdf_limit: coffer::crypto::KdfLimit::DEFAULT,
        }
    }

    /// A repository in a local folder holding one pack: a zstd data frame with two blobs, a
    /// raw tree frame with one. No index file yet.
    fn fixture(with_cache: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let backend = coffer::backend::open(&Location::Local(dir.path().join("repo"))).unwrap();
        let warnings = Arc::new(Mutex::new(vec![]));
        let cache = with_cache.then(|| tempfile::tempdir().unwrap());
        let kdf = KdfParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        };
        Repository::init(
            backend.clone(),
            PASSWORD,
            kdf,
            &options(cache.as_ref(), &warnings),
        )
        .unwrap();
        let repo = Repository::open(
            backend.clone(),
            PASSWORD,
            options(cache.as_ref(), &warnings),
        )
        .unwrap();
        let keys = repo.keys();
        let groups: Vec<(BlobType, Vec<Vec<u8>>)> = vec![
            (
                BlobType::Data,
                vec![b"alpha ".repeat(50), b"bravo, charlie ".repeat(40)],
            ),
            (BlobType::Tree, vec![Tree::default().encode()]),
        ];
        let mut bytes = vec![];
        let mut frames = vec![];
        let mut blobs = vec![];
        for (t, plains) in &groups {
            let sealed = pack::seal_frame(keys, *t, &plains.concat(), 3);
            bytes.extend_from_slice(&sealed);
            frames.push(Frame {
                blob_type: *t,
                length: sealed.len() as u32,
                blobs: plains
                    .iter()
                    .map(|p| FrameBlob {
                        id: keys.blob_id(*t as u8, p),
                        raw_length: p.len() as u32,
                    })
                    .collect(),
            });
            for p in plains {
                blobs.push((*t, keys.blob_id(*t as u8, p), p.clone()));
            }
        }
        bytes.extend_from_slice(&pack::encode_header(keys, &frames, None));
        let pack_size = bytes.len() as u64;
        let name = repo.write_object(ObjectKind::Pack, bytes).unwrap();
        Fixture {
            backend,
            repo,
            warnings,
            _dirs: (dir, cache),
            pack: PackId(name.hash),
            pack_size,
            frames,
            blobs,
        }
    }

    impl Fixture {
        fn index(&self, pack: IndexPack) -> IndexFile {
            IndexFile {
                supersedes: vec![],
                packs: vec![pack],
            }
        }

        fn honest(&self) -> IndexPack {
            IndexPack {
                id: self.pack,
                size: self.pack_size,
                frames: self.frames.clone(),
            }
        }

        /// Store `pack` as an index file sealed with the repository's key, as another
        /// client (a buggy one, or a key holder) would: not through this client's cache.
        fn write_index(&self, pack: IndexPack) -> ObjectName {
            let bytes = self.index(pack).encode(self.repo.keys(), None);
            let name = self.repo.write_object(ObjectKind::Index, bytes).unwrap();
            self.repo.invalidate_index();
            name
        }

        /// Read every blob of the pack, through `read_blob`, `dump_file` (which reads runs
        /// of frames with `open_run`) and `check --read-data`, none of which may panic.
        /// Returns which blobs `read_blob` could read; those must be the real plaintexts.
        /// `check` must pass for the honest index (`what` = "honest") and fail for any other.
        fn read_all(&self, what: &str) -> Vec<bool> {
            let r = catch_unwind(AssertUnwindSafe(|| {
                let mut readable = vec![];
                for (t, id, plain) in &self.blobs {
                    match self.repo.read_blob(*t, id) {
                        Ok(p) => {
                            assert_eq!(&p, plain, "{what}: wrong plaintext");
                            readable.push(true);
                        }
                        Err(e) => {
                            // (A range past the end of a pack is a backend error in opendal.)
                            assert!(
                                matches!(
                                    e.kind(),
                                    ErrorKind::Corrupt | ErrorKind::NotFound | ErrorKind::Backend
                                ),
                                "{what}: {e}"
                            );
                            readable.push(false);
                        }
                    }
                }
                // A file of both data blobs, dumped.
                let data: Vec<&(BlobType, BlobId, Vec<u8>)> = self
                    .blobs
                    .iter()
                    .filter(|b| b.0 == BlobType::Data)
                    .collect();
                let node = Node {
                    name: b"f".to_vec(),
                    kind: coffer::format::tree::NodeKind::File,
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime_ns: 0,
                    ctime_ns: 0,
                    size: data.iter().map(|b| b.2.len() as u64).sum(),
                    dev: 0,
                    inode: 0,
                    nlink: 1,
                    rdev: 0,
                    link_target: vec![],
                    content: Content::Chunks(data.iter().map(|b| b.1).collect()),
                };
                let mut out = vec![];
                match coffer::browse::dump_file(&self.repo, &node, &mut out) {
                    Ok(n) => {
                        assert_eq!(n as usize, out.len());
                        let want: Vec<u8> = data.iter().flat_map(|b| b.2.clone()).collect();
                        assert_eq!(out, want, "{what}: dump gives wrong bytes");
                    }
                    Err(e) => assert!(
                        matches!(
                            e.kind(),
                            ErrorKind::Corrupt | ErrorKind::NotFound | ErrorKind::Backend
                        ),
                        "{what}: dump: {e}"
                    ),
                }
                let opts = coffer::check::CheckOptions {
                    read_data: true,
                    read_data_subset: None,
                };
                let report = coffer::check::check(&self.repo, &opts, &NoProgress)
                    .unwrap_or_else(|e| panic!("{what}: check fails outright: {e}"));
                (readable, report.ok())
            }))
            .unwrap_or_else(|_| panic!("{what}: reading through a forged index panicked"));
            let (readable, check_ok) = r;
            // `check --read-data` compares every pack header with the index: any lie is
            // found, even one that no read runs into.
            assert_eq!(check_ok, what == "honest", "{what}: check");
            readable
        }
    }

    #[test]
    fn an_honest_index_reads_back() {
        for with_cache in [false, true] {
            let f = fixture(with_cache);
            f.write_index(f.honest());
            assert_eq!(f.read_all("honest"), [true, true, true]);
            // The recorded type must be the expected one.
            let (_, data_id, _) = &f.blobs[0];
            let err = f.repo.read_blob(BlobType::Tree, data_id).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt);
            let err = f
                .repo
                .read_blob(BlobType::Data, &BlobId([9; 32]))
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::NotFound);
            assert!(f.warnings.lock().unwrap().is_empty());
        }
    }

    /// Lies that decode (they obey §5.5) but do not match the pack: each blob they touch is
    /// unreadable, everything else reads, and nothing panics.
    #[test]
    fn forged_indexes_give_errors_not_panics() {
        type Lie = fn(&mut IndexPack);
        let lies: &[(&str, Lie, [bool; 3])] = &[
            (
                "a byte moved between the data blobs",
                |p| {
                    p.frames[0].blobs[0].raw_length += 1;
                    p.frames[0].blobs[1].raw_length -= 1;
                },
                [false, false, true],
            ),
            (
                "the data frame one byte longer than its plaintext",
                |p| p.frames[0].blobs[1].raw_length += 1,
                [false, false, true],
            ),
            (
                "the data frame one byte shorter than its plaintext",
                |p| p.frames[0].blobs[0].raw_length -= 1,
                [false, false, true],
            ),
            (
                "the data blobs listed in the other order",
                |p| p.frames[0].blobs.swap(0, 1),
                [false, false, true],
            ),
            (
                "the data frame's stored length one byte long",
                |p| p.frames[0].length += 1,
                [false, false, false],
            ),
            (
                "the data frame's stored length one byte short",
                |p| p.frames[0].length -= 1,
                [false, false, false],
            ),
            (
                "the data frame typed as a tree",
                |p| p.frames[0].blob_type = BlobType::Tree,
                [false, false, true],
            ),
            (
                "the tree frame typed as a chunk list",
                |p| p.frames[1].blob_type = BlobType::ChunkList,
                [true, true, false],
            ),
            (
                "the tree frame reaching past the end of the pack",
                |p| {
                    p.size += 100_000;
                    p.frames[1].length += 100_000;
                },
                [true, true, false],
            ),
            (
                "frames in a pack that does not exist",
                |p| p.id = PackId([0x77; 32]),
                [false, false, false],
            ),
            (
                "a data blob's ID replaced",
                |p| p.frames[0].blobs[1].id = BlobId([0x55; 32]),
                [true, false, true],
            ),
            (
                "a zero-length data blob added",
                |p| {
                    p.frames[0].blobs.insert(
                        0,
                        FrameBlob {
                            id: BlobId([0x66; 32]),
                            raw_length: 0,
                        },
                    )
                },
                [true, true, true],
            ),
        ];
        for with_cache in [false, true] {
            for (what, lie, readable) in lies {
                let f = fixture(with_cache);
                let mut p = f.honest();
                lie(&mut p);
                f.write_index(p);
                let what = format!("{what} (cache: {with_cache})");
                assert_eq!(&f.read_all(&what), readable, "{what}");
                assert!(f.warnings.lock().unwrap().is_empty(), "{what}");
            }
        }
    }

    /// Index files that break §5.5 are refused when the index is loaded: skipped with a
    /// warning, their blobs not found.
    #[test]
    fn invalid_index_files_are_skipped_with_a_warning() {
        for with_cache in [false, true] {
            let f = fixture(with_cache);
            let mut p = f.honest();
            let frames_len: u64 = p.frames.iter().map(|f| f.length as u64).sum();
            p.size = frames_len - 1;
            f.write_index(p);
            for (t, id, _) in &f.blobs {
                let err = f.repo.read_blob(*t, id).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
            }
            let warnings = f.warnings.lock().unwrap().clone();
            assert!(
                warnings
                    .iter()
                    .any(|w| w.contains("beyond the end of its pack")),
                "{warnings:?}"
            );
        }
    }

    /// The frame a blob's location names is opened from the recent-frames cache when it was
    /// opened before; an index loaded afterwards that places a blob past the end of that
    /// frame gets an error, not a slice out of bounds.
    #[test]
    fn a_blob_beyond_its_frame_is_refused() {
        for with_cache in [false, true] {
            let f = fixture(with_cache);
            let honest = f.write_index(f.honest());
            assert_eq!(f.read_all("honest"), [true, true, true]);
            // The same pack, described anew: the second data blob now reaches 1,000 bytes
            // past the end of the frame's plaintext.
            f.backend.delete(&honest).unwrap();
            let mut p = f.honest();
            p.frames[0].blobs[1].raw_length += 1000;
            f.write_index(p);
            let (t, id, _) = &f.blobs[1];
            let err = catch_unwind(AssertUnwindSafe(|| f.repo.read_blob(*t, id)))
                .expect("no panic")
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        }
    }

    /// Versions 1 and 2 were never released; an older repository (here: version 2) is
    /// refused by name, before any key is tried.
    #[test]
    fn an_older_version_repository_is_refused() {
        let f = fixture(false);
        let (config, _) = f.backend.list(ObjectKind::Config).unwrap()[0];
        let mut bytes = f.backend.get(&config).unwrap();
        assert_eq!(&bytes[..5], b"CFFC\x03");
        bytes[4] = 2;
        f.backend.delete(&config).unwrap();
        let older = ObjectName::for_bytes(ObjectKind::Config, &bytes);
        f.backend.put(&older, bytes.into()).unwrap();
        let warnings = Arc::new(Mutex::new(vec![]));
        let err = Repository::open(f.backend.clone(), b"any password", options(None, &warnings))
            .err()
            .expect("a version 2 repository opens");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(
            err.to_string()
                .contains("format version 2; this coffer reads version 3"),
            "{err}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reports (format-spec §5.11): tiers 1 and 2, forged counts and checked fields.

#[test]
fn report_refuses_hostile_input() {
    let keys = keys();
    hammer(
        "report",
        &read("report.bin"),
        Expect::Err,
        31,
        &|b| Report::decode(&keys, b),
        &never_ok,
    );
}

#[test]
fn report_body_survives_hostile_input() {
    let keys = keys();
    let (public, body) = open_envelope(&keys, &read("report.bin"), 5);
    let decode = |b: &[u8]| Report::decode(&keys, &reseal(&keys, &public, b));
    // Whatever decodes is canonical and valid.
    let canonical = |b: &[u8], report: Report| {
        report.validate().expect("a decoded report is valid");
        assert_eq!(
            report.encode(&keys, Some(nonce())),
            reseal(&keys, &public, b)
        );
    };
    hammer(
        "report body",
        &body,
        Expect::NoPanic,
        32,
        &decode,
        &canonical,
    );
}

/// No other sealed object reads as a report, nor a report as one of them.
#[test]
fn report_refuses_other_kinds() {
    let keys = keys();
    let report = read("report.bin");
    for file in [
        "lock.bin",
        "plan.bin",
        "wait.bin",
        "snapshot.bin",
        "index.bin",
    ] {
        let bytes = read(file);
        let err = Report::decode(&keys, &bytes).expect_err("another kind's object");
        assert!(err.message().contains("wrong magic"), "{file}: {err}");
        let mut forged = bytes.clone();
        forged[..4].copy_from_slice(REPORT_MAGIC);
        let err = Report::decode(&keys, &forged).expect_err("a forged magic");
        assert!(
            err.message().contains("fails authentication"),
            "{file}: {err}"
        );
    }
    type Decode<'a> = Box<dyn Fn(&[u8]) -> Result<()> + 'a>;
    let others: [(&[u8; 4], Decode); 3] = [
        (LOCK_MAGIC, Box::new(|b| Lock::decode(&keys, b).map(drop))),
        (PLAN_MAGIC, Box::new(|b| Plan::decode(&keys, b).map(drop))),
        (WAIT_MAGIC, Box::new(|b| Wait::decode(&keys, b).map(drop))),
    ];
    for (magic, decode) in others {
        let err = decode(&report).expect_err("a report as another kind");
        assert!(err.message().contains("wrong magic"), "{err}");
        let mut forged = report.clone();
        forged[..4].copy_from_slice(magic);
        let err = decode(&forged).expect_err("a forged magic");
        assert!(err.message().contains("fails authentication"), "{err}");
    }
}

/// The vector body's layout: kind 0, job 1..6, time 6..14, duration 14..22, ok 22,
/// snapshot count 23..27, two IDs 27..91, target flag 91, target 92..100, message length
/// 100..102, message 102..133, info count 133..135, then two entries.
#[test]
fn report_refuses_forged_counts() {
    let keys = keys();
    let (public, body) = open_envelope(&keys, &read("report.bin"), 5);
    assert_eq!(&body[23..27], &2u32.to_le_bytes());
    assert_eq!(&body[133..135], &2u16.to_le_bytes());
    let decode_alloc = |b: &[u8], what: &str, says: &str| {
        let sealed = reseal(&keys, &public, b);
        refused_small(what, says, || Report::decode(&keys, &sealed));
    };
    for count in [3u32, 4, 1 << 16, 1 << 24, u32::MAX - 1, u32::MAX] {
        let mut b = body.clone();
        b[23..27].copy_from_slice(&count.to_le_bytes());
        // Up to 4 IDs fit in what follows (144 bytes): they swallow later fields and the
        // body is refused further on; more claim more than it holds.
        let says = if count <= 4 { "" } else { "claims" };
        decode_alloc(&b, &format!("report with {count} snapshots"), says);
    }
    // A bare count of 2^32 - 1 right at the end of the body.
    let mut b = body[..23].to_vec();
    b.extend(u32::MAX.to_le_bytes());
    decode_alloc(&b, "report: a bare snapshot count", "claims");
    // The info count claims 65,535 entries and holds 2; the message claims 65,535 bytes.
    let mut b = body.clone();
    b[133..135].copy_from_slice(&u16::MAX.to_le_bytes());
    decode_alloc(&b, "report with 65535 info entries", "truncated");
    let mut b = body.clone();
    b[100..102].copy_from_slice(&u16::MAX.to_le_bytes());
    decode_alloc(&b, "report with a long message", "truncated");
    // The honest body decodes with small allocations.
    let sealed = reseal(&keys, &public, &body);
    let (r, largest) = largest_allocation(|| Report::decode(&keys, &sealed));
    assert_eq!(r.unwrap().snapshots.len(), 2);
    assert!(largest <= 4096, "{largest}");
}

/// The kind, the two flags and the strings are checked, and a body must be used up exactly.
#[test]
fn report_fields_are_checked() {
    let keys = keys();
    let (public, body) = open_envelope(&keys, &read("report.bin"), 5);
    let decode = |b: &[u8]| {
        let sealed = reseal(&keys, &public, b);
        catch_unwind(AssertUnwindSafe(|| Report::decode(&keys, &sealed))).expect("no panic")
    };
    assert_eq!(body[0], ReportKind::Drill as u8);
    for kind in [1u8, 2] {
        let mut b = body.clone();
        b[0] = kind;
        assert_eq!(decode(&b).unwrap().kind as u8, kind);
    }
    for kind in [0u8, 3, 0x7f, 0x80, 0xff] {
        let mut b = body.clone();
        b[0] = kind;
        let err = decode(&b).expect_err("an unknown report kind");
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert_eq!(err.message(), format!("report has unknown kind {kind}"));
    }
    // ok = 0 decodes as a failed report; 2 and up are refused, as is a target flag of 2.
    let mut b = body.clone();
    b[22] = 0;
    assert!(!decode(&b).unwrap().ok);
    for (at, flag) in [(22usize, "ok"), (91, "target")] {
        for v in [2u8, 0x80, 0xff] {
            let mut b = body.clone();
            b[at] = v;
            let err = decode(&b).expect_err("a flag that is not 0 or 1");
            assert_eq!(err.kind(), ErrorKind::Corrupt);
            assert_eq!(err.message(), format!("report {flag} flag is not 0 or 1"));
        }
    }
    // No target: the flag 0 and the 8 bytes of the target gone.
    let b = [&body[..91], &[0u8][..], &body[100..]].concat();
    assert_eq!(decode(&b).unwrap().target_ns, None);
    // A job and a message that are not UTF-8.
    for at in [3usize, 102] {
        let mut b = body.clone();
        b[at] = 0xe9;
        let err = decode(&b).expect_err("a string that is not UTF-8");
        assert!(err.message().contains("not UTF-8"), "{err}");
    }
    for extra in [&[0u8][..], &[0xff; 40]] {
        let err = decode(&[&body[..], extra].concat()).expect_err("trailing bytes");
        assert_eq!(
            err.message(),
            format!("report has {} unexpected trailing bytes", extra.len())
        );
    }
    for n in 0..body.len() {
        let err = decode(&body[..n]).expect_err("a short body");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "cut at {n}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Tombstones (format-spec §5.12): the sealed object, its public list of names (which a sync
// without the key reads), forged counts and checked fields.

/// The public part of a tombstone with these raw entries: magic, version, count, entries.
fn tombstone_public(count: u32, entries: &[(u8, [u8; 32])]) -> Vec<u8> {
    let mut public = TOMBSTONE_MAGIC.to_vec();
    public.push(3);
    public.extend(count.to_le_bytes());
    for (kind, name) in entries {
        public.push(*kind);
        public.extend(name);
    }
    public
}

#[test]
fn tombstone_refuses_hostile_input() {
    let keys = keys();
    hammer(
        "tombstone",
        &read("tombstone.bin"),
        Expect::Err,
        41,
        &|b| Tombstone::decode(&keys, b),
        &never_ok,
    );
}

/// Without the key only the names can be read. Whatever that accepts is a canonical list:
/// sorted, unique, of known kinds, and exactly the bytes it came from.
#[test]
fn tombstone_names_survive_hostile_input() {
    let canonical = |b: &[u8], (names, public_len): (Vec<(BuriedKind, [u8; 32])>, usize)| {
        assert!(!names.is_empty() && names.len() <= MAX_NAMES);
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(public_len, 9 + 33 * names.len());
        let entries: Vec<(u8, [u8; 32])> = names.iter().map(|(k, n)| (*k as u8, *n)).collect();
        assert_eq!(
            tombstone_public(names.len() as u32, &entries),
            &b[..public_len]
        );
        assert_eq!(b.len(), public_len + 48, "the box has its exact length");
    };
    hammer(
        "tombstone names",
        &read("tombstone.bin"),
        Expect::NoPanic,
        42,
        &Tombstone::peek,
        &canonical,
    );
}

/// The public list and the body, damaged and then sealed again with the right key (as a
/// buggy writer would): no panic, and whatever decodes encodes back to the same bytes.
#[test]
fn tombstone_parts_survive_hostile_input() {
    let keys = keys();
    let valid = read("tombstone.bin");
    let (public, body) = open_envelope(&keys, &valid, 108);
    let canonical = |sealed: Vec<u8>, t: Tombstone| {
        t.validate().expect("a decoded tombstone is valid");
        assert_eq!(t.encode(&keys, Some(nonce())), sealed);
    };
    let decode_public = |b: &[u8]| Tombstone::decode(&keys, &reseal(&keys, b, &body));
    hammer(
        "tombstone public part",
        &public,
        Expect::NoPanic,
        43,
        &decode_public,
        &|b: &[u8], t: Tombstone| canonical(reseal(&keys, b, &body), t),
    );
    let decode_body = |b: &[u8]| Tombstone::decode(&keys, &reseal(&keys, &public, b));
    hammer(
        "tombstone body",
        &body,
        Expect::NoPanic,
        44,
        &decode_body,
        &|b: &[u8], t: Tombstone| canonical(reseal(&keys, &public, b), t),
    );
}

/// Counts that claim more names than the object holds, and more than a tombstone may hold
/// even when the bytes are there, are refused before anything is allocated for them.
#[test]
fn tombstone_refuses_forged_counts() {
    let keys = keys();
    let valid = read("tombstone.bin");
    let (public, body) = open_envelope(&keys, &valid, 108);
    assert_eq!(&public[5..9], &3u32.to_le_bytes());
    for count in [4u32, 5, 1 << 16, 1 << 24, u32::MAX - 1, u32::MAX] {
        let mut p = public.clone();
        p[5..9].copy_from_slice(&count.to_le_bytes());
        let sealed = reseal(&keys, &p, &body);
        // A fourth name fits in the 48 bytes of the box, so the list swallows part of it and
        // the rest no longer opens (or the fourth "name" has no valid kind); more claim too
        // much.
        let says = if count == 4 { "" } else { "claims" };
        refused_small(&format!("tombstone with {count} names"), says, || {
            Tombstone::decode(&keys, &sealed)
        });
        refused_small(&format!("tombstone names with {count}"), says, || {
            Tombstone::peek(&sealed)
        });
    }
    // More names than allowed, all present and in order: refused by the bound, not the size.
    let many: Vec<(u8, [u8; 32])> = (0..=MAX_NAMES as u32)
        .map(|i| {
            let mut name = [0u8; 32];
            name[..4].copy_from_slice(&i.to_be_bytes());
            (2, name)
        })
        .collect();
    let sealed = reseal(&keys, &tombstone_public(many.len() as u32, &many), &body);
    refused_small("tombstone over the bound", "objects", || {
        Tombstone::decode(&keys, &sealed)
    });
    // No names at all.
    let sealed = reseal(&keys, &tombstone_public(0, &[]), &body);
    refused_small("an empty tombstone", "objects", || {
        Tombstone::decode(&keys, &sealed)
    });
    // The honest tombstone decodes with small allocations.
    let (r, largest) = largest_allocation(|| Tombstone::decode(&keys, &valid));
    assert_eq!(r.unwrap().names.len(), 3);
    assert!(largest <= 4096, "{largest}");
}

/// Kinds, order and uniqueness of the names are checked, and the body must be exactly a time.
#[test]
fn tombstone_fields_are_checked() {
    let keys = keys();
    let (_, body) = open_envelope(&keys, &read("tombstone.bin"), 108);
    let decode = |entries: &[(u8, [u8; 32])], body: &[u8]| {
        let sealed = reseal(
            &keys,
            &tombstone_public(entries.len() as u32, entries),
            body,
        );
        catch_unwind(AssertUnwindSafe(|| Tombstone::decode(&keys, &sealed))).expect("no panic")
    };
    let t = decode(
        &[(1, [5; 32]), (2, [1; 32]), (2, [2; 32]), (3, [0; 32])],
        &body,
    )
    .unwrap();
    assert_eq!(t.names[0], (BuriedKind::Key, [5; 32]));
    assert_eq!(t.names[3], (BuriedKind::Wal, [0; 32]));
    for kind in [0u8, 4, 0x7f, 0xff] {
        let err = decode(&[(kind, [1; 32])], &body).expect_err("an unknown kind");
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert_eq!(
            err.message(),
            format!("tombstone names an object of unknown kind {kind}")
        );
    }
    for unordered in [
        &[(2u8, [1u8; 32]), (1, [1; 32])][..],
        &[(2, [2; 32]), (2, [1; 32])],
        &[(2, [1; 32]), (2, [1; 32])],
    ] {
        let err = decode(unordered, &body).expect_err("names out of order or repeated");
        assert!(err.message().contains("not sorted or not unique"), "{err}");
    }
    for extra in [&[0u8][..], &[0xff; 40]] {
        let err = decode(&[(2, [1; 32])], &[&body[..], extra].concat()).expect_err("trailing");
        assert_eq!(
            err.message(),
            format!("tombstone has {} unexpected trailing bytes", extra.len())
        );
    }
    for n in 0..body.len() {
        let err = decode(&[(2, [1; 32])], &body[..n]).expect_err("a short body");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "cut at {n}: {err}");
    }
}

/// No other sealed object reads as a tombstone: the magic is checked first, and a forged one
/// makes the list of names parse from bytes that never were one, which the box then refuses.
#[test]
fn tombstone_refuses_other_kinds() {
    let keys = keys();
    for file in [
        "lock.bin",
        "plan.bin",
        "wait.bin",
        "report.bin",
        "snapshot.bin",
        "index.bin",
        "config.bin",
    ] {
        let bytes = read(file);
        let err = Tombstone::decode(&keys, &bytes).expect_err("another kind's object");
        assert!(err.message().contains("wrong magic"), "{file}: {err}");
        let mut forged = bytes.clone();
        forged[..4].copy_from_slice(TOMBSTONE_MAGIC);
        let err = Tombstone::decode(&keys, &forged).expect_err("a forged magic");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{file}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// WAL files (format-spec §5.13): a prefix, the header's box and the body's box, whose
// associated data is everything before it. Then what `wal-push` reads inside a segment
// before it stores it (`wal::scan`).

/// The body box's nonce in the objects sealed here (the header's is `nonce()`).
fn body_nonce() -> [u8; NONCE_LEN] {
    [0x98; NONCE_LEN]
}

/// `wal.bin` opened: the header's plaintext, the stored body (one zstd frame) and the file.
struct WalParts {
    bytes: Vec<u8>,
    body_at: usize,
    plain: Vec<u8>,
    stored: Vec<u8>,
    file: Vec<u8>,
}

fn wal_parts(keys: &Keys) -> WalParts {
    let bytes = read("wal.bin");
    let body_at = PREFIX_LEN + u16::from_le_bytes([bytes[5], bytes[6]]) as usize;
    let plain = keys
        .open(&bytes[..PREFIX_LEN], &bytes[PREFIX_LEN..body_at])
        .unwrap();
    let stored = keys.open(&bytes[..body_at], &bytes[body_at..]).unwrap();
    let file = zstd::bulk::decompress(&stored, 1 << 20).unwrap();
    assert_eq!(file.len(), 65_536);
    WalParts {
        bytes,
        body_at,
        plain,
        stored,
        file,
    }
}

/// A WAL object from a header's plaintext and a stored body, sealed with the right key as a
/// writer (or a key holder) would: the prefix gives the header box's length.
fn seal_wal(keys: &Keys, plain: &[u8], stored: &[u8]) -> Vec<u8> {
    let mut obj = WAL_MAGIC.to_vec();
    obj.push(3);
    obj.extend_from_slice(&((plain.len() + 40) as u16).to_le_bytes());
    let header = keys.seal_with_nonce(nonce(), &obj, plain);
    obj.extend_from_slice(&header);
    let body = keys.seal_with_nonce(body_nonce(), &obj, stored);
    obj.extend_from_slice(&body);
    obj
}

/// The stored object: every cut, every bit flip and the random buffers are refused, by the
/// whole-object decoder and (for the bytes it reads) by the header's.
#[test]
fn wal_file_refuses_hostile_input() {
    let keys = keys();
    let p = wal_parts(&keys);
    let both = |b: &[u8]| {
        let _ = WalHeader::decode(&keys, b);
        WalHeader::decode_file(&keys, b)
    };
    hammer("WAL file", &p.bytes, Expect::Err, 51, &both, &never_ok);
    // The header alone reads the first bytes and ignores what follows its box: every cut
    // before the box ends and every flip up to there is refused.
    let head = &p.bytes[..p.body_at];
    let decode = |b: &[u8]| WalHeader::decode(&keys, b);
    for n in 0..head.len() {
        run(
            "WAL file header",
            &format!("a cut at {n}"),
            &head[..n],
            Expect::Err,
            &decode,
            &never_ok,
        );
    }
    for bit in 0..head.len() * 8 {
        let mut b = p.bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        run(
            "WAL file header",
            &format!("bit flip {bit}"),
            &b,
            Expect::Err,
            &decode,
            &never_ok,
        );
    }
    for (i, b) in random_inputs(head, 55).iter().enumerate() {
        if b.starts_with(head) {
            continue;
        }
        run(
            "WAL file header",
            &format!("random case {i}"),
            b,
            Expect::Err,
            &decode,
            &never_ok,
        );
    }
}

/// Damaged header plaintexts, sealed again with the right key: no panic, and what decodes is
/// canonical (it encodes back to the same object) and opens to the same file.
#[test]
fn wal_header_survives_hostile_input() {
    let keys = keys();
    let p = wal_parts(&keys);
    let nonces = Some((nonce(), body_nonce()));
    let whole = |b: &[u8]| WalHeader::decode_file(&keys, &seal_wal(&keys, b, &p.stored));
    let canonical = |b: &[u8], (h, file): (WalHeader, Vec<u8>)| {
        h.validate().expect("a decoded header is valid");
        assert_eq!(file, p.file);
        assert_eq!(
            h.encode(&keys, &p.stored, nonces).unwrap(),
            seal_wal(&keys, b, &p.stored)
        );
    };
    hammer(
        "WAL header",
        &p.plain,
        Expect::NoPanic,
        52,
        &whole,
        &canonical,
    );
    // The header alone, as the catalog reads it: the hash and size are checked later.
    let alone = |b: &[u8]| WalHeader::decode(&keys, &seal_wal(&keys, b, &p.stored));
    let canonical = |b: &[u8], (h, at): (WalHeader, usize)| {
        h.validate().expect("a decoded header is valid");
        let sealed = seal_wal(&keys, b, &p.stored);
        assert_eq!(at, PREFIX_LEN + b.len() + 40);
        assert_eq!(h.encode(&keys, b"", nonces).unwrap()[..at], sealed[..at]);
    };
    hammer(
        "WAL header alone",
        &p.plain,
        Expect::NoPanic,
        53,
        &alone,
        &canonical,
    );
}

/// Damaged bodies (the zstd frame), sealed again with the right key behind the real header:
/// no panic, and anything that decodes is the same file.
#[test]
fn wal_body_survives_hostile_input() {
    let keys = keys();
    let p = wal_parts(&keys);
    let decode = |b: &[u8]| WalHeader::decode_file(&keys, &seal_wal(&keys, &p.plain, b));
    let same = |_: &[u8], (_, file): (WalHeader, Vec<u8>)| assert_eq!(file, p.file);
    hammer("WAL body", &p.stored, Expect::NoPanic, 54, &decode, &same);
}

/// Each field of the header is checked, in a header that authenticates.
#[test]
fn wal_header_fields_are_checked() {
    let keys = keys();
    let p = wal_parts(&keys);
    // Offsets in the vector's header (a 24-byte name): kind 0, name 1, system id 27,
    // timeline 35, start 39, segment size 47, size 51, hash 59, mtime 91, pushed 99, commit
    // flag 107, first 108, last 116, codec 124.
    assert_eq!(p.plain.len(), 125);
    let with = |at: usize, v: &[u8]| {
        let mut b = p.plain.clone();
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    let refused = |what: &str, plain: &[u8], says: &str| {
        let sealed = seal_wal(&keys, plain, &p.stored);
        let (r, largest) = largest_allocation(|| {
            catch_unwind(AssertUnwindSafe(|| WalHeader::decode(&keys, &sealed)))
        });
        let err = r
            .unwrap_or_else(|_| panic!("{what}: panicked"))
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
        assert!(err.message().contains(says), "{what}: {err}");
        assert!(largest <= 4096, "{what}: allocated {largest} bytes");
    };
    for kind in [0u8, 5, 0x80, 0xff] {
        refused(
            &format!("kind {kind}"),
            &with(0, &[kind]),
            &format!("WAL file of unknown kind {kind}"),
        );
    }
    // A name of 0 bytes (so a box one byte below the smallest), of 65 bytes, and not UTF-8.
    let mut empty = p.plain.clone();
    empty.splice(1..27, [0u8, 0]);
    refused("an empty name", &empty, "header box of 141 bytes");
    let mut long = p.plain.clone();
    long.splice(1..27, [&[65u8, 0][..], &[b'0'; 65]].concat());
    refused("a 65-byte name", &long, "a name of 65 bytes");
    refused("a name not UTF-8", &with(3, &[0xff]), "not UTF-8");
    // Sizes: more than 1 GiB; segment sizes that are not powers of two, above 1 GiB or
    // below the file; a complete segment of another length.
    let size = |v: u64| with(51, &v.to_le_bytes());
    let seg_size = |v: u32| with(47, &v.to_le_bytes());
    refused(
        "a 1 GiB + 1 file",
        &size((1 << 30) + 1),
        "a file of 1073741825 bytes",
    );
    refused("a u64::MAX file", &size(u64::MAX), "a file of");
    for bad in [0u32, 3, 65_535, 65_537, 3 << 20, u32::MAX] {
        refused(
            &format!("segment size {bad}"),
            &seg_size(bad),
            "in segments of",
        );
    }
    refused("2 GiB segments", &seg_size(1 << 31), "in segments of");
    refused(
        "segments smaller than the file",
        &seg_size(32_768),
        "in segments of",
    );
    refused(
        "a complete segment of half its size",
        &with(47, &(1u32 << 17).to_le_bytes()),
        "a complete segment of the wrong size",
    );
    // The commit times: a flag other than 0/1, 0 with times, and times out of order.
    for flag in [2u8, 0xff] {
        refused(
            &format!("flag {flag}"),
            &with(107, &[flag]),
            "commit-time flag",
        );
    }
    refused("flag 0 with times", &with(107, &[0]), "commit-time flag");
    let mut swapped = p.plain.clone();
    swapped[108..124].copy_from_slice(&[&p.plain[116..124], &p.plain[108..116]].concat());
    refused(
        "times out of order",
        &swapped,
        "first commit is after its last",
    );
    for codec in [2u8, 0x80, 0xff] {
        refused(
            &format!("codec {codec}"),
            &with(124, &[codec]),
            &format!("WAL file of unknown codec {codec}"),
        );
    }
    // A header box shorter than the smallest header or longer than 512: refused from the
    // prefix, before anything is allocated for it; a prefix claiming 65,535 bytes too.
    for box_len in [0u16, 1, 40, 141, 513, 1000, u16::MAX] {
        let mut b = p.bytes.clone();
        b[5..7].copy_from_slice(&box_len.to_le_bytes());
        let (r, largest) = largest_allocation(|| WalHeader::decode_file(&keys, &b));
        let err = r.expect_err("a forged box length");
        assert!(err.message().contains("header box of"), "{box_len}: {err}");
        assert!(largest <= 4096, "{box_len}: allocated {largest} bytes");
    }
    // Flag 0 and both times 0: a header without commit times, which decodes.
    let mut none = with(107, &[0]);
    none[108..124].fill(0);
    let (h, _) = WalHeader::decode_file(&keys, &seal_wal(&keys, &none, &p.stored)).unwrap();
    assert_eq!(h.commits, None);
}

/// A zstd body must be one frame that declares the header's size and holds exactly that:
/// a frame that declares another size is refused before anything is allocated for it, and
/// one that declares the header's size but holds less never makes the reader allocate more
/// than that size (which the authenticated header bounds, at most 1 GiB).
#[test]
fn wal_zstd_bodies_must_declare_the_file_size() {
    let keys = keys();
    let p = wal_parts(&keys);
    let h = WalHeader::decode_file(&keys, &p.bytes).unwrap().0;
    assert_eq!(h.codec, WalCodec::Zstd);
    // `bound` is for what the reader sizes from the header; opening the box allocates the
    // stored body's length too.
    let refused = |what: &str, stored: &[u8], bound: usize| {
        let bound = bound.max(stored.len() + 64);
        let sealed = seal_wal(&keys, &p.plain, stored);
        let (r, largest) = largest_allocation(|| {
            catch_unwind(AssertUnwindSafe(|| WalHeader::decode_file(&keys, &sealed)))
        });
        let err = r
            .unwrap_or_else(|_| panic!("{what}: panicked"))
            .err()
            .unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
        assert!(largest <= bound, "{what}: allocated {largest} bytes");
    };
    // Hand-made frames (as in `zstd_frames_must_declare_their_size`): magic, a frame header
    // with Single_Segment and an 8-byte Frame_Content_Size, then one last raw block.
    let frame = |declared: u64, content: &[u8]| {
        let block = ((content.len() as u32) << 3) | 1;
        [
            &[0x28, 0xb5, 0x2f, 0xfd, 0xe0][..],
            &declared.to_le_bytes(),
            &block.to_le_bytes()[..3],
            content,
        ]
        .concat()
    };
    let small = 4096;
    // No declared size: streamed, or with the flag off.
    let streamed = zstd::stream::encode_all(&p.file[..], 1).unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&streamed).ok(),
        Some(None)
    );
    refused("a streamed frame", &streamed, small);
    // Declaring sizes other than the header's, with honest or dishonest content.
    for declared in [0, 3, 65_535, 65_537, 1 << 30, 1 << 40, u64::MAX - 1] {
        refused(
            &format!("a frame declaring {declared} bytes"),
            &frame(declared, b"abc"),
            small,
        );
    }
    refused(
        "a frame declaring 65,537 bytes, holding them",
        &zstd::bulk::compress(&[&p.file[..], b"x"].concat(), 1).unwrap(),
        small,
    );
    // Declaring the header's size: holding 3 bytes, holding one byte more, or followed by
    // a second frame. The output buffer is the header's size, and no more.
    let bound = h.size as usize;
    refused("65,536 declared, 3 held", &frame(65_536, b"abc"), bound);
    let mut more = p.file.clone();
    more.push(0);
    refused("65,536 declared, 65,537 held", &frame(65_536, &more), bound);
    refused(
        "a second frame",
        &[&p.stored[..], &frame(3, b"abc")].concat(),
        bound,
    );
    refused(
        "an empty second frame",
        &[&p.stored[..], &frame(0, b"")].concat(),
        bound,
    );
    // A skippable frame after the real one: zstd itself would skip it; a body is one frame.
    let skippable = [&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0][..], b"abc"].concat();
    refused(
        "a skippable frame after the frame",
        &[&p.stored[..], &skippable].concat(),
        bound,
    );
    refused(
        "a skippable frame before the frame",
        &[&skippable, &p.stored[..]].concat(),
        bound,
    );
    // The honest body: the file is the largest allocation.
    let (r, largest) = largest_allocation(|| WalHeader::decode_file(&keys, &p.bytes));
    assert_eq!(r.unwrap().1, p.file);
    assert!(largest <= bound, "{largest}");
}

/// Another WAL object's body cannot stand in for this one's (the body box binds the header
/// box), nor can a body sealed without the header; and no other kind of object reads as a
/// WAL file, nor a WAL file as another kind.
#[test]
fn wal_files_refuse_bodies_and_objects_of_others() {
    let keys = keys();
    let p = wal_parts(&keys);
    let other_file = b"1\t0/3000000\tno recovery target specified\n".to_vec();
    let other = WalHeader {
        kind: WalKind::History,
        name: "00000002.history".into(),
        start_lsn: 0,
        segment_size: 0,
        size: other_file.len() as u64,
        hash: *blake3::hash(&other_file).as_bytes(),
        codec: WalCodec::Raw,
        commits: None,
        ..WalHeader::decode(&keys, &p.bytes).unwrap().0
    };
    let other_bytes = other
        .encode(&keys, &other_file, Some((nonce(), body_nonce())))
        .unwrap();
    let (_, other_at) = WalHeader::decode(&keys, &other_bytes).unwrap();
    assert_eq!(
        WalHeader::decode_file(&keys, &other_bytes).unwrap().1,
        other_file
    );
    for (what, spliced) in [
        (
            "wal.bin's header, the other's body",
            [&p.bytes[..p.body_at], &other_bytes[other_at..]].concat(),
        ),
        (
            "the other's header, wal.bin's body",
            [&other_bytes[..other_at], &p.bytes[p.body_at..]].concat(),
        ),
        (
            "a body sealed with the prefix alone as associated data",
            [
                &p.bytes[..p.body_at],
                &keys.seal_with_nonce(body_nonce(), &p.bytes[..PREFIX_LEN], &p.stored),
            ]
            .concat(),
        ),
        (
            "a body sealed with no associated data",
            [
                &p.bytes[..p.body_at],
                &keys.seal_with_nonce(body_nonce(), b"", &p.stored),
            ]
            .concat(),
        ),
    ] {
        let err = WalHeader::decode_file(&keys, &spliced).expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
        assert!(
            err.message().contains("fails authentication"),
            "{what}: {err}"
        );
    }
    type Decode<'a> = Box<dyn Fn(&[u8]) -> Result<()> + 'a>;
    let others: Vec<(&str, Decode)> = vec![
        (
            "config.bin",
            Box::new(|b| Config::decode(&keys, b).map(drop)),
        ),
        ("key.bin", Box::new(|b| KeyFile::decode(b).map(drop))),
        (
            "index.bin",
            Box::new(|b| IndexFile::decode(&keys, b).map(drop)),
        ),
        (
            "snapshot.bin",
            Box::new(|b| Snapshot::decode(&keys, b).map(drop)),
        ),
        ("lock.bin", Box::new(|b| Lock::decode(&keys, b).map(drop))),
        ("plan.bin", Box::new(|b| Plan::decode(&keys, b).map(drop))),
        ("wait.bin", Box::new(|b| Wait::decode(&keys, b).map(drop))),
        (
            "report.bin",
            Box::new(|b| Report::decode(&keys, b).map(drop)),
        ),
        (
            "tombstone.bin",
            Box::new(|b| Tombstone::decode(&keys, b).map(drop)),
        ),
        (
            "pack.bin",
            Box::new(|b| pack::decode_pack(&keys, b).map(drop)),
        ),
    ];
    for (file, decode) in &others {
        let bytes = read(file);
        decode(&bytes).unwrap();
        let err = WalHeader::decode_file(&keys, &bytes).expect_err("another kind's object");
        assert!(err.message().contains("wrong magic"), "{file}: {err}");
        let mut forged = bytes.clone();
        forged[..4].copy_from_slice(WAL_MAGIC);
        let err = WalHeader::decode_file(&keys, &forged).expect_err("a forged magic");
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{file}: {err}");
        // And wal.bin as that kind, as it is and with that kind's magic.
        assert!(decode(&p.bytes).is_err(), "wal.bin as {file}");
        if *file != "pack.bin" {
            let mut forged = p.bytes.clone();
            forged[..4].copy_from_slice(&bytes[..4]);
            assert!(decode(&forged).is_err(), "wal.bin as {file}, magic forged");
        }
    }
}

/// 4 KiB of a segment in pages of 1 KiB (segment 5 of timeline 1, 1 MiB segments): a message
/// that continues on the next page, commits and an abort, a commit whose record header is
/// split over two pages, and a switch. Returns it with its commit times.
fn small_segment() -> (Vec<u8>, (i64, i64)) {
    let t = 1_795_000_000_123_456_000;
    let mut b = SegmentBuilder::new(42, 1, 5 << 20, 1 << 20, 1024, 4096, 0x4f_ffd0);
    b.record(RM_LOGICALMSG, 0, 700, &[7u8; 1500]);
    b.commit(700, t);
    b.abort(701, t - 1_000_000_000);
    assert_eq!(b.record(RM_LOGICALMSG, 0, 702, &[9u8; 323]), 0x50_0690);
    assert_eq!(
        b.commit(702, t + 1_000),
        0x50_07f0,
        "straddles pages 1 and 2"
    );
    b.switch();
    (b.into_bytes(), (t - 1_000_000_000, t + 1_000))
}

/// Scan `seg` as `wal-push` does, catching a panic, with the largest allocation it made.
fn scan_segment(seg: &[u8]) -> (Option<Option<(i64, i64)>>, usize) {
    let (r, largest) = largest_allocation(|| {
        catch_unwind(AssertUnwindSafe(|| {
            let head = wal_scan::segment_head(seg).ok()?;
            Some(wal_scan::commit_times(seg, &head))
        }))
    });
    let r = r.unwrap_or_else(|_| panic!("the scanner panicked on {}", show(seg)));
    (r, largest)
}

/// Every cut, every bit flip and the random buffers: the scanner never panics, allocates
/// no more than a copy of the segment, returns times in order, and a cut segment yields
/// commit times inside those of the whole (it holds fewer whole records, never others).
#[test]
fn wal_scan_survives_hostile_segments() {
    let (seg, times) = small_segment();
    assert_eq!(scan_segment(&seg).0, Some(Some(times)));
    let check = |what: &str, b: &[u8]| {
        let (r, largest) = scan_segment(b);
        assert!(
            largest <= b.len().max(1024),
            "{what}: allocated {largest} bytes"
        );
        if let Some(Some((first, last))) = r {
            assert!(first <= last, "{what}: times out of order");
        }
        r
    };
    for n in 0..seg.len() {
        if let Some(Some((first, last))) = check(&format!("a cut at {n}"), &seg[..n]) {
            assert!(
                times.0 <= first && last <= times.1,
                "a cut at {n} found commits the whole segment lacks"
            );
        }
    }
    for bit in 0..seg.len() * 8 {
        let mut b = seg.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        check(&format!("bit flip {bit}"), &b);
    }
    for (i, b) in random_inputs(&seg, 56).iter().enumerate() {
        check(&format!("random case {i}"), b);
    }
    // Heads that `segment_head` would never return (zero or tiny pages, any sizes, starts up
    // to the top of the address space): no panic either.
    let head = wal_scan::segment_head(&seg).unwrap();
    let mut rng = Rng(57);
    for i in 0..2000 {
        let odd = SegmentHead {
            page_size: [0, 1, 24, 40, 1024, 8192, u32::MAX][i % 7],
            segment_size: [0, 1024, 1 << 20, u32::MAX][(i / 7) % 4],
            start_lsn: match i % 3 {
                0 => rng.next(),
                1 => u64::MAX - rng.below(1 << 20) as u64,
                _ => head.start_lsn,
            },
            ..head
        };
        let r = catch_unwind(AssertUnwindSafe(|| wal_scan::commit_times(&seg, &odd)))
            .unwrap_or_else(|_| panic!("the scanner panicked on head {odd:?}"));
        if let Some((first, last)) = r {
            assert!(first <= last);
        }
    }
}

/// The most records a segment can hold (16 MiB of back-to-back commit records) are walked
/// once each: the scan ends, finds the first and the last, and allocates one copy of the
/// segment. A loop that never ended would fail here after a minute instead of hanging.
#[test]
fn wal_scan_of_the_densest_segment_ends() {
    let size = 16u32 << 20;
    let t0 = 1_795_000_000_000_000_000i64;
    let mut b = SegmentBuilder::new(42, 1, 7 * u64::from(size), size, 8192, size as usize, 0);
    let mut n = 0i64;
    while b.end_lsn() + 64 < 8 * u64::from(size) {
        b.commit(1, t0 + n * 1000);
        n += 1;
    }
    let seg = b.into_bytes();
    assert!(n > 400_000, "{n} records");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let r = scan_segment(&seg);
        let _ = tx.send((r, t.elapsed(), seg.len()));
    });
    let ((r, largest), took, len) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the scan of 16 MiB did not end within a minute");
    eprintln!("{n} commit records scanned in {took:.2?}");
    assert_eq!(r, Some(Some((t0, t0 + (n - 1) * 1000))));
    assert!(
        largest <= len,
        "allocated {largest} bytes for a {len}-byte segment"
    );
}
