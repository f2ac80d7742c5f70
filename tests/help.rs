//! What a new user reaches for before the first backup: `--help` with each command's own
//! options first and the global ones under their own heading, shell completions and man
//! pages generated from the same definitions, and usage errors that obey `--json`.

mod common;
use common::Env;
use std::process::Output;

fn out(env: &Env, args: &[&str]) -> Output {
    env.cmd().args(args).output().expect("run coffer")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn help_lists_the_command_options_before_the_global_ones() {
    let env = Env::new();
    let o = out(&env, &["forget", "--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    let own = help.find("--keep-daily").expect("forget's own option");
    let heading = help
        .find("Global options:")
        .expect("a heading for the global options");
    let global = help.find("--password-file").expect("a global option");
    assert!(own < heading && heading < global, "{help}");
}

#[test]
fn completions_name_every_command_and_option() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let o = out(&env, &["completion", shell]);
        assert!(o.status.success(), "{shell}: {o:?}");
        let script = stdout(&o);
        for word in [
            "wal-push",
            "setup-archiving",
            "keep-daily",
            "to-postgres-data",
        ] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    // bash accepts the script it is given.
    let o = out(&env, &["completion", "bash"]);
    let check = std::process::Command::new("bash")
        .args(["-n", "-c", &stdout(&o)])
        .status()
        .unwrap();
    assert!(check.success(), "bash -n rejects the completion script");
    let o = out(&env, &["completion", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn man_pages_cover_every_command() {
    let env = Env::new();
    let dir = env.path("man/man1");
    let o = out(&env, &["--json", "generate-man", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for page in [
        "coffer.1",
        "coffer-backup.1",
        "coffer-restore.1",
        "coffer-wal-push.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    let backup = std::fs::read_to_string(dir.join("coffer-backup.1")).unwrap();
    assert!(
        backup.contains("exclude"),
        "the backup page lacks its options"
    );
    let written = std::fs::read_dir(&dir).unwrap().count() as u64;
    assert_eq!(v["pages"].as_u64(), Some(written), "{v}");
    assert!(written >= 25, "{written} pages");
}

#[test]
fn a_usage_error_obeys_json() {
    let env = Env::new();
    let o = out(&env, &["--json", "backup", "--exlude", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("no JSON on stdout ({e}): {o:?}"));
    assert_eq!(v["exit_code"], 2);
    assert_eq!(v["kind"], "Usage");
    assert!(v["error"].as_str().unwrap().contains("--exlude"), "{v}");
    // The person at the terminal still gets clap's words and its suggestion.
    assert!(String::from_utf8_lossy(&o.stderr).contains("--exclude"));
    // Without --json, stdout stays empty.
    let o = out(&env, &["backup", "--exlude", "x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}

#[test]
fn durations_and_rates_are_written_one_way_everywhere() {
    let env = Env::new();
    env.init();
    // The forms coffer prints and the ones people type are accepted by every option.
    for rate in ["20M", "20mib/s", "20MiB/s", "1.5G"] {
        env.ok(&["--limit-upload", rate, "snapshots"]);
    }
    for d in ["1h30m", "90m", "1d2h", "2 hours", "0s"] {
        env.ok(&["prune", "--dry-run", "--stale-lock-after", d]);
    }
    // Months have no fixed length: refused, with the way out.
    let o = out(&env, &["prune", "--dry-run", "--stale-lock-after", "1mo"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("30d"), "{o:?}");
    // --keep-within keeps restic's meaning, and its help says so.
    let help = stdout(&out(&env, &["forget", "--help"]));
    assert!(help.contains("m MONTHS"), "{help}");
}

#[test]
fn snapshots_and_forget_filter_by_tag_host_and_path_as_restic_does() {
    let env = Env::new();
    env.init();
    let a = env.path("a");
    let b = env.path("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    for (path, host) in [(a, "h1"), (a, "h1"), (a, "h1"), (b, "h2"), (a, "h2")] {
        env.ok(&["backup", path, "--host", host]);
    }
    let ids = |args: &[&str]| -> usize {
        let mut all = vec!["snapshots"];
        all.extend_from_slice(args);
        env.json(&all).as_array().unwrap().len()
    };
    assert_eq!(ids(&[]), 5);
    assert_eq!(ids(&["--host", "h1"]), 3);
    assert_eq!(ids(&["--host", "h1", "--host", "h2"]), 5);
    assert_eq!(ids(&["--path", b]), 1);
    assert_eq!(ids(&["--latest", "1"]), 3, "one per host and paths");
    assert_eq!(ids(&["--latest", "2", "--host", "h1"]), 2);
    let groups = env.json(&["snapshots", "--group-by", "host"]);
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert_eq!(groups[0]["group_key"]["host"], "h1");
    assert_eq!(groups[0]["snapshots"].as_array().unwrap().len(), 3);
    // forget applies its policy to the filtered snapshots only.
    env.ok(&["forget", "--host", "h1", "--keep-last", "1"]);
    assert_eq!(ids(&["--host", "h1"]), 1);
    assert_eq!(ids(&["--host", "h2"]), 2, "h2's snapshots were not touched");
}

#[test]
fn a_password_command_gives_the_password_and_sees_no_secret() {
    let env = Env::new();
    env.init();
    let seen = env.path("child-env");
    let run = |command: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_coffer"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", env.path(""))
            // A wrong password in the environment: the command comes first.
            .env("COFFER_PASSWORD", "not-the-password")
            .args(["--no-cache", "--repo", env.repo().to_str().unwrap()])
            .args(["--password-command", command, "snapshots"])
            .output()
            .unwrap()
    };
    let good = format!("env > {}; echo '{}'", seen.display(), common::PASSWORD);
    let o = run(&good);
    assert!(o.status.success(), "{o:?}");
    let child_env = std::fs::read_to_string(&seen).unwrap();
    assert!(!child_env.contains("COFFER_PASSWORD"), "{child_env}");
    let o = run("exit 3");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--password-command failed"));
    let o = run("echo wrong");
    assert_eq!(
        o.status.code(),
        Some(1),
        "a wrong password from the command: {o:?}"
    );
}
