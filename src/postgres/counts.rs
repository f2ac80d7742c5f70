//! Counting rows in a plain-SQL dump as it streams past.
//!
//! `pg_dump` writes each table's data as a block:
//!
//! ```text
//! -- Data for Name: users; Type: TABLE DATA; Schema: public; Owner: app
//! --
//!
//! COPY public.users (id, name) FROM stdin;
//! 1<TAB>alice
//! \.
//! ```
//!
//! In COPY text format every row is exactly one line (newlines, tabs and backslashes inside
//! values are escaped), and `\.` alone on a line ends the block, so counting lines gives
//! the exact number of rows in the dump, which is what the dump's own snapshot saw. A
//! `COPY` line counts only right after a "TABLE DATA" header, so SQL text that merely
//! looks like one (inside a function body) is not mistaken for data.

use std::io::Read;

/// Lines between a data header and its COPY line (`--` and an empty line).
const HEADER_REACH: u32 = 3;
/// Longest line kept for inspection outside COPY data; longer ones (big function bodies,
/// view definitions) are never headers, so their tails are dropped.
const MAX_LINE: usize = 64 * 1024;

#[derive(Default)]
pub struct DumpScanner {
    /// The line that says the dump is complete (`pg_dump` writes it last).
    complete_marker: &'static str,
    pub complete: bool,
    /// Tables in dump order, as the dump names them (`public.users`, `billing."Weird"`).
    pub counts: Vec<(String, u64)>,
    line: Vec<u8>,
    line_truncated: bool,
    /// Lines left in which a COPY line may follow a data header.
    after_header: u32,
    /// Inside a COPY block: rows so far.
    in_copy: Option<u64>,
}

impl DumpScanner {
    pub fn new(complete_marker: &'static str) -> Self {
        DumpScanner {
            complete_marker,
            ..Default::default()
        }
    }

    /// Inside the data of a COPY block (as of the start of the current line).
    pub fn in_copy(&self) -> bool {
        self.in_copy.is_some()
    }

    /// The line that marks a complete dump.
    pub fn marker(&self) -> &'static str {
        self.complete_marker
    }

    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match data.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    self.push(&data[..i]);
                    self.end_line();
                    data = &data[i + 1..];
                }
                None => {
                    self.push(data);
                    return;
                }
            }
        }
    }

    fn push(&mut self, part: &[u8]) {
        // Inside COPY data only `\.` matters: three bytes are enough to recognise it.
        let keep = if self.in_copy.is_some() { 3 } else { MAX_LINE };
        let room = keep.saturating_sub(self.line.len());
        if part.len() > room {
            self.line_truncated = true;
        }
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let truncated = std::mem::replace(&mut self.line_truncated, false);
        if let Some(rows) = &mut self.in_copy {
            if line == b"\\." && !truncated {
                let rows = *rows;
                if let Some(last) = self.counts.last_mut() {
                    last.1 = rows;
                }
                self.in_copy = None;
            } else {
                *rows += 1;
            }
            return;
        }
        if truncated {
            self.after_header = self.after_header.saturating_sub(1);
            return;
        }
        let text = String::from_utf8_lossy(&line);
        if text.starts_with("-- Data for Name: ") && text.contains("; Type: TABLE DATA;") {
            self.after_header = HEADER_REACH;
            return;
        }
        if self.after_header > 0 {
            self.after_header -= 1;
            if let Some(table) = copy_table(&text) {
                self.counts.push((table, 0));
                self.in_copy = Some(0);
                self.after_header = 0;
                return;
            }
        }
        if text == self.complete_marker {
            self.complete = true;
        }
    }
}

/// The table a `COPY name (columns) FROM stdin;` line loads, as written there.
fn copy_table(line: &str) -> Option<String> {
    let rest = line.strip_prefix("COPY ")?;
    if !line.ends_with(" FROM stdin;") {
        return None;
    }
    // A qualified name: identifiers, bare or double-quoted ("" inside quotes is a quote),
    // joined by dots.
    let b = rest.as_bytes();
    let mut i = 0;
    loop {
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match b.get(i) {
                    Some(b'"') if b.get(i + 1) == Some(&b'"') => i += 2,
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                    None => return None,
                }
            }
        } else {
            let start = i;
            while b.get(i).is_some_and(|c| !matches!(c, b'.' | b' ' | b'"')) {
                i += 1;
            }
            if i == start {
                return None;
            }
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
        } else {
            break;
        }
    }
    (b.get(i) == Some(&b' ')).then(|| rest[..i].to_string())
}

/// A reader that shows every byte it passes on to a scanner.
pub struct ScanReader<'s, R> {
    pub inner: R,
    pub scanner: &'s mut DumpScanner,
}

impl<R: Read> Read for ScanReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scanner.feed(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\n\
CREATE FUNCTION f() RETURNS void AS $$\nCOPY public.fake (a) FROM stdin;\n$$ LANGUAGE sql;\n\n\
--\n-- Data for Name: Weird Name; Type: TABLE DATA; Schema: billing; Owner: postgres\n--\n\n\
COPY billing.\"Weird Name\" (id, \"select\") FROM stdin;\n1\tx\n2\t\\\\.\n\\.\n\n\n\
--\n-- Data for Name: empty; Type: TABLE DATA; Schema: public; Owner: postgres\n--\n\n\
COPY public.empty (id) FROM stdin;\n\\.\n\n\n\
--\n-- Data for Name: users; Type: TABLE DATA; Schema: public; Owner: app\n--\n\n\
COPY public.users (id, name, data) FROM stdin;\n1\tu1\t{\"s\": \"a\\\\nb\"}\n2\tu2\t\\N\n3\t-- Data for Name: x; Type: TABLE DATA;\t\\N\n\\.\n\n\
--\n-- PostgreSQL database dump complete\n--\n\n";

    fn scan_in_pieces(size: usize) -> DumpScanner {
        let mut s = DumpScanner::new("-- PostgreSQL database dump complete");
        for piece in DUMP.as_bytes().chunks(size) {
            s.feed(piece);
        }
        s
    }

    #[test]
    fn counts_rows_of_each_copy_block() {
        for size in [1, 2, 3, 7, 64, 100_000] {
            let s = scan_in_pieces(size);
            assert_eq!(
                s.counts,
                vec![
                    ("billing.\"Weird Name\"".to_string(), 2),
                    ("public.empty".to_string(), 0),
                    ("public.users".to_string(), 3),
                ],
                "pieces of {size}"
            );
            assert!(s.complete);
        }
    }

    #[test]
    fn an_unfinished_dump_is_not_complete() {
        let cut = DUMP.find("-- PostgreSQL database dump complete").unwrap();
        let mut s = DumpScanner::new("-- PostgreSQL database dump complete");
        s.feed(&DUMP.as_bytes()[..cut]);
        assert!(!s.complete);
    }

    #[test]
    fn copy_lines() {
        assert_eq!(
            copy_table("COPY a.b (x) FROM stdin;").as_deref(),
            Some("a.b")
        );
        assert_eq!(
            copy_table("COPY \"a.\"\" b\".\"c d\" (x) FROM stdin;").as_deref(),
            Some("\"a.\"\" b\".\"c d\"")
        );
        assert_eq!(copy_table("COPY t FROM stdin;").as_deref(), Some("t"));
        assert_eq!(copy_table("COPY \"unterminated (x) FROM stdin;"), None);
        assert_eq!(copy_table("COPY t (x) TO stdout;"), None);
    }
}
