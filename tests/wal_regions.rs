//! A repository region that goes away while a real PostgreSQL 15 cluster archives into two
//! regions (issue 13, "a repository region killed during archiving"): `wal-push` keeps
//! succeeding on the other region (one region's write is enough by default,
//! `--min-regions 1`), PostgreSQL never sees a failed archive, `sync` then copies the WAL
//! files the region missed, and `check --read-data` on each region alone finds the chain
//! of the base backup complete. Once with a local folder that becomes unreadable, once with
//! an S3 region whose server (moto) is killed and comes back empty.

mod common;

use common::archiving::{archive_command, chown_tree, store_base_snapshot, wal_names, Archiving};
use common::postgres::server_owner;
use common::servers::{restart_moto, Moto};
use common::{expect_code, Env};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn json(out: &std::process::Output, what: &str) -> serde_json::Value {
    expect_code(out, 0, what);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_region_lost_during_archiving_is_caught_up_by_sync() {
    let env = Env::new();
    env.init();
    // Region b: the same repository in a second folder (config and key file).
    let b = env.path("region-b");
    common::copy_dir(&env.repo(), &b);
    let region_b = format!("b={}", b.display());
    let a = Archiving::start_in(env, &format!("--repo {region_b}"), &[], false);
    // Commands the test runs as root may create files in a region; the archiver, which
    // runs as the cluster's owner, must still be able to write there.
    let give_back = || {
        chown_tree(&a.env.repo(), server_owner());
        chown_tree(&b, server_owner());
    };
    let both = || {
        let mut c = a.env.cmd();
        c.args(["--repo", &region_b]);
        c
    };
    a.switch_and_wait();
    let base = a.base_backup();
    store_base_snapshot(&a.env, &base);
    json(
        &both().args(["--json", "sync"]).output().unwrap(),
        "first sync",
    );
    give_back();
    let before = wal_names(&b);
    assert_eq!(wal_names(&a.env.repo()), before, "both regions archive");

    // Region b goes away: the archiver can no longer list, read or write it.
    set_mode(&b, 0o000);
    for _ in 0..3 {
        // Asserts that PostgreSQL saw no failed archive_command.
        a.switch_and_wait();
    }
    set_mode(&b, 0o700);
    let in_a = wal_names(&a.env.repo());
    let in_b = wal_names(&b);
    let missed: Vec<&String> = in_a.iter().filter(|n| !in_b.contains(n)).collect();
    assert!(missed.len() >= 3, "region b missed only {missed:?}");
    assert!(in_b.iter().all(|n| in_a.contains(n)));
    let log = a.pg.log();
    assert!(
        log.contains("region b"),
        "wal-push did not say that region b fell behind; server log:\n{log}"
    );

    // A check of both regions says they differ; sync copies what b missed.
    let out = both().args(["--json", "check"]).output().unwrap();
    expect_code(&out, 1, "check while region b is behind");
    let sync = json(&both().args(["--json", "sync"]).output().unwrap(), "sync");
    let region = sync["report"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "b")
        .unwrap()
        .clone();
    assert_eq!(region["missing"], missed.len() as u64, "{sync}");
    assert_eq!(region["copied"], missed.len() as u64, "{sync}");
    give_back();
    assert_eq!(wal_names(&b), in_a);

    // Each region alone holds the whole chain, every byte verified.
    let newest = in_a.iter().filter(|n| n.len() == 24).max().unwrap();
    for region in [a.env.repo(), b.clone()] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .env_clear()
            .env("COFFER_PASSWORD", common::PASSWORD)
            .env("HOME", a.env.dir.path())
            .args(["--no-cache", "--json", "--repo"])
            .arg(&region)
            .args(["check", "--read-data"])
            .output()
            .unwrap();
        let check = json(&out, "check --read-data of one region");
        let w = &check["report"]["wal"];
        assert_eq!(check["ok"], true, "{check}");
        assert_eq!(w["files"], in_a.len() as u64, "{w}");
        assert_eq!(w["read"], in_a.len() as u64, "{w}");
        assert_eq!(w["chain"]["base_backups"], 1, "{w}");
        assert_eq!(w["chain"]["gaps"].as_array().unwrap().len(), 0, "{w}");
        assert_eq!(w["chain"]["newest"], newest.as_str(), "{w}");
    }

    // repair (which works on locks, plans, the index and snapshots) leaves the archive be.
    let repair = json(
        &both().args(["--json", "repair"]).output().unwrap(),
        "repair",
    );
    assert_eq!(repair["exit_code"], 0, "{repair}");
    give_back();
    assert_eq!(wal_names(&a.env.repo()), in_a);
    assert_eq!(wal_names(&b), in_a);

    // Archiving goes on into both regions.
    a.switch_and_wait();
    assert_eq!(wal_names(&b), wal_names(&a.env.repo()));
}

#[test]
fn an_s3_region_killed_during_archiving_is_caught_up_by_sync() {
    let mut moto = Moto::start();
    let creds = moto.env();
    let env = Env::new();
    let s3 = format!("s3={}", moto.url("wal"));
    let init = env
        .cmd()
        .envs(creds.iter().cloned())
        .args(["--repo", &s3, "init", "--kdf-memory-kib", "1024"])
        .output()
        .unwrap();
    expect_code(&init, 0, "init of both regions");
    // The archiver needs the S3 credentials, and the URL quoted for the shell.
    let vars: Vec<String> = creds.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let command = format!(
        "env {} {}",
        vars.join(" "),
        archive_command(&env, &format!("--repo '{s3}'"))
    );
    let a = Archiving::start_in(env, "", &[("archive_command", &command)], false);
    let both = || {
        let mut c = a.env.cmd();
        c.envs(creds.iter().cloned()).args(["--repo", &s3]);
        c
    };
    a.switch_and_wait();
    let base = a.base_backup();
    store_base_snapshot(&a.env, &base);
    json(
        &both().args(["--json", "sync"]).output().unwrap(),
        "first sync",
    );

    // The S3 server dies; archiving goes on into the local region.
    moto.server.kill();
    for _ in 0..3 {
        a.switch_and_wait();
    }
    let log = a.pg.log();
    assert!(log.contains("region s3"), "no word of region s3 in:\n{log}");
    let archived = wal_names(&a.env.repo());

    // It comes back empty (moto keeps nothing): sync copies the whole repository to it,
    // WAL included, and check --read-data of that region alone finds the chain complete.
    let _moto = restart_moto(moto.server.port, &moto.bucket);
    let sync = json(&both().args(["--json", "sync"]).output().unwrap(), "sync");
    let region = sync["report"]["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["region"] == "s3")
        .unwrap()
        .clone();
    assert_eq!(region["missing"], region["copied"], "{sync}");
    assert!(
        region["copied"].as_u64().unwrap() > archived.len() as u64,
        "{sync}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
        .env_clear()
        .envs(creds.iter().cloned())
        .env("COFFER_PASSWORD", common::PASSWORD)
        .env("HOME", a.env.dir.path())
        .args([
            "--no-cache",
            "--json",
            "--repo",
            &s3,
            "check",
            "--read-data",
        ])
        .output()
        .unwrap();
    let check = json(&out, "check --read-data of the S3 region alone");
    let w = &check["report"]["wal"];
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(w["files"], archived.len() as u64, "{w}");
    assert_eq!(w["read"], archived.len() as u64, "{w}");
    assert_eq!(w["chain"]["gaps"].as_array().unwrap().len(), 0, "{w}");
}
