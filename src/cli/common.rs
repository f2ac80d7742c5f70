//! Helpers shared by commands: locating and opening the repository, passwords, Ctrl-C,
//! host and user names, JSON output.

use super::Global;
use coffer::backend::regions::Regions;
use coffer::backend::throttle::{Throttled, UploadLimit};
use coffer::backend::unopened::Unopened;
use coffer::backend::{self, Backend, Location};
use coffer::clock::{Clock, OffsetClock, SystemClock};
use coffer::crypto::KdfLimit;
use coffer::repo::{default_cache_dir, OpenOptions, Repository};
use coffer::{Error, ErrorKind, Result};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use zeroize::Zeroizing;

/// The first error writing command output to stdout, if any.
static STDOUT_FAILED: OnceLock<std::io::ErrorKind> = OnceLock::new();

/// One line of command output (the `println!` of `cli/`). After a write fails, the rest
/// of the output is dropped and the error kept for `stdout_failed`.
pub fn print_out(args: std::fmt::Arguments) {
    use std::io::Write;
    if STDOUT_FAILED.get().is_some() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        let _ = STDOUT_FAILED.set(e.kind());
    }
}

pub fn stdout_failed() -> Option<std::io::ErrorKind> {
    STDOUT_FAILED.get().copied()
}

/// One JSON document on stdout (with the repository it used: see `announce.rs`).
pub fn print_json(v: &impl serde::Serialize) {
    println!(
        "{}",
        super::announce::json_text(v).expect("JSON of plain data")
    );
}

/// The repository's regions from `--repo` / `COFFER_REPOSITORY`, each `[NAME=]URL`, in read
/// order. A region without a name is called after its place: region1, region2...
pub fn region_locations(g: &Global) -> Result<Vec<(String, Location)>> {
    let specs = region_specs(g);
    if specs.is_empty() {
        return Err(Error::invalid(
            "no repository given: use --repo [NAME=]URL (once per region) or set COFFER_REPOSITORY",
        ));
    }
    let mut out: Vec<(String, Location)> = Vec::new();
    for (i, (name, url)) in specs.into_iter().enumerate() {
        let name = name.map_or_else(|| format!("region{}", i + 1), str::to_string);
        if out.iter().any(|(n, _)| *n == name) {
            return Err(Error::invalid(format!("region name {name} is given twice")));
        }
        let loc = Location::parse(url).map_err(|e| e.context(format!("region {name}")))?;
        out.push((name, loc));
    }
    Ok(out)
}

/// The regions as given: the name if the spec has one, and the URL.
pub fn region_specs(g: &Global) -> Vec<(Option<&str>, &str)> {
    g.repo
        .iter()
        .map(|r| r.trim())
        .filter(|r| !r.is_empty())
        // `NAME=URL`: a name is a plain word before the first '='.
        .map(|spec| match spec.split_once('=') {
            Some((name, rest))
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
            {
                (Some(name), rest)
            }
            _ => (None, spec),
        })
        .collect()
}

/// The repository's storage: one region as it is, several behind the replicating wrapper.
pub struct Store {
    pub backend: Arc<dyn Backend>,
    /// Set when there are several regions.
    pub regions: Option<Arc<Regions>>,
}

impl Store {
    /// Each region's name and backend (one entry for a single region).
    pub fn each_region(&self) -> Vec<(String, Arc<dyn Backend>)> {
        match &self.regions {
            Some(r) => r.regions().to_vec(),
            None => vec![("region1".to_string(), self.backend.clone())],
        }
    }

    /// Regions that missed writes in this run, with the first error.
    pub fn behind(&self) -> Vec<(String, String)> {
        self.regions
            .as_ref()
            .map(|r| r.behind())
            .unwrap_or_default()
    }
}

/// The upload rate every region's writes are paced to (`--limit-upload`, or a job's
/// `upload_limit` while it runs); unlimited until set.
pub fn upload_limit() -> Arc<UploadLimit> {
    static LIMIT: std::sync::OnceLock<Arc<UploadLimit>> = std::sync::OnceLock::new();
    LIMIT.get_or_init(Default::default).clone()
}

/// A region's backend, with its writes paced to the upload limit (and the crash-test hook
/// applied when it is set, `crash_hook.rs`).
fn open_region(loc: &Location) -> Result<Arc<dyn Backend>> {
    Ok(super::crash_hook::wrap(Arc::new(Throttled::new(
        backend::open(loc)?,
        upload_limit(),
    ))))
}

pub fn store(g: &Global) -> Result<Store> {
    upload_limit().set(g.limit_upload);
    let locations = region_locations(g)?;
    super::announce::announce(g, &locations);
    if let [(_, loc)] = locations.as_slice() {
        if g.min_regions > 1 {
            return Err(Error::invalid(
                "--min-regions is larger than the number of regions given",
            ));
        }
        return Ok(Store {
            backend: open_region(loc)?,
            regions: None,
        });
    }
    let mut opened = Vec::with_capacity(locations.len());
    for (name, loc) in &locations {
        let b = match open_region(loc) {
            Ok(b) => b,
            // A region that cannot be opened now (a folder unmounted or unreadable) is a
            // region that is down: the others take the writes (`--min-regions`), and
            // commands that need every region (prune, repair) refuse as they would anyway.
            Err(e) if !matches!(e.kind(), ErrorKind::InvalidInput) => {
                super::term::warn(&format!("region {name} cannot be opened: {e}"));
                Arc::new(Unopened::new(loc.to_string(), &e)) as Arc<dyn Backend>
            }
            Err(e) => return Err(e.context(format!("region {name}"))),
        };
        opened.push((name.clone(), b));
    }
    let regions = Arc::new(
        Regions::new(opened, g.min_regions)?.with_warning(Arc::new(|m: &str| super::term::warn(m))),
    );
    Ok(Store {
        backend: regions.clone(),
        regions: Some(regions),
    })
}

/// The repository's storage as one backend (all regions behind it).
pub fn backend(g: &Global) -> Result<Arc<dyn Backend>> {
    Ok(store(g)?.backend)
}

/// The clock every command reads "now" from: the system clock, or for tests
/// `COFFER_TEST_NOW` (RFC 3339), from which time then runs on normally.
pub fn clock() -> Arc<dyn Clock> {
    let Some(start) = std::env::var_os("COFFER_TEST_NOW") else {
        return Arc::new(SystemClock);
    };
    match start.to_string_lossy().parse::<jiff::Timestamp>() {
        Ok(t) => Arc::new(OffsetClock::starting_at(t.as_nanosecond() as i64)),
        Err(e) => {
            eprintln!("coffer: warning: COFFER_TEST_NOW is not an RFC 3339 time ({e}); using the system clock");
            Arc::new(SystemClock)
        }
    }
}

pub fn open_options(g: &Global) -> OpenOptions {
    OpenOptions {
        cache_dir: if g.no_cache {
            None
        } else {
            g.cache_dir.clone().or_else(default_cache_dir)
        },
        clock: clock(),
        host: hostname(),
        user: username(),
        warn: Arc::new(|m: &str| super::term::warn(m)),
        kdf_limit: KdfLimit {
            memory_kib: g.max_kdf_memory.unwrap_or(KdfLimit::DEFAULT.memory_kib),
            iterations: g.max_kdf_passes.unwrap_or(KdfLimit::DEFAULT.iterations),
        },
    }
}

/// Open the repository with the user's password.
pub fn open(g: &Global) -> Result<Repository> {
    Ok(open_store(g)?.0)
}

/// Open the repository, keeping hold of its regions (for commands that report on them).
pub fn open_store(g: &Global) -> Result<(Repository, Store)> {
    let store = store(g)?;
    let password = password(g, "Repository password: ")?;
    let repo = Repository::open(store.backend.clone(), password.as_bytes(), open_options(g))?;
    Ok((repo, store))
}

/// A password as given, refused when empty: an empty password protects nothing, and an
/// empty variable or file is more likely a mistake than a choice. `source` names where it
/// came from, for the message.
fn not_empty(password: Zeroizing<String>, source: &str) -> Result<Zeroizing<String>> {
    if password.is_empty() {
        return Err(Error::invalid(format!(
            "the password from {source} is empty; an empty password is not allowed"
        )));
    }
    Ok(password)
}

fn read_password_file(path: &std::path::Path) -> Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("password file {}", path.display()), e))?,
    );
    let first = Zeroizing::new(text.lines().next().unwrap_or("").to_string());
    not_empty(
        first,
        &format!("password file {} (its first line)", path.display()),
    )
}

/// The variables that hold passwords. [`take_password_variables`] moves them out of the
/// environment at start.
const PASSWORD_VARIABLES: [&str; 2] = ["COFFER_PASSWORD", "COFFER_NEW_PASSWORD"];

static PASSWORDS_FROM_ENV: OnceLock<Vec<(&'static str, Zeroizing<String>)>> = OnceLock::new();

/// Read the password variables once and remove them from the process environment, so that
/// no child process inherits them: not the PostgreSQL tools, and not the `ssh` that opendal
/// starts for an SFTP region with the environment it finds (security review M1, L8). Call
/// it first thing in `main`, before any other thread exists.
pub fn take_password_variables() {
    PASSWORDS_FROM_ENV.get_or_init(|| {
        let mut found = Vec::new();
        for name in PASSWORD_VARIABLES {
            if let Some(value) = std::env::var_os(name) {
                found.push((name, Zeroizing::new(value.to_string_lossy().into_owned())));
                std::env::remove_var(name);
            }
        }
        found
    });
}

/// Was `COFFER_PASSWORD` set when coffer started? (`take_password_variables` has removed
/// it from the environment since, so `std::env::var` no longer says.)
pub fn password_in_environment() -> bool {
    PASSWORDS_FROM_ENV
        .get_or_init(Vec::new)
        .iter()
        .any(|(n, _)| *n == "COFFER_PASSWORD")
}

fn password_variable(name: &str) -> Result<Option<Zeroizing<String>>> {
    let taken = PASSWORDS_FROM_ENV.get_or_init(Vec::new);
    match taken.iter().find(|(n, _)| *n == name) {
        Some((_, p)) => not_empty(p.clone(), name).map(Some),
        None => Ok(None),
    }
}

/// The first line a password command (`--password-command`, restic's option: a secret
/// manager's client, say) prints. It runs with `sh -c`, with a clean environment (no coffer
/// secret reaches it), the terminal's stdin and stderr, and must exit 0.
fn run_password_command(command: &str) -> Result<Zeroizing<String>> {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(command);
    coffer::child_env::restrict(&mut cmd, |_| false);
    cmd.stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit());
    let out = cmd
        .output()
        .map_err(|e| Error::io("running the --password-command", e))?;
    let text = Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::WrongPassword,
            format!(
                "the --password-command failed ({}); no password was read",
                out.status
            ),
        ));
    }
    let first = Zeroizing::new(text.lines().next().unwrap_or("").to_string());
    not_empty(first, "the --password-command (its first line of output)")
}

/// The password: --password-file / COFFER_PASSWORD_FILE, then --password-command /
/// COFFER_PASSWORD_COMMAND, then COFFER_PASSWORD, then a no-echo prompt on the terminal.
/// None of them may be empty.
pub fn password(g: &Global, prompt: &str) -> Result<Zeroizing<String>> {
    if let Some(f) = &g.password_file {
        return read_password_file(f);
    }
    if let Some(c) = &g.password_command {
        return run_password_command(c);
    }
    if let Some(p) = password_variable("COFFER_PASSWORD")? {
        return Ok(p);
    }
    not_empty(prompt_password(prompt)?, "the prompt")
}

fn prompt_password(prompt: &str) -> Result<Zeroizing<String>> {
    if !std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
        return Err(Error::new(
            ErrorKind::WrongPassword,
            "no password given: set COFFER_PASSWORD or COFFER_PASSWORD_FILE, or use --password-file",
        ));
    }
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(|e| Error::io("reading the password", e))
}

/// A new password (init, key add, key passwd): `--new-password-file`, COFFER_NEW_PASSWORD,
/// or (for init) the usual sources, else a prompt asked twice. None of them may be empty.
pub fn new_password(
    g: &Global,
    file: Option<&std::path::Path>,
    for_init: bool,
) -> Result<Zeroizing<String>> {
    if let Some(f) = file {
        return read_password_file(f);
    }
    if let Some(p) = password_variable("COFFER_NEW_PASSWORD")? {
        return Ok(p);
    }
    if for_init {
        if let Some(f) = &g.password_file {
            return read_password_file(f);
        }
        if let Some(c) = &g.password_command {
            return run_password_command(c);
        }
        if let Some(p) = password_variable("COFFER_PASSWORD")? {
            return Ok(p);
        }
    }
    let first = not_empty(prompt_password("New password: ")?, "the prompt")?;
    let second = prompt_password("Repeat the new password: ")?;
    if *first != *second {
        return Err(Error::invalid("the two passwords differ"));
    }
    Ok(first)
}

/// A flag set by Ctrl-C (SIGINT) or SIGTERM. The first signal asks work to stop cleanly;
/// a second one exits at once (the repository stays valid: nothing is referenced before
/// it is written).
pub fn cancel_flag() -> &'static AtomicBool {
    static FLAG: OnceLock<&'static AtomicBool> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(super::EXIT_INTERRUPTED);
            }
            eprintln!(
                "coffer: interrupted, finishing what was uploaded (Ctrl-C again to quit now)"
            );
        });
        flag
    })
}

pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        if let Ok(s) = std::str::from_utf8(&buf[..end]) {
            if !s.is_empty() {
                return s.to_string();
            }
        }
    }
    "localhost".to_string()
}

pub fn username() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        // SAFETY: getuid has no preconditions.
        .unwrap_or_else(|| format!("uid{}", unsafe { libc::getuid() }))
}

/// Byte counts for people.
pub fn human_bytes(n: u64) -> String {
    coffer::jobs::units::human_bytes(n)
}

/// The job file read at start: `--config F`, or `./coffer.toml` when it could be trusted
/// (`jobfile.rs`); its absolute path and contents.
pub fn job_file(g: &Global) -> Result<(std::path::PathBuf, coffer::config::ConfigFile)> {
    let f = started_job_file(g)?;
    let cfg = coffer::config::ConfigFile::parse(&f.path, &f.text)?;
    let abs = std::path::absolute(&f.path).unwrap_or_else(|_| f.path.clone());
    Ok((abs, cfg))
}

/// The job file read again (the daemon takes edits at each wake-up), with the checks it
/// passed at start.
pub fn reload_job_file(g: &Global) -> Result<coffer::config::ConfigFile> {
    let f = started_job_file(g)?;
    let text = super::jobfile::reread(f)?;
    coffer::config::ConfigFile::parse(&f.path, &text)
}

fn started_job_file(g: &Global) -> Result<&super::jobfile::JobFile> {
    g.job.file.as_ref().ok_or_else(|| {
        Error::invalid(match &g.job.refused {
            Some(why) => {
                format!("no job file: ./coffer.toml was ignored ({why}); give --config FILE")
            }
            None => "no job file: ./coffer.toml does not exist (give --config FILE; see \
                     `coffer run --help`)"
                .to_string(),
        })
    })
}

/// Where this machine keeps its job attempts, the run lock and the last metrics-write
/// failure: `jobs/` in the state folder (`--state-dir`, else the default of
/// `coffer::jobs::state_dir`), never in the cache, so deleting the cache forgets nothing and
/// runs with different `--cache-dir`s still share one lock. State an older coffer left in
/// `<cache>/jobs` is copied over the first time (see `adopt_from_cache`).
pub fn jobs_state_dir(g: &Global) -> Result<std::path::PathBuf> {
    use coffer::jobs::state_dir;
    let base = g
        .state_dir
        .clone()
        .or_else(state_dir::default_state_dir)
        .ok_or_else(|| {
            Error::invalid(
                "no state folder to keep job state in (HOME is not set): give --state-dir DIR",
            )
        })?;
    let jobs = state_dir::jobs_dir(&std::path::absolute(&base).unwrap_or(base));
    if let Some(cache) = g.cache_dir.clone().or_else(default_cache_dir) {
        // Only history is at stake: a copy that fails leaves it behind, and says so.
        if let Err(e) = state_dir::adopt_from_cache(&cache.join("jobs"), &jobs) {
            super::term::warn(&format!(
                "the job state of an older coffer in {} was not copied: {e}",
                cache.join("jobs").display()
            ));
        }
    }
    Ok(jobs)
}
