//! No code execution or secret leaks through the PostgreSQL tools, ssh and drills (issue 12,
//! security review M1, M2, L1, L6, L8, L12), through the real binary against real servers:
//! - an SFTP host cannot be an ssh option, and coffer's own ssh check records no host key.

mod common;

use common::Env;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An SFTP host that ssh would read as an option is a usage error, and nothing runs.
#[test]
fn an_sftp_host_cannot_be_an_ssh_option() {
    let env = Env::new();
    let cwd = env.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .current_dir(&cwd)
        .env("COFFER_PASSWORD", "x")
        .args([
            "-r",
            "sftp://-oProxyCommand=touch${IFS}pwned/srv/repo",
            "snapshots",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("starts with '-'"), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0);
}

/// coffer's own ssh login check (the `ssh ... -s -- HOST sftp` it runs before the first SFTP
/// operation) gets a cleared environment with the agent's socket, puts `--` before the host,
/// and with `known_hosts=accept` records no host key.
#[test]
fn coffers_ssh_check_is_clean_and_records_no_host_key() {
    let sshd = common::servers::Sshd::start();
    let env = Env::new();
    // A wrapper first on PATH records every ssh run (coffer's check and opendal's own).
    let bin = env.path("bin");
    let log = env.path("ssh-log");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&log).unwrap();
    let real = ["/usr/bin/ssh", "/bin/ssh"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("ssh is missing; install it: apt-get install openssh-client");
    write_script(
        &bin.join("ssh"),
        &format!(
            "#!/bin/sh\nn=$(date +%s%N).$$\nenv > {l}/$n.env\nprintf '%s\\n' \"$@\" > {l}/$n.args\n\
             exec {real} \"$@\"\n",
            l = log.display()
        ),
    );
    let url = sshd.url(&sshd.folder("repo"));
    let out = env
        .cmd()
        .env(
            "PATH",
            format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
        )
        .env("SSH_AUTH_SOCK", "/nonexistent/agent.sock")
        .env("AWS_SECRET_ACCESS_KEY", "aws-secret")
        .args(["-r", &url, "init", "--kdf-memory-kib", "1024"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let mut checks = 0;
    for e in std::fs::read_dir(&log).unwrap().flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "args") {
            continue;
        }
        let args: Vec<String> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        // Only coffer's check starts the subsystem on its own connection; the openssh
        // crate's master runs `-M -N`, and its sessions go through the master (`-S`).
        let has = |a: &str| args.iter().any(|x| x == a);
        if args.last().map(String::as_str) != Some("sftp") || has("-M") || has("-S") {
            continue;
        }
        checks += 1;
        assert_eq!(
            args[args.len() - 4..],
            ["-s", "--", "127.0.0.1", "sftp"],
            "{args:?}"
        );
        assert!(
            args.contains(&"UserKnownHostsFile=/dev/null".to_string()),
            "{args:?}"
        );
        let vars = std::fs::read_to_string(p.with_extension("env")).unwrap();
        assert!(
            vars.contains("SSH_AUTH_SOCK=/nonexistent/agent.sock"),
            "{vars}"
        );
        assert!(
            !vars.contains("COFFER_PASSWORD") && !vars.contains("aws-secret"),
            "{vars}"
        );
    }
    assert_eq!(checks, 1, "coffer's ssh check did not run once");
}
