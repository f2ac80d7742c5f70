//! Errors that end a whole restore. When the target's file system is full, over its quota
//! or read-only, every further file would fail the same way: one error naming the target
//! and the cause says more than a line per file (thousands of them).

use crate::error::{Error, ErrorKind};
use rustix::io::Errno;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct Stop {
    stopped: AtomicBool,
    cause: Mutex<Option<Errno>>,
}

impl Stop {
    /// Note an error; true when it ends the restore (the first such error is kept).
    pub(crate) fn fatal(&self, e: &std::io::Error) -> bool {
        let Some(errno) = e.raw_os_error().map(Errno::from_raw_os_error) else {
            return false;
        };
        if !matches!(errno, Errno::NOSPC | Errno::DQUOT | Errno::ROFS) {
            return false;
        }
        let mut cause = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        cause.get_or_insert(errno);
        self.stopped.store(true, Ordering::Relaxed);
        true
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    /// The one error for the whole restore into `target`, if it was stopped.
    pub(crate) fn error(&self, target: &Path) -> Option<Error> {
        let cause = *self.cause.lock().unwrap_or_else(|e| e.into_inner());
        cause.map(|errno| stopped(target, errno))
    }
}

/// The one-line error for a restore into `target` that cannot go on.
pub(crate) fn stopped(target: &Path, errno: Errno) -> Error {
    let (what, remedy) = match errno {
        Errno::NOSPC => (
            "there is no space left on its file system",
            "free some space there or restore elsewhere",
        ),
        Errno::DQUOT => (
            "the disk quota on its file system is used up",
            "raise the quota or restore elsewhere",
        ),
        _ => (
            "its file system is read-only",
            "remount it read-write or restore elsewhere",
        ),
    };
    Error::new(
        ErrorKind::Io,
        format!(
            "restore into {} stopped: {what}; {remedy}, then run the restore again \
             (files written so far stay private, mode 0600)",
            target.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_full_or_read_only_target_stops_the_restore() {
        let stop = Stop::default();
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert!(!stop.fatal(&e(libc::EACCES)) && !stop.stopped());
        assert!(stop.error(Path::new("/t")).is_none());
        assert!(stop.fatal(&e(libc::ENOSPC)) && stop.stopped());
        assert!(stop.fatal(&e(libc::EROFS)));
        let msg = stop.error(Path::new("/t")).unwrap().to_string();
        assert!(msg.contains("/t") && msg.contains("no space left"), "{msg}");
        assert!(stopped(Path::new("/t"), Errno::ROFS)
            .to_string()
            .contains("read-only"));
        assert!(stopped(Path::new("/t"), Errno::DQUOT)
            .to_string()
            .contains("quota"));
    }
}
