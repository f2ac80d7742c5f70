//! A quick SSH login check before the first SFTP operation, for a clear error.
//!
//! opendal's SFTP service connects through a connection pool that retries a failed login
//! silently until its own 30 s timeout and then reports only "connection request: timeout",
//! hiding ssh's reason (an unknown host key, a refused key, a wrong port). So before the
//! first operation, and again after a failure, this runs the same `ssh` with the same
//! options once, and turns a failure into an error carrying ssh's own message.

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
        // `-s HOST sftp`: start the SFTP subsystem; with stdin closed it ends at once.
        args.extend(["-s".into(), loc.host.clone().into(), "sftp".into()]);
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
        let mut child = Command::new("ssh")
            .args(&self.args)
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
