//! A repository on a full disk (reliability review, item 1), on a real 20 MiB tmpfs:
//! - a backup that runs out of space says so, names `coffer prune`, and leaves no partial
//!   file in `tmp/`;
//! - the next backup, once the big file is gone, succeeds, and so do a restore and `check`;
//! - `prune` removes what failed writes left: packs that no index lists, and temporary files
//!   of writes that were killed, but never a temporary file while another operation runs.
//!
//! Mounting needs root: the test fails, saying so, without it.

mod common;

use common::stdin_backup::StdinBackup;
use common::{assert_ok, pseudo_random, read_folder, Env};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// A tmpfs of `size` mounted at `at` (created), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a tmpfs and must run as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json(out: &Output, what: &str) -> Value {
    assert_ok(out, &[what]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: invalid JSON ({e}): {}", text(&out.stdout)))
}

/// Files below the repository's `tmp/`.
fn scratch(repo: &Path) -> Vec<String> {
    read_folder(&repo.join("tmp")).into_keys().collect()
}

/// The repository of the review's repro: a 20 MiB tmpfs with one small backup, and a
/// backup of a 40 MB random file that ran out of space.
struct FullDisk {
    env: Env,
    _disk: Tmpfs,
    src: PathBuf,
}

impl FullDisk {
    fn new() -> FullDisk {
        let env = Env::new();
        // The cache lives outside the tmpfs: only the repository fills it.
        let disk = Tmpfs::mount(&env.repo(), "20m");
        env.init();
        let src = env.path("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("a.txt"), b"hello\n".repeat(1000)).unwrap();
        std::fs::write(src.join("sub/b.bin"), pseudo_random(7, 300_000)).unwrap();
        env.backup(&[&src]);
        std::fs::write(src.join("big"), pseudo_random(11, 40_000_000)).unwrap();
        let out = env.run(&["backup", src.to_str().unwrap()]);
        let err = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "a backup larger than the disk: {err}"
        );
        assert!(
            scratch(&env.repo()).is_empty(),
            "the failed write left {:?} in tmp/",
            scratch(&env.repo())
        );
        assert!(
            err.contains("is out of space") && err.contains("coffer prune"),
            "the error says what happened and what to do: {err}"
        );
        assert_eq!(common::error_lines(&err), 1, "one line: {err}");
        std::fs::remove_file(src.join("big")).unwrap();
        FullDisk {
            env,
            _disk: disk,
            src,
        }
    }

    /// A backup of the source, a restore of it compared file by file, and a `check`.
    fn backup_restore_check(&self, round: &str) {
        let id = self.env.backup(&[&self.src]);
        let target = self.env.path(&format!("restored-{round}"));
        self.env
            .ok(&["restore", &id, "--target", target.to_str().unwrap()]);
        let rel = self.src.strip_prefix("/").unwrap();
        assert_eq!(read_folder(&target.join(rel)), read_folder(&self.src));
        self.env.ok(&["check", "--read-data"]);
    }
}

#[test]
fn a_full_disk_does_not_leave_the_repository_stuck() {
    let d = FullDisk::new();
    // The repro's next step: the big file is gone, and the backup fits again.
    let out = d.env.run(&["backup", d.src.to_str().unwrap()]);
    assert_ok(&out, &["backup after the failed one"]);
    // The pack the failed backup had written is in use by no snapshot: prune deletes it.
    let v = json(
        &d.env.cmd().args(["--json", "prune"]).output().unwrap(),
        "prune",
    );
    let r = &v["report"];
    assert!(r["packs_deleted"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["bytes_freed"].as_u64().unwrap() >= 10 << 20, "{r}");
    d.backup_restore_check("after");
}

#[test]
fn prune_removes_what_failed_writes_left() {
    let d = FullDisk::new();
    let repo = d.env.repo();
    // A write that was killed leaves its temporary file (a failed one removes it itself).
    std::fs::write(
        repo.join("tmp").join("f".repeat(64) + ".killed"),
        vec![0u8; 1 << 20],
    )
    .unwrap();
    let dry = json(
        &d.env
            .cmd()
            .args(["--json", "prune", "--dry-run"])
            .output()
            .unwrap(),
        "prune --dry-run",
    );
    let r = &dry["report"];
    assert!(r["packs_unindexed"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["scratch_files"], 1, "{r}");
    assert_eq!(
        scratch(&repo).len(),
        1,
        "a dry run removed a temporary file"
    );

    // While a backup runs, no temporary file is removed: it might be that backup's.
    let mut running = StdinBackup::start(&d.env, "s.bin", "busy", Duration::from_secs(120));
    running.write(&pseudo_random(3, 200_000));
    let busy = json(
        &d.env.cmd().args(["--json", "prune"]).output().unwrap(),
        "prune during a backup",
    );
    assert_eq!(busy["report"]["scratch_files"], 0, "{busy}");
    assert_eq!(scratch(&repo).len(), 1, "{busy}");
    let done = running.finish(&[]);
    assert_ok(&done, &["backup --stdin"]);

    // Alone, prune deletes the unindexed pack and the temporary file (and the plan the
    // busy run left, which waited for the backup).
    let text_out = d.env.ok(&["prune"]);
    assert!(!text_out.contains("nothing to delete"), "{text_out}");
    assert!(scratch(&repo).is_empty(), "{text_out}");
    let dry = json(
        &d.env
            .cmd()
            .args(["--json", "prune", "--dry-run"])
            .output()
            .unwrap(),
        "prune --dry-run",
    );
    assert_eq!(dry["report"]["packs_unindexed"], 0, "{dry}");
    assert_eq!(dry["report"]["packs_unused"], 0, "{dry}");
    d.backup_restore_check("after");
}
