//! Object keys as paths of tree names, reversibly. A key is split on `/`; each segment
//! becomes one name:
//!
//! - `%` is written `%25` and NUL `%00` (so every `%` the escaping writes is followed by
//!   two hex digits);
//! - a segment `.` is written `%2E`, `..` is `%2E%2E`, and an empty segment (`a//b`, a
//!   leading `/`, the end of a `dir/` marker) is a lone `%`;
//! - a key that is also a folder of other keys (`a` next to `a/b`) gets a `%` appended
//!   to its last name (`a%`), which no escaped segment ends with.
//!
//! Every key thus gets its own path, and no file path is a folder path. The manifest
//! records each key's path anyway, so nothing needs to decode names; [`decode_name`]
//! documents (and tests) that they can be.

use std::collections::HashSet;

/// The tree name of one key segment.
pub fn encode_segment(segment: &str) -> String {
    match segment {
        "" => return "%".to_string(),
        "." => return "%2E".to_string(),
        ".." => return "%2E%2E".to_string(),
        _ => {}
    }
    let mut out = String::with_capacity(segment.len());
    for c in segment.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\0' => out.push_str("%00"),
            c => out.push(c),
        }
    }
    out
}

/// The key segment a tree name stands for (the inverse of [`encode_segment`], also for a
/// name with the `%` suffix of a key that is a folder too).
pub fn decode_name(name: &str) -> String {
    let base = match name.strip_suffix('%') {
        Some(b) if !b.is_empty() => b,
        _ => name,
    };
    if base == "%" {
        return String::new();
    }
    let bytes = base.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The tree path (names below `objects/`) of every key, in the same order.
pub fn layout(keys: &[&str]) -> Vec<Vec<String>> {
    let split: Vec<Vec<String>> = keys
        .iter()
        .map(|k| k.split('/').map(encode_segment).collect())
        .collect();
    let mut folders: HashSet<&[String]> = HashSet::new();
    for names in &split {
        for end in 1..names.len() {
            folders.insert(&names[..end]);
        }
    }
    split
        .iter()
        .map(|names| {
            let mut path = names.clone();
            if folders.contains(names.as_slice()) {
                path.last_mut().expect("a key has a segment").push('%');
            }
            path
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(path: &[String]) -> String {
        path.iter()
            .map(|n| decode_name(n))
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn every_key_gets_a_valid_unique_path_that_decodes_back() {
        let keys = [
            "a",
            "a/b",
            "a/",
            "a//b",
            "a//",
            "/lead",
            "./x",
            "../y",
            "x/./.",
            "100%",
            "100%25",
            "%",
            "%%",
            "%/%",
            "nul\0byte",
            "spaces and ünïcode/ファイル.txt",
            "dir/",
            "dir",
            "dir/sub/",
            "trailing%",
        ];
        let paths = layout(&keys);
        let mut seen = HashSet::new();
        let mut folders = HashSet::new();
        for p in &paths {
            for end in 1..p.len() {
                folders.insert(p[..end].to_vec());
            }
        }
        for (key, path) in keys.iter().zip(&paths) {
            for name in path {
                assert!(
                    crate::format::tree::is_valid_name(name.as_bytes()),
                    "{key:?} -> invalid name {name:?}"
                );
            }
            assert!(
                seen.insert(path.clone()),
                "{key:?}: path {path:?} taken twice"
            );
            assert!(
                !folders.contains(path),
                "{key:?}: {path:?} is also a folder"
            );
            assert_eq!(&key_of(path), key, "{path:?} does not decode back");
        }
    }

    #[test]
    fn plain_keys_keep_their_names() {
        assert_eq!(
            layout(&["photos/2026/cat.jpg"]),
            vec![vec!["photos", "2026", "cat.jpg"]]
        );
        assert_eq!(layout(&["a", "a/b"])[0], vec!["a%"]);
        assert_eq!(layout(&["dir/"])[0], vec!["dir", "%"]);
    }
}
