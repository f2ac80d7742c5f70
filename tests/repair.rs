//! Missing packs and `coffer repair`, through the real binary on a folder repository
//! (security review M3; reliability review, items 2 and 4):
//! - a backup after a pack was deleted stores that data again and warns, and its snapshot
//!   restores byte for byte; repair lists the snapshot that needed the lost pack, and
//!   `--forget-broken` removes it behind a tombstone, which leaves `check` at 0;
//! - a flipped byte in a plan, a lock or a wait record blocks backups or prunes with an error
//!   that names `coffer repair`, and after repair they work;
//! - a flipped byte in an index file makes a restore (with an empty cache) fail; repair
//!   indexes the packs again from their headers, and restore and `check` work;
//! - a prune killed in the middle of its sweep, whose plan is then damaged: repair removes
//!   the plan, and every kept snapshot restores and `check --read-data` passes;
//! - repair beside a running backup breaks nothing.
//!
//! Every coffer command is killed after [`LIMIT`], so a hang fails the test.

mod common;

use common::{copy_dir, expect_code};

use common::stdin_backup::{objects_in, StdinBackup};
use common::{assert_ok, pseudo_random, read_folder, repo_listing, Env, Files};
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn timed(c: &mut Command) -> Output {
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coffer");
    common::wait_with_limit(child, LIMIT, "coffer")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn run(env: &Env, args: &[&str]) -> Output {
    timed(env.cmd().args(args))
}

/// `coffer --json ARGS` with exit `code`; its JSON.
fn json_with(env: &Env, cache: &Path, args: &[&str], code: i32) -> Value {
    let out = timed(env.cmd_with_cache(cache).arg("--json").args(args));
    expect_code(&out, code, &args.join(" "));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: invalid JSON ({e}): {}", text(&out.stdout)))
}

/// `coffer --json repair ARGS`'s report, with the exit status it must have.
fn repair(env: &Env, args: &[&str], code: i32) -> Value {
    let mut all = vec!["repair"];
    all.extend_from_slice(args);
    json_with(env, &env.cache(), &all, code)["report"].clone()
}

fn count(v: &Value) -> usize {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .len()
}

/// Flip one bit in the middle of a file (its name no longer matches its bytes).
fn flip(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let k = b.len() / 2;
    b[k] ^= 0x10;
    std::fs::write(path, b).unwrap();
}

fn only(repo: &Path, kind: &str) -> PathBuf {
    let found = objects_in(repo, kind);
    assert_eq!(found.len(), 1, "{kind}/ holds {found:?}");
    found[0].clone()
}

/// A fresh, empty cache folder: a machine that knows nothing but the repository.
fn empty_cache(env: &Env) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    env.path(&format!("cache-empty-{n}"))
}

/// Restore snapshot `id` with `cache` and require exactly `files` below the source `src`.
fn assert_restores(env: &Env, cache: &Path, id: &str, src: &Path, files: &Files) {
    let target = env.path(&format!(
        "restored-{id}-{}",
        objects_in(&env.repo(), "snapshots").len()
    ));
    let _ = std::fs::remove_dir_all(&target);
    let out = timed(env.cmd_with_cache(cache).args([
        "restore",
        id,
        "--target",
        target.to_str().unwrap(),
    ]));
    assert_ok(&out, &["restore", id]);
    let restored = read_folder(&target.join(src.strip_prefix("/").unwrap()));
    assert!(
        restored == *files,
        "snapshot {id} does not restore its files"
    );
    std::fs::remove_dir_all(&target).unwrap();
}

/// A source folder with `files`, backed up; returns the snapshot ID.
fn backup_of(env: &Env, src: &Path, files: &Files) -> String {
    common::make_folder(src, files);
    env.backup(&[src])
}

fn files(seed: u64, names: &[(&str, usize)]) -> Files {
    names
        .iter()
        .enumerate()
        .map(|(k, (name, size))| {
            (
                name.to_string(),
                pseudo_random(seed * 100 + k as u64 * 2, *size),
            )
        })
        .collect()
}

fn check_ok(env: &Env, cache: &Path) {
    assert_ok(
        &timed(env.cmd_with_cache(cache).args(["check", "--read-data"])),
        &["check", "--read-data"],
    );
}

#[test]
fn a_backup_does_not_rely_on_a_pack_that_is_gone() {
    let env = Env::new();
    env.init();
    let (a, b) = (env.path("a"), env.path("b"));
    let big = pseudo_random(1, 3 << 20);
    let old = backup_of(&env, &a, &[("big.bin".to_string(), big.clone())].into());
    let lost = only(&env.repo(), "data");
    std::fs::remove_file(&lost).unwrap();

    // New files with the same bytes: stored again, with a warning, and restorable.
    let new_files: Files = [
        ("copy.bin".to_string(), big.clone()),
        ("other.txt".to_string(), b"new\n".to_vec()),
    ]
    .into();
    common::make_folder(&b, &new_files);
    let out = run(&env, &["--json", "backup", b.to_str().unwrap()]);
    assert_ok(&out, &["backup"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let new = v["snapshot"].as_str().unwrap().to_string();
    assert_restores(&env, &env.cache(), &new, &b, &new_files);
    assert_restores(&env, &empty_cache(&env), &new, &b, &new_files);
    assert!(
        v["summary"]["bytes_added_raw"].as_u64().unwrap() >= big.len() as u64,
        "the data was not stored again: {v}"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("missing") && err.contains("coffer repair") && err.contains("coffer check"),
        "the backup warns once, naming check and repair: {err}"
    );
    assert_eq!(err.matches("warning").count(), 1, "{err}");

    // check names the missing pack and points at repair.
    let out = run(&env, &["check"]);
    expect_code(&out, 1, "check with a pack missing");
    let last = text(&out.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    assert!(last.contains("coffer repair"), "check's last line: {last}");

    // repair lists the old snapshot, not the new one, and drops the lost pack from the index.
    let dry = repair(&env, &["--dry-run"], 1);
    let r = repair(&env, &[], 1);
    for r in [&dry, &r] {
        let broken = r["broken_snapshots"].as_array().unwrap();
        assert_eq!(broken.len(), 1, "{r}");
        assert_eq!(broken[0]["snapshot"], old.as_str(), "{r}");
        assert!(broken[0]["lost"].as_u64().unwrap() >= 1, "{r}");
    }
    let lost_name = lost.file_name().unwrap().to_str().unwrap();
    assert!(
        r["packs_missing"][0].as_str().unwrap().ends_with(lost_name),
        "{r}"
    );
    assert_eq!(count(&r["index_files_rewritten"]), 1, "{r}");
    // Once the index no longer names the pack, only the broken snapshot is left to fix.
    let tombstones = objects_in(&env.repo(), "tombstones").len();
    let r = repair(&env, &["--forget-broken"], 0);
    assert_eq!(r["snapshots_forgotten"], 1, "{r}");
    // A tombstone first, so that `sync` does not copy the snapshot back from a region that
    // still holds it (format-spec §5.12).
    assert_eq!(
        objects_in(&env.repo(), "tombstones").len(),
        tombstones + 1,
        "repair --forget-broken stores a tombstone"
    );
    assert_eq!(count(&r["index_files_rewritten"]), 0, "{r}");
    check_ok(&env, &env.cache());
    check_ok(&env, &empty_cache(&env));
    assert_eq!(objects_in(&env.repo(), "snapshots").len(), 1);
    assert_restores(&env, &empty_cache(&env), &new, &b, &new_files);
    let r = repair(&env, &[], 0);
    assert!(
        !r["broken_snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|_| true),
        "{r}"
    );
}

/// A repository with a deletion plan that waits for a backup that has ended since: two
/// snapshots of `src`, the first forgotten, and a stdin snapshot. Returns the files of the
/// kept snapshot of `src` and its ID.
fn with_pending_plan(env: &Env, src: &Path) -> (Files, String) {
    env.init();
    backup_of(
        env,
        src,
        &files(1, &[("a.bin", 700_000), ("b.bin", 300_000)]),
    );
    let kept_files = files(2, &[("c.bin", 500_000)]);
    let kept = backup_of(env, src, &kept_files);
    env.ok(&["forget", "--keep-last", "1"]);
    let mut running = StdinBackup::start(env, "s.bin", "busy", LIMIT);
    running.write(&pseudo_random(9, 100_000));
    let v = json_with(env, &env.cache(), &["prune"], 0);
    assert_eq!(count(&v["report"]["plans_pending"]), 1, "{v}");
    assert_ok(&running.finish(&[]), &["backup --stdin"]);
    assert_eq!(objects_in(&env.repo(), "plans").len(), 1);
    assert_eq!(objects_in(&env.repo(), "waits").len(), 1);
    (kept_files, kept)
}

#[test]
fn a_damaged_plan_blocks_backups_until_repair() {
    let env = Env::new();
    let src = env.path("src");
    let (kept_files, kept) = with_pending_plan(&env, &src);
    flip(&only(&env.repo(), "plans"));
    for args in [vec!["backup", src.to_str().unwrap()], vec!["prune"]] {
        let out = run(&env, &args);
        expect_code(&out, 1, &format!("{args:?} with a damaged plan"));
        let err = text(&out.stderr);
        assert!(
            err.contains("plans/") && err.contains("coffer repair"),
            "{args:?}: the error names the plan and repair: {err}"
        );
    }
    let r = repair(&env, &[], 0);
    assert_eq!(count(&r["plans_removed"]), 1, "{r}");
    assert_eq!(count(&r["waits_removed"]), 1, "the plan's wait record: {r}");
    assert!(objects_in(&env.repo(), "plans").is_empty());
    assert!(objects_in(&env.repo(), "waits").is_empty());
    let id = env.backup(&[&src]);
    let v = json_with(&env, &env.cache(), &["prune"], 0);
    assert_eq!(v["report"]["plans_completed"], 1, "prune plans afresh: {v}");
    check_ok(&env, &empty_cache(&env));
    for id in [&kept, &id] {
        assert_restores(&env, &empty_cache(&env), id, &src, &kept_files);
    }
}

#[test]
fn a_damaged_wait_record_blocks_prune_until_repair() {
    let env = Env::new();
    let src = env.path("src");
    let (kept_files, kept) = with_pending_plan(&env, &src);
    flip(&only(&env.repo(), "waits"));
    let out = run(&env, &["prune"]);
    expect_code(&out, 1, "prune with a damaged wait record");
    let err = text(&out.stderr);
    assert!(
        err.contains("waits/") && err.contains("coffer repair"),
        "{err}"
    );
    // Backups do not read wait records.
    env.backup(&[&src]);
    let r = repair(&env, &[], 0);
    assert_eq!(count(&r["waits_removed"]), 1, "{r}");
    assert_eq!(count(&r["plans_removed"]), 0, "{r}");
    // The plan gets a new wait record (no backup runs now) and is carried out.
    let v = json_with(&env, &env.cache(), &["prune"], 0);
    assert_eq!(v["report"]["plans_completed"], 1, "{v}");
    assert!(v["report"]["packs_deleted"].as_u64().unwrap() >= 1, "{v}");
    check_ok(&env, &empty_cache(&env));
    assert_restores(&env, &empty_cache(&env), &kept, &src, &kept_files);
}

#[test]
fn a_damaged_lock_blocks_prune_until_repair() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let kept_files = files(3, &[("x.bin", 400_000)]);
    let kept = backup_of(&env, &src, &kept_files);
    StdinBackup::start(&env, "s.bin", "killed", LIMIT).kill();
    flip(&only(&env.repo(), "locks"));
    let out = run(&env, &["prune"]);
    expect_code(&out, 1, "prune with a damaged lock");
    let err = text(&out.stderr);
    assert!(
        err.contains("locks/") && err.contains("coffer repair"),
        "{err}"
    );
    let r = repair(&env, &[], 0);
    assert_eq!(count(&r["locks_removed"]), 1, "{r}");
    assert!(objects_in(&env.repo(), "locks").is_empty());
    json_with(&env, &env.cache(), &["prune"], 0);
    check_ok(&env, &env.cache());
    assert_restores(&env, &empty_cache(&env), &kept, &src, &kept_files);
}

#[test]
fn a_damaged_index_file_is_rebuilt_from_the_packs() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let kept_files = files(4, &[("d.bin", 2_000_000), ("sub/e.txt", 1000)]);
    let id = backup_of(&env, &src, &kept_files);
    flip(&only(&env.repo(), "index"));

    // A machine without the old cache cannot find the blobs; the error names repair.
    let target = env.path("t");
    let out = timed(env.cmd_with_cache(&empty_cache(&env)).args([
        "restore",
        &id,
        "--target",
        target.to_str().unwrap(),
    ]));
    expect_code(&out, 1, "restore with a damaged index file");
    let err = text(&out.stderr);
    assert!(
        err.contains("not in the index") && err.contains("coffer repair"),
        "{err}"
    );
    let out = timed(env.cmd_with_cache(&empty_cache(&env)).arg("check"));
    expect_code(&out, 1, "check with a damaged index file");
    assert!(
        text(&out.stdout).contains("coffer repair"),
        "{}",
        text(&out.stdout)
    );

    let r = repair(&env, &[], 0);
    assert_eq!(count(&r["packs_indexed"]), 1, "{r}");
    assert_eq!(count(&r["index_files_removed"]), 1, "{r}");
    assert_eq!(count(&r["broken_snapshots"]), 0, "{r}");
    assert_restores(&env, &empty_cache(&env), &id, &src, &kept_files);
    check_ok(&env, &empty_cache(&env));
    check_ok(&env, &env.cache());
    let again = repair(&env, &[], 0);
    assert_eq!(count(&again["packs_indexed"]), 0, "{again}");
}

/// A prune killed after it deleted some, not all, of its plan's packs; then its plan is
/// damaged. Repair must remove the plan without breaking a kept snapshot: the index files
/// of the deleted packs are gone already, and the rest of the plan's packs are garbage.
#[test]
fn a_damaged_plan_of_a_half_done_sweep_is_removed_safely() {
    let base = Env::new();
    base.init();
    let src = base.path("src");
    // One pack per backup; the first four are forgotten, so their packs are deleted.
    let mut history = Vec::new();
    for i in 0..6u64 {
        let f = files(10 + i, &[("f.bin", 600_000)]);
        history.push((backup_of(&base, &src, &f), f));
    }
    base.ok(&["forget", "--keep-last", "2"]);
    let packs_before = objects_in(&base.repo(), "data").len();

    let mut n = 0;
    let env = loop {
        assert!(n < 60, "no kill left a half-done sweep");
        let e = Env::new();
        copy_dir(&base.repo(), &e.repo());
        copy_dir(&base.cache(), &e.cache());
        let out = timed(
            e.cmd()
                .env("COFFER_TEST_CRASH_AFTER", n.to_string())
                .arg("prune"),
        );
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "prune at {n}: {}",
            text(&out.stderr)
        );
        let packs = objects_in(&e.repo(), "data").len();
        if !objects_in(&e.repo(), "plans").is_empty() && packs < packs_before && packs > 2 {
            break e;
        }
        n += 1;
    };
    flip(&only(&env.repo(), "plans"));
    let (kept, kept_files) = history[5].clone();
    let out = run(&env, &["backup", src.to_str().unwrap()]);
    expect_code(&out, 1, "backup with a damaged plan");

    // The killed prune's lock is fresh: repair, like prune, waits until it is stale.
    let out = run(&env, &["repair"]);
    expect_code(&out, 1, "repair beside the killed prune's lock");
    assert!(
        text(&out.stderr).contains("another prune is running"),
        "{}",
        text(&out.stderr)
    );
    let r = repair(&env, &["--stale-lock-after", "0s"], 0);
    assert_eq!(count(&r["stale_locks_removed"]), 1, "{r}");
    assert_eq!(count(&r["plans_removed"]), 1, "{r}");
    // The plan's packs whose index files the sweep had deleted are indexed again.
    assert!(count(&r["packs_indexed"]) >= 1, "{r}");
    assert_eq!(count(&r["broken_snapshots"]), 0, "{r}");
    for cache in [env.cache(), empty_cache(&env)] {
        check_ok(&env, &cache);
        for (id, f) in &history[4..] {
            assert_restores(&env, &cache, id, &src, f);
        }
    }
    // Backups and prunes work again; the next prune deletes what the plan had left.
    let id = env.backup(&[&src]);
    let v = json_with(&env, &env.cache(), &["prune"], 0);
    assert!(v["report"]["packs_deleted"].as_u64().unwrap() >= 1, "{v}");
    check_ok(&env, &empty_cache(&env));
    for id in [&kept, &id] {
        assert_restores(&env, &empty_cache(&env), id, &src, &kept_files);
    }
}

#[test]
fn repair_beside_a_running_backup_breaks_nothing() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    let first_files = files(5, &[("g.bin", 1_000_000)]);
    let first = backup_of(&env, &src, &first_files);
    // Something for repair to do: a damaged index file (the backup's cache still knows it).
    flip(&only(&env.repo(), "index"));
    let stream = pseudo_random(6, 40 << 20);
    let mut running = StdinBackup::start(&env, "stream.bin", "busy", LIMIT);
    // Until one of its packs is uploaded (not yet indexed), then repair runs.
    let packs = objects_in(&env.repo(), "data").len();
    let mut sent = 0;
    while objects_in(&env.repo(), "data").len() == packs {
        assert!(sent < stream.len() - (1 << 20), "no pack was uploaded");
        running.write(&stream[sent..sent + (1 << 20)]);
        sent += 1 << 20;
    }
    let r = repair(&env, &[], 0);
    assert_eq!(count(&r["index_files_removed"]), 1, "{r}");
    assert!(count(&r["packs_indexed"]) >= 1, "{r}");
    let out = running.finish(&stream[sent..]);
    assert_ok(&out, &["backup --stdin, beside repair"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let streamed = v["snapshot"].as_str().unwrap().to_string();
    check_ok(&env, &empty_cache(&env));
    assert_restores(&env, &empty_cache(&env), &first, &src, &first_files);
    let target = env.path("stream");
    env.ok(&["restore", &streamed, "--target", target.to_str().unwrap()]);
    assert!(std::fs::read(target.join("stream.bin")).unwrap() == stream);
    // Nothing is left for a second repair to do, and no lock or leftover stays behind.
    let again = repair(&env, &[], 0);
    assert!(
        !again["packs_indexed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|_| true),
        "{again}"
    );
    assert!(objects_in(&env.repo(), "locks").is_empty());
    assert!(repo_listing(&env.repo().join("tmp")).is_empty());
}
