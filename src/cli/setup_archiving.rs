//! `coffer setup-archiving URL [--apply] [--force] [--archive-timeout DURATION]`: print, and
//! with `--apply` set, what a PostgreSQL server needs to archive its WAL into this repository
//! through `coffer wal-push`.
//!
//! The `archive_command` is built from this invocation's repository options (every region,
//! the password file, `--cache-dir` or `--no-cache`, `--min-regions`), made absolute: the server runs it from its data
//! directory, with its own environment, where neither `COFFER_REPOSITORY` nor the caller's
//! working directory exist.

use super::common::{self, print_json};
use super::{term, Global, EXIT_OK};
use coffer::backend::Location;
use coffer::postgres::{
    shell_command, ApplyReport, ArchivingPlan, ArchivingServer, ArchivingWanted,
};
use coffer::{Error, Result};
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "Example:\n  \
coffer -r /srv/coffer --password-file /etc/coffer/password setup-archiving \\\n    \
postgresql://postgres@127.0.0.1:5432/postgres --apply\n\n\
archive_command is built from this command's --repo regions (local paths made absolute), \
--password-file, --cache-dir or --no-cache, and --min-regions; a password is never put into it. \
Without --cache-dir, wal-push keeps its cache in the server user's ~/.cache/coffer. \
The server runs archive_command as its own OS user (postgres), in its own environment: that \
user must be able to run the coffer binary, read the password file and write the repository \
(for s3:// and azblob:// regions, the server's environment must hold their credentials).")]
pub struct Args {
    /// The server, e.g. postgresql://postgres@127.0.0.1:5432/postgres (--apply needs a
    /// superuser, or GRANT ALTER SYSTEM ON PARAMETER for the four settings).
    #[arg(value_name = "URL")]
    pub url: String,
    /// Set wal_level, archive_mode, archive_command and archive_timeout through ALTER SYSTEM
    /// and reload the configuration, after checking that the repository opens; then say which
    /// settings wait for a restart (archive_mode and wal_level do).
    #[arg(long)]
    pub apply: bool,
    /// With --apply: replace an archive_command (or archive_library) that another tool set.
    #[arg(long, requires = "apply")]
    pub force: bool,
    /// archive_timeout: a quiet server switches to a new WAL segment (and so archives what it
    /// wrote) at least this often, so no commit waits longer to be archived: the RPO bound.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_timeout)]
    pub archive_timeout: u64,
    /// Folder holding psql (default: the newest one found).
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

/// A whole number of seconds PostgreSQL accepts for archive_timeout (0 would turn it off).
fn parse_timeout(s: &str) -> std::result::Result<u64, String> {
    let secs = coffer::jobs::units::parse_duration(s)?.as_secs();
    // PostgreSQL's limit: INT_MAX / 2 seconds.
    match secs {
        0 => Err(
            "0 would let a quiet server keep a commit unarchived forever; give 1s or more".into(),
        ),
        s if s > (i32::MAX / 2) as u64 => {
            Err(format!("{s} seconds is more than PostgreSQL accepts"))
        }
        s => Ok(s),
    }
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let (command, mut warnings) = wal_push_command(g)?;
    let wanted = ArchivingWanted {
        command,
        timeout_secs: a.archive_timeout,
    };
    let server = ArchivingServer::connect(&a.url, a.pg_bin.as_deref())?;
    let (plan, report) = if a.apply {
        // A command pointing at a repository that does not open would fail for every
        // segment, and the WAL would pile up on the server until its disk is full. Opened
        // without a cache: the one named for wal-push belongs to the server's OS user, and
        // files this process (often root) made there would lock it out.
        let check = Global {
            no_cache: true,
            ..g.clone()
        };
        common::open(&check).map_err(|e| e.context("the repository for archive_command"))?;
        let (plan, report) = server.apply(&wanted, a.force)?;
        (plan, Some(report))
    } else {
        (server.plan(&wanted)?, None)
    };
    warnings.extend(plan_warnings(&plan, a.apply));
    if let Some(r) = &report {
        if !r.reloaded {
            warnings.push(
                "the server had not reloaded its configuration after pg_reload_conf(); \
                 check its log, or run pg_ctl reload"
                    .to_string(),
            );
        }
    }
    for w in &warnings {
        term::warn(w);
    }
    if g.json {
        print_json(&json(&plan, &wanted, report.as_ref(), &warnings));
    } else {
        print_text(g, &plan, report.as_ref());
    }
    Ok(EXIT_OK)
}

/// `archive_command` for this repository, and warnings about what it relies on.
fn wal_push_command(g: &Global) -> Result<(String, Vec<String>)> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::io("finding the path of this coffer binary", e))?;
    let exe = exe
        .to_str()
        .filter(|p| !p.ends_with(" (deleted)"))
        .ok_or_else(|| {
            Error::invalid(format!(
                "this coffer binary's path {} cannot go into archive_command (it is not \
                 UTF-8, or the file was replaced while running); run coffer from a plain path",
                exe.display()
            ))
        })?
        .to_string();
    let mut words = vec![exe];
    let mut warnings = Vec::new();
    let specs = common::region_specs(g);
    if specs.is_empty() {
        return Err(Error::invalid(
            "no repository given: use --repo [NAME=]URL (once per region) or set COFFER_REPOSITORY",
        ));
    }
    for (name, url) in specs {
        let shown = name.unwrap_or(url);
        let loc = Location::parse(url).map_err(|e| e.context(format!("region {shown}")))?;
        let url =
            match loc {
                Location::Memory => return Err(Error::invalid(
                    "a memory: repository lives only inside one coffer process; archive_command \
                     needs a folder or a storage service",
                )),
                Location::Local(p) => {
                    let abs = std::path::absolute(&p)
                        .map_err(|e| Error::io(format!("region {shown}"), e))?;
                    abs.to_str()
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "region {shown}: the path {} is not UTF-8, which a PostgreSQL \
                             setting cannot hold",
                                abs.display()
                            ))
                        })?
                        .to_string()
                }
                Location::S3(_) | Location::Azblob(_) => {
                    warnings.push(format!(
                        "region {shown} takes its credentials from environment variables: the \
                     PostgreSQL server's environment must provide them (e.g. in its service \
                     unit), since archive_command runs with it"
                    ));
                    url.to_string()
                }
                Location::Sftp(_) => {
                    warnings.push(format!(
                        "region {shown} is reached with ssh as the PostgreSQL server's OS user: \
                     that user needs the key and a known_hosts entry"
                    ));
                    url.to_string()
                }
            };
        // clap splits --repo at commas (COFFER_REPOSITORY's separator), so wal-push would
        // see two regions.
        if url.contains(',') {
            return Err(Error::invalid(format!(
                "region {shown}: {url} holds a comma, which --repo reads as a separator \
                 between regions; use a path or URL without one"
            )));
        }
        words.push(match name {
            Some(n) => format!("--repo={n}={url}"),
            None => format!("--repo={url}"),
        });
    }
    match &g.password_file {
        Some(f) => {
            let abs = std::path::absolute(f)
                .map_err(|e| Error::io(format!("password file {}", f.display()), e))?;
            if !abs.is_file() {
                return Err(Error::not_found(format!(
                    "password file {} does not exist",
                    abs.display()
                )));
            }
            let abs = abs.to_str().ok_or_else(|| {
                Error::invalid(format!(
                    "the password file's path {} is not UTF-8, which a PostgreSQL setting \
                     cannot hold",
                    abs.display()
                ))
            })?;
            words.push(format!("--password-file={abs}"));
        }
        None => warnings.push(
            "no --password-file given: wal-push will need COFFER_PASSWORD_FILE in the \
             PostgreSQL server's environment (a password is never put into archive_command, \
             where pg_settings shows it)"
                .to_string(),
        ),
    }
    // The cache: wal-push's default is the server user's ~/.cache/coffer, which is fine
    // where that user has a home it can write (Debian: /var/lib/postgresql); an explicit
    // choice here is passed on.
    if g.no_cache {
        words.push("--no-cache".to_string());
    } else if let Some(d) = &g.cache_dir {
        let abs = std::path::absolute(d)
            .map_err(|e| Error::io(format!("cache folder {}", d.display()), e))?;
        let abs = abs.to_str().ok_or_else(|| {
            Error::invalid(format!(
                "the cache folder's path {} is not UTF-8, which a PostgreSQL setting cannot hold",
                abs.display()
            ))
        })?;
        words.push(format!("--cache-dir={abs}"));
    }
    if g.min_regions > 1 {
        words.push(format!("--min-regions={}", g.min_regions));
    }
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok((
        shell_command("archive_command", &refs, "wal-push %p")?,
        warnings,
    ))
}

fn plan_warnings(plan: &ArchivingPlan, applying: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(f), false) = (&plan.foreign, applying) {
        out.push(format!(
            "{f}: another tool archives this server's WAL; --apply replaces it only with --force"
        ));
    }
    if let Some(f) = &plan.foreign {
        if applying {
            out.push(format!(
                "{f}: replaced (--force); stop that tool's archiving"
            ));
        }
    }
    if let Some(c) = &plan.replaces_coffer {
        out.push(format!(
            "archive_command is an earlier coffer setup ({c}); it {} replaced",
            if applying { "was" } else { "will be" }
        ));
    }
    for s in plan.changes().filter(|s| s.fixed_elsewhere && !applying) {
        out.push(format!(
            "{} is set on the server's {}, which ALTER SYSTEM cannot override: change it there",
            s.name, s.source
        ));
    }
    out
}

fn shown(v: &Option<String>) -> String {
    match v.as_deref() {
        None => "(cannot be read)".to_string(),
        Some("") => "(empty)".to_string(),
        Some(v) => v.to_string(),
    }
}

fn print_text(g: &Global, plan: &ArchivingPlan, report: Option<&ApplyReport>) {
    if g.quiet && report.is_some() {
        return;
    }
    println!(
        "PostgreSQL {} at {}:",
        plan.server_version,
        term::name(plan.server.as_bytes())
    );
    for s in &plan.settings {
        let line = match (s.change, s.pending_restart) {
            (true, _) => {
                let when = if s.restart {
                    " (takes effect after a restart)"
                } else {
                    ""
                };
                format!("{} -> {}{when}", shown(&s.current), s.wanted)
            }
            (false, true) => format!(
                "{} now, {} after a restart (already in the configuration files)",
                shown(&s.current),
                s.wanted
            ),
            (false, false) => format!("{} (kept)", s.wanted),
        };
        println!("  {}: {}", s.name, term::text(&line));
    }
    let Some(r) = report else {
        if plan.changes().next().is_none() {
            println!("Nothing to change: the server archives into this repository already.");
            return;
        }
        println!("");
        println!(
            "In postgresql.conf (or run again with --apply to set them through ALTER SYSTEM):"
        );
        for l in plan.conf_lines() {
            println!("{}", term::text(&l));
        }
        let restart = plan.restart_needed();
        if !restart.is_empty() {
            println!("A restart is needed for {}.", restart.join(" and "));
        }
        return;
    };
    if r.changed.is_empty() {
        println!("Nothing to change: the server archives into this repository already.");
    } else {
        println!(
            "Set {} through ALTER SYSTEM (postgresql.auto.conf) and reloaded the configuration.",
            r.changed.join(", ")
        );
    }
    if r.pending_restart.is_empty() {
        println!("No restart needed: the settings are in effect.");
    } else {
        println!(
            "Restart needed for {} (pending_restart): restart the server (pg_ctl restart, \
             systemctl restart postgresql) to start archiving.",
            r.pending_restart.join(", ")
        );
    }
}

fn json(
    plan: &ArchivingPlan,
    wanted: &ArchivingWanted,
    report: Option<&ApplyReport>,
    warnings: &[String],
) -> serde_json::Value {
    let mut v = serde_json::to_value(plan).expect("JSON of plain data");
    v["archive_command"] = wanted.command.clone().into();
    v["postgresql_conf"] = plan.conf_lines().into();
    v["applied"] = report.is_some().into();
    v["restart_needed"] = match report {
        Some(r) => r.pending_restart.clone().into(),
        None => plan.restart_needed().into(),
    };
    if let Some(r) = report {
        v["changed"] = r.changed.clone().into();
        v["reloaded"] = r.reloaded.into();
    }
    v["warnings"] = warnings.into();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_timeout_is_whole_seconds_within_postgresql_limits() {
        assert_eq!(parse_timeout("60s"), Ok(60));
        assert_eq!(parse_timeout("5m"), Ok(300));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("100000d").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
