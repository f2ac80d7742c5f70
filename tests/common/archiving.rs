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

impl Archiving {
    /// A new repository and a cluster archiving into it, with `settings` on top.
    pub fn start(settings: &[(&str, &str)], checksums: bool) -> Archiving {
        let env = Env::new();
        env.init();
        std::fs::write(password_file(&env), format!("{PASSWORD}\n")).expect("password file");
        let mut all: Vec<(String, String)> = vec![
            ("wal_level".into(), "replica".into()),
            ("archive_mode".into(), "on".into()),
            ("archive_command".into(), archive_command(&env, "")),
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
