//! Bad input and bad luck: wrong or missing passwords, `init` over a repository, damaged
//! and missing objects, unreadable sources, backups killed or interrupted midway, and a
//! hostile config. Every case runs the real binary; none may panic, hang or write to the
//! repository when it should not.

mod common;

use common::{error_lines, pseudo_random, repo_listing, Env, PASSWORD};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// No output of any run may show a panic.
fn assert_no_panic(out: &Output) {
    for s in [text(&out.stdout), text(&out.stderr)] {
        assert!(
            !s.contains("panicked") && !s.contains("RUST_BACKTRACE"),
            "coffer panicked:\n{}",
            show(out)
        );
    }
}

/// Wait for a child, collecting its output; kill it and fail if it outlives `limit`.
fn wait_limited(mut child: Child, limit: Duration, what: &str) -> Output {
    let mut out_pipe = child.stdout.take();
    let mut err_pipe = child.stderr.take();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = out_pipe.as_mut() {
            let _ = std::io::Read::read_to_end(p, &mut v);
        }
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = std::io::Read::read_to_end(p, &mut v);
        }
        v
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for coffer") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("coffer {what} did not finish within {limit:?} (hang?)");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = Output {
        status,
        stdout: out_t.join().expect("stdout reader"),
        stderr: err_t.join().expect("stderr reader"),
    };
    assert_no_panic(&out);
    out
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coffer")
}

/// Run a prepared command (with a generous time limit) and check it did not panic.
fn run_cmd(cmd: &mut Command, what: &str) -> Output {
    wait_limited(spawn(cmd), Duration::from_secs(180), what)
}

/// `coffer ARGS` in `env`.
fn run(env: &Env, args: &[&str]) -> Output {
    run_cmd(env.cmd().args(args), &format!("{args:?}"))
}

#[track_caller]
fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "coffer {what}: expected exit {code}\n{}",
        show(out)
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The path a file has inside a snapshot: its absolute, canonical path.
fn snap_path(p: &Path) -> String {
    let parent = p.parent().unwrap().canonicalize().unwrap();
    s(&parent.join(p.file_name().unwrap())).to_string()
}

/// Where `restore --target target` puts the snapshot path of `p`.
fn restored(target: &Path, p: &Path) -> PathBuf {
    target.join(snap_path(p).trim_start_matches('/'))
}

/// Repository-relative object name as `check` prints it, e.g. `data/ab/ab12...`.
fn object_name(repo: &Path, file: &Path) -> String {
    s(file.strip_prefix(repo).unwrap()).to_string()
}

/// Files in one object folder of the repository (`config`, `keys`, `index`, `snapshots`).
fn objects(repo: &Path, dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo.join(dir))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Pack files and their total size, without reading them (cheap enough to poll).
fn pack_files(repo: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(repo.join("data")) {
        for sub in rd.flatten() {
            if let Ok(rd2) = std::fs::read_dir(sub.path()) {
                for f in rd2.flatten() {
                    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((f.path(), size));
                }
            }
        }
    }
    out.sort();
    out
}

fn pack_bytes(repo: &Path) -> u64 {
    pack_files(repo).iter().map(|(_, n)| n).sum()
}

fn flip_byte(path: &Path, at: usize) -> Vec<u8> {
    let orig = std::fs::read(path).unwrap();
    let mut bad = orig.clone();
    bad[at] ^= 0x40;
    std::fs::write(path, &bad).unwrap();
    orig
}

/// Pseudo-random bytes, 8 at a time (the shared byte-wise generator is slow for 150 MB
/// in an unoptimised test binary).
fn fast_random(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{}", show(out)))
}

/// `coffer ARGS`, required to succeed; returns stdout.
fn ok(env: &Env, args: &[&str]) -> String {
    let out = run(env, args);
    expect_code(&out, 0, &format!("{args:?}"));
    text(&out.stdout)
}

/// `coffer --json ARGS`, required to succeed.
fn json(env: &Env, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run(env, &all);
    expect_code(&out, 0, &format!("{all:?}"));
    json_of(&out)
}

/// `coffer init` with a cheap key derivation.
fn init(env: &Env) {
    ok(env, &["init", "--kdf-memory-kib", "1024"]);
}

/// Back up `paths`, required to succeed; returns the snapshot ID.
fn backup(env: &Env, paths: &[&Path]) -> String {
    let mut args = vec!["backup"];
    args.extend(paths.iter().map(|p| s(p)));
    json(env, &args)["snapshot"]
        .as_str()
        .expect("snapshot ID")
        .to_string()
}

fn snapshot_ids(env: &Env) -> Vec<String> {
    json(env, &["snapshots"])
        .as_array()
        .expect("snapshot list")
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Run the command without a controlling terminal (a new session), so nothing can prompt.
fn detach(cmd: &mut Command) -> &mut Command {
    // SAFETY: setsid is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------------------
// 1. Passwords
// ---------------------------------------------------------------------------------------

#[test]
fn wrong_password_fails_and_writes_nothing() {
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    write(&src.join("f"), &pseudo_random(1, 50_000));
    let id = backup(&env, &[&src]);
    // Something new to back up, so a backup that got through would have to write.
    write(&src.join("new"), &pseudo_random(2, 20_000));
    let before = repo_listing(&env.repo());
    let target = env.path("restore-target");
    let pwfile = env.path("wrong-password-file");
    std::fs::write(&pwfile, "not the password\n").unwrap();

    let commands: Vec<Vec<&str>> = vec![
        vec!["backup", s(&src)],
        vec!["snapshots"],
        vec!["restore", &id, "--target", s(&target)],
        vec!["check"],
        vec!["check", "--read-data"],
        vec!["ls", &id],
    ];
    for args in &commands {
        // Wrong password in the environment...
        let out = run_cmd(
            env.cmd()
                .env("COFFER_PASSWORD", "Correct Horse Battery Staple")
                .args(args),
            &format!("{args:?}"),
        );
        expect_code(&out, 1, &format!("{args:?} with a wrong password"));
        assert!(
            text(&out.stderr).to_lowercase().contains("password"),
            "{args:?}: the error should mention the password\n{}",
            show(&out)
        );
        assert!(
            repo_listing(&env.repo()) == before,
            "{args:?} changed the repository"
        );
        // ...and from a password file, with JSON output.
        let mut all = vec!["--json", "--password-file", s(&pwfile)];
        all.extend(args.iter().copied());
        let out = run(&env, &all);
        expect_code(&out, 1, &format!("{all:?}"));
        let v = json_of(&out);
        assert_eq!(v["exit_code"], 1, "{}", show(&out));
        assert_eq!(v["kind"], "WrongPassword", "{}", show(&out));
        assert!(text(&out.stderr).to_lowercase().contains("password"));
        assert!(
            repo_listing(&env.repo()) == before,
            "{all:?} changed the repository"
        );
    }
    assert!(
        !target.exists(),
        "restore with a wrong password created its target"
    );
    // The right password still works and nothing was lost.
    assert_eq!(snapshot_ids(&env), vec![id]);
    expect_code(&run(&env, &["check"]), 0, "check");
}

#[test]
fn missing_password_without_a_terminal_fails_fast() {
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    write(&src.join("f"), b"hello");
    let id = backup(&env, &[&src]);
    let before = repo_listing(&env.repo());
    let target = env.path("t");
    let commands: Vec<Vec<&str>> = vec![
        vec!["backup", s(&src)],
        vec!["snapshots"],
        vec!["restore", &id, "--target", s(&target)],
        vec!["check"],
    ];
    for args in &commands {
        let mut cmd = env.cmd();
        cmd.env_remove("COFFER_PASSWORD").args(args);
        detach(&mut cmd);
        // A prompt would wait forever on stdin; the time limit turns that into a failure.
        let out = wait_limited(
            spawn(&mut cmd),
            Duration::from_secs(30),
            &format!("{args:?}"),
        );
        expect_code(&out, 1, &format!("{args:?} without a password"));
        let err = text(&out.stderr);
        assert!(
            err.contains("no password") && err.contains("COFFER_PASSWORD"),
            "{args:?}: unclear error\n{}",
            show(&out)
        );
        assert!(
            repo_listing(&env.repo()) == before,
            "{args:?} changed the repository"
        );
    }
    assert!(!target.exists());

    // `init` without any password creates nothing.
    let fresh = Env::new();
    let mut cmd = fresh.cmd();
    cmd.env_remove("COFFER_PASSWORD")
        .args(["init", "--kdf-memory-kib", "1024"]);
    detach(&mut cmd);
    let out = wait_limited(spawn(&mut cmd), Duration::from_secs(30), "init");
    expect_code(&out, 1, "init without a password");
    assert!(text(&out.stderr).contains("no password"), "{}", show(&out));
    assert!(
        repo_listing(&fresh.repo()).is_empty(),
        "init without a password wrote objects"
    );
}

// ---------------------------------------------------------------------------------------
// 2. init over an existing repository
// ---------------------------------------------------------------------------------------

#[test]
fn init_refuses_an_existing_repository() {
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    write(&src.join("f"), &pseudo_random(3, 10_000));
    let id = backup(&env, &[&src]);
    let before = repo_listing(&env.repo());
    for password in [PASSWORD, "another password"] {
        let out = run_cmd(
            env.cmd()
                .env("COFFER_PASSWORD", password)
                .args(["init", "--kdf-memory-kib", "1024"]),
            "init",
        );
        assert_ne!(
            out.status.code(),
            Some(0),
            "init over a repository succeeded\n{}",
            show(&out)
        );
        assert_eq!(out.status.code(), Some(1), "{}", show(&out));
        assert!(
            text(&out.stderr).contains("already holds a repository"),
            "init should say the repository exists\n{}",
            show(&out)
        );
        assert!(
            repo_listing(&env.repo()) == before,
            "init changed an existing repository"
        );
    }
    // Half a repository (a key file but no config) is refused too.
    let half = Env::new();
    init(&half);
    for f in objects(&half.repo(), "config") {
        std::fs::remove_file(f).unwrap();
    }
    let before_half = repo_listing(&half.repo());
    let out = run(&half, &["init", "--kdf-memory-kib", "1024"]);
    expect_code(&out, 1, "init over a folder with a key file");
    assert!(repo_listing(&half.repo()) == before_half);
    // The original repository still opens with the original password.
    assert_eq!(snapshot_ids(&env), vec![id]);
}

// ---------------------------------------------------------------------------------------
// 3. Damage
// ---------------------------------------------------------------------------------------

/// A repository where b1's data sits in a pack of its own (`pack_b`), and snapshot `s_ab`
/// holds a1, b1 and b2 with all its trees in another pack, so damage to `pack_b` hits
/// exactly b1 in `s_ab`. (b2 is added after the first backup so that B's listing changes:
/// an unchanged listing would be deduplicated into `pack_b` as well.)
struct Damage {
    env: Env,
    a1: PathBuf,
    b1: PathBuf,
    a1_bytes: Vec<u8>,
    b1_bytes: Vec<u8>,
    /// Snapshot of B alone (its trees are in `pack_b` too).
    s_b: String,
    /// Snapshot of A and B.
    s_ab: String,
    pack_b: PathBuf,
    listing: Vec<(PathBuf, Vec<u8>)>,
}

fn damage_setup() -> Damage {
    let env = Env::new();
    init(&env);
    let a = env.path("A");
    let b = env.path("B");
    let a1 = a.join("a1");
    let b1 = b.join("b1");
    let a1_bytes = pseudo_random(11, 5_000);
    let b1_bytes = fast_random(22, 3 << 20);
    write(&a1, &a1_bytes);
    write(&b1, &b1_bytes);
    let s_b = backup(&env, &[&b]);
    let first = pack_files(&env.repo());
    assert_eq!(first.len(), 1, "backing up B should write one pack");
    let pack_b = first[0].0.clone();
    write(&b.join("b2"), b"small file added later");
    let s_ab = backup(&env, &[&a, &b]);
    let second = pack_files(&env.repo());
    assert_eq!(
        second.len(),
        2,
        "backing up A and B should add one pack (a1 and the trees)"
    );
    assert!(second.iter().any(|(p, _)| *p == pack_b));
    assert!(
        first[0].1 > 3 << 20,
        "b1's pack should hold its 3 MiB of incompressible data"
    );
    expect_code(
        &run(&env, &["check", "--read-data"]),
        0,
        "check of the intact repository",
    );
    let listing = repo_listing(&env.repo());
    Damage {
        env,
        a1,
        b1,
        a1_bytes,
        b1_bytes,
        s_b,
        s_ab,
        pack_b,
        listing,
    }
}

impl Damage {
    fn pack_name(&self) -> String {
        object_name(&self.env.repo(), &self.pack_b)
    }

    /// Restoring the A+B snapshot fails for b1 only: a1 comes back exactly.
    fn restore_survivors(&self, label: &str) {
        let target = self.env.path(&format!("restore-{label}"));
        let out = run(&self.env, &["restore", &self.s_ab, "--target", s(&target)]);
        expect_code(&out, 1, &format!("restore with {label}"));
        let b1_target = restored(&target, &self.b1);
        assert!(
            text(&out.stderr).contains(s(&b1_target)),
            "restore should name {}\n{}",
            b1_target.display(),
            show(&out)
        );
        assert!(
            !text(&out.stderr).contains(&snap_path(&self.a1)),
            "a1 should restore\n{}",
            show(&out)
        );
        assert_eq!(
            std::fs::read(restored(&target, &self.a1)).unwrap(),
            self.a1_bytes,
            "a1 was not restored exactly despite {label}"
        );
        let b2 = self.b1.with_file_name("b2");
        assert_eq!(
            std::fs::read(restored(&target, &b2)).unwrap(),
            b"small file added later"
        );
    }

    /// Put back the original bytes: everything must check clean and restore again, and no
    /// command along the way may have written to the repository.
    fn repair_and_recheck(&self, label: &str) {
        for (path, bytes) in &self.listing {
            if std::fs::read(path).ok().as_deref() != Some(bytes.as_slice()) {
                std::fs::write(path, bytes).unwrap();
            }
        }
        let out = run(&self.env, &["check", "--read-data"]);
        expect_code(&out, 0, &format!("check after repairing {label}"));
        assert!(repo_listing(&self.env.repo()) == self.listing);
        let target = self.env.path(&format!("restore-repaired-{label}"));
        let out = run(&self.env, &["restore", &self.s_ab, "--target", s(&target)]);
        expect_code(&out, 0, &format!("restore after repairing {label}"));
        assert_eq!(
            std::fs::read(restored(&target, &self.b1)).unwrap(),
            self.b1_bytes
        );
        assert_eq!(
            std::fs::read(restored(&target, &self.a1)).unwrap(),
            self.a1_bytes
        );
    }

    #[track_caller]
    fn assert_check_names(&self, out: &Output, what: &[&str]) {
        let stdout = text(&out.stdout);
        for w in what {
            assert!(
                stdout.contains(w),
                "check output should name {w:?}\n{}",
                show(out)
            );
        }
    }
}

#[test]
fn flipped_byte_in_a_pack_is_found_and_the_rest_restores() {
    let d = damage_setup();
    let len = std::fs::metadata(&d.pack_b).unwrap().len() as usize;
    flip_byte(&d.pack_b, len / 2);
    let changed: Vec<_> = repo_listing(&d.env.repo())
        .into_iter()
        .zip(&d.listing)
        .filter(|(now, then)| now != *then)
        .map(|(now, _)| now.0)
        .collect();
    assert_eq!(changed, vec![d.pack_b.clone()]);

    let out = run(&d.env, &["check", "--read-data"]);
    expect_code(&out, 1, "check --read-data of a damaged pack");
    d.assert_check_names(
        &out,
        &[&d.pack_name(), &d.s_ab[..8], &snap_path(&d.b1), "damaged"],
    );
    assert!(
        !text(&out.stdout).contains(&snap_path(&d.a1)),
        "a1 is intact and must not be reported\n{}",
        show(&out)
    );

    let out = run(&d.env, &["--json", "check", "--read-data"]);
    expect_code(&out, 1, "--json check --read-data");
    let v = json_of(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 1);
    let problems = v["report"]["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["object"] == d.pack_name().as_str()),
        "problems should name the pack: {problems:?}"
    );
    let affected = v["report"]["affected"].as_array().unwrap();
    for snap in [&d.s_ab, &d.s_b] {
        assert!(
            affected
                .iter()
                .any(|a| a["snapshot"] == snap.as_str() && a["path"] == snap_path(&d.b1).as_str()),
            "b1 in snapshot {snap} should be listed as affected: {affected:?}"
        );
    }
    assert!(
        affected
            .iter()
            .all(|a| a["path"] != snap_path(&d.a1).as_str()),
        "a1 listed as affected: {affected:?}"
    );

    d.restore_survivors("a flipped byte");
    d.repair_and_recheck("a flipped byte");
}

#[test]
fn truncated_pack_is_found_without_reading_data() {
    let d = damage_setup();
    let len = std::fs::metadata(&d.pack_b).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&d.pack_b)
        .unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);

    let out = run(&d.env, &["check"]);
    expect_code(&out, 1, "plain check of a truncated pack");
    d.assert_check_names(
        &out,
        &[&d.pack_name(), "truncated", &d.s_ab[..8], &snap_path(&d.b1)],
    );
    let out = run(&d.env, &["check", "--read-data"]);
    expect_code(&out, 1, "check --read-data of a truncated pack");
    d.assert_check_names(&out, &[&d.pack_name()]);

    d.restore_survivors("a truncated pack");
    d.repair_and_recheck("a truncated pack");
}

#[test]
fn deleted_pack_is_reported_with_the_files_it_held() {
    let d = damage_setup();
    std::fs::remove_file(&d.pack_b).unwrap();

    let out = run(&d.env, &["check"]);
    expect_code(&out, 1, "check with a missing pack");
    d.assert_check_names(
        &out,
        &[&d.pack_name(), "missing", &d.s_ab[..8], &snap_path(&d.b1)],
    );
    let v = json_of(&run(&d.env, &["--json", "check"]));
    assert_eq!(v["ok"], false);
    assert!(v["report"]["affected"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["snapshot"] == d.s_ab.as_str() && a["path"] == snap_path(&d.b1).as_str()));

    d.restore_survivors("a missing pack");
    d.repair_and_recheck("a missing pack");
}

#[test]
fn damaged_snapshot_index_and_key_objects_are_named() {
    let d = damage_setup();
    let repo = d.env.repo();

    let snap = repo.join("snapshots").join(&d.s_b);
    assert!(snap.is_file());
    flip_byte(&snap, 40);
    let out = run(&d.env, &["check"]);
    expect_code(&out, 1, "check with a damaged snapshot");
    d.assert_check_names(&out, &[&format!("snapshots/{}", d.s_b)]);
    d.repair_and_recheck("a snapshot");

    let indexes = objects(&repo, "index");
    assert_eq!(indexes.len(), 2, "one index file per backup");
    for index in &indexes {
        let len = std::fs::metadata(index).unwrap().len() as usize;
        flip_byte(index, len / 2);
        let out = run(&d.env, &["check"]);
        expect_code(&out, 1, "check with a damaged index");
        d.assert_check_names(&out, &[&object_name(&repo, index)]);
        d.repair_and_recheck("an index");
    }

    // A damaged key file: nothing opens, and the error says which object is damaged.
    let keys = objects(&repo, "keys");
    assert_eq!(keys.len(), 1);
    flip_byte(&keys[0], 10);
    let out = run(&d.env, &["check"]);
    expect_code(&out, 1, "check with a damaged key file");
    assert!(
        text(&out.stderr).contains(&object_name(&repo, &keys[0])),
        "{}",
        show(&out)
    );
    d.repair_and_recheck("a key file");
}

#[test]
fn damaged_snapshot_object_does_not_hide_the_other_snapshots() {
    let d = damage_setup();
    let snap = d.env.repo().join("snapshots").join(&d.s_b);
    let orig = flip_byte(&snap, 40);
    let damaged = format!("snapshots/{}", d.s_b);
    // Without a cache, as on a fresh machine after a disaster (a cache would still hold
    // the intact copy).
    let fresh = |args: &[&str]| {
        let mut all = vec!["--no-cache"];
        all.extend_from_slice(args);
        run(&d.env, &all)
    };

    let out = fresh(&["--json", "snapshots"]);
    expect_code(&out, 1, "snapshots with a damaged snapshot object");
    let listed = json_of(&out);
    let ids: Vec<&str> = listed
        .as_array()
        .expect("a snapshot list")
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![d.s_ab.as_str()],
        "the intact snapshot should be listed"
    );
    assert!(text(&out.stderr).contains(&damaged), "{}", show(&out));

    // The intact snapshot restores, by ID or prefix.
    let target = d.env.path("restore-intact");
    let out = fresh(&["restore", &d.s_ab[..12], "--target", s(&target)]);
    expect_code(&out, 0, "restore of the intact snapshot");
    assert_eq!(std::fs::read(restored(&target, &d.b1)).unwrap(), d.b1_bytes);
    assert_eq!(std::fs::read(restored(&target, &d.a1)).unwrap(), d.a1_bytes);

    // The damaged one, or `latest` (which might mean it), fail and name it.
    for args in [
        vec!["restore", d.s_b.as_str(), "--target", "/nonexistent/never"],
        vec!["ls", "latest"],
    ] {
        let out = fresh(&args);
        expect_code(&out, 1, &format!("{args:?} with a damaged snapshot"));
        assert!(text(&out.stderr).contains(&damaged), "{}", show(&out));
    }

    // New backups are not blocked by an old damaged snapshot.
    let b = d.b1.parent().unwrap().to_path_buf();
    let out = fresh(&["--json", "backup", s(&b)]);
    expect_code(&out, 0, "backup next to a damaged snapshot");

    std::fs::write(&snap, orig).unwrap();
    expect_code(&fresh(&["snapshots"]), 0, "snapshots after the repair");
    expect_code(
        &run(&d.env, &["check", "--read-data"]),
        0,
        "check after the repair",
    );
}

/// Without a cache, a damaged index file is skipped with a warning instead of blocking
/// the repository; the next backup indexes its packs again, after which every file restores.
#[test]
fn damaged_index_file_is_skipped_and_healed_by_the_next_backup() {
    let d = damage_setup();
    let index_files = objects(&d.env.repo(), "index");
    assert!(!index_files.is_empty());
    for f in &index_files {
        flip_byte(f, 30);
    }
    let fresh = |args: &[&str]| {
        let mut all = vec!["--no-cache"];
        all.extend_from_slice(args);
        run(&d.env, &all)
    };
    // Snapshots are still listed.
    expect_code(
        &fresh(&["snapshots"]),
        0,
        "snapshots with damaged index files",
    );
    // A backup warns, and adopts the packs no readable index describes, so everything
    // becomes reachable again.
    let a = d.a1.parent().unwrap().to_path_buf();
    let out = fresh(&["backup", s(&a)]);
    expect_code(&out, 0, "backup next to damaged index files");
    assert!(
        text(&out.stderr).contains("damaged index"),
        "{}",
        show(&out)
    );
    let target = d.env.path("restore-after-heal");
    let out = fresh(&["restore", &d.s_ab, "--target", s(&target)]);
    expect_code(
        &out,
        0,
        "restore after the next backup re-indexed the packs",
    );
    assert_eq!(std::fs::read(restored(&target, &d.b1)).unwrap(), d.b1_bytes);
    assert_eq!(std::fs::read(restored(&target, &d.a1)).unwrap(), d.a1_bytes);
    // check still names the damaged objects until they are removed.
    let out = run(&d.env, &["check"]);
    expect_code(&out, 1, "check with damaged index files");
    for f in &index_files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(text(&out.stdout).contains(name), "{}", show(&out));
        std::fs::remove_file(f).unwrap();
    }
    expect_code(
        &run(&d.env, &["check", "--read-data"]),
        0,
        "check once the damaged files are gone",
    );
}

// ---------------------------------------------------------------------------------------
// 4. Unreadable sources
// ---------------------------------------------------------------------------------------

/// Back up `paths`, expecting exit 3 and a saved snapshot; returns its ID and stderr.
fn partial_backup(env: &Env, cmd: &mut Command, paths: &[&Path]) -> (String, String) {
    cmd.args(["--json", "backup"]).args(paths);
    let out = run_cmd(cmd, "backup");
    expect_code(&out, 3, "backup with unreadable sources");
    let v = json_of(&out);
    assert_eq!(v["exit_code"], 3);
    assert!(v["summary"]["read_errors"].as_u64().unwrap() >= 1);
    let id = v["snapshot"].as_str().expect("snapshot id").to_string();
    let err = text(&out.stderr);
    assert!(err.contains("warning"), "{}", show(&out));
    assert!(
        snapshot_ids(env).contains(&id),
        "the partial snapshot was not saved"
    );
    (id, err)
}

#[test]
fn missing_source_path_gives_a_partial_snapshot() {
    let env = Env::new();
    init(&env);
    let good = env.path("good");
    let f1 = good.join("f1");
    let f2 = good.join("sub/f2");
    write(&f1, &pseudo_random(5, 70_000));
    write(&f2, b"second file");
    let missing = env.path("no-such-thing");

    let (id, err) = partial_backup(&env, &mut env.cmd(), &[&good, &missing]);
    assert!(
        err.contains(s(&missing)),
        "the warning should name the missing path\n{err}"
    );
    let target = env.path("t");
    expect_code(
        &run(&env, &["restore", &id, "--target", s(&target)]),
        0,
        "restore",
    );
    assert_eq!(
        std::fs::read(restored(&target, &f1)).unwrap(),
        pseudo_random(5, 70_000)
    );
    assert_eq!(
        std::fs::read(restored(&target, &f2)).unwrap(),
        b"second file"
    );
    assert!(!restored(&target, &missing).exists());

    // Text output: same exit status, a warning, and the snapshot line.
    let out = run(&env, &["backup", s(&missing), s(&good)]);
    expect_code(&out, 3, "text backup with a missing path");
    assert!(text(&out.stderr).contains("warning") && text(&out.stderr).contains(s(&missing)));
    assert!(text(&out.stdout).contains("snapshot"), "{}", show(&out));
    assert_eq!(snapshot_ids(&env).len(), 2);
    expect_code(&run(&env, &["check"]), 0, "check");
}

/// Run as user `nobody` when we are root (root reads chmod-000 files).
fn as_nobody(cmd: &mut Command) -> &mut Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return cmd;
    }
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

#[test]
fn unreadable_file_and_folder_mid_tree_give_a_partial_snapshot() {
    let env = Env::new();
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // The repository, cache and HOME all live in the scratch folder: give it to nobody.
        std::os::unix::fs::chown(env.dir.path(), Some(65534), Some(65534)).unwrap();
    }
    let src = env.path("src");
    let ok1 = src.join("ok1");
    let ok2 = src.join("sub/ok2");
    let secret = src.join("sub/secret");
    let locked = src.join("locked");
    write(&ok1, &pseudo_random(6, 30_000));
    write(&ok2, b"readable");
    write(&secret, b"unreadable");
    write(&locked.join("inside"), b"behind a locked door");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();

    let out = run_cmd(
        as_nobody(env.cmd().args(["init", "--kdf-memory-kib", "1024"])),
        "init as nobody",
    );
    expect_code(&out, 0, "init as nobody");
    let (id, err) = partial_backup(&env, as_nobody(&mut env.cmd()), &[&src]);
    assert!(
        err.contains(s(&secret)),
        "the warning should name the file\n{err}"
    );
    assert!(
        err.contains(s(&locked)),
        "the warning should name the folder\n{err}"
    );
    assert!(
        err.contains("2 file(s) or folder(s) could not be read"),
        "{err}"
    );

    let target = env.path("t");
    expect_code(
        &run(&env, &["restore", &id, "--target", s(&target)]),
        0,
        "restore",
    );
    assert_eq!(
        std::fs::read(restored(&target, &ok1)).unwrap(),
        pseudo_random(6, 30_000)
    );
    assert_eq!(std::fs::read(restored(&target, &ok2)).unwrap(), b"readable");
    assert!(!restored(&target, &secret).exists());
    assert!(!restored(&target, &locked).exists());
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn special_file_that_fails_to_read_gives_a_partial_snapshot() {
    // /proc/self/mem is a regular file that even root cannot read at offset 0 (EIO).
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    write(&src.join("f"), b"fine");
    let mem = Path::new("/proc/self/mem");
    let (id, err) = partial_backup(&env, &mut env.cmd(), &[&src, mem]);
    assert!(err.contains("/mem: cannot read"), "{err}");
    let out = ok(&env, &["ls", &id]);
    assert!(out.contains(&snap_path(&src.join("f"))), "{out}");
}

// ---------------------------------------------------------------------------------------
// 5. Killed and interrupted backups
// ---------------------------------------------------------------------------------------

const BIG_FILES: usize = 6;
const BIG_FILE_SIZE: usize = 25_000_000;
const BIG_TOTAL: u64 = (BIG_FILES * BIG_FILE_SIZE) as u64;

/// ~150 MB of incompressible data in several files (about nine 16 MiB packs).
fn big_tree(env: &Env) -> PathBuf {
    let src = env.path("big");
    for i in 0..BIG_FILES {
        write(
            &src.join(format!("d{}/file{i}", i % 2)),
            &fast_random(100 + i as u64, BIG_FILE_SIZE),
        );
    }
    src
}

fn start_backup(env: &Env, src: &Path) -> Child {
    spawn(env.cmd().args(["--json", "backup", s(src)]))
}

/// Wait until the repository holds at least `n` pack files, or the child exits.
fn wait_for_packs(env: &Env, child: &mut Child, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while pack_files(&env.repo()).len() < n {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("backup ended ({st:?}) before {n} packs were written");
        }
        assert!(
            Instant::now() < deadline,
            "no progress: {n} packs never appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill has no memory effects; the pid is our own unreaped child.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill failed");
}

/// After an interrupted backup: check passes, no snapshot was saved.
fn assert_consistent_without_snapshot(env: &Env, when: &str) -> Output {
    let out = run(env, &["check"]);
    expect_code(&out, 0, &format!("check after {when}"));
    assert!(snapshot_ids(env).is_empty(), "{when} left a snapshot");
    out
}

/// The final, complete backup reuses what the interrupted ones uploaded, and restores exactly.
fn finish_and_verify(env: &Env, src: &Path) {
    let uploaded = pack_bytes(&env.repo());
    assert!(
        uploaded >= 16 << 20,
        "the interrupted backups should have left at least one full pack ({uploaded} bytes)"
    );
    let out = run_cmd(env.cmd().args(["--json", "backup", s(src)]), "final backup");
    expect_code(&out, 0, "final backup");
    let v = json_of(&out);
    let sum = &v["summary"];
    let stored = sum["bytes_added_stored"].as_u64().unwrap();
    assert_eq!(sum["total_bytes"].as_u64().unwrap(), BIG_TOTAL);
    // Random data does not compress: without reuse `stored` would be about BIG_TOTAL.
    assert!(
        stored + uploaded <= BIG_TOTAL + BIG_TOTAL / 50,
        "the final backup stored {stored} bytes although {uploaded} were already uploaded \
         (total {BIG_TOTAL}): uploaded data was not reused"
    );
    assert!(
        stored < BIG_TOTAL - (8 << 20),
        "stored {stored} of {BIG_TOTAL}"
    );
    eprintln!("final backup stored {stored} bytes; {uploaded} had been uploaded before");
    let id = v["snapshot"].as_str().unwrap().to_string();
    let out = run(env, &["check"]);
    expect_code(&out, 0, "check after the final backup");
    assert!(
        !text(&out.stdout).contains("not in any index"),
        "every pack should be indexed now\n{}",
        show(&out)
    );
    let target = env.path("restored");
    let out = run(env, &["restore", &id, "--target", s(&target)]);
    expect_code(&out, 0, "restore of the final backup");
    for i in 0..BIG_FILES {
        let f = src.join(format!("d{}/file{i}", i % 2));
        let got = std::fs::read(restored(&target, &f)).unwrap();
        assert!(
            got == std::fs::read(&f).unwrap(),
            "{} not restored exactly",
            f.display()
        );
    }
}

#[test]
fn killed_backups_leave_a_consistent_repository_and_their_uploads_are_reused() {
    let env = Env::new();
    init(&env);
    let src = big_tree(&env);
    // Kill points: fixed delays from the start, and moments just after a new pack appeared
    // (certainly mid-upload). A run is also killed as soon as it has added `max` packs; the
    // maxima add up to 7 of the ~9 packs, so no run can finish however fast the machine.
    struct Kill {
        after_packs: usize,
        delay_ms: u64,
        max: usize,
    }
    let plan = [
        Kill {
            after_packs: 0,
            delay_ms: 200,
            max: 1,
        },
        Kill {
            after_packs: 0,
            delay_ms: 500,
            max: 1,
        },
        Kill {
            after_packs: 0,
            delay_ms: 1000,
            max: 1,
        },
        Kill {
            after_packs: 0,
            delay_ms: 2000,
            max: 1,
        },
        Kill {
            after_packs: 1,
            delay_ms: 0,
            max: 1,
        },
        Kill {
            after_packs: 1,
            delay_ms: 300,
            max: 2,
        },
    ];
    for (round, k) in plan.iter().enumerate() {
        let start_packs = pack_files(&env.repo()).len();
        let mut child = start_backup(&env, &src);
        let started = Instant::now();
        wait_for_packs(&env, &mut child, start_packs + k.after_packs);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(k.delay_ms)
            && pack_files(&env.repo()).len() < start_packs + k.max
        {
            assert!(
                child.try_wait().unwrap().is_none(),
                "backup ended before the kill"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        signal(&child, libc::SIGKILL);
        let out = wait_limited(child, Duration::from_secs(30), "killed backup");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the backup was not killed (it finished first?)\n{}",
            show(&out)
        );
        let check = assert_consistent_without_snapshot(&env, &format!("kill round {round}"));
        eprintln!(
            "kill round {round}: killed after {:?}, packs {start_packs} -> {}; {}",
            started.elapsed(),
            pack_files(&env.repo()).len(),
            text(&check.stdout)
                .lines()
                .find(|l| l.starts_with("note"))
                .unwrap_or("no note")
        );
    }
    let leftovers = std::fs::read_dir(env.repo().join("tmp")).map_or(0, |rd| rd.count());
    eprintln!("temporary files left in the repository by killed writes: {leftovers}");
    finish_and_verify(&env, &src);
}

#[test]
fn interrupted_backups_exit_130_and_their_uploads_are_reused() {
    let env = Env::new();
    init(&env);
    let src = big_tree(&env);

    // One Ctrl-C: stop cleanly, index what was uploaded, exit 130.
    let mut child = start_backup(&env, &src);
    wait_for_packs(&env, &mut child, 1);
    signal(&child, libc::SIGINT);
    let out = wait_limited(child, Duration::from_secs(180), "interrupted backup");
    expect_code(&out, 130, "backup interrupted by SIGINT");
    assert!(text(&out.stderr).contains("interrupted"), "{}", show(&out));
    let check = assert_consistent_without_snapshot(&env, "SIGINT");
    assert!(
        !text(&check.stdout).contains("not in any index"),
        "an interrupted backup should index what it uploaded\n{}",
        show(&check)
    );

    // Ctrl-C twice: quit at once, still 130, still consistent.
    let before = pack_files(&env.repo()).len();
    let mut child = start_backup(&env, &src);
    wait_for_packs(&env, &mut child, before + 1);
    signal(&child, libc::SIGINT);
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, libc::SIGINT);
    let out = wait_limited(child, Duration::from_secs(180), "doubly interrupted backup");
    expect_code(&out, 130, "backup interrupted by two SIGINTs");
    assert_consistent_without_snapshot(&env, "two SIGINTs");

    finish_and_verify(&env, &src);
}

// ---------------------------------------------------------------------------------------
// 6. Hostile config
// ---------------------------------------------------------------------------------------

#[test]
fn hostile_config_is_refused_cleanly() {
    use coffer::crypto::Keys;
    use coffer::format::config::Config;
    use coffer::format::keyfile::KeyFile;

    let env = Env::new();
    init(&env);
    let src = env.path("src");
    write(&src.join("f"), b"data");
    backup(&env, &[&src]);
    let repo = env.repo();
    let configs = objects(&repo, "config");
    assert_eq!(configs.len(), 1);
    let config_path = configs[0].clone();
    let original = std::fs::read(&config_path).unwrap();

    // Replace the config with `bytes`, stored under its proper hash name (so decoding, not
    // only the hash check, is exercised) or under the old name.
    let install = |bytes: &[u8], proper_name: bool| {
        for f in objects(&repo, "config") {
            std::fs::remove_file(f).unwrap();
        }
        let path = if proper_name {
            repo.join("config")
                .join(hex::encode(coffer::id::object_hash(bytes)))
        } else {
            config_path.clone()
        };
        std::fs::write(path, bytes).unwrap();
    };
    let expect_refused = |label: &str, needle: &str| {
        let before = repo_listing(&repo);
        for args in [
            vec!["snapshots"],
            vec!["check"],
            vec!["backup", s(&src)],
            vec!["--json", "snapshots"],
        ] {
            let out = run(&env, &args);
            expect_code(&out, 1, &format!("{args:?} with {label}"));
            let err = text(&out.stderr);
            assert!(
                err.contains("coffer: error:"),
                "{label}: no clear error\n{}",
                show(&out)
            );
            assert!(
                err.contains(needle),
                "{label}: error should mention {needle:?}\n{}",
                show(&out)
            );
            assert!(
                repo_listing(&repo) == before,
                "{args:?} wrote to a repository with {label}"
            );
        }
    };

    let mut garbage = fast_random(7, 4096);
    install(&garbage, false);
    expect_refused("garbage under the old name", "config");

    garbage[..4].copy_from_slice(b"CFFC");
    let mut bad_version = original.clone();
    bad_version[4] = 0xee;
    let mut flipped_body = original.clone();
    let n = flipped_body.len();
    flipped_body[n - 5] ^= 1;
    let mut longer = original.clone();
    longer.extend_from_slice(&[0u8; 100]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("an empty config", vec![]),
        ("a 3-byte config", b"CFF".to_vec()),
        ("magic only", b"CFFC".to_vec()),
        ("header without body", original[..37].to_vec()),
        ("random bytes", fast_random(8, 4096)),
        ("random bytes after the magic", garbage.clone()),
        ("a future format version", bad_version),
        ("a modified sealed body", flipped_body),
        ("trailing bytes", longer),
        ("a huge random config", fast_random(9, 4 << 20)),
    ];
    for (label, bytes) in &cases {
        install(bytes, true);
        expect_refused(label, "config");
    }

    // Authenticated but out-of-range values (someone holding the key wrote them).
    let key = std::fs::read(&objects(&repo, "keys")[0]).unwrap();
    let master = KeyFile::decode(&key)
        .unwrap()
        .unwrap(PASSWORD.as_bytes())
        .unwrap();
    let keys = Keys::derive(&master);
    let good = Config::decode(&keys, &original).unwrap();
    let mut hostile: Vec<(&str, Config)> = Vec::new();
    for (label, edit) in [
        (
            "pack target 0",
            (|c: &mut Config| c.pack_target = 0) as fn(&mut Config),
        ),
        ("pack target 4 GiB", |c| c.pack_target = u32::MAX),
        ("zstd level 0", |c| c.zstd_level = 0),
        ("zstd level 255", |c| c.zstd_level = 255),
        ("chunker min > max", |c| {
            c.files_chunker.min = 1 << 20;
            c.files_chunker.max = 1024;
        }),
        ("chunker sizes 0", |c| {
            c.stream_chunker.min = 0;
            c.stream_chunker.avg = 0;
            c.stream_chunker.max = 0;
        }),
        ("chunker max 4 GiB", |c| c.files_chunker.max = u32::MAX),
    ] {
        let mut c = good.clone();
        edit(&mut c);
        hostile.push((label, c));
    }
    for (label, c) in &hostile {
        install(&c.encode(&keys, None), true);
        expect_refused(label, "range");
    }

    // Two configs, and none at all.
    install(&original, false);
    std::fs::write(
        repo.join("config")
            .join(hex::encode(coffer::id::object_hash(b"second"))),
        b"second",
    )
    .unwrap();
    expect_refused("two config objects", "config objects");
    for f in objects(&repo, "config") {
        std::fs::remove_file(f).unwrap();
    }
    expect_refused("no config", "no repository");

    // init does not overwrite a damaged repository either.
    install(&fast_random(10, 100), true);
    let out = run(&env, &["init", "--kdf-memory-kib", "1024"]);
    expect_code(&out, 1, "init over a garbage config");

    install(&original, false);
    expect_code(
        &run(&env, &["check", "--read-data"]),
        0,
        "check after restoring the config",
    );
}

// ---------------------------------------------------------------------------------------
// 6. What the user typed wrong is a usage error (exit 2)
// ---------------------------------------------------------------------------------------

/// `coffer ARGS` with the password set but no repository from the environment.
fn bare(env: &Env, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.dir.path())
        .env("COFFER_PASSWORD", PASSWORD)
        .arg("--cache-dir")
        .arg(env.cache())
        .args(args)
        .stdin(Stdio::null());
    run_cmd(&mut cmd, &format!("{args:?}"))
}

#[test]
fn repository_urls_typed_wrong_exit_2_with_one_line() {
    let env = Env::new();
    for url in [
        "ftp://h/x",
        "http://[::1",
        "s3://",
        "s3:///prefix",
        "sftp://user:pw@h/p",
        "s3://AKIA:secret@bucket/p",
        "azblob://user:secret@c/p",
        // Secrets in an endpoint's query or fragment, plain or percent-encoded.
        "s3://b?endpoint=http://h/x%3Fsig%3Dsecret",
        "s3://b?endpoint=http://h/x%253Fsig%253Dsecret",
        "s3://b?endpoint=http://h#secret",
        "azblob://c/p?endpoint=https://h/a%3Fsv%3D1%26sig%3Dsecret",
        "s3://b?endpoint=storage.example/secret",
    ] {
        let out = bare(&env, &["--repo", url, "snapshots"]);
        expect_code(&out, 2, url);
        let err = text(&out.stderr);
        assert_eq!(error_lines(&err), 1, "{url}: {}", show(&out));
        assert!(
            !err.contains("secret") && !err.contains(":pw"),
            "{url}: the refused URL's secret is printed\n{}",
            show(&out)
        );
    }

    // A file where the repository's folder should be: one line of ours, not opendal's.
    for path in ["/etc/hostname", "/etc/hostname/repo"] {
        let out = bare(&env, &["--repo", path, "snapshots"]);
        expect_code(&out, 2, path);
        let err = text(&out.stderr);
        assert!(
            err.contains("not a folder")
                && !err.contains("Unexpected")
                && !err.contains("Builder")
                && error_lines(&err) == 1,
            "{path}: {}",
            show(&out)
        );
    }
}

#[test]
fn snapshot_specs_typed_wrong_exit_2() {
    let env = Env::new();
    init(&env);
    // Stdin backups until two snapshot IDs share their first hex digit.
    let mut ids: Vec<String> = Vec::new();
    let shared = loop {
        let mut cmd = env.cmd();
        cmd.args(["--json", "backup", "--stdin", "--stdin-name", "n"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn coffer");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ids.len().to_string().as_bytes())
            .unwrap();
        let out = wait_limited(child, Duration::from_secs(60), "stdin backup");
        expect_code(&out, 0, "stdin backup");
        ids.push(json_of(&out)["snapshot"].as_str().unwrap().to_string());
        let first = &ids.last().unwrap()[..1];
        if ids.iter().filter(|id| id.starts_with(first)).count() > 1 {
            break first.to_string();
        }
    };
    let unused = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| ids.iter().all(|id| !id.starts_with(d.as_str())))
        .unwrap();
    let unknown_full = format!("{unused}{}", &"0".repeat(63));
    for (spec, needle) in [
        (unused.as_str(), "no snapshot with ID"),
        (unknown_full.as_str(), "no snapshot with ID"),
        (shared.as_str(), "ambiguous"),
        ("@not-a-time", "cannot read"),
        ("@2026-13-45", "cannot read"),
        ("yesterday", "not a snapshot ID"),
    ] {
        for cmd in [vec!["ls", spec], vec!["dump", spec, "n"]] {
            let out = run(&env, &cmd);
            expect_code(&out, 2, &format!("{cmd:?}"));
            assert!(
                text(&out.stderr).contains(needle),
                "{cmd:?}\n{}",
                show(&out)
            );
        }
    }
}
