//! The whole story on real servers: a Supabase-style stack (a PostgreSQL database, an S3
//! bucket of user files, configuration files) protected by one job in two regions. Two nights
//! of `coffer run` back it up, check it and drill a restore with a measured RTO; `status` is
//! green. Then the disaster: the database is dropped, the bucket emptied, the configuration
//! deleted and one region lost. On a "new machine" (an empty cache, only the surviving region)
//! the restore commands printed by `coffer runbook` bring every byte back.

mod common;

use common::postgres::PgCluster;
use common::s3::S3;
use common::servers::Moto;
use common::{assert_ok, run_steps, PASSWORD};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SCHEMA_AND_DATA: &str = r#"
CREATE TABLE profiles (
  id uuid PRIMARY KEY,
  email text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL,
  settings jsonb NOT NULL
);
CREATE TABLE posts (
  id bigserial PRIMARY KEY,
  author uuid NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
  title text NOT NULL,
  body text NOT NULL,
  image_key text
);
CREATE INDEX posts_author ON posts (author);
INSERT INTO profiles
SELECT md5(g::text)::uuid, 'user' || g || '@example.com',
       timestamptz '2025-06-01 00:00+00' + g * interval '11 minutes',
       jsonb_build_object('theme', (ARRAY['dark', 'light'])[1 + g % 2], 'n', g)
FROM generate_series(1, 3000) g;
INSERT INTO posts (author, title, body, image_key)
SELECT md5((1 + g % 3000)::text)::uuid, 'Post ' || g, repeat(md5(g::text) || ' text ', 20),
       CASE WHEN g % 7 = 0 THEN 'images/' || g || '.png' END
FROM generate_series(1, 12000) g;
"#;

const CHURN: &str = r#"
UPDATE profiles SET settings = settings || '{"theme": "solarized"}' WHERE (settings->>'n')::int % 499 = 3;
DELETE FROM posts WHERE id % 1511 = 2;
INSERT INTO posts (author, title, body)
SELECT md5('17')::uuid, 'Late post ' || g, 'written on night two' FROM generate_series(1, 40) g;
"#;

const CHECKSUMS: &str = r#"
SELECT 'profiles', md5(string_agg(t::text, ',' ORDER BY id)) FROM profiles t
UNION ALL SELECT 'posts', md5(string_agg(t::text, ',' ORDER BY id)) FROM posts t
UNION ALL SELECT 'seq', last_value::text FROM posts_id_seq
ORDER BY 1;
"#;

struct Stack {
    dir: tempfile::TempDir,
    pg: PgCluster,
    moto: Moto,
}

impl Stack {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    fn s3(&self) -> S3<'_> {
        S3 { moto: &self.moto }
    }
    fn bucket_url(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "s3://{bucket}/{prefix}?endpoint=http://127.0.0.1:{}&region=us-east-1",
            self.moto.server.port
        )
    }

    /// `coffer` with a clean environment, the S3 credentials, a cache folder and `args`.
    fn coffer(&self, cache: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("TZ", "UTC")
            .envs(self.moto.env())
            .envs(envs.iter().copied())
            .arg("--cache-dir")
            .arg(cache)
            // Not root's /var/lib/coffer, which other tests (and the machine) would share.
            .arg("--state-dir")
            .arg(self.path("state"))
            .args(args);
        c.output().expect("run coffer")
    }

    /// The backup machine: the job file names both regions and the password file.
    fn machine(&self, now: &str, args: &[&str]) -> Output {
        let config = self.path("coffer.toml");
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        self.coffer(&self.path("cache"), &[("COFFER_TEST_NOW", now)], &all)
    }

    fn machine_json(&self, now: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.machine(now, &all);
        assert_ok(&out, args);
        serde_json::from_slice(&out.stdout).expect("JSON")
    }

    /// Every object of the `storage` bucket: key, body, content type.
    fn bucket_contents(&self) -> Vec<(String, Vec<u8>, String)> {
        let s3 = self.s3();
        s3.list("storage", "")
            .into_iter()
            .map(|k| {
                let r = s3.get("storage", &k);
                let ct = r.headers.get("content-type").cloned().unwrap_or_default();
                (k, r.body, ct)
            })
            .collect()
    }
}

#[test]
fn a_supabase_style_stack_is_backed_up_drilled_and_recovered_from_one_region() {
    let stack = Stack {
        dir: tempfile::tempdir().unwrap(),
        pg: PgCluster::start(),
        moto: Moto::start(),
    };
    let (pg, s3) = (&stack.pg, stack.s3());

    // The stack: a database, a bucket of user files, configuration.
    pg.createdb("app");
    pg.psql("app", SCHEMA_AND_DATA);
    s3.create_bucket("storage");
    s3.create_bucket("scratch");
    for i in 0..12u64 {
        let body = common::pseudo_random(i, 20_000 + i as usize * 5_000);
        s3.put(
            "storage",
            &format!("images/{i}.png"),
            &body,
            "image/png",
            &[("owner", "user7")],
        );
    }
    s3.put(
        "storage",
        "docs/terms.html",
        b"<h1>terms</h1>",
        "text/html",
        &[],
    );
    let config_dir = stack.path("srv/app/config");
    std::fs::create_dir_all(config_dir.join("functions")).unwrap();
    std::fs::write(config_dir.join("kong.yml"), "services: []\n").unwrap();
    std::fs::write(
        config_dir.join("functions/hello.ts"),
        "export default () => 'hi'\n",
    )
    .unwrap();
    std::fs::write(stack.path("password"), PASSWORD).unwrap();

    let eu = stack.path("region-eu");
    let us = stack.moto.url("repo");
    let job_file = format!(
        r#"[repository]
regions = ["eu={eu}", "us={us}"]
password_file = "{password}"

[[job]]
name = "app"
postgres = ["{db}"]
paths = ["{config}"]
buckets = ["{bucket}"]
schedule = "daily 02:30"
retention = {{ keep_daily = 7, keep_weekly = 4 }}
check = {{ schedule = "weekly", read_data_subset = "50%" }}
drill = {{ schedule = "weekly", postgres = "{drill_db}", target = "{drill_dir}", bucket = "{drill_bucket}" }}
rpo = "26h"
rto = "15m"
nice = 5
upload_limit = "200MiB/s"

[monitoring]
prometheus_textfile = "{prom}"
"#,
        eu = eu.display(),
        password = stack.path("password").display(),
        db = pg.url("app"),
        config = config_dir.display(),
        bucket = stack.bucket_url("storage", ""),
        drill_db = pg.url("drill"),
        drill_dir = stack.path("drill").display(),
        drill_bucket = stack.bucket_url("scratch", "drill"),
        prom = stack.path("coffer.prom").display(),
    );
    std::fs::write(stack.path("coffer.toml"), job_file).unwrap();
    assert_ok(
        &stack.machine(
            "2026-11-26T12:00:00Z",
            &["init", "--kdf-memory-kib", "1024"],
        ),
        &["init"],
    );

    // Night 1: three backups, retention, a check and a drill, all green.
    let night1 = stack.machine_json("2026-11-27T02:31:00Z", &["run"]);
    let names: Vec<(String, bool)> = run_steps(&night1);
    assert_eq!(
        names,
        [
            ("backup".into(), true),
            ("backup".into(), true),
            ("backup".into(), true),
            ("forget".into(), true),
            ("prune".into(), true),
            ("check".into(), true),
            ("drill".into(), true),
        ],
        "{night1}"
    );

    // Night 2, after a day of changes.
    pg.psql("app", CHURN);
    s3.put(
        "storage",
        "images/3.png",
        b"replaced avatar",
        "image/png",
        &[("owner", "user9")],
    );
    s3.put(
        "storage",
        "images/new.png",
        &common::pseudo_random(99, 70_000),
        "image/png",
        &[],
    );
    std::fs::write(config_dir.join("kong.yml"), "services: [auth]\n").unwrap();
    let night2 = stack.machine_json("2026-11-28T02:31:00Z", &["run"]);
    assert_eq!(
        run_steps(&night2)[..3],
        [
            ("backup".into(), true),
            ("backup".into(), true),
            ("backup".into(), true)
        ]
    );

    // Night 3 is a Sunday: the weekly check and drill are due again, and the drill reuses
    // its scratch database, folder and bucket prefix.
    let night3 = stack.machine_json("2026-11-29T02:31:00Z", &["run"]);
    let ran: Vec<(String, bool)> = run_steps(&night3);
    assert!(
        ran.contains(&("check".into(), true)) && ran.contains(&("drill".into(), true)),
        "{night3}"
    );

    // The morning after: status is green, with the RTO the drill measured.
    let status = stack.machine_json("2026-11-29T08:00:00Z", &["status"]);
    let text = status.to_string();
    assert!(
        text.contains("\"rpo_ok\":true") && text.contains("\"rto_ok\":true"),
        "{status}"
    );
    let prom = std::fs::read_to_string(stack.path("coffer.prom")).unwrap();
    let rto_line = prom
        .lines()
        .find(|l| l.starts_with("coffer_job_last_drill_rto_seconds{"))
        .unwrap_or_else(|| panic!("{prom}"));
    let rto: f64 = rto_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(rto > 0.0 && rto < 900.0, "{rto_line}");
    let runbook =
        String::from_utf8(stack.machine("2026-11-29T08:00:00Z", &["runbook"]).stdout).unwrap();

    // What must come back.
    let db_before = pg.psql("app", CHECKSUMS);
    let bucket_before = stack.bucket_contents();
    let files_before = common::read_folder(&config_dir);

    // The disaster: the database, the bucket's objects, the configuration and the eu region
    // are gone.
    pg.psql("postgres", "DROP DATABASE app");
    for (key, _, _) in &bucket_before {
        s3.delete("storage", key);
    }
    std::fs::remove_dir_all(&config_dir).unwrap();
    std::fs::remove_dir_all(&eu).unwrap();

    // A new machine: the surviving region, the password, an empty cache, and the runbook's
    // restore commands, run as printed.
    let restores: Vec<&str> = runbook
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("coffer restore latest"))
        .collect();
    assert_eq!(restores.len(), 3, "{runbook}");
    let fresh_cache = stack.path("new-machine-cache");
    let repo_env = format!("us={us}");
    let password_file = stack.path("password");
    for line in &restores {
        let script = format!("coffer() {{ \"$COFFER\" \"$@\"; }}\n{line}");
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(&script)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", stack.dir.path())
            .env("TZ", "UTC")
            .env("COFFER", env!("CARGO_BIN_EXE_coffer"))
            .env("COFFER_REPOSITORY", &repo_env)
            .env("COFFER_PASSWORD_FILE", &password_file)
            .env("XDG_CACHE_HOME", &fresh_cache)
            .envs(stack.moto.env())
            .current_dir(stack.dir.path());
        let out = c.output().unwrap();
        assert_ok(&out, &[line]);
    }

    assert_eq!(pg.psql("app", CHECKSUMS), db_before, "the database differs");
    assert_eq!(stack.bucket_contents(), bucket_before, "the bucket differs");
    assert_eq!(
        common::read_folder(&config_dir),
        files_before,
        "the configuration differs"
    );

    // The surviving region alone passes a full check.
    let check = stack.coffer(
        &fresh_cache,
        &[
            ("COFFER_REPOSITORY", repo_env.as_str()),
            ("COFFER_PASSWORD_FILE", password_file.to_str().unwrap()),
        ],
        &["--json", "check", "--read-data"],
    );
    assert_ok(&check, &["check --read-data"]);
}
