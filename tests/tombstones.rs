//! Deletions that `sync` cannot undo (format-spec §5.12, §11), through the real binary on
//! two regions that are local folders:
//! - `key passwd` or `key remove` in one region, then `sync`: the old password opens
//!   neither region;
//! - `forget` while one region refuses deletions (a read-only tmpfs), or on a machine that
//!   knows only the other region, then `sync`: the snapshots go from that region too, and
//!   are not copied back to the other;
//! - a tombstone planted on the storage side deletes nothing and is reported as damaged.

mod common;

use common::{wait_with_limit, PASSWORD};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

/// Two regions `a` and `b` in folders of a scratch directory, and one cache per "machine".
struct Two {
    dir: tempfile::TempDir,
}

impl Two {
    fn new() -> Two {
        let two = Two {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        std::fs::create_dir_all(two.region("a")).unwrap();
        std::fs::create_dir_all(two.region("b")).unwrap();
        two
    }

    fn region(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `coffer` on the given regions (`NAME=PATH` each, or the bare path for one), with
    /// `password` as COFFER_PASSWORD (none at all for `None`) and the cache of `machine`.
    fn cmd(&self, regions: &[&str], password: Option<&str>, machine: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = password {
            c.env("COFFER_PASSWORD", p);
        }
        match regions {
            [r] => {
                c.arg("--repo").arg(self.region(r));
            }
            _ => {
                for r in regions {
                    c.arg("--repo")
                        .arg(format!("{r}={}", self.region(r).display()));
                }
            }
        }
        c.arg("--cache-dir")
            .arg(self.path(&format!("cache-{machine}")));
        c
    }

    fn run(&self, regions: &[&str], password: Option<&str>, args: &[&str]) -> Output {
        self.run_on("main", regions, password, args)
    }

    fn run_on(
        &self,
        machine: &str,
        regions: &[&str],
        password: Option<&str>,
        args: &[&str],
    ) -> Output {
        let child = self
            .cmd(regions, password, machine)
            .args(args)
            .spawn()
            .expect("run coffer");
        wait_with_limit(child, TIMEOUT, &format!("coffer {args:?}"))
    }

    /// Run and require `code`; returns stdout.
    fn expect(&self, code: i32, regions: &[&str], password: Option<&str>, args: &[&str]) -> String {
        let out = self.run(regions, password, args);
        assert_code(&out, code, args);
        text(&out.stdout)
    }

    fn sync_json(&self, password: Option<&str>, code: i32) -> serde_json::Value {
        let out = self.expect(code, &["a", "b"], password, &["--json", "sync"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("sync JSON ({e}): {out}"))
    }

    /// The object files of one region's folder for a kind (`snapshots`, `keys`, ...).
    fn files(&self, region: &str, dir: &str) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.region(region).join(dir))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Three snapshots of a small folder at fixed times, in both regions.
    fn three_snapshots(&self) {
        let data = self.path("data");
        std::fs::create_dir_all(&data).unwrap();
        for (i, t) in ["2026-01-01T00:00", "2026-01-02T00:00", "2026-01-03T00:00"]
            .iter()
            .enumerate()
        {
            std::fs::write(data.join("f"), format!("night {i}")).unwrap();
            let args = ["backup", data.to_str().unwrap(), "--host", "h", "--time", t];
            self.expect(0, &["a", "b"], Some(PASSWORD), &args);
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_code(out: &Output, code: i32, args: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "coffer {args:?}: expected exit {code}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn region<'a>(sync: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    sync["report"]["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .find(|r| r["region"] == name)
        .unwrap_or_else(|| panic!("no region {name} in {sync}"))
}

/// The reliability review's reproduction: `key passwd` on region A alone, then `sync` of
/// both regions. Before tombstones the sync copied the old key file back to A.
#[test]
fn a_changed_password_stays_changed_after_sync() {
    let two = Two::new();
    two.expect(
        0,
        &["a", "b"],
        Some(PASSWORD),
        &["init", "--kdf-memory-kib", "1024"],
    );
    let mut passwd = two.cmd(&["a"], Some(PASSWORD), "main");
    passwd
        .env("COFFER_NEW_PASSWORD", "new")
        .args(["key", "passwd"]);
    let out = wait_with_limit(passwd.spawn().unwrap(), TIMEOUT, "key passwd");
    assert_code(&out, 0, &["key", "passwd"]);
    assert_eq!(two.files("a", "keys").len(), 1);
    let old_key = two.files("b", "keys");
    assert_eq!(old_key.len(), 1);

    // Without the password, sync carries the tombstone to B and does not copy the old key
    // back to A, but cannot delete it from B on an unauthenticated tombstone.
    let keyless = two.sync_json(None, 0);
    let out = two.run(&["a"], Some(PASSWORD), &["key", "list"]);
    assert_code(&out, 1, &["key", "list", "(old password, region a)"]);
    assert!(
        text(&out.stderr).contains("wrong password"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        two.files("a", "tombstones").len(),
        1,
        "passwd stores a tombstone"
    );
    assert_eq!(keyless["report"]["keyed"], false);
    assert_eq!(region(&keyless, "b")["buried"], 1, "{keyless}");
    assert_eq!(region(&keyless, "b")["buried_deleted"], 0, "{keyless}");
    assert_eq!(two.files("a", "keys").len(), 1);
    assert_eq!(two.files("b", "tombstones"), two.files("a", "tombstones"));
    assert!(
        two.files("b", "keys").contains(&old_key[0]),
        "nothing is deleted keyless"
    );

    // The repro exactly: sync with the old password still in the environment. It opens the
    // repository through B, authenticates the tombstone and deletes the old key file there.
    let out = two.expect(0, &["a", "b"], Some(PASSWORD), &["sync"]);
    assert!(out.contains("1 deleted elsewhere, 1 deleted here"), "{out}");
    for r in ["a", "b"] {
        let out = two.run(&[r], Some(PASSWORD), &["key", "list"]);
        assert_code(&out, 1, &["key", "list", "(old password)", r]);
        assert!(
            text(&out.stderr).contains("wrong password"),
            "{}",
            text(&out.stderr)
        );
        two.expect(0, &[r], Some("new"), &["key", "list"]);
    }
    assert_eq!(two.files("a", "keys"), two.files("b", "keys"));
    // In sync now, with and without the key; and check accepts the tombstone.
    two.expect(0, &["a", "b"], None, &["sync", "--dry-run"]);
    two.expect(0, &["a", "b"], Some("new"), &["sync", "--dry-run"]);
    two.expect(0, &["a", "b"], Some("new"), &["check"]);
}

/// `key remove` in one region: the removed key never comes back, and the last key of a
/// region is never deleted even when a tombstone names it.
#[test]
fn a_removed_key_is_not_copied_back() {
    let two = Two::new();
    two.expect(
        0,
        &["a", "b"],
        Some(PASSWORD),
        &["init", "--kdf-memory-kib", "1024"],
    );
    let mut add = two.cmd(&["a", "b"], Some(PASSWORD), "main");
    add.env("COFFER_NEW_PASSWORD", "second")
        .args(["--json", "key", "add"]);
    let out = wait_with_limit(add.spawn().unwrap(), TIMEOUT, "key add");
    assert_code(&out, 0, &["key", "add"]);
    let added: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let second = added["key_id"].as_str().unwrap().to_string();
    two.expect(0, &["a"], Some(PASSWORD), &["key", "remove", &second[..8]]);
    assert_eq!(two.files("a", "keys").len(), 1);
    assert_eq!(two.files("b", "keys").len(), 2);
    let out = two.expect(0, &["a", "b"], Some(PASSWORD), &["sync"]);
    assert!(out.contains("deleted here"), "{out}");
    for r in ["a", "b"] {
        assert!(!two.files(r, "keys").contains(&second), "region {r}");
        let out = two.run(&[r], Some("second"), &["key", "list"]);
        assert_code(&out, 1, &["key", "list", "(removed password)", r]);
    }
}

/// A read-only tmpfs holding region B: it lists but refuses every write and deletion, like a
/// region that is reachable for reads only. Unmounted on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> ReadOnly {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "mounting a tmpfs at {} (this test runs as root)",
            dir.display()
        );
        ReadOnly(dir.to_path_buf())
    }
    fn set(&self, read_only: bool) {
        let opt = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        let ok = Command::new("mount")
            .args(["-o", opt])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mount -o {opt} {}", self.0.display());
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `forget` while region B refuses deletions, then `sync`: the forgotten snapshots leave B
/// too and do not come back to A. Before tombstones, sync copied them back to A.
#[test]
fn a_forget_that_a_region_missed_is_finished_by_sync() {
    let two = Two::new();
    let b = ReadOnly::mount(&two.region("b"));
    two.expect(
        0,
        &["a", "b"],
        Some(PASSWORD),
        &["init", "--kdf-memory-kib", "1024"],
    );
    two.three_snapshots();
    let kept = two.files("a", "snapshots");
    assert_eq!(kept.len(), 3);

    b.set(true);
    let out = two.run(&["a", "b"], Some(PASSWORD), &["forget", "--keep-last", "1"]);
    // The deletions failed in B: an error, which says the tombstone will finish the job.
    assert_code(&out, 1, &["forget"]);
    let err = text(&out.stderr);
    assert!(err.contains("could not delete snapshot"), "{err}");
    assert!(
        err.contains("`coffer sync` with the password deletes it"),
        "{err}"
    );
    b.set(false);
    let left = two.files("a", "snapshots");
    assert_eq!(left.len(), 1);
    assert_eq!(two.files("b", "snapshots").len(), 3);
    assert_eq!(two.files("a", "tombstones").len(), 1);
    assert!(
        two.files("b", "tombstones").is_empty(),
        "B refused the tombstone too"
    );

    // Without the key: nothing forgotten is copied back to A, nothing is deleted from B.
    let keyless = two.sync_json(None, 0);
    assert_eq!(region(&keyless, "b")["buried"], 2, "{keyless}");
    assert_eq!(region(&keyless, "a")["missing"], 0, "{keyless}");
    assert_eq!(two.files("a", "snapshots"), left);
    assert_eq!(two.files("b", "snapshots").len(), 3);
    assert_eq!(two.files("b", "tombstones").len(), 1);

    // With the key: deleted from B.
    let keyed = two.sync_json(Some(PASSWORD), 0);
    assert_eq!(region(&keyed, "b")["buried_deleted"], 2, "{keyed}");
    assert_eq!(two.files("a", "snapshots"), left);
    assert_eq!(two.files("b", "snapshots"), left);
    // A listing of both regions shows the one snapshot kept; check is clean.
    let snaps = two.expect(0, &["a", "b"], Some(PASSWORD), &["--json", "snapshots"]);
    let snaps: serde_json::Value = serde_json::from_str(&snaps).unwrap();
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    two.expect(0, &["a", "b"], Some(PASSWORD), &["check"]);
    two.expect(0, &["a", "b"], None, &["sync", "--dry-run"]);
}

/// `forget` on a machine that has only region A configured: the same, and the second
/// machine's cache does not call the forgotten snapshots vanished.
#[test]
fn a_forget_in_one_region_alone_is_finished_by_sync() {
    let two = Two::new();
    two.expect(
        0,
        &["a", "b"],
        Some(PASSWORD),
        &["init", "--kdf-memory-kib", "1024"],
    );
    two.three_snapshots();
    two.expect(0, &["a", "b"], Some(PASSWORD), &["snapshots"]);
    let out = two.run_on(
        "other",
        &["a"],
        Some(PASSWORD),
        &["forget", "--keep-last", "1"],
    );
    assert_code(&out, 0, &["forget (region a alone)"]);
    two.expect(0, &["a", "b"], Some(PASSWORD), &["sync"]);
    assert_eq!(two.files("a", "snapshots"), two.files("b", "snapshots"));
    assert_eq!(two.files("a", "snapshots").len(), 1);
    let out = two.run(&["a", "b"], Some(PASSWORD), &["snapshots"]);
    assert_code(&out, 0, &["snapshots"]);
    assert!(
        !text(&out.stderr).contains("vanished"),
        "{}",
        text(&out.stderr)
    );
}

/// Bytes planted under `tombstones/` by someone without the key, under their correct name:
/// a keyed sync deletes nothing, does not copy them, and reports them; check reports them as
/// damage; a keyless sync does not copy what a well-formed forgery names, and deletes nothing.
#[test]
fn a_planted_tombstone_deletes_nothing() {
    let two = Two::new();
    two.expect(
        0,
        &["a", "b"],
        Some(PASSWORD),
        &["init", "--kdf-memory-kib", "1024"],
    );
    two.three_snapshots();
    let snaps = two.files("a", "snapshots");
    let plant = |bytes: &[u8]| {
        let name = blake3::hash(bytes).to_hex().to_string();
        let dir = two.region("a").join("tombstones");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&name), bytes).unwrap();
        name
    };
    // Random bytes, and a well-formed list naming the first snapshot with a forged box.
    let junk = plant(&common::pseudo_random(11, 200));
    let mut forged = b"CFFT\x03\x01\x00\x00\x00\x02".to_vec();
    forged.extend(hex::decode(&snaps[0]).unwrap());
    forged.extend(common::pseudo_random(12, 48));
    let forged = plant(&forged);

    let sync = two.sync_json(Some(PASSWORD), 1);
    let bad = sync["report"]["bad_tombstones"].to_string();
    assert!(bad.contains(&junk) && bad.contains(&forged), "{sync}");
    assert_eq!(sync["report"]["tombstones"], 0, "{sync}");
    assert_eq!(region(&sync, "a")["buried"], 0, "{sync}");
    for r in ["a", "b"] {
        assert_eq!(two.files(r, "snapshots"), snaps, "region {r}");
    }
    assert!(
        two.files("b", "tombstones").is_empty(),
        "bad tombstones are not copied"
    );
    let out = two.expect(1, &["a", "b"], Some(PASSWORD), &["sync", "--dry-run"]);
    assert!(out.contains("damaged tombstone"), "{out}");

    // check names both as damage.
    let out = two.run(&["a"], Some(PASSWORD), &["check"]);
    assert_code(&out, 1, &["check"]);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert!(all.contains(&junk) && all.contains(&forged), "{all}");

    // Without the key the junk cannot be read and is reported; the forgery reads as a
    // well-formed list, so the snapshot it names is not copied, but nothing is deleted.
    std::fs::remove_file(two.region("b").join("snapshots").join(&snaps[0])).unwrap();
    let keyless = two.sync_json(None, 1);
    assert!(keyless["report"]["bad_tombstones"]
        .to_string()
        .contains(&junk));
    assert_eq!(region(&keyless, "a")["buried"], 1, "{keyless}");
    assert_eq!(two.files("a", "snapshots"), snaps);
    assert!(!two.files("b", "snapshots").contains(&snaps[0]));
    // With the key, the forgery is refused and the snapshot is copied as usual.
    two.sync_json(Some(PASSWORD), 1);
    assert_eq!(two.files("b", "snapshots"), snaps);
}
