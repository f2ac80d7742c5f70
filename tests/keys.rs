//! Opening a repository whose storage is hostile or damaged: planted key files and giant
//! objects cost nothing, damaged key files and a missing config are named, and weak
//! secrets are refused (security review M6, L2; reliability review item 3). Every case runs
//! the real binary against a folder repository.

mod common;

use coffer::crypto::KdfParams;
use coffer::format::keyfile::KeyFile;
use common::{pseudo_random, Env, PASSWORD};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// Run with the child's data segment (heap and private mappings) limited to
/// `DATA_LIMIT`: a coffer that reads a giant object into memory fails to allocate and
/// aborts (exit 134) instead of answering. A limit, not a measurement: a child's
/// `ru_maxrss` starts from the test process's own size (the spawn shares its memory until
/// exec), which other tests in this binary inflate.
fn run_with_data_limit(cmd: &mut Command) -> Output {
    use std::os::unix::process::CommandExt;
    const DATA_LIMIT: u64 = 256 << 20;
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: DATA_LIMIT,
                rlim_max: DATA_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    run(cmd)
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
        let out = run_with_data_limit(cmd.arg("snapshots"));
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
    }

    // A giant config: named with its size, refused unread.
    let config = objects(&repo, "config")[0].clone();
    let good = std::fs::read(&config).unwrap();
    std::fs::remove_file(&config).unwrap();
    let giant_config = repo.join("config").join(fake(0xcc));
    sparse(&giant_config, GIANT);
    let out = run_with_data_limit(env.cmd().arg("snapshots"));
    expect_code(&out, 1, "snapshots with a giant config");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("config/{}", fake(0xcc))) && err.contains("1073741824"),
        "{}",
        show(&out)
    );
    std::fs::remove_file(&giant_config).unwrap();
    std::fs::write(&config, good).unwrap();
    expect_code(
        &run(env.cmd().arg("snapshots")),
        1,
        "still the giant snapshot",
    );
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Plant a key file as storage could: any cost the decoder accepts, claimed host and user,
/// and a box no password opens. Its salt is ground until its name sorts before `before`,
/// so a reader that tries key files in listing order meets it first. Returns its name.
fn plant_key(repo: &Path, memory_kib: u32, iterations: u32, before: &str) -> String {
    for i in 0u64.. {
        let mut salt = [0u8; 32];
        salt[..8].copy_from_slice(&i.to_le_bytes());
        salt[8..16].copy_from_slice(&(memory_kib as u64 * 131 + iterations as u64).to_le_bytes());
        let kf = KeyFile {
            kdf: KdfParams {
                memory_kib,
                iterations,
                parallelism: 1,
            },
            salt,
            created_ns: 0,
            host: "prod".into(),
            user: "admin".into(),
            wrapped: pseudo_random(i + 7, 72),
        };
        let bytes = kf.encode();
        let name = hex::encode(coffer::id::object_hash(&bytes));
        if name.as_str() < before {
            std::fs::write(repo.join("keys").join(&name), bytes).unwrap();
            return name;
        }
    }
    unreachable!()
}

fn key_list(env: &Env, cache: &Path) -> Vec<Value> {
    let out = run(env.cmd_with_cache(cache).args(["--json", "key", "list"]));
    expect_code(&out, 0, "key list");
    serde_json::from_slice::<Value>(&out.stdout)
        .expect("key list JSON")
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn planted_costly_key_files_are_skipped_not_tried() {
    let env = repository();
    let repo = env.repo();
    let real = file_name(&objects(&repo, "keys")[0]);
    let fresh = |n: &str| env.path(&format!("cache-{n}"));

    // Opening as usual, on a machine without a cache, for comparison.
    let t = Instant::now();
    expect_code(
        &run(env.cmd_with_cache(&fresh("a")).arg("snapshots")),
        0,
        "baseline",
    );
    let baseline = t.elapsed();

    // Key files from the storage side, all sorting before the real one: two above the
    // reader's limit though within the decoder's bounds (64 passes over 256 MiB, about a
    // minute here for a reader that tries it; 1 GiB and 1 MiB), and one within the limit
    // but far costlier than the real key (8 passes over 256 MiB), which cheapest-first
    // never reaches.
    let passes = plant_key(&repo, 256 * 1024, 64, &real);
    let memory = plant_key(&repo, 1024 * 1024 + 1024, 1, &real);
    let within = plant_key(&repo, 256 * 1024, 8, &real);

    let t = Instant::now();
    let out = run(env.cmd_with_cache(&fresh("b")).arg("snapshots"));
    let took = t.elapsed();
    expect_code(&out, 0, "snapshots with planted key files");
    let err = text(&out.stderr);
    assert!(err.contains("skipped, not tried"), "{}", show(&out));
    for planted in [&passes, &memory] {
        assert!(err.contains(&format!("keys/{planted}")), "{}", show(&out));
    }
    assert!(err.contains("--max-kdf-memory"), "{}", show(&out));
    assert!(!err.contains(&within), "{}", show(&out));
    assert!(
        took < baseline * 3 + Duration::from_secs(3),
        "opening took {took:?} with planted key files, {baseline:?} without"
    );

    // Next time on this machine the key that opened last is tried first, alone: the
    // planted ones are not even read, so nothing is said about them.
    let out = run(env.cmd_with_cache(&fresh("b")).arg("snapshots"));
    expect_code(&out, 0, "snapshots with the hint");
    assert!(!text(&out.stderr).contains("skipped"), "{}", show(&out));

    // A wrong password says which key files were not tried, and how to allow them.
    let out = run(env
        .cmd_with_cache(&fresh("c"))
        .env("COFFER_PASSWORD", "not the password")
        .arg("snapshots"));
    expect_code(&out, 1, "wrong password");
    let err = text(&out.stderr);
    assert!(
        err.contains("wrong password") && err.contains("skipped") && err.contains("--max-kdf"),
        "{}",
        show(&out)
    );

    // `key list` shows the planted files, their claims marked unverified, and their cost
    // as skipped; only the key in use is verified.
    let list = key_list(&env, &fresh("b"));
    assert_eq!(list.len(), 4, "{list:?}");
    for k in &list {
        let id = k["id"].as_str().unwrap();
        if id == real {
            assert_eq!(k["verified"], true, "{k}");
            assert_eq!(k["current"], true, "{k}");
        } else {
            assert_eq!(k["verified"], false, "{k}");
            assert_eq!(k["host"], "prod", "{k}");
            assert_eq!(k["skipped_when_opening"], id != within, "{k}");
        }
    }
    let table = text(&run(env.cmd_with_cache(&fresh("b")).args(["key", "list"])).stdout);
    assert!(
        table.contains("unverified") && table.contains("skipped when opening"),
        "{table}"
    );

    // Planted files can be removed like any key file.
    for planted in [&passes, &memory, &within] {
        let out = run(env
            .cmd_with_cache(&fresh("b"))
            .args(["key", "remove", planted]));
        expect_code(&out, 0, "key remove of a planted key file");
    }
    assert_eq!(objects(&repo, "keys").len(), 1);
}

#[test]
fn a_key_made_costly_on_purpose_opens_with_the_flag() {
    let env = Env::new();
    let out = run(env.cmd().args(["init", "--kdf-memory-kib", "1024"]));
    expect_code(&out, 0, "init");
    // Raise the pass count of the only key file as its owner could have: rewrap M with 11
    // passes (above the default limit of 10) and the same password.
    let repo = env.repo();
    let old = objects(&repo, "keys")[0].clone();
    let kf = KeyFile::decode(&std::fs::read(&old).unwrap()).unwrap();
    let master = kf.unwrap(PASSWORD.as_bytes()).unwrap();
    let kdf = KdfParams {
        iterations: 11,
        ..kf.kdf
    };
    let costly = KeyFile::create(&master, PASSWORD.as_bytes(), kdf, 0, "h", "u", None)
        .unwrap()
        .encode();
    std::fs::remove_file(&old).unwrap();
    let name = hex::encode(coffer::id::object_hash(&costly));
    std::fs::write(repo.join("keys").join(&name), costly).unwrap();

    let out = run(env.cmd().arg("snapshots"));
    expect_code(&out, 1, "snapshots with a key above the limit");
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("keys/{name}")) && err.contains("--max-kdf-passes"),
        "{}",
        show(&out)
    );
    let out = run(env.cmd().args(["--max-kdf-passes", "11", "snapshots"]));
    expect_code(&out, 0, "snapshots with --max-kdf-passes 11");
    let out = run(env.cmd().args(["--max-kdf-memory", "banana", "snapshots"]));
    expect_code(&out, 2, "a bad --max-kdf-memory");
}

#[test]
fn a_damaged_key_file_is_named_not_called_a_wrong_password() {
    let env = repository();
    let repo = env.repo();
    let mine = file_name(&objects(&repo, "keys")[0]);
    let out = run(env
        .cmd()
        .env("COFFER_NEW_PASSWORD", "a second password")
        .args(["key", "add"]));
    expect_code(&out, 0, "key add");
    assert_eq!(objects(&repo, "keys").len(), 2);

    // One flipped byte in the key file the password belongs to.
    let path = repo.join("keys").join(&mine);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();

    for cache in [env.cache(), env.path("fresh-cache")] {
        let out = run(env.cmd_with_cache(&cache).args(["--json", "snapshots"]));
        expect_code(&out, 1, "snapshots with the key file damaged");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "key file keys/{mine} is damaged (its bytes do not match its name)"
            )),
            "{}",
            show(&out)
        );
        assert!(!err.contains("wrong password"), "{}", show(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("error JSON");
        assert_eq!(v["kind"], "Corrupt", "{v}");
    }
    // The other password still opens, and the damage is reported.
    let out = run(env
        .cmd()
        .env("COFFER_PASSWORD", "a second password")
        .arg("snapshots"));
    expect_code(&out, 0, "snapshots with the other password");
    assert!(
        text(&out.stderr).contains(&format!("keys/{mine}")),
        "{}",
        show(&out)
    );
}

#[test]
fn a_missing_config_is_named_and_init_is_not_suggested() {
    let env = repository();
    for f in objects(&env.repo(), "config") {
        std::fs::remove_file(f).unwrap();
    }
    let out = run(env.cmd().arg("snapshots"));
    expect_code(&out, 1, "snapshots without a config");
    let err = text(&out.stderr);
    assert!(
        err.contains("config") && err.contains("missing") && err.contains("sync"),
        "{}",
        show(&out)
    );
    assert!(!err.contains("coffer init"), "{}", show(&out));
    // One error line (besides the line that names the repository in use).
    assert_eq!(common::error_lines(&err), 1, "{}", show(&out));

    // An empty folder is no repository, and there `init` is the answer.
    let empty = Env::new();
    std::fs::create_dir_all(empty.repo()).unwrap();
    let out = run(empty.cmd().arg("snapshots"));
    expect_code(&out, 1, "snapshots in an empty folder");
    assert!(text(&out.stderr).contains("coffer init"), "{}", show(&out));
}

#[test]
fn empty_passwords_are_refused_from_every_source() {
    let env = Env::new();
    let empty_file = env.path("empty-password");
    std::fs::write(&empty_file, "\nsecond line\n").unwrap();
    let refused = |out: &Output, what: &str| {
        expect_code(out, 2, what);
        assert!(text(&out.stderr).contains("empty"), "{what}\n{}", show(out));
    };
    refused(
        &run(env.cmd().env("COFFER_PASSWORD", "").args(["init"])),
        "init with COFFER_PASSWORD empty",
    );
    refused(
        &run(env
            .cmd()
            .args(["--password-file"])
            .arg(&empty_file)
            .arg("init")),
        "init with an empty password file",
    );
    refused(
        &run(env.cmd().env("COFFER_NEW_PASSWORD", "").arg("init")),
        "init with COFFER_NEW_PASSWORD empty",
    );
    refused(
        &run(env
            .cmd()
            .arg("init")
            .arg("--new-password-file")
            .arg(&empty_file)),
        "init with an empty new-password file",
    );
    assert!(objects(&env.repo(), "keys").is_empty(), "a key was written");

    env.init();
    refused(
        &run(env
            .cmd()
            .env("COFFER_NEW_PASSWORD", "")
            .args(["key", "add"])),
        "key add with COFFER_NEW_PASSWORD empty",
    );
    refused(
        &run(env
            .cmd()
            .args(["key", "passwd", "--new-password-file"])
            .arg(&empty_file)),
        "key passwd with an empty new-password file",
    );
    refused(
        &run(env.cmd().env("COFFER_PASSWORD", "").arg("snapshots")),
        "snapshots with COFFER_PASSWORD empty",
    );
    assert_eq!(objects(&env.repo(), "keys").len(), 1);
}

#[test]
fn init_raises_a_tiny_kdf_to_the_minimum() {
    let env = Env::new();
    // Without the test suite's hook, as a user runs it.
    expect_code(
        &run(env
            .cmd()
            .env_remove("COFFER_TEST_TINY_KDF")
            .args(["init", "--kdf-memory-kib", "8"])),
        0,
        "init",
    );
    let key = std::fs::read(&objects(&env.repo(), "keys")[0]).unwrap();
    let kf = KeyFile::decode(&key).unwrap();
    assert_eq!((kf.kdf.memory_kib, kf.kdf.iterations), (19 * 1024, 2));
    // As much memory as that or more is kept as asked, with the default passes.
    let env = Env::new();
    let out = run(env.cmd().args(["init", "--kdf-memory-kib", "20000"]));
    expect_code(&out, 0, "init");
    let key = std::fs::read(&objects(&env.repo(), "keys")[0]).unwrap();
    let kf = KeyFile::decode(&key).unwrap();
    assert_eq!((kf.kdf.memory_kib, kf.kdf.iterations), (20000, 3));
}
