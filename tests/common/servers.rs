//! Real storage servers on loopback for the backend tests: moto (S3), Azurite (Azure Blob)
//! and OpenSSH's sshd (SFTP), each on a free port with its data in a temporary folder, and
//! killed when its guard drops. A server that cannot start fails the test with what to
//! install; nothing is skipped silently.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a server may take to open its port (moto and Azurite load a lot of code).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A port that was free a moment ago, and never handed out before in this process (the
/// kernel may offer a port again once it is closed, and tests start servers in parallel).
/// Another process may still take it before the server binds; `Server::start` then tries
/// again with a new one.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = l.local_addr().expect("local address").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Is something listening on the port? A connection from the port to itself (which Linux
/// makes when nothing listens on an ephemeral port and the client picks that same port)
/// does not count.
fn listening(port: u16) -> bool {
    match TcpStream::connect(("127.0.0.1", port)) {
        Ok(s) => s.local_addr().map(|a| a.port() != port).unwrap_or(false),
        Err(_) => false,
    }
}

/// A running server process; killed (and reaped) on drop.
pub struct Server {
    pub what: &'static str,
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// From spawning to the port accepting connections.
    pub started_in: Duration,
    child: Option<Child>,
}

impl Server {
    /// Spawn `make(port, dir)` and wait until it listens on 127.0.0.1:port. `install` says
    /// how to get the program, for the failure message.
    fn start(
        what: &'static str,
        install: &str,
        mut dir: tempfile::TempDir,
        make: impl Fn(u16, &Path) -> Command,
    ) -> Server {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = free_port();
            let log_path = dir.path().join(format!("{what}.log"));
            let log = std::fs::File::create(&log_path).expect("server log file");
            let mut cmd = make(port, dir.path());
            cmd.stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log);
            // If the test process dies without running destructors, take the server along.
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let t0 = Instant::now();
            let child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => panic!(
                    "cannot start {what} ({:?}: {e}); install it: {install}",
                    cmd.get_program()
                ),
            };
            let mut server = Server {
                what,
                port,
                dir,
                started_in: Duration::ZERO,
                child: Some(child),
            };
            loop {
                if listening(port) {
                    server.started_in = t0.elapsed();
                    eprintln!(
                        "{what} listening on 127.0.0.1:{port} after {:.2?}",
                        server.started_in
                    );
                    return server;
                }
                let exited = server
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                if let Some(status) = exited {
                    last_log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    eprintln!("{what} exited with {status} on port {port}, trying another port");
                    break;
                }
                if t0.elapsed() > START_TIMEOUT {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    panic!(
                        "{what} did not open port {port} within {START_TIMEOUT:?}; \
                         is it installed ({install})? its output:\n{log}"
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            dir = server.take_dir();
        }
        panic!("{what} would not start (install: {install}); its last output:\n{last_log}");
    }

    /// Reclaim the folder of a server that exited (to try again on another port).
    fn take_dir(mut self) -> tempfile::TempDir {
        self.child = None;
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    fn pid(&self) -> libc::pid_t {
        let pid = self.child.as_ref().expect("server running").id();
        libc::pid_t::try_from(pid).expect("pid fits")
    }

    /// Freeze the server (SIGSTOP): connections are accepted by the kernel but never
    /// answered, like a host that hangs.
    pub fn freeze(&self) {
        // SAFETY: plain syscall on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGSTOP) }, 0);
    }

    pub fn thaw(&self) {
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(self.pid(), libc::SIGCONT) }, 0);
    }

    /// Kill the server and every process it started (sshd serves each connection from
    /// a child process of its own, which outlives the listener).
    pub fn kill_all(&mut self) {
        let Some(child) = &self.child else { return };
        let mut family = vec![child.id()];
        // Children before parents are found in /proc order only by chance: repeat until
        // no process has a parent in the family.
        loop {
            let before = family.len();
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // Field 4, after the `(command)` which may hold spaces, is the parent pid.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid.is_some_and(|p| family.contains(&p)) && !family.contains(&pid) {
                    family.push(pid);
                }
            }
            if family.len() == before {
                break;
            }
        }
        for pid in family.into_iter().skip(1) {
            // SAFETY: plain syscall on a descendant of our own child.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        self.kill();
    }

    /// Kill the server now (connections are then refused).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Send one HTTP/1.1 request and return the status code and the whole response.
fn http(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the server");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.write_all(request.as_bytes()).expect("send request");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

/// moto's S3 server with one bucket.
pub struct Moto {
    pub server: Server,
    pub bucket: String,
}

impl Moto {
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = Server::start(
            "moto_server",
            "pip install 'moto[server]'",
            dir,
            |port, _| {
                let mut c = Command::new("moto_server");
                c.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                c
            },
        );
        let bucket = "coffer-test".to_string();
        // moto does not check signatures, so a bare request creates the bucket.
        let (code, resp) = http(
            server.port,
            &format!(
                "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                server.port
            ),
        );
        assert_eq!(code, 200, "moto did not create bucket {bucket}: {resp}");
        Moto { server, bucket }
    }

    pub fn url(&self, prefix: &str) -> String {
        format!(
            "s3://{}/{prefix}?endpoint=http://127.0.0.1:{}&region=us-east-1",
            self.bucket, self.server.port
        )
    }

    /// Credentials for a coffer process (moto accepts any), and no instance-metadata lookups.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "coffer-test"),
            ("AWS_SECRET_ACCESS_KEY", "coffer-test-secret"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// Azurite's Blob service with one container, using the emulator's well-known account.
pub struct Azurite {
    pub server: Server,
    pub container: String,
}

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl Azurite {
    pub fn start() -> Azurite {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = Server::start(
            "azurite-blob",
            "npm install -g azurite",
            dir,
            |port, dir| {
                let mut c = Command::new("azurite-blob");
                c.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
                    .arg("--location")
                    .arg(dir.join("data"))
                    .args([
                        "--silent",
                        "--disableTelemetry",
                        "--skipApiVersionCheck",
                        "--loose",
                    ]);
                c
            },
        );
        let container = "coffer-test".to_string();
        create_container(server.port, &container);
        Azurite { server, container }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.server.port)
    }

    pub fn url(&self, prefix: &str) -> String {
        format!(
            "azblob://{}/{prefix}?endpoint={}",
            self.container,
            self.endpoint()
        )
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_ACCOUNT".into(), AZURITE_ACCOUNT.into()),
            ("AZURE_STORAGE_KEY".into(), AZURITE_KEY.into()),
        ]
    }
}

/// `PUT ?restype=container`, signed with the account key (Azure's SharedKey scheme):
/// unlike moto, Azurite checks signatures, and opendal has no call to create a container.
fn create_container(port: u16, container: &str) {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::STANDARD;
    let date = jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let path = format!("/{AZURITE_ACCOUNT}/{container}");
    // VERB, then eleven standard headers (all empty here), then the x-ms-* headers and
    // the resource: the account name, the path, and each query parameter.
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n\
         /{AZURITE_ACCOUNT}{path}\nrestype:container"
    );
    let key = b64.decode(AZURITE_KEY).expect("account key is base64");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC key");
    mac.update(to_sign.as_bytes());
    let signature = b64.encode(mac.finalize().into_bytes());
    let (code, resp) = http(
        port,
        &format!(
            "PUT {path}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
             x-ms-date: {date}\r\nx-ms-version: {version}\r\n\
             Authorization: SharedKey {AZURITE_ACCOUNT}:{signature}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(
        code, 201,
        "Azurite did not create container {container}: {resp}"
    );
}

/// OpenSSH's sshd with a throwaway host key, accepting one throwaway client key for the
/// current user, with the in-process SFTP server.
pub struct Sshd {
    pub server: Server,
    pub user: String,
    pub client_key: PathBuf,
}

const SSHD: &str = "/usr/sbin/sshd";

impl Sshd {
    pub fn start() -> Sshd {
        let install = "apt-get install openssh-server openssh-client";
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing; install it: {install}"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for (kind, file) in [("ed25519", "host_key"), ("ed25519", "client_key")] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", kind, "-N", "", "-C", "coffer-test", "-f"])
                .arg(d.join(file))
                .output()
                .unwrap_or_else(|e| panic!("cannot run ssh-keygen ({e}); install it: {install}"));
            assert!(out.status.success(), "ssh-keygen failed: {out:?}");
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))
            .expect("authorized_keys");
        // sshd started as root wants its privilege-separation folder (Debian's service
        // creates it at boot; a container may not have it).
        let is_root = unsafe { libc::geteuid() } == 0;
        if is_root {
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let user = current_user();
        let server = Server::start("sshd", install, dir, |port, d| {
            let config = d.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\n\
                     HostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                     AuthorizedKeysFile {d}/authorized_keys\n\
                     StrictModes no\nUsePAM no\nPubkeyAuthentication yes\n\
                     PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\nAllowUsers {user}\n\
                     Subsystem sftp internal-sftp\n",
                    d = d.display()
                ),
            )
            .expect("write sshd_config");
            let mut c = Command::new(SSHD);
            c.args(["-D", "-e", "-f"]).arg(&config);
            c
        });
        let client_key = server.dir.path().join("client_key");
        Sshd {
            server,
            user,
            client_key,
        }
    }

    /// A folder on the server (it is this machine) for a repository.
    pub fn folder(&self, name: &str) -> PathBuf {
        self.server.dir.path().join(name)
    }

    /// `known_hosts=accept`: each run has a new host key, often on a port used before.
    pub fn url(&self, folder: &Path) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}?key={}&known_hosts=accept",
            self.user,
            self.server.port,
            folder.display(),
            self.client_key.display()
        )
    }
}

impl Sshd {
    /// Live `ssh` client processes using this server's client key (the openssh crate's
    /// master connections): none may be left once every backend using them is dropped.
    pub fn client_processes(&self) -> Vec<String> {
        let key = self.client_key.to_string_lossy().into_owned();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let args = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            // Field 3 of /proc/PID/stat is the state; a zombie (Z) is already gone.
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            if args.starts_with("ssh ") && args.contains(&key) && !zombie {
                out.push(format!("{}: {args}", e.file_name().to_string_lossy()));
            }
        }
        out
    }
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(out.stdout)
        .expect("user name is UTF-8")
        .trim()
        .to_string()
}

/// A server process started by a test itself (to bring a server back on the port its
/// region's URL names); killed on drop.
pub struct Restarted {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh moto on `port` (the port of a moto that was killed), with an empty `bucket`:
/// a restarted moto keeps nothing, so its region lacks every object.
pub fn restart_moto(port: u16, bucket: &str) -> Restarted {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("moto.log");
    let t0 = Instant::now();
    // The old listener's port may take a moment to be free again.
    let mut child = loop {
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new("moto_server");
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; the server dies with this test's thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start moto_server again ({e}); install it: pip install 'moto[server]'")
        });
        let started = loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                if s.local_addr().map(|a| a.port() != port).unwrap_or(false) {
                    break true;
                }
            }
            if child.try_wait().unwrap().is_some() {
                break false;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "moto_server did not listen on port {port} again within 60 s: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        if started {
            break child;
        }
        let _ = child.wait();
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "moto_server would not start on port {port} again: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    if !resp.starts_with("HTTP/1.1 200") && !resp.starts_with("HTTP/1.0 200") {
        let _ = child.kill();
        panic!("the restarted moto did not create bucket {bucket}: {resp}");
    }
    Restarted { child, _dir: dir }
}
