//! The bucket source end to end against a real S3 server (moto): `backup --bucket`,
//! incremental backups that download only new and changed objects, `restore --to-bucket`
//! with contents and metadata, `restore --target`, verification, and failures (a server
//! killed mid-backup, Ctrl-C, a missing bucket) that must leave no snapshot.
//!
//! The test's own view of the buckets goes through plain HTTP requests to moto (which
//! does not check signatures), not through coffer, so a bug in coffer's S3 code cannot
//! hide itself.

mod common;

use coffer::backend::{self, Location, ServiceOptions};
use coffer::bucket::verify_bucket_with;
use coffer::progress::NoProgress;
use common::s3::{Response, S3};
use common::servers::Moto;
use common::{packs, pseudo_random, Env, PASSWORD};
use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// No command here may take longer (a hang is a failure).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);

/// One object of the test bucket.
struct Obj {
    key: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    meta: Vec<(&'static str, &'static str)>,
}

fn obj(
    key: &'static str,
    body: Vec<u8>,
    ct: &'static str,
    meta: &[(&'static str, &'static str)],
) -> Obj {
    Obj {
        key,
        body,
        content_type: ct,
        meta: meta.to_vec(),
    }
}

/// Objects of several sizes (one above the 8 MiB a chunker holds in memory), nested
/// keys, spaces and unicode, a `%`, a folder marker, and a key that is also a folder.
fn first_objects() -> Vec<Obj> {
    vec![
        obj(
            "readme.txt",
            b"hello, bucket\n".to_vec(),
            "text/plain",
            &[("owner", "alice")],
        ),
        obj(
            "photos/2026/cat.jpg",
            pseudo_random(1, 300_000),
            "image/jpeg",
            &[("camera", "x100"), ("caption", "a cat on a mat")],
        ),
        obj(
            "big/video.bin",
            pseudo_random(2, (9 << 20) + 123),
            "video/mp4",
            &[],
        ),
        obj(
            "spaces and ünïcode/ファイル name.txt",
            "こんにちは\n".as_bytes().to_vec(),
            "text/plain; charset=utf-8",
            &[("lang", "ja")],
        ),
        obj("empty.txt", vec![], "text/plain", &[]),
        obj("folder/", vec![], "application/x-directory", &[]),
        obj("a", b"{}".to_vec(), "application/json", &[]),
        obj("a/b", b"inside a".to_vec(), "text/plain", &[]),
        obj("100%.txt", b"percent".to_vec(), "text/plain", &[]),
        obj(
            "nested/deep/er/still/file.csv",
            b"x,y\n1,2\n".to_vec(),
            "text/csv",
            &[("rows", "1")],
        ),
    ]
}

struct Setup {
    env: Env,
    moto: Moto,
}

impl Setup {
    fn new() -> Setup {
        let env = Env::new();
        let moto = Moto::start();
        let s = Setup { env, moto };
        s.env.init();
        s
    }
    fn s3(&self) -> S3<'_> {
        S3 { moto: &self.moto }
    }
    fn url(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint=http://127.0.0.1:{}&region=us-east-1",
            self.moto.server.port
        )
    }
    fn cmd(&self) -> Command {
        let mut c = self.env.cmd();
        c.envs(self.moto.env());
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        run_with_timeout(self.cmd().args(args))
    }
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        common::assert_ok(&out, &all);
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }
    fn snapshots(&self) -> Vec<serde_json::Value> {
        self.json(&["snapshots"])
            .as_array()
            .expect("a list")
            .clone()
    }
}

fn run_with_timeout(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run coffer");
    common::wait_with_limit(child, COMMAND_TIMEOUT, "coffer")
}

fn num(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn meta_headers(r: &Response) -> BTreeMap<String, String> {
    r.headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-amz-meta-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn a_bucket_is_backed_up_incrementally_and_restored_with_its_metadata() {
    let t = Setup::new();
    let s3 = t.s3();
    let bucket = t.moto.bucket.clone();
    let mut objects = first_objects();
    for o in &objects {
        s3.put(
            &bucket,
            &format!("app/{}", o.key),
            &o.body,
            o.content_type,
            &o.meta,
        );
    }
    // Outside the prefix: not part of the backup.
    s3.put(&bucket, "other/outside.txt", b"not mine", "text/plain", &[]);

    let source = t.url(&bucket, "app");
    let first = t.json(&["backup", "--bucket", &source]);
    let s = &first["summary"];
    let all_bytes: u64 = objects.iter().map(|o| o.body.len() as u64).sum();
    assert_eq!(num(&s["files_new"]), objects.len() as u64, "{first}");
    assert_eq!(num(&s["files_unmodified"]), 0, "{first}");
    assert_eq!(num(&s["read_errors"]), 0, "{first}");
    assert_eq!(num(&s["bytes_read"]), all_bytes, "{first}");
    assert_eq!(num(&s["total_bytes"]), all_bytes, "{first}");

    // The snapshot names the bucket without credentials.
    let listed = t.json(&["snapshots"]);
    assert_eq!(listed[0]["source"], "bucket", "{listed}");
    assert_eq!(
        listed[0]["paths"],
        serde_json::json!([format!("s3://{bucket}/app")]),
        "{listed}"
    );
    assert!(
        !listed.to_string().contains("coffer-test-secret"),
        "a secret is in the snapshot: {listed}"
    );

    // A night later: one object rewritten, one added, one deleted, and one copied onto
    // itself with new metadata (same content and ETag, a newer time).
    let readme = objects.iter_mut().find(|o| o.key == "readme.txt").unwrap();
    readme.body = b"hello again, bucket: longer now\n".to_vec();
    readme.meta = vec![("owner", "bob")];
    let dog = obj(
        "photos/2026/dog.jpg",
        pseudo_random(3, 123_456),
        "image/jpeg",
        &[("camera", "y")],
    );
    for o in objects
        .iter()
        .filter(|o| o.key == "readme.txt")
        .chain([&dog])
    {
        s3.put(
            &bucket,
            &format!("app/{}", o.key),
            &o.body,
            o.content_type,
            &o.meta,
        );
    }
    s3.delete(&bucket, "app/photos/2026/cat.jpg");
    let relabelled = objects.iter_mut().find(|o| o.key == "a/b").unwrap();
    relabelled.meta = vec![("label", "new")];
    let before = s3.last_modified(&bucket, "app/a/b");
    let t0 = Instant::now();
    // moto's times have whole seconds: write until the server shows a newer one.
    loop {
        let o = &*relabelled;
        s3.put(&bucket, "app/a/b", &o.body, o.content_type, &o.meta);
        if s3.last_modified(&bucket, "app/a/b") != before {
            break;
        }
        assert!(t0.elapsed() < COMMAND_TIMEOUT, "moto's time does not move");
        std::thread::sleep(Duration::from_millis(100));
    }
    objects.retain(|o| o.key != "photos/2026/cat.jpg");
    let fetched = objects[0].body.len() as u64 + dog.body.len() as u64;
    objects.push(dog);
    objects.sort_by(|a, b| a.key.cmp(b.key));

    let second = t.json(&["backup", "--bucket", &source]);
    let s = &second["summary"];
    assert_eq!(second["parent"], first["snapshot"], "{second}");
    assert_eq!(num(&s["files_new"]), 1, "{second}");
    assert_eq!(num(&s["files_changed"]), 1, "{second}");
    assert_eq!(
        num(&s["files_unmodified"]),
        objects.len() as u64 - 2,
        "{second}"
    );
    // Only the new and the rewritten object were downloaded (the relabelled one is
    // unmodified: its metadata came from a HEAD).
    assert_eq!(num(&s["bytes_read"]), fetched, "{second}");

    // Restore into another bucket, under a prefix, and compare through S3 itself.
    s3.create_bucket("restored");
    let target = t.url("restored", "copy");
    let out = t.json(&["restore", "latest", "--to-bucket", &target]);
    assert_eq!(num(&out["objects"]), objects.len() as u64, "{out}");
    let bytes: u64 = objects.iter().map(|o| o.body.len() as u64).sum();
    assert_eq!(num(&out["bytes"]), bytes, "{out}");
    let want_keys: Vec<String> = objects.iter().map(|o| format!("copy/{}", o.key)).collect();
    assert_eq!(s3.list("restored", "copy/"), want_keys);
    for o in &objects {
        let got = s3.get("restored", &format!("copy/{}", o.key));
        let orig = s3.get(&bucket, &format!("app/{}", o.key));
        assert!(got.body == o.body, "{}: content differs", o.key);
        assert_eq!(
            meta_headers(&got),
            meta_headers(&orig),
            "{}: user metadata",
            o.key
        );
        let want_meta: BTreeMap<String, String> = o
            .meta
            .iter()
            .map(|(k, v)| (format!("x-amz-meta-{k}"), v.to_string()))
            .collect();
        assert_eq!(meta_headers(&got), want_meta, "{}", o.key);
        // Folder markers come back as markers, without a content type of their own.
        if !o.key.ends_with('/') {
            assert_eq!(
                got.headers.get("content-type").map(String::as_str),
                Some(o.content_type),
                "{}: content type",
                o.key
            );
        }
    }

    // The library's verification (what drills use) agrees, and sees a tampered object.
    let repo = open_repo(&t.env);
    let snaps = repo.snapshots().unwrap();
    let (_, latest) = snaps.last().unwrap();
    let service = ServiceOptions {
        env: t.moto.env(),
        ..ServiceOptions::default()
    };
    let target_loc = Location::parse(&target).unwrap();
    let cancel = AtomicBool::new(false);
    let verify = || verify_bucket_with(&repo, latest, &target_loc, &service, &NoProgress, &cancel);
    let report = verify().unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.objects, objects.len() as u64);
    s3.put("restored", "copy/100%.txt", b"PERCENT", "text/plain", &[]);
    s3.put("restored", "copy/stray.txt", b"x", "text/plain", &[]);
    let report = verify().unwrap();
    assert!(!report.ok());
    assert_eq!(report.extra, ["stray.txt"], "{report:?}");
    assert_eq!(report.mismatched.len(), 1, "{report:?}");
    assert!(report.mismatched[0].contains("100%.txt"), "{report:?}");

    // A bucket that holds objects is refused, unless forced.
    let refused = t.run(&["restore", "latest", "--to-bucket", &target]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--force"), "{stderr}");
    t.json(&["restore", "latest", "--to-bucket", &target, "--force"]);
    assert_eq!(s3.get("restored", "copy/100%.txt").body, b"percent");

    // `restore --target DIR` gives plain files and the manifest.
    let dir = t.env.path("files");
    t.json(&["restore", "latest", "--target", dir.to_str().unwrap()]);
    let read = |rel: &str| std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(
        read("objects/readme.txt"),
        b"hello again, bucket: longer now\n"
    );
    assert_eq!(read("objects/a%"), b"{}");
    assert_eq!(read("objects/a/b"), b"inside a");
    assert_eq!(read("objects/100%25.txt"), b"percent");
    assert_eq!(read("objects/folder/%"), b"");
    assert_eq!(
        read("objects/big/video.bin"),
        pseudo_random(2, (9 << 20) + 123)
    );
    let manifest = String::from_utf8(read("metadata.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = manifest
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let keys: Vec<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    let want: Vec<&str> = objects.iter().map(|o| o.key).collect();
    assert_eq!(keys, want);
    for (line, o) in lines.iter().zip(&objects) {
        let path = line["path"].as_str().unwrap();
        let on_disk = std::fs::read(dir.join(path.trim_start_matches('/'))).unwrap();
        assert!(on_disk == o.body, "{path}");
        assert_eq!(num(&line["size"]), o.body.len() as u64);
        if !o.key.ends_with('/') {
            assert_eq!(line["content_type"], o.content_type, "{line}");
        }
    }
    let readme = lines.iter().find(|l| l["key"] == "readme.txt").unwrap();
    assert_eq!(readme["user_metadata"], serde_json::json!({"owner": "bob"}));
    let relabelled = lines.iter().find(|l| l["key"] == "a/b").unwrap();
    assert_eq!(
        relabelled["user_metadata"],
        serde_json::json!({"label": "new"})
    );
}

fn open_repo(env: &Env) -> coffer::repo::Repository {
    let store = backend::open(&Location::Local(env.repo())).unwrap();
    let opts = coffer::repo::OpenOptions {
        cache_dir: None,
        clock: std::sync::Arc::new(coffer::clock::SystemClock),
        host: "test".into(),
        user: "test".into(),
        warn: std::sync::Arc::new(|_| {}),
        kdf_limit: coffer::crypto::KdfLimit::DEFAULT,
    };
    coffer::repo::Repository::open(store, PASSWORD.as_bytes(), opts).unwrap()
}

/// Run `backup --bucket` on 48 MiB of objects and call `stop` once its first pack is in
/// the repository (a third of the way), while objects remain to be read.
fn backup_stopped_midway(
    env: &Env,
    mut cmd: Command,
    stop: impl FnOnce(&std::process::Child),
) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run coffer backup");
    let t0 = Instant::now();
    while packs(&env.repo()).is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup ended before its first pack was written"
        );
        assert!(t0.elapsed() < COMMAND_TIMEOUT, "no pack was written");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup ended before it was stopped: make the bucket bigger"
    );
    stop(&child);
    common::wait_with_limit(child, COMMAND_TIMEOUT, "coffer")
}

fn fill_big_bucket(t: &Setup, prefix: &str) {
    let s3 = t.s3();
    for i in 0..48 {
        let body = pseudo_random(100 + i, 1 << 20);
        let key = format!("{prefix}/part-{i:03}.bin");
        s3.put(&t.moto.bucket, &key, &body, "application/octet-stream", &[]);
    }
}

#[test]
fn an_interrupted_backup_saves_no_snapshot_and_the_next_one_completes() {
    let t = Setup::new();
    fill_big_bucket(&t, "big");
    let source = t.url(&t.moto.bucket, "big");
    let mut cmd = t.cmd();
    cmd.args(["--json", "backup", "--bucket", &source]);
    let out = backup_stopped_midway(&t.env, cmd, |child| {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    });
    assert_eq!(
        out.status.code(),
        Some(130),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        t.snapshots().is_empty(),
        "an interrupted backup saved a snapshot"
    );

    // The repository is fine: the next backup completes.
    let done = t.json(&["backup", "--bucket", &source]);
    assert_eq!(num(&done["summary"]["files_new"]), 48, "{done}");
    assert_eq!(t.snapshots().len(), 1);
}

#[test]
fn a_server_killed_mid_backup_fails_the_backup_and_saves_no_snapshot() {
    let mut t = Setup::new();
    fill_big_bucket(&t, "big");
    let source = t.url(&t.moto.bucket, "big");
    let mut cmd = t.cmd();
    cmd.args(["--json", "backup", "--bucket", &source]);
    let out = backup_stopped_midway(&t.env, cmd, |_| t.moto.server.kill());
    eprintln!(
        "the killed backup said: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("error JSON");
    assert_eq!(json["exit_code"], 1, "{json}");
    assert!(
        t.snapshots().is_empty(),
        "the failed backup saved a snapshot"
    );
}

#[test]
fn a_missing_bucket_fails_the_backup() {
    let t = Setup::new();
    let out = t.run(&["backup", "--bucket", &t.url("no-such-bucket", "")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(t.snapshots().is_empty());
}

/// A nightly dump kept as an object is cut like a dump file in a folder (small chunks for
/// text, format-spec §10): the next night stores its changed rows, not the whole object.
#[test]
fn a_dump_object_stores_only_its_changed_rows() {
    let t = Setup::new();
    let s3 = t.s3();
    let bucket = t.moto.bucket.clone();
    let rows = 90_000;
    let first = common::sql_dump(rows, 1);
    s3.put(&bucket, "dumps/app.sql", &first, "application/sql", &[]);
    let source = t.url(&bucket, "dumps");
    let night1 = t.json(&["backup", "--bucket", &source]);
    assert!(
        num(&night1["summary"]["blobs_added"]) > 200,
        "the dump object was cut in large chunks: {night1}"
    );
    s3.put(
        &bucket,
        "dumps/app.sql",
        &common::sql_dump(rows, 2),
        "application/sql",
        &[],
    );
    let night2 = t.json(&["backup", "--bucket", &source]);
    let added = num(&night2["summary"]["bytes_added_raw"]);
    assert!(
        added < first.len() as u64 / 8,
        "night 2 added {added} of {} bytes: {night2}",
        first.len()
    );
}
