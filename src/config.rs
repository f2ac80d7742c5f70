//! The job file (`coffer.toml`, `--config F`): for now its `[repository]` section, which gives
//! the regions and the password file when the command line and environment do not. Other
//! sections (`[[job]]`, `[monitoring]`) belong to the job commands and are left alone here.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub repository: Option<RepositorySection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySection {
    /// `[NAME=]URL` per region, in read order.
    #[serde(default)]
    pub regions: Vec<String>,
    pub password_file: Option<PathBuf>,
    /// How many regions must take every write.
    pub min_regions: Option<usize>,
}

impl ConfigFile {
    /// Parse `text` (from `path`, named in errors). A mistake names the line and the field.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        toml::from_str(text)
            .map_err(|e| Error::invalid(format!("{}: {}", path.display(), e.to_string().trim())))
    }

    /// Read the file at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("config file {}", path.display()), e))?;
        Self::parse(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_repository_section_and_ignores_job_sections() {
        let c = ConfigFile::parse(
            Path::new("coffer.toml"),
            "[repository]\nregions = [\"eu=/srv/a\", \"us=/srv/b\"]\npassword_file = \"/etc/p\"\n\n[[job]]\nname = \"app\"\n",
        )
        .unwrap();
        let r = c.repository.unwrap();
        assert_eq!(r.regions, vec!["eu=/srv/a", "us=/srv/b"]);
        assert_eq!(r.password_file, Some(PathBuf::from("/etc/p")));
    }

    #[test]
    fn a_mistake_names_the_line_and_the_field() {
        let e = ConfigFile::parse(
            Path::new("coffer.toml"),
            "[repository]\nregions = [\"a\"]\nregoins = 3\n",
        )
        .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("line 3") && m.contains("regoins"), "{m}");
        let e = ConfigFile::parse(Path::new("c.toml"), "[repository]\nregions = 7\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
