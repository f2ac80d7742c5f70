//! Text for a terminal. File names and object keys come from whoever could create a file in a
//! backed-up folder or bucket, and a name holding escape sequences would retitle the window,
//! rewrite what is on screen or worse in an admin's terminal (security review L9). Human
//! output therefore shows every control character (C0, DEL and C1) and every byte that is not
//! UTF-8 escaped, `\x1b` style. JSON output keeps names exact: serde escapes them.

use std::fmt::Write as _;

/// A file name or path as raw bytes, on one line: control characters, newline and tab
/// included, and bytes that are not UTF-8 are shown escaped.
pub fn name(bytes: &[u8]) -> String {
    escape(bytes, false)
}

/// A message (an error, a warning) that may quote names: escaped like [`name`], except that
/// newlines and tabs stay, since messages quoting other programs (pg_dump) have several lines.
pub fn text(message: &str) -> String {
    escape(message.as_bytes(), true)
}

/// `coffer: warning: MESSAGE` on stderr, escaped.
pub fn warn(message: &str) {
    eprintln!("coffer: warning: {}", text(message));
}

/// `coffer: error: MESSAGE` on stderr, escaped.
pub fn error(message: &str) {
    eprintln!("coffer: error: {}", text(message));
}

fn escape(bytes: &[u8], keep_layout: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let layout = keep_layout && (c == '\n' || c == '\t');
            match c as u32 {
                // C0 and DEL: one byte each.
                n @ (0..=0x1f | 0x7f) if !layout => {
                    let _ = write!(out, "\\x{n:02x}");
                }
                // C1, a character of its own (two bytes in UTF-8): not to be mistaken for the
                // single stray byte of the same value below.
                n @ 0x80..=0x9f => {
                    let _ = write!(out, "\\u{{{n:x}}}");
                }
                _ => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_and_stray_bytes_are_shown_escaped() {
        assert_eq!(name(b"a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(name(b"tab\there\nnl\x7f"), "tab\\x09here\\x0anl\\x7f");
        assert_eq!(name("c1\u{9b}31m".as_bytes()), "c1\\u{9b}31m");
        assert_eq!(name(b"bad\x9b\xffutf8"), "bad\\x9b\\xffutf8");
        assert_eq!(
            name("caf\u{e9} \u{1F600}".as_bytes()),
            "caf\u{e9} \u{1F600}"
        );
        assert_eq!(text("two\nlines\tand \x1b[2J"), "two\nlines\tand \\x1b[2J");
    }
}
