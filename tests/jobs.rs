//! `coffer run` and `coffer daemon` through the real binary, with time injected by
//! COFFER_TEST_NOW: what is due runs once, retention follows, a missed night shows as an RPO
//! alert, failures are retried at a measured pace, and overlapping runs do not collide.

mod common;

use common::http::HookServer;
use common::{assert_ok, run_steps, Env};
use std::path::Path;
use std::process::{Command, Output};

/// A job file for `env`'s repository with one job `app` backing up `data`, plus `extra` lines
/// in the job.
fn job_file(env: &Env, data: &Path, extra: &str) -> std::path::PathBuf {
    job_file_with(env, data, extra, "")
}

/// Like [`job_file`], with a `[monitoring]` section.
fn job_file_with(env: &Env, data: &Path, extra: &str, monitoring: &str) -> std::path::PathBuf {
    let path = env.path("coffer.toml");
    std::fs::write(
        &path,
        format!(
            "[[job]]\nname = \"app\"\npaths = [\"{}\"]\nschedule = \"daily 02:30\"\nrpo = \"26h\"\n{extra}\n[monitoring]\n{monitoring}",
            data.display()
        ),
    )
    .unwrap();
    path
}

fn at(env: &Env, config: &Path, now: &str, args: &[&str]) -> Output {
    let mut c: Command = env.cmd();
    c.env("COFFER_TEST_NOW", now).arg("--config").arg(config);
    c.args(args).output().expect("run coffer")
}

fn run_json(env: &Env, config: &Path, now: &str) -> serde_json::Value {
    let out = at(env, config, now, &["--json", "run"]);
    assert_ok(&out, &["run", now]);
    serde_json::from_slice(&out.stdout).expect("run JSON")
}

fn snapshot_tags(env: &Env) -> Vec<Vec<String>> {
    env.json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect()
        })
        .collect()
}

fn data_folder(env: &Env) -> std::path::PathBuf {
    let data = env.path("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(data.join("a.txt"), b"first night").unwrap();
    std::fs::write(data.join("sub/b.bin"), common::pseudo_random(7, 300_000)).unwrap();
    data
}

#[test]
fn what_is_due_runs_once_and_retention_follows_the_backup() {
    let env = Env::new();
    env.init();
    let data = data_folder(&env);
    let config = job_file(&env, &data, "retention = { keep_last = 2 }\n");

    let night1 = run_json(&env, &config, "2026-11-27T02:31:00Z");
    assert_eq!(
        run_steps(&night1),
        [
            ("backup".into(), true),
            ("forget".into(), true),
            ("prune".into(), true)
        ]
    );
    assert_eq!(night1["ok"], true);
    let tags = snapshot_tags(&env);
    assert_eq!(tags.len(), 1);
    assert!(
        tags[0].contains(&"job:app".to_string()) && tags[0].contains(&"source:files".to_string())
    );

    // Later the same night, and just before the next slot: nothing is due.
    assert!(run_steps(&run_json(&env, &config, "2026-11-27T09:00:00Z")).is_empty());
    assert!(run_steps(&run_json(&env, &config, "2026-11-28T02:29:00Z")).is_empty());
    assert_eq!(snapshot_tags(&env).len(), 1);

    std::fs::write(data.join("a.txt"), b"second night").unwrap();
    let night2 = run_json(&env, &config, "2026-11-28T02:30:30Z");
    assert_eq!(run_steps(&night2)[0], ("backup".into(), true));
    std::fs::write(data.join("a.txt"), b"third night").unwrap();
    run_json(&env, &config, "2026-11-29T03:10:00Z");
    // keep_last = 2: the first night's snapshot is gone, and what is left restores.
    let snaps = env.json(&["snapshots"]);
    let times: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time"].as_str().unwrap())
        .collect();
    assert_eq!(times.len(), 2, "{times:?}");
    assert!(
        times.iter().all(|t| !t.starts_with("2026-11-27")),
        "{times:?}"
    );
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let restored = target.join(data.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(restored.join("a.txt")).unwrap(),
        b"third night"
    );
    env.ok(&["check", "--read-data"]);
}

#[test]
fn a_missed_night_is_an_rpo_alert_until_the_next_run_catches_up() {
    let env = Env::new();
    env.init();
    let data = data_folder(&env);
    let config = job_file(&env, &data, "");
    run_json(&env, &config, "2026-11-27T02:31:00Z");

    let ok = at(&env, &config, "2026-11-28T01:00:00Z", &["--json", "status"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    // No run on the night of the 28th (the machine was off): 28.5 h later, past the 26 h RPO.
    let late = at(&env, &config, "2026-11-28T07:00:00Z", &["--json", "status"]);
    assert_eq!(
        late.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&late.stdout)
    );
    let text = String::from_utf8_lossy(&late.stdout);
    assert!(text.contains("RPO"), "{text}");

    // The next run finds the night's backup overdue and catches up.
    let caught_up = run_json(&env, &config, "2026-11-28T07:05:00Z");
    assert_eq!(run_steps(&caught_up)[0], ("backup".into(), true));
    let ok = at(&env, &config, "2026-11-28T07:10:00Z", &["--json", "status"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

#[test]
fn a_failed_step_exits_1_and_is_retried_only_after_the_retry_time() {
    let env = Env::new();
    env.init();
    let data = env.path("not-there-yet");
    let config = job_file(&env, &data, "");

    let failed = at(&env, &config, "2026-11-27T02:31:00Z", &["--json", "run"]);
    assert_eq!(failed.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(run_steps(&report), [("backup".into(), false)]);
    assert!(
        report["steps"][0]["message"]
            .as_str()
            .unwrap()
            .contains("exist"),
        "{report}"
    );
    assert_eq!(report["ok"], false);

    // Five minutes later the failure is not hammered again.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("x"), b"now it exists").unwrap();
    assert!(run_steps(&run_json(&env, &config, "2026-11-27T02:36:00Z")).is_empty());
    // After the retry time (15 minutes by default) it is.
    let retried = run_json(&env, &config, "2026-11-27T02:47:00Z");
    assert_eq!(run_steps(&retried), [("backup".into(), true)]);
    // `--force` runs regardless of the schedule.
    let forced = run_json(&env, &config, "2026-11-27T02:48:00Z");
    assert!(run_steps(&forced).is_empty());
    let out = at(
        &env,
        &config,
        "2026-11-27T02:49:00Z",
        &["--json", "run", "app", "--force"],
    );
    assert_ok(&out, &["run", "--force"]);
    assert_eq!(snapshot_tags(&env).len(), 2);
}

#[test]
fn overlapping_runs_take_one_backup() {
    let env = Env::new();
    env.init();
    let data = data_folder(&env);
    std::fs::write(data.join("big.bin"), common::pseudo_random(9, 20 << 20)).unwrap();
    let config = job_file(&env, &data, "");
    // Two runs started together: one holds the machine's run lock while the other finds it
    // held, or (if one finished first) finds the night's backup already taken.
    let start = |n: u32| {
        let mut c = env.cmd();
        c.env("COFFER_TEST_NOW", "2026-11-27T02:31:00Z")
            .arg("--config")
            .arg(&config)
            .args(["--json", "run"]);
        let _ = n;
        c.spawn().unwrap()
    };
    let (a, b) = (start(1), start(2));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert_ok(&out, &["run (overlapping)"]);
    }
    assert_eq!(snapshot_tags(&env).len(), 1);
}

#[test]
fn job_file_mistakes_name_the_line_and_the_field() {
    let env = Env::new();
    env.init();
    let data = data_folder(&env);
    let config = job_file(&env, &data, "check = { schedule = \"fortnightly\" }\n");
    let out = at(&env, &config, "2026-11-27T02:31:00Z", &["run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 6") && err.contains("schedule") && err.contains("fortnightly"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let config = job_file(&env, &data, "");
    let out = at(&env, &config, "2026-11-27T02:31:00Z", &["run", "nosuchjob"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchjob"));
}

#[test]
fn the_daemon_keeps_an_interval_schedule_and_stops_cleanly_on_sigterm() {
    let env = Env::new();
    env.init();
    let data = data_folder(&env);
    let config = env.path("coffer.toml");
    std::fs::write(
        &config,
        format!(
            "[[job]]\nname = \"often\"\npaths = [\"{}\"]\nschedule = \"every 2s\"\n",
            data.display()
        ),
    )
    .unwrap();
    let mut child = env
        .cmd()
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait (up to two minutes on a loaded machine) for the daemon's third backup.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let n = snapshot_tags(&env).len();
        if n >= 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "only {n} snapshot(s)");
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    // Stopped while idle is exit 0; stopped in the middle of a backup is 130. Either way the
    // repository is whole.
    assert!(matches!(out.status.code(), Some(0) | Some(130)), "{out:?}");
    env.ok(&["check", "--read-data"]);
}

#[test]
fn every_run_is_reported_to_the_webhook_the_ping_url_and_the_metrics_file() {
    let env = Env::new();
    env.init();
    let hook = HookServer::start();
    let data = env.path("missing-at-first");
    let metrics = env.path("textfile/coffer.prom");
    std::fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    let config = job_file_with(
        &env,
        &data,
        "",
        &format!(
            "webhook = \"{0}/hook\"\nping_url = \"{0}/ping/abc\"\nprometheus_textfile = \"{1}\"\n",
            hook.url(),
            metrics.display()
        ),
    );

    // A failing night: the webhook gets the report with ok = false, the ping URL /fail.
    let out = at(&env, &config, "2026-11-27T02:31:00Z", &["run"]);
    assert_eq!(out.status.code(), Some(1));
    let reqs = hook.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/ping/abc/start", "/hook", "/ping/abc/fail"],
        "{paths:?}"
    );
    let body = reqs[1].json();
    assert_eq!(body["ok"], false);
    assert_eq!(body["steps"][0]["step"], "backup");
    assert_eq!(body["steps"][0]["ok"], false);
    assert_eq!(reqs[1].header("content-type"), Some("application/json"));
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(prom.contains("job=\"app\""), "{prom}");

    // The next good run: ok = true and the plain ping URL; the metrics file has the backup.
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("f"), b"data").unwrap();
    let out = at(&env, &config, "2026-11-27T03:00:00Z", &["run"]);
    assert_ok(&out, &["run"]);
    let reqs = hook.requests();
    let paths: Vec<&str> = reqs[3..].iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/ping/abc/start", "/hook", "/ping/abc"],
        "{paths:?}"
    );
    let body = reqs[4].json();
    assert_eq!(body["ok"], true);
    assert_eq!(body["steps"][0]["snapshots"].as_array().unwrap().len(), 1);
    let prom = std::fs::read_to_string(&metrics).unwrap();
    let success = prom
        .lines()
        .find(|l| {
            l.starts_with("coffer_job_last_success_timestamp_seconds{") && l.contains("job=\"app\"")
        })
        .unwrap_or_else(|| panic!("no last-success metric in\n{prom}"));
    let value: f64 = success.rsplit(' ').next().unwrap().parse().unwrap();
    // 2026-11-27T03:00:00Z, give or take the seconds the run took.
    assert!((value - 1_795_748_400.0).abs() < 120.0, "{success}");
}

#[test]
fn tags_pick_each_jobs_newest_snapshot_for_restore() {
    let env = Env::new();
    env.init();
    let (a, b) = (env.path("a"), env.path("b"));
    for (dir, text) in [(&a, "job a"), (&b, "job b")] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("f.txt"), text).unwrap();
    }
    let config = env.path("coffer.toml");
    std::fs::write(
        &config,
        format!(
            "[[job]]\nname = \"a\"\npaths = [\"{}\"]\nschedule = \"daily\"\n\n\
             [[job]]\nname = \"b\"\npaths = [\"{}\"]\nschedule = \"daily\"\n",
            a.display(),
            b.display()
        ),
    )
    .unwrap();
    run_json(&env, &config, "2026-11-27T02:31:00Z");
    // Job b ran last, so plain `latest` is b's; with the tags it is a's.
    let listed = env.json(&["snapshots", "--tag", "job:a", "--tag", "source:files"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let target = env.path("out");
    let restored = env.json(&[
        "restore",
        "latest",
        "--tag",
        "job:a",
        "--tag",
        "source:files",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(restored["snapshot"], listed[0]["id"]);
    let file = target.join(a.strip_prefix("/").unwrap()).join("f.txt");
    assert_eq!(std::fs::read_to_string(file).unwrap(), "job a");
    let none = env.run(&[
        "restore",
        "latest",
        "--tag",
        "job:c",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("job:c"));
}

#[test]
fn a_failing_source_is_retried_alone() {
    let env = Env::new();
    env.init();
    let data = data_folder(&env);
    // Nothing listens on port 1: pg_dump fails at once.
    let config = job_file(
        &env,
        &data,
        "postgres = [\"postgresql://coffer@127.0.0.1:1/app\"]\n",
    );
    let out = at(&env, &config, "2026-11-27T02:31:00Z", &["--json", "run"]);
    assert_eq!(out.status.code(), Some(1));
    let night: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        run_steps(&night),
        [("backup".into(), true), ("backup".into(), false)],
        "{night}"
    );
    assert!(
        night["steps"][1]["message"]
            .as_str()
            .unwrap()
            .contains("postgres"),
        "{night}"
    );
    // The retry, 20 minutes later, runs only the database: the files were saved this night.
    let out = at(&env, &config, "2026-11-27T02:51:00Z", &["--json", "run"]);
    assert_eq!(out.status.code(), Some(1));
    let retry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run_steps(&retry), [("backup".into(), false)], "{retry}");
    assert_eq!(snapshot_tags(&env).len(), 1);
}

/// The last failed attempt the status reports, from `coffer --json status` at `now`.
fn failed_attempt_problem(env: &Env, config: &Path, now: &str) -> String {
    let out = at(env, config, now, &["--json", "status"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["jobs"][0]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .find(|p| p.starts_with("last backup attempt failed"))
        .unwrap_or_else(|| panic!("no failed attempt in {v}"))
        .to_string()
}

/// Newcomer review 1: the failure history lived in the cache, so deleting the cache (which
/// the README calls safe) made `status` forget a failed backup. It lives in the state folder.
#[test]
fn deleting_the_cache_keeps_the_failed_attempt() {
    let env = Env::new();
    env.init();
    let config = job_file(&env, &env.path("not-there"), "");
    let out = at(&env, &config, "2026-11-27T02:31:00Z", &["--json", "run"]);
    assert_eq!(out.status.code(), Some(1));
    let before = failed_attempt_problem(&env, &config, "2026-11-27T02:35:00Z");
    assert!(before.contains("not-there"), "{before}");

    std::fs::remove_dir_all(env.cache()).unwrap();
    assert_eq!(
        failed_attempt_problem(&env, &config, "2026-11-27T02:36:00Z"),
        before
    );
    // And a run right after still keeps the retry pace: nothing is tried again yet.
    assert!(run_steps(&run_json(&env, &config, "2026-11-27T02:37:00Z")).is_empty());
}

/// Coffer up to 0.1 kept the job state in `<cache>/jobs`: on upgrade, the first command that
/// finds no state in the state folder copies it over, so the failure is still reported.
#[test]
fn the_job_state_of_an_older_coffer_in_the_cache_is_kept() {
    let env = Env::new();
    env.init();
    let config = job_file(&env, &env.path("not-there"), "");
    let out = at(&env, &config, "2026-11-27T02:31:00Z", &["--json", "run"]);
    assert_eq!(out.status.code(), Some(1));
    // Where the older coffer had it: the state this run wrote, moved into the cache.
    std::fs::rename(env.state().join("jobs"), env.cache().join("jobs")).unwrap();
    std::fs::remove_dir_all(env.state()).unwrap();
    let problem = failed_attempt_problem(&env, &config, "2026-11-27T02:35:00Z");
    assert!(problem.contains("not-there"), "{problem}");
    assert!(env.state().join("jobs/app.json").is_file());
}

/// Newcomer review 1: the timer's run (`--cache-dir /var/cache/coffer`) and a run from an
/// admin's shell (`~/.cache/coffer`) each took a run lock in their own cache and overlapped.
/// The lock is in the state folder, which both share.
#[test]
fn a_run_holding_the_lock_excludes_a_run_with_another_cache() {
    let env = Env::new();
    env.init();
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("slow.bin"), common::pseudo_random(3, 4 << 20)).unwrap();
    let config = job_file(&env, &data, "");
    let run_with = |cache: &str, state: Option<&str>, slow: bool| {
        let mut c = env.cmd_with_cache(&env.path(cache));
        if let Some(s) = state {
            c.env("COFFER_STATE_DIR", env.path(s));
        }
        if slow {
            // 4 MiB at 64 KiB/s: about a minute, far longer than the other run needs.
            c.args(["--limit-upload", "64KiB/s"]);
        }
        c.env("COFFER_TEST_NOW", "2026-11-27T02:31:00Z")
            .arg("--config")
            .arg(&config)
            .args(["--json", "run"]);
        c
    };
    let mut holder = run_with("cache-timer", None, true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The holder has the lock once it is uploading: its cache has the repository's folder.
    let started = std::time::Instant::now();
    while !env.path("cache-timer").is_dir() || started.elapsed().as_secs() < 1 {
        assert!(
            started.elapsed().as_secs() < 30,
            "the first run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let other = run_with("cache-shell", None, false).output().unwrap();
    assert_ok(&other, &["run (second, other cache)"]);
    let v: serde_json::Value = serde_json::from_slice(&other.stdout).unwrap();
    assert!(
        v["skipped"]
            .as_str()
            .unwrap_or_default()
            .contains("another coffer run"),
        "{v}"
    );
    assert!(run_steps(&v).is_empty(), "{v}");
    // The control: a run with another state folder is not held back (it backs up at once).
    let apart = run_with("cache-apart", Some("state-apart"), false)
        .output()
        .unwrap();
    assert_ok(&apart, &["run (other state folder)"]);
    let v: serde_json::Value = serde_json::from_slice(&apart.stdout).unwrap();
    assert_eq!(run_steps(&v), [("backup".into(), true)], "{v}");
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the first run ended too soon"
    );
    // A killed run leaves nothing behind that matters here: the kernel drops its lock.
    holder.kill().unwrap();
    let _ = holder.wait_with_output().unwrap();
}
