//! `restore --overwrite`: what to do with a file that is already where a snapshot's file is
//! to be restored, with restic's names and meanings. `always` replaces it (the default, as in
//! restic); `if-changed` leaves it when its size and modification time match the snapshot's
//! (a file restored before, or never changed); `if-newer` leaves it when it was modified at
//! or after the snapshot's time for it (an edit made since the backup is kept); `never`
//! leaves anything that is there.

use crate::format::tree::Node;
use rustix::fs::{AtFlags, FileType, Stat};
use std::os::fd::BorrowedFd;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    #[default]
    Always,
    IfChanged,
    IfNewer,
    Never,
}

impl Overwrite {
    /// Is the entry `name` of `dir` to be left as it is instead of restoring `node` there?
    /// Folders in the way are not this rule's business (the restore reports them).
    pub fn keeps(self, dir: BorrowedFd, name: &[u8], node: &Node) -> bool {
        if self == Overwrite::Always {
            return false;
        }
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => self.keeps_stat(&st, node),
            Err(_) => false,
        }
    }

    fn keeps_stat(self, st: &Stat, node: &Node) -> bool {
        let mtime_ns = st
            .st_mtime
            .saturating_mul(1_000_000_000)
            .saturating_add(st.st_mtime_nsec as i64);
        let regular = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
        match self {
            Overwrite::Always => false,
            Overwrite::Never => true,
            Overwrite::IfNewer => mtime_ns >= node.mtime_ns,
            Overwrite::IfChanged => {
                regular && st.st_size as u64 == node.size && mtime_ns == node.mtime_ns
            }
        }
    }
}
