//! A drill's scratch folder: `TARGET/NAME`, made fresh for one drill and marked as a
//! drill's own by a `.coffer-drill` file at its top (holding the process ID and host of the
//! drill that made it). A folder without the marker is never touched: it is someone else's.
//! One with the marker was left by an earlier drill that failed, and is replaced, unless the
//! drill that made it is still running on this machine.
//!
//! Drills often run as root, so the scratch space must not be reachable by other users
//! (security review H1, H2): the target, and every folder of it that the drill creates, must
//! belong to this user and be writable by nobody else; otherwise another user could move the
//! drill's folder away and plant symlinks in its place. A shared folder such as `/var/tmp`
//! is refused, and the drill's folder is created 0700 and used through its descriptor.

use crate::error::{Error, ErrorKind, Result};
use crate::restore::at::{self, FileId};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// The marker file at the top of a drill's scratch folder.
pub const MARKER: &str = ".coffer-drill";

/// Where the error messages send the user: a root-owned place no one else can write.
const SUGGESTED: &str = "/var/lib/coffer/drill";

/// A drill's own folder `TARGET/NAME`, open.
pub struct Scratch {
    target: OwnedFd,
    name: String,
    pub folder: OwnedFd,
    id: FileId,
    pub path: PathBuf,
}

impl Scratch {
    /// Make `TARGET/NAME` a new, empty folder of this drill (mode 0700, with its marker),
    /// replacing one left by an earlier drill; refuse anything else, and a target that
    /// other users can change.
    pub fn make(target: &Path, name: &str, host: &str) -> Result<Scratch> {
        let dir = open_target(target)?;
        let path = target.join(name);
        let io = |e: std::io::Error| Error::io(path.display(), e);
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let marker = (at::kind_of(&st) == FileType::Directory)
                    .then(|| read_marker(dir.as_fd(), name))
                    .flatten();
                let Some(marker) = marker else {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "{} exists and was not made by a coffer drill (it has no {MARKER} \
                             file); move it away or give the drill another target",
                            path.display()
                        ),
                    ));
                };
                if let Some(pid) = running_owner(&marker, host) {
                    return Err(Error::new(
                        ErrorKind::AlreadyExists,
                        format!(
                            "{} is in use by another drill (process {pid}); try again when it ends",
                            path.display()
                        ),
                    ));
                }
                at::remove_tree(dir.as_fd(), name.as_bytes()).map_err(io)?;
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(io(e.into())),
        }
        // mkdirat, not "create if missing": of two drills racing here, one fails.
        rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)).map_err(|e| io(e.into()))?;
        let folder = at::open_dir(dir.as_fd(), name.as_bytes()).map_err(io)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let marker = rustix::fs::openat(&folder, MARKER, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| io(e.into()))?;
        std::fs::File::from(marker)
            .write_all(format!("{}\n{host}\n", std::process::id()).as_bytes())
            .map_err(io)?;
        let id = at::file_id(folder.as_fd()).map_err(io)?;
        Ok(Scratch {
            target: dir,
            name: name.to_string(),
            folder,
            id,
            path,
        })
    }

    /// Is `TARGET/NAME` still the folder the drill made? If someone moved it away, what
    /// the drill verified is not what is at that path, and nothing there may be removed.
    pub fn in_place(&self) -> std::result::Result<(), String> {
        match rustix::fs::statat(&self.target, self.name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if at::id_of(&st) == self.id => Ok(()),
            _ => Err(format!(
                "{} was moved or replaced while the drill ran: someone else can change {}; \
                 give the drill a folder of its own, such as {SUGGESTED}",
                self.path.display(),
                self.path.parent().unwrap_or(Path::new("/")).display()
            )),
        }
    }

    /// Let other users pass through (not list) the target and this folder, to reach a
    /// folder inside that is theirs: a restored PostgreSQL data directory, whose server runs
    /// as the cluster's owner when the drill runs as root. Every other drill folder in the
    /// target stays 0700, so passing through reaches nothing else.
    pub fn let_owner_pass(&self) -> Result<()> {
        for fd in [&self.target, &self.folder] {
            let io = |e: Errno| Error::io(self.path.display(), e.into());
            let mode = rustix::fs::fstat(fd).map_err(io)?.st_mode & 0o7777;
            if mode & 0o011 != 0o011 {
                rustix::fs::fchmod(fd, Mode::from_raw_mode(mode | 0o011)).map_err(io)?;
            }
        }
        Ok(())
    }

    /// Remove the drill's folder, if it is still in place.
    pub fn remove(&self) -> Result<()> {
        self.in_place()
            .map_err(|e| Error::new(ErrorKind::AlreadyExists, e))?;
        at::remove_tree(self.target.as_fd(), self.name.as_bytes())
            .map_err(|e| Error::io(self.path.display(), e))
    }
}

/// Open the drill target, creating what is missing of it (mode 0700). The target, and
/// every folder the drill creates on the way, must belong to this user and be writable by
/// no one else. Folders that exist above the target are the user's choice (symlinks in
/// them are followed); from the first one created on, each step is `O_NOFOLLOW`.
fn open_target(target: &Path) -> Result<OwnedFd> {
    let io =
        |e: rustix::io::Errno| Error::io(format!("drill target {}", target.display()), e.into());
    let start = if target.is_absolute() { "/" } else { "." };
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::openat(rustix::fs::CWD, start, flags, Mode::empty()).map_err(io)?;
    let mut creating = false;
    let mut so_far = PathBuf::from(start);
    for part in target.components() {
        let name = match part {
            Component::Normal(n) => n,
            Component::ParentDir => "..".as_ref(),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => continue,
        };
        so_far.push(name);
        if !creating {
            match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
                Ok(next) => {
                    dir = next;
                    continue;
                }
                Err(Errno::NOENT) => creating = true,
                Err(e) => return Err(io(e)),
            }
        }
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(io(e)),
        }
        let next = at::open_dir(dir.as_fd(), name.as_encoded_bytes())
            .map_err(|e| Error::io(format!("drill target {}", so_far.display()), e))?;
        only_ours(next.as_fd(), &so_far, target)?;
        dir = next;
    }
    only_ours(dir.as_fd(), target, target)?;
    Ok(dir)
}

/// Refuse a folder of the drill target that another user owns or can write to.
fn only_ours(dir: BorrowedFd, shown: &Path, target: &Path) -> Result<()> {
    let st = rustix::fs::fstat(dir).map_err(|e| Error::io(shown.display(), e.into()))?;
    let euid = rustix::process::geteuid().as_raw();
    let which = if shown == target {
        format!("drill target {}", target.display())
    } else {
        format!(
            "{} (on the way to drill target {})",
            shown.display(),
            target.display()
        )
    };
    let why = if st.st_uid != euid {
        format!(
            "belongs to uid {}, not to this user (uid {euid})",
            st.st_uid
        )
    } else if st.st_mode & 0o022 != 0 {
        format!(
            "can be written by other users (mode {:o})",
            st.st_mode & 0o7777
        )
    } else {
        return Ok(());
    };
    Err(Error::invalid(format!(
        "{which} {why}: they could move the drill's folder away and plant symlinks in its \
         place; give the drill a folder of its own that only this user can write, such as \
         {SUGGESTED}"
    )))
}

/// The marker of folder `name` in `dir`, if it has one (a regular file, not a symlink).
fn read_marker(dir: BorrowedFd, name: &str) -> Option<String> {
    let folder = at::open_dir(dir, name.as_bytes()).ok()?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&folder, MARKER, flags, Mode::empty()).ok()?;
    if at::kind_of(&rustix::fs::fstat(&fd).ok()?) != FileType::RegularFile {
        return None;
    }
    let mut text = String::new();
    std::fs::File::from(fd)
        .take(4096)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The process ID in a marker, if that process still runs on this host (and is not us).
fn running_owner(marker: &str, host: &str) -> Option<u32> {
    let mut lines = marker.lines();
    let pid: u32 = lines.next()?.trim().parse().ok()?;
    if lines.next()?.trim() != host || pid == std::process::id() {
        return None;
    }
    // SAFETY: signal 0 only asks whether the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let alive = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    alive.then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_folder_that_is_not_ours_is_refused_and_ours_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("drills");
        let f = Scratch::make(&target, "app-1", "h").unwrap().path;
        assert!(f.join(MARKER).is_file());
        // Private: the target the drill made and its folder.
        assert_eq!((mode(&target), mode(&f)), (0o700, 0o700));
        // Left by an earlier (dead) drill: replaced, contents gone.
        std::fs::write(f.join("left"), b"x").unwrap();
        std::fs::write(f.join(MARKER), "999999999\nh\n").unwrap();
        let f = Scratch::make(&target, "app-1", "h").unwrap().path;
        assert!(!f.join("left").exists());
        // A live drill's folder (a running process on this host) is not taken over.
        let child = std::process::Command::new("sleep").arg("30").spawn();
        if let Ok(mut child) = child {
            std::fs::write(f.join(MARKER), format!("{}\nh\n", child.id())).unwrap();
            let e = Scratch::make(&target, "app-1", "h").err().unwrap();
            assert!(e.to_string().contains("in use"), "{e}");
            child.kill().unwrap();
            child.wait().unwrap();
        }
        // Someone else's folder is never touched.
        let theirs = target.join("app-2");
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::write(theirs.join("data"), b"keep").unwrap();
        let e = Scratch::make(&target, "app-2", "h").err().unwrap();
        assert!(e.to_string().contains("not made by a coffer drill"), "{e}");
        assert!(theirs.join("data").is_file());
        // Nor is a symlink in its place, even to a folder with a marker.
        let marked = tmp.path().join("marked");
        Scratch::make(&marked, "x", "h").unwrap();
        std::os::unix::fs::symlink(marked.join("x"), target.join("app-3")).unwrap();
        let e = Scratch::make(&target, "app-3", "h").err().unwrap();
        assert!(e.to_string().contains("not made by a coffer drill"), "{e}");
        assert!(marked.join("x").join(MARKER).is_file());
    }

    #[test]
    fn a_target_other_users_can_change_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let e = Scratch::make(&shared, "app-1", "h")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("mode 1777") && e.contains(SUGGESTED), "{e}");
        assert!(!shared.join("app-1").exists());
        // Below a shared folder, the folders the drill creates itself are fine.
        let s = Scratch::make(&shared.join("mine/drill"), "app-1", "h").unwrap();
        assert_eq!(mode(&shared.join("mine")), 0o700);
        assert!(s.path.join(MARKER).is_file());
    }

    #[test]
    fn folders_without_permissions_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Scratch::make(tmp.path(), "x", "h").unwrap();
        let d = &s.path;
        std::fs::create_dir_all(d.join("locked/inner")).unwrap();
        std::fs::write(d.join("locked/inner/f"), b"x").unwrap();
        std::fs::set_permissions(d.join("locked"), std::fs::Permissions::from_mode(0o000)).unwrap();
        s.remove().unwrap();
        assert!(!d.exists());
    }
}
