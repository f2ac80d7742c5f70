//! Objects that vanish without `forget` or `prune` having deleted them (security review L4,
//! reliability item 5, format-spec §9): the local cache knew them, so the next command that
//! lists them warns, naming them, once. What `forget` and `prune` delete, on this machine or
//! on another one (another cache), is not reported.

mod common;

use common::Env;
use std::path::PathBuf;
use std::process::Output;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Run on this machine (the env's cache); require success; return stderr without the line
/// that names the repository.
fn here(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    ok(&out, &format!("{args:?}"));
    text(&out.stderr)
        .lines()
        .filter(|l| !l.starts_with("repository "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Run on another machine: the same repository and password, a cache of its own.
fn elsewhere(env: &Env, args: &[&str]) {
    let out = env
        .cmd_with_cache(&env.path("other-cache"))
        .args(args)
        .output()
        .unwrap();
    ok(&out, &format!("{args:?} on another machine"));
}

/// Back up `data/f` at `time`, with the file holding `seed`'s bytes.
fn night(env: &Env, seed: u64, time: &str) {
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    // Each night replaces the file: a forgotten night leaves packs that hold nothing
    // reachable, which a prune deletes together with their index files.
    std::fs::write(data.join("f"), common::pseudo_random(seed, 50_000)).unwrap();
    env.ok(&[
        "backup",
        data.to_str().unwrap(),
        "--host",
        "h",
        "--time",
        time,
    ]);
}

fn names(dir: PathBuf) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn a_snapshot_deleted_by_hand_is_reported() {
    let env = Env::new();
    env.init();
    for (i, t) in ["2026-01-01T00:00", "2026-01-02T00:00", "2026-01-03T00:00"]
        .iter()
        .enumerate()
    {
        night(&env, i as u64, t);
    }
    assert_eq!(here(&env, &["snapshots"]), "");
    let list = env.json(&["snapshots"]);
    let newest = list.as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(env.repo().join("snapshots").join(&newest)).unwrap();

    let err = here(&env, &["snapshots"]);
    let data = env.path("data");
    assert!(
        err.contains(&format!(
            "snapshot {} (2026-01-03 00:00:00 UTC, h:{}) has vanished",
            &newest[..8],
            data.display()
        )) && err.contains("no tombstone"),
        "{err}"
    );
    // Once: the cache has let it go.
    assert!(!here(&env, &["snapshots"]).contains("vanished"));

    // `forget` here, then `forget` on another machine: no warning on this one.
    assert!(!here(&env, &["forget", "--keep-last", "1"]).contains("vanished"));
    assert!(!here(&env, &["snapshots"]).contains("vanished"));
    night(&env, 4, "2026-01-04T00:00");
    assert!(!here(&env, &["snapshots"]).contains("vanished"));
    elsewhere(&env, &["forget", "--keep-last", "1"]);
    let err = here(&env, &["snapshots"]);
    assert!(!err.contains("vanished"), "{err}");
    assert_eq!(env.json(&["snapshots"]).as_array().unwrap().len(), 1);
}

#[test]
fn an_index_file_deleted_by_hand_is_reported() {
    let env = Env::new();
    env.init();
    for (i, t) in ["2026-01-01T00:00", "2026-01-02T00:00", "2026-01-03T00:00"]
        .iter()
        .enumerate()
    {
        night(&env, i as u64, t);
    }
    assert_eq!(here(&env, &["stats"]), "");

    // A prune on another machine deletes and rewrites index files: explained by the prune.
    let before = names(env.repo().join("index"));
    elsewhere(&env, &["forget", "--keep-last", "1", "--prune"]);
    let after = names(env.repo().join("index"));
    assert!(
        before.iter().any(|f| !after.contains(f)),
        "the prune deleted no index file"
    );
    let err = here(&env, &["stats"]);
    assert!(!err.contains("vanished"), "{err}");

    // By hand: its pack is still stored, and no longer indexed. Reported, once.
    std::fs::remove_file(env.repo().join("index").join(&after[0])).unwrap();
    let out = env.run(&["stats"]);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("index file {} has vanished", &after[0][..8]))
            && err.contains("no longer indexed"),
        "{err}"
    );
    assert!(!text(&env.run(&["stats"]).stderr).contains("vanished"));
}
