//! `backup`'s options for choosing files, with restic's names and meanings: patterns from
//! files, case-insensitive patterns, marker files, a size limit, one file system, and the
//! paths themselves from a file.

use coffer::backup::exclude::ExcludeOptions;
use coffer::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Clone, Default)]
pub struct Filters {
    /// Read --exclude patterns from FILE, one per line (blank lines and lines starting with
    /// '#' are ignored); repeatable.
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Like --exclude, ignoring case; repeatable.
    #[arg(long, value_name = "GLOB")]
    pub iexclude: Vec<String>,
    /// Save a folder without its contents if it holds a file NAME (whose first bytes are
    /// HEADER, if given); repeatable.
    #[arg(long, value_name = "NAME[:HEADER]")]
    pub exclude_if_present: Vec<String>,
    /// Save cache folders (those with a valid CACHEDIR.TAG) without their contents.
    #[arg(long)]
    pub exclude_caches: bool,
    /// Leave out files larger than SIZE, e.g. 2G, 500MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub exclude_larger_than: Option<u64>,
    /// Do not cross into other file systems below the given paths (mount points are kept
    /// as empty folders).
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Read the paths to back up from FILE, one per line (blank lines and lines starting
    /// with '#' are ignored), in addition to those given; repeatable.
    #[arg(long, value_name = "FILE")]
    pub files_from: Vec<PathBuf>,
}

fn parse_size(s: &str) -> std::result::Result<u64, String> {
    coffer::jobs::units::parse_rate(s)
        .map_err(|_| format!("{s:?} is not a size like 2G, 500MiB or 4096"))
}

impl Filters {
    /// The exclude rules these options give, with `globs` (the `--exclude` patterns).
    pub fn exclude_options(&self, globs: &[String]) -> Result<ExcludeOptions> {
        let mut all = globs.to_vec();
        for f in &self.exclude_file {
            all.extend(lines_of(f)?);
        }
        Ok(ExcludeOptions {
            globs: all,
            iglobs: self.iexclude.clone(),
            if_present: self.exclude_if_present.clone(),
            caches: self.exclude_caches,
            larger_than: self.exclude_larger_than,
            one_file_system: self.one_file_system,
        })
    }

    /// `paths` and those of every --files-from file.
    pub fn paths(&self, paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
        let mut all = paths.to_vec();
        for f in &self.files_from {
            all.extend(lines_of(f)?.into_iter().map(PathBuf::from));
        }
        if all.is_empty() {
            return Err(Error::invalid(
                "no paths to back up: the --files-from file(s) list none",
            ));
        }
        Ok(all)
    }
}

/// The meaningful lines of a list file: not blank, not a comment.
fn lines_of(file: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(file.display(), e))?;
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect())
}
