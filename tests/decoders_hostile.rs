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
//! The inputs are the vectors in `format-spec/vectors/` (see `tests/vectors.rs`).

use coffer::crypto::{Keys, MasterSecret, NONCE_LEN};
use coffer::format::config::Config;
use coffer::format::index::IndexFile;
use coffer::format::keyfile::KeyFile;
use coffer::format::pack::{self, PackEntry};
use coffer::format::snapshot::Snapshot;
use coffer::format::tree::{ChunkList, NodeKind, Tree};
use coffer::format::BlobType;
use coffer::Result;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

const RANDOM_CASES: usize = 3000;
const HEADER_AAD: &[u8] = b"coffer pack header v1";

fn keys() -> Keys {
    Keys::derive(&MasterSecret::from_bytes(std::array::from_fn(|i| i as u8)))
}

fn read(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("format-spec/vectors")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
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
        let b = [&b"CFFP\x01"[..], &len.to_le_bytes()].concat();
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
    let blobs_len = start as u64;
    hammer(
        "pack header",
        valid,
        Expect::Err,
        5,
        &|b| pack::decode_header(&keys, b, blobs_len),
        &never_ok,
    );
    // The entries must tile the blob area exactly, which must fit 32-bit offsets.
    for wrong in [
        0,
        blobs_len - 1,
        blobs_len + 1,
        u32::MAX as u64 + 1,
        u64::MAX,
    ] {
        assert!(
            pack::decode_header(&keys, valid, wrong).is_err(),
            "blob area {wrong}"
        );
    }
}

/// A pack read completely: header and every blob (decrypt, decompress, check the ID).
fn read_pack(keys: &Keys, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut out = vec![];
    for (offset, e) in pack::decode_pack(keys, bytes)? {
        let sealed = &bytes[offset as usize..(offset + e.length) as usize];
        out.push(pack::open_blob(keys, e.blob_type, &e.id, sealed)?);
    }
    Ok(out)
}

#[test]
fn pack_refuses_hostile_input() {
    let keys = keys();
    let valid = read("pack.bin");
    // decode_pack checks the header; blobs are checked when they are opened.
    hammer(
        "pack (header only)",
        &valid,
        Expect::NoPanic,
        6,
        &|b| pack::decode_pack(&keys, b),
        &|_, _| {},
    );
    hammer(
        "pack (all blobs)",
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
    // Forged counts: supersedes, packs, blobs.
    let max = u32::MAX.to_le_bytes();
    assert!(decode(&max).is_err());
    assert!(decode(&[&0u32.to_le_bytes()[..], &max].concat()).is_err());
    let pack_with_many_blobs =
        [&0u32.to_le_bytes()[..], &1u32.to_le_bytes(), &[0; 40], &max].concat();
    assert!(decode(&pack_with_many_blobs).is_err());
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
    // An entry shorter than a sealed empty blob, and an unknown blob type.
    let entry = |t: u8, len: u32| {
        [
            &1u32.to_le_bytes()[..],
            &[t],
            &[0; 32],
            &len.to_le_bytes(),
            &0u32.to_le_bytes(),
        ]
        .concat()
    };
    assert!(pack::decode_header(
        &keys,
        &keys.seal_with_nonce(nonce(), HEADER_AAD, &entry(0, 40)),
        40
    )
    .is_err());
    assert!(pack::decode_header(
        &keys,
        &keys.seal_with_nonce(nonce(), HEADER_AAD, &entry(3, 41)),
        41
    )
    .is_err());
    assert!(pack::decode_header(
        &keys,
        &keys.seal_with_nonce(nonce(), HEADER_AAD, &entry(0, 41)),
        41
    )
    .is_ok());
}

/// Blobs: any codec byte, any payload, sealed with the right key under the right type, must
/// be refused unless it really is the blob that its ID names.
#[test]
fn blobs_refuse_hostile_payloads() {
    let keys = keys();
    let aad = |t: BlobType| [&b"coffer blob v1"[..], &[t as u8]].concat();
    let id = keys.blob_id(BlobType::Data as u8, b"the real plaintext");
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for i in 0..RANDOM_CASES {
        let n = rng.below(300);
        let mut framed = rng.bytes(n);
        if i % 2 == 0 && !framed.is_empty() {
            framed[0] = (i % 3) as u8; // mostly known codecs, some unknown
        }
        let sealed = keys.seal_with_nonce(nonce(), &aad(BlobType::Data), &framed);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pack::open_blob(&keys, BlobType::Data, &id, &sealed)
        }))
        .unwrap_or_else(|_| panic!("open_blob panicked on {}", show(&framed)));
        assert!(r.is_err(), "random blob {i} accepted");
    }
    // The right plaintext under the wrong type: the box binds the type, and so does the ID.
    // The same bytes as a tree have another ID, and only that one opens them as a tree.
    let raw = [&[0u8][..], b"the real plaintext"].concat();
    let as_tree = keys.seal_with_nonce(nonce(), &aad(BlobType::Tree), &raw);
    let tree_id = keys.blob_id(BlobType::Tree as u8, b"the real plaintext");
    assert_ne!(tree_id, id);
    assert!(pack::open_blob(&keys, BlobType::Data, &id, &as_tree).is_err());
    assert!(pack::open_blob(&keys, BlobType::Data, &tree_id, &as_tree).is_err());
    assert!(pack::open_blob(&keys, BlobType::Tree, &id, &as_tree).is_err());
    assert!(pack::open_blob(&keys, BlobType::Tree, &tree_id, &as_tree).is_ok());
    let as_data = keys.seal_with_nonce(nonce(), &aad(BlobType::Data), &raw);
    assert!(pack::open_blob(&keys, BlobType::Data, &id, &as_data).is_ok());
    // An empty box, and a zstd bomb (its frame declares 64 MiB + 1).
    let empty = keys.seal_with_nonce(nonce(), &aad(BlobType::Data), b"");
    assert!(pack::open_blob(&keys, BlobType::Data, &id, &empty).is_err());
    let bomb = zstd::bulk::compress(&vec![0u8; coffer::compress::MAX_BLOB_SIZE + 1], 3).unwrap();
    assert!(bomb.len() < 1 << 20);
    let sealed = keys.seal_with_nonce(nonce(), &aad(BlobType::Data), &[&[1u8][..], &bomb].concat());
    let err = pack::open_blob(&keys, BlobType::Data, &id, &sealed).unwrap_err();
    assert_eq!(err.kind(), coffer::ErrorKind::Corrupt);
}

/// A zstd payload must declare its decompressed size in its (first) frame header, at most
/// 64 MiB, and decompress to exactly that many bytes; a raw payload is bounded too. These are
/// checked before the output buffer is sized from the declaration.
#[test]
fn zstd_frames_must_declare_their_size() {
    use coffer::compress::{decompress, MAX_BLOB_SIZE};
    use coffer::ErrorKind;
    let keys = keys();
    let aad = [&b"coffer blob v1"[..], &[BlobType::Data as u8]].concat();
    let plain = b"coffer zstd size rules: ".repeat(40);
    let id = keys.blob_id(BlobType::Data as u8, &plain);
    let open = |payload: &[u8]| {
        let framed = [&[1u8][..], payload].concat();
        let sealed = keys.seal_with_nonce(nonce(), &aad, &framed);
        pack::open_blob(&keys, BlobType::Data, &id, &sealed)
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

/// Header entries that lie about blob positions are caught when the blob is opened.
#[test]
fn lying_header_entries_are_caught_at_open() {
    let keys = keys();
    let pack_bytes = read("pack.bin");
    let entries = pack::decode_pack(&keys, &pack_bytes).unwrap();
    let (_, e0) = entries[0];
    let (off1, e1) = entries[1];
    let blob1 = &pack_bytes[off1 as usize..(off1 + e1.length) as usize];
    // Blob 1's bytes under blob 0's ID or type: refused.
    assert!(pack::open_blob(&keys, e0.blob_type, &e0.id, blob1).is_err());
    assert!(pack::open_blob(&keys, e0.blob_type, &e1.id, blob1).is_err());
    assert!(pack::open_blob(&keys, e1.blob_type, &e0.id, blob1).is_err());
    let swapped: [PackEntry; 2] = [e1, e0];
    let mut forged = pack_bytes[..(off1 + e1.length) as usize].to_vec();
    forged.extend_from_slice(&pack::encode_header(&keys, &swapped, Some(nonce())));
    // The header opens (it is sealed with the key) and tiles the area, but blobs then fail.
    assert!(pack::decode_pack(&keys, &forged).is_ok());
    assert!(read_pack(&keys, &forged).is_err());
}
