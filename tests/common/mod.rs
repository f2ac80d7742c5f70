//! Shared helpers for the integration tests: run the real `coffer` binary against a
//! throwaway repository folder, with its own cache folder and password.
#![allow(dead_code)]

pub mod archiving;
pub mod http;
pub mod postgres;
pub mod s3;
pub mod servers;
pub mod stdin_backup;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const PASSWORD: &str = "correct horse battery staple";

/// A repository folder, a cache folder and a scratch area, all deleted on drop.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }
    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    /// The state folder (job attempts, run lock): its own per test, given through
    /// COFFER_STATE_DIR, since a test run as root would otherwise share /var/lib/coffer.
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    /// A path inside the scratch area.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    /// `coffer` with `--repo`, `--cache-dir` and the password set; add arguments to it.
    pub fn cmd(&self) -> Command {
        self.cmd_with_cache(&self.cache())
    }
    /// Run `coffer ARGS`, returning the output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run coffer")
    }
    /// Run and require exit 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_ok(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Run with `--json` and parse stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("coffer {args:?} printed invalid JSON ({e}): {out}"))
    }
    /// `coffer init` with a cheap key derivation (tests only).
    pub fn init(&self) {
        self.ok(&["init", "--kdf-memory-kib", "1024"]);
    }
    /// Back up `paths` and return the new snapshot's ID.
    pub fn backup(&self, paths: &[&Path]) -> String {
        let mut args: Vec<String> = vec!["--json".into(), "backup".into()];
        args.extend(paths.iter().map(|p| p.to_string_lossy().into_owned()));
        let out = self.cmd().args(&args).output().expect("run coffer");
        assert_ok(&out, &["backup"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup JSON");
        v["snapshot"].as_str().expect("snapshot id").to_string()
    }
}

/// How many lines of `stderr` are not the "repository X (from Y)" line that names the
/// repository before any work starts: an error should be one line of its own.
pub fn error_lines(stderr: &str) -> usize {
    stderr
        .trim()
        .lines()
        .filter(|l| !(l.starts_with("repository ") && l.contains(" (from ")))
        .count()
}

/// A copy of the folder `from` (a repository, say) at `to`, files and subfolders.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Require exit `code`; on failure show both outputs, with `what` ran.
pub fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn assert_ok(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "coffer {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text of a plain-SQL dump (a `COPY` block) of `rows` rows, as it stands on `night`:
/// every 2,500th row's amount changes from night to night, the rest stays, as in a
/// database where a few scattered rows are updated each day.
pub fn sql_dump(rows: u64, night: u64) -> Vec<u8> {
    let mut out = b"--\n-- PostgreSQL database dump\n--\n\nCOPY public.orders (id, customer, amount) FROM stdin;\n".to_vec();
    for i in 0..rows {
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66;
        x ^= x >> 29;
        let amount = if i % 2_500 == 0 {
            x % 10_000 + night
        } else {
            x % 10_000
        };
        out.extend_from_slice(format!("{i}\tcustomer-{:012x}\t{amount}.00\n", x >> 16).as_bytes());
    }
    out.extend_from_slice(b"\\.\n");
    out
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no extra crates.
pub fn pseudo_random(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every object file under a repository folder, with its bytes: to prove a command wrote nothing.
pub fn repo_listing(repo: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap_or_default()));
            }
        }
    }
    walk(repo, &mut out);
    out.sort();
    out
}

/// Pack files of a repository folder.
pub fn packs(repo: &Path) -> Vec<PathBuf> {
    repo_listing(&repo.join("data"))
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

impl Env {
    /// Like [`Env::cmd`] but with another cache folder (e.g. a fresh, empty one, to prove a
    /// command needs nothing from the cache the backup filled).
    pub fn cmd_with_cache(&self, cache: &Path) -> Command {
        let mut c = self.cmd_for_repo(&self.repo());
        c.arg("--cache-dir").arg(cache);
        c
    }

    /// Like [`Env::cmd`] but for the repository at `repo` (a path of its own, say).
    pub fn cmd_for_repo(&self, repo: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("COFFER_STATE_DIR", self.state())
            .env("COFFER_PASSWORD", PASSWORD)
            // The debug binary keeps the 1 MiB keys the tests make (`init --kdf-memory-kib`);
            // without this, new keys get OWASP's minimum, 0.1 s more per command.
            .env("COFFER_TEST_TINY_KDF", "1")
            .env("TZ", "UTC")
            .arg("--repo")
            .arg(repo)
            .stdin(Stdio::null());
        c
    }
}

impl Env {
    /// Like [`Env::new`] but inside `base` (e.g. a tmpfs, for trees of tens of thousands of
    /// files that a slow disk would take minutes to delete).
    pub fn new_in(base: &Path) -> Env {
        Env {
            dir: tempfile::tempdir_in(base).expect("temp dir"),
        }
    }
}

/// The steps of a `coffer run --json` report, as (step, ok) pairs in order.
pub fn run_steps(report: &serde_json::Value) -> Vec<(String, bool)> {
    report["steps"]
        .as_array()
        .expect("a run report with steps")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().expect("step name").to_string(),
                s["ok"].as_bool().expect("step ok"),
            )
        })
        .collect()
}

/// Every regular file below a folder, by path relative to it, with its bytes.
pub type Files = std::collections::BTreeMap<String, Vec<u8>>;

/// [`Files`] of `dir` (empty if `dir` does not exist); anything but files and folders fails.
pub fn read_folder(dir: &Path) -> Files {
    fn walk(root: &Path, dir: &Path, out: &mut Files) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                walk(root, &p, out);
            } else {
                assert!(meta.is_file(), "unexpected {}", p.display());
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = Files::new();
    walk(dir, dir, &mut out);
    out
}

/// Wait for a child whose stdout and stderr are piped (read as it runs, so a full pipe
/// cannot stall it); a child still running after `limit` is killed and fails the test,
/// naming `what` and what it printed on stderr.
pub fn wait_with_limit(
    mut child: std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> Output {
    use std::io::Read;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
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
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break s;
        }
        if t0.elapsed() > limit {
            let pid = child.id();
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} (pid {pid}) did not finish within {limit:?}; stderr: {}",
                String::from_utf8_lossy(&err.join().unwrap_or_default())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Make `dir` hold exactly `files`, rewriting only what differs (as a user's folder changes).
pub fn make_folder(dir: &Path, files: &Files) {
    let now = read_folder(dir);
    for p in now.keys() {
        if !files.contains_key(p) {
            std::fs::remove_file(dir.join(p)).unwrap();
        }
    }
    for (p, bytes) in files {
        if now.get(p) != Some(bytes) {
            let to = dir.join(p);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::write(&to, bytes).unwrap();
        }
    }
}
