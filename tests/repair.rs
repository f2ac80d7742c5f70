//! Missing packs, through the real binary on a folder repository (security review M3): a
//! backup after a pack was deleted stores that data again and warns, and its snapshot
//! restores byte for byte, on this machine and on one with an empty cache.
//!
//! Every coffer command is killed after [`LIMIT`], so a hang fails the test.

mod common;

use common::{assert_ok, pseudo_random, read_folder, repo_listing, Env, Files};
use serde_json::Value;
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

fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The object files of one kind folder (`data`, `snapshots`, ...) of a folder repository.
fn objects_in(repo: &Path, kind: &str) -> Vec<PathBuf> {
    repo_listing(&repo.join(kind))
        .into_iter()
        .map(|(p, _)| p)
        .collect()
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

#[test]
fn a_backup_does_not_rely_on_a_pack_that_is_gone() {
    let env = Env::new();
    env.init();
    let (a, b) = (env.path("a"), env.path("b"));
    let big = pseudo_random(1, 3 << 20);
    backup_of(&env, &a, &[("big.bin".to_string(), big.clone())].into());
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
        err.contains("missing") && err.contains("coffer check"),
        "the backup warns once, naming check: {err}"
    );
    assert_eq!(err.matches("warning").count(), 1, "{err}");

    // check still reports the pack that is gone.
    expect_code(&run(&env, &["check"]), 1, "check with a pack missing");
}
