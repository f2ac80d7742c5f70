//! Each check of `dirfd` on its own, with the replacement made deterministically between the
//! stat and the open (the integration tests in `tests/backup_walk.rs` race them for real).

use super::*;
use rustix::fs::RenameFlags;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

const NAME: &[u8] = b"doc.txt";

/// A folder holding `doc.txt` (a regular file), opened; and the stat of `doc.txt`.
fn folder_with_file() -> (tempfile::TempDir, OwnedFd, Stat) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("doc.txt"), b"ordinary").unwrap();
    let dir = rustix::fs::open(
        tmp.path(),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let st = stat(dir.as_fd(), NAME).unwrap();
    (tmp, dir, st)
}

/// Exchange `doc.txt` with `other` in the same folder (both stay, under each other's name).
fn swap(tmp: &Path, other: &str) {
    rustix::fs::renameat_with(
        CWD,
        tmp.join("doc.txt"),
        CWD,
        tmp.join(other),
        RenameFlags::EXCHANGE,
    )
    .unwrap();
}

/// `open_file` in a thread, failing the test instead of hanging it if the open blocks.
fn open_file_within_limit(dir: &OwnedFd, st: Stat) -> Result<(std::fs::File, Stat), OpenError> {
    let dir = dir.try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(open_file(dir.as_fd(), NAME, &st));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("open_file blocked")
}

fn replaced_by(r: Result<(std::fs::File, Stat), OpenError>) -> &'static str {
    match r {
        Err(OpenError::Replaced(now)) => now,
        Err(OpenError::Io(e)) => panic!("an I/O error instead of a replacement: {e}"),
        Ok(_) => panic!("the replaced file was opened"),
    }
}

#[test]
fn the_file_that_was_stated_opens_for_blocking_reads() {
    let (_tmp, dir, st) = folder_with_file();
    let (mut file, fst) = open_file_within_limit(&dir, st).unwrap();
    assert_eq!((fst.st_dev, fst.st_ino), (st.st_dev, st.st_ino));
    let flags = rustix::fs::fcntl_getfl(&file).unwrap();
    assert!(!flags.contains(OFlags::NONBLOCK), "O_NONBLOCK left set");
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, b"ordinary");
}

#[test]
fn a_symlink_swapped_in_is_not_followed() {
    let (tmp, dir, st) = folder_with_file();
    std::fs::write(tmp.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret"), tmp.path().join("link")).unwrap();
    swap(tmp.path(), "link");
    assert_eq!(replaced_by(open_file_within_limit(&dir, st)), "a symlink");
}

#[test]
fn a_fifo_swapped_in_is_neither_waited_for_nor_read() {
    let (tmp, dir, st) = folder_with_file();
    rustix::fs::mknodat(
        CWD,
        tmp.path().join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    swap(tmp.path(), "fifo");
    assert_eq!(replaced_by(open_file_within_limit(&dir, st)), "a FIFO");
}

#[test]
fn a_socket_swapped_in_is_reported_as_such() {
    let (tmp, dir, st) = folder_with_file();
    let _listener = std::os::unix::net::UnixListener::bind(tmp.path().join("sock")).unwrap();
    swap(tmp.path(), "sock");
    assert_eq!(replaced_by(open_file_within_limit(&dir, st)), "a socket");
}

#[test]
fn another_file_swapped_in_is_not_read() {
    let (tmp, dir, st) = folder_with_file();
    std::fs::write(tmp.path().join("other"), b"other").unwrap();
    swap(tmp.path(), "other");
    assert_eq!(
        replaced_by(open_file_within_limit(&dir, st)),
        "another file"
    );
}

#[test]
fn a_folder_replaced_by_a_symlink_or_another_folder_is_not_opened() {
    let tmp = tempfile::tempdir().unwrap();
    for d in ["sub", "other", "target"] {
        std::fs::create_dir(tmp.path().join(d)).unwrap();
    }
    std::os::unix::fs::symlink(tmp.path().join("target"), tmp.path().join("link")).unwrap();
    let dir = rustix::fs::open(
        tmp.path(),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let st = stat(dir.as_fd(), b"sub").unwrap();
    assert!(open_dir(dir.as_fd(), b"sub", Some(&st)).is_ok());

    let exchange = |a: &str, b: &str| {
        rustix::fs::renameat_with(&dir, a, &dir, b, RenameFlags::EXCHANGE).unwrap()
    };
    exchange("sub", "link");
    match open_dir(dir.as_fd(), b"sub", Some(&st)) {
        Err(OpenError::Replaced(now)) => assert_eq!(now, "a symlink"),
        other => panic!("a symlink swapped in for a folder: {:?}", other.map(|_| ())),
    }
    exchange("sub", "link");
    exchange("sub", "other");
    match open_dir(dir.as_fd(), b"sub", Some(&st)) {
        Err(OpenError::Replaced(now)) => assert_eq!(now, "another folder"),
        other => panic!("another folder swapped in: {:?}", other.map(|_| ())),
    }
}

#[test]
fn listing_skips_dot_entries_and_keeps_raw_names() {
    let tmp = tempfile::tempdir().unwrap();
    let odd = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9");
    std::fs::write(tmp.path().join(odd), b"").unwrap();
    std::fs::create_dir(tmp.path().join("d")).unwrap();
    let dir = rustix::fs::open(
        tmp.path(),
        OFlags::RDONLY | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .unwrap();
    let (mut names, err) = list(dir.as_fd());
    assert!(err.is_none());
    names.sort();
    assert_eq!(names, vec![b"caf\xe9".to_vec(), b"d".to_vec()]);
}

#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() {
    use rustix::process::{getrlimit, Resource};
    raise_open_files_limit();
    let limit = getrlimit(Resource::Nofile);
    assert_eq!(limit.current, limit.maximum);
}
