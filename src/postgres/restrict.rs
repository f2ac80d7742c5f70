//! Nothing in a snapshot may run a psql meta-command.
//!
//! A restore pipes SQL text from the snapshot into `psql`, which also obeys backslash
//! commands: `\!` runs a shell command, `\o |cmd` and `\copy ... program` run programs,
//! `\connect` goes elsewhere, `\set ON_ERROR_STOP` turns off stopping at errors. Anyone who
//! holds the repository's password can store a snapshot, so a snapshot is no more trusted
//! than the least trusted machine that backs up into the repository.
//!
//! psql 17.6, 16.10, 15.14, 14.19 and 13.22 (CVE-2025-8714) added restricted mode:
//! after `\restrict KEY`, every backslash command but `\unrestrict KEY` fails. coffer sends
//! `\restrict` with a random key of its own as the first line, and `\unrestrict` with it
//! after the last, so the snapshot cannot know the key. With `ON_ERROR_STOP` a refused
//! command stops psql, and `--single-transaction` then commits nothing. The guarantee comes
//! from psql, not from any parsing here: the only lines this module drops are the dump's own
//! `\restrict` and `\unrestrict` (pg_dump writes them at the start and the end), which the
//! restricted psql would refuse.

use super::counts::DumpScanner;
use super::tools::Tool;
use crate::error::{Error, ErrorKind, Result};
use std::io::{self, Write};

/// For each major version, the first minor release whose psql has `\restrict`; every
/// release from 18 on has it.
const RESTRICT_SINCE: &[(u32, u32)] = &[(13, 22), (14, 19), (15, 14), (16, 10), (17, 6)];

/// Refuse a psql that has no restricted mode: it would run the meta-commands of a crafted
/// snapshot.
pub fn require(psql: &Tool) -> Result<()> {
    let minor = minor_of(&psql.version);
    let supported = psql.major >= 18
        || RESTRICT_SINCE
            .iter()
            .any(|(major, since)| *major == psql.major && minor.is_some_and(|m| m >= *since));
    if supported {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Unsupported,
        format!(
            "psql {} ({}) is too old to restore a snapshot safely: it lacks \\restrict (psql \
             17.6, 16.10, 15.14, 14.19, 13.22 and later have it), without which a snapshot \
             could run shell commands on this machine through psql meta-commands such as \
             \\!; install a current PostgreSQL client or give --pg-bin DIR with one",
            psql.version,
            psql.path.display()
        ),
    ))
}

/// `18` from "15.18 (Debian 15.18-0+deb12u1)".
fn minor_of(version: &str) -> Option<u32> {
    let (_, rest) = version.split_once('.')?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// A random key nobody else knows (hex of 32 random bytes).
fn new_key() -> String {
    hex::encode(crate::crypto::random_bytes::<32>())
}

/// Is this line (or its first bytes) one of the dump's own `\restrict KEY` or
/// `\unrestrict KEY` lines?
fn is_own_restrict(line: &[u8]) -> bool {
    [&b"\\restrict"[..], b"\\unrestrict"].iter().any(|cmd| {
        line.starts_with(cmd)
            && matches!(
                line.get(cmd.len()),
                None | Some(b' ' | b'\t' | b'\r' | b'\n')
            )
    })
}

/// Bytes enough to tell an `is_own_restrict` line from any other.
const DECIDE: usize = b"\\unrestrict".len() + 1;

/// A writer that passes a dump on to psql in restricted mode: `\restrict KEY` first, the
/// dump without its own `\restrict`/`\unrestrict` lines, and `\unrestrict KEY` at `finish`.
/// Lines of COPY data pass as they are (a row whose value starts with a carriage return is
/// written as `\r...` and may read `\restrict`); the COPY blocks are found as the row counts
/// are (`counts.rs`). Lines may be of any length: only their first bytes are held back.
pub struct Restricted<W: Write> {
    inner: W,
    key: String,
    /// `\restrict KEY` was written (it goes before the first byte of the dump).
    started: bool,
    scanner: DumpScanner,
    /// What happens to the rest of the current line.
    line: Line,
    /// The current line's first bytes while `line` is `Undecided`.
    pending: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq)]
enum Line {
    Undecided,
    Pass,
    Drop,
}

impl<W: Write> Restricted<W> {
    /// Nothing is written yet: `\restrict KEY` goes out with the first write.
    pub fn new(inner: W) -> Self {
        Restricted {
            inner,
            key: new_key(),
            started: false,
            scanner: DumpScanner::default(),
            line: Line::Undecided,
            pending: Vec::with_capacity(DECIDE),
        }
    }

    fn start(&mut self) -> io::Result<()> {
        if !self.started {
            self.inner
                .write_all(format!("\\restrict {}\n", self.key).as_bytes())?;
            self.started = true;
        }
        Ok(())
    }

    /// End the script, once the whole dump went through. (A dump that ends inside a string
    /// or a COPY block swallows this line: psql then ends still restricted, which is fine.)
    /// The writer stays open: closing psql's input is the caller's decision.
    pub fn finish(&mut self) -> io::Result<()> {
        self.start()?;
        if self.line == Line::Undecided && !self.pending.is_empty() {
            self.decide()?;
        }
        let end = format!("\n\\unrestrict {}\n", self.key);
        self.inner.write_all(end.as_bytes())?;
        self.inner.flush()
    }

    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Drop the held-back start of a line or pass it on.
    fn decide(&mut self) -> io::Result<()> {
        if !self.scanner.in_copy() && is_own_restrict(&self.pending) {
            self.line = Line::Drop;
        } else {
            self.inner.write_all(&self.pending)?;
            self.line = Line::Pass;
        }
        self.pending.clear();
        Ok(())
    }

    /// A piece of one line (ending with its '\n', if `ends`).
    fn piece(&mut self, piece: &[u8], ends: bool) -> io::Result<()> {
        match self.line {
            Line::Undecided => {
                self.pending.extend_from_slice(piece);
                if self.pending.len() >= DECIDE || ends {
                    self.decide()?;
                }
            }
            Line::Pass => self.inner.write_all(piece)?,
            Line::Drop => {}
        }
        // The scanner changes state only at the end of a line, so `in_copy` above was the
        // state at the line's start.
        self.scanner.feed(piece);
        if ends {
            self.line = Line::Undecided;
        }
        Ok(())
    }
}

impl<W: Write> Write for Restricted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.start()?;
        let mut rest = buf;
        while !rest.is_empty() {
            let (piece, ends) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..=i], true),
                None => (rest, false),
            };
            self.piece(piece, ends)?;
            rest = &rest[piece.len()..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A whole script (`globals.sql`, read into memory) made safe for psql: in restricted mode,
/// and refused before anything runs if a line starts with a meta-command other than the
/// dump's own `\restrict`/`\unrestrict`. The globals are not restored in one transaction
/// (CREATE TABLESPACE cannot be), so this check keeps the statements before such a line from
/// being committed; restricted mode still refuses a meta-command placed anywhere else.
pub fn script(sql: &str, what: &str) -> Result<String> {
    for (n, line) in sql.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with('\\') && !is_own_restrict(line.as_bytes()) {
            let command: String = line.chars().take(20).collect();
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{what} line {} starts with the psql meta-command {command:?}, which \
                     pg_dumpall never writes: the snapshot was altered or crafted; nothing \
                     was restored",
                    n + 1
                ),
            ));
        }
    }
    let mut out = Restricted::new(Vec::with_capacity(sql.len() + 200));
    out.write_all(sql.as_bytes())
        .and_then(|_| out.finish())
        .map_err(|e| Error::io("preparing the script for psql", e))?;
    // Only whole lines were dropped, so the text is still UTF-8.
    Ok(String::from_utf8_lossy(&out.into_inner()).into_owned())
}

/// A clearer message for psql's refusal of a meta-command, if that is why it failed.
pub fn explain(psql_stderr: &str) -> Option<String> {
    let refused = psql_stderr.contains("backslash commands are restricted")
        || psql_stderr.contains("\\unrestrict: wrong key");
    refused.then(|| {
        "the snapshot's SQL holds a psql meta-command (a backslash command such as \\! or \
         \\connect), which coffer does not let psql run: pg_dump never writes one (but \
         \\restrict), so the snapshot was altered or crafted"
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(version: &str) -> Tool {
        Tool {
            path: "/usr/bin/psql".into(),
            version: version.into(),
            major: version
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap(),
        }
    }

    #[test]
    fn psql_versions() {
        for ok in [
            "15.18 (Debian 15.18-0+deb12u1)",
            "15.14",
            "13.22",
            "17.6",
            "18.0",
            "19beta1",
        ] {
            assert!(require(&tool(ok)).is_ok(), "{ok}");
        }
        for old in [
            "15.13",
            "16.9 (Ubuntu 16.9-0ubuntu0.24.04.1)",
            "12.22",
            "9.6.24",
            "14",
        ] {
            let e = require(&tool(old)).unwrap_err();
            assert!(e.to_string().contains("too old"), "{old}: {e}");
            assert_eq!(e.kind(), ErrorKind::Unsupported);
        }
    }

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\\restrict DumpKey1\n\n\
SET lock_timeout = 0;\n\n\
--\n-- Data for Name: t; Type: TABLE DATA; Schema: public; Owner: postgres\n--\n\n\
COPY public.t (a, b) FROM stdin;\n\\N\tx\n\\restrict is data\n\\unrestrict\tdata\n\\.\n\n\
--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict DumpKey1\n\n";

    fn restricted(input: &[u8], piece: usize) -> String {
        let mut r = Restricted::new(Vec::new());
        for p in input.chunks(piece) {
            r.write_all(p).unwrap();
        }
        r.finish().unwrap();
        String::from_utf8(r.into_inner()).unwrap()
    }

    #[test]
    fn own_key_around_the_dump_without_its_own_lines() {
        for piece in [1, 2, 5, 11, 12, 13, 64, 10_000] {
            let out = restricted(DUMP.as_bytes(), piece);
            let lines: Vec<&str> = out.lines().collect();
            let first = lines[0].strip_prefix("\\restrict ").expect("own key first");
            assert_eq!(first.len(), 64);
            assert_eq!(
                lines.last(),
                Some(&format!("\\unrestrict {first}").as_str())
            );
            assert!(!out.contains("DumpKey1"), "pieces of {piece}: {out}");
            // COPY data is untouched, including lines that look like the commands.
            assert!(
                out.contains("FROM stdin;\n\\N\tx\n\\restrict is data\n\\unrestrict\tdata\n\\.\n"),
                "{out}"
            );
            let expected = DUMP
                .replace("\\restrict DumpKey1\n", "")
                .replace("\\unrestrict DumpKey1\n", "");
            assert_eq!(
                out,
                format!("\\restrict {first}\n{expected}\n\\unrestrict {first}\n")
            );
        }
        // Two restores never share a key.
        assert_ne!(restricted(b"", 1), restricted(b"", 1));
    }

    #[test]
    fn a_dump_without_a_final_line_break() {
        let out = restricted(b"SELECT 1;\n\\restrict", 3);
        assert!(out.contains("\nSELECT 1;\n\n\\unrestrict "), "{out}");
        let out = restricted(b"SELECT 1;", 4);
        assert!(out.contains("\nSELECT 1;\n\\unrestrict "), "{out}");
    }

    #[test]
    fn scripts_with_meta_commands_are_refused() {
        let ok = script(
            "\\restrict K\nCREATE ROLE a;\n\\unrestrict K\n",
            "globals.sql",
        )
        .unwrap();
        assert!(
            ok.starts_with("\\restrict ") && !ok.contains(" K\n"),
            "{ok}"
        );
        assert!(ok.contains("\nCREATE ROLE a;\n"));
        for bad in [
            "CREATE ROLE a;\n\\! id\n",
            "  \\connect x\n",
            "\\set ON_ERROR_STOP 0\n",
        ] {
            let e = script(bad, "globals.sql").unwrap_err();
            assert!(e.to_string().contains("meta-command"), "{e}");
        }
    }
}
