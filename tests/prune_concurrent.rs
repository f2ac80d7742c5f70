//! Garbage collection alongside backups (format-spec §12), for real: three "machines" back
//! up their own changing folders in a loop, a fourth streams slow `backup --stdin` runs that
//! each outlive several prunes, while two others run `forget --keep-last 2 --keep-tag audit
//! --prune` and `prune` in a loop, all at once against one repository folder, each process
//! with a cache folder of its own. Some backups (kept for good) bring back content that the
//! forget running meanwhile has just made unreachable, so deletion plans name packs that
//! running backups deduplicate against. Every backup must succeed; a prune may only fail because the other
//! prune is running. At the end every snapshot still listed restores exactly the
//! folder it was taken of, `check --read-data` passes, and the prunes did delete data
//! meanwhile (so the test is not vacuous).

mod common;

use common::{make_folder, pseudo_random, read_folder, Env, Files};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const K: usize = 1024;
const WORKERS: usize = 3;
const ITERATIONS: usize = 20;
/// No single coffer command here takes more than a few seconds; one that takes this long
/// hangs (e.g. waiting out the 5-minute lock refresh interval at exit).
/// Slow stdin backups of the streamer.
const STREAMS: usize = 3;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn seed(kind: u64, i: u64) -> u64 {
    ((kind << 32) | i) << 1
}

/// What worker `w`'s folder holds at iteration `it`: a file every worker has (so packs are
/// shared across machines), a file of its own, files that come and go, a file rewritten
/// every time, now and then a large file that lives for one iteration, and content that
/// comes back.
fn source(w: usize, it: usize) -> Files {
    let mut f = Files::new();
    f.insert("common.bin".into(), pseudo_random(seed(1, 0), 400 * K));
    f.insert("own.bin".into(), pseudo_random(seed(2, w as u64), 200 * K));
    for j in it.saturating_sub(1)..=it {
        let id = (w * 100 + j) as u64;
        f.insert(format!("gen/g{j}.bin"), pseudo_random(seed(3, id), 300 * K));
    }
    let id = (w * 100 + it) as u64;
    f.insert("log.bin".into(), pseudo_random(seed(4, id), 60 * K));
    if it % 3 == 0 {
        f.insert(
            format!("bulk-{it}.bin"),
            pseudo_random(seed(5, id), 900 * K),
        );
    }
    // Content that comes back: an audit snapshot holds again what only snapshot `it - 3`
    // held, which the forget of snapshot `it - 3` (once `it - 1` is stored) makes
    // unreachable just while this backup runs. So plans are made to delete data that a
    // running backup deduplicates against and keeps forever: only the wait and the rescue
    // keep that snapshot whole.
    let back = if audit(it) { it - 3 } else { it };
    if audit(it) {
        // New data too, so the backup is still running when that plan is made.
        f.insert(
            "audit.bin".into(),
            pseudo_random(seed(8, (w * 100 + it) as u64), 4 << 20),
        );
    }
    f.insert(
        "cycle.bin".into(),
        pseudo_random(seed(7, (w * 100 + back) as u64), 600 * K),
    );
    f
}

/// Audit snapshots are kept for good (`--keep-tag audit`); the others, two per worker.
fn audit(it: usize) -> bool {
    it % 4 == 3
}

/// The bytes of stream `k`: its first half is the second half of stream `k - 1`.
fn stream(k: usize) -> Vec<u8> {
    let half = |i: usize| pseudo_random(seed(6, i as u64), 1536 * K);
    let mut v = half(k);
    v.extend(half(k + 1));
    v
}

/// Run `cmd` to the end, capturing its output; a command that hangs fails the test.
fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coffer");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "coffer {:?} hung for {COMMAND_TIMEOUT:?}; its output so far: {}",
                cmd.get_args().collect::<Vec<_>>(),
                text(&err.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// One snapshot a worker took: its ID, the folder, and what the folder held.
struct Taken {
    id: String,
    worker: usize,
    audit: bool,
    src: PathBuf,
    files: Files,
}

/// One stream the streamer backed up: its snapshot ID and bytes.
type Streamed = (String, Vec<u8>);

/// What the prune loops saw.
#[derive(Default, Debug)]
struct PruneStats {
    runs: u64,
    refused_busy: u64,
    plans_completed: u64,
    plans_pending_seen: u64,
    packs_rescued: u64,
    packs_deleted: u64,
    bytes_freed: u64,
    snapshots_forgotten: u64,
    /// Runs that failed for another reason than the other prune running.
    failures: Vec<String>,
}

impl PruneStats {
    fn add(&mut self, r: &Value) {
        self.plans_completed += num(&r["plans_completed"]);
        self.plans_pending_seen += r["plans_pending"].as_array().unwrap().len() as u64;
        self.packs_rescued += num(&r["packs_rescued"]);
        self.packs_deleted += num(&r["packs_deleted"]);
        self.bytes_freed += num(&r["bytes_freed"]);
    }
}

/// Account for one prune or `forget --prune` run: success, or a refusal because the other
/// prune holds the prune lock; anything else is recorded as a failure (which fails the
/// test at the end, after the repository has been checked).
fn account(stats: &Mutex<PruneStats>, what: &str, out: &Output) {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} printed invalid JSON ({e}): {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    let mut s = stats.lock().unwrap();
    s.runs += 1;
    let (report, error) = if what == "forget" {
        s.snapshots_forgotten += num(&v["deleted"]);
        if v["failed"] != serde_json::json!([]) {
            s.failures
                .push(format!("forget could not delete: {}", v["failed"]));
        }
        (&v["prune"], v["prune"]["error"].as_str())
    } else {
        (&v["report"], v["error"].as_str())
    };
    match (out.status.code(), error) {
        (Some(0), None) => s.add(report),
        (Some(1), Some(e)) if e.contains("another prune is running") => s.refused_busy += 1,
        (code, e) => {
            let e = e.map(str::to_string).unwrap_or_else(|| text(&out.stderr));
            s.failures.push(format!("{what} exited with {code:?}: {e}"));
        }
    }
}

#[test]
fn backups_and_prunes_running_together_lose_nothing() {
    let t0 = Instant::now();
    let env = Arc::new(Env::new());
    env.init();
    let taken: Arc<Mutex<Vec<Taken>>> = Arc::default();
    let stats: Arc<Mutex<PruneStats>> = Arc::default();
    let backups_done = Arc::new(AtomicBool::new(false));
    let backup_failures: Arc<Mutex<Vec<String>>> = Arc::default();

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (env, taken) = (env.clone(), taken.clone());
            let backup_failures = backup_failures.clone();
            std::thread::spawn(move || {
                let src = env.path(&format!("src-{w}"));
                let cache = env.path(&format!("cache-worker-{w}"));
                for it in 0..ITERATIONS {
                    let files = source(w, it);
                    make_folder(&src, &files);
                    let mut cmd = env.cmd_with_cache(&cache);
                    cmd.args(["--json", "backup", "--host", &format!("worker{w}")])
                        .arg(&src);
                    if audit(it) {
                        cmd.args(["--tag", "audit"]);
                    }
                    let out = run(cmd);
                    if !out.status.success() {
                        backup_failures.lock().unwrap().push(format!(
                            "worker {w} iteration {it}: backup exited with {:?}: {}",
                            out.status.code(),
                            text(&out.stderr).trim()
                        ));
                        continue;
                    }
                    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                    taken.lock().unwrap().push(Taken {
                        id: v["snapshot"].as_str().unwrap().to_string(),
                        worker: w,
                        audit: audit(it),
                        src: src.canonicalize().unwrap(),
                        files,
                    });
                }
            })
        })
        .collect();

    // One machine forgets and prunes, another only prunes, both in a loop, until the
    // backups are done.
    let pruners: Vec<_> = [("forget", 0u64), ("prune", 1)]
        .into_iter()
        .map(|(what, n)| {
            let (env, stats, done) = (env.clone(), stats.clone(), backups_done.clone());
            std::thread::spawn(move || {
                let cache = env.path(&format!("cache-pruner-{n}"));
                let args: &[&str] = if what == "forget" {
                    &[
                        "--json",
                        "forget",
                        "--keep-last",
                        "2",
                        "--keep-tag",
                        "audit",
                        "--prune",
                    ]
                } else {
                    &["--json", "prune"]
                };
                while !done.load(Ordering::SeqCst) {
                    let mut cmd = env.cmd_with_cache(&cache);
                    cmd.args(args);
                    let out = run(cmd);
                    account(&stats, what, &out);
                    std::thread::sleep(Duration::from_millis(30 + 40 * n));
                }
            })
        })
        .collect();

    // The streamer: each stream is fed slowly, so its backup holds its lock across several
    // prune runs; consecutive streams share most of their data.
    let streamed: Arc<Mutex<Vec<Streamed>>> = Arc::default();
    let streamer = {
        let (env, streamed) = (env.clone(), streamed.clone());
        let backup_failures = backup_failures.clone();
        std::thread::spawn(move || {
            let cache = env.path("cache-streamer");
            for k in 0..STREAMS {
                let data = stream(k);
                let mut child = env
                    .cmd_with_cache(&cache)
                    .args(["--json", "backup", "--stdin", "--stdin-name", "stream.bin"])
                    .args(["--host", "streamer"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                let mut stdin = child.stdin.take().unwrap();
                for piece in data.chunks(64 * K) {
                    stdin.write_all(piece).unwrap();
                    std::thread::sleep(Duration::from_millis(25));
                }
                drop(stdin);
                let out = child.wait_with_output().unwrap();
                if !out.status.success() {
                    backup_failures.lock().unwrap().push(format!(
                        "stream {k}: backup exited with {:?}: {}",
                        out.status.code(),
                        text(&out.stderr).trim()
                    ));
                    continue;
                }
                let v: Value = serde_json::from_slice(&out.stdout).unwrap();
                let id = v["snapshot"].as_str().unwrap().to_string();
                streamed.lock().unwrap().push((id, data));
            }
        })
    };

    let mut failure = None;
    if let Err(e) = streamer.join() {
        failure.get_or_insert(e);
    }
    for w in workers {
        if let Err(e) = w.join() {
            failure.get_or_insert(e);
        }
    }
    backups_done.store(true, Ordering::SeqCst);
    for p in pruners {
        if let Err(e) = p.join() {
            failure.get_or_insert(e);
        }
    }
    if let Some(e) = failure {
        std::panic::resume_unwind(e);
    }
    let during = std::mem::take(&mut *stats.lock().unwrap());
    eprintln!("while backups ran: {during:?}");

    // Nothing runs any more: the last forget and prune leave no plan behind.
    let mut cmd = env.cmd();
    cmd.args([
        "--json",
        "forget",
        "--keep-last",
        "2",
        "--keep-tag",
        "audit",
        "--prune",
    ]);
    account(&stats, "forget", &run(cmd));
    let mut cmd = env.cmd();
    cmd.args(["--json", "prune"]);
    let out = run(cmd);
    account(&stats, "prune", &out);
    let after = std::mem::take(&mut *stats.lock().unwrap());
    eprintln!("afterwards: {after:?}");
    assert!(
        after.failures.is_empty(),
        "with nothing else running: {after:?}"
    );
    let v = env.json(&["prune", "--dry-run"]);
    assert_eq!(v["report"]["plans_pending"], serde_json::json!([]), "{v}");
    assert_eq!(num(&v["report"]["packs_unused"]), 0, "{v}");
    for kind in ["locks", "plans", "waits"] {
        let left = common::repo_listing(&env.repo().join(kind));
        assert!(left.is_empty(), "{kind}/ is not empty at the end");
    }

    // Nothing was lost: the data checks out, exactly the audit snapshots and the last two
    // of each worker (and the last two streams) are left, and each restores the folder as
    // it was when it was taken (read with an empty cache).
    let out = env.run(&["check", "--read-data"]);
    assert!(
        out.status.success(),
        "check --read-data failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let listed: Vec<String> = env
        .json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    let taken = std::mem::take(&mut *taken.lock().unwrap());
    let mut expected_total = 2;
    for w in 0..WORKERS {
        let mine: Vec<&Taken> = taken.iter().filter(|t| t.worker == w).collect();
        assert!(mine.len() >= 2, "worker {w} took {} snapshots", mine.len());
        let last_two = mine.len() - 2;
        let expected: Vec<&String> = mine
            .iter()
            .enumerate()
            .filter(|(i, t)| t.audit || *i >= last_two)
            .map(|(_, t)| &t.id)
            .collect();
        let kept: Vec<&String> = mine
            .iter()
            .map(|t| &t.id)
            .filter(|id| listed.contains(id))
            .collect();
        assert_eq!(kept, expected, "worker {w}'s snapshots left");
        expected_total += expected.len();
    }
    let streamed = std::mem::take(&mut *streamed.lock().unwrap());
    assert!(
        streamed.len() >= 2,
        "only {} streams were stored",
        streamed.len()
    );
    for (id, _) in &streamed[..streamed.len() - 2] {
        assert!(
            !listed.contains(id),
            "stream snapshot {id} was not forgotten"
        );
    }
    for (id, data) in &streamed[streamed.len() - 2..] {
        let out = env.run(&["dump", id, "stream.bin"]);
        assert!(out.status.success(), "dump {id}: {}", text(&out.stderr));
        assert!(
            out.stdout == *data,
            "stream snapshot {id} does not give back its stream"
        );
    }
    assert_eq!(listed.len(), expected_total, "{listed:?}");
    for t in taken.iter().filter(|t| listed.contains(&t.id)) {
        let target = env.path(&format!("restored-{}", t.id));
        let mut cmd = env.cmd_with_cache(&env.path("cache-restore"));
        cmd.args(["restore", &t.id, "--target"]).arg(&target);
        let out = run(cmd);
        assert!(
            out.status.success(),
            "restore {}: {}",
            t.id,
            text(&out.stderr)
        );
        let restored = read_folder(&target.join(t.src.strip_prefix("/").unwrap()));
        assert!(
            restored == t.files,
            "snapshot {} of worker {} does not restore its folder",
            t.id,
            t.worker
        );
    }

    // The prunes did their job while backups ran (so the test is not vacuous)...
    assert!(
        during.bytes_freed > 0,
        "no prune deleted anything: {during:?}"
    );
    assert!(during.plans_completed > 0, "{during:?}");
    assert!(during.snapshots_forgotten > 0, "{during:?}");
    // ...and nothing failed but for the other prune running.
    let backup_failures = std::mem::take(&mut *backup_failures.lock().unwrap());
    assert!(
        backup_failures.is_empty() && during.failures.is_empty(),
        "commands failed while backups and prunes ran together:\n{}",
        backup_failures
            .iter()
            .chain(&during.failures)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "backups_and_prunes_running_together_lose_nothing: {:.1?}",
        t0.elapsed()
    );
}
