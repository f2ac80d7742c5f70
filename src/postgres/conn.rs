//! How the client programs reach a server: the URL without its secrets on the command line,
//! the secrets in private temporary files that libpq reads, and an environment cleared of
//! everything but what libpq and the programs need.
//!
//! A secret on a command line is shown by `ps` to every user of the machine; one in the
//! environment (`PGPASSWORD`) stays readable in `/proc/PID/environ` for as long as the
//! program runs, and is inherited by anything it starts. So the password goes into a
//! password file (`PGPASSFILE`, which can hold any character but a line break), and the other
//! secret parameters (`sslpassword`, ...) into a service file (`PGSERVICEFILE`), both created
//! 0600 with unpredictable names (`tempfile`) and deleted when the last command using them
//! is done.

use super::tools::Tool;
use super::url::PgUrl;
use crate::error::{Error, Result};
use std::fmt;
use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use tempfile::NamedTempFile;

/// The name of coffer's section in its own service file.
const SERVICE: &str = "coffer";

/// A connection for the client programs. Cheap to clone; the secret files live until the
/// last clone is dropped, so keep one alive while a program runs.
#[derive(Clone)]
pub struct Conn {
    url: PgUrl,
    files: Arc<SecretFiles>,
}

struct SecretFiles {
    passfile: Option<NamedTempFile>,
    service: Option<NamedTempFile>,
}

impl Conn {
    /// Write the URL's secrets (if any) into their files.
    pub fn new(url: PgUrl) -> Result<Conn> {
        let passfile = match url.password() {
            Some(pw) => Some(secret_file(&passfile_line(pw)?)?),
            None => None,
        };
        let others: Vec<(&str, &str)> = url.secrets().filter(|(k, _)| *k != "password").collect();
        let service = if others.is_empty() {
            None
        } else {
            if url.param("service").is_some() || std::env::var_os("PGSERVICE").is_some() {
                return Err(Error::invalid(format!(
                    "{url}: a URL with {} cannot also name a libpq service (service= or \
                     PGSERVICE), because coffer hands those secrets over in a service file of \
                     its own; put them into your service file instead",
                    others
                        .iter()
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(" and ")
                )));
            }
            let mut text = format!("[{SERVICE}]\n");
            for (k, v) in &others {
                text.push_str(&service_line(k, v)?);
            }
            Some(secret_file(&text)?)
        };
        Ok(Conn {
            url,
            files: Arc::new(SecretFiles { passfile, service }),
        })
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, db: &str) -> Conn {
        Conn {
            url: self.url.with_database(db),
            files: self.files.clone(),
        }
    }

    /// A command for `tool` connecting here: never a prompt, the secrets from their files,
    /// and only the allowed environment (`PG*` passes, so `~/.pgpass`, `PGSSLMODE` and the
    /// like work as usual, except the variables coffer sets itself).
    pub fn command(&self, tool: &Tool) -> Command {
        let mut c = Command::new(&tool.path);
        crate::child_env::restrict(&mut c, |name| name.starts_with("PG") && !self.sets(name));
        c.arg("--no-password");
        c.arg(format!("--dbname={}", self.url));
        if let Some(f) = &self.files.passfile {
            c.env("PGPASSFILE", f.path());
        }
        if let Some(f) = &self.files.service {
            c.env("PGSERVICEFILE", f.path()).env("PGSERVICE", SERVICE);
        }
        c
    }

    /// Variables that `command` sets or must keep away: `PGPASSWORD` would win over the
    /// password file (libpq reads it first).
    fn sets(&self, name: &str) -> bool {
        let pass = self.files.passfile.is_some() && matches!(name, "PGPASSFILE" | "PGPASSWORD");
        let service = self.files.service.is_some() && matches!(name, "PGSERVICEFILE" | "PGSERVICE");
        pass || service
    }

    /// A program's standard error for a message: trimmed, the secrets masked, and only the
    /// last lines if it is long. A secret too short to mask (masking "ab" in "table" would
    /// show it anyway) withholds the whole text.
    pub fn clean_stderr(&self, stderr: &[u8]) -> String {
        let mut text = String::from_utf8_lossy(stderr).trim().to_string();
        for (_, secret) in self.url.secrets() {
            if secret.is_empty() || !text.contains(secret) {
                continue;
            }
            if secret.chars().count() < 4 {
                return "(its message is not shown: it contains the text of a secret from the \
                        URL that is too short to mask; use a longer password)"
                    .to_string();
            }
            text = text.replace(secret, "****");
        }
        const MAX: usize = 4000;
        if text.len() > MAX {
            let mut cut = text.len() - MAX;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = format!("...{}", &text[cut..]);
        }
        text
    }
}

/// Shown and recorded: the URL without its secrets.
impl fmt::Display for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.url.fmt(f)
    }
}

/// A password file line that matches every server, database and user (`*`), with `\` and `:`
/// escaped as libpq expects.
fn passfile_line(password: &str) -> Result<String> {
    if password.contains(['\n', '\r']) {
        return Err(Error::invalid(
            "the PostgreSQL password contains a line break, which libpq's password file \
             cannot hold",
        ));
    }
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    Ok(format!("*:*:*:*:{escaped}\n"))
}

/// `key=value` for a service file, which has no quoting: libpq drops white space at either
/// end of a line and ends a value at the line's end.
fn service_line(key: &str, value: &str) -> Result<String> {
    if value.contains(['\n', '\r']) || value.trim() != value {
        return Err(Error::invalid(format!(
            "the URL's {key} starts or ends with white space or holds a line break, which \
             libpq's service file cannot hold"
        )));
    }
    Ok(format!("{key}={value}\n"))
}

/// A new 0600 file with an unpredictable name in the temporary folder, holding `text`.
fn secret_file(text: &str) -> Result<NamedTempFile> {
    let io = |e| Error::io("a temporary file for the PostgreSQL credentials", e);
    let mut f = tempfile::Builder::new()
        .prefix(".coffer-pg-")
        .tempfile()
        .map_err(io)?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.flush())
        .map_err(io)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tool() -> Tool {
        Tool {
            path: "/bin/true".into(),
            version: "15.18".into(),
            major: 15,
        }
    }

    #[test]
    fn secrets_go_into_private_files_not_argv() {
        let url =
            PgUrl::parse("postgresql://app:p%3Aw%5Cd@db/app?sslpassword=keypw&sslmode=require")
                .unwrap();
        let conn = Conn::new(url).unwrap();
        let c = conn.command(&tool());
        let args: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            args,
            [
                "--no-password",
                "--dbname=postgresql://app@db/app?sslmode=require"
            ]
        );
        let env = crate::child_env::planned(&c);
        let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let passfile = var("PGPASSFILE").unwrap();
        assert_eq!(
            std::fs::read_to_string(&passfile).unwrap(),
            "*:*:*:*:p\\:w\\\\d\n"
        );
        let service = var("PGSERVICEFILE").unwrap();
        assert_eq!(
            std::fs::read_to_string(&service).unwrap(),
            "[coffer]\nsslpassword=keypw\n"
        );
        assert_eq!(var("PGSERVICE").as_deref(), Some("coffer"));
        for f in [&passfile, &service] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
        assert!(env.iter().all(|(_, v)| !v.contains("keypw")));
        // The files go with the last clone.
        let other = conn.with_database("postgres");
        drop(conn);
        assert!(std::path::Path::new(&passfile).exists());
        drop(other);
        assert!(!std::path::Path::new(&passfile).exists());
        assert!(!std::path::Path::new(&service).exists());
    }

    #[test]
    fn no_secrets_no_files() {
        let conn = Conn::new(PgUrl::parse("postgresql://app@db/app").unwrap()).unwrap();
        let env = crate::child_env::planned(&conn.command(&tool()));
        assert!(env
            .iter()
            .all(|(k, _)| k != "PGPASSFILE" && k != "PGSERVICEFILE"));
    }

    #[test]
    fn stderr_is_masked_or_withheld() {
        let conn = Conn::new(PgUrl::parse("postgresql://u:hunter2@h/db").unwrap()).unwrap();
        assert_eq!(
            conn.clean_stderr(b" bad password hunter2 \n"),
            "bad password ****"
        );
        let short = Conn::new(PgUrl::parse("postgresql://u:ab@h/db").unwrap()).unwrap();
        let text = short.clean_stderr(b"relation \"table_ab\" does not exist");
        assert!(!text.contains("ab\""), "{text}");
        assert!(text.contains("not shown"), "{text}");
        assert_eq!(short.clean_stderr(b"no such thing"), "no such thing");
    }

    #[test]
    fn unrepresentable_secrets_are_refused() {
        assert!(passfile_line("a\nb").is_err());
        assert!(service_line("sslpassword", " x").is_err());
        assert!(service_line("sslpassword", "x\n").is_err());
    }
}
