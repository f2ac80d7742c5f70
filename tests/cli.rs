//! The command line as users and scripts see it: stdin backups, snapshot selection
//! (`latest`, ID prefixes, `@TIME`), JSON output, diff, the disposable cache, keys,
//! excludes, stats, help and exit statuses. Every test runs the real binary.

mod common;
use common::{pseudo_random, Env};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

// ---------------------------------------------------------------------------------------
// Helpers: every run goes through `run`, which fails the test if anything panicked.

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

fn run(mut c: Command) -> Output {
    let out = c.output().expect("run coffer");
    assert!(
        !text(&out.stdout).contains("panicked") && !text(&out.stderr).contains("panicked"),
        "coffer panicked: {:?}\n{}",
        c.get_args().collect::<Vec<_>>(),
        describe(&out)
    );
    out
}

/// Run with `input` on stdin (written from another thread, as a pipe would).
fn run_stdin(mut c: Command, input: &[u8]) -> Output {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn coffer");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait coffer");
    writer.join().unwrap();
    assert!(
        !text(&out.stdout).contains("panicked") && !text(&out.stderr).contains("panicked"),
        "coffer panicked\n{}",
        describe(&out)
    );
    out
}

fn with(mut c: Command, args: &[&str]) -> Command {
    c.args(args);
    c
}

fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\n{}",
        describe(out)
    );
}

fn ok_cmd(c: Command) -> Vec<u8> {
    let args: Vec<_> = c.get_args().map(|a| a.to_owned()).collect();
    let out = run(c);
    expect_code(&out, 0, &format!("{args:?}"));
    out.stdout
}

fn json_cmd(mut c: Command) -> Value {
    c.arg("--json");
    let out = ok_cmd(c);
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("invalid JSON ({e}): {}", text(&out)))
}

/// `coffer ARGS` must exit 0; returns stdout.
fn ok(env: &Env, args: &[&str]) -> String {
    text(&ok_cmd(with(env.cmd(), args)))
}

fn ok_bytes(env: &Env, args: &[&str]) -> Vec<u8> {
    ok_cmd(with(env.cmd(), args))
}

/// `coffer --json ARGS` must exit 0 and print one JSON document.
fn json(env: &Env, args: &[&str]) -> Value {
    let mut c = env.cmd();
    c.arg("--json").args(args);
    let out = ok_cmd(c);
    serde_json::from_slice(&out)
        .unwrap_or_else(|e| panic!("coffer --json {args:?}: invalid JSON ({e}): {}", text(&out)))
}

/// `coffer ARGS` must exit with `code`; returns stderr.
fn fails(env: &Env, args: &[&str], code: i32) -> String {
    let out = run(with(env.cmd(), args));
    expect_code(&out, code, &format!("coffer {args:?}"));
    text(&out.stderr)
}

fn init(env: &Env) -> Value {
    json(env, &["init", "--kdf-memory-kib", "1024"])
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Back up paths with extra arguments (e.g. `--time`), returning the snapshot ID.
fn backup(env: &Env, paths: &[&Path], extra: &[&str]) -> String {
    let mut args = vec!["backup"];
    args.extend(paths.iter().map(|p| s(p)));
    args.extend_from_slice(extra);
    let v = json(env, &args);
    assert_eq!(v["exit_code"], 0, "{v}");
    let id = v["snapshot"].as_str().expect("snapshot id").to_string();
    assert_eq!(id.len(), 64, "{v}");
    id
}

fn stdin_backup(c: Command, name: &str, data: &[u8], extra: &[&str]) -> Value {
    let mut c = with(c, &["--json", "backup", "--stdin", "--stdin-name", name]);
    c.args(extra);
    let out = run_stdin(c, data);
    expect_code(&out, 0, "backup --stdin");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("backup --stdin: invalid JSON ({e}): {}", text(&out.stdout)))
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().filter(|l| !l.is_empty()).collect()
}

/// Paths listed by `ls --json`.
fn ls_paths(env: &Env, args: &[&str]) -> Vec<String> {
    let mut all = vec!["ls"];
    all.extend_from_slice(args);
    let v = json(env, &all);
    v["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// Where `restore --target T` puts snapshot path `p`.
fn restored(target: &Path, p: &Path) -> PathBuf {
    target.join(p.strip_prefix("/").unwrap())
}

/// Every `cache.sqlite` under a cache folder.
fn sqlite_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "cache.sqlite") {
                out.push(p);
            }
        }
    }
    walk(dir, &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// 1. stdin

#[test]
fn stdin_backup_dumps_exact_bytes() {
    let env = Env::new();
    init(&env);
    let data = pseudo_random(0x5eed, 2 * 1024 * 1024 + 12_345);
    let v = stdin_backup(env.cmd(), "db.sql", &data, &[]);
    let id = v["snapshot"].as_str().unwrap().to_string();
    assert_eq!(v["summary"]["total_bytes"], data.len() as u64, "{v}");

    // Relative and absolute names both find it; bytes are exact.
    assert!(
        ok_bytes(&env, &["dump", "latest", "db.sql"]) == data,
        "dump latest db.sql"
    );
    assert!(
        ok_bytes(&env, &["dump", &id, "/db.sql"]) == data,
        "dump ID /db.sql"
    );
    assert_eq!(lines(&ok(&env, &["ls", "latest"])), vec!["/db.sql"]);
    let snaps = json(&env, &["snapshots"]);
    assert_eq!(snaps[0]["paths"], serde_json::json!(["/db.sql"]));

    // The same stream again stores (almost) nothing new: the data deduplicates.
    let v2 = stdin_backup(env.cmd(), "db.sql", &data, &[]);
    let added = v2["summary"]["bytes_added_raw"].as_u64().unwrap();
    assert!(
        added < 4096,
        "second identical stream added {added} bytes: {v2}"
    );
    assert_eq!(json(&env, &["snapshots"]).as_array().unwrap().len(), 2);

    // An empty stream is a valid, empty file.
    stdin_backup(env.cmd(), "empty.bin", b"", &[]);
    assert!(ok_bytes(&env, &["dump", "latest", "empty.bin"]).is_empty());
    // A file that is not in the snapshot is an error, not empty output.
    let err = fails(&env, &["dump", "latest", "db.sql"], 1);
    assert!(err.contains("not in the snapshot"), "{err}");

    // --stdin needs a plain --stdin-name.
    fails(&env, &["backup", "--stdin"], 2);
    let out = run_stdin(
        with(env.cmd(), &["backup", "--stdin", "--stdin-name", "a/b"]),
        b"x",
    );
    expect_code(&out, 2, "--stdin-name with a slash");
    let out = run_stdin(
        with(env.cmd(), &["backup", "--stdin", "--stdin-name", ".."]),
        b"x",
    );
    expect_code(&out, 2, "--stdin-name ..");
}

// ---------------------------------------------------------------------------------------
// 2. --time history and snapshot selection

#[test]
fn time_history_and_snapshot_selection() {
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    let data = src.join("data.bin");
    let months = [
        ("jan", "2026-01-01T00:00", 1u64),
        ("feb", "2026-02-01", 2),
        ("mar", "2026-03-01T12:00:00Z", 3),
    ];
    let content = |m: u64| pseudo_random(m * 7919, 50_000 + m as usize * 1_111);
    let mut ids = Vec::new();
    for (name, time, m) in months {
        for (old, _, _) in months {
            let _ = std::fs::remove_file(src.join(format!("{old}.txt")));
        }
        write(&data, &content(m));
        write(&src.join(format!("{name}.txt")), name.as_bytes());
        ids.push(backup(&env, &[&src], &["--time", time]));
    }
    let (jan, feb, mar) = (&ids[0], &ids[1], &ids[2]);

    // The recorded times are the given ones (TZ=UTC).
    let snaps = json(&env, &["snapshots"]);
    let times: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        [
            "2026-01-01T00:00:00Z",
            "2026-02-01T00:00:00Z",
            "2026-03-01T12:00:00Z"
        ]
    );

    // @TIME: the newest snapshot at or before TIME.
    let feb_txt = s(&src.join("feb.txt")).to_string();
    let paths = ls_paths(&env, &["@2026-02-15"]);
    assert!(paths.contains(&feb_txt), "{paths:?}");
    assert!(
        !paths
            .iter()
            .any(|p| p.ends_with("jan.txt") || p.ends_with("mar.txt")),
        "{paths:?}"
    );
    assert_eq!(json(&env, &["ls", "@2026-02-15"])["snapshot"], feb.as_str());
    let listing = ok(&env, &["ls", "@2026-02-15"]);
    assert!(lines(&listing).contains(&feb_txt.as_str()), "{listing}");
    assert!(ok_bytes(&env, &["dump", "@2026-01-10", s(&data)]) == content(1));
    assert!(
        ok_bytes(&env, &["dump", "@2026-02-01", s(&data)]) == content(2),
        "at exactly TIME"
    );
    assert!(ok_bytes(&env, &["dump", "@2026-02-01 00:00", s(&data)]) == content(2));
    assert!(ok_bytes(&env, &["dump", "@2026-03-01T11:59:59Z", s(&data)]) == content(2));
    assert!(ok_bytes(&env, &["dump", "@2030-01-01", s(&data)]) == content(3));
    let err = fails(&env, &["ls", "@2025-01-01"], 1);
    assert!(err.contains("no snapshot at or before 2025-01-01"), "{err}");
    let err = fails(&env, &["dump", "@2025-12-31T23:59", s(&data)], 1);
    assert!(err.contains("no snapshot"), "{err}");
    fails(&env, &["ls", "@not-a-time"], 2);
    fails(&env, &["ls", "@"], 2);

    // latest is March.
    assert!(ok_bytes(&env, &["dump", "latest", s(&data)]) == content(3));
    assert_eq!(json(&env, &["ls", "latest"])["snapshot"], mar.as_str());

    // IDs: full, unique prefix, upper case.
    assert!(ok_bytes(&env, &["dump", jan, s(&data)]) == content(1));
    assert!(ok_bytes(&env, &["dump", &feb[..8], s(&data)]) == content(2));
    assert!(ok_bytes(&env, &["dump", &feb[..8].to_uppercase(), s(&data)]) == content(2));
    assert_eq!(json(&env, &["ls", &mar[..6]])["snapshot"], mar.as_str());
    // A hex prefix that matches nothing: a mistyped ID, a usage error (2) like an
    // ambiguous one.
    let missing = (0..16)
        .map(|d| format!("{d:x}"))
        .find(|d| ids.iter().all(|id| !id.starts_with(d.as_str())))
        .unwrap();
    let err = fails(&env, &["ls", &missing], 2);
    assert!(err.contains("no snapshot"), "{err}");
    // Neither hex nor a keyword: usage error (2).
    for bad in ["yesterday", "Latest", "", "xyz123", "12 34"] {
        let err = fails(&env, &["ls", bad], 2);
        assert!(err.contains("not a snapshot ID"), "{bad:?}: {err}");
    }

    // Restoring by @TIME brings back January's files.
    let target = env.path("out");
    ok(&env, &["restore", "@2026-01-31", "--target", s(&target)]);
    assert!(std::fs::read(restored(&target, &data)).unwrap() == content(1));
    assert_eq!(
        std::fs::read(restored(&target, &src.join("jan.txt"))).unwrap(),
        b"jan"
    );
    assert!(!restored(&target, &src.join("feb.txt")).exists());
}

#[test]
fn ambiguous_prefix_is_a_usage_error() {
    let env = Env::new();
    init(&env);
    // 17 snapshots: at least two IDs share their first hex digit.
    let mut ids = Vec::new();
    for i in 0..17 {
        let time = format!("2026-01-01T00:{i:02}");
        let v = stdin_backup(env.cmd(), "n", i.to_string().as_bytes(), &["--time", &time]);
        ids.push(v["snapshot"].as_str().unwrap().to_string());
    }
    let first = ids
        .iter()
        .map(|id| &id[..1])
        .find(|d| ids.iter().filter(|id| id.starts_with(d)).count() > 1)
        .unwrap();
    let err = fails(&env, &["ls", first], 2);
    assert!(err.contains("ambiguous"), "{err}");
    // Every full ID still picks its own snapshot.
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(ok(&env, &["dump", id, "n"]), i.to_string());
    }
}

// ---------------------------------------------------------------------------------------
// 3. snapshots --json

#[test]
fn snapshots_json_fields_tags_and_host() {
    let env = Env::new();
    init(&env);
    assert_eq!(json(&env, &["snapshots"]), serde_json::json!([]));
    let src = env.path("src");
    write(&src.join("f"), b"hello");
    let a = backup(
        &env,
        &[&src],
        &[
            "--tag",
            "daily",
            "--tag",
            "db",
            "--host",
            "alpha",
            "--time",
            "2026-05-01T10:00",
        ],
    );
    let b = backup(
        &env,
        &[&src],
        &["--host", "beta", "--time", "2026-05-02T10:00"],
    );
    let snaps = json(&env, &["snapshots"]);
    let list = snaps.as_array().expect("array");
    assert_eq!(list.len(), 2);
    for (snap, id) in list.iter().zip([&a, &b]) {
        for field in ["id", "time", "host", "tags", "paths", "summary"] {
            assert!(snap.get(field).is_some(), "missing {field}: {snap}");
        }
        assert_eq!(snap["id"], id.as_str());
        assert_eq!(snap["paths"], serde_json::json!([s(&src)]));
        assert!(snap["summary"]["total_bytes"].as_u64() == Some(5), "{snap}");
        assert!(snap["summary"].get("files_new").is_some(), "{snap}");
    }
    assert_eq!(list[0]["host"], "alpha");
    assert_eq!(list[0]["tags"], serde_json::json!(["daily", "db"]));
    assert_eq!(list[0]["time"], "2026-05-01T10:00:00Z");
    assert_eq!(list[1]["host"], "beta");
    assert_eq!(list[1]["tags"], serde_json::json!([]));
    assert_eq!(list[0]["summary"]["files_new"], 1);

    // The table shows the same.
    let table = ok(&env, &["snapshots"]);
    assert!(
        table.contains(&a[..8]) && table.contains(&b[..8]),
        "{table}"
    );
    assert!(table.contains("alpha") && table.contains("beta"), "{table}");
    assert!(table.contains("daily,db"), "{table}");
    assert!(table.contains("2026-05-01 10:00:00"), "{table}");
}

// ---------------------------------------------------------------------------------------
// 4. diff

#[test]
fn diff_shows_added_removed_modified() {
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    let p = |r: &str| src.join(r);
    write(&p("keep.txt"), b"same");
    write(&p("mod.txt"), b"before");
    write(&p("gone.txt"), b"bye");
    write(&p("olddir/inner.txt"), b"x");
    let a = backup(&env, &[&src], &["--time", "2026-01-01"]);
    write(&p("mod.txt"), b"after, longer");
    std::fs::remove_file(p("gone.txt")).unwrap();
    std::fs::remove_dir_all(p("olddir")).unwrap();
    write(&p("new.txt"), b"hi");
    write(&p("newdir/n.txt"), b"y");
    let b = backup(&env, &[&src], &["--time", "2026-01-02"]);

    let out = ok(&env, &["diff", &a, &b]);
    let got = lines(&out);
    let line = |c: &str, r: &str| format!("{c} {}", s(&p(r)));
    for want in [
        line("+", "new.txt"),
        line("+", "newdir"),
        line("+", "newdir/n.txt"),
        line("-", "gone.txt"),
        line("-", "olddir"),
        line("-", "olddir/inner.txt"),
        line("M", "mod.txt"),
    ] {
        assert!(got.contains(&want.as_str()), "missing {want:?} in\n{out}");
    }
    assert!(!out.contains("keep.txt"), "{out}");

    let v = json(&env, &["diff", &a[..10], "latest"]);
    assert_eq!(v["from"], a.as_str());
    assert_eq!(v["to"], b.as_str());
    let changes: Vec<(String, String)> = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(changes.len(), 7, "{changes:?}");
    for (c, r) in [
        ("+", "new.txt"),
        ("-", "gone.txt"),
        ("M", "mod.txt"),
        ("+", "newdir/n.txt"),
    ] {
        assert!(
            changes.contains(&(c.to_string(), s(&p(r)).to_string())),
            "missing {c} {r}: {changes:?}"
        );
    }

    // Reversed, additions become removals; a snapshot against itself has no changes.
    let rev = ok(&env, &["diff", &b, &a]);
    assert!(
        lines(&rev).contains(&line("-", "new.txt").as_str()),
        "{rev}"
    );
    assert!(
        lines(&rev).contains(&line("+", "gone.txt").as_str()),
        "{rev}"
    );
    let same = json(&env, &["diff", &a, &a]);
    assert_eq!(same["changes"], serde_json::json!([]));
    fails(&env, &["diff", &a], 2);
}

// ---------------------------------------------------------------------------------------
// 5. the cache is disposable

fn tree_fixture(env: &Env) -> (PathBuf, Vec<u8>) {
    let src = env.path("src");
    let big = pseudo_random(42, 400_000);
    write(&src.join("big.bin"), &big);
    write(&src.join("small.txt"), b"small");
    (src, big)
}

#[test]
fn cache_deleted_between_commands() {
    let env = Env::new();
    init(&env);
    let (src, big) = tree_fixture(&env);
    backup(&env, &[&src], &["--time", "2026-01-01"]);
    let before = json(&env, &["snapshots"]);
    assert!(
        !sqlite_files(&env.cache()).is_empty(),
        "the cache was never written"
    );

    std::fs::remove_dir_all(env.cache()).unwrap();
    assert_eq!(json(&env, &["snapshots"]), before);
    std::fs::remove_dir_all(env.cache()).unwrap();
    let target = env.path("out");
    ok(&env, &["restore", "latest", "--target", s(&target)]);
    assert!(std::fs::read(restored(&target, &src.join("big.bin"))).unwrap() == big);

    // A backup after losing the cache still deduplicates against the repository.
    std::fs::remove_dir_all(env.cache()).unwrap();
    let v = json(&env, &["backup", s(&src), "--time", "2026-01-02"]);
    assert!(
        v["summary"]["bytes_added_raw"].as_u64().unwrap() < 4096,
        "data stored twice after the cache was deleted: {v}"
    );
    std::fs::remove_dir_all(env.cache()).unwrap();
    assert_eq!(json(&env, &["check", "--read-data"])["ok"], true);
}

#[test]
fn two_machines_share_a_repository() {
    let env = Env::new();
    init(&env);
    let cache1 = env.path("cache-machine1");
    let cache2 = env.path("cache-machine2");
    let m1 = |args: &[&str]| with(env.cmd_with_cache(&cache1), args);
    let m2 = |args: &[&str]| with(env.cmd_with_cache(&cache2), args);

    let src = env.path("src");
    let first = pseudo_random(1, 300_000);
    write(&src.join("f.bin"), &first);
    let a = json_cmd(m1(&["backup", s(&src), "--time", "2026-01-01"]));
    let list = json_cmd(m2(&["snapshots"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], a["snapshot"]);

    let second = pseudo_random(2, 350_000);
    write(&src.join("f.bin"), &second);
    write(&src.join("g.txt"), b"new file");
    let b = json_cmd(m1(&["backup", s(&src), "--time", "2026-01-02"]));
    // Machine 2's cache is stale: it must see the new snapshot and the new packs.
    let list = json_cmd(m2(&["snapshots"]));
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    assert_eq!(list[1]["id"], b["snapshot"]);
    let target = env.path("out2");
    ok_cmd(m2(&["restore", "latest", "--target", s(&target)]));
    assert!(std::fs::read(restored(&target, &src.join("f.bin"))).unwrap() == second);
    assert_eq!(
        std::fs::read(restored(&target, &src.join("g.txt"))).unwrap(),
        b"new file"
    );
    assert!(
        ok_cmd(m2(&[
            "dump",
            a["snapshot"].as_str().unwrap(),
            s(&src.join("f.bin"))
        ])) == first
    );

    // Machine 2 backs up; machine 1 (whose cache knows only its own work) restores it.
    let third = pseudo_random(3, 200_000);
    write(&src.join("f.bin"), &third);
    json_cmd(m2(&["backup", s(&src), "--time", "2026-01-03"]));
    assert!(ok_cmd(m1(&["dump", "latest", s(&src.join("f.bin"))])) == third);
    assert_eq!(json_cmd(m1(&["snapshots"])).as_array().unwrap().len(), 3);
    assert_eq!(json_cmd(m1(&["stats"]))["snapshots"], 3);
    assert_eq!(json_cmd(m2(&["check", "--read-data"]))["ok"], true);
}

#[test]
fn damaged_cache_is_rebuilt() {
    let env = Env::new();
    init(&env);
    let (src, big) = tree_fixture(&env);
    backup(&env, &[&src], &["--time", "2026-01-01"]);
    let before = json(&env, &["snapshots"]);
    let files = sqlite_files(&env.cache());
    assert_eq!(files.len(), 1, "{files:?}");
    let db = &files[0];
    let good = std::fs::read(db).unwrap();

    let damage: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", pseudo_random(9, 64 * 1024)),
        ("empty", vec![]),
        ("truncated", good[..good.len().min(4096) / 2].to_vec()),
        (
            "header kept, body garbage",
            [
                &good[..100.min(good.len())],
                &pseudo_random(10, 32 * 1024)[..],
            ]
            .concat(),
        ),
    ];
    for (i, (what, bytes)) in damage.into_iter().enumerate() {
        std::fs::write(db, &bytes).unwrap();
        assert_eq!(json(&env, &["snapshots"]), before, "cache {what}");
        std::fs::write(db, &bytes).unwrap();
        let target = env.path(&format!("out{i}"));
        ok(&env, &["restore", "latest", "--target", s(&target)]);
        assert!(
            std::fs::read(restored(&target, &src.join("big.bin"))).unwrap() == big,
            "cache {what}"
        );
        std::fs::write(db, &bytes).unwrap();
        assert_eq!(json(&env, &["stats"])["snapshots"], 1, "cache {what}");
        std::fs::write(db, &bytes).unwrap();
        assert_eq!(json(&env, &["check"])["ok"], true, "cache {what}");
    }
    // The rebuilt cache is a real one again.
    let files = sqlite_files(&env.cache());
    assert!(std::fs::read(&files[0])
        .unwrap()
        .starts_with(b"SQLite format 3\0"));

    // Another repository's cache copied over this one's is not trusted.
    let other = Env::new();
    init(&other);
    stdin_backup(other.cmd(), "x", b"other repository", &[]);
    let theirs = sqlite_files(&other.cache());
    std::fs::copy(&theirs[0], db).unwrap();
    assert_eq!(json(&env, &["snapshots"]), before);
    std::fs::copy(&theirs[0], db).unwrap();
    assert!(ok_bytes(&env, &["dump", "latest", s(&src.join("big.bin"))]) == big);

    // Backups after a damaged cache work and still deduplicate.
    std::fs::write(db, pseudo_random(11, 5000)).unwrap();
    let v = json(&env, &["backup", s(&src), "--time", "2026-01-02"]);
    assert!(
        v["summary"]["bytes_added_raw"].as_u64().unwrap() < 4096,
        "{v}"
    );
}

#[test]
fn no_cache_works_and_writes_no_cache() {
    let env = Env::new();
    // `--cache-dir` is also given (by `cmd`): `--no-cache` wins.
    let nc = |args: &[&str]| with(env.cmd(), &[&["--no-cache"], args].concat());
    json_cmd(nc(&["init", "--kdf-memory-kib", "1024"]));
    let (src, big) = tree_fixture(&env);
    let a = json_cmd(nc(&["backup", s(&src), "--time", "2026-01-01"]));
    write(&src.join("small.txt"), b"changed");
    json_cmd(nc(&["backup", s(&src), "--time", "2026-01-02"]));
    assert_eq!(json_cmd(nc(&["snapshots"])).as_array().unwrap().len(), 2);
    let target = env.path("out");
    ok_cmd(nc(&[
        "restore",
        a["snapshot"].as_str().unwrap(),
        "--target",
        s(&target),
    ]));
    assert!(std::fs::read(restored(&target, &src.join("big.bin"))).unwrap() == big);
    assert_eq!(
        std::fs::read(restored(&target, &src.join("small.txt"))).unwrap(),
        b"small"
    );
    let d = json_cmd(nc(&["diff", a["snapshot"].as_str().unwrap(), "latest"]));
    assert_eq!(d["changes"].as_array().unwrap().len(), 1, "{d}");
    assert_eq!(json_cmd(nc(&["check", "--read-data"]))["ok"], true);
    assert_eq!(json_cmd(nc(&["stats"]))["snapshots"], 2);
    json_cmd(nc(&["key", "list"]));
    assert!(
        !env.cache().exists(),
        "--no-cache wrote {}",
        env.cache().display()
    );
    assert!(
        !env.path(".cache").exists(),
        "--no-cache wrote the default cache"
    );
    // The cached and uncached views agree.
    assert_eq!(json(&env, &["snapshots"]), json_cmd(nc(&["snapshots"])));
}

// ---------------------------------------------------------------------------------------
// 6. keys

fn with_passwords(env: &Env, password: &str, new: Option<&str>, args: &[&str]) -> Output {
    let mut c = env.cmd();
    c.env("COFFER_PASSWORD", password);
    if let Some(n) = new {
        c.env("COFFER_NEW_PASSWORD", n);
    }
    c.args(args);
    run(c)
}

fn key_ids(env: &Env, password: &str) -> Vec<(String, bool)> {
    let out = with_passwords(env, password, None, &["--json", "key", "list"]);
    expect_code(&out, 0, "key list");
    let v: Value = serde_json::from_slice(&out.stdout).expect("key list JSON");
    v.as_array()
        .expect("array")
        .iter()
        .map(|k| {
            (
                k["id"].as_str().unwrap().to_string(),
                k["current"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn keys_add_remove_passwd() {
    let env = Env::new();
    let k1 = init(&env)["key_id"].as_str().unwrap().to_string();
    let pw = common::PASSWORD;
    assert_eq!(key_ids(&env, pw), vec![(k1.clone(), true)]);
    let table = ok(&env, &["key", "list"]);
    assert!(table.contains(&format!("* {}", &k1[..8])), "{table}");
    stdin_backup(env.cmd(), "secret", b"the data", &[]);

    // key add
    let out = with_passwords(&env, pw, Some("xyz"), &["--json", "key", "add"]);
    expect_code(&out, 0, "key add");
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    let k2 = added["key_id"].as_str().unwrap().to_string();
    assert_ne!(k1, k2);
    let keys = key_ids(&env, pw);
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&(k1.clone(), true)) && keys.contains(&(k2.clone(), false)));
    // The new password opens the repository, with the new key.
    let keys = key_ids(&env, "xyz");
    assert!(keys.contains(&(k2.clone(), true)), "{keys:?}");
    let out = with_passwords(&env, "xyz", None, &["dump", "latest", "secret"]);
    expect_code(&out, 0, "dump with the new password");
    assert_eq!(out.stdout, b"the data");

    // The key in use cannot be removed.
    let out = with_passwords(&env, "xyz", None, &["key", "remove", &k2]);
    assert!(
        !out.status.success(),
        "removed the key in use\n{}",
        describe(&out)
    );
    assert!(text(&out.stderr).contains("in use") || text(&out.stderr).contains("opened with"));
    assert_eq!(key_ids(&env, "xyz").len(), 2);
    // A key that does not exist.
    let out = with_passwords(&env, "xyz", None, &["key", "remove", "ffffffffffff"]);
    let out2 = with_passwords(&env, "xyz", None, &["key", "remove", "00000000000"]);
    assert!(
        out.status.code() == Some(1) || out2.status.code() == Some(1),
        "{}\n{}",
        describe(&out),
        describe(&out2)
    );

    // Remove the first key while opened with the new password (by prefix).
    let out = with_passwords(&env, "xyz", None, &["--json", "key", "remove", &k1[..10]]);
    expect_code(&out, 0, "key remove");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["key_id"], k1.as_str());
    assert_eq!(key_ids(&env, "xyz"), vec![(k2.clone(), true)]);
    // The old password no longer opens anything.
    let out = with_passwords(&env, pw, None, &["snapshots"]);
    expect_code(&out, 1, "old password after its key was removed");
    assert!(text(&out.stderr).contains("password"), "{}", describe(&out));

    // key passwd: new key in, old key out.
    let out = with_passwords(&env, "xyz", Some("newer"), &["--json", "key", "passwd"]);
    expect_code(&out, 0, "key passwd");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let k3 = v["key_id"].as_str().unwrap().to_string();
    assert_eq!(key_ids(&env, "newer"), vec![(k3, true)]);
    let out = with_passwords(&env, "xyz", None, &["snapshots"]);
    expect_code(&out, 1, "old password after key passwd");
    assert!(text(&out.stderr).contains("password"), "{}", describe(&out));
    let out = with_passwords(&env, "newer", None, &["dump", "latest", "secret"]);
    expect_code(&out, 0, "dump after key passwd");
    assert_eq!(out.stdout, b"the data");
    // The last key cannot be removed (it is also the one in use).
    let k = key_ids(&env, "newer")[0].0.clone();
    let out = with_passwords(&env, "newer", None, &["key", "remove", &k]);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(key_ids(&env, "newer").len(), 1);
}

#[test]
fn wrong_or_missing_password_fails_with_1() {
    let env = Env::new();
    init(&env);
    let out = with_passwords(&env, "not it", None, &["snapshots"]);
    expect_code(&out, 1, "wrong password");
    assert!(text(&out.stderr).contains("password"), "{}", describe(&out));
    let out = with_passwords(&env, "not it", None, &["--json", "snapshots"]);
    expect_code(&out, 1, "wrong password --json");
    let v: Value = serde_json::from_slice(&out.stdout).expect("error JSON");
    assert_eq!(v["exit_code"], 1);
    // No password at all, and no terminal to ask on.
    let mut c = env.cmd();
    c.env_remove("COFFER_PASSWORD").arg("snapshots");
    let out = run(c);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(text(&out.stderr).contains("password"), "{}", describe(&out));
    // A password file works (first line).
    let pf = env.path("pw");
    std::fs::write(&pf, format!("{}\nignored\n", common::PASSWORD)).unwrap();
    let mut c = env.cmd();
    c.env_remove("COFFER_PASSWORD")
        .args(["--password-file", s(&pf), "snapshots"]);
    ok_cmd(c);
}

// ---------------------------------------------------------------------------------------
// 7. excludes, stats, help, JSON everywhere

#[test]
fn exclude_skips_matching_files() {
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    for f in [
        "a.log",
        "b.txt",
        "sub/c.log",
        "sub/d.txt",
        "skip/e.txt",
        "logs.d/f.txt",
    ] {
        write(&src.join(f), f.as_bytes());
    }
    let skip = format!("{}/skip", s(&src));
    backup(&env, &[&src], &["--exclude", "*.log", "--exclude", &skip]);
    let paths = ls_paths(&env, &["latest"]);
    let has = |r: &str| paths.contains(&s(&src.join(r)).to_string());
    assert!(
        has("b.txt") && has("sub/d.txt") && has("logs.d/f.txt"),
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p.ends_with(".log")), "{paths:?}");
    assert!(!has("skip") && !has("skip/e.txt"), "{paths:?}");
    // ls PATH limits the listing.
    let sub = ls_paths(&env, &["latest", s(&src.join("sub"))]);
    assert_eq!(
        sub,
        vec![
            s(&src.join("sub")).to_string(),
            s(&src.join("sub/d.txt")).to_string()
        ]
    );
    // A bad pattern is a usage error.
    fails(&env, &["backup", s(&src), "--exclude", "[oops"], 2);
}

#[test]
fn stats_json_reports_snapshots_and_sizes() {
    let env = Env::new();
    init(&env);
    let (src, big) = tree_fixture(&env);
    backup(&env, &[&src], &["--time", "2026-01-01"]);
    backup(&env, &[&src], &["--time", "2026-01-02"]);
    let st = json(&env, &["stats"]);
    let n = |k: &str| st[k].as_u64().unwrap_or_else(|| panic!("{k}: {st}"));
    let total = (big.len() + b"small".len()) as u64;
    assert_eq!(n("snapshots"), 2);
    assert_eq!(n("total_restore_bytes"), 2 * total);
    assert!(
        n("unique_raw_bytes") >= total && n("unique_raw_bytes") < total + 16_384,
        "{st}"
    );
    assert!(
        n("unique_stored_bytes") > 0 && n("packs") >= 1 && n("data_blobs") >= 2,
        "{st}"
    );
    assert!(n("repository_bytes") >= n("unique_stored_bytes"), "{st}");
    let dedup = st["dedup_ratio"].as_f64().unwrap();
    assert!(dedup > 1.9 && dedup <= 2.0, "{st}");
    let text = ok(&env, &["stats"]);
    assert!(text.contains("snapshots:") && text.contains('2'), "{text}");
}

const COMMANDS: [&str; 11] = [
    "init",
    "backup",
    "snapshots",
    "ls",
    "restore",
    "dump",
    "diff",
    "check",
    "forget",
    "key",
    "stats",
];

#[test]
fn help_lists_every_command() {
    let env = Env::new();
    let out = run(with(env.cmd(), &["--help"]));
    expect_code(&out, 0, "--help");
    let help = text(&out.stdout);
    for c in COMMANDS {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{c} ")) || l.trim() == c),
            "--help does not list {c}:\n{help}"
        );
    }
    for c in COMMANDS {
        let out = run(with(env.cmd(), &[c, "--help"]));
        expect_code(&out, 0, &format!("{c} --help"));
    }
    expect_code(&run(with(env.cmd(), &["-h"])), 0, "-h");
    expect_code(&run(with(env.cmd(), &["help", "backup"])), 0, "help backup");
    let out = run(with(env.cmd(), &["--version"]));
    expect_code(&out, 0, "--version");
    assert!(text(&out.stdout).contains("coffer"));
}

#[test]
fn every_command_prints_json() {
    let env = Env::new();
    let v = init(&env);
    assert!(
        v["repository_id"].is_string() && v["key_id"].is_string(),
        "{v}"
    );
    let src = env.path("src");
    write(&src.join("f"), b"one");
    let b1 = json(&env, &["backup", s(&src), "--time", "2026-01-01"]);
    assert!(
        b1["snapshot"].is_string() && b1["summary"].is_object(),
        "{b1}"
    );
    write(&src.join("g"), b"two");
    let b2 = json(&env, &["backup", s(&src), "--time", "2026-01-02"]);
    assert_eq!(b2["parent"], b1["snapshot"], "{b2}");
    let stdin = stdin_backup(env.cmd(), "s", b"stream", &[]);
    assert!(stdin["snapshot"].is_string());

    assert!(json(&env, &["snapshots"]).is_array());
    let ls = json(&env, &["ls", b2["snapshot"].as_str().unwrap()]);
    assert!(
        ls["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "file"),
        "{ls}"
    );
    let long = json(&env, &["ls", "--long", "latest"]);
    assert!(long["entries"].is_array());
    let d = json(
        &env,
        &[
            "diff",
            b1["snapshot"].as_str().unwrap(),
            b2["snapshot"].as_str().unwrap(),
        ],
    );
    assert_eq!(
        d["changes"],
        serde_json::json!([{"change": "+", "path": s(&src.join("g"))}])
    );
    let c = json(&env, &["check"]);
    assert_eq!(c["ok"], true, "{c}");
    assert_eq!(c["exit_code"], 0);
    assert_eq!(json(&env, &["check", "--read-data"])["ok"], true);
    assert_eq!(
        json(&env, &["check", "--read-data-subset", "50%"])["ok"],
        true
    );
    assert!(json(&env, &["stats"])["snapshots"].is_u64());
    assert!(json(&env, &["key", "list"]).is_array());
    let target = env.path("out");
    let r = json(&env, &["restore", "@2026-01-02", "--target", s(&target)]);
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(
        std::fs::read(restored(&target, &src.join("g"))).unwrap(),
        b"two"
    );
    // --json also works after the subcommand, and with -q.
    assert!(json(&env, &["snapshots", "-q"]).is_array());
    let mut c = env.cmd();
    c.args(["stats", "--json"]);
    let out = ok_cmd(c);
    serde_json::from_slice::<Value>(&out).expect("stats --json after the subcommand");

    // Failures print a JSON error document with the exit code.
    let out = run(with(env.cmd(), &["--json", "ls", "@2025-01-01"]));
    expect_code(&out, 1, "--json ls @2025-01-01");
    let v: Value = serde_json::from_slice(&out.stdout).expect("error JSON");
    assert_eq!(v["exit_code"], 1);
    assert!(v["error"].as_str().unwrap().contains("no snapshot"), "{v}");
    let out = run(with(env.cmd(), &["--json", "ls", "nonsense"]));
    expect_code(&out, 2, "--json ls nonsense");
    let v: Value = serde_json::from_slice(&out.stdout).expect("error JSON");
    assert_eq!(v["exit_code"], 2);
}

// ---------------------------------------------------------------------------------------
// 8. exit statuses

#[test]
fn usage_errors_exit_2() {
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    write(&src.join("f"), b"x");
    backup(&env, &[&src], &[]);
    let t = s(&env.path("t")).to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec![],
        vec!["--bogus"],
        vec!["--bogus", "snapshots"],
        vec!["snapshots", "--bogus"],
        vec!["frobnicate"],
        vec!["backup"],
        vec!["backup", "--stdin"],
        vec!["backup", s(&src), "--stdin", "--stdin-name", "x"],
        vec!["backup", s(&src), "--time", "next tuesday"],
        vec!["backup", s(&src), "--parent", "not-an-id"],
        vec!["ls"],
        vec!["ls", "latest", "/", "extra"],
        vec!["restore", "latest"],
        vec!["restore", "--target", &t],
        vec!["dump", "latest"],
        vec!["dump", "latest", "/"],
        vec!["diff", "latest"],
        vec!["check", "--read-data-subset", "150"],
        vec!["check", "--read-data-subset", "lots"],
        vec!["key"],
        vec!["key", "frob"],
        vec!["key", "remove"],
        vec!["stats", "extra"],
        vec!["init", "--no-such-flag"],
    ];
    for args in &cases {
        let out = run(with(env.cmd(), args));
        expect_code(&out, 2, &format!("coffer {args:?}"));
        assert!(!out.stderr.is_empty(), "{args:?}: no message");
    }
    // Dumping a directory is a usage error too.
    let out = run(with(env.cmd(), &["dump", "latest", s(&src)]));
    expect_code(&out, 2, "dump of a directory");

    // No repository given at all.
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    c.env_clear()
        .env("HOME", env.path(""))
        .env("COFFER_PASSWORD", "x")
        .arg("snapshots")
        .stdin(Stdio::null());
    let out = run(c);
    expect_code(&out, 2, "no --repo");
    assert!(text(&out.stderr).contains("--repo"), "{}", describe(&out));
}

#[test]
fn failures_exit_1() {
    let env = Env::new();
    // No repository at the path yet.
    let err = fails(&env, &["snapshots"], 1);
    assert!(
        err.contains("no repository") || err.contains("init"),
        "{err}"
    );
    init(&env);
    // No snapshots yet.
    let err = fails(&env, &["ls", "latest"], 1);
    assert!(err.contains("no snapshots"), "{err}");
    // init refuses to overwrite.
    let err = fails(&env, &["init", "--kdf-memory-kib", "1024"], 1);
    assert!(err.contains("already"), "{err}");
    let src = env.path("src");
    write(&src.join("f"), b"x");
    backup(&env, &[&src], &[]);
    // A path not in the snapshot.
    let err = fails(&env, &["dump", "latest", "/no/such/file"], 1);
    assert!(err.contains("not in the snapshot"), "{err}");
    // A missing source path: the backup finishes without it (exit 3), or fails (1).
    let out = run(with(env.cmd(), &["backup", s(&env.path("does-not-exist"))]));
    assert!(
        matches!(out.status.code(), Some(1) | Some(3)),
        "{}",
        describe(&out)
    );
}

/// Run with stdout already closed by its reader (like `coffer ... | head -0`).
fn run_closed_stdout(mut c: Command) -> Output {
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn coffer");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait coffer")
}

#[test]
fn closed_or_full_stdout_does_not_panic() {
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    write(&src.join("a"), b"a");
    let a = backup(&env, &[&src], &["--time", "2026-01-01"]);
    for i in 0..200 {
        write(&src.join(format!("f{i}")), i.to_string().as_bytes());
    }
    let b = backup(&env, &[&src], &["--time", "2026-01-02"]);
    let cases: Vec<Vec<&str>> = vec![
        vec!["snapshots"],
        vec!["--json", "snapshots"],
        vec!["diff", &a, &b],
        vec!["--json", "diff", &a, &b],
        vec!["ls", "latest"],
        vec!["--json", "ls", "latest"],
        vec!["stats"],
        vec!["--json", "stats"],
        vec!["check"],
        vec!["key", "list"],
    ];
    for args in &cases {
        // The reader went away: no panic, no error (the reader chose to stop).
        let out = run_closed_stdout(with(env.cmd(), args));
        assert!(
            !text(&out.stderr).contains("panicked"),
            "{args:?} | head: {}",
            describe(&out)
        );
        expect_code(&out, 0, &format!("{args:?} with stdout closed"));
        // The output could not be written: a failure, reported, not a panic.
        let mut c = with(env.cmd(), args);
        c.stdout(std::fs::File::create("/dev/full").expect("/dev/full"));
        let out = run(c);
        expect_code(&out, 1, &format!("{args:?} > /dev/full"));
        assert!(
            text(&out.stderr).contains("writing output"),
            "{}",
            describe(&out)
        );
    }
    // dump into a closed pipe stops without panicking.
    let out = run_closed_stdout(with(env.cmd(), &["dump", "latest", s(&src.join("f1"))]));
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        describe(&out)
    );
    assert_ne!(out.status.code(), Some(101), "{}", describe(&out));
}

#[test]
fn repository_from_env_and_named_url() {
    let env = Env::new();
    init(&env);
    stdin_backup(env.cmd(), "x", b"via --repo", &[]);
    let base = |c: &mut Command| {
        c.env_clear()
            .env("HOME", env.path(""))
            .env("TZ", "UTC")
            .env("COFFER_PASSWORD", common::PASSWORD)
            .arg("--cache-dir")
            .arg(env.cache())
            .stdin(Stdio::null());
    };
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    base(&mut c);
    c.env("COFFER_REPOSITORY", env.repo())
        .args(["dump", "latest", "x"]);
    assert_eq!(ok_cmd(c), b"via --repo");
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    base(&mut c);
    c.arg("-r")
        .arg(format!("main={}", s(&env.repo())))
        .args(["dump", "latest", "x"]);
    assert_eq!(ok_cmd(c), b"via --repo");
}

#[test]
fn diff_type_and_metadata_changes_and_partial_backup() {
    let env = Env::new();
    init(&env);
    let src = env.path("src");
    write(&src.join("kind"), b"a file");
    write(&src.join("meta"), b"same bytes");
    let a = backup(&env, &[&src], &["--time", "2026-01-01"]);
    std::fs::remove_file(src.join("kind")).unwrap();
    write(&src.join("kind/inside"), b"now a dir");
    let f = std::fs::File::options()
        .write(true)
        .open(src.join("meta"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    drop(f);
    let b = backup(&env, &[&src], &["--time", "2026-01-02"]);
    let out = ok(&env, &["diff", &a, &b]);
    let got = lines(&out);
    assert!(
        got.contains(&format!("T {}", s(&src.join("kind"))).as_str()),
        "{out}"
    );
    assert!(
        got.contains(&format!("U {}", s(&src.join("meta"))).as_str()),
        "{out}"
    );
    assert!(!got.iter().any(|l| l.starts_with("M ")), "{out}");

    // Some sources missing: the snapshot is saved with the rest, exit 3.
    let missing = env.path("missing");
    let mut c = env.cmd();
    c.args(["--json", "backup", s(&src), s(&missing)]);
    let out = run(c);
    expect_code(&out, 3, "backup with a missing source");
    let v: Value = serde_json::from_slice(&out.stdout).expect("backup JSON");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["summary"]["read_errors"], 1, "{v}");
    assert!(ok_bytes(&env, &["dump", "latest", s(&src.join("meta"))]) == b"same bytes");
}

/// `coffer.toml`'s [repository] section gives the regions and password file when neither
/// flags nor environment do; two folder regions then get the same objects. A mistake in
/// the file is a usage error naming the line and the field.
#[test]
fn config_file_gives_regions_and_password() {
    let env = Env::new();
    let (a, b) = (env.path("region-a"), env.path("region-b"));
    let pw = env.path("password");
    std::fs::write(&pw, "from-the-config-file\n").unwrap();
    let cfg = env.path("coffer.toml");
    std::fs::write(
        &cfg,
        format!(
            "[repository]\nregions = [\"a={}\", \"b={}\"]\npassword_file = \"{}\"\n\n[[job]]\nname = \"app\"\n",
            a.display(),
            b.display(),
            pw.display()
        ),
    )
    .unwrap();
    let coffer = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", env.dir.path())
            .arg("--config")
            .arg(&cfg)
            .arg("--cache-dir")
            .arg(env.cache())
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = coffer(&["init", "--kdf-memory-kib", "1024"]);
    assert_eq!(code, Some(0), "{err}");
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), pseudo_random(3, 100_000)).unwrap();
    let (code, _, err) = coffer(&["backup", src.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let relative = |root: &std::path::Path| -> Vec<(std::path::PathBuf, Vec<u8>)> {
        common::repo_listing(root)
            .into_iter()
            .map(|(p, bytes)| (p.strip_prefix(root).unwrap().to_path_buf(), bytes))
            .collect()
    };
    assert!(
        relative(&a) == relative(&b),
        "both regions hold the same objects"
    );
    assert!(!common::packs(&a).is_empty());
    // The structural region check needs no password, and finds them in sync.
    let (code, out, err) = coffer(&["sync", "--dry-run"]);
    assert_eq!(code, Some(0), "{out}{err}");
    // COFFER_PASSWORD comes before the file's password_file (coffer takes it out of its
    // environment at start, so that no child inherits it; it must still count).
    let with_env = |password: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", env.dir.path())
            .env("COFFER_PASSWORD", password)
            .arg("--config")
            .arg(&cfg)
            .arg("--cache-dir")
            .arg(env.cache())
            .arg("snapshots")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = with_env("not-the-password");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a wrong COFFER_PASSWORD is used"
    );
    let out = with_env("from-the-config-file");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A typo in the file: exit 2, with the line and the field.
    std::fs::write(
        &cfg,
        "[repository]\nregions = [\"/x\"]\npasword_file = \"/p\"\n",
    )
    .unwrap();
    let (code, _, err) = coffer(&["snapshots"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("line 3") && err.contains("pasword_file"),
        "{err}"
    );
}

/// Newcomer review 5: `--read-data-subset 10%` of a repository of two packs read none of them
/// and said "no problems found"; any share above zero reads at least one pack.
#[test]
fn a_small_read_data_subset_reads_at_least_one_pack() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.bin"), pseudo_random(1, 200_000)).unwrap();
    env.backup(&[&src]);
    std::fs::write(src.join("b.bin"), pseudo_random(2, 200_000)).unwrap();
    env.backup(&[&src]);
    let packs = common::packs(&env.repo()).len() as u64;
    assert!(
        (1..10).contains(&packs),
        "a small repository: {packs} packs"
    );
    // Several runs, since the packs are chosen at random each time.
    for _ in 0..5 {
        let c = json(&env, &["check", "--read-data-subset", "10%"]);
        assert_eq!(c["ok"], true, "{c}");
        assert_eq!(c["report"]["packs"], packs, "{c}");
        assert_eq!(c["report"]["packs_read"], 1, "{c}");
    }
    let all = json(&env, &["check", "--read-data-subset", "100%"]);
    assert_eq!(all["report"]["packs_read"], packs, "{all}");
    let none = json(&env, &["check", "--read-data-subset", "0"]);
    assert_eq!(none["report"]["packs_read"], 0, "{none}");
    let out = text(&ok_cmd(with(
        env.cmd(),
        &["check", "--read-data-subset", "1"],
    )));
    assert!(out.contains("(1 read in full)"), "{out}");
}

/// Newcomer review 2: a cache folder that cannot be made (a service user whose HOME is
/// /nonexistent, a --cache-dir below a file) stopped every command. As with restic, it is a
/// warning that names the folder and the way out, and the command works without a cache.
#[test]
fn a_cache_folder_that_cannot_be_made_is_a_warning() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"kept without a cache").unwrap();
    let blocker = env.path("a-file");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let cache = blocker.join("cache");
    let warned = |out: &Output| {
        let err = text(&out.stderr);
        assert!(
            err.contains("without a local cache")
                && err.contains(&cache.display().to_string())
                && err.contains("--cache-dir")
                && err.contains("--no-cache"),
            "{err}"
        );
        assert_eq!(err.matches("warning").count(), 1, "one warning: {err}");
    };
    let mut c = env.cmd_with_cache(&cache);
    c.args(["--json", "backup"]).arg(&src);
    let backup = run(c);
    expect_code(&backup, 0, "backup without a usable cache");
    warned(&backup);
    let id = serde_json::from_slice::<Value>(&backup.stdout).unwrap()["snapshot"]
        .as_str()
        .unwrap()
        .to_string();
    let mut c = env.cmd_with_cache(&cache);
    c.args(["--json", "snapshots"]);
    let listing = run(c);
    expect_code(&listing, 0, "snapshots without a usable cache");
    warned(&listing);
    let listed: Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str()),
        "{listed}"
    );
    assert!(blocker.is_file(), "the file in the way is left alone");
}
