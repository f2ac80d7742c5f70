//! The PostgreSQL source against real PostgreSQL 15 clusters (tests/common/postgres.rs):
//! nightly backups of a changing database, restore and per-table checksums, refusal of a
//! non-empty target, roles, and dumps that fail or are cut off (no snapshot may be saved).

mod common;

use common::postgres::PgCluster;
use common::Env;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

const SCHEMA: &str = r#"
CREATE SCHEMA billing;
CREATE TABLE customers (
  id serial PRIMARY KEY,
  email text NOT NULL UNIQUE,
  name text NOT NULL,
  created_at timestamptz NOT NULL,
  profile jsonb NOT NULL
);
CREATE TABLE orders (
  id bigserial PRIMARY KEY,
  customer_id int NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
  placed_at timestamptz NOT NULL,
  status text NOT NULL,
  total numeric(12, 2) NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE TABLE order_items (
  order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  line int NOT NULL,
  sku text NOT NULL,
  qty int NOT NULL,
  price numeric(10, 2) NOT NULL,
  PRIMARY KEY (order_id, line)
);
CREATE TABLE documents (
  id int PRIMARY KEY,
  customer_id int REFERENCES customers (id) ON DELETE SET NULL,
  title text NOT NULL,
  body text,
  attachment bytea
);
CREATE INDEX documents_title ON documents (lower(title));
CREATE SEQUENCE billing.invoice_no START 1000;
CREATE TABLE billing."Invoices" (
  no bigint PRIMARY KEY DEFAULT nextval('billing.invoice_no'),
  order_id bigint REFERENCES orders (id) ON DELETE CASCADE,
  issued date NOT NULL,
  "note" text
);
CREATE TABLE empty_table (id int);
CREATE VIEW order_totals AS
  SELECT customer_id, count(*) AS orders, sum(total) AS total FROM orders GROUP BY customer_id;
"#;

/// Night 1: a dump of about 4.7 MB, deterministic.
const NIGHT1: &str = r#"
INSERT INTO customers (email, name, created_at, profile)
SELECT 'user' || g || '@example.com',
       initcap(substr(md5(g::text), 1, 8)) || ' ' || initcap(substr(md5((g * 7)::text), 1, 10)),
       timestamptz '2024-01-01 00:00+00' + g * interval '37 minutes',
       jsonb_build_object('plan', (ARRAY['free', 'pro', 'team'])[1 + g % 3],
                          'newsletter', g % 2 = 0,
                          'tags', jsonb_build_array(substr(md5((g * 3)::text), 1, 5), 'x"y\z'))
FROM generate_series(1, 5000) g;
INSERT INTO orders (customer_id, placed_at, status, total)
SELECT 1 + (g * 7919) % 5000, timestamptz '2024-02-01 00:00+00' + g * interval '13 minutes',
       (ARRAY['new', 'paid', 'shipped', 'delivered', 'refunded'])[1 + g % 5],
       ((g * 31) % 100000) / 100.0
FROM generate_series(1, 20000) g;
INSERT INTO order_items (order_id, line, sku, qty, price)
SELECT o, l, 'SKU-' || lpad(((o * l * 131) % 9973)::text, 5, '0'), 1 + (o + l) % 4,
       ((o * l * 17) % 5000) / 100.0
FROM generate_series(1, 20000) o, generate_series(1, 3) l;
INSERT INTO documents (id, customer_id, title, body, attachment)
SELECT g, 1 + (g * 13) % 5000, 'Document ' || g,
       repeat(md5(g::text) || E' lorem ipsum\n\t', 12),
       decode(repeat(md5((g * 11)::text), 8), 'hex')
FROM generate_series(1, 1500) g;
INSERT INTO billing."Invoices" (order_id, issued, "note")
SELECT g * 2, date '2024-03-01' + (g % 400), CASE WHEN g % 10 = 0 THEN 'net 30' END
FROM generate_series(1, 10000) g;
"#;

/// What happens between two nights: scattered updates, deletes and inserts (about one row
/// in a thousand changes: changes are scattered through the dump, so each costs a chunk).
const CHURN: &str = r#"
UPDATE customers SET profile = profile || '{"plan": "enterprise"}' WHERE id % 997 = 7;
UPDATE orders SET status = 'refunded' WHERE id % 1009 = 5;
DELETE FROM orders WHERE id % 2003 = 3;
INSERT INTO customers (email, name, created_at, profile)
SELECT 'new' || g || '@example.com', 'New Customer ' || g, timestamptz '2025-01-01 00:00+00',
       '{"plan": "free"}'
FROM generate_series(1, 20) g;
INSERT INTO orders (customer_id, placed_at, status, total)
SELECT 1 + g % 5020, timestamptz '2025-01-02 00:00+00' + g * interval '1 minute', 'new', g
FROM generate_series(1, 100) g;
INSERT INTO order_items (order_id, line, sku, qty, price)
SELECT id, 1, 'SKU-NEW', 1, 9.99 FROM orders WHERE id > 20000;
UPDATE documents SET body = body || 'edited' WHERE id % 500 = 1;
INSERT INTO billing."Invoices" (order_id, issued) SELECT id, date '2025-01-03' FROM orders WHERE id > 20000;
"#;

/// Everything a restore must bring back, one line per item: every table's rows (md5 of
/// all rows in key order), the view, sequence positions, indexes and foreign keys.
const CHECKSUMS: &str = r#"
SELECT 'customers', md5(string_agg(t::text, ',' ORDER BY id)) FROM customers t
UNION ALL SELECT 'orders', md5(string_agg(t::text, ',' ORDER BY id)) FROM orders t
UNION ALL SELECT 'order_items', md5(string_agg(t::text, ',' ORDER BY order_id, line)) FROM order_items t
UNION ALL SELECT 'documents', md5(string_agg(t::text, ',' ORDER BY id)) FROM documents t
UNION ALL SELECT 'invoices', md5(string_agg(t::text, ',' ORDER BY no)) FROM billing."Invoices" t
UNION ALL SELECT 'empty_table', count(*)::text FROM empty_table
UNION ALL SELECT 'view', md5(string_agg(t::text, ',' ORDER BY customer_id)) FROM order_totals t
UNION ALL SELECT 'seq invoice_no', last_value || ' ' || is_called FROM billing.invoice_no
UNION ALL SELECT 'seq orders', last_value || ' ' || is_called FROM orders_id_seq
UNION ALL SELECT 'indexes', string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes
  WHERE schemaname IN ('public', 'billing')
UNION ALL SELECT 'foreign keys', string_agg(conname, ',' ORDER BY conname) FROM pg_constraint
  WHERE contype = 'f'
ORDER BY 1;
"#;

fn row_counts(pg: &PgCluster, db: &str) -> Vec<(String, u64)> {
    let out = pg.psql(
        db,
        "SELECT 'billing.\"Invoices\"', count(*) FROM billing.\"Invoices\" \
         UNION ALL SELECT 'public.customers', count(*) FROM customers \
         UNION ALL SELECT 'public.documents', count(*) FROM documents \
         UNION ALL SELECT 'public.empty_table', count(*) FROM empty_table \
         UNION ALL SELECT 'public.order_items', count(*) FROM order_items \
         UNION ALL SELECT 'public.orders', count(*) FROM orders ORDER BY 1",
    );
    out.lines()
        .map(|l| {
            let (t, n) = l.split_once('|').expect("table|count");
            (t.to_string(), n.parse().expect("count"))
        })
        .collect()
}

fn recorded_counts(backup: &Value) -> Vec<(String, u64)> {
    backup["postgres"]["row_counts"]
        .as_object()
        .expect("row_counts")
        .iter()
        .map(|(t, n)| (t.clone(), n.as_u64().expect("count")))
        .collect()
}

fn snapshot_count(env: &Env) -> usize {
    env.json(&["snapshots"]).as_array().expect("list").len()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn nightly_backups_dedup_and_restore_exactly() {
    let pg = PgCluster::start();
    pg.createdb("app");
    pg.psql("app", SCHEMA);
    pg.psql("app", NIGHT1);
    let env = Env::new();
    env.init();
    let url = pg.url("app");

    let sums1 = pg.psql("app", CHECKSUMS);
    let counts1 = row_counts(&pg, "app");
    let b1 = env.json(&["backup", "--postgres", &url, "--time", "2026-11-20T02:30"]);
    let id1 = b1["snapshot"].as_str().unwrap().to_string();
    assert_eq!(recorded_counts(&b1), counts1, "row counts recorded: {b1}");
    assert_eq!(b1["postgres"]["database"], "app");
    assert_eq!(b1["postgres"]["tables"], 6);
    assert_eq!(b1["postgres"]["dump_file"], "app.sql");
    assert!(b1["postgres"]["server_version"]
        .as_str()
        .unwrap()
        .starts_with("15."));
    let added1 = b1["summary"]["bytes_added_raw"].as_u64().unwrap();
    let dump1 = b1["summary"]["total_bytes"].as_u64().unwrap();
    assert!(dump1 > 4_000_000, "the dump is only {dump1} bytes");

    pg.psql("app", CHURN);
    let sums2 = pg.psql("app", CHECKSUMS);
    assert_ne!(sums1, sums2);
    let counts2 = row_counts(&pg, "app");
    let b2 = env.json(&["backup", "--postgres", &url, "--time", "2026-11-21T02:30"]);
    let id2 = b2["snapshot"].as_str().unwrap().to_string();
    assert_eq!(recorded_counts(&b2), counts2);
    assert_eq!(b2["parent"].as_str(), Some(id1.as_str()));
    let added2 = b2["summary"]["bytes_added_raw"].as_u64().unwrap();
    eprintln!("night 1 added {added1} bytes for a {dump1}-byte dump; night 2 added {added2}");
    assert!(
        added2 * 4 < added1,
        "the second night added {added2} bytes, the first {added1}: the dump does not dedup"
    );

    // What the snapshot records, and what it must not.
    let listing = env.ok(&["--json", "snapshots"]);
    let snaps: Value = serde_json::from_str(&listing).unwrap();
    let s = &snaps[1];
    assert_eq!(s["source"], "postgres");
    assert_eq!(
        s["paths"][0],
        format!("/postgres/127.0.0.1:{}/app", pg.port).as_str()
    );
    assert_eq!(s["info"]["rows:public.orders"], counts2[5].1.to_string());
    assert_eq!(
        s["info"]["pg-dump-options"],
        "--format=plain --lock-wait-timeout=10min"
    );
    assert_eq!(env.ok(&["ls", &id2]).trim(), "/app.sql");

    // Disaster: the database is gone. Restore the second night into it.
    pg.psql("postgres", "DROP DATABASE app");
    let r = env.json(&["restore", &id2, "--to-postgres", &url]);
    assert_eq!(r["created"], true, "{r}");
    assert_eq!(r["mismatches"], serde_json::json!([]), "{r}");
    assert_eq!(r["tables"].as_array().unwrap().len(), 6, "{r}");
    let total2: u64 = counts2.iter().map(|(_, n)| n).sum();
    assert_eq!(r["rows"], total2);
    assert_eq!(pg.psql("app", CHECKSUMS), sums2);

    // The first night, into a database of its own.
    let r1 = env.json(&["restore", &id1, "--to-postgres", &pg.url("app_night1")]);
    assert_eq!(r1["mismatches"], serde_json::json!([]), "{r1}");
    assert_eq!(pg.psql("app_night1", CHECKSUMS), sums1);

    // A non-empty target is refused (exit 1), and left as it was...
    let out = env.run(&["restore", &id1, "--to-postgres", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not empty") && stderr(&out).contains("--force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(pg.psql("app", CHECKSUMS), sums2);
    // ...unless forced, even with a session connected to it.
    let mut idle = std::process::Command::new(PgCluster::bin("psql"))
        .args(["-X", "-q", "--dbname", &url, "-c", "SELECT pg_sleep(600)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&pg, "a session running pg_sleep", |pg| {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'",
        ) == "1"
    });
    let r = env.json(&["restore", &id1, "--to-postgres", &url, "--force"]);
    assert_eq!(r["replaced"], true, "{r}");
    assert_eq!(r["mismatches"], serde_json::json!([]), "{r}");
    assert_eq!(pg.psql("app", CHECKSUMS), sums1);
    let _ = idle.kill();
    let _ = idle.wait();

    // Another database of the same server is a separate series: no parent across them.
    let other = env.json(&["backup", "--postgres", &pg.url("app_night1")]);
    assert!(other["parent"].is_null(), "{other}");
    env.ok(&["check", "--read-data"]);
}

#[test]
fn a_failing_pg_dump_saves_no_snapshot() {
    let pg = PgCluster::start();
    pg.createdb("app");
    pg.psql(
        "app",
        "CREATE TABLE visible (id int); CREATE TABLE secret (id int); \
         INSERT INTO visible SELECT generate_series(1, 1000); \
         CREATE ROLE limited LOGIN; GRANT SELECT ON visible TO limited;",
    );
    let env = Env::new();
    env.init();
    let password = "hunter2-very-secret";

    // No such database: the first connection fails.
    let bad = format!(
        "postgresql://postgres:{password}@127.0.0.1:{}/nope",
        pg.port
    );
    let out = env.run(&["backup", "--postgres", &bad]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("database \"nope\" does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(password));

    // pg_dump itself fails part-way: the user may not read one of the tables.
    let limited = format!("postgresql://limited:{password}@127.0.0.1:{}/app", pg.port);
    let out = env.run(&["--json", "backup", "--postgres", &limited]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("pg_dump") && err.contains("permission denied for table secret"),
        "{err}"
    );
    assert!(err.contains("no snapshot was saved"), "{err}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["exit_code"], 1);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(password));
    assert!(!err.contains(password));
    assert_eq!(snapshot_count(&env), 0);

    // A good backup with a password in the URL does not record it.
    env.ok(&[
        "backup",
        "--postgres",
        &format!("postgresql://postgres:{password}@127.0.0.1:{}/app", pg.port),
    ]);
    let listing = env.ok(&["--json", "snapshots"]);
    assert!(!listing.contains(password), "{listing}");
    assert!(listing.contains(&format!("postgresql://postgres@127.0.0.1:{}/app", pg.port)));

    // Usage and help.
    let help = env.ok(&["backup", "--help"]);
    assert!(help.contains("--postgres <URL>") && help.contains("--postgres-globals"));
    let help = env.ok(&["restore", "--help"]);
    assert!(help.contains("--to-postgres <URL>") && help.contains("--force"));
    let out = env.run(&["backup", "--postgres", "mysql://x@y/z"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// A `--pg-bin` folder whose pg_dump passes the first `bytes` of the real dump on, then
/// stalls (holding the pipe open) until `go` exists, so a test can act while the real
/// pg_dump is blocked in the middle of a COPY.
fn stalling_pg_bin(dir: &Path, bytes: u64) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let real = PgCluster::bin_dir();
    std::os::unix::fs::symlink(real.join("psql"), bin.join("psql")).unwrap();
    let script = format!(
        "#!/bin/bash\nset -o pipefail\n\
         if [ \"$1\" = --version ]; then exec {real}/pg_dump --version; fi\n\
         {real}/pg_dump \"$@\" | {{ head -c {bytes}; touch {dir}/stalled; \
         while [ ! -e {dir}/go ]; do sleep 0.05; done; cat; }}\n",
        real = real.display(),
        dir = dir.display()
    );
    let path = bin.join("pg_dump");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// A database whose dump is mostly one 26 MB table.
fn big_database(pg: &PgCluster) {
    pg.createdb("big");
    pg.psql(
        "big",
        "CREATE TABLE a_small (id int); INSERT INTO a_small SELECT generate_series(1, 10); \
         CREATE TABLE big (id int PRIMARY KEY, payload text); \
         INSERT INTO big SELECT g, repeat(md5(g::text), 10) FROM generate_series(1, 80000) g;",
    );
}

fn wait_for(pg: &PgCluster, what: &str, mut cond: impl FnMut(&PgCluster) -> bool) {
    let t0 = Instant::now();
    while !cond(pg) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Start `coffer backup --postgres` of the big database through the stalling pg_dump and
/// wait until the real pg_dump is blocked inside the big table's COPY.
fn start_stalled_backup(env: &Env, pg: &PgCluster) -> Child {
    let bin = stalling_pg_bin(env.dir.path(), 2_000_000);
    let child = env
        .cmd()
        .args(["backup", "--postgres", &pg.url("big"), "--pg-bin"])
        .arg(&bin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stalled = env.dir.path().join("stalled");
    let t0 = Instant::now();
    while !stalled.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "pg_dump never stalled"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for(pg, "pg_dump inside COPY of the big table", |pg| {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' \
             AND state = 'active' AND query LIKE 'COPY public.big %'",
        ) == "1"
    });
    child
}

#[test]
fn a_server_killed_during_the_dump_leaves_no_snapshot() {
    let mut pg = PgCluster::start();
    big_database(&pg);
    let env = Env::new();
    env.init();
    let child = start_stalled_backup(&env, &pg);
    // 2 MB of the dump are in coffer already; now the server dies mid-COPY.
    pg.kill();
    std::fs::write(env.dir.path().join("go"), b"").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pg_dump of") && err.contains("failed") && err.contains("no snapshot"),
        "{err}"
    );
    assert_eq!(snapshot_count(&env), 0);
    // What was uploaded stays for the next backup to reuse; the repository is sound.
    assert!(!common::packs(&env.repo()).is_empty());
    env.ok(&["check"]);
}

#[test]
fn ctrl_c_during_the_dump_saves_nothing() {
    let pg = PgCluster::start();
    big_database(&pg);
    let env = Env::new();
    env.init();
    let child = start_stalled_backup(&env, &pg);
    // SAFETY: a plain syscall on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    std::fs::write(env.dir.path().join("go"), b"").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_eq!(snapshot_count(&env), 0);
    // The server is fine and the same backup then works.
    let b = env.json(&["backup", "--postgres", &pg.url("big")]);
    assert_eq!(b["postgres"]["rows"], 80_010);
}

#[test]
fn roles_are_backed_up_and_restored_into_a_fresh_cluster() {
    let pg = PgCluster::start();
    pg.psql(
        "postgres",
        "CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw'; CREATE ROLE \"Read Only\" NOLOGIN;",
    );
    pg.createdb("app");
    pg.psql(
        "app",
        "CREATE TABLE notes (id int PRIMARY KEY, body text); \
         INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 500) g; \
         ALTER TABLE notes OWNER TO app_owner; GRANT SELECT ON notes TO \"Read Only\";",
    );
    let sums = pg.psql(
        "app",
        "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM notes t",
    );
    let env = Env::new();
    env.init();
    let b = env.json(&["backup", "--postgres", &pg.url("app"), "--postgres-globals"]);
    assert_eq!(b["postgres"]["globals_file"], "globals.sql");
    let id = b["snapshot"].as_str().unwrap().to_string();
    let globals = env.ok(&["dump", &id, "globals.sql"]);
    assert!(globals.contains("CREATE ROLE app_owner;"), "{globals}");
    assert!(globals.contains("CREATE ROLE \"Read Only\";"), "{globals}");

    let fresh = PgCluster::start();
    let url = fresh.url("app");
    // Without the roles the dump cannot be loaded (ALTER ... OWNER TO app_owner): the
    // restore fails as a whole and the new database stays empty.
    let out = env.run(&["restore", &id, "--to-postgres", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("role \"app_owner\" does not exist"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fresh.psql(
            "app",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
    // With them, into that empty database.
    let r = env.json(&["restore", &id, "--to-postgres", &url, "--globals"]);
    assert_eq!(
        (r["created"].as_bool(), r["globals"].as_bool()),
        (Some(false), Some(true)),
        "{r}"
    );
    assert_eq!(r["mismatches"], serde_json::json!([]), "{r}");
    assert_eq!(
        fresh.psql(
            "app",
            "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM notes t"
        ),
        sums
    );
    assert_eq!(
        fresh.psql(
            "app",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'notes'; \
             SELECT has_table_privilege('Read Only', 'notes', 'SELECT');"
        ),
        "app_owner\nt"
    );
    // Again, over roles that now exist.
    let r = env.json(&[
        "restore",
        &id,
        "--to-postgres",
        &url,
        "--globals",
        "--force",
    ]);
    assert_eq!(r["mismatches"], serde_json::json!([]), "{r}");
    // --globals needs a snapshot that has them.
    let plain = env.json(&["backup", "--postgres", &pg.url("app")]);
    let out = env.run(&[
        "restore",
        plain["snapshot"].as_str().unwrap(),
        "--to-postgres",
        &fresh.url("other"),
        "--globals",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--postgres-globals"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_restore_that_cannot_read_the_repository_commits_nothing() {
    let pg = PgCluster::start();
    big_database(&pg);
    let env = Env::new();
    env.init();
    let b = env.json(&["backup", "--postgres", &pg.url("big")]);
    let packs = common::packs(&env.repo());
    assert_eq!(packs.len(), 1, "{packs:?}");
    // Damage a frame in the middle of the dump's data (format-spec: a pack is its frames,
    // then the sealed header, then a 9-byte trailer ending in the header's length), so the
    // restore fails after psql has been given a good part of the dump.
    let mut bytes = std::fs::read(&packs[0]).unwrap();
    let n = bytes.len();
    let header = u32::from_le_bytes(bytes[n - 4..].try_into().unwrap()) as usize;
    bytes[(n - 9 - header) / 2] ^= 0xff;
    std::fs::write(&packs[0], bytes).unwrap();
    let out = env.run(&[
        "restore",
        b["snapshot"].as_str().unwrap(),
        "--to-postgres",
        &pg.url("restored"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("reading the dump from the repository"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        pg.psql(
            "restored",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ),
        "0"
    );
}
