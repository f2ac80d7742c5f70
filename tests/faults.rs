//! The reliability review's fault campaigns, kept as a bounded, deterministic test (issue 12).
//!
//! - **Damage.** Every kind of stored object (config, key file, pack, index, snapshot, lock,
//!   plan, wait record, report) has bytes flipped at several positions, is truncated, and is
//!   swapped with another object of its kind, each in a fresh copy of one repository.
//!   `check --read-data` must exit 1, and no `restore` may exit 0 with bytes other than the
//!   source's.
//! - **SIGKILL.** `backup`, `forget --prune`, `key add`, `key passwd` and `sync` are killed
//!   before each of their writes and deletes in turn (`COFFER_TEST_CRASH_AFTER`, see
//!   `src/cli/crash_hook.rs`). After every kill `check --read-data` passes and every snapshot
//!   stored before restores byte for byte.
//!
//! No command may panic. Messages are not asserted (they are others' to improve): only that
//! damage is detected and that nothing wrong is restored.

mod common;

use common::copy_dir;

use coffer::sources::files::Files as FilesSource;
use coffer::sources::SourceKind;
use common::{make_folder, pseudo_random, read_folder, wait_with_limit, Env, Files, PASSWORD};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// One command may take this long under a loaded machine before the test calls it a hang.
const LIMIT: Duration = Duration::from_secs(180);
/// More kills than any of these commands has writes: a command that never finishes is a bug.
const MAX_KILLS: u64 = 60;
const SECOND_PASSWORD: &str = "a second password";

/// Run `cmd` (time-limited) and fail the test if it panicked: exit code 101, or "panicked"
/// on stderr.
fn run(mut cmd: Command, what: &str) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start coffer");
    let out = wait_with_limit(child, LIMIT, what);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(101) && !stderr.contains("panicked"),
        "{what} panicked: {stderr}"
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `coffer ARGS` in `e` with `password`, which must exit 0.
fn ok(e: &Env, password: &str, args: &[&str]) -> Output {
    let mut cmd = e.cmd();
    cmd.env("COFFER_PASSWORD", password).args(args);
    let out = run(cmd, &format!("coffer {args:?}"));
    assert!(out.status.success(), "coffer {args:?}: {}", text(&out));
    out
}

/// Version `v` of the backed-up folder. The big file is shared by every version; each version
/// adds a file of its own large enough that a forgotten version's pack is worth repacking
/// (over prune's 20 % threshold), so a prune leaves a plan.
fn version(v: u64) -> Files {
    let mut f = Files::new();
    f.insert("same/big.bin".into(), pseudo_random(1, 600 << 10));
    f.insert("same/note.txt".into(), b"unchanged\n".to_vec());
    f.insert(
        "changed/v.txt".into(),
        format!("version {v}\n").into_bytes(),
    );
    f.insert(format!("new/{v}.bin"), pseudo_random(100 + v, 400 << 10));
    f
}

/// Back up `src` as job `app` (so drills find it); returns the snapshot ID.
fn backup(e: &Env, password: &str, src: &Path) -> String {
    let mut args = vec!["--json".to_string(), "backup".to_string()];
    for t in FilesSource(vec![]).tags("app") {
        args.extend(["--tag".to_string(), t]);
    }
    args.push(src.to_string_lossy().into_owned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ok(e, password, &args);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup JSON");
    v["snapshot"].as_str().expect("snapshot ID").to_string()
}

/// Restore `id` into a new folder of `e`: `None` if restore failed, else what it restored of
/// `src`.
fn restore(e: &Env, password: &str, id: &str, src: &Path) -> Option<Files> {
    let target = tempfile::tempdir_in(e.dir.path()).expect("restore folder");
    let mut cmd = e.cmd();
    cmd.env("COFFER_PASSWORD", password)
        .args(["restore", id, "--target"])
        .arg(target.path());
    let out = run(cmd, &format!("restore {id}"));
    out.status
        .success()
        .then(|| read_folder(&target.path().join(src.strip_prefix("/").unwrap())))
}

/// IDs of the snapshots `e` lists.
fn listed(e: &Env, password: &str) -> Vec<String> {
    let out = ok(e, password, &["--json", "snapshots"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("snapshots JSON");
    v.as_array()
        .expect("a list of snapshots")
        .iter()
        .map(|s| s["id"].as_str().expect("snapshot id").to_string())
        .collect()
}

/// Every object file below `dir` (packs are one folder deeper), sorted.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_below(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------
// Damage

/// The folders of the object kinds, and how many objects of each the built repository holds
/// at least.
const KINDS: [(&str, usize); 9] = [
    ("config", 1),
    ("keys", 2),
    ("data", 2),
    ("index", 2),
    ("snapshots", 2),
    ("locks", 2),
    ("plans", 1),
    ("waits", 1),
    ("reports", 2),
];

/// A repository with objects of every kind, and the snapshots it holds with their contents.
struct Built {
    env: Env,
    src: PathBuf,
    snapshots: Vec<(String, Files)>,
}

/// init; a second key; three backups of changing data; forget the first; two backups killed
/// after storing their lock (two locks); a prune, whose plan waits for those locks (a plan
/// and a wait record); two drills (two reports).
fn build() -> Built {
    let env = Env::new();
    env.init();
    let mut cmd = env.cmd();
    cmd.env("COFFER_NEW_PASSWORD", SECOND_PASSWORD)
        .args(["key", "add"]);
    let out = run(cmd, "key add");
    assert!(out.status.success(), "key add: {}", text(&out));
    let src = env.path("src");
    let mut snapshots = Vec::new();
    for v in 1..=3 {
        make_folder(&src, &version(v));
        snapshots.push((backup(&env, PASSWORD, &src), version(v)));
    }
    ok(&env, PASSWORD, &["forget", "--keep-last", "2"]);
    snapshots.remove(0);
    for _ in 0..2 {
        let mut cmd = env.cmd();
        cmd.env("COFFER_TEST_CRASH_AFTER", "1")
            .arg("backup")
            .arg(&src);
        let out = run(cmd, "backup killed after its lock");
        assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", text(&out));
    }
    ok(&env, PASSWORD, &["prune"]);
    let config = env.path("coffer.toml");
    std::fs::write(
        &config,
        format!(
            "[[job]]\nname = \"app\"\npaths = [{src:?}]\nschedule = \"daily 02:30\"\n\
             drill = {{ schedule = \"weekly\", target = {:?} }}\n",
            env.path("scratch")
        ),
    )
    .unwrap();
    for _ in 0..2 {
        let mut cmd = env.cmd();
        cmd.arg("--config").arg(&config).arg("drill");
        let out = run(cmd, "drill");
        assert!(out.status.success(), "drill: {}", text(&out));
    }
    for (kind, at_least) in KINDS {
        let n = files_below(&env.repo().join(kind)).len();
        assert!(n >= at_least, "the built repository has {n} {kind}");
    }
    // Undamaged, it checks clean: every failure below is the damage's doing.
    ok(&env, PASSWORD, &["check", "--read-data"]);
    Built {
        env,
        src,
        snapshots,
    }
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Flip the lowest bit of the byte at this share (in 1/12ths) of the object's length,
    /// 12 meaning the last byte.
    Flip(usize),
    /// Keep this share (in 1/12ths) of the object's bytes.
    Truncate(usize),
    /// Exchange its bytes with another object of the kind (of the other repository if the
    /// kind has only one).
    Swap,
}

const DAMAGES: [Damage; 8] = [
    Damage::Flip(0),
    Damage::Flip(4),
    Damage::Flip(8),
    Damage::Flip(12),
    Damage::Truncate(0),
    Damage::Truncate(6),
    Damage::Truncate(11),
    Damage::Swap,
];

/// Apply damage `d` to the `i`-th trial's object of `kind` in `repo` (trials go round the
/// objects, so every object of a kind is hit); returns what was done, for messages.
fn damage(repo: &Path, other: &Path, kind: &str, i: usize, d: Damage) -> String {
    let objects = files_below(&repo.join(kind));
    let victim = &objects[i % objects.len()];
    let mut bytes = std::fs::read(victim).unwrap();
    let len = bytes.len();
    let name = victim.strip_prefix(repo).unwrap().display().to_string();
    match d {
        Damage::Flip(twelfths) => {
            let at = (len * twelfths / 12).min(len - 1);
            bytes[at] ^= 1;
            std::fs::write(victim, &bytes).unwrap();
            format!("flipped byte {at} of {len} in {name}")
        }
        Damage::Truncate(twelfths) => {
            let keep = len * twelfths / 12;
            bytes.truncate(keep);
            std::fs::write(victim, &bytes).unwrap();
            format!("cut {name} from {len} to {keep} bytes")
        }
        Damage::Swap => {
            let partner = match objects.iter().find(|p| *p != victim) {
                Some(p) => p.clone(),
                None => files_below(&other.join(kind))[0].clone(),
            };
            let theirs = std::fs::read(&partner).unwrap();
            std::fs::write(victim, &theirs).unwrap();
            if partner.starts_with(repo) {
                std::fs::write(&partner, &bytes).unwrap();
            }
            format!("swapped {name} with {}", partner.display())
        }
    }
}

/// Every damage to every kind of object is found by `check --read-data`, and never restored
/// as good data.
#[test]
fn damage_to_any_object_is_detected_and_never_restored() {
    let (built, other) = std::thread::scope(|s| {
        let other = s.spawn(build);
        (build(), other.join().expect("build the other repository"))
    });
    let mut trials = 0;
    for (kind, _) in KINDS {
        for (i, d) in DAMAGES.into_iter().enumerate() {
            let e = Env::new();
            copy_dir(&built.env.repo(), &e.repo());
            // Every other trial starts from the cache the commands above filled (a machine
            // that used the repository before), the rest from none (a new machine).
            if i % 2 == 1 {
                copy_dir(&built.env.cache(), &e.cache());
            }
            let what = damage(&e.repo(), &other.env.repo(), kind, i, d);
            let out = run(check_cmd(&e), &what);
            assert_eq!(
                out.status.code(),
                Some(1),
                "check --read-data after damage ({what}) did not fail: {}",
                text(&out)
            );
            for (id, files) in &built.snapshots {
                if let Some(got) = restore(&e, PASSWORD, id, &built.src) {
                    assert!(
                        got == *files,
                        "restore of {id} exited 0 with wrong bytes after damage ({what})"
                    );
                }
            }
            trials += 1;
        }
    }
    eprintln!("{trials} damaged copies: every one detected, nothing wrong restored");
}

fn check_cmd(e: &Env) -> Command {
    let mut c = e.cmd();
    c.args(["check", "--read-data"]);
    c
}

// ---------------------------------------------------------------------------------------
// SIGKILL

/// `check --read-data` passes, every snapshot of `must` is listed and restores byte for byte,
/// and so does every snapshot of `may` that is still listed (one a killed `forget` was
/// deleting).
fn verify(
    e: &Env,
    password: &str,
    src: &Path,
    must: &[(String, Files)],
    may: &[(String, Files)],
    after: &str,
) {
    let mut cmd = check_cmd(e);
    cmd.env("COFFER_PASSWORD", password);
    let out = run(cmd, &format!("check after {after}"));
    assert!(
        out.status.success(),
        "check --read-data after {after}: {}",
        text(&out)
    );
    let ids = listed(e, password);
    for (id, files) in must.iter().chain(may) {
        let required = must.iter().any(|(m, _)| m == id);
        assert!(
            !required || ids.contains(id),
            "snapshot {id} is gone after {after}"
        );
        if ids.contains(id) {
            let got = restore(e, password, id, src);
            assert!(
                got.as_ref() == Some(files),
                "snapshot {id} did not restore byte for byte after {after}"
            );
        }
    }
}

/// Run the command `make` builds with the hook at 0, 1, 2, ... until it finishes, calling
/// `after_kill` after every kill; returns the finished run's output and the number of kills.
/// The folders in `reset` (the repository, the cache, which also holds the state folder) are
/// put back as they were before every attempt, so attempt n is the same run as the others,
/// killed before its (n+1)-th change: a later attempt does not start from what an earlier
/// one left (tests/prune.rs covers going on from there).
fn kill_at_every_write(
    make: impl Fn() -> Command,
    reset: &[PathBuf],
    mut after_kill: impl FnMut(&str),
) -> (Output, u64) {
    let saved: Vec<(&PathBuf, tempfile::TempDir)> = reset
        .iter()
        .map(|dir| {
            let copy = tempfile::tempdir().expect("temp dir");
            if dir.exists() {
                copy_dir(dir, copy.path());
            }
            (dir, copy)
        })
        .collect();
    let args = format!("{:?}", make().get_args().collect::<Vec<_>>());
    for n in 0..MAX_KILLS {
        for (dir, copy) in &saved {
            let _ = std::fs::remove_dir_all(dir);
            copy_dir(copy.path(), dir);
        }
        let mut cmd = make();
        cmd.env("COFFER_TEST_CRASH_AFTER", n.to_string());
        let what = format!("coffer {args} killed before change {}", n + 1);
        let out = run(cmd, &what);
        if out.status.success() {
            return (out, n);
        }
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{what}: ended otherwise: {}",
            text(&out)
        );
        after_kill(&what);
    }
    panic!("coffer {args} was still writing after {MAX_KILLS} kills");
}

/// `coffer args` in `e`, with `env` set.
fn coffer<'a>(e: &'a Env, env: &'a [(&str, &str)], args: &'a [&str]) -> impl Fn() -> Command + 'a {
    move || {
        let mut cmd = e.cmd();
        cmd.envs(env.iter().copied()).args(args);
        cmd
    }
}

#[test]
fn sigkill_at_every_write_of_backup_forget_and_key_changes_loses_nothing() {
    let e = Env::new();
    e.init();
    let src = e.path("src");
    let mut kept = Vec::new();
    make_folder(&src, &version(1));
    kept.push((backup(&e, PASSWORD, &src), version(1)));
    let mut kills = Vec::new();
    let state = [e.repo(), e.cache()];

    for v in 2..=3 {
        make_folder(&src, &version(v));
        let src_arg = src.to_str().unwrap();
        let (out, n) = kill_at_every_write(
            coffer(&e, &[], &["--json", "backup", src_arg]),
            &state,
            |after| verify(&e, PASSWORD, &src, &kept, &[], after),
        );
        let v_json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        kept.push((v_json["snapshot"].as_str().unwrap().to_string(), version(v)));
        kills.push(("backup", n));
    }

    // forget (and prune) the oldest snapshot: it may be there or not after a kill.
    let forgotten = kept.remove(0);
    let (_, n) = kill_at_every_write(
        coffer(&e, &[], &["forget", "--keep-last", "2", "--prune"]),
        &state,
        |after| {
            verify(
                &e,
                PASSWORD,
                &src,
                &kept,
                std::slice::from_ref(&forgotten),
                after,
            )
        },
    );
    kills.push(("forget --prune", n));
    assert!(!listed(&e, PASSWORD).contains(&forgotten.0));

    let new = [("COFFER_NEW_PASSWORD", SECOND_PASSWORD)];
    let (_, n) = kill_at_every_write(coffer(&e, &new, &["key", "add"]), &state, |after| {
        verify(&e, PASSWORD, &src, &kept, &[], after)
    });
    kills.push(("key add", n));

    // The old password opens the repository after every kill: the new key is stored before
    // the old one is deleted.
    let newer = [("COFFER_NEW_PASSWORD", "a third password")];
    let (_, n) = kill_at_every_write(coffer(&e, &newer, &["key", "passwd"]), &state, |after| {
        verify(&e, PASSWORD, &src, &kept, &[], after)
    });
    kills.push(("key passwd", n));
    verify(&e, "a third password", &src, &kept, &[], "key passwd");
    verify(&e, SECOND_PASSWORD, &src, &kept, &[], "key passwd");
    assert!(kills.iter().all(|(_, n)| *n > 0), "{kills:?}");
    eprintln!("kills, each followed by check --read-data and restores: {kills:?}");
}

/// Region b misses two snapshots, and a key, that region a has; `sync` is killed before each
/// copy to b. After every kill each region on its own checks clean, and every snapshot b
/// lists restores from b alone byte for byte.
#[test]
fn sigkill_at_every_write_of_sync_leaves_each_region_whole() {
    let a = Env::new();
    let b = Env::new();
    let both = |cmd: &mut Command| {
        cmd.arg("--repo").arg(b.repo());
    };
    let mut cmd = a.cmd();
    both(&mut cmd);
    cmd.args(["init", "--kdf-memory-kib", "1024"]);
    let out = run(cmd, "init two regions");
    assert!(out.status.success(), "init: {}", text(&out));

    let src = a.path("src");
    make_folder(&src, &version(1));
    let mut cmd = a.cmd();
    both(&mut cmd);
    cmd.args(["--json", "backup"]).arg(&src);
    let out = run(cmd, "backup to both regions");
    assert!(out.status.success(), "backup: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut snapshots = vec![(v["snapshot"].as_str().unwrap().to_string(), version(1))];
    // Only region a from here on.
    for v in 2..=3 {
        make_folder(&src, &version(v));
        snapshots.push((backup(&a, PASSWORD, &src), version(v)));
    }
    let mut cmd = a.cmd();
    cmd.env("COFFER_NEW_PASSWORD", SECOND_PASSWORD)
        .args(["key", "add"]);
    let out = run(cmd, "key add in region a");
    assert!(out.status.success(), "key add: {}", text(&out));
    assert_eq!(listed(&b, PASSWORD), vec![snapshots[0].0.clone()]);

    // Sync writes only to b; a is checked too, but its restores would repeat the same reads.
    let check_regions = |after: &str| {
        verify(&a, PASSWORD, &src, &[], &[], after);
        verify(&b, PASSWORD, &src, &snapshots[..1], &snapshots[1..], after);
    };
    let count = |e: &Env| -> usize {
        KINDS
            .iter()
            .map(|(kind, _)| files_below(&e.repo().join(kind)).len())
            .sum()
    };
    let missing = count(&a) - count(&b);
    let (_, kills) = kill_at_every_write(
        || {
            let mut cmd = a.cmd();
            both(&mut cmd);
            cmd.arg("sync");
            cmd
        },
        &[b.repo(), a.cache(), b.cache()],
        check_regions,
    );
    // One kill before each object copied to b.
    assert!(
        kills as usize >= missing,
        "{kills} kills, {missing} objects to copy"
    );
    // Synced: the two regions together check clean, and b alone holds everything.
    let mut cmd = a.cmd();
    both(&mut cmd);
    cmd.args(["check", "--read-data"]);
    let out = run(cmd, "check both regions after sync");
    assert!(out.status.success(), "check after sync: {}", text(&out));
    verify(&b, PASSWORD, &src, &snapshots, &[], "the finished sync");
    eprintln!(
        "sync killed {kills} times ({missing} objects to copy), each region checked after each"
    );
}
