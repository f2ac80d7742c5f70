//! The bucket source end to end on local folders (the file-system service, which has no
//! ETags, so every object is read each time); S3 behaviour is tested against moto in
//! tests/bucket.rs.

use super::*;
use crate::backend::ServiceOptions;
use crate::backup::{backup, BackupOptions};
use crate::progress::NoProgress;
use crate::repo::Repository;
use std::sync::atomic::AtomicBool;

fn memory_repo() -> Repository {
    crate::repo::memory_repository()
}

fn write(dir: &std::path::Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

#[test]
fn a_folder_round_trips_through_a_bucket_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    write(&src, "a.txt", b"hello");
    write(&src, "a/b.bin", &vec![7u8; 9 << 20]);
    write(&src, "deep/er/ü n.txt", b"unicode");
    write(&src, "100%", b"percent");
    let repo = memory_repo();
    let loc = Location::Local(src.clone());
    let opts = BackupOptions {
        host: "test".into(),
        ..Default::default()
    };
    let cancel = AtomicBool::new(false);
    let source = bucket_source(loc.clone(), ServiceOptions::default());
    let out = backup(&repo, source, &opts, &NoProgress, &cancel).unwrap();
    assert_eq!(out.snapshot.source, SOURCE_KIND);
    assert_eq!(out.snapshot.summary.files_new, 4);
    assert_eq!(out.snapshot.paths, vec![bucket_path(&loc).into_bytes()]);

    let objects = load_objects(&repo, &out.snapshot).unwrap();
    let keys: Vec<&str> = objects.records.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["100%", "a.txt", "a/b.bin", "deep/er/ü n.txt"]);
    let paths: Vec<&str> = objects.records.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/objects/100%25",
            "/objects/a.txt",
            "/objects/a/b.bin",
            "/objects/deep/er/ü n.txt"
        ]
    );

    let dst = tmp.path().join("dst");
    let target = Location::Local(dst.clone());
    let restore_opts = BucketRestoreOptions::default();
    let report = restore_bucket(
        &repo,
        &out.snapshot,
        &target,
        &restore_opts,
        &NoProgress,
        &cancel,
    )
    .unwrap();
    assert_eq!(report.objects, 4);
    assert_eq!(report.bytes, 5 + (9 << 20) + 7 + 7);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        std::fs::read(dst.join("a/b.bin")).unwrap(),
        vec![7u8; 9 << 20]
    );
    let v = verify_bucket(&repo, &out.snapshot, &target).unwrap();
    assert!(v.ok(), "{v:?}");

    // A second restore into the same place needs --force.
    let again = restore_bucket(
        &repo,
        &out.snapshot,
        &target,
        &restore_opts,
        &NoProgress,
        &cancel,
    );
    assert_eq!(again.unwrap_err().kind(), crate::ErrorKind::AlreadyExists);

    // Verification sees a changed, a missing and an extra object.
    write(&dst, "a.txt", b"HELLO");
    std::fs::remove_file(dst.join("100%")).unwrap();
    write(&dst, "extra", b"x");
    let v = verify_bucket(&repo, &out.snapshot, &target).unwrap();
    assert!(!v.ok());
    assert_eq!(v.missing, ["100%"]);
    assert_eq!(v.extra, ["extra"]);
    assert_eq!(v.mismatched.len(), 1, "{:?}", v.mismatched);
    assert!(
        v.mismatched[0].contains("content differs"),
        "{:?}",
        v.mismatched
    );
}

#[test]
fn a_snapshot_of_files_is_not_restored_into_a_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "src/f", b"x");
    let repo = memory_repo();
    let opts = BackupOptions {
        host: "test".into(),
        ..Default::default()
    };
    let cancel = AtomicBool::new(false);
    let source = crate::backup::Source::Paths(vec![tmp.path().join("src")]);
    let out = backup(&repo, source, &opts, &NoProgress, &cancel).unwrap();
    let target = Location::Local(tmp.path().join("dst"));
    let err = restore_bucket(
        &repo,
        &out.snapshot,
        &target,
        &BucketRestoreOptions::default(),
        &NoProgress,
        &cancel,
    )
    .unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidInput, "{err}");
}

#[test]
fn keys_that_opendal_would_rewrite_are_not_addressable() {
    use crate::backend::ObjectStore;
    for ok in ["a", "a/b", "dir/", "sp ace/ü", "100%", "a.b/..c", ".hidden"] {
        assert!(ObjectStore::is_addressable(ok), "{ok:?}");
    }
    for bad in [
        "", "/a", "a//b", "a/./b", "../a", "a/..", " a", "a ", "a/.", "./",
    ] {
        assert!(!ObjectStore::is_addressable(bad), "{bad:?}");
    }
}
