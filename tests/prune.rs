//! `coffer prune` end to end (format-spec §12), through the real binary:
//! - it deletes exactly the packs that no kept snapshot needs (and repacks mostly unused
//!   ones), a dry run changes nothing, every kept snapshot still restores byte for byte, a
//!   second run finds nothing, and `--repack-threshold 0` leaves no unreachable blob at all;
//! - it refuses, changing nothing, while one region (a real moto server) is down, and
//!   deletes in every region once the region is back and synced;
//! - a backup that is running when the plan is made delays the deletion, and the planned
//!   packs its snapshot deduplicated against are rescued; a backup that starts after the
//!   plan was stored never deduplicates against planned packs;
//! - the lock of a dead backup goes stale only after the margin, measured between two
//!   sightings by the same observer; a prune never judges its own lock stale; a live backup
//!   whose lock was removed writes no snapshot, even if it was suspended and refreshes its
//!   lock on waking;
//! - a prune killed before each of its changes to the repository leaves a repository that
//!   `check` accepts, where every kept snapshot restores, and that the next prune finishes.
//!
//! Every coffer command is killed after [`COMMAND_TIMEOUT`], so a hang fails the test.

mod common;

use common::{copy_dir, expect_code};

use common::servers::Moto;
use common::stdin_backup::{objects_in, StdinBackup};
use common::{
    assert_ok, make_folder, pseudo_random, read_folder, repo_listing, Env, Files, PASSWORD,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const K: usize = 1024;

/// Distinct seeds for `pseudo_random` (which sets the lowest bit, so seeds must differ
/// above it).
fn seed(kind: u64, i: u64) -> u64 {
    ((kind << 32) | i) << 1
}

/// Sizes of the generated files of one history.
#[derive(Clone, Copy)]
struct Shape {
    /// `gen/fJ.bin` lives in snapshots J and J+1.
    file: usize,
    /// `only-I.bin` lives in snapshot I alone.
    only: usize,
    /// `changing.bin` is rewritten for every snapshot.
    changing: usize,
    /// At this snapshot `gen/fJ.bin` is large and `only-J.bin` tiny: its pack is mostly used
    /// by the next snapshot, so the default threshold leaves it and threshold 0 repacks it.
    mostly_used: Option<usize>,
}

/// What the source folder holds for snapshot `i`: files shared by all snapshots, files
/// added and removed, a file modified every time.
fn source_at(i: usize, shape: Shape) -> Files {
    let mut f = Files::new();
    f.insert("shared.bin".into(), pseudo_random(seed(1, 0), 300 * K));
    f.insert(
        "sub/notes.txt".into(),
        b"the same in every snapshot\n".repeat(100),
    );
    for j in i.saturating_sub(1)..=i {
        let n = if shape.mostly_used == Some(j) {
            shape.file * 5
        } else {
            shape.file
        };
        f.insert(format!("gen/f{j}.bin"), pseudo_random(seed(2, j as u64), n));
    }
    let only = if shape.mostly_used == Some(i) {
        shape.only / 30
    } else {
        shape.only
    };
    f.insert(
        format!("only-{i}.bin"),
        pseudo_random(seed(3, i as u64), only),
    );
    f.insert(
        "changing.bin".into(),
        pseudo_random(seed(4, i as u64), shape.changing),
    );
    f
}

/// No coffer command here takes more than a few seconds (with a moto server down, a few
/// retries); one that takes this long hangs, e.g. waiting out the 5-minute lock refresh
/// interval at exit, and is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

trait Timed {
    /// Like `output()`, but a command that hangs fails the test.
    fn timed(&mut self) -> Output;
}

impl Timed for Command {
    fn timed(&mut self) -> Output {
        let child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run coffer");
        common::wait_with_limit(child, COMMAND_TIMEOUT, "coffer")
    }
}

/// `coffer ARGS` (with `env`'s repository, cache and password), whatever its status.
fn run(env: &Env, args: &[&str]) -> Output {
    env.cmd().args(args).timed()
}

/// `coffer --json ARGS`, which must succeed; its JSON.
fn json(env: &Env, args: &[&str]) -> Value {
    let out = env.cmd().arg("--json").args(args).timed();
    assert_ok(&out, args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "coffer {args:?} printed invalid JSON ({e}): {}",
            text(&out.stdout)
        )
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// `coffer --json prune ARGS`'s report.
fn prune(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["prune"];
    all.extend_from_slice(args);
    let v = json(env, &all);
    assert_eq!(v["exit_code"], 0, "{v}");
    v["report"].clone()
}

fn pack_set(repo: &Path) -> BTreeSet<PathBuf> {
    common::packs(repo).into_iter().collect()
}

/// The size of each pack file of a folder repository.
fn pack_sizes(repo: &Path) -> BTreeMap<PathBuf, u64> {
    common::packs(repo)
        .into_iter()
        .map(|p| {
            let n = std::fs::metadata(&p).unwrap().len();
            (p, n)
        })
        .collect()
}

/// The total size of `packs`, as `sizes` (taken before any was deleted) has them.
fn size_of(sizes: &BTreeMap<PathBuf, u64>, packs: &BTreeSet<PathBuf>) -> u64 {
    packs.iter().map(|p| sizes[p]).sum()
}

/// No lock, plan or wait record is left in the repository folder.
fn assert_no_gc_objects(repo: &Path) {
    for kind in ["locks", "plans", "waits"] {
        let left = objects_in(repo, kind);
        assert!(left.is_empty(), "{kind}/ still holds {left:?}");
    }
}

/// A history of snapshots of one folder that changes between them.
struct History {
    env: Env,
    src: PathBuf,
    /// Snapshot ID and the folder's content at that snapshot, in order.
    snapshots: Vec<(String, Files)>,
    /// The pack files each backup added.
    packs_of: Vec<BTreeSet<PathBuf>>,
}

/// Back up `count` states of the folder (one a day from 2026-01-01), tagging `keep` those
/// in `keep`.
fn build_history(count: usize, shape: Shape, keep: &[usize]) -> History {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let mut snapshots = Vec::new();
    let mut packs_of = Vec::new();
    for i in 0..count {
        let files = source_at(i, shape);
        make_folder(&src, &files);
        let before = pack_set(&env.repo());
        let time = format!("2026-01-{:02}T03:00", i + 1);
        let mut args = vec![
            "--json".to_string(),
            "backup".into(),
            src.to_string_lossy().into_owned(),
            "--time".into(),
            time,
        ];
        if keep.contains(&i) {
            args.extend(["--tag".to_string(), "keep".into()]);
        }
        let out = env.cmd().args(&args).timed();
        assert_ok(&out, &["backup", &i.to_string()]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        snapshots.push((v["snapshot"].as_str().unwrap().to_string(), files));
        let added: BTreeSet<PathBuf> = pack_set(&env.repo()).difference(&before).cloned().collect();
        assert!(!added.is_empty(), "backup {i} added no pack");
        packs_of.push(added);
    }
    History {
        env,
        src,
        snapshots,
        packs_of,
    }
}

impl History {
    /// Restore snapshot `i` with `env`'s repository and cache (which may be another copy of
    /// the history's) and require it to equal what the folder held.
    fn assert_restores(&self, env: &Env, i: usize, cache: &Path) {
        let (id, files) = &self.snapshots[i];
        let target = env.path(&format!("restore-{i}-{}", unique()));
        let out = env
            .cmd_with_cache(cache)
            .args(["restore", id, "--target", &target.to_string_lossy()])
            .timed();
        assert_ok(&out, &["restore", id]);
        let src = self.src.canonicalize().unwrap();
        let restored = read_folder(&target.join(src.strip_prefix("/").unwrap()));
        assert_eq!(
            restored.keys().collect::<Vec<_>>(),
            files.keys().collect::<Vec<_>>(),
            "snapshot {i} restores other files"
        );
        for (p, bytes) in files {
            assert!(
                restored[p] == *bytes,
                "snapshot {i}: {p} differs from the source"
            );
        }
        std::fs::remove_dir_all(&target).unwrap();
    }

    fn packs_of(&self, snaps: &[usize]) -> BTreeSet<PathBuf> {
        snaps
            .iter()
            .flat_map(|i| self.packs_of[*i].iter().cloned())
            .collect()
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn check_read_data(env: &Env, cache: &Path) {
    let out = env
        .cmd_with_cache(cache)
        .args(["check", "--read-data"])
        .timed();
    assert_ok(&out, &["check", "--read-data"]);
}

/// Fails if prune deleted a pack a kept snapshot needs (restore/check), deleted fewer or
/// other packs than no snapshot needs (the exact pack sets), if a dry run or an idle run
/// wrote anything, or if threshold 0 left an unreachable blob behind.
#[test]
fn prune_frees_exactly_what_no_snapshot_uses() {
    let t0 = Instant::now();
    let shape = Shape {
        file: 600 * K,
        only: 1536 * K,
        changing: 100 * K,
        mostly_used: Some(5),
    };
    // Snapshots 1, 2, 4 and 5 are forgotten. Then pack 1 (f1, only-1: used by 1 and 2
    // alone) and pack 4 are wholly unused; pack 2 is mostly unused (f2 is in snapshot 3) and
    // repacked; pack 5 is mostly used (its large f5 is in snapshot 6) and stays.
    let keep = [0, 3, 6, 7];
    let h = build_history(8, shape, &keep);
    let env = &h.env;
    let repo = env.repo();

    // Nothing forgotten: nothing to free, and neither a dry run nor a real run changes a byte.
    let before = repo_listing(&repo);
    let dry = prune(env, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(num(&dry["snapshots"]), 8, "{dry}");
    assert_eq!(num(&dry["blobs_unused"]), 0, "{dry}");
    assert_eq!(num(&dry["packs_unused"]), 0, "{dry}");
    assert_eq!(num(&dry["packs_repacked"]), 0, "{dry}");
    assert_eq!(num(&dry["bytes_to_free"]), 0, "{dry}");
    assert!(
        repo_listing(&repo) == before,
        "a dry run changed the repository"
    );
    let idle = prune(env, &[]);
    assert_eq!(num(&idle["plans_completed"]), 0, "{idle}");
    assert_eq!(num(&idle["packs_deleted"]), 0, "{idle}");
    assert!(
        repo_listing(&repo) == before,
        "a prune with nothing to do changed the repository"
    );

    let forget = json(env, &["forget", "--keep-tag", "keep"]);
    assert_eq!(num(&forget["deleted"]), 4, "{forget}");

    // A dry run says what goes, to the pack, and still changes nothing.
    let before = repo_listing(&repo);
    let packs_before = pack_set(&repo);
    let sizes = pack_sizes(&repo);
    let unused = h.packs_of(&[1, 4]);
    let repacked = h.packs_of(&[2]);
    let dry = prune(env, &["--dry-run"]);
    assert_eq!(num(&dry["snapshots"]), 4, "{dry}");
    assert_eq!(
        num(&dry["packs_before"]),
        packs_before.len() as u64,
        "{dry}"
    );
    assert_eq!(num(&dry["packs_unused"]), unused.len() as u64, "{dry}");
    assert_eq!(num(&dry["packs_repacked"]), repacked.len() as u64, "{dry}");
    assert!(num(&dry["blobs_unused"]) > 0, "{dry}");
    let to_free = num(&dry["bytes_to_free"]);
    assert!(
        to_free >= size_of(&sizes, &unused)
            && to_free < size_of(&sizes, &unused) + size_of(&sizes, &repacked),
        "bytes_to_free {to_free}: unused packs hold {}, repacked ones {}",
        size_of(&sizes, &unused),
        size_of(&sizes, &repacked)
    );
    assert!(
        repo_listing(&repo) == before,
        "a dry run changed the repository"
    );

    // The real run, through `forget --prune` (which forgets nothing more now).
    let index_before = objects_in(&repo, "index");
    let run = json(env, &["forget", "--keep-tag", "keep", "--prune"]);
    assert_eq!(run["exit_code"], 0, "{run}");
    assert_eq!(num(&run["removed"]), 0, "{run}");
    let r = &run["prune"];
    assert_eq!(num(&r["plans_completed"]), 1, "{r}");
    assert_eq!(r["plans_pending"], serde_json::json!([]), "{r}");
    assert_eq!(r["stale_locks_removed"], serde_json::json!([]), "{r}");
    assert_eq!(num(&r["packs_rescued"]), 0, "{r}");
    let packs_after = pack_set(&repo);
    let vanished: BTreeSet<_> = packs_before.difference(&packs_after).cloned().collect();
    let written: BTreeSet<_> = packs_after.difference(&packs_before).cloned().collect();
    let planned: BTreeSet<_> = unused.union(&repacked).cloned().collect();
    // Exactly the planned packs went: none that a kept snapshot needs as it is.
    assert_eq!(vanished, planned, "{r}");
    assert_eq!(num(&r["packs_deleted"]), vanished.len() as u64, "{r}");
    assert_eq!(num(&r["bytes_freed"]), size_of(&sizes, &vanished), "{r}");
    assert!(num(&r["bytes_freed"]) > 0, "{r}");
    assert_eq!(num(&r["packs_written"]), written.len() as u64, "{r}");
    assert!(!written.is_empty(), "repacking wrote no pack: {r}");
    let index_after = objects_in(&repo, "index");
    let index_gone = index_before
        .iter()
        .filter(|p| !index_after.contains(p))
        .count();
    assert_eq!(num(&r["index_files_deleted"]), index_gone as u64, "{r}");
    assert_eq!(
        num(&r["index_files_superseded"]),
        num(&r["index_files_deleted"]),
        "{r}"
    );
    assert_no_gc_objects(&repo);
    check_read_data(env, &env.cache());
    for i in keep {
        h.assert_restores(env, i, &env.cache());
    }

    // A second run finds nothing to delete (pack 5's small unused share stays under 20%).
    let before = repo_listing(&repo);
    let again = prune(env, &[]);
    assert_eq!(num(&again["packs_unused"]), 0, "{again}");
    assert_eq!(num(&again["packs_repacked"]), 0, "{again}");
    assert_eq!(num(&again["plans_completed"]), 0, "{again}");
    assert_eq!(num(&again["packs_deleted"]), 0, "{again}");
    assert!(
        num(&again["blobs_unused"]) > 0,
        "pack 5 should hold unused blobs: {again}"
    );
    assert!(
        repo_listing(&repo) == before,
        "a prune with nothing to do changed the repository"
    );

    // Secure deletion: threshold 0 repacks every pack with any unreachable blob, here pack 5.
    let dry = prune(env, &["--dry-run", "--repack-threshold", "0"]);
    assert_eq!(
        num(&dry["packs_repacked"]),
        h.packs_of[5].len() as u64,
        "{dry}"
    );
    let all0 = prune(env, &["--repack-threshold", "0"]);
    assert_eq!(num(&all0["plans_completed"]), 1, "{all0}");
    let left = pack_set(&repo);
    assert!(
        h.packs_of[5].iter().all(|p| !left.contains(p)),
        "pack 5 survived threshold 0: {all0}"
    );
    let dry = prune(env, &["--dry-run", "--repack-threshold", "0"]);
    assert_eq!(
        num(&dry["blobs_unused"]),
        0,
        "an unreachable blob remains: {dry}"
    );
    assert_eq!(num(&dry["packs_unused"]), 0, "{dry}");
    assert_eq!(num(&dry["packs_repacked"]), 0, "{dry}");
    assert_eq!(num(&dry["bytes_to_free"]), 0, "{dry}");
    assert_no_gc_objects(&repo);
    check_read_data(env, &env.cache());
    // And with an empty cache, which proves nothing relies on what this machine cached.
    check_read_data(env, &env.path("cache-empty"));
    for i in keep {
        h.assert_restores(env, i, &env.path("cache-empty-2"));
    }
    eprintln!(
        "prune_frees_exactly_what_no_snapshot_uses: {:.1?}",
        t0.elapsed()
    );
}

/// `coffer` with two regions: `local` (a folder) and `s3` (moto), in that order.
fn two_regions(env: &Env, moto: &Moto, prefix: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.dir.path())
        .env("TZ", "UTC")
        .env("COFFER_PASSWORD", PASSWORD)
        .envs(moto.env())
        .arg("--repo")
        .arg(format!("local={}", env.repo().display()))
        .arg("--repo")
        .arg(format!("s3={}", moto.url(prefix)))
        .arg("--cache-dir")
        .arg(env.cache())
        .stdin(Stdio::null());
    c
}

fn run_ok(mut c: Command, args: &[&str]) -> String {
    let out = c.args(args).timed();
    assert_ok(&out, args);
    text(&out.stdout)
}

/// The object names of a region, read through coffer's own backend (with short limits).
fn s3_objects(moto: &Moto, prefix: &str) -> Vec<String> {
    use coffer::backend::{self, Location, ObjectKind, ServiceOptions};
    let loc = Location::parse(&moto.url(prefix)).unwrap();
    let opts = ServiceOptions {
        env: moto.env(),
        attempts: 1,
        timeout: Duration::from_secs(10),
        ..ServiceOptions::default()
    };
    let b = backend::open_with(&loc, &opts).unwrap();
    let mut all: Vec<String> = ObjectKind::ALL
        .iter()
        .flat_map(|k| b.list(*k).unwrap())
        .map(|(n, _)| n.path())
        .collect();
    all.sort();
    all
}

/// The object names of a folder region, as paths relative to it.
fn folder_objects(repo: &Path) -> Vec<String> {
    let mut all: Vec<String> = repo_listing(repo)
        .into_iter()
        .map(|(p, _)| p.strip_prefix(repo).unwrap().to_string_lossy().into_owned())
        .filter(|p| !p.starts_with("tmp/"))
        .collect();
    all.sort();
    all
}

/// A moto server started again on the port of one that was killed (with an empty store:
/// moto keeps nothing), killed on drop.
struct Restarted(Child);

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn restart_moto(port: u16, bucket: &str) -> Restarted {
    use std::net::TcpStream;
    let t0 = Instant::now();
    loop {
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe; the server dies with this test's thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut server = Restarted(cmd.spawn().expect("start moto_server again"));
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                if s.local_addr().map(|a| a.port() != port).unwrap_or(false) {
                    let mut s = s;
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    write!(
                        s,
                        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .unwrap();
                    let mut resp = String::new();
                    let _ = s.read_to_string(&mut resp);
                    assert!(
                        resp.contains(" 200 "),
                        "moto did not create {bucket}: {resp}"
                    );
                    return server;
                }
            }
            if server.0.try_wait().unwrap().is_some() {
                break; // the port is not free yet: try again
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "moto did not come back"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "moto would not start again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Fails if prune deleted anything in the reachable region while another was down (the
/// folder's listing), or if, with both up, it deleted in one region only.
#[test]
fn prune_refuses_while_a_region_is_unreachable() {
    let t0 = Instant::now();
    let mut moto = Moto::start();
    let env = Env::new();
    let prefix = "prune";
    run_ok(
        two_regions(&env, &moto, prefix),
        &["init", "--kdf-memory-kib", "1024"],
    );
    let src = env.path("src");
    let shape = Shape {
        file: 300 * K,
        only: 500 * K,
        changing: 50 * K,
        mostly_used: None,
    };
    for i in 0..4 {
        make_folder(&src, &source_at(i, shape));
        run_ok(
            two_regions(&env, &moto, prefix),
            &["-q", "backup", &src.to_string_lossy()],
        );
    }
    run_ok(
        two_regions(&env, &moto, prefix),
        &["-q", "forget", "--keep-last", "1"],
    );
    let local = folder_objects(&env.repo());
    assert_eq!(
        s3_objects(&moto, prefix),
        local,
        "the regions differ before the test"
    );
    let listing = repo_listing(&env.repo());

    // s3 is down: prune refuses before changing anything, and says why.
    moto.server.kill();
    let t = Instant::now();
    let out = two_regions(&env, &moto, prefix).args(["prune"]).timed();
    expect_code(&out, 1, "prune with s3 down");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("s3") && stderr.contains("changes nothing unless every region answers"),
        "the refusal does not name the region or say nothing changed: {stderr}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "the refusal took {:?}",
        t.elapsed()
    );
    assert!(
        repo_listing(&env.repo()) == listing,
        "prune changed the reachable region while s3 was down"
    );
    // A dry run refuses too.
    let out = two_regions(&env, &moto, prefix)
        .args(["prune", "--dry-run"])
        .timed();
    expect_code(&out, 1, "prune --dry-run with s3 down");
    assert!(repo_listing(&env.repo()) == listing);

    // s3 is back but empty; once sync has filled it, prune deletes in both regions alike.
    let _moto2 = restart_moto(moto.server.port, &moto.bucket);
    run_ok(two_regions(&env, &moto, prefix), &["-q", "sync"]);
    assert_eq!(s3_objects(&moto, prefix), local, "sync did not restore s3");
    let packs_before = pack_set(&env.repo());
    let v: Value = serde_json::from_str(&run_ok(
        two_regions(&env, &moto, prefix),
        &["--json", "prune"],
    ))
    .unwrap();
    let r = &v["report"];
    assert_eq!(num(&r["plans_completed"]), 1, "{v}");
    assert!(num(&r["packs_deleted"]) > 0, "{v}");
    let local_after = folder_objects(&env.repo());
    assert_eq!(
        s3_objects(&moto, prefix),
        local_after,
        "the regions differ after prune"
    );
    let gone = packs_before.difference(&pack_set(&env.repo())).count();
    assert_eq!(num(&r["packs_deleted"]), gone as u64, "{v}");
    run_ok(two_regions(&env, &moto, prefix), &["check", "--read-data"]);
    eprintln!(
        "prune_refuses_while_a_region_is_unreachable: {:.1?}",
        t0.elapsed()
    );
}

/// `coffer --json backup --stdin --stdin-name NAME` of `bytes`; the snapshot ID and summary.
fn stdin_backup(env: &Env, name: &str, bytes: &[u8]) -> (String, Value) {
    stdin_backup_with(env, name, bytes, &[])
}

fn stdin_backup_with(env: &Env, name: &str, bytes: &[u8], args: &[&str]) -> (String, Value) {
    let mut child = env
        .cmd()
        .args(["--json", "backup", "--stdin", "--stdin-name", name])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(bytes).unwrap();
    drop(stdin);
    let out = common::wait_with_limit(child, COMMAND_TIMEOUT, "coffer");
    assert_ok(&out, &["backup", "--stdin"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["snapshot"].as_str().unwrap().to_string();
    (id, v["summary"].clone())
}

fn dump(env: &Env, id: &str, name: &str) -> Vec<u8> {
    let out = run(env, &["dump", id, name]);
    assert_ok(&out, &["dump", id, name]);
    out.stdout
}

/// Fails without the wait record (the packs would go while the backup runs), or without
/// the rescue (the sweep would delete packs the backup's new snapshot uses: check and dump
/// fail).
#[test]
fn a_running_backup_delays_deletion_and_its_snapshot_survives() {
    let t0 = Instant::now();
    let env = Env::new();
    env.init();
    let f = pseudo_random(seed(20, 0), 3 << 20);
    stdin_backup(&env, "f.bin", &f);
    let packs_a = pack_set(&env.repo());

    // A backup of the same bytes is running: it has stored its lock and read the index
    // (the first MiB went through), and waits for the rest of its input.
    let mut running = StdinBackup::start(&env, "f.bin", "late", COMMAND_TIMEOUT);
    running.write(&f[..1 << 20]);

    // A is forgotten: its packs are unused, but the plan must wait for that backup.
    let forget = json(&env, &["forget", "--force"]);
    assert_eq!(forget["removed"], 1, "{forget}");
    for round in 0..2 {
        let r = prune(&env, &[]);
        let pending = r["plans_pending"].as_array().unwrap();
        assert_eq!(pending.len(), 1, "round {round}: {r}");
        let waiting = pending[0]["waiting_for"].as_array().unwrap();
        assert_eq!(waiting.len(), 1, "{r}");
        assert!(
            waiting[0].as_str().unwrap().starts_with("backup on late"),
            "{r}"
        );
        assert_eq!(num(&r["plans_completed"]), 0, "{r}");
        assert_eq!(num(&r["packs_deleted"]), 0, "{r}");
        assert_eq!(
            pack_set(&env.repo()),
            packs_a,
            "a pack went while the backup ran"
        );
        assert_eq!(objects_in(&env.repo(), "plans").len(), 1);
        assert_eq!(objects_in(&env.repo(), "waits").len(), 1);
    }
    // A dry run lists the pending plan too.
    let dry = prune(&env, &["--dry-run"]);
    assert_eq!(dry["plans_pending"].as_array().unwrap().len(), 1, "{dry}");

    // The backup ends: it deduplicated against A's blobs, in the planned packs.
    let out = running.finish(&f[1 << 20..]);
    assert_ok(&out, &["backup", "--stdin"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = v["snapshot"].as_str().unwrap().to_string();
    assert!(
        num(&v["summary"]["bytes_added_raw"]) < f.len() as u64 / 10,
        "the backup stored the data again, so this test shows no rescue: {v}"
    );

    // Now the plan is carried out, except for the packs the new snapshot needs.
    let r = prune(&env, &[]);
    assert_eq!(num(&r["plans_completed"]), 1, "{r}");
    assert_eq!(r["plans_pending"], serde_json::json!([]), "{r}");
    assert!(num(&r["packs_rescued"]) >= 1, "{r}");
    assert!(
        packs_a.iter().all(|p| p.exists()),
        "a pack the new snapshot needs was deleted: {r}"
    );
    assert_no_gc_objects(&env.repo());
    check_read_data(&env, &env.cache());
    assert!(
        dump(&env, &b, "f.bin") == f,
        "the new snapshot does not give back F"
    );
    // The rescued packs stay indexed: a later prune keeps them and check still passes.
    let again = prune(&env, &[]);
    assert_eq!(num(&again["packs_unused"]), 0, "{again}");
    check_read_data(&env, &env.path("cache-empty"));
    assert!(dump(&env, &b, "f.bin") == f);
    eprintln!(
        "a_running_backup_delays_deletion_and_its_snapshot_survives: {:.1?}",
        t0.elapsed()
    );
}

/// Fails if a backup deduplicated against packs named by a stored plan (§12 B2): the plan
/// does not wait for a backup that started after it, so those packs are deleted under it
/// and its snapshot would lack data (check and dump fail, and bytes_added_raw shows it).
#[test]
fn a_backup_started_after_the_plan_never_relies_on_planned_packs() {
    let t0 = Instant::now();
    let env = Env::new();
    env.init();
    let f = pseudo_random(seed(21, 0), 3 << 20);
    stdin_backup(&env, "f.bin", &f);
    let packs_a = pack_set(&env.repo());

    // One backup runs while the plan is made, so the plan waits for it.
    let mut first = StdinBackup::start(&env, "other", "first", COMMAND_TIMEOUT);
    json(&env, &["forget", "--force"]);
    let r = prune(&env, &[]);
    assert_eq!(r["plans_pending"].as_array().unwrap().len(), 1, "{r}");

    // A second backup of F starts after the plan was stored: it must treat the planned
    // packs as absent. The plan does not wait for it (its lock came after).
    let mut second = StdinBackup::start(&env, "f.bin", "second", COMMAND_TIMEOUT);
    second.write(&f[..1 << 20]);
    first.write(b"small");
    let out = first.finish(b"");
    assert_ok(&out, &["backup first"]);
    let first_id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let r = prune(&env, &[]);
    assert_eq!(num(&r["plans_completed"]), 1, "{r}");
    assert_eq!(num(&r["packs_rescued"]), 0, "{r}");
    assert!(
        packs_a.iter().all(|p| !p.exists()),
        "A's packs should be gone: {r}"
    );

    // The second backup ends after its packs' originals were deleted: it stored F anew.
    let out = second.finish(&f[1 << 20..]);
    assert_ok(&out, &["backup second"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let second_id = v["snapshot"].as_str().unwrap().to_string();
    assert!(
        num(&v["summary"]["bytes_added_raw"]) >= f.len() as u64,
        "the second backup deduplicated against planned packs: {v}"
    );
    check_read_data(&env, &env.cache());
    assert!(dump(&env, &second_id, "f.bin") == f);
    assert!(dump(&env, &first_id, "other") == b"small");
    eprintln!(
        "a_backup_started_after_the_plan_never_relies_on_planned_packs: {:.1?}",
        t0.elapsed()
    );
}

/// Fails if a lock were judged stale at its first sighting by an observer, or before the
/// margin, or never.
#[test]
fn a_dead_backups_lock_goes_stale_only_after_the_margin() {
    let t0 = Instant::now();
    let env = Env::new();
    env.init();
    let f = pseudo_random(seed(22, 0), 1 << 20);
    stdin_backup(&env, "f.bin", &f);
    let packs_a = pack_set(&env.repo());

    // A backup dies (SIGKILL: no chance to delete its lock).
    StdinBackup::start(&env, "x", "dead", COMMAND_TIMEOUT).kill();
    assert_eq!(objects_in(&env.repo(), "locks").len(), 1);

    json(&env, &["forget", "--force"]);
    let pending = |r: &Value| {
        let p = r["plans_pending"].as_array().unwrap();
        assert_eq!(p.len(), 1, "{r}");
        assert!(
            p[0]["waiting_for"][0]
                .as_str()
                .unwrap()
                .starts_with("backup on dead"),
            "{r}"
        );
        assert_eq!(r["stale_locks_removed"], serde_json::json!([]), "{r}");
        assert_eq!(num(&r["packs_deleted"]), 0, "{r}");
        assert_eq!(pack_set(&env.repo()), packs_a);
    };
    // First sighting: the plan waits.
    pending(&prune(&env, &[]));
    // Seen a moment ago, not 30 minutes ago: still live.
    pending(&prune(&env, &["--stale-lock-after", "30m"]));
    // Another machine (its own cache, so its own sightings) sees the lock for the first
    // time: even with no margin at all, a first sighting is never stale.
    let other = env
        .cmd_with_cache(&env.path("cache-other"))
        .args(["--json", "prune", "--stale-lock-after", "0s"])
        .timed();
    assert_ok(&other, &["prune on another machine"]);
    let v: Value = serde_json::from_slice(&other.stdout).unwrap();
    pending(&v["report"]);
    // This observer saw the same lock object before: with a margin of 0s it is stale now.
    let r = prune(&env, &["--stale-lock-after", "0s"]);
    let stale = r["stale_locks_removed"].as_array().unwrap();
    assert_eq!(stale.len(), 1, "{r}");
    assert!(
        stale[0].as_str().unwrap().starts_with("backup on dead"),
        "{r}"
    );
    assert_eq!(num(&r["plans_completed"]), 1, "{r}");
    assert_eq!(r["plans_pending"], serde_json::json!([]), "{r}");
    assert!(packs_a.iter().all(|p| !p.exists()), "{r}");
    assert_no_gc_objects(&env.repo());
    check_read_data(&env, &env.cache());
    eprintln!(
        "a_dead_backups_lock_goes_stale_only_after_the_margin: {:.1?}",
        t0.elapsed()
    );
}

/// Fails without the backup's "is my lock still there" check before it writes its
/// snapshot: that snapshot would need the packs the prune deleted (check fails).
#[test]
fn a_backup_whose_lock_was_judged_stale_writes_no_snapshot() {
    let t0 = Instant::now();
    let env = Env::new();
    env.init();
    let f = pseudo_random(seed(23, 0), 2 << 20);
    stdin_backup(&env, "f.bin", &f);

    // A slow but live backup has read the index (with A's packs) and deduplicates against
    // them; a prune with no margin judges its lock stale and deletes A's packs.
    let mut slow = StdinBackup::start(&env, "f.bin", "slow", COMMAND_TIMEOUT);
    slow.write(&f[..1 << 20]);
    json(&env, &["forget", "--force"]);
    let r = prune(&env, &[]);
    assert_eq!(r["plans_pending"].as_array().unwrap().len(), 1, "{r}");
    let r = prune(&env, &["--stale-lock-after", "0s"]);
    assert_eq!(r["stale_locks_removed"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(num(&r["plans_completed"]), 1, "{r}");

    // The backup finds its lock gone and writes no snapshot that would need deleted packs.
    let out = slow.finish(&f[1 << 20..]);
    assert!(
        !out.status.success(),
        "the backup succeeded: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("lock was removed"),
        "{}",
        text(&out.stderr)
    );
    assert!(objects_in(&env.repo(), "snapshots").is_empty());
    // Its uploaded packs (if any) are harmless: check passes, and the next backup works.
    check_read_data(&env, &env.cache());
    let (id, _) = stdin_backup(&env, "f.bin", &f);
    assert!(dump(&env, &id, "f.bin") == f);
    check_read_data(&env, &env.cache());
    eprintln!(
        "a_backup_whose_lock_was_judged_stale_writes_no_snapshot: {:.1?}",
        t0.elapsed()
    );
}

/// A prune's own lock is never stale to itself, whatever the margin: removing it would let
/// a second prune start while this one deletes.
#[test]
fn a_prune_never_removes_its_own_lock() {
    let env = Env::new();
    env.init();
    stdin_backup(&env, "f.bin", &pseudo_random(seed(24, 0), 1 << 20));
    stdin_backup_with(
        &env,
        "f.bin",
        &pseudo_random(seed(24, 1), 1 << 20),
        &["--tag", "b"],
    );
    StdinBackup::start(&env, "x", "dead", COMMAND_TIMEOUT).kill();
    // A is forgotten while the dead backup's lock is fresh: that plan waits.
    json(&env, &["forget", "--keep-tag", "b"]);
    let r = prune(&env, &[]);
    assert_eq!(r["plans_pending"].as_array().unwrap().len(), 1, "{r}");
    // B is forgotten too. With no margin, the dead lock is stale; the first plan is swept,
    // and a second one (for B) made, with the running operations listed again (M4).
    json(&env, &["forget", "--force"]);
    let r = prune(&env, &["--stale-lock-after", "0s"]);
    assert_eq!(num(&r["plans_completed"]), 2, "{r}");
    let stale = r["stale_locks_removed"].as_array().unwrap();
    assert!(
        stale.len() == 1 && stale[0].as_str().unwrap().starts_with("backup on dead"),
        "only the dead backup's lock is stale, not the prune's own: {r}"
    );
}

/// A backup whose lock a prune removed must not bring the lock back by refreshing it and
/// then write its snapshot: the prune did not wait for it. The usual case is a suspended
/// machine (here SIGSTOP): its lock looks dead for the margin, then the process wakes up and
/// its refresh is due at once. Fails if the refresh re-creates the lock and the backup then
/// commits (its snapshot would need the deleted packs: check fails).
#[test]
fn a_suspended_backup_whose_lock_was_removed_writes_no_snapshot() {
    let t0 = Instant::now();
    let env = Env::new();
    env.init();
    let f = pseudo_random(seed(25, 0), 2 << 20);
    stdin_backup(&env, "f.bin", &f);
    let mut slow = StdinBackup::start_with(
        &env,
        "f.bin",
        "asleep",
        &[("COFFER_TEST_LOCK_REFRESH_SECS", "1")],
        COMMAND_TIMEOUT,
    );
    slow.write(&f[..1 << 20]);
    let pid = slow.child().id() as libc::pid_t;
    // SAFETY: plain syscall on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    json(&env, &["forget", "--force"]);
    let r = prune(&env, &[]);
    assert_eq!(r["plans_pending"].as_array().unwrap().len(), 1, "{r}");
    let r = prune(&env, &["--stale-lock-after", "0s"]);
    // (Two objects of its lock if it was stopped between a refresh's put and delete.)
    let stale = r["stale_locks_removed"].as_array().unwrap();
    assert!(
        !stale.is_empty()
            && stale
                .iter()
                .all(|l| l.as_str().unwrap().starts_with("backup on asleep")),
        "{r}"
    );
    assert_eq!(num(&r["plans_completed"]), 1, "{r}");
    assert!(objects_in(&env.repo(), "locks").is_empty());
    // Its refresh (every second here) is overdue when it wakes up, and runs at once.
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    std::thread::sleep(Duration::from_millis(1500));
    let out = slow.finish(&f[1 << 20..]);
    let check = run(&env, &["check", "--read-data"]);
    assert!(
        !out.status.success() && objects_in(&env.repo(), "snapshots").is_empty(),
        "the backup wrote a snapshot after its lock was removed: {}\ncheck: {}",
        text(&out.stdout),
        text(&check.stdout)
    );
    assert_ok(&check, &["check", "--read-data"]);
    assert!(
        objects_in(&env.repo(), "locks").is_empty(),
        "a lock came back"
    );
    eprintln!(
        "a_suspended_backup_whose_lock_was_removed_writes_no_snapshot: {:.1?}",
        t0.elapsed()
    );
}

/// Fails if any step of prune's write order (repacked packs and their index files, then the
/// plan, the wait record, superseded index files, packs, wait, plan, lock) could leave a
/// repository that check rejects, a kept snapshot that does not restore, or a state the
/// next prune cannot finish.
#[test]
fn prune_killed_at_every_change_leaves_a_sound_repository() {
    let t0 = Instant::now();
    let shape = Shape {
        file: 300 * K,
        only: 400 * K,
        changing: 50 * K,
        mostly_used: Some(3),
    };
    // Forgotten: 1 and 6 (wholly unused packs), 2, 4 and 7 (packs partly used by 3, 5, 8).
    let keep = [0, 3, 5, 8];
    let h = build_history(9, shape, &keep);
    json(&h.env, &["forget", "--keep-tag", "keep"]);
    let base_repo = h.env.repo();
    let base_cache = h.env.cache();
    let prune_args = ["--json", "prune", "--repack-threshold", "0"];

    let mut n = 0u64;
    let mut leaked_at = Vec::new();
    let mut empty_cache_tried = false;
    let total = loop {
        assert!(n < 200, "prune made more than 200 changes");
        let e = Env::new();
        copy_dir(&base_repo, &e.repo());
        copy_dir(&base_cache, &e.cache());
        let child = e
            .cmd()
            .env("COFFER_TEST_CRASH_AFTER", n.to_string())
            .args(prune_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let killed_pid = child.id();
        let out = common::wait_with_limit(child, COMMAND_TIMEOUT, "coffer");
        if out.status.success() {
            // The whole run makes n changes: every point before one of them was tried.
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(num(&v["report"]["plans_completed"]), 1, "{v}");
            break n;
        }
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "prune with the hook at {n} ended otherwise: {}",
            text(&out.stderr)
        );
        // The state it left: one machine goes on with its cache, and once (when a plan is
        // stored) another machine with an empty cache.
        let with_plan = !objects_in(&e.repo(), "plans").is_empty();
        let cache = if with_plan && !empty_cache_tried {
            empty_cache_tried = true;
            e.path("cache-empty")
        } else {
            e.cache()
        };
        check_read_data(&e, &cache);
        if n % 4 == 0 {
            for i in keep {
                h.assert_restores(&e, i, &cache);
            }
        } else {
            h.assert_restores(&e, keep[n as usize % keep.len()], &cache);
        }

        // The killed prune's lock is there (it stored it first): until that lock is stale,
        // another prune refuses. Seen once, and again with no margin, it is.
        let lock_left = !objects_in(&e.repo(), "locks").is_empty();
        assert_eq!(lock_left, n >= 1, "at {n}: the killed prune's lock");
        let run = |args: &[&str]| e.cmd_with_cache(&cache).args(prune_args).args(args).timed();
        let mut out = run(&[]);
        if lock_left {
            expect_code(&out, 1, "prune while a killed prune's lock is fresh");
            assert!(
                text(&out.stdout).contains("another prune is running"),
                "{}",
                text(&out.stdout)
            );
            out = run(&["--stale-lock-after", "0s"]);
        }
        expect_code(&out, 0, &format!("prune after a kill at {n}"));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let r = &v["report"];
        assert_eq!(r["plans_pending"], serde_json::json!([]), "at {n}: {r}");
        // The killed prune's lock, and no live operation's, was judged stale. (Whether the
        // prune also removes its own lock is `a_prune_never_removes_its_own_lock`'s concern.)
        let dead = format!("(pid {killed_pid})");
        let stale = r["stale_locks_removed"].as_array().unwrap();
        let found = stale.iter().any(|s| {
            let s = s.as_str().unwrap();
            s.starts_with("prune on ") && s.ends_with(&dead)
        });
        assert_eq!(found, lock_left, "at {n}: {r}");
        let dry = prune(&e, &["--dry-run", "--repack-threshold", "0"]);
        assert_eq!(num(&dry["packs_unused"]), 0, "at {n}: {dry}");
        assert_eq!(num(&dry["packs_repacked"]), 0, "at {n}: {dry}");
        assert_eq!(num(&dry["blobs_unused"]), 0, "at {n}: {dry}");
        assert_no_gc_objects(&e.repo());
        // A pack written by a repack that was killed before its index file is not in the
        // index; the next backup adopts it and the prune after deletes the duplicate.
        let on_disk = common::packs(&e.repo()).len() as u64;
        let indexed = num(&dry["packs_before"]);
        if on_disk != indexed {
            leaked_at.push((n, on_disk - indexed));
            std::fs::write(e.path("src-extra"), b"one more backup").unwrap();
            let mut c = e.cmd();
            c.arg("backup").arg(e.path("src-extra"));
            assert_ok(&c.timed(), &["backup"]);
            prune(&e, &["--repack-threshold", "0"]);
            let dry = prune(&e, &["--dry-run"]);
            assert_eq!(
                common::packs(&e.repo()).len() as u64,
                num(&dry["packs_before"]),
                "at {n}: unindexed packs remain after a backup and a prune"
            );
        }
        check_read_data(&e, &cache);
        h.assert_restores(&e, keep[(n as usize + 1) % keep.len()], &cache);
        n += 1;
    };
    assert!(
        total >= 15,
        "prune made only {total} changes: the history is too simple"
    );
    assert!(empty_cache_tried, "no killed run left a plan");
    eprintln!(
        "prune killed before each of its {total} changes; unindexed packs left at {leaked_at:?}; {:.1?}",
        t0.elapsed()
    );
}
