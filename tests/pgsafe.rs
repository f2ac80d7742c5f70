//! No code execution or secret leaks through the PostgreSQL tools, ssh and drills (issue 12,
//! security review M1, M2, L1, L6, L8, L12), through the real binary against real servers:
//! - psql meta-commands in a snapshot (a crafted dump or globals.sql) never run, and the
//!   restore or drill fails with nothing committed;
//! - the child programs get a cleared environment, and the URL's secrets reach libpq through
//!   private files, never argv or the environment;
//! - relative `PATH` entries are not searched for the client programs;
//! - a drill never drops another job's database, the server's own, or a database it did
//!   not create, and never restores into another job's bucket or a repository region;
//! - an SFTP host cannot be an ssh option, and coffer's own ssh check records no host key.

mod common;

use coffer::sources::bucket::Bucket;
use coffer::sources::pg_dump::PgDump;
use coffer::sources::SourceKind;
use common::postgres::PgCluster;
use common::Env;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "invalid JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A `--pg-bin` folder whose `psql`, `pg_dump` and `pg_dumpall` record their environment,
/// arguments and the modes of the credential files libpq is pointed at (`log/`, one set of
/// files per run), then run the real programs. `pg_dump` and `pg_dumpall` insert the lines
/// of `payload.pg_dump` / `payload.pg_dumpall` (when present) after the first `SET` line of
/// their output, with DUMPKEY replaced by the key of the dump's own `\restrict` line: a
/// snapshot as a machine holding the repository password could craft it.
fn pg_bin(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(dir.join("log")).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["psql", "pg_dump", "pg_dumpall"] {
        let script = r#"#!/bin/bash
set -o pipefail
D=@DIR@
n=$(date +%s%N).$$
env > "$D/log/@NAME@.$n.env"
printf '%s\n' "$@" > "$D/log/@NAME@.$n.args"
for f in "$PGPASSFILE" "$PGSERVICEFILE"; do
  if [ -n "$f" ]; then stat -c '%a %n' "$f" >> "$D/log/@NAME@.$n.files"; fi
done
if [ "$1" = --version ] || [ ! -e "$D/payload.@NAME@" ]; then exec @REAL@/@NAME@ "$@"; fi
@REAL@/@NAME@ "$@" | awk -v payload="$D/payload.@NAME@" '
  /^\\restrict / { key = $2 }
  { print }
  !done && /^SET / {
    while ((getline l < payload) > 0) { gsub(/DUMPKEY/, key, l); print l }
    close(payload); done = 1
  }'
"#
        .replace("@DIR@", &dir.display().to_string())
        .replace("@NAME@", name)
        .replace("@REAL@", &PgCluster::bin_dir().display().to_string());
        write_script(&bin.join(name), &script);
    }
    bin
}

/// Back up `url` through `bin`, with `tags`; returns the snapshot ID.
fn backup(env: &Env, bin: &Path, url: &str, extra: &[&str], tags: &[String]) -> String {
    let mut c = env.cmd();
    c.args(["--json", "backup", "--postgres", url, "--pg-bin"])
        .arg(bin)
        .args(extra);
    for t in tags {
        c.args(["--tag", t]);
    }
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    json_of(&out)["snapshot"].as_str().unwrap().to_string()
}

fn public_tables(pg: &PgCluster, db: &str) -> String {
    pg.psql(
        db,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    )
}

/// Every meta-command psql knows that could harm the restoring machine or the restore, each
/// in a dump that first leaves pg_dump's own restricted mode (`\unrestrict` with the dump's
/// key): none runs, the restore fails with exit 1 and the database stays empty.
#[test]
fn meta_commands_in_a_dump_never_run() {
    let pg = PgCluster::start();
    pg.createdb("app");
    // NULL in the first column, and values whose COPY lines start with a backslash: one
    // starting with a carriage return is written `\restrict ...`.
    pg.psql(
        "app",
        "CREATE TABLE t (a text, b int); \
         INSERT INTO t VALUES (NULL, 1), (E'\\restrict x', 2), (E'\\\\unrestrict y', 3), ('z', NULL);",
    );
    let sums = "SELECT md5(string_agg(t::text, ',' ORDER BY b NULLS LAST)) FROM t";
    let env = Env::new();
    env.init();
    let bin = pg_bin(&env.path("pg"));
    let fired = env.path("fired");
    std::fs::create_dir_all(&fired).unwrap();
    let f = fired.display();
    let payloads = [
        format!("\\! id > {f}/shell"),
        format!("\\o |id > {f}/pipe\nSELECT 1;"),
        format!("\\copy (SELECT 1) to program 'id > {f}/copy'"),
        "\\set ON_ERROR_STOP 0".to_string(),
        "\\connect postgres".to_string(),
        // Not a line of its own: it reaches psql, with the dump's key.
        format!(" \\unrestrict DUMPKEY\n\\! id > {f}/own-key"),
    ];
    for (i, payload) in payloads.iter().enumerate() {
        std::fs::write(
            env.path("pg/payload.pg_dump"),
            format!("\\unrestrict DUMPKEY\n{payload}\n"),
        )
        .unwrap();
        let id = backup(&env, &bin, &pg.url("app"), &[], &[]);
        let dump = env.ok(&["dump", &id, "app.sql"]);
        assert!(dump.contains(payload.lines().last().unwrap()), "{dump}");
        let target = format!("restored{i}");
        let out = env.run(&["restore", &id, "--to-postgres", &pg.url(&target)]);
        let err = stderr(&out);
        let ran: Vec<_> = std::fs::read_dir(&fired).unwrap().flatten().collect();
        assert!(ran.is_empty(), "{payload}: {ran:?}");
        assert_eq!(public_tables(&pg, "postgres"), "0", "{payload}");
        assert_eq!(out.status.code(), Some(1), "{payload}: {err}");
        assert!(err.contains("meta-command"), "{payload}: {err}");
        assert!(err.contains("rolled back"), "{payload}: {err}");
        assert_eq!(public_tables(&pg, &target), "0", "{payload}");
    }

    // A genuine dump (with pg_dump's own \restrict lines) still restores exactly.
    std::fs::remove_file(env.path("pg/payload.pg_dump")).unwrap();
    let id = backup(&env, &bin, &pg.url("app"), &[], &[]);
    let dump = env.ok(&["dump", &id, "app.sql"]);
    assert!(
        dump.contains("\n\\restrict ") && dump.contains("\n\\N\t1\n"),
        "{dump}"
    );
    let r = env.json(&["restore", &id, "--to-postgres", &pg.url("copy")]);
    assert_eq!(r["mismatches"], serde_json::json!([]), "{r}");
    assert_eq!(pg.psql("copy", sums), pg.psql("app", sums));
}

/// A crafted `globals.sql`: refused before anything in it runs (the globals are not one
/// transaction, so a role created before the meta-command would stay).
#[test]
fn meta_commands_in_globals_never_run() {
    let pg = PgCluster::start();
    pg.createdb("app");
    pg.psql("app", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);");
    let env = Env::new();
    env.init();
    let bin = pg_bin(&env.path("pg"));
    let fired = env.path("fired");
    std::fs::write(
        env.path("pg/payload.pg_dumpall"),
        format!(
            "\\unrestrict DUMPKEY\nCREATE ROLE coffer_evil;\n\\! id > {}\n",
            fired.display()
        ),
    )
    .unwrap();
    let id = backup(&env, &bin, &pg.url("app"), &["--postgres-globals"], &[]);
    let out = env.run(&[
        "restore",
        &id,
        "--to-postgres",
        &pg.url("restored"),
        "--globals",
    ]);
    let err = stderr(&out);
    assert!(!fired.exists(), "the shell command ran");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("meta-command") && err.contains("globals.sql"),
        "{err}"
    );
    // Refused before anything ran: the roles come first, so not even the database was made.
    assert_eq!(
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'coffer_evil'; \
             SELECT count(*) FROM pg_database WHERE datname = 'restored';"
        ),
        "0\n0"
    );
}

/// The drill restores the newest snapshot unattended: a crafted one fails the drill (exit 1)
/// and runs nothing.
#[test]
fn a_drill_of_a_crafted_snapshot_fails_and_runs_nothing() {
    let pg = PgCluster::start();
    pg.createdb("app");
    pg.psql("app", "CREATE TABLE t (id int); INSERT INTO t VALUES (1);");
    let env = Env::new();
    env.init();
    let bin = pg_bin(&env.path("pg"));
    let fired = env.path("fired");
    std::fs::write(
        env.path("pg/payload.pg_dump"),
        format!("\\unrestrict DUMPKEY\n\\! id > {}\n", fired.display()),
    )
    .unwrap();
    let source = pg.url("app");
    backup(
        &env,
        &bin,
        &source,
        &[],
        &PgDump(source.clone()).tags("app"),
    );
    let config = env.path("coffer.toml");
    std::fs::write(
        &config,
        format!(
            "[[job]]\nname = \"app\"\npostgres = [{source:?}]\nschedule = \"daily 02:30\"\n\
             drill = {{ schedule = \"weekly\", postgres = {:?} }}\n",
            pg.url("scratch")
        ),
    )
    .unwrap();
    let out = env
        .cmd()
        .arg("--config")
        .arg(&config)
        .args(["--json", "drill"])
        .output()
        .unwrap();
    assert!(!fired.exists(), "the shell command ran");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let d = &json_of(&out)["drills"][0];
    let problem = d["sources"][0]["problems"][0].as_str().unwrap();
    assert!(problem.contains("meta-command"), "{problem}");
    assert_eq!(public_tables(&pg, "scratch"), "0");
}

/// Every run of psql and pg_dump, over a backup and a restore with a password (with `:` and
/// `\`, which the password file escapes) and an `sslpassword` in the URL: a cleared
/// environment with libpq's `PG*` kept, no secret on the command line or in the
/// environment, 0600 credential files that are gone afterwards, and a snapshot record
/// without the secrets.
#[test]
fn client_programs_get_a_clean_environment_and_no_secrets() {
    let pg = PgCluster::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 10); \
         CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD 'pa:ss\\w0rd';",
    );
    // Password authentication for this one role (trust for the others).
    let hba = pg.dir.path().join("data/pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all pwuser 127.0.0.1/32 scram-sha-256\n{rules}"),
    )
    .unwrap();
    pg.psql("postgres", "SELECT pg_reload_conf()");
    let env = Env::new();
    env.init();
    let bin = pg_bin(&env.path("pg"));
    let url = |db: &str| {
        format!(
            "postgresql://pwuser:pa%3Ass%5Cw0rd@127.0.0.1:{}/{db}?sslpassword=key-secret\
             &application_name=coffer-test",
            pg.port
        )
    };
    let with_noise = |c: &mut Command| {
        c.env("AWS_SECRET_ACCESS_KEY", "aws-secret")
            .env("AZURE_STORAGE_KEY", "azure-secret")
            .env("UNRELATED_SETTING", "x")
            .env("PGCONNECT_TIMEOUT", "9")
            // Would win over the password file, and is wrong.
            .env("PGPASSWORD", "wrong-password");
    };
    let mut c = env.cmd();
    with_noise(&mut c);
    let out = c
        .args(["--json", "backup", "--postgres", &url("app"), "--pg-bin"])
        .arg(&bin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = json_of(&out)["snapshot"].as_str().unwrap().to_string();
    let mut c = env.cmd();
    with_noise(&mut c);
    let out = c
        .args([
            "--json",
            "restore",
            &id,
            "--to-postgres",
            &url("copy"),
            "--pg-bin",
        ])
        .arg(&bin)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(pg.psql("copy", "SELECT count(*) FROM t"), "10");

    let mut runs = 0;
    let mut connecting = 0;
    for e in std::fs::read_dir(env.path("pg/log")).unwrap().flatten() {
        let p = e.path();
        let text = std::fs::read_to_string(&p).unwrap();
        for secret in ["pa:ss", "w0rd", "key-secret", "aws-secret", "azure-secret"] {
            assert!(!text.contains(secret), "{}: {text}", p.display());
        }
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".env") {
            runs += 1;
            for line in text.lines() {
                let var = line.split('=').next().unwrap();
                assert!(
                    !var.starts_with("COFFER_")
                        && !var.starts_with("AWS_")
                        && !var.starts_with("AZURE_")
                        && var != "UNRELATED_SETTING"
                        && var != "PGPASSWORD",
                    "{name}: {var} was passed on"
                );
            }
            let args = std::fs::read_to_string(p.with_extension("args")).unwrap();
            if args.lines().any(|a| a.starts_with("--dbname=")) {
                connecting += 1;
                let has = |prefix: &str| text.lines().any(|l| l.starts_with(prefix));
                assert!(has("PGCONNECT_TIMEOUT=9"), "{name}: {text}");
                assert!(has("PGPASSFILE=/"), "{name}: {text}");
                assert!(has("PGSERVICEFILE=/"), "{name}: {text}");
                let files = std::fs::read_to_string(p.with_extension("files")).unwrap();
                for line in files.lines() {
                    let (mode, path) = line.split_once(' ').unwrap();
                    assert_eq!(mode, "600", "{line}");
                    assert!(!Path::new(path).exists(), "{path} was left behind");
                }
            }
        }
    }
    assert!(
        connecting >= 4 && runs > connecting,
        "{runs} runs, {connecting} connecting"
    );
    let listing = env.ok(&["--json", "snapshots"]);
    assert!(
        !listing.contains("key-secret") && !listing.contains("w0rd"),
        "{listing}"
    );
    assert!(
        listing.contains("application_name=coffer-test"),
        "{listing}"
    );
}

/// A `PATH` with an empty and a relative entry: the programs planted there (in the folder
/// coffer is started from) are never run, not even with `--version`.
#[test]
fn relative_path_entries_are_not_searched() {
    let pg = PgCluster::start();
    pg.createdb("app");
    let env = Env::new();
    env.init();
    let cwd = env.path("cwd");
    std::fs::create_dir_all(cwd.join("bin")).unwrap();
    let ran = env.path("ran");
    for dir in [cwd.clone(), cwd.join("bin")] {
        for name in ["psql", "pg_dump"] {
            write_script(
                &dir.join(name),
                &format!("#!/bin/sh\necho \"$0\" >> {}\nexit 1\n", ran.display()),
            );
        }
    }
    let path = format!("bin::{}", std::env::var("PATH").unwrap());
    let out = env
        .cmd()
        .current_dir(&cwd)
        .env("PATH", path)
        .args(["backup", "--postgres", &pg.url("app")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !ran.exists(),
        "ran: {}",
        std::fs::read_to_string(&ran).unwrap_or_default()
    );
}

fn drill_config(env: &Env, jobs: &str) -> PathBuf {
    let f = env.path("coffer.toml");
    std::fs::write(&f, jobs).unwrap();
    f
}

fn drill(env: &Env, config: &Path, job: &str) -> Output {
    env.cmd()
        .arg("--config")
        .arg(config)
        .args(["--json", "drill", job])
        .output()
        .unwrap()
}

fn first_problem(out: &Output) -> String {
    json_of(out)["drills"][0]["sources"][0]["problems"][0]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Scratch databases that are not a drill's own: another job's source, the server's
/// `postgres`, a database that exists without the drill's mark. Each is refused and keeps
/// its data; a database an earlier drill made (marked) is reused.
#[test]
fn a_drill_drops_only_its_own_scratch_database() {
    let pg = PgCluster::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);",
    );
    pg.createdb("orders");
    pg.psql(
        "orders",
        "CREATE TABLE customer_orders (id int); \
         INSERT INTO customer_orders SELECT generate_series(1, 1000);",
    );
    pg.createdb("kept");
    pg.psql(
        "kept",
        "CREATE TABLE precious (id int); INSERT INTO precious VALUES (7);",
    );
    let env = Env::new();
    env.init();
    let app = pg.url("app");
    let mut args = vec!["backup".to_string(), "--postgres".to_string(), app.clone()];
    for t in PgDump(app.clone()).tags("a") {
        args.extend(["--tag".to_string(), t]);
    }
    env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let config = |scratch: &str| {
        drill_config(
            &env,
            &format!(
                "[[job]]\nname = \"a\"\npostgres = [{app:?}]\nschedule = \"daily 02:30\"\n\
                 drill = {{ schedule = \"weekly\", postgres = {scratch:?} }}\n\n\
                 [[job]]\nname = \"b\"\npostgres = [{:?}]\nschedule = \"daily 02:30\"\n",
                pg.url("orders")
            ),
        )
    };

    // Job b's source, written with another host name.
    let out = drill(
        &env,
        &config(&pg.url("orders").replace("127.0.0.1", "localhost")),
        "a",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let p = first_problem(&out);
    assert!(p.contains("job \"b\""), "{p}");
    assert_eq!(
        pg.psql("orders", "SELECT count(*) FROM customer_orders"),
        "1000"
    );

    // The server's own databases.
    for db in ["postgres", "template1"] {
        let out = drill(&env, &config(&pg.url(db)), "a");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let p = first_problem(&out);
        assert!(p.contains("server's own"), "{p}");
    }
    assert_eq!(public_tables(&pg, "postgres"), "0");

    // A database the drill did not make.
    let out = drill(&env, &config(&pg.url("kept")), "a");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let p = first_problem(&out);
    assert!(p.contains("not a drill's scratch database"), "{p}");
    assert_eq!(pg.psql("kept", "SELECT id FROM precious"), "7");

    // A new one is made and marked; the next drill replaces it; so is one an earlier drill
    // left (marked, holding something else).
    pg.createdb("earlier");
    pg.psql(
        "earlier",
        "CREATE TABLE leftover (id int); COMMENT ON DATABASE earlier IS 'coffer drill scratch';",
    );
    for scratch in ["fresh", "fresh", "earlier"] {
        let out = drill(&env, &config(&pg.url(scratch)), "a");
        assert_eq!(out.status.code(), Some(0), "{scratch}: {}", stderr(&out));
        assert_eq!(pg.psql(scratch, "SELECT count(*) FROM t"), "2");
        assert_eq!(
            pg.psql(
                "postgres",
                &format!(
                    "SELECT shobj_description(oid, 'pg_database') FROM pg_database \
                     WHERE datname = '{scratch}'"
                )
            ),
            "coffer drill scratch"
        );
    }
    assert_eq!(
        pg.psql(
            "earlier",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'"
        ),
        "0"
    );
}

/// A bucket drill's scratch place may not overlap another job's source bucket, nor a region
/// of the repository (local folders here; the check is the same for s3:// and azblob://).
#[test]
fn a_bucket_drill_stays_out_of_sources_and_regions() {
    let env = Env::new();
    env.init();
    let src_a = env.path("src-a");
    let src_b = env.path("src-b");
    for (d, body) in [(&src_a, "a"), (&src_b, "b")] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("object.txt"), body).unwrap();
    }
    let a = src_a.display().to_string();
    let mut args = vec!["backup".to_string(), "--bucket".to_string(), a.clone()];
    for t in Bucket(a.clone()).tags("a") {
        args.extend(["--tag".to_string(), t]);
    }
    env.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let b = src_b.display().to_string();
    for scratch in [src_b.join("drill"), env.repo().join("drill")] {
        let config = drill_config(
            &env,
            &format!(
                "[[job]]\nname = \"a\"\nbuckets = [{a:?}]\nschedule = \"daily 02:30\"\n\
                 drill = {{ schedule = \"weekly\", bucket = {:?} }}\n\n\
                 [[job]]\nname = \"b\"\nbuckets = [{b:?}]\nschedule = \"daily 02:30\"\n",
                scratch.display().to_string()
            ),
        );
        let out = drill(&env, &config, "a");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let p = first_problem(&out);
        assert!(
            p.contains("job \"b\"") || p.contains("a region of the repository"),
            "{p}"
        );
        assert!(!scratch.exists(), "{} was written", scratch.display());
    }
    assert_eq!(common::read_folder(&src_b).len(), 1);
}

/// An SFTP host that ssh would read as an option is a usage error, and nothing runs.
#[test]
fn an_sftp_host_cannot_be_an_ssh_option() {
    let env = Env::new();
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .current_dir(&cwd)
        .env("COFFER_PASSWORD", "x")
        .args([
            "-r",
            "sftp://-oProxyCommand=touch${IFS}pwned/srv/repo",
            "snapshots",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("starts with '-'"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0);
}

/// coffer's own ssh login check (the `ssh ... -s -- HOST sftp` it runs before the first SFTP
/// operation) gets a cleared environment with the agent's socket, puts `--` before the host,
/// and with `known_hosts=accept` records no host key.
#[test]
fn coffers_ssh_check_is_clean_and_records_no_host_key() {
    let sshd = common::servers::Sshd::start();
    let env = Env::new();
    // A wrapper first on PATH records every ssh run (coffer's check and opendal's own).
    let bin = env.path("bin");
    let log = env.path("ssh-log");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    let real = ["/usr/bin/ssh", "/bin/ssh"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("ssh is missing; install it: apt-get install openssh-client");
    write_script(
        &bin.join("ssh"),
        &format!(
            "#!/bin/sh\nn=$(date +%s%N).$$\nenv > {l}/$n.env\nprintf '%s\\n' \"$@\" > {l}/$n.args\n\
             exec {real} \"$@\"\n",
            l = log.display()
        ),
    );
    let url = sshd.url(&sshd.folder("repo"));
    let out = env
        .cmd()
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret")
        .args(["-r", &url, "init", "--kdf-memory-kib", "1024"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut checks = 0;
    for e in std::fs::read_dir(&log).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "args") {
            continue;
        }
        let args: Vec<String> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        // Only coffer's check starts the subsystem on its own connection; the openssh
        // crate's master runs `-M -N`, and its sessions go through the master (`-S`).
        let has = |a: &str| args.iter().any(|x| x == a);
        if args.last().map(String::as_str) != Some("sftp") || has("-M") || has("-S") {
            continue;
        }
        checks += 1;
        assert_eq!(
            args[args.len() - 4..],
            ["-s", "--", "127.0.0.1", "sftp"],
            "{args:?}"
        );
        assert!(
            args.contains(&"UserKnownHostsFile=/dev/null".to_string()),
            "{args:?}"
        );
        let vars = std::fs::read_to_string(p.with_extension("env")).unwrap();
        assert!(
            vars.contains("SSH_AUTH_SOCK=/nonexistent/agent.sock"),
            "{vars}"
        );
        assert!(
            !vars.contains("COFFER_PASSWORD") && !vars.contains("aws-secret"),
            "{vars}"
        );
    }
    assert_eq!(checks, 1, "coffer's ssh check did not run once");
    // The ssh that opendal starts for the SFTP connection itself cannot be given an
    // environment, but coffer took its password variables out of its own at start, so no
    // ssh run sees them.
    let mut runs = 0;
    for e in std::fs::read_dir(&log).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == "env") {
            runs += 1;
            let vars = std::fs::read_to_string(e.path()).unwrap();
            assert!(!vars.contains("COFFER_PASSWORD"), "{vars}");
        }
    }
    assert!(
        runs > checks,
        "opendal's ssh did not run through the wrapper"
    );
}
