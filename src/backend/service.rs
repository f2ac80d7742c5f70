//! The only file that uses opendal (and tokio, which opendal runs on). It adapts opendal's
//! async operator to the synchronous `Backend` trait with a private tokio runtime, so no
//! async leaks into the layers above.
//!
//! Every operator is wrapped, innermost first, in a timeout (a dead server gives an error,
//! not a hang), a concurrency limit (bounded requests per region) and a retry with
//! exponential backoff and jitter. Retrying any operation is safe here: objects are
//! immutable and named by their content, so a repeated put writes the same bytes.
//! Listings are the exception: they are retried whole, here, not by opendal (see `list_op`).
//!
//! SFTP has three extras: uploads go through `tmp/` and a rename (its writes are not
//! atomic), a login check that reports ssh's own reason (`ssh_check.rs`), and a runtime of
//! its own so that no `ssh` process outlives the backend.

use super::location::{AzblobLocation, KnownHosts, S3Location, SftpLocation};
use super::ssh_check::SshCheck;
use super::{Backend, Bytes, Location, ObjectKind, ObjectName};
use crate::error::{Error, ErrorKind, Result};
use crate::hostfile;
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};
use opendal::{services, ErrorKind as OdKind, Operator};
use std::fmt;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::runtime::Runtime;

fn new_runtime(threads: usize) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("coffer-io")
        .enable_all()
        .build()
}

/// One runtime per process, shared by the operators that need no cleanup: created on
/// first use, never shut down.
fn shared_runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| new_runtime(2).expect("cannot start the I/O runtime"))
}

/// First pause before a retry; each next one doubles (with jitter, for opendal's retries).
const BACKOFF_MIN: Duration = Duration::from_millis(200);

/// How a service is reached: limits, and an optional overlay on the environment.
#[derive(Clone)]
pub struct ServiceOptions {
    /// Limit for one request without a body (stat, delete, a page of a listing).
    pub timeout: Duration,
    /// Limit for one transfer of data (reading a chunk, uploading an object). Generous,
    /// because a whole pack goes up in one request on object stores.
    pub io_timeout: Duration,
    /// Attempts per operation, the first included (1 = no retry).
    pub attempts: usize,
    /// Requests in flight at once to this service.
    pub concurrency: usize,
    /// Variables read before the process environment for credentials and settings
    /// (`AWS_*`, `AZURE_STORAGE_*`, `COFFER_SFTP_KEY`): lets a caller, or a test, point
    /// one backend at its own credentials without changing the process's environment.
    pub env: Vec<(String, String)>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(120),
            attempts: 3,
            concurrency: 16,
            env: Vec::new(),
        }
    }
}

/// Values in `env` may be secrets: only the names are shown.
impl fmt::Debug for ServiceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceOptions")
            .field("timeout", &self.timeout)
            .field("io_timeout", &self.io_timeout)
            .field("attempts", &self.attempts)
            .field("concurrency", &self.concurrency)
            .field(
                "env",
                &self.env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ServiceOptions {
    /// A variable from the overlay, else from the process environment; empty = unset.
    fn var(&self, name: &str) -> Option<String> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
    }
    fn first_var(&self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|n| self.var(n))
    }
}

pub struct OpendalBackend {
    /// With retries, for everything but listings.
    op: Operator,
    /// Without the retry layer: opendal retries a failed step of a recursive listing
    /// without its lost state and can then end the listing early, silently. `list`
    /// restarts a failed listing from the beginning instead.
    list_op: Operator,
    attempts: usize,
    description: String,
    ssh_check: Option<SshCheck>,
    /// Services whose writes are not atomic (SFTP) write to `tmp/` and rename into place,
    /// so an interrupted upload never leaves a partial object under its real name.
    write_via_tmp: bool,
    /// A local folder: opendal writes each object to `tmp/` and renames it into place.
    local: bool,
    /// SFTP runs on a runtime of its own, shut down on drop: each SSH connection is an
    /// `ssh` master process (ControlPersist=yes) that only exits when the task holding its
    /// session is dropped, and tasks on the shared runtime are never dropped before the
    /// process exits, which would leave the masters running forever.
    own_runtime: Option<Runtime>,
}

impl Drop for OpendalBackend {
    fn drop(&mut self) {
        if let Some(rt) = self.own_runtime.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Dropped inside some async context, where blocking would panic.
                rt.shutdown_background();
            } else {
                // Drops every task, so each session sends `ssh -O exit` to its master.
                rt.shutdown_timeout(Duration::from_secs(5));
            }
        }
    }
}

fn map_err(what: impl fmt::Display, e: opendal::Error) -> Error {
    let err = match e.kind() {
        OdKind::NotFound => Error::not_found(format!("{what}: not found")),
        OdKind::PermissionDenied => Error::backend(format!("{what}: {}", cause(&e)), false),
        _ => Error::backend(format!("{what}: {}", cause(&e)), e.is_temporary()),
    };
    err.with_detail(e.to_string())
}

/// Why a storage call failed, in a person's words, with what to do: the network's or the
/// operating system's reason found among the error's causes, else the storage library's
/// message without its request context (which `--verbose` shows).
fn cause(e: &opendal::Error) -> String {
    // Signing comes first: without credentials the request is never sent.
    let text = e.to_string();
    if text.contains("loading credential") || text.contains("no valid credential") {
        return "no credentials found for the storage service: for S3 set AWS_ACCESS_KEY_ID \
                and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), for Azure AZURE_STORAGE_ACCOUNT \
                and AZURE_STORAGE_KEY (or a connection string)"
            .into();
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return refused(),
                std::io::ErrorKind::TimedOut => return timed_out(),
                std::io::ErrorKind::PermissionDenied => return "permission denied".into(),
                _ => {}
            }
        }
        let text = s.to_string().to_ascii_lowercase();
        if text.contains("connection refused") {
            return refused();
        }
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return "the host name does not resolve: check the endpoint's spelling and DNS".into();
        }
        if text.contains("timed out") {
            return timed_out();
        }
        if text.contains("certificate") {
            return "the server's TLS certificate was not accepted: check the endpoint, or \
                    install its CA in the system's trust store"
                .into();
        }
        source = s.source();
    }
    match e.kind() {
        OdKind::PermissionDenied => "permission denied".into(),
        OdKind::RateLimited => {
            "the service asks to slow down (rate limited); try again later".into()
        }
        OdKind::ConfigInvalid => format!("invalid setting: {}", bare_message(e)),
        _ => bare_message(e),
    }
}

/// opendal's message without its context: its `Display` is `KIND at OPERATION, context: {
/// ... } => MESSAGE, source: SOURCE`, and only MESSAGE (with the source's own words) is for
/// people; opendal has no accessor for it.
fn bare_message(e: &opendal::Error) -> String {
    let text = e.to_string();
    let message = text.split_once(" => ").map_or(text.as_str(), |(_, m)| m);
    let message = message.replacen(", source: ", ": ", 1);
    if message.trim().is_empty() {
        format!("{}", e.kind())
    } else {
        message
    }
}

fn refused() -> String {
    "connection refused: is the service running, and is the endpoint's address and port right?"
        .into()
}

fn timed_out() -> String {
    "timed out: the service or the network is slow or unreachable; try again, or check the \
     endpoint"
        .into()
}

/// Errors from building an operator: a bad setting is the user's to fix.
fn config_err(what: &str, e: opendal::Error) -> Error {
    let kind = match e.kind() {
        OdKind::ConfigInvalid => ErrorKind::InvalidInput,
        OdKind::Unsupported => ErrorKind::Unsupported,
        _ => ErrorKind::Backend,
    };
    Error::new(kind, format!("{what}: {}", cause(&e))).with_detail(e.to_string())
}

/// opendal roots are absolute folders: `"a/b"` -> `"/a/b/"`.
fn root_of(prefix: &str) -> String {
    if prefix.is_empty() {
        "/".to_string()
    } else {
        format!("/{}/", prefix.trim_matches('/'))
    }
}

impl OpendalBackend {
    pub fn open(location: &Location) -> Result<Self> {
        Self::open_with(location, &ServiceOptions::default())
    }

    /// Open a repository's storage. A local folder is private: created 0700 here (before
    /// opendal would make it with the umask's mode), and its key files, which allow offline
    /// password guessing, are narrowed to 0600 when found wider.
    pub fn open_with(location: &Location, opts: &ServiceOptions) -> Result<Self> {
        if let Location::Local(path) = location {
            let root = std::path::absolute(path).map_err(|e| Error::io(path.display(), e))?;
            hostfile::create_dir(&root).map_err(|e| Error::io(root.display(), e))?;
            narrow_key_files(&root);
        }
        Self::connect(location, opts)
    }

    /// Reach the service at `location`, for a repository or (`ObjectStore`) for the user's
    /// own objects, whose folders and modes are theirs and left alone.
    fn connect(location: &Location, opts: &ServiceOptions) -> Result<Self> {
        let description = location.to_string();
        let mut ssh_check = None;
        let op = match location {
            Location::Local(path) => {
                let root = std::path::absolute(path).map_err(|e| Error::io(path.display(), e))?;
                let root_str = root.to_string_lossy().into_owned();
                // Writes go to a temporary file first and are renamed into place, so a
                // process killed mid-write never leaves a partial object under a real name.
                let tmp = root.join("tmp");
                let builder = services::Fs::default()
                    .root(&root_str)
                    .atomic_write_dir(&tmp.to_string_lossy());
                Operator::new(builder)
                    .map_err(|e| config_err(&root_str, e))?
                    .finish()
            }
            Location::Memory => Operator::new(services::Memory::default())
                .map_err(|e| config_err("memory:", e))?
                .finish(),
            Location::S3(s3) => s3_operator(s3, opts, &description)?,
            Location::Azblob(az) => azblob_operator(az, opts, &description)?,
            Location::Sftp(sftp) => {
                let (op, check) = sftp_operator(sftp, opts, &description)?;
                ssh_check = Some(check);
                op
            }
        };
        let list_op = op
            .layer(
                TimeoutLayer::new()
                    .with_timeout(opts.timeout)
                    .with_io_timeout(opts.io_timeout),
            )
            .layer(ConcurrentLimitLayer::new(opts.concurrency.max(1)));
        let op = list_op.clone().layer(
            RetryLayer::new()
                .with_jitter()
                .with_factor(2.0)
                .with_min_delay(BACKOFF_MIN)
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(opts.attempts.saturating_sub(1)),
        );
        let own_runtime = match location {
            Location::Sftp(_) => Some(new_runtime(1).map_err(|e| Error::io("I/O runtime", e))?),
            _ => None,
        };
        Ok(OpendalBackend {
            op,
            list_op,
            attempts: opts.attempts.max(1),
            description,
            ssh_check,
            write_via_tmp: matches!(location, Location::Sftp(_)),
            local: matches!(location, Location::Local(_)),
            own_runtime,
        })
    }
}

/// Best effort: a key file that cannot be narrowed (another user's, say) still opens.
fn narrow_key_files(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root.join(ObjectKind::Key.dir())) else {
        return;
    };
    for e in entries.flatten() {
        let _ = hostfile::narrow(&e.path(), hostfile::PRIVATE_FILE);
    }
}

/// Credentials: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or what
/// the AWS SDKs read (profiles, web identity, instance metadata unless
/// `AWS_EC2_METADATA_DISABLED=true`). Region: `?region=`, `AWS_REGION`,
/// `AWS_DEFAULT_REGION`, else us-east-1 (what S3-compatible services expect).
fn s3_operator(s3: &S3Location, opts: &ServiceOptions, what: &str) -> Result<Operator> {
    let region = s3
        .region
        .clone()
        .or_else(|| opts.first_var(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
        .unwrap_or_else(|| "us-east-1".to_string());
    // opendal addresses buckets path-style (`endpoint/bucket/key`) unless virtual-host style
    // is enabled, which is what moto, MinIO and most S3-compatible servers need.
    let mut b = services::S3::default()
        .bucket(&s3.bucket)
        .root(&root_of(&s3.prefix))
        .region(&region);
    if let Some(endpoint) = s3.endpoint.clone().or_else(|| opts.var("AWS_ENDPOINT_URL")) {
        b = b.endpoint(&endpoint);
    }
    if let Some(v) = opts.var("AWS_ACCESS_KEY_ID") {
        b = b.access_key_id(&v);
    }
    if let Some(v) = opts.var("AWS_SECRET_ACCESS_KEY") {
        b = b.secret_access_key(&v);
    }
    if let Some(v) = opts.var("AWS_SESSION_TOKEN") {
        b = b.session_token(&v);
    }
    if opts
        .var("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        b = b.disable_ec2_metadata();
    }
    Ok(Operator::new(b).map_err(|e| config_err(what, e))?.finish())
}

/// Credentials: `AZURE_STORAGE_CONNECTION_STRING`, or `AZURE_STORAGE_ACCOUNT` with
/// `AZURE_STORAGE_KEY` (or `AZURE_STORAGE_SAS_TOKEN`). The endpoint defaults to the
/// account's `https://ACCOUNT.blob.core.windows.net`.
fn azblob_operator(az: &AzblobLocation, opts: &ServiceOptions, what: &str) -> Result<Operator> {
    let account = opts.first_var(&["AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_ACCOUNT_NAME"]);
    let mut b = match opts.var("AZURE_STORAGE_CONNECTION_STRING") {
        // The string holds the account key: its content never goes into a message.
        Some(cs) => services::Azblob::from_connection_string(&cs).map_err(|_| {
            Error::invalid(format!(
                "{what}: AZURE_STORAGE_CONNECTION_STRING is not a valid connection string"
            ))
        })?,
        None => services::Azblob::default(),
    };
    let endpoint = az.endpoint.clone().or_else(|| {
        account
            .as_ref()
            .map(|a| format!("https://{a}.blob.core.windows.net"))
    });
    if let Some(e) = &endpoint {
        b = b.endpoint(e);
    } else if opts.var("AZURE_STORAGE_CONNECTION_STRING").is_none() {
        return Err(Error::invalid(format!(
            "{what}: no endpoint: add ?endpoint=URL or set AZURE_STORAGE_ACCOUNT \
             (or AZURE_STORAGE_CONNECTION_STRING)"
        )));
    }
    b = b.container(&az.container).root(&root_of(&az.prefix));
    if let Some(a) = &account {
        b = b.account_name(a);
    }
    if let Some(k) = opts.first_var(&["AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY"]) {
        b = b.account_key(&k);
    }
    if let Some(s) = opts.var("AZURE_STORAGE_SAS_TOKEN") {
        b = b.sas_token(&s);
    }
    Ok(Operator::new(b).map_err(|e| config_err(what, e))?.finish())
}

/// opendal's SFTP service drives the system's `ssh` binary (through the openssh crate,
/// with BatchMode, so it never prompts). Keys: `?key=`, `COFFER_SFTP_KEY`, else ssh's own
/// (`~/.ssh/id_*`, ssh-agent, `~/.ssh/config`).
fn sftp_operator(
    s: &SftpLocation,
    opts: &ServiceOptions,
    what: &str,
) -> Result<(Operator, SshCheck)> {
    if !on_path("ssh") {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "{what}: sftp:// needs the OpenSSH client `ssh` on PATH \
                 (Debian: apt-get install openssh-client)"
            ),
        ));
    }
    // The openssh crate reads the port from an `ssh://host:port` endpoint (taking the text
    // after the last `:`), so an IPv6 host always gets its port spelled out.
    let endpoint = match (s.port, s.host.contains(':')) {
        (Some(p), _) => format!("ssh://{}:{p}", s.host),
        (None, true) => format!("ssh://{}:22", s.host),
        (None, false) => format!("ssh://{}", s.host),
    };
    let mut b = services::Sftp::default()
        .endpoint(&endpoint)
        .root(&s.path)
        .known_hosts_strategy(match s.known_hosts {
            KnownHosts::Strict => "strict",
            KnownHosts::Add => "add",
            KnownHosts::Accept => "accept",
        });
    if let Some(u) = &s.user {
        b = b.user(u);
    }
    let key = s
        .key
        .as_ref()
        .map(|k| k.to_string_lossy().into_owned())
        .or_else(|| opts.var("COFFER_SFTP_KEY"));
    if let Some(k) = &key {
        if !std::path::Path::new(k).is_file() {
            return Err(Error::invalid(format!(
                "{what}: SSH key file {k} does not exist"
            )));
        }
        b = b.key(k);
    }
    let check = SshCheck::new(s, key.as_deref(), opts.timeout);
    Ok((
        Operator::new(b).map_err(|e| config_err(what, e))?.finish(),
        check,
    ))
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// A name for an upload in progress: unique per process and call, never parsed as an object.
fn tmp_name(name: &ObjectName) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "tmp/{}.{}.{}",
        hex::encode(name.hash),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The folder of unfinished writes (format-spec §3), relative to the repository root.
const SCRATCH: &str = "tmp/";

/// A file below `tmp/`, named as opendal or `tmp_name` name them: never an object, never a
/// path that leads out of the folder.
fn is_scratch_path(path: &str) -> bool {
    path.strip_prefix(SCRATCH).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
    })
}

/// Did the storage refuse a write for want of space (a full disk, a quota)?
fn out_of_space(e: &opendal::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) {
                return true;
            }
        }
        source = s.source();
    }
    false
}

impl OpendalBackend {
    /// Write one object into a local folder. opendal writes it to `tmp/` and renames it
    /// into place; a write that fails leaves its temporary file behind, which on a full disk
    /// holds the very space the next attempt needs, so it is removed here. No retry either:
    /// a local write that failed does not get better by itself, and opendal's retry sends
    /// the whole buffer again after a partial write, into the same file.
    fn put_local(&self, name: &ObjectName, path: &str, bytes: Bytes) -> Result<()> {
        self.ready()?;
        let written = self.runtime().block_on(async {
            let mut w = self.list_op.writer(path).await?;
            let result = match w.write(bytes).await {
                Ok(()) => w.close().await.map(|_| ()),
                Err(e) => Err(e),
            };
            if result.is_err() {
                // Best effort: a leftover is removed by `coffer prune` or `coffer repair`.
                let _ = w.abort().await;
            }
            result
        });
        written.map_err(|e| {
            if out_of_space(&e) {
                Error::backend(
                    format!(
                        "region {} is out of space; free space, or run `coffer prune` to remove what failed writes left",
                        self.description
                    ),
                    false,
                )
            } else {
                map_err(format!("{}: {name}", self.description), e)
            }
        })
    }

    fn runtime(&self) -> &Runtime {
        self.own_runtime
            .as_ref()
            .unwrap_or_else(|| shared_runtime())
    }
    /// For SFTP: a login that works, checked once (see `ssh_check.rs`).
    fn ready(&self) -> Result<()> {
        match &self.ssh_check {
            Some(c) => c.ensure(&self.description),
            None => Ok(()),
        }
    }
    /// Run one operation to completion; errors name the service and the object.
    fn run<T>(
        &self,
        what: impl fmt::Display,
        f: impl std::future::Future<Output = opendal::Result<T>>,
    ) -> Result<T> {
        self.ready()?;
        self.runtime()
            .block_on(f)
            .map_err(|e| map_err(format!("{}: {what}", self.description), e))
    }

    /// Read `len` bytes at `offset` into one Vec of the right size, piece by piece as
    /// opendal delivers them: collecting opendal's pieces first and joining them would hold
    /// every pack twice at the peak. Every read names its range, so none is unbounded.
    fn read_exact(&self, name: &ObjectName, offset: u64, len: u64) -> Result<Vec<u8>> {
        let path = name.path();
        self.run(name, async {
            let reader = self.op.reader(&path).await?;
            let mut out = Vec::with_capacity(len as usize);
            reader.read_into(&mut out, offset..offset + len).await?;
            Ok(out)
        })
    }
}

impl Backend for OpendalBackend {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn get_limited(&self, name: &ObjectName, max_len: u64) -> Result<Vec<u8>> {
        // The size first, then a read of exactly that range: opendal would ask for the size
        // anyway to read "to the end", and a bounded range never reads more than was
        // allowed, even from an object that grows between the two requests.
        let Some(size) = self.stat(name)? else {
            return Err(Error::not_found(format!(
                "{}: {name}: not found",
                self.description
            )));
        };
        if size > max_len {
            return Err(super::too_large(&self.description, name, size, max_len));
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        self.get_range(name, 0, size)
    }

    fn get_range(&self, name: &ObjectName, offset: u64, len: u64) -> Result<Vec<u8>> {
        let buf = self.read_exact(name, offset, len)?;
        if buf.len() as u64 != len {
            return Err(Error::corrupt(format!(
                "{}: {name}: asked for {len} bytes at {offset}, got {} (object truncated?)",
                self.description,
                buf.len()
            )));
        }
        Ok(buf)
    }

    fn put(&self, name: &ObjectName, bytes: Bytes) -> Result<()> {
        let path = name.path();
        if self.local {
            return self.put_local(name, &path, bytes);
        }
        if !self.write_via_tmp {
            return self.run(name, self.op.write(&path, bytes)).map(|_| ());
        }
        let tmp = tmp_name(name);
        let result = self.run(name, async {
            self.op.write(&tmp, bytes).await?;
            // OpenSSH's sftp-server renames with the posix-rename extension, which
            // replaces an existing (possibly bad) copy atomically.
            self.op.rename(&tmp, &path).await
        });
        if result.is_err() {
            // Best effort: a leftover in tmp/ is never listed as an object.
            let _ = self.run(&tmp, self.op.delete(&tmp));
        }
        result
    }

    fn delete(&self, name: &ObjectName) -> Result<()> {
        self.run(name, self.op.delete(&name.path()))
    }

    fn scratch(&self) -> Result<Vec<(String, u64)>> {
        if !self.local && !self.write_via_tmp {
            return Ok(vec![]);
        }
        self.ready()?;
        let listed = self.runtime().block_on(
            self.list_op
                .list_with(SCRATCH)
                .recursive(true)
                .into_future(),
        );
        let entries = match listed {
            Ok(e) => e,
            Err(e) if e.kind() == OdKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(map_err(format!("{}: {SCRATCH}", self.description), e)),
        };
        let mut out = Vec::new();
        for entry in entries.iter().filter(|e| e.metadata().mode().is_file()) {
            let path = entry.path();
            // Listings of a folder carry no sizes.
            match self.runtime().block_on(self.op.stat(path)) {
                Ok(m) => out.push((path.to_string(), m.content_length())),
                // Renamed into place or removed since the listing: the write finished.
                Err(e) if e.kind() == OdKind::NotFound => {}
                Err(e) => return Err(map_err(format!("{}: {path}", self.description), e)),
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete_scratch(&self, path: &str) -> Result<()> {
        if !is_scratch_path(path) {
            return Err(Error::invalid(format!("{path} is not a temporary file")));
        }
        self.run(path, self.op.delete(path))
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>> {
        self.ready()?;
        let dir = format!("{}/", kind.dir());
        let mut delay = BACKOFF_MIN;
        let mut attempt = 1;
        let entries = loop {
            let listed = self
                .runtime()
                .block_on(self.list_op.list_with(&dir).recursive(true).into_future());
            match listed {
                Ok(e) => break e,
                Err(e) if e.kind() == OdKind::NotFound => return Ok(vec![]),
                Err(e) if e.is_temporary() && attempt < self.attempts => {
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(map_err(format!("{}: {dir}", self.description), e)),
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let Some(name) = ObjectName::parse(entry.path()) else {
                continue;
            };
            if name.kind != kind {
                continue;
            }
            let meta = entry.metadata();
            // Some services leave sizes out of listings; ask for them then.
            let size = if meta.mode().is_file() && meta.content_length() > 0 {
                meta.content_length()
            } else {
                match self.stat(&name)? {
                    Some(s) => s,
                    None => continue,
                }
            };
            out.push((name, size));
        }
        out.sort();
        Ok(out)
    }

    fn stat(&self, name: &ObjectName) -> Result<Option<u64>> {
        self.ready()?;
        match self.runtime().block_on(self.op.stat(&name.path())) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == OdKind::NotFound => Ok(None),
            Err(e) => Err(map_err(format!("{}: {name}", self.description), e)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Buckets as a backup source and restore target (`crate::bucket`): any object, any key,
// with its metadata. Unlike `Backend` (immutable objects coffer names itself), keys are
// the user's, so they are listed, read and written as given, streaming.

/// Bytes fetched per ranged GET while an object is read: bounds the memory of one reader.
const OBJECT_READ_PIECE: u64 = 4 * 1024 * 1024;
/// Part size of uploads: S3 wants parts of at least 5 MiB, except the last.
const OBJECT_WRITE_PART: usize = 8 * 1024 * 1024;

/// One object as a listing or a HEAD request reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectInfo {
    /// The key below the location's prefix, exactly as the service holds it.
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    /// Nanoseconds since the epoch.
    pub last_modified_ns: Option<i64>,
    /// Only from `stat` (listings do not carry it).
    pub content_type: Option<String>,
    /// `x-amz-meta-*` and the like, names as the service returns them; only from `stat`.
    pub user_metadata: std::collections::BTreeMap<String, String>,
}

impl ObjectInfo {
    fn from_metadata(key: &str, m: &opendal::Metadata) -> Self {
        ObjectInfo {
            key: key.to_string(),
            size: m.content_length(),
            etag: m.etag().map(str::to_string),
            last_modified_ns: m
                .last_modified()
                .and_then(|t| i64::try_from(jiff::Timestamp::from(t).as_nanosecond()).ok()),
            content_type: m.content_type().map(str::to_string),
            user_metadata: m
                .user_metadata()
                .map(|u| u.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }
    }
}

/// The objects below a location's prefix (a bucket, a folder of one, a local folder).
pub struct ObjectStore {
    inner: OpendalBackend,
    /// Object stores hold `dir/` marker objects, which their listings show; a file
    /// system's directories are not objects.
    markers_are_objects: bool,
}

impl ObjectStore {
    pub fn open(location: &Location, opts: &ServiceOptions) -> Result<Self> {
        Ok(ObjectStore {
            inner: OpendalBackend::connect(location, opts)?,
            markers_are_objects: matches!(location, Location::S3(_) | Location::Azblob(_)),
        })
    }

    pub fn describe(&self) -> String {
        self.inner.description.clone()
    }

    /// Can this key be read and written exactly? opendal normalises paths (drops a
    /// leading `/`, empty segments and surrounding white space) and HTTP clients resolve
    /// `.` and `..` segments, so such keys would reach another object.
    pub fn is_addressable(key: &str) -> bool {
        !key.is_empty()
            && key.trim() == key
            && !key.starts_with('/')
            && !key.contains("//")
            && !key
                .trim_end_matches('/')
                .split('/')
                .any(|s| s == "." || s == "..")
    }

    /// Every object below the prefix, sorted by key, with sizes, ETags and times (no content
    /// types or user metadata: those need `stat`). A failed listing is restarted whole,
    /// as for `Backend::list`.
    pub fn list(&self) -> Result<Vec<ObjectInfo>> {
        let b = &self.inner;
        b.ready()?;
        let mut delay = BACKOFF_MIN;
        let mut attempt = 1;
        let entries = loop {
            let listed = b
                .runtime()
                .block_on(b.list_op.list_with("").recursive(true).into_future());
            match listed {
                Ok(e) => break e,
                // An empty prefix lists fine; a missing bucket is an error (a missing
                // folder is an empty one: writing creates it).
                Err(e) if e.kind() == OdKind::NotFound && !self.markers_are_objects => {
                    return Ok(vec![])
                }
                Err(e) if e.kind() == OdKind::NotFound => {
                    return Err(Error::not_found(format!(
                        "{}: the bucket (or container) does not exist",
                        b.description
                    )))
                }
                Err(e) if e.is_temporary() && attempt < b.attempts => {
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                Err(e) => return Err(map_err(format!("{}: listing", b.description), e)),
            }
        };
        let mut out = Vec::with_capacity(entries.len());
        for e in &entries {
            let (path, meta) = (e.path(), e.metadata());
            if path.is_empty() || path == "/" {
                continue;
            }
            if self.markers_are_objects {
                out.push(ObjectInfo::from_metadata(path, meta));
            } else if meta.mode().is_file() {
                // File systems leave sizes and times out of listings.
                match self.stat(path)? {
                    Some(info) => out.push(info),
                    None => continue,
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        Ok(out)
    }

    /// One object's metadata with its content type and user metadata (a HEAD request).
    pub fn stat(&self, key: &str) -> Result<Option<ObjectInfo>> {
        let b = &self.inner;
        b.ready()?;
        match b.runtime().block_on(b.op.stat(key)) {
            Ok(m) => Ok(Some(ObjectInfo::from_metadata(key, &m))),
            Err(e) if e.kind() == OdKind::NotFound => Ok(None),
            Err(e) => Err(map_err(format!("{}: {key}", b.description), e)),
        }
    }

    /// A reader of `size` bytes of the object, fetched piece by piece. With an ETag (where
    /// the service supports conditions), every piece must come from that version: an object
    /// replaced while it is read fails with [`ObjectReader::changed`] set, rather than mixing
    /// two versions.
    pub fn reader(&self, key: &str, size: u64, etag: Option<&str>) -> Result<ObjectReader<'_>> {
        let b = &self.inner;
        b.ready()?;
        let cond = etag.filter(|_| b.op.info().full_capability().read_with_if_match);
        let reader = b.run(key, async {
            let mut r = b.op.reader_with(key);
            if let Some(tag) = cond {
                r = r.if_match(tag);
            }
            r.await
        })?;
        Ok(ObjectReader {
            store: self,
            key: key.to_string(),
            reader,
            size,
            pos: 0,
            piece: Vec::new(),
            piece_pos: 0,
            changed: false,
            vanished: false,
        })
    }

    /// A writer of a new object (replacing one of the same key), uploaded in parts as it is
    /// written; nothing is visible until [`ObjectWriter::finish`]. Content type and user
    /// metadata are left out where the service cannot store them (a local folder).
    pub fn writer(
        &self,
        key: &str,
        content_type: Option<&str>,
        user_metadata: &std::collections::BTreeMap<String, String>,
    ) -> Result<ObjectWriter<'_>> {
        let b = &self.inner;
        b.ready()?;
        let cap = b.op.info().full_capability();
        let writer = b.run(key, async {
            let mut w = b.op.writer_with(key).chunk(OBJECT_WRITE_PART);
            if let Some(ct) = content_type.filter(|_| cap.write_with_content_type) {
                w = w.content_type(ct);
            }
            if cap.write_with_user_metadata && !user_metadata.is_empty() {
                w = w.user_metadata(user_metadata.clone());
            }
            w.await
        })?;
        Ok(ObjectWriter {
            store: self,
            key: key.to_string(),
            writer: Some(writer),
        })
    }

    /// Create a `dir/` marker object (empty; services give it no content type of ours).
    pub fn create_marker(&self, key: &str) -> Result<()> {
        let b = &self.inner;
        b.run(key, b.op.create_dir(key))
    }

    /// Delete one object (an object already gone is not an error). Only scratch places are
    /// emptied this way: a source bucket is never written or deleted from.
    pub fn delete(&self, key: &str) -> Result<()> {
        let b = &self.inner;
        b.run(key, b.op.delete(key))
    }
}

/// Streams one object; see [`ObjectStore::reader`].
pub struct ObjectReader<'a> {
    store: &'a ObjectStore,
    key: String,
    reader: opendal::Reader,
    size: u64,
    pos: u64,
    piece: Vec<u8>,
    piece_pos: usize,
    changed: bool,
    vanished: bool,
}

impl ObjectReader<'_> {
    /// The object was replaced while it was read (its ETag no longer matches).
    pub fn changed(&self) -> bool {
        self.changed
    }
    /// The object was deleted before or while it was read.
    pub fn vanished(&self) -> bool {
        self.vanished
    }

    fn fetch(&mut self) -> std::io::Result<()> {
        let b = &self.store.inner;
        let end = (self.pos + OBJECT_READ_PIECE).min(self.size);
        let got = b
            .runtime()
            .block_on(self.reader.read(self.pos..end))
            .map_err(|e| {
                match e.kind() {
                    OdKind::ConditionNotMatch => self.changed = true,
                    OdKind::NotFound => self.vanished = true,
                    _ => {}
                }
                let err = map_err(format!("{}: {}", b.description, self.key), e);
                std::io::Error::other(err.to_string())
            })?;
        self.piece = got.to_vec();
        self.piece_pos = 0;
        if self.piece.len() as u64 != end - self.pos {
            // Shorter than listed: the object was replaced by a smaller one (on a service
            // without conditional reads).
            self.changed = true;
            return Err(std::io::Error::other(format!(
                "{}: {}: object shorter than listed (changed while it was read)",
                b.description, self.key
            )));
        }
        self.pos = end;
        Ok(())
    }
}

impl std::io::Read for ObjectReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.piece_pos == self.piece.len() {
            if self.pos >= self.size {
                return Ok(0);
            }
            self.fetch()?;
        }
        let n = buf.len().min(self.piece.len() - self.piece_pos);
        buf[..n].copy_from_slice(&self.piece[self.piece_pos..self.piece_pos + n]);
        self.piece_pos += n;
        Ok(n)
    }
}

/// Uploads one object; see [`ObjectStore::writer`]. Dropped without `finish`, the upload
/// is aborted and no object appears.
pub struct ObjectWriter<'a> {
    store: &'a ObjectStore,
    key: String,
    writer: Option<opendal::Writer>,
}

impl ObjectWriter<'_> {
    /// Complete the upload: the object is visible from now on.
    pub fn finish(mut self) -> Result<()> {
        let b = &self.store.inner;
        let mut w = self.writer.take().expect("writer present until finish");
        b.run(&self.key, w.close()).map(|_| ())
    }
}

impl std::io::Write for ObjectWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let b = &self.store.inner;
        let w = self.writer.as_mut().expect("writer present until finish");
        b.runtime().block_on(w.write(buf.to_vec())).map_err(|e| {
            let err = map_err(format!("{}: {}", b.description, self.key), e);
            std::io::Error::other(err.to_string())
        })?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ObjectWriter<'_> {
    fn drop(&mut self) {
        if let Some(mut w) = self.writer.take() {
            // Best effort: an unfinished multipart upload is otherwise left on the service.
            let _ = self.store.inner.runtime().block_on(w.abort());
        }
    }
}
