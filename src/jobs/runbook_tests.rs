use super::*;
use crate::format::report::{Report, ReportKind};
use crate::jobs::state::JobState;
use crate::jobs::status::job_status;

const FILE: &str = r#"
[repository]
regions = ["eu=s3://backups-eu/app?region=eu-west-1", "us=azblob://backups/app"]
password_file = "/etc/coffer/password"

[[job]]
name = "app"
postgres = ["postgresql://backup:hunter2@db.internal:5432/app?sslmode=require&password=x"]
paths = ["/srv/app/config"]
buckets = ["s3://storage/public?endpoint=https://storage.internal&secret_key=k"]
schedule = "daily 02:30"
drill = { schedule = "weekly", postgres = "postgresql://scratch/d", target = "/tmp/d", bucket = "s3://scratch/d" }
rpo = "26h"
rto = "15m"

[[job]]
name = "etc"
paths = ["/etc"]
schedule = "every 6h"
"#;

const NOW: i64 = 1_800_000_000_000_000_000;

fn input<'a>(cfg: &'a ConfigFile, statuses: Result<Vec<JobStatus>, String>) -> RunbookInput<'a> {
    RunbookInput {
        config_path: Path::new("/etc/coffer/coffer.toml"),
        config: cfg,
        regions: vec![
            ("eu".into(), "s3://backups-eu/app?region=eu-west-1".into()),
            ("us".into(), "azblob://backups/app".into()),
        ],
        password_file: Some("/etc/coffer/password".into()),
        statuses,
        now_ns: NOW,
        tz: TimeZone::UTC,
        host: "backup1".into(),
    }
}

#[test]
fn urls_lose_passwords_and_unknown_query_keys() {
    assert_eq!(
        redact_url("postgresql://backup:hunter2@db:5432/app?sslmode=require&password=x"),
        "postgresql://backup@db:5432/app?sslmode=require"
    );
    assert_eq!(
        redact_url("s3://b/p?endpoint=https://s.internal&secret_key=k"),
        "s3://b/p?endpoint=https://s.internal"
    );
    assert_eq!(redact_url("/srv/backups"), "/srv/backups");
}

#[test]
fn every_region_and_every_source_has_its_commands_in_order() {
    let cfg = ConfigFile::parse(Path::new("c.toml"), FILE).unwrap();
    let text = render(&input(&cfg, Err("connection refused".into())));
    assert!(
        !text.contains("hunter2") && !text.contains("secret_key"),
        "{text}"
    );
    assert!(
        text.contains("| eu | `s3://backups-eu/app?region=eu-west-1` |"),
        "{text}"
    );
    assert!(text.contains("| us | `azblob://backups/app` |"));
    assert!(text.contains("AWS_ACCESS_KEY_ID") && text.contains("AZURE_STORAGE_KEY"));
    assert!(text.contains("/etc/coffer/password"));
    assert!(text.contains("coffer check"));
    assert!(text.contains("drill figures (expected RTO) are unknown"));
    // Plain coffer commands: nothing else to install but coffer (and psql for databases).
    assert!(!text.contains("jq") && !text.contains("$SNAP"), "{text}");
    let order = [
        "## 4. Job `app`",
        "RPO 26h",
        "Expected RTO: unknown",
        "coffer snapshots --tag job:app --tag source:files ",
        "coffer restore latest --tag job:app --tag source:files --target /",
        "coffer snapshots --tag job:app --tag source:postgres:db.internal:5432/app ",
        "coffer restore latest --tag job:app --tag source:postgres:db.internal:5432/app --to-postgres 'postgresql://backup@db.internal:5432/app?sslmode=require'",
        "coffer snapshots --tag job:app --tag source:bucket:s3://storage/public ",
        "coffer restore latest --tag job:app --tag source:bucket:s3://storage/public --to-bucket 's3://storage/public?endpoint=https://storage.internal'",
        "`@TIME` in place of `latest`",
        "coffer restore @2026-11-20T03:00 --tag job:app --tag source:... ...",
        "## 5. Job `etc`",
        "No RPO is set",
        "coffer restore latest --tag job:etc --tag source:files --target /",
        "## 6. Afterwards",
    ];
    let mut at = 0;
    for want in order {
        let found = text[at..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} not after {at} in\n{text}"));
        at += found + want.len();
    }
}

#[test]
fn the_expected_rto_comes_from_the_last_drill() {
    let cfg = ConfigFile::parse(Path::new("c.toml"), FILE).unwrap();
    let drill = Report {
        kind: ReportKind::Drill,
        job: "app".into(),
        time_ns: NOW - 3_600_000_000_000,
        duration_ns: 192_000_000_000,
        ok: true,
        snapshots: vec![],
        target_ns: None,
        message: String::new(),
        info: vec![],
    };
    let statuses = cfg
        .jobs
        .iter()
        .map(|j| {
            job_status(
                &[],
                std::slice::from_ref(&drill),
                j,
                &JobState::default(),
                NOW,
                &TimeZone::UTC,
            )
        })
        .collect();
    let text = render(&input(&cfg, Ok(statuses)));
    assert!(
        text.contains(
            "Expected RTO: 3m12s, measured by the last drill at 2027-01-15 07:00; RTO target 15m."
        ),
        "{text}"
    );
    assert!(text.contains("Expected RTO: unknown: no drill has run; no RTO is set."));
}

#[test]
fn the_tag_arguments_name_the_job_and_the_source_shell_quoted() {
    assert_eq!(
        tag_args("app", "postgres:db/app"),
        "--tag job:app --tag source:postgres:db/app"
    );
    // A job name or label the shell would split or expand is quoted whole.
    assert_eq!(
        tag_args("my app", "bucket:s3://b/p?x=1"),
        "--tag 'job:my app' --tag 'source:bucket:s3://b/p?x=1'"
    );
}

#[test]
fn a_job_with_archived_wal_gets_the_point_in_time_steps_without_secrets() {
    let file = FILE.replace(
        "rpo = \"26h\"",
        "postgres_pitr = { url = \"postgresql://postgres:s3cret@db.internal:5432/postgres\", base_backup = \"daily 01:00\" }\nrpo = \"26h\"",
    );
    let cfg = ConfigFile::parse(Path::new("c.toml"), &file).unwrap();
    let md = render(&input(&cfg, Err("offline".into())));
    assert!(md.contains("--to-postgres-data"), "{md}");
    assert!(
        md.contains(
            "coffer setup-archiving postgresql://postgres@db.internal:5432/postgres --apply"
        ),
        "{md}"
    );
    assert!(!md.contains("s3cret"));
    // A job without archived WAL gets no such steps.
    let cfg = ConfigFile::parse(Path::new("c.toml"), FILE).unwrap();
    assert!(!render(&input(&cfg, Err("offline".into()))).contains("--to-postgres-data"));
}
