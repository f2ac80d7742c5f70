//! Which chunker profile a file is cut with (format-spec §10, "Chunk sizes"). A writer's
//! choice: readers follow the chunk list whatever cut it.
//!
//! Large chunks keep the index small, and suit files that are replaced whole or changed in
//! a few places (media, archives, binaries). A database dump or another large text file
//! changes in scattered lines, and 1 MiB chunks would store almost all of it again every
//! night: the same `pg_dump` stored from a file measured 3 times the growth per night of
//! the same dump from stdin (see "Chunk sizes"). So text files cut like streams.

use crate::chunker::ChunkerParams;
use crate::format::config::Config;
use std::io::Read;

/// How much of a file's start is looked at. Like git's binary check: a NUL byte in the
/// first 8,000 bytes means binary (UTF-16 text counts as binary too, which only costs it
/// the smaller chunks).
pub const SNIFF_LEN: usize = 8000;

/// The chunk sizes for content of `size` bytes that starts with `head` (its first
/// `SNIFF_LEN` bytes, or all of it if shorter). Text at least as large as the files
/// profile's smallest chunk gets the stream profile; a smaller file is one chunk either way
/// under the files profile, and stays so.
pub fn for_content(config: &Config, size: u64, head: &[u8]) -> ChunkerParams {
    let files = config.files_chunker;
    let head = &head[..head.len().min(SNIFF_LEN)];
    if size >= files.min as u64 && !head.is_empty() && !head.contains(&0) {
        config.stream_chunker
    } else {
        files
    }
}

/// Read up to `SNIFF_LEN` bytes of `reader`'s start, and give them back with a reader of
/// the whole content: the head first, then the rest.
pub fn sniff<R: Read>(mut reader: R) -> std::io::Result<(Vec<u8>, impl Read)> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    (&mut reader)
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)?;
    Ok((head.clone(), std::io::Cursor::new(head).chain(reader)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::RepoId;

    fn config() -> Config {
        Config::new(RepoId([1; 32]))
    }

    #[test]
    fn large_text_is_cut_like_a_stream() {
        let c = config();
        let text = b"INSERT INTO t VALUES (1, 'a');\n".repeat(300);
        let big = c.files_chunker.min as u64;
        assert_eq!(for_content(&c, big, &text), c.stream_chunker);
        assert_eq!(for_content(&c, 40 << 30, &text), c.stream_chunker);
        // Too small to be more than one chunk under the files profile.
        assert_eq!(for_content(&c, big - 1, &text), c.files_chunker);
    }

    #[test]
    fn binary_and_empty_content_keep_large_chunks() {
        let c = config();
        let big = 100 << 20;
        let mut bin = b"-- looks like text at first\n".repeat(100);
        bin.push(0);
        assert_eq!(for_content(&c, big, &bin), c.files_chunker);
        assert_eq!(for_content(&c, big, b""), c.files_chunker);
        // A NUL beyond the sniffed start is not looked at.
        let mut late = vec![b'x'; SNIFF_LEN];
        late.push(0);
        assert_eq!(for_content(&c, big, &late), c.stream_chunker);
    }

    #[test]
    fn sniffing_gives_every_byte_back() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let (head, mut all) = sniff(&data[..]).unwrap();
        assert_eq!(head, data[..SNIFF_LEN]);
        let mut back = Vec::new();
        all.read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        let (head, _) = sniff(&b"short"[..]).unwrap();
        assert_eq!(head, b"short");
    }
}
