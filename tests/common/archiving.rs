//! A PostgreSQL cluster that archives its WAL into a coffer repository through the real
//! `coffer wal-push %p` as its `archive_command`.
//!
//! When the tests run as root, the server and so its `archive_command` run as the cluster's
//! owner: the repository, the password file and the archiver's cache folder are made theirs.

use super::postgres::{PgCluster, PgOptions};
use super::{Env, PASSWORD};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Archiving {
    pub env: Env,
    pub pg: PgCluster,
}

/// Give `path` and everything below it to `owner`.
pub fn chown_tree(path: &Path, owner: Option<(u32, u32)>) {
    let Some((uid, gid)) = owner else { return };
    let status = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown -R {}", path.display());
}

/// The `archive_command` that pushes into `env`'s repository (plus `extra` options, e.g. more
/// regions), with the password in a file and a cache folder of its own.
pub fn archive_command(env: &Env, extra: &str) -> String {
    format!(
        "{} --repo {} {extra} --password-file {} --cache-dir {} -q wal-push %p",
        env!("CARGO_BIN_EXE_coffer"),
        env.repo().display(),
        password_file(env).display(),
        env.path("archiver-cache").display()
    )
}

pub fn password_file(env: &Env) -> PathBuf {
    env.path("password")
}

/// What PostgreSQL said of a base backup taken through its low-level API.
#[derive(Debug, Clone)]
pub struct BaseStart {
    pub timeline: u32,
    /// As PostgreSQL prints them, e.g. `0/5000028`.
    pub start_lsn: String,
    pub stop_lsn: String,
}

/// An LSN as PostgreSQL prints it, as a number.
pub fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.trim().split_once('/').expect("an LSN");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

impl Archiving {
    /// A new repository and a cluster archiving into it, with `settings` on top.
    pub fn start(settings: &[(&str, &str)], checksums: bool) -> Archiving {
        Self::start_wrapped(settings, checksums, None)
    }

    /// Like [`Archiving::start`], with `wrapper` (a shell script) run as the archive
    /// command, given the `coffer ... wal-push %p` command as its arguments.
    pub fn start_wrapped(
        settings: &[(&str, &str)],
        checksums: bool,
        wrapper: Option<&str>,
    ) -> Archiving {
        let env = Env::new();
        env.init();
        Self::start_in_wrapped(env, "", settings, checksums, wrapper)
    }

    /// A cluster archiving into `env`'s repository (already initialised, with any further
    /// regions the caller made inside `env`'s folder), with `extra` options on every
    /// `wal-push` (e.g. `--repo b=DIR`).
    pub fn start_in(
        env: Env,
        extra: &str,
        settings: &[(&str, &str)],
        checksums: bool,
    ) -> Archiving {
        Self::start_in_wrapped(env, extra, settings, checksums, None)
    }

    fn start_in_wrapped(
        env: Env,
        extra: &str,
        settings: &[(&str, &str)],
        checksums: bool,
        wrapper: Option<&str>,
    ) -> Archiving {
        std::fs::write(password_file(&env), format!("{PASSWORD}\n")).expect("password file");
        let mut command = archive_command(&env, extra);
        if let Some(body) = wrapper {
            use std::os::unix::fs::PermissionsExt;
            let script = env.path("archive-wrapper.sh");
            std::fs::write(&script, body).expect("wrapper");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            command = format!("{} {command}", script.display());
        }
        let mut all: Vec<(String, String)> = vec![
            ("wal_level".into(), "replica".into()),
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), command),
        ];
        all.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        // The owner is known only once the cluster exists; hand the folder over first with
        // the same rule the cluster uses (root runs servers as `postgres`).
        chown_tree(env.dir.path(), super::postgres::server_owner());
        let pg = PgCluster::start_with(PgOptions {
            data_checksums: checksums,
            settings: all,
        });
        assert_eq!(pg.owner(), super::postgres::server_owner(), "cluster owner");
        Archiving { env, pg }
    }

    /// Wait until PostgreSQL has archived at least `count` files, failing on archive errors
    /// only if `must_succeed`.
    pub fn wait_archived(&self, count: u64, must_succeed: bool) {
        let t0 = Instant::now();
        loop {
            let row = self.pg.psql(
                "postgres",
                "SELECT archived_count || ' ' || failed_count FROM pg_stat_archiver",
            );
            let (done, failed) = row.split_once(' ').expect("two numbers");
            let (done, failed): (u64, u64) = (done.parse().unwrap(), failed.parse().unwrap());
            if must_succeed {
                assert_eq!(
                    failed,
                    0,
                    "archive_command failed; server log:\n{}",
                    self.pg.log()
                );
            }
            if done >= count {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "only {done} of {count} files archived after 90 s; server log:\n{}",
                self.pg.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A base backup's start and stop through PostgreSQL's low-level API (one session): the
    /// server writes and archives its backup history file, and `pg_backup_stop` returns only
    /// once the WAL the backup needs is archived. No data is copied: tests that need the
    /// start and stop of a real base backup, not its files, use this.
    pub fn base_backup(&self) -> BaseStart {
        let out = self.pg.psql(
            "postgres",
            "SELECT pg_backup_start('coffer test', true); \
             SELECT lsn FROM pg_backup_stop(true); \
             SELECT timeline_id FROM pg_control_checkpoint();",
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "pg_backup_start/stop printed {out:?}");
        BaseStart {
            start_lsn: lines[0].trim().to_string(),
            stop_lsn: lines[1].trim().to_string(),
            timeline: lines[2].trim().parse().expect("a timeline"),
        }
    }

    /// Switch to a new segment and wait until the one just closed is archived.
    pub fn switch_and_wait(&self) {
        let before: u64 = self
            .pg
            .psql("postgres", "SELECT archived_count FROM pg_stat_archiver")
            .parse()
            .unwrap();
        // A switch on an idle server does nothing: write something first.
        self.pg.psql(
            "postgres",
            "CREATE TABLE IF NOT EXISTS switch_marker (t timestamptz); \
             INSERT INTO switch_marker VALUES (clock_timestamp()); SELECT pg_switch_wal();",
        );
        self.wait_archived(before + 1, true);
    }
}

/// The repository in the folder `region`, opened through the library without a cache (as
/// another machine would).
pub fn open_repo(region: &Path) -> coffer::repo::Repository {
    let loc = coffer::backend::Location::parse(region.to_str().expect("a UTF-8 path"))
        .expect("a repository path");
    let backend = coffer::backend::open(&loc).expect("open the region");
    let opts = coffer::repo::OpenOptions {
        cache_dir: None,
        clock: std::sync::Arc::new(coffer::clock::SystemClock),
        host: "test".into(),
        user: "test".into(),
        warn: std::sync::Arc::new(|m| eprintln!("warning: {m}")),
        kdf_limit: coffer::crypto::KdfLimit::DEFAULT,
    };
    coffer::repo::Repository::open(backend, PASSWORD.as_bytes(), opts).expect("open repository")
}

/// The names of the files archived in the repository in `region`, sorted.
pub fn wal_names(region: &Path) -> Vec<String> {
    let repo = open_repo(region);
    let catalog = coffer::wal::Catalog::load(&repo).expect("read the WAL archive");
    assert!(catalog.unreadable.is_empty(), "{:?}", catalog.unreadable);
    let mut names: Vec<String> = catalog
        .entries
        .iter()
        .map(|e| e.header.name.clone())
        .collect();
    names.sort();
    names
}

/// Store in `env`'s repository a snapshot of source `postgres-base` that records `b` as
/// the base-backup code does (info keys `timeline`, `start-lsn`, `stop-lsn`). Its tree is
/// that of a small file backup: what the WAL archive reads of a base backup is its info.
/// Returns the snapshot's ID.
pub fn store_base_snapshot(env: &Env, b: &BaseStart) -> String {
    let repo = open_repo(&env.repo());
    let template = |repo: &coffer::repo::Repository| {
        repo.snapshots()
            .expect("snapshots")
            .into_iter()
            .find(|(_, s)| s.source == "files")
            .map(|(_, s)| s)
    };
    let template = match template(&repo) {
        Some(s) => s,
        None => {
            let dir = env.path("base-template");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("PG_VERSION"), "15\n").unwrap();
            env.backup(&[&dir]);
            template(&repo).expect("the template snapshot")
        }
    };
    let snap = coffer::format::snapshot::Snapshot {
        time_ns: repo.clock().now(),
        tags: vec![],
        paths: vec![b"/var/lib/postgresql/15/main".to_vec()],
        parent: None,
        source: coffer::wal::retention::BASE_SOURCE.to_string(),
        info: vec![
            ("timeline".into(), b.timeline.to_string()),
            ("start-lsn".into(), b.start_lsn.clone()),
            ("stop-lsn".into(), b.stop_lsn.clone()),
            // When pg_backup_stop returned (now, about): without it the window would start at
            // the snapshot's time plus the template's duration, after the next segment.
            (
                "stop-time".into(),
                jiff::Timestamp::from_nanosecond(repo.clock().now() as i128)
                    .expect("a time")
                    .to_string(),
            ),
        ],
        ..template
    };
    repo.save_snapshot(&snap)
        .expect("save the snapshot")
        .to_hex()
}
