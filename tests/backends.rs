//! One conformance test body for every storage service, run against real servers on
//! loopback (moto for S3, Azurite for Azure Blob, sshd for SFTP), a local folder and memory;
//! plus what a dead or hung server does, and the coffer binary end to end on S3 and SFTP.

mod common;

use coffer::backend::{self, Backend, Bytes, Location, ObjectKind, ObjectName, ServiceOptions};
use coffer::error::ErrorKind;
use common::servers::{Azurite, Moto, Sshd};
use common::{assert_ok, pseudo_random, PASSWORD};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn options(env: Vec<(String, String)>) -> ServiceOptions {
    ServiceOptions {
        env,
        ..ServiceOptions::default()
    }
}

fn open(url: &str, env: Vec<(String, String)>) -> Arc<dyn Backend> {
    let loc = Location::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    backend::open_with(&loc, &options(env)).unwrap_or_else(|e| panic!("open {url}: {e}"))
}

fn named(kind: ObjectKind, bytes: &[u8]) -> (ObjectName, Bytes) {
    (
        ObjectName::for_bytes(kind, bytes),
        Bytes::copy_from_slice(bytes),
    )
}

/// What every backend must do, on an empty repository location.
fn conformance(b: &dyn Backend) {
    let what = b.describe();
    for kind in ObjectKind::ALL {
        assert!(
            b.list(kind).unwrap().is_empty(),
            "{what}: {kind:?} not empty at start"
        );
    }

    // A pack large enough to take several reads, and small objects of the other kinds.
    let (pack, pack_bytes) = named(ObjectKind::Pack, &pseudo_random(1, (3 << 20) + 123));
    b.put(&pack, pack_bytes.clone()).unwrap();
    assert!(
        b.get(&pack).unwrap() == pack_bytes,
        "{what}: get returned other bytes"
    );
    assert_eq!(b.get_range(&pack, 0, 10).unwrap(), &pack_bytes[..10]);
    assert_eq!(
        b.get_range(&pack, 1 << 20, 1000).unwrap(),
        &pack_bytes[1 << 20..(1 << 20) + 1000]
    );
    let len = pack_bytes.len() as u64;
    assert_eq!(
        b.get_range(&pack, len - 7, 7).unwrap(),
        &pack_bytes[pack_bytes.len() - 7..]
    );
    assert_eq!(b.stat(&pack).unwrap(), Some(len));

    let mut small = Vec::new();
    for (i, kind) in [
        ObjectKind::Index,
        ObjectKind::Snapshot,
        ObjectKind::Key,
        ObjectKind::Config,
    ]
    .into_iter()
    .enumerate()
    {
        let (n, bytes) = named(kind, &pseudo_random(10 + i as u64, 100 + i));
        b.put(&n, bytes.clone()).unwrap();
        small.push((n, bytes));
    }

    // Several packs at once, from several threads (they land in different data/xx/ folders).
    let packs: Vec<(ObjectName, Bytes)> = (0..8)
        .map(|i| named(ObjectKind::Pack, &pseudo_random(100 + i, 5000 + i as usize)))
        .collect();
    std::thread::scope(|s| {
        for (n, bytes) in &packs {
            s.spawn(move || b.put(n, bytes.clone()).unwrap());
        }
    });

    let mut want: Vec<(ObjectName, u64)> = packs
        .iter()
        .map(|(n, bytes)| (*n, bytes.len() as u64))
        .chain([(pack, len)])
        .collect();
    want.sort();
    assert_eq!(
        b.list(ObjectKind::Pack).unwrap(),
        want,
        "{what}: pack listing"
    );
    for (n, bytes) in &small {
        assert_eq!(
            b.list(n.kind).unwrap(),
            vec![(*n, bytes.len() as u64)],
            "{what}: {:?} listing",
            n.kind
        );
        assert!(b.get(n).unwrap() == *bytes);
    }

    // A missing object: NotFound for reads, None for stat.
    let (missing, _) = named(ObjectKind::Pack, b"never written");
    assert_eq!(b.stat(&missing).unwrap(), None);
    let e = b.get(&missing).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{what}: {e}");
    let e = b.get_range(&missing, 0, 4).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{what}: {e}");

    // The same name again: same bytes are fine, and a bad copy can be overwritten with the
    // good one (what a repair does).
    b.put(&pack, pack_bytes.clone()).unwrap();
    let (n0, good) = &packs[0];
    let mut bad = good.to_vec();
    bad[7] ^= 1;
    b.put(n0, Bytes::from(bad.clone())).unwrap();
    assert_eq!(b.get(n0).unwrap(), bad);
    b.put(n0, good.clone()).unwrap();
    assert!(
        b.get(n0).unwrap() == *good,
        "{what}: overwrite did not take"
    );
    assert_eq!(b.stat(n0).unwrap(), Some(good.len() as u64));

    // Delete: gone from stat, get and list; deleting again is not an error.
    b.delete(&pack).unwrap();
    assert_eq!(b.stat(&pack).unwrap(), None);
    assert_eq!(b.get(&pack).unwrap_err().kind(), ErrorKind::NotFound);
    assert!(!b
        .list(ObjectKind::Pack)
        .unwrap()
        .iter()
        .any(|(n, _)| *n == pack));
    b.delete(&pack).unwrap();
    for (n, _) in packs.iter().chain(&small) {
        b.delete(n).unwrap();
    }
    for kind in ObjectKind::ALL {
        assert!(
            b.list(kind).unwrap().is_empty(),
            "{what}: {kind:?} not empty at the end"
        );
    }
}

#[test]
fn local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let b = backend::open(&Location::Local(dir.path().join("repo"))).unwrap();
    conformance(b.as_ref());
}

#[test]
fn memory() {
    let b = backend::open(&Location::Memory).unwrap();
    conformance(b.as_ref());
}

#[test]
fn s3_on_moto() {
    let moto = Moto::start();
    let b = open(&moto.url("repos/one"), moto.env());
    conformance(b.as_ref());
    // The prefix keeps repositories apart: the bucket's root holds no objects of its own.
    let (n, bytes) = named(ObjectKind::Snapshot, b"in a prefix");
    b.put(&n, bytes).unwrap();
    let root = open(&moto.url(""), moto.env());
    assert!(root.list(ObjectKind::Snapshot).unwrap().is_empty());
    assert_eq!(b.list(ObjectKind::Snapshot).unwrap().len(), 1);

    cli_round_trip(&moto.url("cli"), &moto.env());
}

#[test]
fn azure_blob_on_azurite() {
    let azurite = Azurite::start();
    let b = open(&azurite.url("repo"), azurite.env());
    conformance(b.as_ref());
}

#[test]
fn azure_blob_with_a_connection_string() {
    let azurite = Azurite::start();
    let cs = format!(
        "DefaultEndpointsProtocol=http;AccountName={};AccountKey={};BlobEndpoint={};",
        common::servers::AZURITE_ACCOUNT,
        common::servers::AZURITE_KEY,
        azurite.endpoint()
    );
    // No ?endpoint= in the URL: it comes from the connection string.
    let url = format!("azblob://{}/cs", azurite.container);
    let b = open(&url, vec![("AZURE_STORAGE_CONNECTION_STRING".into(), cs)]);
    let (n, bytes) = named(ObjectKind::Index, b"via connection string");
    b.put(&n, bytes.clone()).unwrap();
    assert!(b.get(&n).unwrap() == bytes);
}

#[test]
fn sftp_on_sshd() {
    let sshd = Sshd::start();
    let folder = sshd.folder("repo");
    let b = open(&sshd.url(&folder), vec![]);
    conformance(b.as_ref());
    // Uploads went through tmp/ and were renamed into place: nothing is left there.
    let (n, bytes) = named(ObjectKind::Pack, b"on disk");
    b.put(&n, bytes).unwrap();
    assert!(
        folder.join(n.path()).is_file(),
        "{} not on the server's disk",
        n.path()
    );
    let leftovers = std::fs::read_dir(folder.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "upload leftovers in tmp/");
    // Each SSH connection is an `ssh` process: dropping the backend must end them all.
    assert!(
        !sshd.client_processes().is_empty(),
        "no ssh client seen: is the check broken?"
    );
    drop(b);
    assert_eq!(
        sshd.client_processes(),
        Vec::<String>::new(),
        "ssh clients left running"
    );

    cli_round_trip(&sshd.url(&sshd.folder("cli")), &[]);
    assert_eq!(
        sshd.client_processes(),
        Vec::<String>::new(),
        "coffer left ssh clients running"
    );
}

#[test]
fn sftp_server_gone_mid_session_is_an_error_not_an_empty_listing() {
    let mut sshd = Sshd::start();
    let opts = ServiceOptions {
        timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(2),
        attempts: 2,
        ..ServiceOptions::default()
    };
    let url = sshd.url(&sshd.folder("gone"));
    let b = backend::open_with(&Location::parse(&url).unwrap(), &opts).unwrap();
    let (n, bytes) = named(ObjectKind::Pack, b"listed");
    b.put(&n, bytes).unwrap();
    assert_eq!(b.list(ObjectKind::Pack).unwrap().len(), 1);
    sshd.server.kill_all();
    let t0 = Instant::now();
    let listed = b.list(ObjectKind::Pack);
    eprintln!(
        "listing without a server after {:.2?}: {listed:?}",
        t0.elapsed()
    );
    assert_eq!(listed.unwrap_err().kind(), ErrorKind::Backend);
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn sftp_checks_host_keys_by_default() {
    let sshd = Sshd::start();
    // Without known_hosts=accept, ssh must refuse this throwaway server's unknown key.
    let url = sshd
        .url(&sshd.folder("strict"))
        .replace("&known_hosts=accept", "");
    let b = open(&url, vec![]);
    let t0 = Instant::now();
    let e = b.list(ObjectKind::Pack).unwrap_err();
    eprintln!(
        "strict host key check failed after {:.2?}: {e}",
        t0.elapsed()
    );
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    assert!(
        e.message().contains("Host key verification failed"),
        "ssh's reason is lost: {e}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
    let e = b
        .put(&named(ObjectKind::Pack, b"x").0, Bytes::from_static(b"x"))
        .unwrap_err();
    assert!(e.message().contains("Host key verification failed"), "{e}");
    assert!(
        !sshd.folder("strict").exists(),
        "nothing may be written to an unverified host"
    );
}

#[test]
fn sftp_with_a_missing_key_file_is_refused() {
    let url = "sftp://u@127.0.0.1:1/srv/r?key=/nonexistent/key&known_hosts=accept";
    let e = backend::open(&Location::parse(url).unwrap())
        .err()
        .expect("refused");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("/nonexistent/key"), "{e}");
}

#[test]
fn a_dead_or_hung_server_gives_an_error_not_a_hang() {
    let mut moto = Moto::start();
    let opts = ServiceOptions {
        timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(2),
        attempts: 2,
        ..options(moto.env())
    };
    let b = backend::open_with(&Location::parse(&moto.url("r")).unwrap(), &opts).unwrap();
    let (n, bytes) = named(ObjectKind::Pack, b"before the outage");
    b.put(&n, bytes.clone()).unwrap();

    // Hung: the kernel accepts connections, nothing answers. The timeout must fire.
    moto.server.freeze();
    let t0 = Instant::now();
    let (n2, bytes2) = named(ObjectKind::Pack, b"during the outage");
    let e = b.put(&n2, bytes2.clone()).unwrap_err();
    let took = t0.elapsed();
    eprintln!("put to a frozen server failed after {took:.2?}: {e}");
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let e = b.get(&n).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");

    // Back again: the same backend works without reopening.
    moto.server.thaw();
    b.put(&n2, bytes2).unwrap();

    // Dead: connections are refused, which fails fast.
    moto.server.kill();
    let t0 = Instant::now();
    let e = b.put(&n, bytes).unwrap_err();
    let took = t0.elapsed();
    eprintln!("put to a dead server failed after {took:.2?}: {e}");
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_eq!(
        b.list(ObjectKind::Pack).unwrap_err().kind(),
        ErrorKind::Backend
    );
}

#[test]
fn two_regions_one_down_keep_backing_up() {
    // The multi-region wrapper over real services: S3 down, the local region takes writes.
    let mut moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = ServiceOptions {
        timeout: Duration::from_secs(2),
        io_timeout: Duration::from_secs(2),
        attempts: 1,
        ..options(moto.env())
    };
    let s3 = backend::open_with(&Location::parse(&moto.url("r")).unwrap(), &opts).unwrap();
    let local = backend::open(&Location::Local(dir.path().to_path_buf())).unwrap();
    let regions =
        backend::Regions::new(vec![("s3".into(), s3), ("local".into(), local)], 1).unwrap();
    let (n, bytes) = named(ObjectKind::Pack, b"both");
    regions.put(&n, bytes.clone()).unwrap();
    moto.server.kill();
    let (n2, bytes2) = named(ObjectKind::Pack, b"local only");
    regions.put(&n2, bytes2.clone()).unwrap();
    assert_eq!(regions.behind()[0].0, "s3");
    assert!(
        regions.get(&n).unwrap() == bytes,
        "read falls back to the local region"
    );
    assert_eq!(regions.list(ObjectKind::Pack).unwrap().len(), 2);
}

#[test]
fn unknown_schemes_and_bad_urls_are_clear_errors() {
    for (url, kind) in [
        // A scheme coffer does not know is a URL the user typed wrong: exit 2, like the rest.
        ("gcs://bucket/x", ErrorKind::InvalidInput),
        ("s3://", ErrorKind::InvalidInput),
        ("s3://b?bogus=1", ErrorKind::InvalidInput),
        ("azblob://c/p?endpoint=ftp://x", ErrorKind::InvalidInput),
        ("sftp://host", ErrorKind::InvalidInput),
    ] {
        let e = Location::parse(url)
            .err()
            .unwrap_or_else(|| panic!("{url} accepted"));
        assert_eq!(e.kind(), kind, "{url}: {e}");
    }
    // The binary says so too, with a usage-style failure rather than a panic.
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["--repo", "gcs://bucket/x", "snapshots"])
        .env("COFFER_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("gcs://") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// `coffer init`, `backup` and `restore` through the real binary on `url`, with the
/// service's credentials passed to the child process only.
fn cli_round_trip(url: &str, env: &[(String, String)]) {
    let scratch = tempfile::tempdir().unwrap();
    let src = scratch.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), b"hello regions").unwrap();
    std::fs::write(src.join("sub/b.bin"), pseudo_random(7, 300_000)).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("COFFER_PASSWORD", PASSWORD)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("--repo")
            .arg(url)
            .arg("--cache-dir")
            .arg(scratch.path().join("cache"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_ok(&out, args);
    };
    run(&["init", "--kdf-memory-kib", "1024"]);
    run(&["backup", &src.to_string_lossy()]);
    let target = scratch.path().join("restored");
    run(&["restore", "latest", "--target", &target.to_string_lossy()]);
    let restored = find_file(&target, "b.bin").expect("b.bin restored");
    assert_eq!(std::fs::read(restored).unwrap(), pseudo_random(7, 300_000));
}

fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}
