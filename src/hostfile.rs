//! Files coffer keeps on the host outside a repository's objects: the cache, job state, the
//! run lock, lock sightings, the metrics file, a local repository's key files. DESIGN.md
//! ("State, cache and secrets on the host") asks that they are private: folders 0700, files
//! 0600. This module creates them so, narrows wider modes found on coffer's own files, and
//! replaces a file through a temporary file with a random name created with `O_EXCL` in the
//! same folder, so a symlink planted under a predictable name never redirects a write.

use rustix::fs::{Mode, OFlags};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of a folder only its owner may enter.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of a file only its owner may read.
pub const PRIVATE_FILE: u32 = 0o600;

/// Create `dir` and its missing parents 0700. An existing folder keeps its mode: it may be
/// one the user named (`--cache-dir /srv/x`) and shares on purpose.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
}

/// A folder that is coffer's alone (a repository's cache, the job state): created 0700, and
/// narrowed to 0700 when an older coffer left it wider.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    create_dir(dir)?;
    narrow(dir, PRIVATE_DIR).map(|_| ())
}

/// Take the permission bits outside `allowed` away from `path`, if it is this user's own file
/// or folder; returns whether anything changed. A missing path and a symlink (never followed)
/// are left alone, and so is another user's file: narrowing is for what coffer wrote itself.
/// The path is opened once with `O_NOFOLLOW` and changed through that descriptor.
pub fn narrow(path: &Path, allowed: u32) -> io::Result<bool> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    let mode = st.st_mode as u32 & 0o7777;
    if mode & !allowed == 0 || st.st_uid != rustix::process::geteuid().as_raw() {
        return Ok(false);
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode((mode & allowed) as _))?;
    Ok(true)
}

/// Read a small file of coffer's own without following a symlink at `path` (`O_NOFOLLOW`),
/// and only if it is a regular file of at most `limit` bytes: state files are read as they
/// were written, never through a link planted in their place.
pub fn read_own(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty())?;
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if st.st_size as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "larger than expected",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Replace `path` with `bytes` whole. They go to a new temporary file in the same folder
/// (random name, `O_EXCL`, created 0600), which gets `mode`, is flushed to disk and renamed
/// over `path`: a reader sees the old file or the new one, and a symlink at `path` is
/// replaced, not followed. The temporary file is removed on any error.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // A leading dot and a `.tmp` suffix: collectors that read `*.prom` or `*.json` skip it.
    let mut tmp = tempfile::Builder::new()
        .prefix(".coffer-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    if mode != PRIVATE_FILE {
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename itself is durable once the folder is; some file systems refuse to sync a
    // folder, and the file is in place either way.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn replace_makes_a_private_file_and_does_not_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let path = dir.path().join("state.json");
        symlink(&victim, &path).unwrap();
        replace(&path, b"new", PRIVATE_FILE).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        replace(&path, b"shared", 0o644).unwrap();
        assert_eq!(mode(&path), 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 2, "no temporary file is left");
    }

    #[test]
    fn narrow_changes_own_files_only_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let link = dir.path().join("link");
        symlink(&f, &link).unwrap();
        assert!(!narrow(&link, PRIVATE_FILE).unwrap());
        assert_eq!(mode(&f), 0o644);
        assert!(narrow(&f, PRIVATE_FILE).unwrap());
        assert_eq!(mode(&f), 0o600);
        assert!(!narrow(&f, PRIVATE_FILE).unwrap());
        assert!(!narrow(&dir.path().join("missing"), PRIVATE_FILE).unwrap());
        let d = dir.path().join("d/e");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&d).unwrap();
        assert_eq!(mode(&d), 0o700);
        create_dir(&dir.path().join("new/one")).unwrap();
        assert_eq!(mode(&dir.path().join("new")), 0o700);
    }

    #[test]
    fn read_own_reads_a_file_but_not_through_a_symlink_or_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"state").unwrap();
        assert_eq!(read_own(&f, 100).unwrap(), b"state");
        assert!(read_own(&f, 3).is_err(), "too large");
        let link = dir.path().join("link");
        symlink(&f, &link).unwrap();
        assert!(read_own(&link, 100).is_err());
        assert!(read_own(dir.path(), 100).is_err());
    }
}
