//! `coffer forget` end to end: a history of 30 snapshots over five months on two hosts
//! (built with `backup --time`), a dry run that matches both hand-worked expectations and
//! the library's pure retention function, a real forget that removes exactly those
//! snapshots and nothing else, and refusals (empty policy, a policy that would empty a
//! group, bad values, bad prune values) that leave the repository byte for byte as it was.

mod common;

use coffer::id::SnapshotId;
use coffer::retention::{self, Candidate, Policy};
use common::expect_code;
use common::{assert_ok, repo_listing, Env};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// (host, time, tags). Alpha: 20 snapshots from November to March, one of them tagged
/// `keep`; beta: 10 daily ones in January. The test environment runs in UTC.
fn history() -> Vec<(&'static str, String, Vec<&'static str>)> {
    let mut h = vec![
        ("alpha", "2025-11-05T03:00".to_string(), vec![]),
        ("alpha", "2025-12-10T03:00".to_string(), vec![]),
        ("alpha", "2025-12-20T03:00".to_string(), vec!["keep"]),
    ];
    for d in 1..=10 {
        h.push(("alpha", format!("2026-01-{d:02}T03:00"), vec![]));
    }
    for t in [
        "2026-02-01T03:00",
        "2026-02-14T03:00",
        "2026-03-01T03:00",
        "2026-03-02T03:00",
        "2026-03-02T15:00",
        "2026-03-03T03:00",
        "2026-03-03T09:00",
    ] {
        h.push(("alpha", t.to_string(), vec![]));
    }
    for d in 5..=14 {
        h.push(("beta", format!("2026-01-{d:02}T12:00"), vec![]));
    }
    h
}

/// The policy of the main test, and what it keeps, worked out by hand (newest first):
/// alpha: 03-03 09:00 (last, daily, monthly), 03-03 03:00 (last), 03-02 15:00 (daily),
/// 03-01 (daily), 02-14 (daily, monthly), 01-10 (monthly), 12-20 (tag keep); the dailies
/// and months are used up before the rest. Beta: 01-14 (last, daily, monthly), 01-13 (last,
/// daily), 01-12 and 01-11 (daily), and 01-05, the oldest, because a monthly count is left.
const POLICY: &[&str] = &[
    "--keep-last",
    "2",
    "--keep-daily",
    "4",
    "--keep-monthly",
    "3",
    "--keep-tag",
    "keep",
];

fn expected_kept() -> BTreeMap<(&'static str, &'static str), Vec<&'static str>> {
    BTreeMap::from([
        (
            ("alpha", "2026-03-03T09:00"),
            vec!["last", "daily", "monthly"],
        ),
        (("alpha", "2026-03-03T03:00"), vec!["last"]),
        (("alpha", "2026-03-02T15:00"), vec!["daily"]),
        (("alpha", "2026-03-01T03:00"), vec!["daily"]),
        (("alpha", "2026-02-14T03:00"), vec!["daily", "monthly"]),
        (("alpha", "2026-01-10T03:00"), vec!["monthly"]),
        (("alpha", "2025-12-20T03:00"), vec!["tag keep"]),
        (
            ("beta", "2026-01-14T12:00"),
            vec!["last", "daily", "monthly"],
        ),
        (("beta", "2026-01-13T12:00"), vec!["last", "daily"]),
        (("beta", "2026-01-12T12:00"), vec!["daily"]),
        (("beta", "2026-01-11T12:00"), vec!["daily"]),
        (("beta", "2026-01-05T12:00"), vec!["monthly"]),
    ])
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The file content of the snapshot taken by `host` at `time`.
fn content(host: &str, time: &str) -> String {
    format!("{host} at {time}\n").repeat(50)
}

struct History {
    env: Env,
    /// Snapshot ID by (host, time).
    ids: BTreeMap<(&'static str, String), String>,
}

fn build_history() -> History {
    let env = Env::new();
    env.init();
    let data = env.path("data");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    std::fs::write(
        data.join("sub/shared.bin"),
        common::pseudo_random(7, 100_000),
    )
    .unwrap();
    let mut ids = BTreeMap::new();
    for (host, time, tags) in history() {
        std::fs::write(data.join("file.txt"), content(host, &time)).unwrap();
        let mut args = vec![
            "--json".to_string(),
            "backup".into(),
            data.to_string_lossy().into_owned(),
            "--host".into(),
            host.into(),
            "--time".into(),
            time.clone(),
        ];
        for t in tags {
            args.extend(["--tag".to_string(), t.to_string()]);
        }
        let out = env.cmd().args(&args).output().unwrap();
        assert_ok(&out, &["backup", &time]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.insert((host, time), v["snapshot"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 30);
    History { env, ids }
}

fn listed_ids(env: &Env) -> BTreeSet<String> {
    env.json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// What the library's pure function says for the repository's snapshots, by ID: (keep, reasons).
fn pure_plan(env: &Env, policy: &Policy) -> BTreeMap<String, (bool, Vec<String>)> {
    let candidates: Vec<Candidate> = env
        .json(&["snapshots"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Candidate {
            id: SnapshotId::from_hex(s["id"].as_str().unwrap()).unwrap(),
            time_ns: s["time_ns"].as_i64().unwrap(),
            host: s["host"].as_str().unwrap().to_string(),
            paths: s["paths"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().as_bytes().to_vec())
                .collect(),
            tags: s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_string())
                .collect(),
        })
        .collect();
    let now = i64::MAX;
    let plan = retention::apply(&candidates, policy, now, &jiff::tz::TimeZone::UTC);
    plan.decisions()
        .map(|d| (d.id.to_hex(), (d.keep, d.reasons.clone())))
        .collect()
}

/// The same, from `forget --json` output.
fn forget_plan(v: &Value) -> BTreeMap<String, (bool, Vec<String>)> {
    let mut out = BTreeMap::new();
    for g in v["groups"].as_array().unwrap() {
        for s in g["snapshots"].as_array().unwrap() {
            let reasons = s["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            out.insert(
                s["id"].as_str().unwrap().to_string(),
                (s["keep"].as_bool().unwrap(), reasons),
            );
        }
    }
    out
}

#[test]
fn forget_keeps_what_the_policy_says_and_removes_the_rest() {
    let h = build_history();
    let env = &h.env;
    let before = repo_listing(&env.repo());

    // Refusals first: each exits 2 and changes nothing.
    let refused: &[(&[&str], &str)] = &[
        (&["forget"], "no retention policy"),
        (
            &["forget", "--keep-daily", "0", "--dry-run"],
            "no retention policy",
        ),
        (&["--json", "forget"], "no retention policy"),
        (&["forget", "--keep-daily", "abc"], "--keep-daily"),
        (&["forget", "--keep-within", "3x"], "--keep-within"),
        (&["forget", "--keep-last", "-5"], "--keep-last"),
        (&["forget", "--keep-tag", ""], "--keep-tag"),
        (
            &["prune", "--repack-threshold", "150"],
            "--repack-threshold",
        ),
        (&["prune", "--repack-threshold", "x"], "--repack-threshold"),
        (&["prune", "--stale-lock-after", "5x"], "--stale-lock-after"),
        (
            &["forget", "--keep-last", "1", "--prune", "--keep-daily", "z"],
            "--keep-daily",
        ),
        // A misspelt tag would remove both groups; `keep` alone would empty beta.
        (&["forget", "--keep-tag", "kepe"], "--force"),
        (
            &["forget", "--keep-tag", "keep"],
            "would remove all 10 snapshot(s) of host beta",
        ),
    ];
    for (args, says) in refused {
        let out = env.run(args);
        expect_code(&out, 2, &format!("{args:?}"));
        let all = text(&out.stderr) + &text(&out.stdout);
        assert!(all.contains(says), "{args:?} should say {says:?}: {all}");
        assert!(!all.contains("panicked"), "{all}");
        assert!(
            repo_listing(&env.repo()) == before,
            "{args:?} changed the repository"
        );
    }

    // Dry run: the hand-worked expectations, and exactly what the pure function says.
    let mut args = vec!["forget", "--dry-run"];
    args.extend_from_slice(POLICY);
    let dry = env.json(&args);
    assert!(
        repo_listing(&env.repo()) == before,
        "--dry-run changed the repository"
    );
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        (dry["kept"].as_u64(), dry["removed"].as_u64()),
        (Some(12), Some(18))
    );
    assert_eq!(dry["deleted"], 0);
    assert_eq!(dry["groups"].as_array().unwrap().len(), 2);
    assert_eq!(dry["groups"][0]["host"], "alpha");
    let got = forget_plan(&dry);
    let mut want_kept = BTreeSet::new();
    for ((host, time), reasons) in expected_kept() {
        let id = &h.ids[&(host, time.to_string())];
        assert_eq!(
            got[id],
            (true, reasons.iter().map(|r| r.to_string()).collect()),
            "{host} {time}"
        );
        want_kept.insert(id.clone());
    }
    for id in h.ids.values() {
        assert_eq!(got[id].0, want_kept.contains(id), "{id}");
    }
    let policy = Policy {
        keep_last: Some(2),
        keep_daily: Some(4),
        keep_monthly: Some(3),
        keep_tags: vec!["keep".into()],
        ..Default::default()
    };
    assert_eq!(got, pure_plan(env, &policy));

    // The text form says what it would do and that data stays until prune.
    let mut args = vec!["forget", "--dry-run"];
    args.extend_from_slice(POLICY);
    let out = env.ok(&args);
    assert!(
        out.contains("would remove 18 snapshot(s) and keep 12"),
        "{out}"
    );
    assert!(out.contains("until `coffer prune`"), "{out}");
    assert!(out.contains("host beta"), "{out}");
    assert!(repo_listing(&env.repo()) == before);

    // The real thing: exactly the removed snapshot objects go, packs and index stay.
    let packs_before = common::packs(&env.repo());
    let index_before = repo_listing(&env.repo().join("index"));
    let mut args = vec!["forget"];
    args.extend_from_slice(POLICY);
    let done = env.json(&args);
    assert_eq!(done["deleted"], 18);
    assert_eq!(done["failed"].as_array().unwrap().len(), 0);
    assert_eq!(forget_plan(&done), got);
    assert_eq!(listed_ids(env), want_kept);
    assert_eq!(repo_listing(&env.repo().join("snapshots")).len(), 12);
    assert_eq!(common::packs(&env.repo()), packs_before);
    assert!(repo_listing(&env.repo().join("index")) == index_before);
    // A fresh cache agrees (nothing stale is served from the old one).
    let fresh = env.path("fresh-cache");
    let out = env
        .cmd_with_cache(&fresh)
        .args(["--json", "snapshots"])
        .output()
        .unwrap();
    assert_ok(&out, &["snapshots"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        12
    );

    // Every kept snapshot still restores, with its own content.
    let data = env.path("data");
    for ((host, time), id) in &h.ids {
        if !want_kept.contains(id) {
            continue;
        }
        let target = env.path(&format!("restore-{}", &id[..8]));
        env.ok(&["restore", id, "--target", target.to_str().unwrap()]);
        let root = target.join(data.strip_prefix("/").unwrap());
        assert_eq!(
            std::fs::read_to_string(root.join("file.txt")).unwrap(),
            content(host, time)
        );
        assert_eq!(
            std::fs::read(root.join("sub/shared.bin")).unwrap(),
            common::pseudo_random(7, 100_000)
        );
    }
    env.ok(&["check"]);

    // The same policy again removes nothing: what is left is what the policy keeps.
    let again = env.json(&args);
    assert_eq!(
        (again["kept"].as_u64(), again["removed"].as_u64()),
        (Some(12), Some(0))
    );
    assert_eq!(listed_ids(env), want_kept);
}

#[test]
fn forget_deletes_in_every_region_and_force_allows_an_empty_policy() {
    let env = Env::new();
    let second = env.path("second");
    let two = |args: &[&str]| {
        let mut c = env.cmd();
        c.arg("--repo").arg(&second).args(args);
        c.output().unwrap()
    };
    assert_ok(&two(&["init", "--kdf-memory-kib", "1024"]), &["init"]);
    let data = env.path("data");
    std::fs::create_dir_all(&data).unwrap();
    for (i, t) in ["2026-01-01T00:00", "2026-01-02T00:00", "2026-01-03T00:00"]
        .iter()
        .enumerate()
    {
        std::fs::write(data.join("f"), format!("{i}")).unwrap();
        let out = two(&["backup", data.to_str().unwrap(), "--host", "h", "--time", t]);
        assert_ok(&out, &["backup", t]);
    }
    let out = two(&["forget", "--keep-last", "1"]);
    assert_ok(&out, &["forget"]);
    assert!(
        text(&out.stdout).contains("removed 2 of 2 snapshot(s), kept 1"),
        "{}",
        text(&out.stdout)
    );
    for region in [env.repo(), second.clone()] {
        assert_eq!(
            repo_listing(&region.join("snapshots")).len(),
            1,
            "{}",
            region.display()
        );
    }
    // An empty policy with --force removes everything.
    let out = two(&["forget", "--force"]);
    assert_ok(&out, &["forget", "--force"]);
    for region in [env.repo(), second] {
        assert_eq!(
            repo_listing(&region.join("snapshots")).len(),
            0,
            "{}",
            region.display()
        );
    }
}
