//! What a files backup leaves out, with restic's option names and meanings: `--exclude`
//! and `--iexclude` globs (a pattern with a `/` matches the whole path, one without matches
//! the name), `--exclude-if-present NAME[:HEADER]` and `--exclude-caches` (a folder holding
//! that file keeps only itself, not its contents), `--exclude-larger-than SIZE` and
//! `--one-file-system` (a mount point below a backed-up folder is kept, empty).

use crate::error::{Error, Result};
use rustix::fs::{Mode, OFlags};
use std::io::Read;
use std::os::fd::BorrowedFd;
use std::path::Path;

/// The cache directory tagging standard's marker and its first bytes
/// (https://bford.info/cachedir/), which `--exclude-caches` looks for.
const CACHEDIR_TAG: &str = "CACHEDIR.TAG:Signature: 8a477f597d28d172789f06886806bc55";

#[derive(Debug, Clone, Default)]
pub struct ExcludeOptions {
    pub globs: Vec<String>,
    /// Like `globs`, ignoring case.
    pub iglobs: Vec<String>,
    /// `NAME` or `NAME:HEADER`: a folder holding a file NAME (that starts with HEADER) is
    /// saved without its contents.
    pub if_present: Vec<String>,
    pub caches: bool,
    /// Files larger than this many bytes are left out.
    pub larger_than: Option<u64>,
    /// Do not enter other file systems below the paths given.
    pub one_file_system: bool,
}

pub struct ExcludeRules {
    globs: Vec<(glob::Pattern, bool)>,
    markers: Vec<(String, Vec<u8>)>,
    pub larger_than: Option<u64>,
    pub one_file_system: bool,
}

impl ExcludeRules {
    pub fn new(o: &ExcludeOptions) -> Result<ExcludeRules> {
        let compile = |g: &String, fold: bool| {
            glob::Pattern::new(g)
                .map(|p| (p, fold))
                .map_err(|e| Error::invalid(format!("bad exclude pattern {g:?}: {e}")))
        };
        let mut globs = Vec::new();
        for g in &o.globs {
            globs.push(compile(g, false)?);
        }
        for g in &o.iglobs {
            globs.push(compile(g, true)?);
        }
        let mut markers: Vec<(String, Vec<u8>)> = Vec::new();
        let tags = o.if_present.iter().map(String::as_str);
        for m in tags.chain(o.caches.then_some(CACHEDIR_TAG)) {
            let (name, header) = m.split_once(':').unwrap_or((m, ""));
            if name.is_empty() || name.contains('/') {
                return Err(Error::invalid(format!(
                    "--exclude-if-present {m:?}: give a file name, optionally NAME:HEADER"
                )));
            }
            markers.push((name.to_string(), header.as_bytes().to_vec()));
        }
        Ok(ExcludeRules {
            globs,
            markers,
            larger_than: o.larger_than,
            one_file_system: o.one_file_system,
        })
    }

    /// Does a pattern leave out `path`?
    pub fn excludes_path(&self, path: &Path) -> bool {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        self.globs.iter().any(|(p, fold)| {
            let opts = glob::MatchOptions {
                case_sensitive: !fold,
                ..glob::MatchOptions::new()
            };
            if p.as_str().contains('/') {
                p.matches_path_with(path, opts)
            } else {
                p.matches_with(&name, opts)
            }
        })
    }

    /// Does the open folder `dir` hold a marker that leaves its contents out? The marker is
    /// opened without following symlinks, and only its first bytes are read.
    pub fn marked(&self, dir: BorrowedFd<'_>) -> bool {
        self.markers.iter().any(|(name, header)| {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
            let Ok(fd) = rustix::fs::openat(dir, name.as_str(), flags, Mode::empty()) else {
                return false;
            };
            if header.is_empty() {
                return true;
            }
            let mut start = vec![0u8; header.len()];
            let read = std::fs::File::from(fd).read_exact(&mut start);
            read.is_ok() && start == *header
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_names_or_paths_and_iexclude_ignores_case() {
        let r = ExcludeRules::new(&ExcludeOptions {
            globs: vec!["*.tmp".into(), "/srv/*/cache".into()],
            iglobs: vec!["*.LOG".into()],
            ..Default::default()
        })
        .unwrap();
        assert!(r.excludes_path(Path::new("/a/b.tmp")));
        assert!(r.excludes_path(Path::new("/srv/app/cache")));
        assert!(!r.excludes_path(Path::new("/srv/app/cache2")));
        assert!(r.excludes_path(Path::new("/var/x.log")));
        assert!(!r.excludes_path(Path::new("/var/x.TMP")));
        let bad = ExcludeOptions {
            if_present: vec!["a/b".into()],
            ..Default::default()
        };
        assert!(ExcludeRules::new(&bad).is_err());
    }
}
