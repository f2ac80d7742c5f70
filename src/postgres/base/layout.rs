//! What a base backup stores of a data directory, and how it cuts relation files.
//!
//! PostgreSQL's documentation ("Making a Base Backup Using the Low Level API") and its own
//! `pg_basebackup` say what to leave out: files the server rebuilds or that only describe
//! the running server, and the contents (not the folders) of the folders it empties at
//! start. Leaving out more than it says breaks the restore; storing more only costs space,
//! except `backup_label` and `tablespace_map`, which must not come from the data directory
//! (the backup writes its own label).

/// Files at the top of the data directory that are never stored.
const ROOT_FILES_SKIPPED: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    // A label or map left by another backup tool would misdirect the restore's recovery.
    "backup_label",
    "backup_label.old",
    "tablespace_map",
    "tablespace_map.old",
    "backup_manifest",
    // Half-written replacements the server renames into place.
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
];

/// Folders at the top of the data directory whose contents are never stored: the server
/// empties or rebuilds them at start (the WAL is archived separately).
const ROOT_DIRS_EMPTIED: &[&str] = &[
    "pg_wal",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_stat_tmp",
    "pg_subtrans",
];

/// The one folder stored inside an emptied `pg_wal` (empty too), as `pg_basebackup` does.
pub const WAL_STATUS_DIR: &str = "archive_status";

/// Where in the data directory a folder is: it decides which names are left out and which
/// files are relation files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The data directory itself.
    Root,
    /// `base/`: one folder per database.
    Base,
    /// `global/`: the shared catalogs' relation files.
    Global,
    /// A database's folder: `base/<oid>/` or `pg_tblspc/<spc>/<version>/<oid>/`.
    Database,
    /// `pg_tblspc/`: one symlink (or in-place folder) per tablespace.
    Tablespaces,
    /// `pg_tblspc/<oid>/`: the tablespace's own folder, holding `PG_<major>_<catversion>/`.
    Tablespace,
    /// `pg_tblspc/<oid>/PG_<major>_<catversion>/`: one folder per database.
    TablespaceVersion,
    /// Anything else: stored as it is.
    Other,
}

impl Place {
    /// The place of the folder `name` found here.
    pub fn child(self, name: &[u8]) -> Place {
        match (self, name) {
            (Place::Root, b"base") => Place::Base,
            (Place::Root, b"global") => Place::Global,
            (Place::Root, b"pg_tblspc") => Place::Tablespaces,
            (Place::Tablespaces, n) if is_number(n) => Place::Tablespace,
            (Place::Tablespace, _) => Place::TablespaceVersion,
            (Place::Base | Place::TablespaceVersion, n) if is_number(n) => Place::Database,
            _ => Place::Other,
        }
    }

    /// Folders that hold relation files.
    fn has_relations(self) -> bool {
        matches!(self, Place::Global | Place::Database)
    }
}

/// What to do with an entry of a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Leave it out of the snapshot.
    Skip,
    /// Store the folder, but none of what it holds.
    EmptyDir,
    /// A relation file (8 KiB pages; checked and cut at page boundaries): `segment` is its
    /// segment number (`.N`), to turn a page's place in the file into its block number.
    Relation { segment: u32 },
    /// Store it as it is.
    Keep,
}

/// Decide about the entry `name` of a folder at `place`. `unlogged` says whether a
/// relation has an init fork in the same folder (an unlogged relation).
pub fn classify(place: Place, name: &[u8], unlogged: impl Fn(&[u8]) -> bool) -> Entry {
    // Temporary files of queries and of the server, and the relation cache's file, anywhere.
    if name.starts_with(b"pgsql_tmp") || name.starts_with(b"pg_internal.init") {
        return Entry::Skip;
    }
    if place == Place::Root {
        if ROOT_FILES_SKIPPED.iter().any(|s| s.as_bytes() == name) {
            return Entry::Skip;
        }
        if ROOT_DIRS_EMPTIED.iter().any(|s| s.as_bytes() == name) {
            return Entry::EmptyDir;
        }
        return Entry::Keep;
    }
    if !place.has_relations() {
        return Entry::Keep;
    }
    if place == Place::Database && is_temp_relation(name) {
        // Temporary tables vanish with their session; the server deletes them at start.
        return Entry::Skip;
    }
    let Some(rel) = Relation::parse(name) else {
        return Entry::Keep;
    };
    // An unlogged relation is reset from its init fork at the end of recovery: only that
    // fork is stored (as pg_basebackup does).
    if place == Place::Database && rel.fork != Some(Fork::Init) && unlogged(rel.node) {
        return Entry::Skip;
    }
    Entry::Relation {
        segment: rel.segment,
    }
}

/// A relation file's name: `<relfilenode>[_<fork>][.<segment>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relation<'a> {
    pub node: &'a [u8],
    pub fork: Option<Fork>,
    pub segment: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    FreeSpace,
    Visibility,
    Init,
}

impl<'a> Relation<'a> {
    pub fn parse(name: &'a [u8]) -> Option<Relation<'a>> {
        let (base, segment) = match name.iter().position(|&b| b == b'.') {
            Some(dot) => {
                let seg = &name[dot + 1..];
                if !is_number(seg) {
                    return None;
                }
                (&name[..dot], std::str::from_utf8(seg).ok()?.parse().ok()?)
            }
            None => (name, 0),
        };
        let (node, fork) = match base.iter().position(|&b| b == b'_') {
            Some(us) => {
                let fork = match &base[us + 1..] {
                    b"fsm" => Fork::FreeSpace,
                    b"vm" => Fork::Visibility,
                    b"init" => Fork::Init,
                    _ => return None,
                };
                (&base[..us], Some(fork))
            }
            None => (base, None),
        };
        is_number(node).then_some(Relation {
            node,
            fork,
            segment,
        })
    }
}

/// The name of an unlogged relation's init fork, whose presence marks the relation.
pub fn init_fork_name(name: &[u8]) -> Option<&[u8]> {
    let rel = Relation::parse(name)?;
    (rel.fork == Some(Fork::Init) && rel.segment == 0).then_some(rel.node)
}

/// `t<backend>_<relfilenode>[...]`: a temporary relation's file.
fn is_temp_relation(name: &[u8]) -> bool {
    let Some(rest) = name.strip_prefix(b"t") else {
        return false;
    };
    let Some(us) = rest.iter().position(|&b| b == b'_') else {
        return false;
    };
    is_number(&rest[..us]) && Relation::parse(&rest[us + 1..]).is_some()
}

fn is_number(s: &[u8]) -> bool {
    !s.is_empty() && s.len() <= 10 && s.iter().all(u8::is_ascii_digit)
}

/// A cluster with at most this many bytes of relation files has them cut page by page.
const PAGE_EXACT_UP_TO: u64 = 64 << 30;
/// The largest block, for clusters beyond 256 TiB.
const MAX_BLOCK: u32 = 1 << 20;

/// The page-aligned block the relation files of a cluster holding `bytes` of them are cut
/// into (format-spec §10, "Relation files of a PostgreSQL base backup"): one page up to
/// 64 GiB, then twice as large each time the cluster is four times larger. The index holds
/// one entry per block, so it grows with the square root of the cluster's size beyond
/// 64 GiB (8.4 million entries, 369 MB) instead of in proportion to it.
pub fn relation_block(bytes: u64, page: u32) -> u32 {
    let (mut block, mut limit) = (page, PAGE_EXACT_UP_TO);
    while bytes > limit && block < MAX_BLOCK {
        block *= 2;
        limit = limit.saturating_mul(4);
    }
    block
}

/// The block this backup cuts with, given the last base backup's (`previous`). A larger
/// block is taken as soon as the cluster outgrows the last one, but a smaller one only
/// once the cluster is below half of what it allows: a cluster whose size wavers around a
/// limit is not cut anew, and so stored again whole, every other backup.
pub fn choose_block(bytes: u64, page: u32, previous: Option<u32>) -> u32 {
    let now = relation_block(bytes, page);
    let valid = |b: u32| b % page == 0 && (b / page).is_power_of_two() && b <= MAX_BLOCK;
    match previous {
        Some(prev)
            if valid(prev)
                && prev > now
                && relation_block(bytes.saturating_mul(2), page) >= prev =>
        {
            prev
        }
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &[u8]) -> bool {
        false
    }

    #[test]
    fn relation_names() {
        let r = Relation::parse(b"16396").unwrap();
        assert_eq!((r.node, r.fork, r.segment), (&b"16396"[..], None, 0));
        let r = Relation::parse(b"16396_fsm").unwrap();
        assert_eq!(r.fork, Some(Fork::FreeSpace));
        let r = Relation::parse(b"16396.12").unwrap();
        assert_eq!(r.segment, 12);
        let r = Relation::parse(b"16396_vm.1").unwrap();
        assert_eq!((r.fork, r.segment), (Some(Fork::Visibility), 1));
        for not in [
            &b"pg_control"[..],
            b"PG_VERSION",
            b"pg_filenode.map",
            b"16396_x",
            b"16396.",
            b".1",
            b"t3_16396",
            b"12345678901",
        ] {
            assert!(Relation::parse(not).is_none(), "{:?}", not);
        }
    }

    #[test]
    fn what_is_left_out() {
        use Entry::*;
        let root = |n: &str| classify(Place::Root, n.as_bytes(), never);
        assert_eq!(root("postmaster.pid"), Skip);
        assert_eq!(root("backup_label"), Skip);
        assert_eq!(root("pg_wal"), EmptyDir);
        assert_eq!(root("pg_subtrans"), EmptyDir);
        assert_eq!(root("pg_xact"), Keep);
        assert_eq!(root("postgresql.conf"), Keep);
        assert_eq!(root("pgsql_tmp"), Skip);
        let db = |n: &str| classify(Place::Database, n.as_bytes(), |node| node == b"500");
        assert_eq!(db("16396"), Relation { segment: 0 });
        assert_eq!(db("16396.3"), Relation { segment: 3 });
        assert_eq!(db("pg_internal.init"), Skip);
        assert_eq!(db("pg_internal.init.1234"), Skip);
        assert_eq!(db("t3_16400"), Skip);
        assert_eq!(db("t3_16400_fsm"), Skip);
        assert_eq!(db("PG_VERSION"), Keep);
        // Unlogged relation 500: only its init fork.
        assert_eq!(db("500"), Skip);
        assert_eq!(db("500.1"), Skip);
        assert_eq!(db("500_fsm"), Skip);
        assert_eq!(db("500_init"), Relation { segment: 0 });
        let global = |n: &str| classify(Place::Global, n.as_bytes(), never);
        assert_eq!(global("1262"), Relation { segment: 0 });
        assert_eq!(global("pg_control"), Keep);
        assert_eq!(global("pg_filenode.map"), Keep);
        // Outside the relation folders, a number is just a name.
        assert_eq!(classify(Place::Other, b"16396", never), Keep);
        assert_eq!(init_fork_name(b"500_init"), Some(&b"500"[..]));
        assert_eq!(init_fork_name(b"500_init.1"), None);
        assert_eq!(init_fork_name(b"500"), None);
    }

    #[test]
    fn places() {
        let spc = Place::Root.child(b"pg_tblspc").child(b"16384");
        assert_eq!(spc, Place::Tablespace);
        assert_eq!(spc.child(b"PG_15_202209061").child(b"5"), Place::Database);
        assert_eq!(Place::Root.child(b"base").child(b"5"), Place::Database);
        assert_eq!(Place::Root.child(b"base").child(b"pgsql_tmp"), Place::Other);
        assert_eq!(Place::Root.child(b"pg_xact"), Place::Other);
        assert_eq!(Place::Database.child(b"5"), Place::Other);
    }

    #[test]
    fn blocks_grow_as_the_square_root_of_the_cluster() {
        const GIB: u64 = 1 << 30;
        let b = |bytes| relation_block(bytes, 8192);
        assert_eq!(b(0), 8192);
        assert_eq!(b(64 * GIB), 8192);
        assert_eq!(b(64 * GIB + 1), 16384);
        assert_eq!(b(256 * GIB), 16384);
        assert_eq!(b(1024 * GIB), 32768);
        assert_eq!(b(4096 * GIB), 65536);
        assert_eq!(b(u64::MAX), 1 << 20);
        // Index entries of one full copy: 8.4 million at 64 GiB, twice that at 256 GiB.
        assert_eq!(64 * GIB / b(64 * GIB) as u64, 8 << 20);
        assert_eq!(256 * GIB / b(256 * GIB) as u64, 16 << 20);
        // Other page sizes start at one page.
        assert_eq!(relation_block(GIB, 32768), 32768);
    }

    #[test]
    fn the_block_shrinks_only_well_below_its_limit() {
        const GIB: u64 = 1 << 30;
        let c = |bytes, prev| choose_block(bytes, 8192, prev);
        assert_eq!(c(10 * GIB, None), 8192);
        // Growing past a limit: the larger block at once.
        assert_eq!(c(70 * GIB, Some(8192)), 16384);
        // Back just below it: the larger block stays...
        assert_eq!(c(60 * GIB, Some(16384)), 16384);
        assert_eq!(c(33 * GIB, Some(16384)), 16384);
        // ...until the cluster is below half the limit.
        assert_eq!(c(31 * GIB, Some(16384)), 8192);
        // Two steps down at once are not kept either.
        assert_eq!(c(60 * GIB, Some(32768)), 8192);
        // A recorded block that this rule never makes is ignored.
        assert_eq!(c(60 * GIB, Some(12288)), 8192);
        assert_eq!(c(60 * GIB, Some(2 << 20)), 8192);
    }
}
