//! `coffer setup-archiving URL [--apply]` against real PostgreSQL 15 clusters: what it
//! prints, what `--apply` changes in `pg_settings` and which restart it reports, that another
//! tool's `archive_command` survives without `--force`, and that the quoting carries an
//! awkward repository path through postgresql.conf and the shell unchanged.

mod common;

use common::archiving::{chown_tree, Archiving};
use common::postgres::{PgCluster, PgOptions};
use common::{expect_code, Env, PASSWORD};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_coffer");

/// A repository (at `repo`, default the Env's) with a password file, both readable by the
/// test: what archive_command is built from.
struct Setup {
    env: Env,
    repo: PathBuf,
    password_file: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        Self::at("repo")
    }

    fn at(repo_name: &str) -> Setup {
        let env = Env::new();
        let repo = env.path(repo_name);
        let password_file = env.path("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let s = Setup {
            env,
            repo,
            password_file,
        };
        let out = s.run(&["init", "--kdf-memory-kib", "1024"]);
        expect_code(&out, 0, "init");
        s
    }

    /// `coffer --repo REPO --password-file F ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        self.env
            .cmd_for_repo(&self.repo)
            .arg("--password-file")
            .arg(&self.password_file)
            .args(args)
            .output()
            .expect("run coffer")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        expect_code(&out, 0, &format!("{args:?}"));
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// The archive_command expected for plain paths (nothing to quote).
    fn plain_command(&self) -> String {
        format!(
            "{BIN} --repo={} --password-file={} wal-push %p",
            self.repo.display(),
            self.password_file.display()
        )
    }
}

/// The settings a JSON report lists, by name.
fn setting<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["settings"]
        .as_array()
        .expect("settings")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

/// `name|setting|pending_restart` from pg_settings.
fn pg_setting(pg: &PgCluster, name: &str) -> String {
    pg.psql(
        "postgres",
        &format!("SELECT setting || '|' || pending_restart FROM pg_settings WHERE name = '{name}'"),
    )
}

/// The archive_command the configuration files give (pg_settings hides it while
/// archive_mode is off).
fn file_command(pg: &PgCluster) -> String {
    pg.psql(
        "postgres",
        "SELECT setting FROM pg_file_settings WHERE name = 'archive_command' \
         ORDER BY seqno DESC LIMIT 1",
    )
}

/// Append `lines` to the cluster's postgresql.conf (the file stays the server's).
fn append_conf(pg: &PgCluster, lines: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(pg.data_dir().join("postgresql.conf"))
        .unwrap();
    writeln!(f, "{lines}").unwrap();
}

/// Reload the configuration and wait until a new session sees `check` true.
fn reload_until(pg: &PgCluster, check: &str) {
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let t0 = Instant::now();
    while pg.psql("postgres", check) != "t" {
        assert!(t0.elapsed() < Duration::from_secs(20), "no reload: {check}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn prints_the_settings_for_this_repository_and_changes_nothing() {
    let pg = PgCluster::start();
    let s = Setup::new();
    let url = pg.url("postgres");
    let report = s.json(&["setup-archiving", &url]);

    assert_eq!(report["applied"], false);
    assert_eq!(report["archive_command"], s.plain_command().as_str());
    let wal = setting(&report, "wal_level");
    assert_eq!(
        (&wal["current"], &wal["wanted"], &wal["change"]),
        (&"replica".into(), &"replica".into(), &false.into())
    );
    let mode = setting(&report, "archive_mode");
    assert_eq!(mode["current"], "off");
    assert_eq!(mode["wanted"], "on");
    assert_eq!(mode["change"], true);
    assert_eq!(mode["restart"], true);
    let cmd = setting(&report, "archive_command");
    assert_eq!(cmd["current"], "");
    assert_eq!(cmd["wanted"], s.plain_command().as_str());
    assert_eq!(setting(&report, "archive_timeout")["current"], "0s");
    assert_eq!(setting(&report, "archive_timeout")["wanted"], "60s");
    assert_eq!(
        report["restart_needed"],
        serde_json::json!(["archive_mode"])
    );
    assert_eq!(report["foreign"], serde_json::Value::Null);
    assert_eq!(
        report["postgresql_conf"],
        serde_json::json!([
            "wal_level = replica",
            "archive_mode = on",
            format!("archive_command = '{}'", s.plain_command()),
            "archive_timeout = 60s",
        ])
    );

    // The human form, with another RPO bound.
    let out = s.run(&["setup-archiving", &url, "--archive-timeout", "5s"]);
    expect_code(&out, 0, "setup-archiving");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("archive_mode: off -> on (takes effect after a restart)"),
        "{text}"
    );
    assert!(
        text.contains(&format!("archive_command = '{}'", s.plain_command())),
        "{text}"
    );
    assert!(text.contains("\narchive_timeout = 5s\n"), "{text}");
    assert!(
        text.contains("A restart is needed for archive_mode."),
        "{text}"
    );

    // Printing changed nothing on the server.
    assert_eq!(pg_setting(&pg, "archive_timeout"), "0|false");
    assert_eq!(pg_setting(&pg, "archive_mode"), "off|false");
    assert_eq!(file_command(&pg), "");
}

#[test]
fn apply_sets_them_reports_the_restart_and_is_then_done() {
    // wal_level = minimal in postgresql.conf: the one setting that must rise, by a restart.
    let mut pg = PgCluster::start();
    pg.stop();
    append_conf(&pg, "wal_level = minimal\nmax_wal_senders = 0");
    pg.restart();
    assert_eq!(pg_setting(&pg, "wal_level"), "minimal|false");
    let s = Setup::new();
    let url = pg.url("postgres");

    let report = s.json(&[
        "setup-archiving",
        &url,
        "--apply",
        "--archive-timeout",
        "30s",
    ]);
    assert_eq!(report["applied"], true);
    assert_eq!(report["reloaded"], true);
    assert_eq!(
        report["changed"],
        serde_json::json!([
            "wal_level",
            "archive_mode",
            "archive_command",
            "archive_timeout"
        ])
    );
    assert_eq!(
        report["restart_needed"],
        serde_json::json!(["archive_mode", "wal_level"])
    );
    // What reloads is in effect; what needs a restart is flagged by the server itself.
    assert_eq!(pg_setting(&pg, "archive_timeout"), "30|false");
    assert_eq!(pg_setting(&pg, "archive_mode"), "off|true");
    assert_eq!(pg_setting(&pg, "wal_level"), "minimal|true");
    assert_eq!(file_command(&pg), s.plain_command());

    // Before the restart, a second look says only the restart is missing.
    let again = s.json(&["setup-archiving", &url, "--archive-timeout", "30s"]);
    assert!(
        again["settings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["change"] == false),
        "{again:#}"
    );
    assert_eq!(
        again["restart_needed"],
        serde_json::json!(["wal_level", "archive_mode"])
    );

    pg.stop();
    pg.restart();
    // On a port of its own again.
    let url = pg.url("postgres");
    assert_eq!(pg_setting(&pg, "wal_level"), "replica|false");
    assert_eq!(pg_setting(&pg, "archive_mode"), "on|false");
    assert_eq!(
        pg_setting(&pg, "archive_command"),
        format!("{}|false", s.plain_command())
    );

    let out = s.run(&[
        "setup-archiving",
        &url,
        "--apply",
        "--archive-timeout",
        "30s",
    ]);
    expect_code(&out, 0, "second --apply");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Nothing to change"), "{text}");
    assert!(text.contains("No restart needed"), "{text}");
}

#[test]
fn the_applied_command_archives_through_wal_push() {
    let mut pg = PgCluster::start();
    let s = Setup::new();
    // The server runs archive_command as its own OS user (as root: `postgres`).
    // Its cache: a folder of its own (the server's HOME here is the test's).
    let cache = s.env.path("archiver-cache");
    std::fs::create_dir(&cache).unwrap();
    chown_tree(s.env.dir.path(), pg.owner());
    let cache_opt = format!("--cache-dir={}", cache.display());
    let report = s.json(&[
        &cache_opt,
        "setup-archiving",
        &pg.url("postgres"),
        "--apply",
    ]);
    assert_eq!(
        report["restart_needed"],
        serde_json::json!(["archive_mode"])
    );
    assert_eq!(
        report["archive_command"],
        s.plain_command()
            .replace(" wal-push", &format!(" {cache_opt} wal-push"))
    );
    pg.stop();
    pg.restart();
    let archiving = Archiving { env: s.env, pg };
    // Fails on any failed archive_command run, with the server's log.
    archiving.switch_and_wait();
}

#[test]
fn another_tools_archive_command_is_kept_without_force() {
    let pg = PgCluster::start();
    let s = Setup::new();
    let url = pg.url("postgres");
    let theirs = "pgbackrest --stanza=main archive-push %p";
    pg.psql(
        "postgres",
        &format!("ALTER SYSTEM SET archive_command = '{theirs}'"),
    );
    reload_until(
        &pg,
        "SELECT source = 'configuration file' FROM pg_settings WHERE name = 'archive_command'",
    );

    // Shown, with a warning; nothing refused yet.
    let out = s.run(&["--json", "setup-archiving", &url]);
    expect_code(&out, 0, "setup-archiving");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["foreign"],
        serde_json::json!({"kind": "command", "value": theirs})
    );
    assert_eq!(setting(&report, "archive_command")["current"], theirs);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: archive_command is already set to \"pgbackrest"),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "{stderr}");

    // --apply without --force: refused, nothing changed, one line saying what to do.
    let out = s.run(&["setup-archiving", &url, "--apply"]);
    expect_code(&out, 1, "--apply over another tool's command");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("coffer: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("pgbackrest") && errors[0].contains("--force"),
        "{stderr}"
    );
    assert!(errors[0].contains("nothing was changed"), "{stderr}");
    assert_eq!(file_command(&pg), theirs);
    assert_eq!(pg_setting(&pg, "archive_timeout"), "0|false");
    assert_eq!(pg_setting(&pg, "archive_mode"), "off|false");

    // --force replaces it.
    let report = s.json(&["setup-archiving", &url, "--apply", "--force"]);
    assert_eq!(report["applied"], true);
    assert_eq!(file_command(&pg), s.plain_command());
    assert_eq!(pg_setting(&pg, "archive_timeout"), "60|false");

    // coffer's own command, for another repository, is no other tool's: moved without --force.
    let other = Setup::new();
    let out = other.run(&["setup-archiving", &url, "--apply"]);
    expect_code(&out, 0, "--apply over an earlier setup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is an earlier coffer setup"), "{stderr}");
    assert_eq!(file_command(&pg), other.plain_command());
}

#[test]
fn a_setting_fixed_on_the_command_line_is_refused_before_anything_changes() {
    let pg = PgCluster::start_with(PgOptions {
        settings: vec![("archive_mode".into(), "off".into())],
        ..PgOptions::default()
    });
    let s = Setup::new();
    let url = pg.url("postgres");
    let out = s.run(&["setup-archiving", &url]);
    expect_code(&out, 0, "setup-archiving");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("archive_mode is set on the server's command line"),
        "{stderr}"
    );

    let out = s.run(&["setup-archiving", &url, "--apply"]);
    expect_code(&out, 1, "--apply");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ALTER SYSTEM cannot override"), "{stderr}");
    assert_eq!(file_command(&pg), "");
    assert_eq!(pg_setting(&pg, "archive_timeout"), "0|false");
}

/// What PostgreSQL's archiver does to archive_command before the shell runs it.
fn substitute(command: &str, path: &str) -> String {
    let mut out = String::new();
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match (c, c == '%') {
            (_, true) => match chars.next() {
                Some('p') => out.push_str(path),
                Some(other) => out.push(other),
                None => out.push('%'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[test]
fn an_awkward_repository_path_reaches_coffer_unchanged() {
    let pg = PgCluster::start();
    // Everything postgresql.conf, the archiver and the shell would otherwise read: quotes,
    // a backslash, a percent sign before p, a dollar, a space.
    let s = Setup::at("it's 100%p \\ $HOME `x`");
    let url = pg.url("postgres");
    let report = s.json(&["setup-archiving", &url]);
    let wanted = report["archive_command"].as_str().unwrap().to_string();
    let conf = report["postgresql_conf"][2].as_str().unwrap().to_string();

    // Through ALTER SYSTEM.
    s.json(&["setup-archiving", &url, "--apply"]);
    assert_eq!(file_command(&pg), wanted);

    // Through the printed postgresql.conf line.
    pg.psql("postgres", "ALTER SYSTEM RESET archive_command");
    append_conf(&pg, &conf);
    reload_until(
        &pg,
        "SELECT count(*) = 1 FROM pg_file_settings WHERE name = 'archive_command'",
    );
    assert_eq!(file_command(&pg), wanted);

    // And through the shell, as the archiver runs it: the same command with `snapshots` in
    // place of `wal-push %p` opens exactly this repository with exactly this password file
    // (the_applied_command_archives_through_wal_push runs wal-push itself).
    let stored = file_command(&pg);
    let listing = substitute(&stored, "pg_wal/000000010000000000000001").replace(
        " wal-push pg_wal/000000010000000000000001",
        " --json snapshots",
    );
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&listing)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", s.env.path(""))
        .env("COFFER_TEST_TINY_KDF", "1")
        .output()
        .unwrap();
    expect_code(&out, 0, &listing);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("repository {}", s.repo.display())),
        "{stderr}"
    );
    assert!(Path::new(&s.repo).join("config").exists());
}

#[test]
fn a_repository_that_cannot_be_put_into_archive_command_is_refused() {
    let pg = PgCluster::start();
    let url = pg.url("postgres");
    let env = Env::new();
    let run = |args: &[&str]| env.cmd().args(args).output().unwrap();
    // Env::cmd gives --repo DIR; these come on top as further regions.
    let out = run(&["--repo", "memory:", "setup-archiving", &url]);
    expect_code(&out, 2, "memory: region");
    let out = run(&["--repo", "eu=/srv/a\nb", "setup-archiving", &url]);
    expect_code(&out, 2, "a line break");
    assert!(String::from_utf8_lossy(&out.stderr).contains("control character"));
    let out = run(&[
        "--password-file",
        "/nonexistent/pw",
        "setup-archiving",
        &url,
    ]);
    expect_code(&out, 1, "missing password file");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/pw does not exist"));
}
