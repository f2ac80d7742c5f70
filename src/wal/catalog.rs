//! The archive's catalog: every WAL object's header, read from the first bytes of each
//! object (a ranged read) and kept in the local cache by object name, so a client reads each
//! header once. The backend's listing is the truth: objects no longer listed are dropped
//! from the cache.

use crate::backend::{ObjectKind, ObjectName};
use crate::error::{Error, ErrorKind, Result};
use crate::format::wal::{WalHeader, WalKind, HEAD_LEN};
use crate::repo::Repository;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// One archived file.
#[derive(Debug, Clone)]
pub struct WalEntry {
    pub object: ObjectName,
    /// The object's stored size.
    pub stored: u64,
    pub header: WalHeader,
}

/// Every readable WAL object of a repository, and the errors of those that are not.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Sorted by timeline, then start LSN, then name.
    pub entries: Vec<WalEntry>,
    pub unreadable: Vec<(ObjectName, Error)>,
    /// Where each file name stands in `entries`: a restore looks up every segment of its
    /// chain, so a scan per lookup would be quadratic in the archive's size.
    by_name: HashMap<String, Vec<usize>>,
}

impl Catalog {
    /// List `wal/` and read the headers this client has not seen before.
    pub fn load(repo: &Repository) -> Result<Catalog> {
        Self::load_with(repo, true)
    }

    /// List `wal/` and read every header from the storage, whatever the cache holds
    /// (`check`: the cache holds copies of headers that opened once, not what is stored).
    pub fn load_from_storage(repo: &Repository) -> Result<Catalog> {
        Self::load_with(repo, false)
    }

    fn load_with(repo: &Repository, use_cache: bool) -> Result<Catalog> {
        let listed = repo.backend().list(ObjectKind::Wal)?;
        let cached = match use_cache {
            true => repo.with_cache(|c| c.wal_heads())?.unwrap_or_default(),
            false => Default::default(),
        };
        // Each object's first bytes, and whether they came from the cache.
        type Head = Result<(Vec<u8>, bool)>;
        let read: Vec<(ObjectName, u64, Head)> = listed
            .par_iter()
            .map(|(name, size)| {
                let head = match cached.get(&name.hash) {
                    Some(h) => Ok((h.clone(), true)),
                    None if *size > ObjectKind::Wal.max_len() => Err(Error::corrupt(format!(
                        "{name} is {size} bytes, more than a WAL file may be"
                    ))),
                    None => repo
                        .backend()
                        .get_range(name, 0, (*size).min(HEAD_LEN as u64))
                        .map(|h| (h, false)),
                };
                (*name, *size, head)
            })
            .collect();
        let mut entries = vec![];
        let mut unreadable = vec![];
        let mut new_heads = vec![];
        for (object, stored, head) in read {
            let decoded = head.and_then(|(head, was_cached)| {
                let (header, _) = WalHeader::decode(repo.keys(), &head)?;
                if !was_cached {
                    new_heads.push((object.hash, head));
                }
                Ok(header)
            });
            match decoded {
                Ok(header) => entries.push(WalEntry {
                    object,
                    stored,
                    header,
                }),
                // Deleted since the listing (a prune): not part of the archive any more.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::WrongPassword) => {
                    unreadable.push((object, e.context(object)));
                }
                Err(e) => return Err(e),
            }
        }
        let listed: HashSet<[u8; 32]> = listed.iter().map(|(n, _)| n.hash).collect();
        let gone: Vec<[u8; 32]> = cached
            .keys()
            .filter(|h| !listed.contains(*h))
            .copied()
            .collect();
        if !new_heads.is_empty() || !gone.is_empty() {
            repo.with_cache(|c| c.update_wal_heads(&new_heads, &gone))?;
        }
        Ok(Catalog::new(entries, unreadable))
    }

    /// A catalog of `entries` (in any order) and the objects that could not be read.
    pub fn new(mut entries: Vec<WalEntry>, unreadable: Vec<(ObjectName, Error)>) -> Catalog {
        entries.sort_by(|a, b| {
            let key = |e: &WalEntry| (e.header.timeline, e.header.start_lsn);
            key(a)
                .cmp(&key(b))
                .then_with(|| a.header.name.cmp(&b.header.name))
        });
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            by_name.entry(e.header.name.clone()).or_default().push(i);
        }
        Catalog {
            entries,
            unreadable,
            by_name,
        }
    }

    /// The entries archived under `name` (more than one if two pushes of the same file ran
    /// at once; their contents are equal unless the archive is damaged).
    pub fn find(&self, name: &str) -> Vec<&WalEntry> {
        self.by_name
            .get(name)
            .map_or(vec![], |at| at.iter().map(|&i| &self.entries[i]).collect())
    }

    /// The system identifiers of the clusters whose segments are archived here: one,
    /// unless the repository was misused before coffer refused it.
    pub fn clusters(&self) -> BTreeSet<u64> {
        self.segments().map(|e| e.header.system_id).collect()
    }

    /// Complete and partial segments.
    pub fn segments(&self) -> impl Iterator<Item = &WalEntry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.header.kind, WalKind::Segment | WalKind::Partial))
    }

    /// Complete segments of `timeline`, by segment number.
    pub fn timeline_segments(&self, timeline: u32) -> BTreeMap<u64, &WalEntry> {
        self.segments()
            .filter(|e| e.header.kind == WalKind::Segment && e.header.timeline == timeline)
            .map(|e| (e.header.start_lsn / u64::from(e.header.segment_size), e))
            .collect()
    }

    /// The segment written last (by PostgreSQL's clock: its file time).
    pub fn newest_segment(&self) -> Option<&WalEntry> {
        self.segments()
            .max_by_key(|e| (e.header.mtime_ns, e.header.start_lsn))
    }

    /// Every timeline that has segments or a history file.
    pub fn timelines(&self) -> BTreeSet<u32> {
        self.entries.iter().map(|e| e.header.timeline).collect()
    }
}
