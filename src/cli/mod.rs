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

mod backup;
mod bucket;
mod check;
mod common;
mod crash_hook;
mod diff;
mod drill;
mod dump;
mod forget;
mod init;
mod key;
mod ls;
mod monitor;
mod pg;
mod progress;
mod prune;
mod repair;
mod restore;
mod run;
mod runbook;
mod schedule;
mod snapshots;
mod stats;
mod status;
mod sync;

use clap::{Parser, Subcommand};
use coffer::{Error, ErrorKind};
use std::path::PathBuf;

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
        env = "COFFER_REPOSITORY",
        value_delimiter = ','
    )]
    pub repo: Vec<String>,
    /// Read the password from this file (first line).
    #[arg(long, global = true, env = "COFFER_PASSWORD_FILE")]
    pub password_file: Option<PathBuf>,
    /// Job file (default ./coffer.toml if present): its [repository] section gives regions,
    /// password_file and min_regions when neither flags nor environment do.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Local cache folder (default $XDG_CACHE_HOME/coffer or ~/.cache/coffer). Safe to delete.
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Work without a local cache.
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors and warnings.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// With several regions: how many must take every write for a backup to succeed.
    #[arg(long, global = true, env = "COFFER_MIN_REGIONS", default_value_t = 1)]
    pub min_regions: usize,
    /// Most bytes per second written to each region, e.g. 20MiB/s (default: no limit).
    #[arg(long, global = true, value_name = "RATE", value_parser = parse_rate)]
    pub limit_upload: Option<u64>,
}

fn parse_rate(s: &str) -> std::result::Result<u64, String> {
    coffer::jobs::units::parse_rate(s)
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
}

/// Parse arguments, run the command, and turn the outcome into an exit status.
pub fn run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    EXIT_OK
                }
                _ => EXIT_USAGE,
            };
        }
    };
    let g = match with_config_file(cli.global.clone()) {
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

/// Fill in from the job file what the command line and environment left out: regions,
/// password file, minimum regions. `--config F` must exist; `./coffer.toml` is read if present.
fn with_config_file(mut g: Global) -> coffer::Result<Global> {
    let path = match &g.config {
        Some(p) => p.clone(),
        None => PathBuf::from("coffer.toml"),
    };
    if g.config.is_none() && !path.is_file() {
        return Ok(g);
    }
    let Some(repo) = coffer::config::ConfigFile::load_repository(&path)? else {
        return Ok(g);
    };
    if g.repo.iter().all(|r| r.trim().is_empty()) {
        g.repo = repo.regions;
    }
    if g.password_file.is_none() && std::env::var_os("COFFER_PASSWORD").is_none() {
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
        common::print_json(
            &serde_json::json!({"error": e.message(), "kind": kind, "exit_code": code}),
        );
    }
    let hint = match e.kind() {
        ErrorKind::WrongPassword if !e.message().contains("COFFER_PASSWORD") => {
            " (check COFFER_PASSWORD / --password-file)"
        }
        // The message already says what to run.
        ErrorKind::Corrupt if e.message().contains("`coffer repair") => "",
        ErrorKind::Corrupt => " (run `coffer check --read-data` for a full report)",
        _ => "",
    };
    eprintln!("coffer: error: {e}{hint}");
    code
}
