//! A `coffer backup --stdin` that runs while a test does other things: it holds its lock
//! until the test closes its input (prune, repair and check are tried against it).

use super::{repo_listing, wait_with_limit, Env};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// The object files of one kind folder (`plans`, `locks`, ...) of a folder repository.
pub fn objects_in(repo: &Path, kind: &str) -> Vec<PathBuf> {
    repo_listing(&repo.join(kind))
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// A `coffer backup --stdin` child whose standard input the test writes; killed on drop.
pub struct StdinBackup {
    child: Option<Child>,
    /// How long `finish` waits for it before failing the test.
    limit: Duration,
}

impl StdinBackup {
    /// Start the backup and wait until it has stored its lock (one more lock object than
    /// before). It then waits for its input. `limit` bounds its whole run.
    pub fn start(env: &Env, name: &str, host: &str, limit: Duration) -> StdinBackup {
        Self::start_with(env, name, host, &[], limit)
    }

    /// `start` with more environment variables for the child.
    pub fn start_with(
        env: &Env,
        name: &str,
        host: &str,
        vars: &[(&str, &str)],
        limit: Duration,
    ) -> StdinBackup {
        let locks_before = objects_in(&env.repo(), "locks").len();
        let child = env
            .cmd()
            .envs(vars.iter().copied())
            .args(["--json", "backup", "--stdin", "--stdin-name", name])
            .args(["--host", host])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut b = StdinBackup {
            child: Some(child),
            limit,
        };
        let t0 = Instant::now();
        while objects_in(&env.repo(), "locks").len() <= locks_before {
            assert!(
                b.child().try_wait().unwrap().is_none(),
                "the backup ended before storing its lock"
            );
            assert!(t0.elapsed() < Duration::from_secs(60), "no lock appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        b
    }

    pub fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    /// Write `bytes` to its input. Once 1 MiB went through the pipe (which buffers 64 KiB),
    /// the backup is reading its stream, so it has read the plans and the index.
    pub fn write(&mut self, bytes: &[u8]) {
        self.child()
            .stdin
            .as_mut()
            .expect("stdin open")
            .write_all(bytes)
            .unwrap();
    }

    /// SIGKILL it: it leaves its lock behind.
    pub fn kill(mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Write the rest, close the input, and wait for the end.
    pub fn finish(mut self, rest: &[u8]) -> Output {
        self.write(rest);
        let mut c = self.child.take().unwrap();
        drop(c.stdin.take());
        wait_with_limit(c, self.limit, "coffer backup --stdin")
    }
}

impl Drop for StdinBackup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
