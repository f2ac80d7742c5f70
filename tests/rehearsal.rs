//! docs/recovery-rehearsal.md, run as written: every ```` ```sh rehearsal ```` block in order,
//! with bash -euo pipefail, against a throwaway PostgreSQL server and a temporary scratch
//! folder given through the variables the document uses ($SCRATCH, $REPO, $PGURL); each
//! block must succeed and print every line of the ```` ```text expected ```` block after it.
//! So the team's exercise cannot go stale: a command of it that breaks fails this test.

mod common;

use common::postgres::PgCluster;
use std::path::{Path, PathBuf};
use std::process::Command;

const DOC: &str = "docs/recovery-rehearsal.md";
/// Stands for what differs from run to run (IDs, times, sizes) in an expected line.
const ANYTHING: char = '…';

/// One block the document runs, with the lines it must print.
struct Step {
    script: String,
    expected: Vec<String>,
}

/// The `sh rehearsal` blocks of `doc`, each with the `text expected` block that follows it.
fn steps(doc: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let body: Vec<String> = lines
            .by_ref()
            .take_while(|l| *l != "```")
            .map(str::to_string)
            .collect();
        match info.trim() {
            "sh rehearsal" => steps.push(Step {
                script: body.join("\n"),
                expected: Vec::new(),
            }),
            "text expected" => {
                let step = steps
                    .last_mut()
                    .expect("a `text expected` block follows a `sh rehearsal` block");
                assert!(step.expected.is_empty(), "two expected blocks for one step");
                step.expected = body;
            }
            _ => {}
        }
    }
    steps
}

/// Whitespace runs made one space: table columns widen with the values in them.
fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `line` holds the pieces of `expected` between its `…`, in order.
fn matches(expected: &str, line: &str) -> bool {
    let mut rest = line;
    for piece in expected.split(ANYTHING).map(squeeze) {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// The lines of `expected` that no line of `output` matches, after putting in the variables.
fn missing(expected: &[String], output: &str, vars: &[(&str, String)]) -> Vec<String> {
    let lines: Vec<String> = output.lines().map(squeeze).collect();
    expected
        .iter()
        .map(|e| {
            vars.iter().fold(e.clone(), |e, (name, value)| {
                e.replace(&format!("${name}"), value)
            })
        })
        .filter(|e| !lines.iter().any(|l| matches(e, l)))
        .collect()
}

#[test]
fn the_matcher_needs_every_piece_in_order() {
    assert!(matches("shop … ok", "shop files 0.1s ok"));
    assert!(matches(
        "created repository … at /r",
        "created repository 1a2b at /r"
    ));
    assert!(!matches("shop … ok", "shop files 0.1s failed"));
    assert!(!matches("ok … shop", "shop files ok"));
    let vars = [("SCRATCH", "/tmp/x".to_string())];
    assert!(missing(&["into $SCRATCH/look".into()], "into /tmp/x/look", &vars).is_empty());
    assert_eq!(
        missing(&["into $SCRATCH".into()], "into /tmp/y", &vars).len(),
        1
    );
}

#[test]
fn the_document_marks_its_steps_and_ends_with_a_drill() {
    let doc = std::fs::read_to_string(DOC).expect("read the rehearsal document");
    let steps = steps(&doc);
    assert!(steps.len() >= 8, "only {} rehearsal steps", steps.len());
    let last = steps.last().unwrap();
    assert!(last.script.contains("coffer drill"), "{}", last.script);
    assert!(last.expected.iter().any(|l| l.contains("passed")));
    for needed in [
        "coffer init",
        "coffer run",
        "coffer runbook",
        "coffer snapshots --tag job:",
        "--target",
        "--to-postgres",
        "--to-bucket",
    ] {
        assert!(
            steps.iter().any(|s| s.script.contains(needed)),
            "no step runs {needed}"
        );
    }
}

/// The folder holding the coffer binary under test, to put first on the PATH.
fn coffer_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_coffer"))
        .parent()
        .expect("the binary's folder")
        .to_path_buf()
}

#[test]
fn the_rehearsal_runs_as_written() {
    let doc = std::fs::read_to_string(DOC).expect("read the rehearsal document");
    let steps = steps(&doc);
    let pg = PgCluster::start();
    let home = tempfile::tempdir().expect("temp dir");
    let scratch = tempfile::tempdir().expect("temp dir");
    let scratch_path = scratch.path().to_string_lossy().into_owned();
    let vars = [
        ("SCRATCH", scratch_path.clone()),
        ("REPO", format!("{scratch_path}/repo")),
        (
            "PGURL",
            format!("postgresql://postgres@127.0.0.1:{}", pg.port),
        ),
    ];
    let path = std::env::join_paths([coffer_dir(), PgCluster::bin_dir()].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    for (n, step) in steps.iter().enumerate() {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c"])
            // One stream, in the order a person at the terminal sees it.
            .arg(format!("exec 2>&1\n{}", step.script))
            .current_dir(scratch.path())
            .env_clear()
            .env("PATH", &path)
            .env("HOME", home.path())
            .env("TZ", "UTC")
            // The debug binary keeps key derivation cheap (see tests/common).
            .env("COFFER_TEST_TINY_KDF", "1")
            .envs(vars.iter().map(|(k, v)| (*k, v)))
            .output()
            .expect("run bash");
        let output = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "step {} of {DOC} failed ({:?}):\n{}\n--- it printed:\n{output}",
            n + 1,
            out.status.code(),
            step.script
        );
        let missing = missing(&step.expected, &output, &vars);
        assert!(
            missing.is_empty(),
            "step {} of {DOC} did not print {missing:#?}:\n{}\n--- it printed:\n{output}",
            n + 1,
            step.script
        );
    }
}
