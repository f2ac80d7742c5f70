//! Monitoring through the real binary: `coffer status` exit codes and JSON with time injected
//! by COFFER_TEST_NOW, the metrics file, webhook and ping after `coffer run` (received by a
//! local HTTP listener), `coffer runbook` online and offline, and `coffer schedule install`.

mod common;

use common::http::HookServer;
use common::{assert_ok, Env, PASSWORD};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A job file with one job `app` backing up `data`, plus `extra` lines (in the job, or
/// sections after it).
fn job_file(env: &Env, data: &Path, extra: &str) -> PathBuf {
    let path = env.path("coffer.toml");
    let text = format!(
        "[[job]]\nname = \"app\"\npaths = [\"{}\"]\nschedule = \"daily 02:30\"\n{extra}",
        data.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn data_folder(env: &Env) -> PathBuf {
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("a.txt"), b"first night").unwrap();
    data
}

/// `coffer --config CONFIG ARGS` at `now`, against `env`'s repository.
fn at(env: &Env, config: &Path, now: &str, args: &[&str]) -> Output {
    env.cmd()
        .env("COFFER_TEST_NOW", now)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run coffer")
}

/// What a job's run would have made: a snapshot tagged with the job and the source.
fn tagged_backup(env: &Env, data: &Path, time: &str) {
    let d = data.to_str().unwrap();
    env.ok(&[
        "backup",
        d,
        "--tag",
        "job:app",
        "--tag",
        "source:files",
        "--time",
        time,
    ]);
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn status_exits_1_past_the_rpo_and_the_json_names_the_problem() {
    let env = Env::new();
    env.init();
    let data = data_folder(&env);
    let config = job_file(&env, &data, "rpo = \"26h\"\n");
    tagged_backup(&env, &data, "2026-11-27T02:30:00Z");

    let fresh = at(&env, &config, "2026-11-27T03:30:00Z", &["--json", "status"]);
    assert_eq!(fresh.status.code(), Some(0), "{}", stdout(&fresh));
    let v: serde_json::Value = serde_json::from_slice(&fresh.stdout).unwrap();
    let job = &v["jobs"][0];
    assert_eq!(
        (job["job"].as_str(), job["healthy"].as_bool()),
        (Some("app"), Some(true))
    );
    assert_eq!(job["rpo_ok"], true);
    // The test clock starts at COFFER_TEST_NOW and runs on.
    let age = job["age_seconds"].as_f64().unwrap();
    assert!((3600.0..3900.0).contains(&age), "{age}");
    assert_eq!(job["sources"][0]["source"], "files");
    assert_eq!(job["last_backup"], "2026-11-27T02:30:00Z");
    assert_eq!(v["regions"][0]["reachable"], true);
    // No RTO set: not checked, and said so.
    assert_eq!(job["rto_ok"], serde_json::Value::Null);
    assert!(job["notes"].to_string().contains("no RTO set"), "{job}");

    // 30 hours later, with no backup in between.
    let late = at(&env, &config, "2026-11-28T08:30:00Z", &["--json", "status"]);
    assert_eq!(late.status.code(), Some(1), "{}", stdout(&late));
    let v: serde_json::Value = serde_json::from_slice(&late.stdout).unwrap();
    assert_eq!(v["healthy"], false);
    assert_eq!(v["jobs"][0]["rpo_ok"], false);
    assert_eq!(
        v["jobs"][0]["problems"][0],
        "past its RPO: newest snapshot is 30h old, RPO 26h"
    );
    // The table says the same, and so does its exit status.
    let table = at(&env, &config, "2026-11-28T08:30:00Z", &["status"]);
    assert_eq!(table.status.code(), Some(1));
    let text = stdout(&table);
    assert!(text.contains("30h/26h") && text.contains("FAIL"), "{text}");
    assert!(text.contains("past its RPO"), "{text}");
}

#[test]
fn status_of_a_repository_that_cannot_be_opened_is_a_failure() {
    let env = Env::new();
    let data = data_folder(&env);
    let config = job_file(&env, &data, "rpo = \"26h\"\n");
    // Never initialised.
    let out = at(&env, &config, "2026-11-27T03:30:00Z", &["--json", "status"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["healthy"], false);
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open the repository"));
    // An unknown job is a usage error.
    env.init();
    let out = at(&env, &config, "2026-11-27T03:30:00Z", &["status", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_run_writes_the_metrics_file_posts_the_webhook_and_pings() {
    let env = Env::new();
    env.init();
    let data = data_folder(&env);
    let hook = HookServer::start();
    let prom = env.path("textfile/coffer.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let extra = format!(
        "rpo = \"26h\"\n\n[monitoring]\nprometheus_textfile = \"{}\"\nwebhook = \"{}/hook/T0KEN\"\nping_url = \"{}/ping/abc\"\n",
        prom.display(),
        hook.url(),
        hook.url()
    );
    let config = job_file(&env, &data, &extra);
    let out = at(&env, &config, "2026-11-27T02:31:00Z", &["--json", "run"]);
    assert_ok(&out, &["run"]);

    let metrics = std::fs::read_to_string(&prom).expect("metrics file written");
    assert!(
        metrics.contains("# TYPE coffer_job_rpo_ok gauge"),
        "{metrics}"
    );
    assert!(
        metrics.contains("coffer_job_rpo_ok{job=\"app\"} 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("coffer_source_last_bytes_added{job=\"app\",source=\"files\"} "));
    assert!(metrics.contains("coffer_job_step_last_ok{job=\"app\",step=\"backup\"} 1\n"));
    assert!(
        metrics.contains("coffer_region_up{region=\"region1\"} 1\n"),
        "{metrics}"
    );

    let reqs = hook.requests();
    let webhook = reqs
        .iter()
        .find(|r| r.path == "/hook/T0KEN")
        .expect("webhook called");
    assert_eq!(webhook.method, "POST");
    assert_eq!(webhook.header("content-type"), Some("application/json"));
    let body = webhook.json();
    assert_eq!(body["ok"], true);
    assert_eq!(body["steps"][0]["job"], "app");
    assert_eq!(body["steps"][0]["step"], "backup");
    let ping = reqs
        .iter()
        .find(|r| r.path == "/ping/abc")
        .expect("success ping");
    assert_eq!(ping.method, "POST");
    assert!(ping.text().contains("ok"), "{}", ping.text());
    assert!(reqs.iter().any(|r| r.path == "/ping/abc/start"));
    assert!(!reqs.iter().any(|r| r.path == "/ping/abc/fail"));
}

#[test]
fn a_failed_run_pings_fail_and_an_unreachable_hook_is_only_a_warning() {
    let env = Env::new();
    env.init();
    let hook = HookServer::start();
    // A port nothing listens on: bind one, note it, let it go.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = format!(
        "\n[monitoring]\nwebhook = \"http://{closed}/hook\"\nping_url = \"{}/ping/abc\"\n",
        hook.url()
    );
    let config = job_file(&env, &env.path("missing"), &extra);
    let out = at(&env, &config, "2026-11-27T02:31:00Z", &["run"]);
    // The backup failed (its folder is missing): that, not the hook, decides the status.
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: webhook http://127.0.0.1:"), "{err}");
    let reqs = hook.requests();
    let fail = reqs
        .iter()
        .find(|r| r.path == "/ping/abc/fail")
        .expect("fail ping");
    assert!(fail.text().contains("FAIL app backup"), "{}", fail.text());

    // A failing hook does not fail a good run either.
    let data = data_folder(&env);
    let config = job_file(&env, &data, &extra);
    let out = at(&env, &config, "2026-11-27T02:50:00Z", &["run", "--force"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Newcomer review 7: a metrics file in a folder that does not exist was a warning in a log,
/// so alerting was blind from day one. It is an alert of the run (exit 1), and `status` is
/// unhealthy until a run writes the file again.
#[test]
fn a_metrics_file_that_cannot_be_written_makes_status_unhealthy_until_written() {
    let env = Env::new();
    env.init();
    let data = data_folder(&env);
    let prom = env.path("no-such-folder/coffer.prom");
    let extra = format!(
        "\n[monitoring]\nprometheus_textfile = \"{}\"\n",
        prom.display()
    );
    let config = job_file(&env, &data, &extra);
    let out = at(&env, &config, "2026-11-27T02:31:00Z", &["--json", "run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    let alert = report["alerts"][0].as_str().unwrap_or_default();
    assert!(
        alert.contains("metrics file") && alert.contains("coffer.prom"),
        "{report}"
    );
    assert!(
        common::run_steps(&report).iter().all(|(_, ok)| *ok),
        "{report}"
    );

    let status = at(&env, &config, "2026-11-27T02:40:00Z", &["--json", "status"]);
    assert_eq!(status.status.code(), Some(1), "{}", stdout(&status));
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["healthy"], false, "{v}");
    assert_eq!(v["jobs"][0]["healthy"], true, "the job itself is fine: {v}");
    let problem = v["problems"][0].as_str().unwrap_or_default();
    assert!(problem.contains(&prom.display().to_string()), "{v}");
    assert!(problem.contains("No such file or directory"), "{v}");
    let text = at(&env, &config, "2026-11-27T02:40:00Z", &["status"]);
    assert_eq!(text.status.code(), Some(1));
    assert!(
        stdout(&text).contains("monitoring: metrics file"),
        "{}",
        stdout(&text)
    );

    // Once the folder exists the next run writes the file, and status is healthy again.
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let out = at(&env, &config, "2026-11-27T02:45:00Z", &["--json", "run"]);
    assert_ok(&out, &["run (metrics folder made)"]);
    assert!(prom.exists());
    let status = at(&env, &config, "2026-11-27T02:50:00Z", &["--json", "status"]);
    assert_ok(&status, &["status (metrics written)"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
}

/// `coffer --config CONFIG runbook` with the regions of the job file (no --repo).
fn runbook(env: &Env, config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.dir.path())
        .env("TZ", "UTC")
        .arg("--config")
        .arg(config)
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("--state-dir")
        .arg(env.state())
        .arg("runbook")
        .stdin(Stdio::null())
        .output()
        .expect("run coffer")
}

#[test]
fn the_runbook_names_the_regions_and_each_sources_restore_commands() {
    let env = Env::new();
    env.init();
    let data = data_folder(&env);
    let password = env.path("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let file = format!(
        "[repository]\nregions = [\"eu={}\"]\npassword_file = \"{}\"\n\n\
         [[job]]\nname = \"app\"\npaths = [\"{}\"]\npostgres = [\"postgresql://backup:hunter2@db.internal:5432/app\"]\n\
         buckets = [\"s3://storage/public?endpoint=http://127.0.0.1:9000\"]\n\
         schedule = \"daily 02:30\"\nrpo = \"26h\"\nrto = \"15m\"\n\n\
         [[job]]\nname = \"etc\"\npaths = [\"{}\"]\nschedule = \"every 6h\"\n",
        env.repo().display(),
        password.display(),
        data.display(),
        data.display()
    );
    let config = env.path("coffer.toml");
    std::fs::write(&config, file).unwrap();
    tagged_backup(&env, &data, "2026-11-27T02:30:00Z");

    let out = runbook(&env, &config);
    assert_ok(&out, &["runbook"]);
    let text = stdout(&out);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains(&format!("| eu | `{}` |", env.repo().display())),
        "{text}"
    );
    assert!(text.contains(&password.display().to_string()));
    assert!(text.contains("coffer check"));
    for want in [
        "## 4. Job `app`",
        "RPO 26h",
        "Expected RTO: unknown: no drill has run; RTO target 15m.",
        "coffer snapshots --tag job:app --tag source:files ",
        "coffer restore latest --tag job:app --tag source:files --target /",
        "coffer restore latest --tag job:app --tag source:postgres:db.internal:5432/app --to-postgres postgresql://backup@db.internal:5432/app",
        "coffer restore latest --tag job:app --tag source:bucket:s3://storage/public --to-bucket 's3://storage/public?endpoint=http://127.0.0.1:9000'",
        "`@TIME` in place of `latest`",
        "## 5. Job `etc`",
        "coffer restore latest --tag job:etc --tag source:files --target /",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    assert!(!text.contains("jq"), "{text}");

    // The runbook's own commands, run as printed through a shell (into a folder instead of /),
    // must pick each source's snapshot by its tags: snapshots without them, newer or in
    // between, must not be chosen.
    let set_data = |what: &str| std::fs::write(data.join("a.txt"), what).unwrap();
    let backup_untagged = |time: &str| {
        env.ok(&["backup", data.to_str().unwrap(), "--time", time]);
    };
    set_data("untagged in between");
    backup_untagged("2026-11-27T03:00:00Z");
    set_data("second night");
    tagged_backup(&env, &data, "2026-11-27T03:30:00Z");
    set_data("untagged, newest");
    backup_untagged("2026-11-27T04:00:00Z");
    let command = |job_tag: &str, starts: &str| {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(starts) && l.contains(job_tag))
            .unwrap_or_else(|| panic!("no {starts:?} line for {job_tag} in\n{text}"))
            .to_string()
    };
    let shell = |line: &str| {
        let script = format!("coffer() {{ \"$COFFER\" \"$@\"; }}; {line}");
        Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("COFFER", env!("CARGO_BIN_EXE_coffer"))
            .env("COFFER_REPOSITORY", env.repo())
            .env("COFFER_PASSWORD", PASSWORD)
            .env("HOME", env.dir.path())
            .env("TZ", "UTC")
            .output()
            .unwrap()
    };
    let restored = |dir: &Path| {
        let file = dir.join(data.strip_prefix("/").unwrap()).join("a.txt");
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    };

    // `coffer snapshots` as printed lists exactly the two tagged ones.
    let list = command("job:app --tag source:files", "coffer snapshots");
    let out = shell(&list.replacen("coffer snapshots", "coffer --json snapshots", 1));
    assert_ok(&out, &["runbook's snapshots line"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let times: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["time"].as_str().unwrap())
        .collect();
    assert_eq!(
        times,
        ["2026-11-27T02:30:00Z", "2026-11-27T03:30:00Z"],
        "{listed}"
    );

    // `latest` brings back the newest tagged snapshot.
    let restore = command("job:app --tag source:files", "coffer restore latest");
    let into =
        |dir: &Path| restore.replacen(" --target / ", &format!(" --target {} ", dir.display()), 1);
    let latest = env.path("restored-latest");
    let out = shell(&into(&latest));
    assert_ok(&out, &["runbook's restore line"]);
    assert_eq!(restored(&latest), "second night");
    // `@TIME` in place of `latest`, tags kept: the tagged one at or before that time.
    let earlier = env.path("restored-earlier");
    let line = into(&earlier).replacen(" latest ", " @2026-11-27T03:15:00Z ", 1);
    let out = shell(&line);
    assert_ok(&out, &["runbook's restore line, @TIME"]);
    assert_eq!(restored(&earlier), "first night");

    // No snapshot of job etc: its restore line fails and restores nothing.
    let nothing = env.path("restored-etc");
    let etc = command("job:etc", "coffer restore latest").replacen(
        " --target / ",
        &format!(" --target {} ", nothing.display()),
        1,
    );
    let out = shell(&etc);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no snapshot has the tag(s)"));
    assert!(!nothing.join(data.strip_prefix("/").unwrap()).exists());

    // Offline: the repository is gone, the runbook still comes from the job file.
    std::fs::rename(env.repo(), env.path("elsewhere")).unwrap();
    let out = runbook(&env, &config);
    assert_ok(&out, &["runbook", "offline"]);
    let text = stdout(&out);
    assert!(
        text.contains("drill figures (expected RTO) are unknown"),
        "{text}"
    );
    assert!(
        text.contains("| eu |") && text.contains("--to-postgres"),
        "{text}"
    );
}

#[test]
fn schedule_install_writes_a_service_and_a_timer_that_name_the_job_file() {
    // Outside /tmp, which the service gets a private copy of (PrivateTmp=yes).
    let env = Env::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let data = data_folder(&env);
    let config = job_file(&env, &data, "nice = 10\nio_priority = \"idle\"\n");
    let dir = env.path("units");
    let out = env
        .cmd()
        .arg("--config")
        .arg(&config)
        .args(["schedule", "install", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_ok(&out, &["schedule", "install"]);
    assert!(stdout(&out).contains("systemctl enable --now coffer.timer"));
    let service = std::fs::read_to_string(dir.join("coffer.service")).unwrap();
    let timer = std::fs::read_to_string(dir.join("coffer.timer")).unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_coffer")).unwrap();
    let exec = format!(
        "ExecStart={} --config {} --cache-dir {} --state-dir {} --repo region1={} run\n",
        exe.display(),
        config.display(),
        env.cache().display(),
        env.state().display(),
        env.repo().display()
    );
    assert!(service.contains(&exec), "{service}");
    assert!(service.contains("Type=oneshot\n"));
    assert!(service.contains("Nice=10\n") && service.contains("IOSchedulingClass=idle\n"));
    assert!(!service.contains(PASSWORD));
    // Hardening (security review L11): private files, no privilege gain, a read-only system
    // but for the cache and the repository folder, and a hung run is stopped.
    for line in [
        "UMask=0077\n",
        "NoNewPrivileges=yes\n",
        "PrivateTmp=yes\n",
        "ProtectSystem=strict\n",
        "ProtectHome=read-only\n",
        "StateDirectory=coffer\nStateDirectoryMode=0700\n",
        "TimeoutStartSec=12h\n",
        &format!("ReadWritePaths=-{}\n", env.cache().display()),
        &format!("ReadWritePaths=-{}\n", env.state().display()),
        &format!("ReadWritePaths=-{}\n", env.repo().display()),
    ] {
        assert!(service.contains(line), "no {line:?} in:\n{service}");
    }
    // The cache folder was given, so systemd's is not used.
    assert!(!service.contains("CacheDirectory"), "{service}");
    // Unit files hold no secret and are read by systemctl: 0644 whatever coffer's umask.
    use std::os::unix::fs::PermissionsExt;
    for f in ["coffer.service", "coffer.timer"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{f}");
    }
    assert!(
        timer.contains("OnCalendar=*:0/5\n") && timer.contains("Persistent=true\n"),
        "{timer}"
    );
    assert!(timer.contains("WantedBy=timers.target"));

    // User units, another interval.
    let out = env
        .cmd()
        .arg("--config")
        .arg(&config)
        .args([
            "--json", "schedule", "install", "--user", "--every", "7m", "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_ok(&out, &["schedule", "install", "--user"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["next"]
        .as_str()
        .unwrap()
        .contains("systemctl --user enable --now coffer.timer"));
    let timer = std::fs::read_to_string(dir.join("coffer.timer")).unwrap();
    assert!(timer.contains("OnUnitActiveSec=420s\n"), "{timer}");
    // A user manager cannot apply the file system sandbox without a user namespace.
    let service = std::fs::read_to_string(dir.join("coffer.service")).unwrap();
    assert!(
        service.contains("UMask=0077\n") && !service.contains("ProtectSystem"),
        "{service}"
    );
    // The state folder is named, so the user's shell and its user manager share it.
    let state = format!(" --state-dir {} ", env.state().display());
    assert!(service.contains(&state), "{service}");

    // Without --cache-dir and --state-dir: systemd's private CacheDirectory, the state in
    // /var/lib/coffer (root's default too, so a run from the shell shares its state and run
    // lock), and the metrics folder and the
    // drill's scratch folder are the other writable places. A metrics file in /tmp must be
    // seen by node_exporter, so the service keeps the shared /tmp.
    let textfile = PathBuf::from("/tmp/coffer-test-textfile-never-created");
    let scratch = env.path("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let config = job_file(
        &env,
        &data,
        &format!(
            "drill = {{ schedule = \"weekly\", target = \"{}\" }}\n\n\
             [monitoring]\nprometheus_textfile = \"{}/coffer.prom\"\n",
            scratch.display(),
            textfile.display()
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .env_clear()
        .env("COFFER_PASSWORD", PASSWORD)
        .arg("--repo")
        .arg(env.repo())
        .arg("--config")
        .arg(&config)
        .args(["schedule", "install", "--dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ok(&out, &["schedule", "install", "(system cache)"]);
    let service = std::fs::read_to_string(dir.join("coffer.service")).unwrap();
    assert!(
        service.contains(" --cache-dir /var/cache/coffer --state-dir /var/lib/coffer "),
        "{service}"
    );
    for line in [
        "CacheDirectory=coffer\nCacheDirectoryMode=0700\n".to_string(),
        format!("ReadWritePaths=-{}\n", textfile.display()),
        format!("ReadWritePaths=-{}\n", scratch.display()),
        format!("ReadWritePaths=-{}\n", env.repo().display()),
        format!("# No PrivateTmp=yes: {} must", textfile.display()),
    ] {
        assert!(service.contains(&line), "no {line:?} in:\n{service}");
    }
    assert!(!service.contains("\nPrivateTmp=yes"), "{service}");
}
