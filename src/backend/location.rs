//! Where a repository region lives, parsed from the `--repo` URL forms of the CLI contract.

use crate::error::{Error, ErrorKind, Result};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on a local (or mounted) file system.
    Local(PathBuf),
    /// Process memory: for tests only, gone when the process ends.
    Memory,
}

impl Location {
    /// Parse `URL` (a plain path, `file://PATH` or `memory:`). Forms for other services are
    /// recognised and refused with a clear message until their backends exist.
    pub fn parse(url: &str) -> Result<Self> {
        if url == "memory:" || url == "memory://" {
            return Ok(Location::Memory);
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("repository URL scheme {scheme}:// is not supported by this build (local folders and memory: are)"),
            ));
        }
        if url.is_empty() {
            return Err(Error::invalid("empty repository location"));
        }
        Ok(Location::Local(PathBuf::from(url)))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Memory => f.write_str("memory:"),
        }
    }
}
