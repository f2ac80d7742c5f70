//! A database dump written to a file in a folder, the way administrators keep nightly
//! `pg_dump`s, deduplicates like the same dump from stdin: text files are cut with the
//! stream profile's small chunks (format-spec §10, "Chunk sizes"), binary files keep the
//! large chunks that keep the index small.

mod common;

use common::{pseudo_random, sql_dump, Env};
use serde_json::Value;

/// 90,000 rows: about 3.3 MB of text, 36 rows changed per night.
const ROWS: u64 = 90_000;

fn summary(v: &Value, what: &str) -> (u64, u64) {
    let s = &v["summary"];
    let n = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("{what}: no {k} in {v}"))
    };
    (n("blobs_added"), n("bytes_added_raw"))
}

#[test]
fn a_dump_file_in_a_folder_stores_only_its_changed_rows() {
    let env = Env::new();
    env.init();
    let folder = env.path("dumps");
    std::fs::create_dir_all(&folder).unwrap();
    let dump = folder.join("app.sql");
    let first = sql_dump(ROWS, 1);
    assert!(first.len() > 3_000_000);
    std::fs::write(&dump, &first).unwrap();
    let night1 = env.json(&["backup", folder.to_str().unwrap()]);
    let (blobs1, _) = summary(&night1, "night 1");
    // Small chunks: hundreds of them, where the files profile (1 MiB) would cut 3 or 4.
    assert!(blobs1 > 200, "the dump was cut in large chunks: {night1}");

    std::fs::write(&dump, sql_dump(ROWS, 2)).unwrap();
    let night2 = env.json(&["backup", folder.to_str().unwrap()]);
    let (_, added) = summary(&night2, "night 2");
    // 36 changed rows: about 36 chunks of 4 KiB and the chunk lists, not the whole file.
    assert!(
        added < first.len() as u64 / 8,
        "night 2 added {added} of {} bytes: {night2}",
        first.len()
    );

    // The same dumps through stdin add about as much (the profile is the same).
    let stdin = Env::new();
    stdin.init();
    for night in [1, 2] {
        let out = stdin
            .cmd()
            .args(["--json", "backup", "--stdin", "--stdin-name", "app.sql"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&sql_dump(ROWS, night))?;
                c.wait_with_output()
            })
            .unwrap();
        common::assert_ok(&out, &["backup", "--stdin"]);
        if night == 2 {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let (_, from_stdin) = summary(&v, "stdin night 2");
            assert!(
                added <= from_stdin * 3 / 2 + 16_384,
                "from a file {added} bytes, from stdin {from_stdin}"
            );
        }
    }

    // The restored dump is the night's dump, byte for byte.
    let target = env.path("restored");
    env.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    let back = std::fs::read(target.join(dump.strip_prefix("/").unwrap())).unwrap();
    assert!(back == sql_dump(ROWS, 2), "the restored dump differs");
}

#[test]
fn binary_files_keep_large_chunks() {
    let env = Env::new();
    env.init();
    let folder = env.path("data");
    std::fs::create_dir_all(&folder).unwrap();
    // Random bytes hold a NUL in their first 8,000 bytes; so does a compressed dump.
    std::fs::write(folder.join("blob.bin"), pseudo_random(5, 6_000_000)).unwrap();
    let v = env.json(&["backup", folder.to_str().unwrap()]);
    let (blobs, _) = summary(&v, "backup");
    assert!(
        blobs < 20,
        "a 6 MB binary file was cut in {blobs} blobs: {v}"
    );
}
