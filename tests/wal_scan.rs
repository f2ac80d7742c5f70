//! coffer's reading of WAL segments against PostgreSQL's own reader: a real PostgreSQL 15
//! cluster writes commits, rollbacks, prepared transactions, subtransactions, full-page
//! images and records of several MiB (one longer than a segment), with a few
//! `pg_switch_wal()`s; then, for every complete segment in `pg_wal`, the commit-time range
//! `wal::scan::commit_times` finds must be exactly the range of the COMMIT and ABORT
//! records (prepared ones included) that `pg_waldump` prints as beginning in that segment.
//! The one exception the spec allows (§5.13): the last record of a segment that continues in
//! the next one may be missing from coffer's range.

mod common;

use coffer::wal::scan::{commit_times, segment_head};
use common::postgres::{PgCluster, PgOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// One record as `pg_waldump` prints it.
#[derive(Debug, Clone)]
struct Record {
    lsn: u64,
    /// `desc:` up to the first space: COMMIT, ABORT, COMMIT_PREPARED, INSERT, ...
    what: String,
    /// For the ends of transactions, the time printed, in ns since the Unix epoch.
    end_ns: Option<i64>,
    /// Whether the record carries a full-page image.
    fpw: bool,
    total_len: u64,
}

/// `X/Y` as PostgreSQL prints an LSN.
fn parse_lsn(s: &str) -> u64 {
    let (hi, lo) = s.trim().split_once('/').expect("an LSN is X/Y");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// The time in a transaction end's description: `... 2026-12-02 14:45:01.123456 UTC ...`
/// (pg_waldump prints it in its local time zone, which is UTC here, to the microsecond).
fn end_time_ns(desc: &str) -> i64 {
    let tokens: Vec<&str> = desc.split_whitespace().collect();
    let i = tokens
        .iter()
        .position(|t| t.len() == 10 && t.as_bytes()[4] == b'-' && t.as_bytes()[7] == b'-')
        .unwrap_or_else(|| panic!("no date in {desc:?}"));
    let (date, time) = (tokens[i], tokens[i + 1]);
    let zone = tokens[i + 2].trim_end_matches(';');
    assert_eq!(zone, "UTC", "pg_waldump printed another zone: {desc}");
    assert_eq!(time.len(), 15, "hh:mm:ss.uuuuuu in {desc:?}");
    let ts: jiff::Timestamp = format!("{date}T{time}Z")
        .parse()
        .unwrap_or_else(|e| panic!("{date} {time}: {e}"));
    i64::try_from(ts.as_nanosecond()).unwrap()
}

fn parse_record(line: &str) -> Option<Record> {
    let rest = line.strip_prefix("rmgr: ")?;
    let rmgr = rest.split_whitespace().next()?.to_string();
    let total = rest.split_once("len (rec/tot):")?.1.split(',').next()?;
    let total_len = total.split('/').nth(1)?.trim().parse().ok()?;
    let lsn = parse_lsn(rest.split_once("lsn: ")?.1.split(',').next()?);
    let desc = rest.split_once("desc: ")?.1;
    let what = desc.split_whitespace().next().unwrap_or("").to_string();
    let end = rmgr == "Transaction"
        && matches!(
            what.as_str(),
            "COMMIT" | "ABORT" | "COMMIT_PREPARED" | "ABORT_PREPARED"
        );
    Some(Record {
        lsn,
        end_ns: end.then(|| end_time_ns(desc)),
        fpw: line.contains(" FPW"),
        what,
        total_len,
    })
}

/// `pg_waldump` over the segments `first` to `last` of `pg_wal`, with a clean environment
/// (coffer's own rule for the programs it runs) and the time zone UTC.
fn waldump(pg_wal: &Path, first: &str, last: &str) -> Vec<Record> {
    let mut cmd = Command::new(PgCluster::bin("pg_waldump"));
    coffer::child_env::restrict(&mut cmd, |_| false);
    cmd.env("TZ", "UTC")
        .arg("-p")
        .arg(pg_wal)
        .args([first, last]);
    let out = cmd.output().expect("run pg_waldump");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pg_waldump failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records: Vec<Record> = stdout.lines().filter_map(parse_record).collect();
    assert_eq!(
        records.len(),
        stdout.lines().filter(|l| l.starts_with("rmgr: ")).count(),
        "every record line parses"
    );
    records
}

/// The earliest and latest transaction end among `records`.
fn range<'a>(records: impl Iterator<Item = &'a Record>) -> Option<(i64, i64)> {
    records.filter_map(|r| r.end_ns).fold(None, |acc, t| {
        Some(match acc {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        })
    })
}

/// SQL that writes what the comparison needs to see.
fn workload(pg: &PgCluster) {
    let sql = |s: &str| pg.psql("postgres", s);
    sql("CREATE TABLE t (id int PRIMARY KEY, v text, pad text)");
    sql("INSERT INTO t SELECT g, 'v' || g, repeat('x', 200) FROM generate_series(1, 20000) g");
    sql("SELECT pg_switch_wal()");
    // After a checkpoint the first change to each page logs the whole page.
    sql("CHECKPOINT");
    sql("UPDATE t SET v = 'u' || id WHERE id % 3 = 0");
    // Many short transactions, every fifth rolled back (it has an xid, so it logs an abort).
    let mut many = String::new();
    for i in 0..400 {
        let id = 100_000 + i;
        if i % 5 == 4 {
            many += &format!("BEGIN; INSERT INTO t VALUES ({id}, 'r', 'r'); ROLLBACK;\n");
        } else {
            many += &format!("INSERT INTO t VALUES ({id}, 'c', 'c');\n");
        }
    }
    sql(&many);
    // Subtransactions (their commit record lists them after the time) and two-phase commit.
    sql(
        "BEGIN; INSERT INTO t VALUES (200001, 's', 's'); SAVEPOINT a; \
         INSERT INTO t VALUES (200002, 's', 's'); SAVEPOINT b; \
         INSERT INTO t VALUES (200003, 's', 's'); RELEASE a; COMMIT",
    );
    sql("BEGIN; INSERT INTO t VALUES (200004, 'p', 'p'); PREPARE TRANSACTION 'p1'");
    sql("COMMIT PREPARED 'p1'");
    sql("BEGIN; INSERT INTO t VALUES (200005, 'p', 'p'); PREPARE TRANSACTION 'p2'");
    sql("ROLLBACK PREPARED 'p2'");
    sql("SELECT pg_switch_wal()");
    // Records of several MiB, one longer than a segment, each followed by its commit, with
    // small transactions between them.
    for (i, mib) in [3, 10, 20, 6].into_iter().enumerate() {
        sql(&format!(
            "BEGIN; SELECT pg_logical_emit_message(true, 'coffer', repeat('m', {mib} * 1048576)); COMMIT"
        ));
        sql(&format!(
            "INSERT INTO t VALUES ({}, 'after', 'big')",
            300_000 + i
        ));
        sql(&format!(
            "BEGIN; INSERT INTO t VALUES ({}, 'r', 'r'); ROLLBACK",
            400_000 + i
        ));
    }
    sql("UPDATE t SET pad = repeat('y', 200) WHERE id % 7 = 0");
    sql("SELECT pg_switch_wal()");
}

fn insert_lsn(pg: &PgCluster) -> u64 {
    parse_lsn(&pg.psql("postgres", "SELECT pg_current_wal_insert_lsn()"))
}

/// Make a commit record begin 16 bytes before a segment's end, so that it continues in the
/// next segment: the case the spec lets coffer miss. A non-transactional message (no xid,
/// so no commit) brings the end near; then a transaction whose only record is a message of
/// just the right size puts its commit there. Another process's record can land in
/// between (the background writer logs one now and then), so it tries up to five times
/// (and twenty steps in all); returns whether it succeeded.
fn commit_across_a_segment_end(pg: &PgCluster, seg_size: u64) -> bool {
    const PAGE: u64 = 8192;
    let message = |transactional: bool, len: u64| {
        pg.psql(
            "postgres",
            &format!(
                "BEGIN; SELECT pg_logical_emit_message({transactional}, 'c', repeat('z', {len})); COMMIT"
            ),
        );
    };
    // A message record: XLogRecord (24), the long main-data header (5), then
    // xl_logical_message (24), the prefix "c\0" and the message. The message that makes the
    // record end at `to` (8-aligned, not on a page's first byte) fills the bytes from `at`,
    // less the page headers (24) of the pages it crosses.
    let fill = |at: u64, to: u64| to - at - 24 * ((to - 1) / PAGE - (at - 1) / PAGE) - 55;
    let mut tries = 0;
    for _ in 0..20 {
        if tries == 5 {
            break;
        }
        let at = insert_lsn(pg);
        let end = (at / seg_size + 1) * seg_size;
        if end - at < 2048 {
            message(false, 4096);
        } else if end - at > 40_000 {
            message(false, fill(at, end - 24_000));
        } else {
            message(true, fill(at, end - 16));
            // The commit is 34 bytes: 16 here, then 18 after the next segment's 40-byte
            // header, so the next record goes at the end + 64.
            if insert_lsn(pg) == end + 64 {
                return true;
            }
            tries += 1;
        }
    }
    false
}

#[test]
fn commit_times_agree_with_pg_waldump() {
    let settings = [
        ("full_page_writes", "on"),
        ("max_prepared_transactions", "4"),
        // Keep every segment this test writes: no checkpoint removes or recycles them.
        ("wal_keep_size", "4GB"),
        ("max_wal_size", "8GB"),
        ("checkpoint_timeout", "1h"),
    ];
    let pg = PgCluster::start_with(PgOptions {
        data_checksums: false,
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    });
    workload(&pg);
    let seg_size: u64 = pg
        .psql(
            "postgres",
            "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'",
        )
        .parse()
        .unwrap();
    let crossed = commit_across_a_segment_end(&pg, seg_size);
    pg.psql("postgres", "SELECT pg_switch_wal()");
    let insert = insert_lsn(&pg);
    let current = insert / seg_size;
    let per_id = 0x1_0000_0000 / seg_size;

    // The complete segments: timeline 1, before the one being written. Later names are
    // recycled files waiting for reuse.
    let pg_wal = pg.data_dir().join("pg_wal");
    let mut segments: BTreeMap<u64, String> = BTreeMap::new();
    for e in std::fs::read_dir(&pg_wal).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() != 24 || !name.starts_with("00000001") {
            continue;
        }
        let hi = u64::from_str_radix(&name[8..16], 16).unwrap();
        let lo = u64::from_str_radix(&name[16..24], 16).unwrap();
        let segno = hi * per_id + lo;
        if segno < current {
            segments.insert(segno, name);
        }
    }
    let (&first, _) = segments.first_key_value().expect("complete segments");
    let (&last, _) = segments.last_key_value().unwrap();
    assert_eq!(
        segments.len() as u64,
        last - first + 1,
        "a gap in pg_wal: {segments:?}"
    );
    assert!(
        segments.len() >= 5,
        "only {} segments: {segments:?}",
        segments.len()
    );
    let records = waldump(&pg_wal, &segments[&first], &segments[&last]);

    // What the workload must have produced for the comparison to mean something.
    let count = |what: &str| records.iter().filter(|r| r.what == what).count();
    assert!(count("COMMIT") >= 300, "{} commits", count("COMMIT"));
    assert!(count("ABORT") >= 80, "{} aborts", count("ABORT"));
    assert_eq!((count("COMMIT_PREPARED"), count("ABORT_PREPARED")), (1, 1));
    assert!(
        records.iter().filter(|r| r.fpw).count() > 100,
        "full-page images"
    );
    assert!(
        records.iter().any(|r| r.total_len > seg_size),
        "a record longer than a segment"
    );

    let mut with_ends = 0;
    let mut crossing_ends = vec![];
    for (&segno, name) in &segments {
        let start = segno * seg_size;
        let bytes = std::fs::read(pg_wal.join(name)).unwrap();
        assert_eq!(bytes.len() as u64, seg_size, "{name}");
        let head = segment_head(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((head.start_lsn, head.timeline), (start, 1), "{name}");
        let coffer = commit_times(&bytes, &head);
        let here: Vec<&Record> = records
            .iter()
            .filter(|r| (start..start + seg_size).contains(&r.lsn))
            .collect();
        let want = range(here.iter().copied());
        with_ends += usize::from(want.is_some());
        if coffer == want {
            continue;
        }
        // Allowed: the segment's last record continues in the next segment (whose first
        // page then says so), is a transaction end, and is the only one coffer missed.
        let next = std::fs::read(pg_wal.join(segment_name(segno + 1, per_id))).unwrap();
        let continues = u16::from_le_bytes([next[2], next[3]]) & 0x0001 != 0;
        let last = here
            .last()
            .expect("records in a segment whose ranges differ");
        let without_last = range(here[..here.len() - 1].iter().copied());
        assert!(
            continues && last.end_ns.is_some() && coffer == without_last,
            "{name}: coffer found commit times {coffer:?}, pg_waldump's COMMIT/ABORT records \
             that begin here span {want:?}; the only allowed difference is a last record \
             that crosses into the next segment ({}: {} at {:X}, continues: {continues}), \
             without which they span {without_last:?}",
            segment_name(segno + 1, per_id),
            last.what,
            last.lsn,
        );
        crossing_ends.push((name.clone(), last.what.clone()));
    }
    eprintln!(
        "{} segments compared, {} with transaction ends, {} records from pg_waldump; \
         transaction ends crossing a segment's end (missed by coffer, as allowed): {:?}",
        segments.len(),
        with_ends,
        records.len(),
        crossing_ends
    );
    assert!(with_ends >= 4, "{with_ends} segments with transaction ends");
    assert!(
        crossed,
        "no commit record could be placed across a segment's end"
    );
    assert!(
        crossing_ends.iter().any(|(_, what)| what == "COMMIT"),
        "the commit placed across a segment's end was not among the differences"
    );
}

fn segment_name(segno: u64, per_id: u64) -> String {
    format!("00000001{:08X}{:08X}", segno / per_id, segno % per_id)
}
