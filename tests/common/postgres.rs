//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary folder, the server on
//! a free loopback port with trust authentication for 127.0.0.1 only (and its Unix socket
//! inside the folder), stopped and deleted on drop.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (CI does), the cluster
//! belongs to the `postgres` OS user (or `nobody` if there is none) and the server runs as
//! that user; client programs (`psql`, coffer's `pg_dump`) run as the test user and connect
//! over TCP as the database user `postgres`.
//!
//! Binaries: `$COFFER_TEST_PG_BIN`, else `/usr/lib/postgresql/15/bin`. A missing binary
//! fails the test with what to install.
//!
//! The server gets SIGKILL if the thread that started it dies without dropping it (Linux's
//! parent-death signal follows the starting thread), so start a cluster in the test that
//! uses it.

use super::servers::free_port;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "apt-get install postgresql-15 (or set COFFER_TEST_PG_BIN to a folder \
                       holding initdb, postgres and psql)";
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct PgCluster {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// The OS user and group the server runs as, when it is not the test's own.
    owner: Option<(u32, u32)>,
    child: Option<Child>,
    /// Extra `-c name=value` settings the server starts with.
    settings: Vec<(String, String)>,
}

/// How [`PgCluster::start_with`] sets a cluster up.
#[derive(Default, Clone)]
pub struct PgOptions {
    /// `initdb --data-checksums`.
    pub data_checksums: bool,
    /// Server settings (`-c name=value`), e.g. `("archive_mode", "on")`. They come after the
    /// test defaults, so they can override them (`full_page_writes`, `fsync`).
    pub settings: Vec<(String, String)>,
}

impl PgCluster {
    /// The folder holding the PostgreSQL 15 programs.
    pub fn bin_dir() -> PathBuf {
        std::env::var_os("COFFER_TEST_PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
    }

    pub fn bin(name: &str) -> PathBuf {
        let p = Self::bin_dir().join(name);
        assert!(
            p.is_file(),
            "{} is missing; install it: {INSTALL}",
            p.display()
        );
        p
    }

    /// initdb a new cluster and start its server.
    pub fn start() -> PgCluster {
        Self::start_with(PgOptions::default())
    }

    /// initdb a new cluster set up as `opts` says, and start its server.
    pub fn start_with(opts: PgOptions) -> PgCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let owner = server_owner();
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        std::fs::create_dir(&sockets).expect("socket folder");
        if let Some((uid, gid)) = owner {
            for p in [dir.path(), &sockets] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let mut initdb = Command::new(Self::bin("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"]);
        if opts.data_checksums {
            initdb.arg("--data-checksums");
        }
        let out = as_owner(&mut initdb, owner, dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run initdb ({e}); install: {INSTALL}"));
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Trust, but only on loopback and the private socket.
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .expect("write pg_hba.conf");
        let mut cluster = PgCluster {
            port: 0,
            dir,
            owner,
            child: None,
            settings: opts.settings,
        };
        cluster.start_server();
        cluster
    }

    /// Start a server on the data directory already in `dir/data` (a restored base
    /// backup, say), with `settings` (`-c name=value`, e.g. the recovery settings) after the
    /// test defaults. The folder and everything in it are given to the server's OS user and
    /// the folder made 0700, as PostgreSQL requires. Waits until the server accepts
    /// connections (a standby or a paused recovery accepts read-only ones).
    pub fn start_existing(dir: tempfile::TempDir, settings: Vec<(String, String)>) -> PgCluster {
        let owner = server_owner();
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        std::fs::create_dir_all(&sockets).expect("socket folder");
        if let Some((uid, gid)) = owner {
            for p in [dir.path(), &sockets] {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown to postgres");
            }
            chown_tree(&data, uid, gid);
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))
            .expect("chmod the data directory");
        let mut cluster = PgCluster {
            port: 0,
            dir,
            owner,
            child: None,
            settings,
        };
        cluster.start_server();
        cluster
    }

    /// Start the server on a free port (another, if someone takes the port first).
    fn start_server(&mut self) {
        let log_path = self.dir.path().join("server.log");
        for _attempt in 0..3 {
            let port = free_port();
            let log = std::fs::File::create(&log_path).expect("server log");
            let mut cmd = Command::new(Self::bin("postgres"));
            cmd.arg("-D")
                .arg(self.dir.path().join("data"))
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(self.dir.path().join("sockets"))
                .args(["-c", "listen_addresses=127.0.0.1"])
                // A test database need not survive a crash of the machine.
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
                .args(["-c", "full_page_writes=off", "-c", "max_connections=30"])
                .args(
                    self.settings
                        .iter()
                        .flat_map(|(k, v)| ["-c".to_string(), format!("{k}={v}")]),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log);
            as_owner(&mut cmd, self.owner, self.dir.path());
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let t0 = Instant::now();
            self.child = Some(
                cmd.spawn()
                    .unwrap_or_else(|e| panic!("cannot start postgres ({e}); install: {INSTALL}")),
            );
            self.port = port;
            loop {
                if self.try_psql("postgres", "SELECT 1").is_ok() {
                    eprintln!(
                        "postgres listening on 127.0.0.1:{port} after {:.2?}",
                        t0.elapsed()
                    );
                    return;
                }
                let exited = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    self.child = None;
                    eprintln!("postgres exited with {status} on port {port}, trying another");
                    break;
                }
                if t0.elapsed() > START_TIMEOUT {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!("postgres did not accept connections on port {port}: {log}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        panic!("postgres would not start; its last output:\n{log}");
    }

    /// `postgresql://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Run SQL (any number of statements) in `db`; returns what it printed, unaligned and
    /// without headers, trimmed. Panics on an SQL error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|e| panic!("psql in {db} failed: {e}\nSQL: {sql:.500}"))
    }

    /// Like [`PgCluster::psql`], returning psql's error output on failure.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut child = Command::new(Self::bin("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "--no-password",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .arg(format!("--dbname={}", self.url(db)))
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run psql ({e}); install: {INSTALL}"));
        let mut stdin = child.stdin.take().expect("piped");
        // Write on a thread: a large script and a large result could fill both pipes.
        let sql = sql.to_string();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(sql.as_bytes());
        });
        let out = child.wait_with_output().expect("wait for psql");
        let _ = writer.join();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn createdb(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    /// The server's process and every process it started (one backend per connection).
    fn processes(&self) -> Vec<libc::pid_t> {
        let Some(child) = &self.child else {
            return vec![];
        };
        let mut family = vec![child.id() as libc::pid_t];
        loop {
            let before = family.len();
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<libc::pid_t>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // Field 4, after the `(command)` that may hold spaces, is the parent pid.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<libc::pid_t>().ok());
                if ppid.is_some_and(|p| family.contains(&p)) && !family.contains(&pid) {
                    family.push(pid);
                }
            }
            if family.len() == before {
                return family;
            }
        }
    }

    /// Kill the server and all its backends at once (SIGKILL), as a crash would: clients
    /// in the middle of a query see their connection drop.
    pub fn kill(&mut self) {
        // Backends first, so none outlives the postmaster while it is being reaped.
        for pid in self.processes().into_iter().rev() {
            // SAFETY: a plain syscall on our child or one of its descendants.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// Stop the server cleanly (fast shutdown: sessions are ended, nothing waits).
    pub fn stop(&mut self) {
        let Some(child) = &mut self.child else { return };
        // SAFETY: a plain syscall on our own child.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = child.try_wait() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The OS user and group the server runs as, when it is not the test's own (tests
    /// running as root): files the server's children use (a repository its
    /// `archive_command` writes to, a password file) must be theirs.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// Start the server again after [`PgCluster::stop`] or [`PgCluster::kill`].
    pub fn restart(&mut self) {
        if self.child.is_none() {
            self.start_server();
        }
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The unprivileged OS user to run the server as, when the tests run as root.
pub fn server_owner() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    for name in ["postgres", "nobody"] {
        let c = std::ffi::CString::new(name).expect("no NUL");
        // SAFETY: getpwnam reads a NUL-terminated name and returns static data or NULL;
        // the fields are copied out at once (tests start clusters in parallel, but only
        // ever look up these same names).
        let pw = unsafe { libc::getpwnam(c.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: non-null result of getpwnam.
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            return Some((uid, gid));
        }
    }
    panic!("running as root, but there is no `postgres` or `nobody` user to run PostgreSQL as; create one: useradd --system postgres");
}

/// Give `path` and everything below it (without following symlinks) to `uid`:`gid`.
fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("chown");
    let meta = std::fs::symlink_metadata(path).expect("stat");
    if meta.is_dir() {
        for e in std::fs::read_dir(path).expect("list").flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

/// Run `cmd` as the cluster's owner (if any), from a folder that user can enter.
fn as_owner<'c>(cmd: &'c mut Command, owner: Option<(u32, u32)>, dir: &Path) -> &'c mut Command {
    cmd.current_dir(dir);
    if let Some((uid, gid)) = owner {
        // std also drops root's supplementary groups when it sets the uid.
        cmd.uid(uid).gid(gid);
    }
    cmd
}
