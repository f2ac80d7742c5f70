//! `coffer schedule install`: systemd units that start `coffer run` every few minutes. The run
//! itself decides what is due (from the repository), so the timer only has to be frequent;
//! overlapping runs do not collide.

use super::common::{self, print_json};
use super::{Global, EXIT_OK};
use coffer::backend::Location;
use coffer::config::{ConfigFile, IoPriority};
use coffer::jobs::units::{format_duration, parse_duration};
use coffer::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum ScheduleCommand {
    /// Write coffer.service and coffer.timer (systemd) that run the job file's jobs.
    Install(InstallArgs),
}

#[derive(clap::Args)]
#[command(
    after_help = "Writes two units into DIR and prints the command that enables them (it runs \
no systemctl itself). The service runs `<this coffer> --config <job file> run` as a oneshot; the \
password comes from the job file's password_file, so no secret is written into the units.\n\n\
Without systemd, a cron line does the same (coffer run guards against overlapping runs):\n\
  */5 * * * *  /usr/local/bin/coffer --config /etc/coffer/coffer.toml run -q\n\n\
Exit status: 0 written; 1 a unit could not be written; 2 no job file or a bad option."
)]
pub struct InstallArgs {
    /// Folder for the units (default /etc/systemd/system, or ~/.config/systemd/user with --user).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// How often the timer starts `coffer run`; each run does only what is due.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub every: Duration,
    /// Write user units (`systemctl --user`) instead of system ones.
    #[arg(long)]
    pub user: bool,
}

pub fn run(g: &Global, c: &ScheduleCommand) -> Result<i32> {
    match c {
        ScheduleCommand::Install(a) => install(g, a),
    }
}

fn install(g: &Global, a: &InstallArgs) -> Result<i32> {
    if a.every < Duration::from_secs(60) {
        return Err(Error::invalid("--every must be at least 1m"));
    }
    let (config, cfg) = common::job_file(g)?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| Error::io("finding this coffer's path", e))?;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None if a.user => user_unit_dir()?,
        None => PathBuf::from("/etc/systemd/system"),
    };
    let mut args = vec!["--config".to_string(), config.display().to_string()];
    // A system service has no home folder, so the cache goes to systemd's CacheDirectory
    // (/var/cache/coffer) unless a folder was given.
    match &g.cache_dir {
        Some(d) => args.extend(["--cache-dir".into(), absolute(d)?.display().to_string()]),
        None if !a.user => args.extend(["--cache-dir".into(), "/var/cache/coffer".into()]),
        None => {}
    }
    // The state folder is named outright, so the service and a person at the shell find the
    // same job state and run lock: /var/lib/coffer (systemd's StateDirectory, and root's
    // default) for the system units, the installing user's own default for user units
    // (a user manager may not see the shell's XDG_STATE_HOME).
    let state_dir = match &g.state_dir {
        Some(d) => Some(absolute(d)?),
        None if !a.user => Some(PathBuf::from(coffer::jobs::state_dir::SYSTEM_STATE_DIR)),
        None => coffer::jobs::state_dir::default_state_dir(),
    };
    if let Some(d) = &state_dir {
        args.extend(["--state-dir".into(), d.display().to_string()]);
    }
    let file_regions = cfg
        .repository
        .as_ref()
        .map(|r| r.regions.clone())
        .unwrap_or_default();
    let regions = if file_regions.is_empty() {
        // Regions given on the command line or in the environment: URLs hold no secret.
        let regions = common::region_locations(g)?;
        for (name, loc) in &regions {
            args.extend(["--repo".into(), format!("{name}={loc}")]);
        }
        regions
    } else {
        let from_file = Global {
            repo: file_regions,
            ..g.clone()
        };
        common::region_locations(&from_file)?
    };
    let file_password = cfg
        .repository
        .as_ref()
        .is_some_and(|r| r.password_file.is_some());
    if !file_password {
        match &g.password_file {
            Some(f) => args.extend(["--password-file".into(), absolute(f)?.display().to_string()]),
            None => eprintln!(
                "coffer: warning: the job file names no password_file, so the service will have no \
                 password; add `password_file = \"/etc/coffer/password\"` to its [repository] section"
            ),
        }
    }
    args.push("run".into());
    let sandbox = if a.user {
        None
    } else {
        Some(sandbox(g, &cfg, &regions)?)
    };
    for p in sandbox.iter().flat_map(|s| &s.writable) {
        if !p.exists() {
            eprintln!(
                "coffer: warning: {} does not exist yet; create it before the first run, since \
                 the service may write only to folders that exist when it starts \
                 (ProtectSystem=strict)",
                p.display()
            );
        }
    }
    let service = service_unit(&exe, &args, &cfg, sandbox.as_ref());
    let timer = timer_unit(a.every);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
    let service_path = dir.join("coffer.service");
    let timer_path = dir.join("coffer.timer");
    write_file(&service_path, &service)?;
    write_file(&timer_path, &timer)?;
    let systemctl = if a.user {
        "systemctl --user"
    } else {
        "systemctl"
    };
    let next = format!("{systemctl} daemon-reload && {systemctl} enable --now coffer.timer");
    if g.json {
        print_json(&serde_json::json!({
            "service": service_path,
            "timer": timer_path,
            "next": next,
            "exit_code": EXIT_OK,
        }));
    } else if !g.quiet {
        println!("wrote {}", service_path.display());
        println!("wrote {}", timer_path.display());
        println!("next: {next}");
        if a.user {
            println!("      loginctl enable-linger $USER   # so it runs while you are logged out");
        }
    }
    Ok(EXIT_OK)
}

fn user_unit_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("systemd/user"));
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".config/systemd/user"))
        .ok_or_else(|| Error::invalid("no HOME to find ~/.config/systemd/user in: give --dir DIR"))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p.display(), e))
}

/// One ExecStart word: `%` is a systemd specifier, and spaces or quotes need quoting.
fn unit_word(s: &str) -> String {
    let s = s.replace('%', "%%");
    if s.chars().any(|c| c.is_whitespace() || "\"'\\;".contains(c)) {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// How a system service is confined. User units get only what a user manager can apply
/// without a user namespace (`UMask`, `NoNewPrivileges`, the timeout).
struct Sandbox {
    /// The cache in systemd's CacheDirectory, /var/cache/coffer.
    cache_directory: bool,
    /// Everything else the run writes: see `sandbox`.
    writable: Vec<PathBuf>,
    /// A place others must see (the repository, the metrics file, the cache) is in /tmp or
    /// /var/tmp, so the service cannot have private ones.
    shared_tmp: Option<PathBuf>,
}

/// What a run writes outside systemd's own folders: the cache and state folders given with
/// `--cache-dir` and `--state-dir`, every local repository folder, the metrics file's folder
/// (its temporary file is made beside it), and each drill's scratch folder and local scratch
/// bucket. Backups only read, so the sources need no entry.
fn sandbox(g: &Global, cfg: &ConfigFile, regions: &[(String, Location)]) -> Result<Sandbox> {
    let mut lasting = Vec::new();
    for d in [&g.cache_dir, &g.state_dir].into_iter().flatten() {
        lasting.push(absolute(d)?);
    }
    for (_, loc) in regions {
        if let Location::Local(p) = loc {
            lasting.push(absolute(p)?);
        }
    }
    if let Some(f) = &cfg.monitoring.prometheus_textfile {
        if let Some(d) = absolute(f)?.parent() {
            lasting.push(d.to_path_buf());
        }
    }
    let shared_tmp = lasting
        .iter()
        .find(|p| p.starts_with("/tmp") || p.starts_with("/var/tmp"))
        .cloned();
    // Drill scratch space lives only for the drill: a private /tmp suits it.
    let mut writable = lasting;
    for drill in cfg.jobs.iter().filter_map(|j| j.drill.as_ref()) {
        if let Some(t) = &drill.target {
            writable.push(absolute(t)?);
        }
        if let Some(Ok(Location::Local(p))) = drill.bucket.as_deref().map(Location::parse) {
            writable.push(absolute(&p)?);
        }
    }
    writable.sort();
    writable.dedup();
    Ok(Sandbox {
        cache_directory: g.cache_dir.is_none(),
        writable,
        shared_tmp,
    })
}

/// A run stuck on something without a timeout of its own (a hung NFS source, pg_dump waiting
/// on a lock) would hold the run lock, and the timer would never start another run. 12 hours
/// is far beyond a nightly run, and stopping a long first backup loses little: coffer stops
/// on SIGTERM after indexing what it uploaded, and the next run reuses it. A daily job then
/// misses at most one night.
const RUN_TIMEOUT: &str = "12h";

fn service_unit(
    exe: &Path,
    args: &[String],
    cfg: &ConfigFile,
    sandbox: Option<&Sandbox>,
) -> String {
    let mut words = vec![unit_word(&exe.display().to_string())];
    words.extend(args.iter().map(|a| unit_word(a)));
    let mut out = String::from(
        "# Written by `coffer schedule install`. Runs the jobs of the job file that are due;\n\
         # the password comes from the job file's password_file (nothing secret is in here).\n\
         [Unit]\n\
         Description=coffer: run the backup jobs that are due\n\
         Wants=network-online.target\n\
         After=network-online.target\n\n\
         [Service]\n\
         Type=oneshot\n",
    );
    out.push_str(&format!("ExecStart={}\n", words.join(" ")));
    out.push_str(&format!("TimeoutStartSec={RUN_TIMEOUT}\n"));
    // Everything the run creates is private (the cache holds decrypted index bodies); coffer
    // sets the same mask itself, and gives the metrics file its 0644 explicitly.
    out.push_str("UMask=0077\nNoNewPrivileges=yes\n");
    if let Some(s) = sandbox {
        if s.cache_directory {
            out.push_str("CacheDirectory=coffer\nCacheDirectoryMode=0700\n");
        }
        // /var/lib/coffer, private: the job state and run lock (unless --state-dir named
        // another folder), and a place for drill targets (e.g. /var/lib/coffer/drill) that
        // no other user can reach.
        out.push_str("StateDirectory=coffer\nStateDirectoryMode=0700\n");
        // The whole file system is read-only but for the folders named below; /home and
        // /root stay readable, since backups of them only read. A `-` ignores a folder that
        // does not exist.
        match &s.shared_tmp {
            None => out.push_str("PrivateTmp=yes\n"),
            Some(p) => out.push_str(&format!(
                "# No PrivateTmp=yes: {} must be the one everybody sees.\n",
                p.display()
            )),
        }
        out.push_str("ProtectSystem=strict\nProtectHome=read-only\n");
        for p in &s.writable {
            out.push_str(&format!(
                "ReadWritePaths={}\n",
                unit_word(&format!("-{}", p.display()))
            ));
        }
    }
    // Each job lowers its own priority while it runs; the whole service can start as low
    // as the least demanding job asks (a process may lower its priority, not raise it).
    let nice = cfg
        .jobs
        .iter()
        .map(|j| j.nice.unwrap_or(0))
        .min()
        .unwrap_or(0);
    if nice > 0 {
        out.push_str(&format!("Nice={nice}\n"));
    }
    if !cfg.jobs.is_empty()
        && cfg
            .jobs
            .iter()
            .all(|j| j.io_priority == Some(IoPriority::Idle))
    {
        out.push_str("IOSchedulingClass=idle\n");
    }
    out
}

fn timer_unit(every: Duration) -> String {
    let secs = every.as_secs();
    // A calendar rule keeps runs on round times and catches up after downtime (Persistent);
    // an interval that does not divide an hour or a day counts from the last run instead.
    let when = if secs % 60 == 0 && 3600 % secs == 0 {
        format!("OnCalendar=*:0/{}\n", secs / 60)
    } else if secs % 3600 == 0 && 86400 % secs == 0 {
        format!("OnCalendar=0/{}:00\n", secs / 3600)
    } else {
        format!("OnActiveSec=1min\nOnBootSec=2min\nOnUnitActiveSec={secs}s\n")
    };
    format!(
        "# Written by `coffer schedule install`: starts coffer.service every {}.\n\
         [Unit]\n\
         Description=coffer: start the backup jobs that are due, every {}\n\n\
         [Timer]\n\
         {when}\
         Persistent=true\n\
         AccuracySec=30s\n\n\
         [Install]\n\
         WantedBy=timers.target\n",
        format_duration(every),
        format_duration(every)
    )
}

/// Replace `path` whole (a temporary file with a random name, then a rename), 0644 like
/// every unit file: systemd and `systemctl` read them, and they hold no secret.
fn write_file(path: &Path, text: &str) -> Result<()> {
    coffer::hostfile::replace(path, text.as_bytes(), 0o644)
        .map_err(|e| Error::io(path.display(), e))
}
