//! `coffer drill` through the real binary: a job's newest snapshot restored into scratch
//! space, verified, timed against the RTO and recorded in the repository as a report that
//! any machine can read; a damaged repository fails the drill and the failure is recorded
//! too; scratch places that are not the drill's own are left alone. PostgreSQL (a throwaway
//! cluster) and bucket (moto) drills run against real servers.

mod common;

use coffer::backend::{self, Location};
use coffer::format::report::{Report, ReportKind};
use coffer::repo::{OpenOptions, Repository};
use coffer::sources::bucket::Bucket;
use coffer::sources::files::Files;
use coffer::sources::pg_dump::PgDump;
use coffer::sources::SourceKind;
use common::{packs, pseudo_random, Env, PASSWORD};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

/// A small tree with the awkward cases: a large file, an empty one, a nested folder, a
/// symlink, a private file.
fn make_data(env: &Env) -> (PathBuf, u64, u64) {
    let data = env.path("data");
    std::fs::create_dir_all(data.join("nested/deeper")).unwrap();
    let big = pseudo_random(7, 3 << 20);
    std::fs::write(data.join("big.bin"), &big).unwrap();
    std::fs::write(data.join("empty"), b"").unwrap();
    std::fs::write(data.join("nested/deeper/note.txt"), b"drill me\n").unwrap();
    std::fs::write(data.join("nested/secret"), b"s3cret").unwrap();
    std::fs::set_permissions(
        data.join("nested/secret"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink("deeper/note.txt", data.join("nested/link")).unwrap();
    let bytes = big.len() as u64 + 9 + 6;
    (data, bytes, 4)
}

/// A job file with one job `app` backing up `paths`, drilling into `scratch`.
fn job_file(env: &Env, paths: &Path, extra: &str) -> PathBuf {
    let f = env.path("coffer.toml");
    std::fs::write(
        &f,
        format!(
            "[[job]]\nname = \"app\"\npaths = [{paths:?}]\nschedule = \"daily 02:30\"\n\
             drill = {{ schedule = \"weekly\", target = {:?} }}\nrto = \"15m\"\n{extra}",
            env.path("scratch")
        ),
    )
    .unwrap();
    f
}

/// Back up `path` as job `app`'s files source; returns the snapshot ID.
fn backup_as_job(env: &Env, path: &Path) -> String {
    let mut args = vec!["backup".to_string(), path.to_string_lossy().into_owned()];
    for t in Files(vec![]).tags("app") {
        args.extend(["--tag".to_string(), t]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.json(&args)["snapshot"].as_str().unwrap().to_string()
}

fn drill(env: &Env, config: &Path, args: &[&str]) -> Output {
    env.cmd()
        .arg("--config")
        .arg(config)
        .arg("drill")
        .args(args)
        .output()
        .expect("run coffer drill")
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "drill printed invalid JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The reports stored in the repository, read with the library (as `status` would).
fn stored_reports(env: &Env) -> Vec<Report> {
    let b = backend::open(&Location::parse(env.repo().to_str().unwrap()).unwrap()).unwrap();
    let opts = OpenOptions {
        cache_dir: None,
        clock: Arc::new(coffer::clock::SystemClock),
        host: "test".into(),
        user: "test".into(),
        warn: Arc::new(|m| panic!("warning while reading reports: {m}")),
        kdf_limit: coffer::crypto::KdfLimit::DEFAULT,
    };
    let repo = Repository::open(b, PASSWORD.as_bytes(), opts).unwrap();
    repo.reports()
        .unwrap()
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

fn report_files(env: &Env) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(env.repo().join("reports"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_drill_restores_verifies_times_and_records() {
    let env = Env::new();
    env.init();
    let (data, bytes, files) = make_data(&env);
    let id = backup_as_job(&env, &data);
    let config = job_file(&env, &data, "");

    let out = drill(&env, &config, &["--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json_of(&out);
    assert_eq!(v["exit_code"], 0);
    let d = &v["drills"][0];
    assert_eq!(d["job"], "app");
    assert_eq!(d["ok"], true);
    assert_eq!(d["rto_met"], true);
    assert_eq!(d["rto_target_seconds"], 900.0);
    let achieved = d["rto_achieved_seconds"].as_f64().unwrap();
    assert!(achieved > 0.0, "{d}");
    let s = &d["sources"][0];
    assert_eq!(s["source"], "files");
    assert_eq!(s["snapshot"], id.as_str());
    assert_eq!(s["bytes"], bytes);
    assert_eq!(s["items"], files);
    assert_eq!(s["problems"], Value::Array(vec![]));

    // The report is an object of the repository, named in the output, and says the same.
    let report = d["report"].as_str().unwrap();
    assert!(report.starts_with("reports/"), "{report}");
    assert!(env.repo().join(report).is_file());
    assert_eq!(report_files(&env).len(), 1);
    let reports = stored_reports(&env);
    assert_eq!(reports.len(), 1);
    let r = &reports[0];
    assert_eq!(
        (r.kind, r.job.as_str(), r.ok),
        (ReportKind::Drill, "app", true)
    );
    assert_eq!(r.snapshots.len(), 1);
    assert_eq!(r.snapshots[0].to_hex(), id);
    assert_eq!(r.target_ns, Some(900_000_000_000));
    assert!(r.duration_ns > 0);
    assert_eq!(r.info("files.bytes"), Some(bytes.to_string().as_str()));
    assert_eq!(r.info("files.snapshot"), Some(id.as_str()));

    // The scratch folder went once it matched; the target itself stays.
    let scratch = env.path("scratch");
    assert!(scratch.is_dir());
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);

    // Without a job name every job with a drill section is drilled; the table says passed.
    let out = drill(&env, &config, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&id[..8]) && table.contains("passed"),
        "{table}"
    );
    assert_eq!(stored_reports(&env).len(), 2);

    // --keep leaves the restored tree, equal to the source.
    let out = drill(&env, &config, &["app", "--keep"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let kept = scratch
        .join(format!("app-{}", &id[..8]))
        .join(data.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(kept.join("big.bin")).unwrap(),
        std::fs::read(data.join("big.bin")).unwrap()
    );
    assert_eq!(
        std::fs::read_link(kept.join("nested/link")).unwrap(),
        Path::new("deeper/note.txt")
    );
}

#[test]
fn a_damaged_pack_fails_the_drill_and_the_failure_is_recorded() {
    let env = Env::new();
    env.init();
    let (data, _, _) = make_data(&env);
    let id = backup_as_job(&env, &data);
    let config = job_file(&env, &data, "");
    // A byte in every 4 KiB of every pack: whichever frames hold big.bin's chunks (the
    // order of blobs in packs depends on thread timing), some are damaged.
    for pack in packs(&env.repo()) {
        let mut b = std::fs::read(&pack).unwrap();
        for at in (50..b.len()).step_by(4096) {
            b[at] ^= 0x40;
        }
        std::fs::write(&pack, b).unwrap();
    }
    let out = drill(&env, &config, &["--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json_of(&out);
    let d = &v["drills"][0];
    assert_eq!(d["ok"], false);
    assert_eq!(d["sources"][0]["ok"], false);
    assert!(
        d["sources"][0]["problem_count"].as_u64().unwrap() > 0,
        "{d}"
    );
    assert!(d["report"].as_str().is_some(), "{d}");
    let reports = stored_reports(&env);
    assert_eq!(reports.len(), 1);
    assert!(!reports[0].ok);
    assert!(
        reports[0].message.contains("drill failed"),
        "{}",
        reports[0].message
    );
    assert!(reports[0].info("files.error").is_some());
    // The restored tree stays for inspection, marked as the drill's own.
    let folder = env.path("scratch").join(format!("app-{}", &id[..8]));
    assert!(folder.join(".coffer-drill").is_file());

    // In text, the problem names the file, and the summary says the drill failed.
    let out = drill(&env, &config, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("big.bin") && err.contains("FAILED"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
}

/// The RTO is measured against the target: a drill slower than its RTO passes its
/// verification but misses the RTO (exit 1). The test hook sets a target of 1 ns, which no
/// restore can meet, so the outcome does not depend on the machine's speed.
#[test]
fn a_drill_over_its_rto_fails() {
    let env = Env::new();
    env.init();
    let (data, _, _) = make_data(&env);
    backup_as_job(&env, &data);
    let config = job_file(&env, &data, "");
    let mut cmd = env.cmd();
    cmd.env("COFFER_TEST_DRILL_RTO_NS", "1")
        .arg("--config")
        .arg(&config)
        .args(["--json", "drill"]);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let d = &json_of(&out)["drills"][0];
    assert_eq!(d["ok"], true);
    assert_eq!(d["rto_met"], false);
    assert_eq!(d["rto_target_seconds"], 1e-9);
    let r = &stored_reports(&env)[0];
    assert!(r.ok && r.target_ns == Some(1) && r.duration_ns > 1, "{r:?}");

    let mut cmd = env.cmd();
    cmd.env("COFFER_TEST_DRILL_RTO_NS", "1")
        .arg("--config")
        .arg(&config)
        .arg("drill");
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("MISSED ITS RTO"), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("MISSED RTO"));
}

#[test]
fn scratch_space_that_is_not_the_drills_own_is_left_alone() {
    let env = Env::new();
    env.init();
    let (data, _, _) = make_data(&env);
    let id = backup_as_job(&env, &data);
    let config = job_file(&env, &data, "");
    let theirs = env.path("scratch").join(format!("app-{}", &id[..8]));
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("precious"), b"do not touch").unwrap();
    let out = drill(&env, &config, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let d = &json_of(&out)["drills"][0];
    let problem = d["sources"][0]["problems"][0].as_str().unwrap();
    assert!(problem.contains("not made by a coffer drill"), "{problem}");
    assert_eq!(
        std::fs::read(theirs.join("precious")).unwrap(),
        b"do not touch"
    );
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1);
}

#[test]
fn usage_errors_and_a_job_without_snapshots() {
    let env = Env::new();
    env.init();
    let (data, _, _) = make_data(&env);
    let config = job_file(
        &env,
        &data,
        "\n[[job]]\nname = \"nodrill\"\npaths = [\"/tmp\"]\nschedule = \"daily 03:00\"\n",
    );
    // No such job, and a job without a drill section: usage errors, nothing stored.
    assert_eq!(drill(&env, &config, &["nope"]).status.code(), Some(2));
    let out = drill(&env, &config, &["nodrill"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no drill section"),
        "{}",
        stderr(&out)
    );
    assert!(report_files(&env).is_empty());
    // Nothing backed up yet: the drill fails, saying so, and the failure is recorded.
    let out = drill(&env, &config, &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let d = &json_of(&out)["drills"][0];
    assert_eq!(d["job"], "app");
    let problem = d["sources"][0]["problems"][0].as_str().unwrap();
    assert!(problem.contains("no snapshot"), "{problem}");
    assert_eq!(stored_reports(&env).len(), 1);
}

/// A PostgreSQL drill: the dump is loaded into the scratch database (replacing what an
/// earlier drill left), and every table's row count is compared with the snapshot's record.
#[test]
fn a_postgres_drill_restores_into_the_scratch_database() {
    let pg = common::postgres::PgCluster::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "CREATE TABLE users (id int PRIMARY KEY, name text);
         INSERT INTO users SELECT g, 'user ' || g FROM generate_series(1, 500) g;
         CREATE SCHEMA billing;
         CREATE TABLE billing.invoices (id int, amount numeric);
         INSERT INTO billing.invoices SELECT g, g * 1.5 FROM generate_series(1, 1200) g;",
    );
    let env = Env::new();
    env.init();
    let source = pg.url("app");
    let mut args = vec![
        "backup".to_string(),
        "--postgres".to_string(),
        source.clone(),
    ];
    for t in PgDump(source.clone()).tags("app") {
        args.extend(["--tag".to_string(), t]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = env.json(&args)["snapshot"].as_str().unwrap().to_string();
    let config = env.path("coffer.toml");
    let write_config = |scratch: &str| {
        std::fs::write(
            &config,
            format!(
                "[[job]]\nname = \"app\"\npostgres = [{source:?}]\nschedule = \"daily 02:30\"\n\
                 drill = {{ schedule = \"weekly\", postgres = {scratch:?} }}\nrto = \"15m\"\n"
            ),
        )
        .unwrap();
    };
    write_config(&pg.url("drill"));
    let run = || {
        env.cmd()
            .arg("--config")
            .arg(&config)
            .args(["--json", "drill"])
            .output()
            .unwrap()
    };
    // Twice: the second drill finds the first one's tables and replaces them.
    for _ in 0..2 {
        let out = run();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let d = &json_of(&out)["drills"][0];
        let s = &d["sources"][0];
        assert_eq!(s["ok"], true, "{d}");
        assert_eq!(s["snapshot"], id.as_str());
        assert_eq!(s["items"], 2, "{d}");
        assert_eq!(s["item_kind"], "tables");
        assert!(s["bytes"].as_u64().unwrap() > 0);
    }
    assert_eq!(
        pg.psql("drill", "SELECT count(*) FROM billing.invoices"),
        "1200"
    );
    assert_eq!(pg.psql("drill", "SELECT count(*) FROM users"), "500");
    let reports = stored_reports(&env);
    assert_eq!(reports.len(), 2);
    assert!(reports
        .iter()
        .all(|r| r.ok && r.snapshots[0].to_hex() == id));

    // A scratch database that is the job's own database, even written with another host
    // name, is refused, and left as it was.
    assert!(source.contains("127.0.0.1"), "{source}");
    write_config(&source.replace("127.0.0.1", "localhost"));
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    let d = &json_of(&out)["drills"][0];
    let problem = d["sources"][0]["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("has the name of a database that job \"app\" backs up"),
        "{problem}"
    );
    assert_eq!(pg.psql("app", "SELECT count(*) FROM users"), "500");
}

/// A bucket drill against moto: the objects are written into the scratch prefix and each
/// is read back and compared with the snapshot's record.
#[test]
fn a_bucket_drill_restores_into_the_scratch_prefix() {
    let moto = common::servers::Moto::start();
    for (key, body) in [
        ("src/a.txt", b"alpha".to_vec()),
        ("src/dir/b.bin", pseudo_random(3, 200_000)),
    ] {
        common::s3::S3 { moto: &moto }.put(
            &moto.bucket,
            key,
            &body,
            "application/octet-stream",
            &[],
        );
    }
    let env = Env::new();
    env.init();
    let source = moto.url("src");
    let mut args = vec!["backup".to_string(), "--bucket".to_string(), source.clone()];
    for t in Bucket(source.clone()).tags("app") {
        args.extend(["--tag".to_string(), t]);
    }
    let mut cmd = env.cmd();
    cmd.envs(moto.env()).arg("--json").args(&args);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = json_of(&out)["snapshot"].as_str().unwrap().to_string();
    let config = env.path("coffer.toml");
    std::fs::write(
        &config,
        format!(
            "[[job]]\nname = \"app\"\nbuckets = [{source:?}]\nschedule = \"daily 02:30\"\n\
             drill = {{ schedule = \"weekly\", bucket = {:?} }}\nrto = \"15m\"\n",
            moto.url("drill")
        ),
    )
    .unwrap();
    // A scratch prefix that holds data and no drill marker is refused and left alone.
    let s3 = common::s3::S3 { moto: &moto };
    s3.put(
        &moto.bucket,
        "precious/keep.txt",
        b"keep",
        "text/plain",
        &[],
    );
    let foreign = env.path("foreign.toml");
    std::fs::write(
        &foreign,
        format!(
            "[[job]]\nname = \"app\"\nbuckets = [{source:?}]\nschedule = \"daily 02:30\"\n\
             drill = {{ schedule = \"weekly\", bucket = {:?} }}\n",
            moto.url("precious")
        ),
    )
    .unwrap();
    let out = env
        .cmd()
        .envs(moto.env())
        .arg("--config")
        .arg(&foreign)
        .args(["--json", "drill"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(s3.list(&moto.bucket, "precious/"), ["precious/keep.txt"]);

    // The second drill finds the first one's objects (and a stray one) in the scratch
    // prefix: it empties it, and the comparison still sees exactly the snapshot.
    for round in 0..2 {
        if round == 1 {
            common::s3::S3 { moto: &moto }.put(
                &moto.bucket,
                "drill/stray.txt",
                b"x",
                "text/plain",
                &[],
            );
        }
        let mut cmd = env.cmd();
        cmd.envs(moto.env())
            .arg("--config")
            .arg(&config)
            .args(["--json", "drill"]);
        let out = cmd.output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "round {round}: {}",
            stderr(&out)
        );
        let d = &json_of(&out)["drills"][0];
        let s = &d["sources"][0];
        assert_eq!(s["ok"], true, "{d}");
        assert_eq!(s["snapshot"], id.as_str());
        assert_eq!(s["items"], 2, "{d}");
        assert_eq!(s["bytes"], 200_005);
    }
    // The refused drill is recorded as failed, the two others as passed.
    let mut oks: Vec<bool> = stored_reports(&env).iter().map(|r| r.ok).collect();
    oks.sort();
    assert_eq!(oks, [false, true, true]);
}

/// Reports are objects like the others: `check` opens them (and reports a damaged one), and
/// `sync` copies them to a region that lacks them.
#[test]
fn reports_are_checked_and_synced() {
    let env = Env::new();
    env.init();
    let (data, _, _) = make_data(&env);
    backup_as_job(&env, &data);
    let config = job_file(&env, &data, "");
    assert_eq!(drill(&env, &config, &[]).status.code(), Some(0));
    env.ok(&["check"]);

    // A second region, empty: sync brings it every object, the report included.
    let other = env.path("other");
    std::fs::create_dir_all(&other).unwrap();
    let out = env
        .cmd_with_cache(&env.cache())
        .args(["--repo"])
        .arg(format!("b={}", other.display()))
        .arg("sync")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let name = report_files(&env)[0].file_name().unwrap().to_owned();
    assert_eq!(
        std::fs::read(other.join("reports").join(&name)).unwrap(),
        std::fs::read(env.repo().join("reports").join(&name)).unwrap()
    );

    // A damaged report is a problem for check (and is skipped by readers).
    let path = env.repo().join("reports").join(&name);
    let mut b = std::fs::read(&path).unwrap();
    b[40] ^= 1;
    std::fs::write(&path, b).unwrap();
    let out = env.run(&["--json", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json_of(&out);
    let problems = v["report"]["problems"].to_string();
    assert!(problems.contains("reports/"), "{v}");
}
