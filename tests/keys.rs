//! Opening a repository whose storage is hostile or damaged: giant objects cost nothing
//! (security review M6). Every case runs the real binary against a folder repository.

mod common;

use common::{pseudo_random, Env};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

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

/// Run to completion (at most `limit`), with no panic allowed.
fn run_cmd(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coffer");
    let out = common::wait_with_limit(child, limit, "coffer");
    assert!(
        !text(&out.stderr).contains("panicked") && out.status.code() != Some(101),
        "coffer panicked:\n{}",
        show(&out)
    );
    out
}

fn run(cmd: &mut Command) -> Output {
    run_cmd(cmd, Duration::from_secs(300))
}

#[track_caller]
fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\n{}",
        show(out)
    );
}

/// Run and return the output with the child's peak resident memory in KiB: `wait4`
/// reports it for that one child, whatever else the test process runs at the time.
// `wait4` reaps the child, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_measuring_memory(cmd: &mut Command) -> (Output, u64) {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn coffer");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child's pid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: plain syscall on our child's pid with valid out-pointers.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid, "wait4");
    let out = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    };
    (out, usage.ru_maxrss as u64)
}

fn objects(repo: &Path, dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo.join(dir))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A repository with one small backup.
fn repository() -> Env {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), pseudo_random(1, 10_000)).unwrap();
    env.backup(&[&src]);
    env
}

/// A sparse file of `size` bytes at `path`: takes no disk space, reads as zeros.
fn sparse(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
}

#[test]
fn giant_planted_objects_are_refused_before_they_are_read() {
    const GIANT: u64 = 1 << 30;
    const MAX_RSS_KIB: u64 = 200 * 1024;
    let env = repository();
    let repo = env.repo();
    let fake = |b: u8| hex::encode([b; 32]);

    // A 1 GiB "snapshot", and a 1 GiB "key file" that sorts first.
    sparse(&repo.join("snapshots").join(fake(0xab)), GIANT);
    sparse(&repo.join("keys").join(fake(0x00)), GIANT);
    for cache in [Some(env.cache()), None] {
        let mut cmd = match &cache {
            Some(c) => env.cmd_with_cache(c),
            None => env.cmd(),
        };
        if cache.is_none() {
            cmd.arg("--no-cache");
        }
        let (out, rss) = run_measuring_memory(cmd.arg("snapshots"));
        // The good snapshot is listed; the giant is named with its size, and exit is 1.
        expect_code(&out, 1, "snapshots with a giant snapshot object");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("snapshots/{}", fake(0xab))) && err.contains("1073741824"),
            "{}",
            show(&out)
        );
        assert!(
            text(&out.stdout).contains("1 snapshot(s)"),
            "{}",
            show(&out)
        );
        assert!(
            rss < MAX_RSS_KIB,
            "peak memory {rss} KiB reading a giant object"
        );
    }

    // A giant config: named with its size, refused unread.
    let config = objects(&repo, "config")[0].clone();
    let good = std::fs::read(&config).unwrap();
    std::fs::remove_file(&config).unwrap();
    let giant_config = repo.join("config").join(fake(0xcc));
    sparse(&giant_config, GIANT);
    let (out, rss) = run_measuring_memory(env.cmd().arg("snapshots"));
    expect_code(&out, 1, "snapshots with a giant config");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("config/{}", fake(0xcc))) && err.contains("1073741824"),
        "{}",
        show(&out)
    );
    assert!(
        rss < MAX_RSS_KIB,
        "peak memory {rss} KiB reading a giant config"
    );
    std::fs::remove_file(&giant_config).unwrap();
    std::fs::write(&config, good).unwrap();
    expect_code(
        &run(env.cmd().arg("snapshots")),
        1,
        "still the giant snapshot",
    );
}
