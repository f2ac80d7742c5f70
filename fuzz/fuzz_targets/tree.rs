//! `Tree::decode` and `ChunkList::decode`. Both are blob plaintexts (the pack layer has
//! already authenticated and decompressed them), so the input is fed to both as is.
//!
//! Whenever decoding succeeds: re-encoding gives the same bytes, `Tree::new` accepts the
//! nodes unchanged, every name is a safe path component and `get` finds every node.
#![no_main]

use coffer::format::tree::{is_valid_name, ChunkList, Tree, MAX_LIST_LEVEL};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data) {
        assert_eq!(tree.encode(), data, "tree does not round-trip");
        for n in &tree.nodes {
            assert!(is_valid_name(&n.name));
            assert!(!n.name.contains(&b'/'));
            assert_eq!(tree.get(&n.name), Some(n));
        }
        let rebuilt = Tree::new(tree.nodes.clone()).expect("Tree::new rejects a decoded tree");
        assert_eq!(rebuilt, tree);
    }
    if let Ok(list) = ChunkList::decode(data) {
        assert!(list.level <= MAX_LIST_LEVEL);
        assert_eq!(list.encode(), data, "chunk list does not round-trip");
    }
});
