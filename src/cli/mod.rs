//! Command-line interface: clap definitions, shared options, exit codes and output.
//! One file per command; each returns an exit status or an error.

/// Command output: `println!` that does not panic when stdout is closed (`coffer diff .. | head`)
/// or cannot be written (`> /dev/full`). It shadows std's macro in every module declared below;
/// `run` turns a failed write into the exit status.
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::cli::common::print_out(format_args!($($arg)*))
    };
}

mod announce;
mod backup;
mod bucket;
mod check;
mod common;
pub use common::take_password_variables;
mod crash_hook;
mod diff;
mod drill;
mod dump;
mod filters;
mod forget;
mod generate;
mod init;
mod jobfile;
mod key;
mod ls;
mod monitor;
mod pg;
mod pgbase;
mod pitr;
mod progress;
mod prune;
mod repair;
mod restore;
mod run;
mod runbook;
mod schedule;
mod select;
mod setup_archiving;
mod snapshots;
mod stats;
mod status;
mod sync;
mod term;
mod wal;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use coffer::{Error, ErrorKind};
use std::path::PathBuf;
use std::sync::Arc;

/// Exit statuses (the CLI contract).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURE: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_PARTIAL: i32 = 3;
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Parser)]
#[command(
    name = "coffer",
    version,
    about = "Deduplicating, encrypted backups with verified restores",
    long_about = "coffer stores snapshots of files and streams in an encrypted, deduplicating repository.\n\n\
Exit status: 0 success; 1 failure (including `check` finding damage); 2 usage error;\n\
3 backup saved but some source files could not be read; 130 interrupted.",
    after_help = "Password: --password-file, COFFER_PASSWORD_FILE, COFFER_PASSWORD, or a prompt on the terminal.\n\
Repository: --repo [NAME=]URL, once per region, or COFFER_REPOSITORY (comma-separated).\n\
URL: a folder path, file://PATH, s3://BUCKET/PREFIX?endpoint=..&region=.., azblob://CONTAINER/PREFIX?endpoint=..,\n\
sftp://USER@HOST[:PORT]/PATH or memory:."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Clone)]
pub struct Global {
    /// Repository region, `[NAME=]URL`; repeat for several regions (every write goes to all).
    #[arg(
        short = 'r',
        long = "repo",
        global = true,
        help_heading = "Global options",
        env = "COFFER_REPOSITORY",
        value_delimiter = ','
    )]
    pub repo: Vec<String>,
    /// Read the password from this file (first line).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "COFFER_PASSWORD_FILE"
    )]
    pub password_file: Option<PathBuf>,
    /// Run CMD with `sh -c` and read the password from the first line it prints (e.g. a
    /// secret manager's client); it gets a clean environment.
    #[arg(
        long,
        global = true,
        env = "COFFER_PASSWORD_COMMAND",
        value_name = "CMD",
        help_heading = "Global options"
    )]
    pub password_command: Option<String>,
    /// Job file (default ./coffer.toml if present, yours or root's, and writable by nobody
    /// else): its [repository] section gives regions, password_file and min_regions when
    /// neither flags nor environment do.
    #[arg(long, global = true, help_heading = "Global options")]
    pub config: Option<PathBuf>,
    /// Local cache folder (default $XDG_CACHE_HOME/coffer or ~/.cache/coffer). Safe to delete;
    /// one that cannot be written is a warning, and the command goes on without it.
    #[arg(long, global = true, help_heading = "Global options")]
    pub cache_dir: Option<PathBuf>,
    /// Work without a local cache.
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_cache: bool,
    /// Folder for what must outlive the cache: the jobs' failed attempts and the run lock
    /// (default /var/lib/coffer as root, else $XDG_STATE_HOME/coffer or
    /// ~/.local/state/coffer). Runs that share it exclude each other.
    #[arg(
        long,
        global = true,
        env = "COFFER_STATE_DIR",
        value_name = "DIR",
        help_heading = "Global options"
    )]
    pub state_dir: Option<PathBuf>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// Say more: with an error, the failing library's own account of it (a storage
    /// service's request and response context).
    #[arg(
        short,
        long,
        global = true,
        help_heading = "Global options",
        conflicts_with = "quiet"
    )]
    pub verbose: bool,
    /// Print only errors and warnings.
    #[arg(short, long, global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// With several regions: how many must take every write for a backup to succeed.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "COFFER_MIN_REGIONS",
        default_value_t = 1
    )]
    pub min_regions: usize,
    /// Most bytes per second written to each region, e.g. 20MiB/s (default: no limit).
    #[arg(long, global = true, help_heading = "Global options", value_name = "RATE", value_parser = parse_rate)]
    pub limit_upload: Option<u64>,
    /// Try key files whose Argon2 memory is up to SIZE (default 1GiB); costlier ones are
    /// skipped, since anyone who can write to the storage can add key files.
    #[arg(long, global = true, help_heading = "Global options", value_name = "SIZE", value_parser = parse_kdf_memory)]
    pub max_kdf_memory: Option<u32>,
    /// Try key files with up to N Argon2 passes (default 10).
    #[arg(long, global = true, help_heading = "Global options", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub max_kdf_passes: Option<u32>,
    /// The job file as read once at start (`jobfile.rs`); not an option.
    #[arg(skip)]
    pub job: Arc<jobfile::Found>,
    /// Where the regions came from (`--repo`, `COFFER_REPOSITORY`, a job file), for the
    /// line that names the repository; not an option.
    #[arg(skip)]
    pub repo_from: String,
}

fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    coffer::jobs::units::parse_rate(s)
}

/// `2GiB`, `4096MiB`: Argon2 memory in KiB, within what a key file can ask for.
fn parse_kdf_memory(s: &str) -> std::result::Result<u32, String> {
    let bytes = coffer::jobs::units::parse_rate(s)
        .map_err(|_| format!("{s:?} is not a size like 2GiB or 512MiB"))?;
    let max = coffer::crypto::KdfParams::MAX_MEMORY_KIB;
    match u32::try_from(bytes / 1024) {
        Ok(kib) if kib <= max => Ok(kib),
        _ => Err(format!("{s:?} is more than a key file can ask for (4GiB)")),
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init(init::Args),
    /// Back up files and directories, a stream from stdin, a PostgreSQL database or a bucket, as a
    /// new snapshot.
    Backup(backup::Args),
    /// List snapshots.
    Snapshots(snapshots::Args),
    /// List the files in a snapshot.
    Ls(ls::Args),
    /// Restore a snapshot (or parts of it) into a folder, a PostgreSQL database or a bucket.
    Restore(restore::Args),
    /// Write one file from a snapshot to stdout.
    Dump(dump::Args),
    /// Show what changed between two snapshots.
    Diff(diff::Args),
    /// Verify the repository's structure, and with --read-data every byte.
    Check(check::Args),
    /// Remove snapshots by a retention policy (--keep-*); --prune also deletes their data.
    Forget(forget::Args),
    /// Delete data no snapshot uses, in every region, safely while backups run.
    Prune(prune::Args),
    /// Fix what can be fixed safely, while backups run: the index, damaged locks and plans,
    /// leftovers of failed writes; list (and with --forget-broken remove) broken snapshots.
    Repair(repair::Args),
    /// Manage the passwords (key files) that open the repository.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Show repository size, deduplication and compression.
    Stats(stats::Args),
    /// Bring every region up to date: copy missing objects, replace damaged copies (no password needed).
    Sync(sync::Args),
    /// Each job against its RPO, last check and last drill's RTO; exit 1 if any misses.
    Status(status::Args),
    /// Print the disaster-recovery runbook for the job file, in Markdown.
    Runbook(runbook::Args),
    /// Install the schedule: systemd units that run `coffer run` every few minutes.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Run what is due for the jobs in coffer.toml: backup, forget and prune, check, drill.
    Run(run::RunArgs),
    /// Keep the jobs' schedules: run each step when it falls due, until stopped.
    Daemon(run::DaemonArgs),
    /// Restore each job's newest snapshots into scratch space, verify them, and time it against the RTO.
    Drill(drill::Args),
    /// Archive one WAL file into the repository: PostgreSQL's archive_command (`wal-push %p`).
    WalPush(wal::PushArgs),
    /// Write one archived WAL file to DEST: PostgreSQL's restore_command (`wal-fetch %f %p`).
    WalFetch(wal::FetchArgs),
    /// Print (with --apply set through ALTER SYSTEM) the PostgreSQL settings that archive its
    /// WAL into this repository with `coffer wal-push`: wal_level, archive_mode,
    /// archive_command, archive_timeout.
    SetupArchiving(setup_archiving::Args),
    /// Print a shell completion script for bash, zsh, fish, elvish or powershell.
    Completion(generate::CompletionArgs),
    /// Write man pages for coffer and every command into a folder.
    GenerateMan(generate::ManArgs),
}

/// Parse arguments, run the command, and turn the outcome into an exit status.
pub fn run() -> i32 {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Ok((Cli::from_arg_matches(&m)?, repo_source(&m))));
    let (cli, repo_from) = match parsed {
        Ok(c) => c,
        Err(e) => return usage_error(&e),
    };
    // A test hook (debug builds only): new keys may keep the tiny Argon2 cost the test
    // suite asks for, so its hundreds of commands stay fast.
    if cfg!(debug_assertions) && std::env::var_os("COFFER_TEST_TINY_KDF").is_some() {
        coffer::crypto::allow_tiny_kdf_in_tests();
    }
    let g = match with_config_file(cli.global.clone(), repo_from) {
        Ok(g) => g,
        Err(e) => return report_error(&cli.global, &e),
    };
    let g = &g;
    let result = match &cli.command {
        Command::Init(a) => init::run(g, a),
        Command::Backup(a) => backup::run(g, a),
        Command::Snapshots(a) => snapshots::run(g, a),
        Command::Ls(a) => ls::run(g, a),
        Command::Restore(a) => restore::run(g, a),
        Command::Dump(a) => dump::run(g, a),
        Command::Diff(a) => diff::run(g, a),
        Command::Check(a) => check::run(g, a),
        Command::Forget(a) => forget::run(g, a),
        Command::Prune(a) => prune::run(g, a),
        Command::Repair(a) => repair::run(g, a),
        Command::Key(k) => key::run(g, k),
        Command::Stats(a) => stats::run(g, a),
        Command::Sync(a) => sync::run(g, a),
        Command::Status(a) => status::run(g, a),
        Command::Runbook(a) => runbook::run(g, a),
        Command::Schedule(c) => schedule::run(g, c),
        Command::Run(a) => run::run(g, a),
        Command::Daemon(a) => run::daemon(g, a),
        Command::Drill(a) => drill::run(g, a),
        Command::WalPush(a) => wal::push(g, a),
        Command::WalFetch(a) => wal::fetch(g, a),
        Command::SetupArchiving(a) => setup_archiving::run(g, a),
        Command::Completion(a) => generate::completion(a),
        Command::GenerateMan(a) => generate::man(g, a),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => report_error(g, &e),
    };
    // A reader that stops early (`| head`) is not a failure; a write that failed is.
    match common::stdout_failed() {
        Some(kind) if kind != std::io::ErrorKind::BrokenPipe && code == EXIT_OK => {
            eprintln!("coffer: error: writing output: {kind}");
            EXIT_FAILURE
        }
        _ => code,
    }
}

/// A command line clap could not parse (or `--help`, `--version`): printed as clap words
/// it, and with `--json` also as the JSON error every other failure prints.
fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind as Kind;
    if matches!(e.kind(), Kind::DisplayHelp | Kind::DisplayVersion) {
        let _ = e.print();
        return EXIT_OK;
    }
    // `--json` as an argument before any `--` (after it, it would be a value).
    let json = std::env::args_os()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json");
    if json {
        let text = e.render().to_string();
        let message = text
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        common::print_json(&serde_json::json!({
            "error": message, "kind": "Usage", "exit_code": EXIT_USAGE,
        }));
    }
    let _ = e.print();
    EXIT_USAGE
}

/// Where `--repo` / `COFFER_REPOSITORY` got its value, for the line naming the repository.
fn repo_source(m: &clap::ArgMatches) -> &'static str {
    use clap::parser::ValueSource;
    // A global option's source is recorded where it was parsed: look down the subcommands.
    let mut at = Some(m);
    while let Some(m) = at {
        match m.value_source("repo") {
            Some(ValueSource::CommandLine) => return "--repo",
            Some(ValueSource::EnvVariable) => return "COFFER_REPOSITORY",
            _ => at = m.subcommand().map(|(_, sub)| sub),
        }
    }
    "--repo"
}

/// Read the job file (`--config F`, or a trustworthy `./coffer.toml`: see `jobfile.rs`) and
/// fill in from it what the command line and environment left out: regions, password file,
/// minimum regions.
fn with_config_file(mut g: Global, repo_from: &str) -> coffer::Result<Global> {
    g.repo_from = repo_from.to_string();
    let found = jobfile::find(g.config.as_deref())?;
    let section = match &found.file {
        Some(f) => {
            coffer::config::ConfigFile::parse_repository(&f.path, &f.text)?.map(|r| (r, f.shown()))
        }
        None => None,
    };
    g.job = Arc::new(found);
    let Some((repo, shown)) = section else {
        return Ok(g);
    };
    if g.repo.iter().all(|r| r.trim().is_empty()) && !repo.regions.is_empty() {
        g.repo = repo.regions;
        g.repo_from = shown;
    }
    if g.password_file.is_none()
        && g.password_command.is_none()
        && !common::password_in_environment()
    {
        g.password_file = repo.password_file;
    }
    let min_regions_given = std::env::args_os()
        .any(|a| a.to_string_lossy().starts_with("--min-regions"))
        || std::env::var_os("COFFER_MIN_REGIONS").is_some();
    if let (false, Some(n)) = (min_regions_given, repo.min_regions) {
        g.min_regions = n;
    }
    Ok(g)
}

fn report_error(g: &Global, e: &Error) -> i32 {
    let code = match e.kind() {
        ErrorKind::InvalidInput => EXIT_USAGE,
        ErrorKind::Interrupted => EXIT_INTERRUPTED,
        _ => EXIT_FAILURE,
    };
    let kind = format!("{:?}", e.kind());
    if g.json {
        let mut doc = serde_json::json!({"error": e.message(), "kind": kind, "exit_code": code});
        if let (true, Some(d)) = (g.verbose, e.detail()) {
            doc["detail"] = d.into();
        }
        common::print_json(&doc);
    }
    let hint = match e.kind() {
        ErrorKind::WrongPassword if !e.message().contains("COFFER_PASSWORD") => {
            " (check COFFER_PASSWORD / --password-file)"
        }
        // Unless the message already says which command helps (`coffer repair`, or a damaged
        // key file, which `check` could not open the repository to report).
        ErrorKind::Corrupt if !e.message().contains("`coffer ") => {
            " (run `coffer check --read-data` for a full report)"
        }
        _ => "",
    };
    term::error(&format!("{e}{hint}"));
    match (g.verbose, e.detail()) {
        (true, Some(d)) => eprintln!("  detail: {d}"),
        (false, Some(_)) if !g.quiet => {
            eprintln!("  (--verbose shows the storage service's own account)")
        }
        _ => {}
    }
    code
}
