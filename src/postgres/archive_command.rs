//! Writing an `archive_command` and a `postgresql.conf` line that run exactly the words meant.
//!
//! The text passes through three readers, and each must get back what the one before wrote:
//! 1. `postgresql.conf` (or `ALTER SYSTEM`, which writes `postgresql.auto.conf`): a value in
//!    single quotes, where `''` is a quote and a backslash starts an escape (`\\`, `\n`...);
//! 2. the archiver, which replaces `%p` (the segment's path), `%f` (its name) and `%%` in
//!    the whole text, and in PostgreSQL 15 builds the result in a buffer of `MAXPGPATH`
//!    (1024) bytes, silently cutting what does not fit;
//! 3. `/bin/sh -c`, which splits words and expands `$`, `` ` ``, `~`, globs...
//!
//! So every word is single-quoted for the shell unless it is made of characters no shell
//! treats specially, every `%` is doubled, and the value is quoted for the configuration
//! file last. A word with a control character (a line break would end the value in the
//! file, and a shell would see two commands) is refused, and so is a command that PostgreSQL
//! 15 would cut short.

use crate::error::{Error, Result};

/// `MAXPGPATH - 1`: the longest command PostgreSQL 15's archiver runs whole.
const MAX_COMMAND_BYTES: usize = 1023;
/// Room for what `%p` becomes: `pg_wal/` and a file name, the longest being a backup
/// history file (`pg_wal/000000010000000000000003.00000028.backup`, 47 bytes).
const PATH_ALLOWANCE: usize = 64;

/// Characters that mean nothing special to a POSIX shell anywhere in a word. `%` is not
/// among them only because PostgreSQL reads it first; `=` is fine since no word here can be
/// an assignment (the program is an absolute path).
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_./:=@,+-".contains(c)
}

/// One word for `/bin/sh`: as it is if it is plain, else in single quotes (inside which
/// nothing is special; a quote is written `'\''`).
fn shell_word(word: &str) -> String {
    if !word.is_empty() && word.chars().all(plain) {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The command PostgreSQL should run: each of `words` quoted for the shell and for
/// PostgreSQL's `%` escapes, then `tail` as it is (it holds the placeholders, e.g.
/// `wal-push %p`). `what` names the command in messages (`archive_command`).
pub fn shell_command(what: &str, words: &[&str], tail: &str) -> Result<String> {
    for w in words {
        if let Some(c) = w.chars().find(|c| c.is_control()) {
            return Err(Error::invalid(format!(
                "{what} cannot hold {} safely: it contains the control character {:?}; \
                 use a path or URL without it",
                w.escape_debug(),
                c
            )));
        }
    }
    let mut text = words
        .iter()
        .map(|w| shell_word(w).replace('%', "%%"))
        .collect::<Vec<_>>()
        .join(" ");
    if !tail.is_empty() {
        text.push(' ');
        text.push_str(tail);
    }
    let run_length = expanded_length(&text);
    if run_length > MAX_COMMAND_BYTES {
        return Err(Error::invalid(format!(
            "{what} would be {run_length} bytes long once PostgreSQL puts in the segment's \
             path, and PostgreSQL 15 cuts a command after {MAX_COMMAND_BYTES}: use shorter \
             paths (the coffer binary, the repository, the password file)"
        )));
    }
    Ok(text)
}

/// The length of `command` as the archiver runs it, at most: `%%` is one byte, `%p` and
/// `%f` at most [`PATH_ALLOWANCE`].
fn expanded_length(command: &str) -> usize {
    let mut n = 0;
    let mut bytes = command.bytes();
    while let Some(b) = bytes.next() {
        n += match (b, b == b'%') {
            (_, true) => match bytes.next() {
                Some(b'p' | b'f') => PATH_ALLOWANCE,
                Some(b'%') => 1,
                Some(_) => 2,
                None => 1,
            },
            _ => 1,
        };
    }
    n
}

/// A value for `postgresql.conf`: in single quotes, with `'` and `\` escaped the way the
/// file's reader (and `ALTER SYSTEM`'s writer) does.
pub fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What PostgreSQL's archiver does before the shell sees the command.
    fn substitute(command: &str, path: &str) -> String {
        let mut out = String::new();
        let mut chars = command.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('p') => out.push_str(path),
                Some('%') => out.push('%'),
                Some(o) => {
                    out.push('%');
                    out.push(o);
                }
                None => out.push('%'),
            }
        }
        out
    }

    #[test]
    fn the_shell_gets_back_every_word() {
        // A stand-in program that prints its arguments, one per line: the words must reach
        // it unchanged, whatever they hold.
        let words = [
            "/bin/sh",
            "-c",
            "printf '%s\\n' \"$@\"",
            "sh",
            "--repo=/srv/it's a $HOME `x` ~ *",
            "--repo=eu=s3://b/p?endpoint=http://h:9000&region=r%20x",
            "--password-file=/etc/%p \\ \"q\"",
            "",
        ];
        let cmd = shell_command("archive_command", &words, "wal-push %p").unwrap();
        let run = substitute(&cmd, "pg_wal/000000010000000000000001");
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&run)
            .output()
            .unwrap();
        assert!(out.status.success(), "{run}");
        let printed = String::from_utf8(out.stdout).unwrap();
        let mut expected: Vec<&str> = words[4..].to_vec();
        expected.extend(["wal-push", "pg_wal/000000010000000000000001"]);
        assert_eq!(printed, expected.join("\n") + "\n", "{cmd}");
    }

    #[test]
    fn plain_words_stay_readable() {
        let cmd = shell_command(
            "archive_command",
            &[
                "/usr/bin/coffer",
                "--repo=/srv/coffer",
                "--password-file=/etc/pw",
            ],
            "wal-push %p",
        )
        .unwrap();
        assert_eq!(
            cmd,
            "/usr/bin/coffer --repo=/srv/coffer --password-file=/etc/pw wal-push %p"
        );
    }

    #[test]
    fn control_characters_and_overlong_commands_are_refused() {
        for bad in ["/srv/a\nrm -rf /", "/srv/tab\there", "/srv/esc\u{1b}"] {
            let e = shell_command("archive_command", &["/bin/coffer", bad], "").unwrap_err();
            assert!(e.to_string().contains("control character"), "{e}");
        }
        // "/c " + word + " wal-push " + the path: the word may be 1023 - 77 bytes long.
        let long = format!("--repo=/{}", "a".repeat(MAX_COMMAND_BYTES - 77 - 8));
        assert!(shell_command("archive_command", &["/c", &long], "wal-push %p").is_ok());
        let longer = format!("--repo=/{}", "a".repeat(MAX_COMMAND_BYTES - 77 - 7));
        let e = shell_command("archive_command", &["/c", &longer], "wal-push %p").unwrap_err();
        assert!(e.to_string().contains("cuts a command after 1023"), "{e}");
    }

    #[test]
    fn percent_signs_count_once_doubled() {
        assert_eq!(expanded_length("a%%b"), 3);
        assert_eq!(expanded_length("x %p"), 2 + PATH_ALLOWANCE);
        assert_eq!(expanded_length("%"), 1);
    }

    #[test]
    fn conf_values_escape_quotes_and_backslashes() {
        assert_eq!(conf_value(r"a'b\c %p"), r"'a''b\\c %p'");
    }
}
