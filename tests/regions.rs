//! Several regions end to end through the real binary (issue 4): S3 on moto, Azure Blob on
//! Azurite and a local folder, all on loopback. A round trip through three regions; a server
//! killed in the middle of a backup and the region caught up by `coffer sync`; a flipped
//! byte repaired on read and by `sync --verify`; a region deleted and rebuilt; `sync`
//! without any password; and (ignored, run by hand) the cost of three regions against one.

mod common;

use coffer::backend::{self, Backend, Location, ObjectKind, ObjectName, ServiceOptions};
use common::servers::{restart_moto, Azurite, Moto};
use common::{pseudo_random, PASSWORD};
use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// No coffer command in these tests may take longer than this (a hang is a failure).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// A repository made of named regions, with the credentials of every server involved and a
/// scratch folder (sources, caches, restore targets), deleted on drop.
struct Repo {
    dir: tempfile::TempDir,
    /// `(name, url)` in read order.
    regions: Vec<(String, String)>,
    /// Credentials for every service (moto and Azurite accept the emulators' fixed ones).
    env: Vec<(String, String)>,
}

impl Repo {
    fn new(regions: &[(&str, String)], env: Vec<(String, String)>) -> Repo {
        Repo {
            dir: tempfile::tempdir().expect("temp dir"),
            regions: regions
                .iter()
                .map(|(n, u)| (n.to_string(), u.clone()))
                .collect(),
            env,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn url(&self, region: &str) -> &str {
        &self
            .regions
            .iter()
            .find(|(n, _)| n == region)
            .unwrap_or_else(|| panic!("no region {region}"))
            .1
    }

    /// `coffer --repo NAME=URL... --cache-dir CACHE` (`--repo URL` for one region), with the servers' credentials and,
    /// when `password`, COFFER_PASSWORD; nothing else from the environment. The child runs
    /// in a session of its own, without a controlling terminal: a password prompt cannot
    /// open /dev/tty and fails instead of waiting.
    fn cmd(&self, regions: &[&str], cache: &Path, password: bool) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("TZ", "UTC")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if password {
            c.env("COFFER_PASSWORD", PASSWORD);
        }
        match regions {
            // One region: just its URL, as a user who has nothing else would give it.
            [r] => {
                c.arg("--repo").arg(self.url(r));
            }
            _ => {
                for r in regions {
                    c.arg("--repo").arg(format!("{r}={}", self.url(r)));
                }
            }
        }
        c.arg("--cache-dir").arg(cache).stdin(Stdio::null());
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            c.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        c
    }

    fn all(&self) -> Vec<&str> {
        self.regions.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Run with every region, the password and the shared cache.
    fn run(&self, args: &[&str]) -> Output {
        let regions = self.all();
        run_cmd(self.cmd(&regions, &self.path("cache"), true).args(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_status(&out, 0, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run with `--json`, require `code`, parse stdout.
    fn json_with(&self, mut cmd: Command, args: &[&str], code: i32) -> serde_json::Value {
        let out = run_cmd(cmd.arg("--json").args(args));
        assert_status(&out, code, args);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "coffer {args:?} printed invalid JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn init(&self) {
        self.ok(&["init", "--kdf-memory-kib", "1024"]);
    }

    /// `coffer --json backup PATH` with every region; returns the JSON.
    fn backup(&self, src: &Path) -> serde_json::Value {
        let regions = self.all();
        let cmd = self.cmd(&regions, &self.path("cache"), true);
        self.json_with(cmd, &["backup", &src.to_string_lossy()], 0)
    }

    /// `coffer sync ARGS` with every region and no password at all; returns the JSON report.
    fn sync(&self, args: &[&str], code: i32) -> serde_json::Value {
        let regions = self.all();
        let cmd = self.cmd(&regions, &self.path("cache"), false);
        let mut all = vec!["sync"];
        all.extend_from_slice(args);
        self.json_with(cmd, &all, code)
    }

    /// Restore `latest` from the given regions only, with a new empty cache folder and only
    /// the password, into a new folder; returns that folder.
    fn restore_from(&self, regions: &[&str], tag: &str) -> PathBuf {
        let target = self.path(&format!("restored-{tag}"));
        let cache = self.path(&format!("cache-{tag}"));
        let args = ["restore", "latest", "--target", &target.to_string_lossy()];
        let out = run_cmd(self.cmd(regions, &cache, true).args(args));
        assert_status(&out, 0, &args);
        target
    }

    /// One region's backend, opened directly (as a test sees the storage).
    fn backend(&self, region: &str) -> Arc<dyn Backend> {
        open(self.url(region), &self.env)
    }

    /// Every object of one region, with its size.
    fn objects(&self, region: &str) -> Vec<(ObjectName, u64)> {
        objects(self.backend(region).as_ref())
    }
}

fn open(url: &str, env: &[(String, String)]) -> Arc<dyn Backend> {
    let loc = Location::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let opts = ServiceOptions {
        env: env.to_vec(),
        ..ServiceOptions::default()
    };
    backend::open_with(&loc, &opts).unwrap_or_else(|e| panic!("open {url}: {e}"))
}

fn objects(b: &dyn Backend) -> Vec<(ObjectName, u64)> {
    let mut all = Vec::new();
    for kind in ObjectKind::ALL {
        all.extend(
            b.list(kind)
                .unwrap_or_else(|e| panic!("list {kind:?} in {}: {e}", b.describe())),
        );
    }
    all.sort();
    all
}

fn count(objects: &[(ObjectName, u64)], kind: ObjectKind) -> usize {
    objects.iter().filter(|(n, _)| n.kind == kind).count()
}

/// Run a command to the end (killing it after [`COMMAND_TIMEOUT`]), capturing its output.
fn run_cmd(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coffer");
    common::wait_with_limit(child, COMMAND_TIMEOUT, &format!("{cmd:?}"))
}

fn assert_status(out: &Output, code: i32, args: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "coffer {args:?}: expected exit {code}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A source tree: real documentation files (about `real_bytes` of /usr/share/doc, as they
/// are), generated incompressible files of `random_bytes` in all, an empty file and an
/// empty folder.
fn make_tree(root: &Path, real_bytes: u64, random_bytes: usize, seed: u64) {
    std::fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::fs::write(root.join("empty-file"), b"").unwrap();
    let mut copied = 0u64;
    let mut stack = vec![PathBuf::from("/usr/share/doc")];
    'walk: while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        entries.sort();
        for p in entries {
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                if copied >= real_bytes {
                    break 'walk;
                }
                let rel = p.strip_prefix("/usr/share").unwrap();
                let to = root.join(rel);
                std::fs::create_dir_all(to.parent().unwrap()).unwrap();
                if std::fs::copy(&p, &to).is_ok() {
                    copied += meta.len();
                }
            }
        }
    }
    assert!(
        copied >= real_bytes.min(1 << 20),
        "only {copied} bytes of /usr/share/doc could be copied"
    );
    let gen = root.join("generated");
    std::fs::create_dir_all(&gen).unwrap();
    let mut left = random_bytes;
    let mut i = 0;
    while left > 0 {
        // Files of different sizes, up to 8 MiB.
        let n = left.min((1 << 20) * (1 + i % 8) + 4321 * i);
        // Distinct seeds (pseudo_random sets the lowest bit), so no two files share data.
        let file_seed = (seed << 32) | ((i as u64) << 1);
        std::fs::write(
            gen.join(format!("file-{i}.bin")),
            pseudo_random(file_seed, n),
        )
        .unwrap();
        left -= n;
        i += 1;
    }
}

/// Where a restore into `target` puts the source folder `src` (stored under its absolute path).
fn restored_copy(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// Byte-for-byte comparison of two trees (folders, regular files and their contents).
fn assert_same_tree(a: &Path, b: &Path) {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                out.insert(rel, None);
                walk(root, &p, out);
            } else {
                assert!(meta.is_file(), "unexpected {}", p.display());
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    let (mut ta, mut tb) = (BTreeMap::new(), BTreeMap::new());
    walk(a, a, &mut ta);
    walk(b, b, &mut tb);
    let names = |t: &BTreeMap<PathBuf, Option<Vec<u8>>>| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&ta),
        names(&tb),
        "{} and {} hold different paths",
        a.display(),
        b.display()
    );
    for (p, content) in &ta {
        assert!(
            *content == tb[p],
            "{} differs between {} and {}",
            p.display(),
            a.display(),
            b.display()
        );
    }
    assert!(ta.len() > 3, "{} is nearly empty", a.display());
}

fn region_report<'a>(sync: &'a serde_json::Value, region: &str) -> &'a serde_json::Value {
    region_report_of(&sync["report"], region)
}

/// One region's entry in a sync report (`coffer sync`'s `report`, `coffer check`'s `regions`).
fn region_report_of<'a>(report: &'a serde_json::Value, region: &str) -> &'a serde_json::Value {
    report["regions"]
        .as_array()
        .expect("regions in the sync report")
        .iter()
        .find(|r| r["region"] == region)
        .unwrap_or_else(|| panic!("no region {region} in {report}"))
}

fn num(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn env_of(moto: Option<&Moto>, azurite: Option<&Azurite>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let Some(m) = moto {
        env.extend(m.env());
    }
    if let Some(a) = azurite {
        env.extend(a.env());
    }
    env
}

/// Flip one byte in the middle of a file.
fn flip_byte(path: &Path) -> Vec<u8> {
    let good = std::fs::read(path).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    std::fs::write(path, &bad).unwrap();
    good
}

/// The largest pack file of a folder region (a data pack, not a small tree pack).
fn largest_pack(folder: &Path) -> PathBuf {
    common::packs(folder)
        .into_iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a pack in the folder region")
}

#[test]
fn three_regions_round_trip() {
    // Servers start on the test's own thread: they die with the thread that started them.
    let moto = Moto::start();
    let azurite = Azurite::start();
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("region-local");
    let repo = Repo::new(
        &[
            ("s3", moto.url("three")),
            ("azure", azurite.url("three")),
            ("local", folder.to_string_lossy().into_owned()),
        ],
        env_of(Some(&moto), Some(&azurite)),
    );
    repo.init();
    let src = repo.path("src");
    make_tree(&src, 3 << 20, 3 << 20, 1);
    let first = repo.backup(&src);
    assert_eq!(first["regions_behind"], serde_json::json!([]), "{first}");

    // A second, changed snapshot: a file added, one rewritten.
    std::fs::write(src.join("generated/new.bin"), pseudo_random(99, 700_000)).unwrap();
    std::fs::write(src.join("empty-file"), b"not empty any more").unwrap();
    let second = repo.backup(&src);
    assert_eq!(second["regions_behind"], serde_json::json!([]), "{second}");

    // Every region holds the same objects, byte counts included.
    let reference = repo.objects("s3");
    assert!(
        count(&reference, ObjectKind::Snapshot) == 2,
        "{reference:?}"
    );
    assert!(count(&reference, ObjectKind::Pack) >= 2, "{reference:?}");
    for r in ["azure", "local"] {
        assert_eq!(repo.objects(r), reference, "region {r} differs from s3");
    }

    // Restore with a fresh cache from all regions, and the sync report agrees they match.
    let target = repo.restore_from(&repo.all(), "all");
    assert_same_tree(&src, &restored_copy(&target, &src));
    let dry = repo.sync(&["--dry-run"], 0);
    assert_eq!(dry["ok"], true, "{dry}");
    for r in repo.all() {
        let rr = region_report(&dry, r);
        assert_eq!(num(&rr["objects"]), reference.len() as u64, "{dry}");
        assert_eq!(num(&rr["missing"]), 0, "{dry}");
    }
    let check = repo.json_with(
        repo.cmd(&repo.all(), &repo.path("cache"), true),
        &["check", "--read-data"],
        0,
    );
    assert_eq!(check["ok"], true, "{check}");
}

#[test]
fn a_server_killed_mid_backup_leaves_its_region_behind_until_sync() {
    let mut moto = Moto::start();
    let azurite = Azurite::start();
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("region-local");
    let repo = Repo::new(
        &[
            ("local", folder.to_string_lossy().into_owned()),
            ("s3", moto.url("killed")),
            ("azure", azurite.url("killed")),
        ],
        env_of(Some(&moto), Some(&azurite)),
    );
    repo.init();
    // Incompressible data for several 16 MiB packs, so the backup runs long enough after
    // the first pack lands in s3 for the kill to fall in its middle.
    let src = repo.path("src");
    make_tree(&src, 1 << 20, 88 << 20, 2);

    let regions = repo.all();
    let mut cmd = repo.cmd(&regions, &repo.path("cache"), true);
    cmd.args(["--json", "backup", &src.to_string_lossy()]);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coffer backup");
    // Watch s3 (directly, with short timeouts) and kill moto once it holds a pack.
    let watcher = {
        let loc = Location::parse(repo.url("s3")).unwrap();
        let opts = ServiceOptions {
            env: repo.env.clone(),
            attempts: 1,
            timeout: Duration::from_secs(5),
            ..ServiceOptions::default()
        };
        backend::open_with(&loc, &opts).unwrap()
    };
    let t0 = Instant::now();
    let at_kill = loop {
        let packs = watcher
            .list(ObjectKind::Pack)
            .expect("list s3 while it is up");
        if !packs.is_empty() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the backup ended before the kill: make it bigger"
            );
            moto.server.kill();
            break packs.len();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before any pack reached s3"
        );
        assert!(t0.elapsed() < COMMAND_TIMEOUT, "no pack reached s3");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(watcher);
    let killed_after = t0.elapsed();
    let out = common::wait_with_limit(child, COMMAND_TIMEOUT, &format!("{cmd:?}"));
    assert_status(&out, 0, &["backup"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let backup: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "moto killed {killed_after:.2?} into the backup, holding {at_kill} pack(s)\n{stderr}"
    );
    assert!(
        stderr.contains("region s3 did not take every object"),
        "no warning naming s3: {stderr}"
    );
    let behind = backup["regions_behind"].as_array().expect("regions_behind");
    assert_eq!(behind.len(), 1, "{backup}");
    assert_eq!(behind[0]["region"], "s3", "{backup}");

    // The region had some of the backup's objects, not all of them.
    let complete = repo.objects("local");
    let packs = count(&complete, ObjectKind::Pack);
    assert!(
        at_kill >= 1 && at_kill < packs,
        "s3 held {at_kill} of {packs} packs when killed"
    );
    assert_eq!(repo.objects("azure"), complete, "azure missed objects");

    // While the server is down, sync brings nothing to it and says so (exit 1).
    let down = repo.sync(&[], 1);
    assert!(
        region_report(&down, "s3")["unreachable"].is_string(),
        "{down}"
    );
    assert_eq!(num(&region_report(&down, "local")["copied"]), 0, "{down}");

    // The server is back, but empty: the region lacks every object, even the config. A
    // dry run says so from the listings, without reading (or writing) anything.
    let _moto2 = restart_moto(moto.server.port, &moto.bucket);
    assert!(repo.objects("s3").is_empty());
    let dry = repo.sync(&["--dry-run"], 1);
    assert_eq!(dry["ok"], false, "{dry}");
    let s3 = region_report(&dry, "s3");
    let all_bytes: u64 = complete.iter().map(|(_, s)| s).sum();
    assert_eq!(num(&s3["missing"]), complete.len() as u64, "{dry}");
    assert_eq!(num(&s3["bytes_to_copy"]), all_bytes, "{dry}");
    assert_eq!(num(&s3["objects"]), 0, "{dry}");
    assert_eq!(num(&dry["report"]["copies_verified"]), 0, "{dry}");
    for r in ["local", "azure"] {
        assert_eq!(num(&region_report(&dry, r)["missing"]), 0, "{dry}");
    }
    assert!(repo.objects("s3").is_empty(), "a dry run wrote to s3");

    // A backup now writes to s3 again, but s3 still lacks the earlier objects: the backup
    // says the region is behind.
    std::fs::write(src.join("after-restart.txt"), b"written after the restart").unwrap();
    let again = repo.backup(&src);
    let behind = again["regions_behind"].as_array().unwrap();
    assert_eq!(behind.len(), 1, "{again}");
    assert_eq!(behind[0]["region"], "s3", "{again}");
    assert!(
        behind[0]["error"].as_str().unwrap().contains("lacks"),
        "{again}"
    );
    let complete = repo.objects("local");

    let sync = repo.sync(&[], 0);
    let s3 = region_report(&sync, "s3");
    let new_in_s3 = complete.len() - num(&s3["missing"]) as usize;
    assert!(
        new_in_s3 >= 2,
        "the second backup wrote nothing to s3: {sync}"
    );
    assert_eq!(
        num(&s3["copied"]) as usize,
        complete.len() - new_in_s3,
        "{sync}"
    );
    assert_eq!(num(&s3["objects"]), complete.len() as u64, "{sync}");
    assert_eq!(
        num(&s3["bytes_copied"]),
        num(&s3["bytes_to_copy"]),
        "{sync}"
    );
    assert_eq!(repo.objects("s3"), complete);

    let dry = repo.sync(&["--dry-run"], 0);
    assert_eq!(dry["ok"], true, "{dry}");
    let target = repo.restore_from(&["s3"], "s3");
    assert_same_tree(&src, &restored_copy(&target, &src));
}

/// `coffer check --read-data` with the regions in the given order: exit status, JSON.
fn check_read_data(repo: &Repo, order: &[&str]) -> (i32, serde_json::Value, String) {
    let out = run_cmd(repo.cmd(order, &repo.path("cache"), true).args([
        "--json",
        "check",
        "--read-data",
    ]));
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().expect("exit code"), json, stderr)
}

#[test]
fn a_flipped_byte_in_one_region_is_repaired() {
    let azurite = Azurite::start();
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("region-local");
    // The damaged region comes first, so reads meet its bad copy before the good one.
    let repo = Repo::new(
        &[
            ("local", folder.to_string_lossy().into_owned()),
            ("azure", azurite.url("flip")),
        ],
        env_of(None, Some(&azurite)),
    );
    repo.init();
    let src = repo.path("src");
    make_tree(&src, 2 << 20, 6 << 20, 3);
    repo.backup(&src);
    let all = repo.all();
    let pack = largest_pack(&folder);

    // 1. A restore (fresh cache) reads the bad copy, fails to authenticate it, has the
    // regions repair the pack from the good copy, reads again: the files come back whole
    // and the bad copy is rewritten on the way.
    let good = flip_byte(&pack);
    let target = repo.path("restored-after-flip");
    let args = ["restore", "latest", "--target", &target.to_string_lossy()];
    let out = run_cmd(repo.cmd(&all, &repo.path("cache-restore"), true).args(args));
    assert_status(&out, 0, &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("region local: the copy of data/")
            && stderr.contains("region local: rewrote data/"),
        "the restore did not report the bad copy and its repair: {stderr}"
    );
    assert_same_tree(&src, &restored_copy(&target, &src));
    assert!(
        std::fs::read(&pack).unwrap() == good,
        "the restore did not rewrite the damaged copy"
    );
    // Nothing left to find.
    let (code, check, _) = check_read_data(&repo, &all);
    assert_eq!(
        (code, &check["ok"]),
        (0, &serde_json::json!(true)),
        "{check}"
    );
    let v = repo.sync(&["--verify"], 0);
    assert_eq!(num(&region_report(&v, "local")["damaged"]), 0, "{v}");
    assert_eq!(
        num(&v["report"]["copies_verified"]),
        2 * num(&v["report"]["objects"]),
        "{v}"
    );

    // 2. `sync --verify` alone finds and replaces a damaged copy. A plain sync compares
    // listings only: a flipped byte keeps the size, so it does not see it.
    let good = flip_byte(&pack);
    let plain = repo.sync(&["--dry-run"], 0);
    assert_eq!(
        num(&region_report(&plain, "local")["damaged"]),
        0,
        "{plain}"
    );
    let dry = repo.sync(&["--verify", "--dry-run"], 1);
    assert_eq!(num(&region_report(&dry, "local")["damaged"]), 1, "{dry}");
    assert_eq!(num(&region_report(&dry, "azure")["damaged"]), 0, "{dry}");
    assert!(std::fs::read(&pack).unwrap() != good, "a dry run repaired");
    let fixed = repo.sync(&["--verify"], 0);
    let local = region_report(&fixed, "local");
    assert_eq!(
        (num(&local["damaged"]), num(&local["copied"])),
        (1, 1),
        "{fixed}"
    );
    assert_eq!(num(&local["bytes_copied"]), good.len() as u64, "{fixed}");
    assert!(
        std::fs::read(&pack).unwrap() == good,
        "sync --verify did not rewrite the copy"
    );
    let dry = repo.sync(&["--verify", "--dry-run"], 0);
    assert_eq!(num(&region_report(&dry, "local")["damaged"]), 0, "{dry}");

    // 3. `check --read-data` compares every copy, so it reports the damaged one (exit 1)
    // whatever the order of the regions. Its own reads go through the regions in order:
    // with the good region first they never touch the bad copy, which stays for sync...
    let good = flip_byte(&pack);
    let (code, check, _) = check_read_data(&repo, &["azure", "local"]);
    assert_eq!(code, 1, "{check}");
    assert_eq!(
        num(&region_report_of(&check["regions"], "local")["damaged"]),
        1,
        "{check}"
    );
    assert_eq!(check["repaired"], 0, "{check}");
    assert!(
        check["report"]["problems"].as_array().unwrap().is_empty(),
        "{check}"
    );
    assert!(std::fs::read(&pack).unwrap() != good);
    // ...and with the damaged region first, the check's read of the pack meets the bad copy
    // and rewrites it: still exit 1 (damage was found), and the next check is clean.
    let (code, check, stderr) = check_read_data(&repo, &["local", "azure"]);
    assert_eq!(code, 1, "{check}");
    assert_eq!(
        num(&region_report_of(&check["regions"], "local")["damaged"]),
        1,
        "{check}"
    );
    assert_eq!(check["repaired"], 1, "{check}\n{stderr}");
    assert!(
        std::fs::read(&pack).unwrap() == good,
        "check did not rewrite the copy"
    );
    let text = repo.run(&["check", "--read-data"]);
    assert_status(&text, 0, &["check", "--read-data"]);

    // 4. A partial read (--read-data-subset) does not compare the copies, but its reads
    // repair the bad copy they meet, and that is damage found too: exit 1, in text as well.
    let good = flip_byte(&pack);
    let args = ["check", "--read-data-subset", "100%"];
    let out = repo.run(&args);
    assert_status(&out, 1, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("repaired: 1 damaged copies") && !stdout.contains("coffer sync"),
        "{stdout}"
    );
    assert!(std::fs::read(&pack).unwrap() == good, "not repaired");
    assert_status(&repo.run(&args), 0, &args);
}

#[test]
fn a_deleted_region_is_rebuilt_by_sync() {
    let moto = Moto::start();
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("region-local");
    let repo = Repo::new(
        &[
            ("local", folder.to_string_lossy().into_owned()),
            ("s3", moto.url("deleted")),
        ],
        env_of(Some(&moto), None),
    );
    repo.init();
    let src = repo.path("src");
    make_tree(&src, 2 << 20, 2 << 20, 4);
    repo.backup(&src);
    let complete = repo.objects("s3");
    assert_eq!(repo.objects("local"), complete);

    // The whole region is gone. The other one alone, with a new cache and the password,
    // is enough to restore.
    std::fs::remove_dir_all(&folder).unwrap();
    let target = repo.restore_from(&["s3"], "s3-only");
    assert_same_tree(&src, &restored_copy(&target, &src));

    // Sync with every region brings it all back, in the order of format-spec §11.
    let dry = repo.sync(&["--dry-run"], 1);
    assert_eq!(
        num(&region_report(&dry, "local")["missing"]),
        complete.len() as u64,
        "{dry}"
    );
    let sync = repo.sync(&[], 0);
    let local = region_report(&sync, "local");
    assert_eq!(num(&local["copied"]), complete.len() as u64, "{sync}");
    assert_eq!(num(&local["objects"]), complete.len() as u64, "{sync}");
    assert_eq!(num(&region_report(&sync, "s3")["copied"]), 0, "{sync}");
    assert_eq!(repo.objects("local"), complete);
    let dry = repo.sync(&["--dry-run", "--verify"], 0);
    assert_eq!(dry["ok"], true, "{dry}");

    // And the rebuilt region alone restores.
    let target = repo.restore_from(&["local"], "local-only");
    assert_same_tree(&src, &restored_copy(&target, &src));
}

#[test]
fn sync_needs_no_password() {
    let azurite = Azurite::start();
    let scratch = tempfile::tempdir().unwrap();
    let folder = scratch.path().join("region-local");
    let repo = Repo::new(
        &[
            ("local", folder.to_string_lossy().into_owned()),
            ("azure", azurite.url("nopw")),
        ],
        env_of(None, Some(&azurite)),
    );
    repo.init();
    let src = repo.path("src");
    make_tree(&src, 1 << 20, 1 << 20, 5);
    repo.backup(&src);
    let all = repo.all();
    let cache = repo.path("cache");

    // The environment really holds no password: a command that needs one says so at once
    // (no terminal to prompt on) instead of waiting.
    let out = run_cmd(repo.cmd(&all, &cache, false).arg("snapshots"));
    assert_status(&out, 1, &["snapshots"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no password given"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // In sync: both forms succeed, in text and in JSON.
    for args in [&["sync", "--dry-run"][..], &["sync"], &["sync", "--verify"]] {
        let out = run_cmd(repo.cmd(&all, &cache, false).args(args));
        assert_status(&out, 0, args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("regions are in sync"), "{args:?}: {stdout}");
    }
    assert_eq!(repo.sync(&["--dry-run"], 0)["ok"], true);

    // A region that lost objects: the dry run reports it (exit 1, a difference, not a
    // password error), sync copies them, and the dry run is then clean.
    for e in std::fs::read_dir(folder.join("snapshots"))
        .unwrap()
        .flatten()
    {
        std::fs::remove_file(e.path()).unwrap();
    }
    std::fs::remove_file(largest_pack(&folder)).unwrap();
    let out = run_cmd(repo.cmd(&all, &cache, false).args(["sync", "--dry-run"]));
    assert_status(&out, 1, &["sync", "--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("region local: ")
            && stdout.contains("2 missing")
            && stdout.contains("regions differ"),
        "{stdout}"
    );
    let sync = repo.sync(&[], 0);
    let local = region_report(&sync, "local");
    assert_eq!(
        (num(&local["missing"]), num(&local["copied"])),
        (2, 2),
        "{sync}"
    );
    let out = run_cmd(repo.cmd(&all, &cache, false).args(["sync", "--dry-run"]));
    assert_status(&out, 0, &["sync", "--dry-run"]);
    assert_eq!(repo.objects("local"), repo.objects("azure"));
}

/// CPU time (user, system) used so far by this process's live children: the servers.
fn servers_cpu() -> (Duration, Duration) {
    let me = std::process::id();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let (mut user, mut sys) = (0f64, 0f64);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        // After the command: state ppid ... (fields 14 and 15 of the whole line: utime, stime).
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(me) {
            user += f[11].parse::<f64>().unwrap_or(0.0) / tick;
            sys += f[12].parse::<f64>().unwrap_or(0.0) / tick;
        }
    }
    (Duration::from_secs_f64(user), Duration::from_secs_f64(sys))
}

/// Run a command to the end, returning its wall time and its user and system CPU time
/// (the growth of this process's waited-for children's usage: nothing else may be waited
/// for meanwhile, which holds in the one test that uses this).
fn timed(cmd: &mut Command) -> (Duration, Duration, Duration) {
    fn children() -> (Duration, Duration) {
        // SAFETY: an all-zero rusage is a valid value to be overwritten.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to our own struct.
        assert_eq!(
            unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
            0
        );
        let tv = |t: libc::timeval| {
            Duration::from_micros(t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64)
        };
        (tv(usage.ru_utime), tv(usage.ru_stime))
    }
    let before = children();
    let t0 = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run coffer");
    let wall = t0.elapsed();
    let after = children();
    assert!(
        out.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (wall, after.0 - before.0, after.1 - before.1)
}

/// Read every file under `dir` (to have it in the page cache).
fn read_all(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => read_all(&p),
            Ok(m) if m.is_file() => {
                let _ = std::fs::read(&p);
            }
            _ => {}
        }
    }
}

/// One measured backup.
struct Run {
    wall: Duration,
    /// coffer's own CPU time.
    user: Duration,
    sys: Duration,
    /// The servers' CPU time (user and system) while it ran.
    servers: Duration,
    /// Bytes stored in one region.
    stored: u64,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The cost of writing every object to three regions instead of one: backups of the same
/// data into fresh repositories with one region (a local folder) and with three (a folder,
/// S3 on moto, Azure Blob on Azurite), alternating, three of each. Prints the medians of
/// wall time and of coffer's user and system CPU time, the servers' CPU time, and the
/// ratios; asserts nothing about them. Run by hand, e.g.
/// `cargo test --release --test regions -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure_one_region_against_three() {
    const RUNS: usize = 3;
    let moto = Moto::start();
    let azurite = Azurite::start();
    let scratch = tempfile::tempdir().unwrap();
    let generated = scratch.path().join("generated");
    make_tree(&generated, 0, 128 << 20, 6);
    let datasets = [
        ("/usr/share/doc", PathBuf::from("/usr/share/doc")),
        ("128 MiB incompressible", generated),
    ];
    for (d, (what, src)) in datasets.iter().enumerate() {
        read_all(src);
        // Per region count: wall, user, system, servers' CPU, stored bytes per region.
        let mut runs: BTreeMap<usize, Vec<Run>> = BTreeMap::new();
        for run in 0..RUNS {
            for n in [1, 3] {
                let tag = format!("d{d}-r{run}-n{n}");
                let folder = scratch.path().join(format!("local-{tag}"));
                let mut regions = vec![("local", folder.to_string_lossy().into_owned())];
                if n == 3 {
                    regions.push(("s3", moto.url(&tag)));
                    regions.push(("azure", azurite.url(&tag)));
                }
                let repo = Repo::new(&regions, env_of(Some(&moto), Some(&azurite)));
                repo.init();
                let all = repo.all();
                let before = servers_cpu();
                let (wall, user, sys) = timed(repo.cmd(&all, &repo.path("cache"), true).args([
                    "-q",
                    "backup",
                    &src.to_string_lossy(),
                ]));
                let after = servers_cpu();
                let servers = (after.0 + after.1).saturating_sub(before.0 + before.1);
                let stored: u64 = repo.objects("local").iter().map(|(_, s)| s).sum();
                runs.entry(n).or_default().push(Run {
                    wall,
                    user,
                    sys,
                    servers,
                    stored,
                });
            }
        }
        let med = |n: usize, f: fn(&Run) -> Duration| median(runs[&n].iter().map(f).collect());
        for n in [1, 3] {
            eprintln!(
                "{what}: {n} region(s), median of {RUNS}: wall {:.2?}, coffer user {:.2?} \
                 sys {:.2?}, servers CPU {:.2?}; {:.1} MiB stored per region",
                med(n, |r| r.wall),
                med(n, |r| r.user),
                med(n, |r| r.sys),
                med(n, |r| r.servers),
                runs[&n][0].stored as f64 / (1 << 20) as f64
            );
        }
        let ratio = |f: fn(&Run) -> Duration| med(3, f).as_secs_f64() / med(1, f).as_secs_f64();
        eprintln!(
            "{what}: 3 regions / 1 region: wall x{:.2}, coffer user CPU x{:.2}, system CPU x{:.2}",
            ratio(|r| r.wall),
            ratio(|r| r.user),
            ratio(|r| r.sys)
        );
    }
}
