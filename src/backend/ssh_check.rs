//! A quick SSH login check before the first SFTP operation, for a clear error.
//!
//! opendal's SFTP service connects through a connection pool that retries a failed login
//! silently until its own 30 s timeout and then reports only "connection request: timeout",
//! hiding ssh's reason (an unknown host key, a refused key, a wrong port). So before the
//! first operation, and again after a failure, this runs the same `ssh` with the same
//! options once, and turns a failure into an error carrying ssh's own message.
//!
//! ssh starts from a cleared environment (`child_env`): it and whatever it runs (a
//! `ProxyCommand` from `~/.ssh/config`) never see `COFFER_PASSWORD` or storage credentials.
//! The destination comes after `--`, so no host name is ever read as an option.

use super::location::{KnownHosts, SftpLocation};
use crate::error::{Error, Result};
use std::ffi::OsString;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct SshCheck {
    args: Vec<OsString>,
    timeout: Duration,
    passed: AtomicBool,
}

impl SshCheck {
    pub fn new(loc: &SftpLocation, key: Option<&str>, timeout: Duration) -> Self {
        let mut args: Vec<OsString> = vec!["-o".into(), "BatchMode=yes".into()];
        let strict = match loc.known_hosts {
            KnownHosts::Strict => "yes",
            KnownHosts::Add => "accept-new",
            KnownHosts::Accept => "no",
        };
        args.push("-o".into());
        args.push(format!("StrictHostKeyChecking={strict}").into());
        if loc.known_hosts == KnownHosts::Accept {
            // Any key is accepted, so none may be recorded: a key written to known_hosts now
            // (perhaps a man in the middle's) would be trusted by later `strict` runs.
            args.push("-o".into());
            args.push("UserKnownHostsFile=/dev/null".into());
        }
        args.push("-o".into());
        args.push(format!("ConnectTimeout={}", timeout.as_secs().max(1)).into());
        if let Some(p) = loc.port {
            args.push("-p".into());
            args.push(p.to_string().into());
        }
        if let Some(u) = &loc.user {
            args.push("-l".into());
            args.push(u.into());
        }
        if let Some(k) = key {
            args.extend([
                "-o".into(),
                "IdentitiesOnly=yes".into(),
                "-i".into(),
                k.into(),
            ]);
        }
        // `-s -- HOST sftp`: start the SFTP subsystem; with stdin closed it ends at once.
        args.extend([
            "-s".into(),
            "--".into(),
            loc.host.clone().into(),
            "sftp".into(),
        ]);
        SshCheck {
            args,
            timeout,
            passed: AtomicBool::new(false),
        }
    }

    /// Ok once a login has worked in this process; otherwise try one now.
    pub fn ensure(&self, what: &str) -> Result<()> {
        if self.passed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::backend(format!("{what}: cannot run ssh: {e}"), false))?;
        // ConnectTimeout covers only the TCP connection: a server that accepts and then
        // says nothing is cut off here.
        let deadline = Instant::now() + self.timeout + Duration::from_secs(5);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        match status {
            Some(s) if s.success() => {
                self.passed.store(true, Ordering::Relaxed);
                Ok(())
            }
            Some(_) => {
                let reason = reason(&stderr);
                // Network trouble may pass; a refused key or host key will not.
                let retryable = [
                    "Connection refused",
                    "timed out",
                    "No route",
                    "reset by peer",
                ]
                .iter()
                .any(|s| reason.contains(s));
                Err(Error::backend(
                    format!("{what}: SSH login failed: {reason}"),
                    retryable,
                ))
            }
            None => Err(Error::backend(
                format!("{what}: SSH login did not finish within {:?}", self.timeout),
                true,
            )),
        }
    }
}

impl SshCheck {
    /// The `ssh` command, with only the allowed environment and the agent's socket.
    fn command(&self) -> Command {
        let mut c = Command::new("ssh");
        crate::child_env::restrict(&mut c, |name| name == "SSH_AUTH_SOCK");
        c.args(&self.args);
        c
    }
}

/// ssh's messages without its routine notices.
fn reason(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .collect();
    if lines.is_empty() {
        "ssh exited without saying why".to_string()
    } else {
        lines.join(" / ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Location;

    fn check(url: &str) -> SshCheck {
        let Location::Sftp(loc) = Location::parse(url).unwrap() else {
            panic!("not sftp")
        };
        SshCheck::new(&loc, Some("/k"), Duration::from_secs(5))
    }

    fn args(c: &SshCheck) -> Vec<String> {
        c.command()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn accept_records_no_key_and_the_host_follows_double_dash() {
        let a = args(&check("sftp://u@127.0.0.1:2222/r?known_hosts=accept"));
        assert!(a.contains(&"StrictHostKeyChecking=no".to_string()), "{a:?}");
        assert!(
            a.contains(&"UserKnownHostsFile=/dev/null".to_string()),
            "{a:?}"
        );
        assert_eq!(a[a.len() - 4..], ["-s", "--", "127.0.0.1", "sftp"]);
        for mode in ["strict", "add"] {
            let a = args(&check(&format!("sftp://u@h/r?known_hosts={mode}")));
            assert!(
                !a.iter().any(|x| x.starts_with("UserKnownHostsFile")),
                "{a:?}"
            );
        }
    }

    #[test]
    fn the_environment_is_cleared() {
        let env = crate::child_env::planned(&check("sftp://h/r").command());
        assert!(
            env.iter().all(|(k, _)| !k.starts_with("COFFER_")
                && !k.starts_with("AWS_")
                && !k.starts_with("AZURE_")),
            "{env:?}"
        );
    }
}
