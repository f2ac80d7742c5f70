//! Which job file a command reads, decided once at start. `--config F` is the user's own
//! choice and is read as given. `./coffer.toml` is read only when nobody else could have put
//! it there: the working directory must not choose the repository, the password file or the
//! jobs that `coffer run` executes (security review M4). The text is read once, through one
//! descriptor opened with `O_NOFOLLOW` and checked with `fstat`, so the file cannot be
//! swapped between the check and the read.

use coffer::{Error, Result};
use rustix::fs::{Mode, OFlags};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The implicit job file, relative to the working directory.
pub const IMPLICIT: &str = "coffer.toml";

/// A job file is a few kilobytes; anything this large is not one.
const MAX_LEN: u64 = 4 << 20;

/// A job file as read at start.
#[derive(Debug)]
pub struct JobFile {
    /// As given (`--config F`), or `coffer.toml`.
    pub path: PathBuf,
    /// Found in the working directory rather than named with `--config`.
    pub implicit: bool,
    pub text: String,
}

impl JobFile {
    /// How messages name it: `./coffer.toml`, or the path given.
    pub fn shown(&self) -> String {
        if self.implicit {
            format!("./{IMPLICIT}")
        } else {
            self.path.display().to_string()
        }
    }
}

/// What start-up found: the job file, or why `./coffer.toml` was passed over.
#[derive(Debug, Default)]
pub struct Found {
    pub file: Option<JobFile>,
    pub refused: Option<String>,
}

/// Read `--config F`, or `./coffer.toml` if it is there and trustworthy. Warnings (a refused
/// implicit file, an explicit file others may write) are printed once, here.
pub fn find(config: Option<&Path>) -> Result<Found> {
    if let Some(path) = config {
        let text = read_explicit(path)?;
        return Ok(Found {
            file: Some(JobFile {
                path: path.to_path_buf(),
                implicit: false,
                text,
            }),
            refused: None,
        });
    }
    match read_implicit() {
        Ok(None) => Ok(Found::default()),
        Ok(Some(text)) => Ok(Found {
            file: Some(JobFile {
                path: PathBuf::from(IMPLICIT),
                implicit: true,
                text,
            }),
            refused: None,
        }),
        Err(why) => {
            eprintln!(
                "coffer: warning: ignoring ./{IMPLICIT}: {why}; name it with --config if you \
                 mean to use it"
            );
            Ok(Found {
                file: None,
                refused: Some(why),
            })
        }
    }
}

/// Read `f` again, as it was found: a daemon takes edits to its job file, and an implicit
/// `./coffer.toml` must pass the same checks every time.
pub fn reread(f: &JobFile) -> Result<String> {
    if !f.implicit {
        return read_explicit(&f.path);
    }
    match read_implicit() {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(Error::not_found(format!("./{IMPLICIT} is gone"))),
        Err(why) => Err(Error::invalid(format!(
            "./{IMPLICIT} is no longer trusted: {why}"
        ))),
    }
}

/// `--config F`: followed through symlinks and read whoever owns it, as the user asked; a
/// file that others may change is worth a warning all the same.
fn read_explicit(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::invalid(format!(
            "job file {} does not exist (check --config)",
            path.display()
        )),
        _ => Error::io(format!("job file {}", path.display()), e),
    })?;
    let mode = {
        use std::os::unix::fs::MetadataExt;
        file.metadata()
            .map_err(|e| Error::io(format!("job file {}", path.display()), e))?
            .mode()
    };
    if mode & 0o022 != 0 {
        eprintln!(
            "coffer: warning: job file {} is writable by group or others (mode {:o}): whoever \
             can change it chooses the repository and the jobs (chmod go-w it)",
            path.display(),
            mode & 0o7777
        );
    }
    read_text(file, &path.display().to_string())
}

/// `./coffer.toml`: `None` when there is none; the reason when it must not be trusted.
fn read_implicit() -> std::result::Result<Option<String>, String> {
    // NONBLOCK: a FIFO of that name must not hang every command run in the folder.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(IMPLICIT, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => return Err("it is a symbolic link".into()),
        Err(e) => return Err(format!("it cannot be opened ({e})")),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("it cannot be examined ({e})"))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err("it is not a regular file".into());
    }
    let me = rustix::process::geteuid().as_raw();
    if st.st_uid != me && st.st_uid != 0 {
        return Err(format!(
            "it belongs to uid {}, not to you (uid {me}) or root",
            st.st_uid
        ));
    }
    let mode = st.st_mode as u32 & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!("it is writable by group or others (mode {mode:o})"));
    }
    read_text(std::fs::File::from(fd), "./coffer.toml")
        .map(Some)
        .map_err(|e| e.to_string())
}

fn read_text(file: std::fs::File, shown: &str) -> Result<String> {
    let mut text = String::new();
    file.take(MAX_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::io(format!("job file {shown}"), e))?;
    if text.len() as u64 > MAX_LEN {
        return Err(Error::invalid(format!(
            "job file {shown} is larger than {} MiB; it cannot be a job file",
            MAX_LEN >> 20
        )));
    }
    Ok(text)
}
