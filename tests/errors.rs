//! Errors a person can act on: one line that says what failed, why (connection refused, a
//! name that does not resolve, no credentials) and what to do; the storage library's own
//! request context only with `--verbose`; advice that is right (`sync --dry-run` against a
//! region it cannot reach does not say "run sync" as if sync could fix it).

mod common;
use common::Env;
use std::process::Output;

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `coffer ARGS` with the test password and no repository of its own: ARGS name it.
fn bare(env: &Env) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_coffer"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.path(""))
        .env("COFFER_PASSWORD", common::PASSWORD)
        .arg("--no-cache");
    c
}

fn with_s3_keys(env: &Env, args: &[&str]) -> Output {
    bare(env)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_unreachable_service_is_named_in_one_line_with_the_next_step() {
    let env = Env::new();
    let url = format!("s3://b/p?endpoint=http://127.0.0.1:{}", dead_port());
    let o = with_s3_keys(&env, &["-r", &url, "snapshots"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    let error = e.lines().find(|l| l.starts_with("coffer: error:")).unwrap();
    assert!(error.contains("connection refused"), "{e}");
    assert!(error.contains("endpoint"), "no next step: {e}");
    assert!(!e.contains("context: {"), "opendal's context leaked: {e}");
    // --verbose adds the storage library's own account.
    let o = with_s3_keys(&env, &["-v", "-r", &url, "snapshots"]);
    assert!(
        stderr(&o).contains("detail: ") && stderr(&o).contains("context"),
        "{o:?}"
    );
    let o = with_s3_keys(&env, &["--json", "-r", &url, "snapshots"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("connection refused"),
        "{v}"
    );
    assert!(v.get("detail").is_none(), "{v}");
    let o = with_s3_keys(&env, &["--json", "-v", "-r", &url, "snapshots"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["detail"].as_str().unwrap().contains("context"), "{v}");
}

#[test]
fn missing_credentials_and_unknown_hosts_say_so() {
    let env = Env::new();
    let o = bare(&env)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["-r", "s3://b/p?endpoint=http://127.0.0.1:9", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("AWS_ACCESS_KEY_ID"), "{o:?}");
    let o = with_s3_keys(
        &env,
        &[
            "-r",
            "s3://b/p?endpoint=http://no-such-host.invalid:9000",
            "snapshots",
        ],
    );
    assert!(stderr(&o).contains("does not resolve"), "{o:?}");
}

#[test]
fn sync_dry_run_against_an_unreachable_region_gives_the_right_advice() {
    let env = Env::new();
    env.init();
    let dead = format!("b=s3://b/p?endpoint=http://127.0.0.1:{}", dead_port());
    let here = format!("a={}", env.repo().display());
    let o = with_s3_keys(&env, &["-r", &here, "-r", &dead, "sync", "--dry-run"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.lines().last().unwrap_or("");
    assert!(last.contains("b could not be reached"), "{out}");
    assert!(!last.contains("regions differ"), "{out}");
}
