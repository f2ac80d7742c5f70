//! Several regions behind one `Backend` (format-spec §11): every region holds the same
//! objects under the same names.
//!
//! - `put` sends the same bytes to every region in parallel and waits for all of them (so
//!   within each region the write order of §8 holds: a snapshot never lands before its
//!   packs). It succeeds when at least `min_writes` regions took the object. A region that
//!   failed is recorded as *behind* (`behind()`), with its first error, and the warning
//!   callback names it once. Later writes are still tried, so a short outage leaves only a
//!   few objects for `sync` to copy; but after `skip_after` failed writes in a row the region
//!   is no longer written in this session, so a region that hangs until the timeout does
//!   not slow every write of a backup.
//! - `get` tries regions in order, falls back on any error or on a copy that fails its name
//!   check (no key needed), and rewrites bad copies with the verified bytes (`repairs()`).
//!   A missing copy is not written here: it marks the region behind, and `sync` copies it.
//! - `get_range` cannot check a part of an object against the object's name, so ranges are
//!   not verified here: it falls back only on errors. The caller authenticates what it
//!   reads and, on a failure, calls `repair(name)`, which checks every region's full copy
//!   and rewrites the bad and missing ones from a verified copy; then it reads again.
//! - `stat` answers from the first region that has the object; `list` is the union of the
//!   reachable regions, keeping the largest size when copies disagree (a truncated copy is
//!   the smaller one, and the name check on reading settles which copy is good).
//! - `delete` deletes in every region; if any region fails, the deletion stands in the
//!   others and an error names the failed regions (§11: a v1 deletion SHOULD run while every
//!   region is reachable, or the next sync brings the object back).

use super::{Backend, Bytes, ObjectKind, ObjectName};
use crate::error::{Error, ErrorKind, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Receives one human-readable line per event worth telling the user about.
pub type Warn = Arc<dyn Fn(&str) + Send + Sync>;

/// Failed writes in a row after which a region is left alone for the session (default).
pub const SKIP_AFTER: usize = 3;

#[derive(Default)]
struct RegionState {
    /// The first error that left this region without an object it should have.
    behind: Option<String>,
    write_failures_in_a_row: usize,
    skipped: bool,
    /// A read failure was already reported (only the first is, to keep warnings few).
    read_warned: bool,
}

pub struct Regions {
    regions: Vec<(String, Arc<dyn Backend>)>,
    min_writes: usize,
    skip_after: usize,
    warn: Warn,
    state: Mutex<Vec<RegionState>>,
    repairs: AtomicU64,
}

impl Regions {
    /// `regions` in read order; every write must reach at least `min_writes` of them.
    pub fn new(regions: Vec<(String, Arc<dyn Backend>)>, min_writes: usize) -> Result<Self> {
        if regions.is_empty() {
            return Err(Error::invalid("a repository needs at least one region"));
        }
        if min_writes == 0 || min_writes > regions.len() {
            return Err(Error::invalid(format!(
                "writes must reach from 1 to {} regions, not {min_writes}",
                regions.len()
            )));
        }
        for (i, (name, _)) in regions.iter().enumerate() {
            if name.is_empty() {
                return Err(Error::invalid("a region name is empty"));
            }
            if regions[..i].iter().any(|(n, _)| n == name) {
                return Err(Error::invalid(format!("region name {name} is used twice")));
            }
        }
        let state = regions.iter().map(|_| RegionState::default()).collect();
        Ok(Regions {
            regions,
            min_writes,
            skip_after: SKIP_AFTER,
            warn: Arc::new(|_| {}),
            state: Mutex::new(state),
            repairs: AtomicU64::new(0),
        })
    }

    /// Where warnings go (regions falling behind, bad copies, repairs). Default: nowhere;
    /// `behind()` and `repairs()` keep the facts either way.
    pub fn with_warning(mut self, warn: Warn) -> Self {
        self.warn = warn;
        self
    }

    /// Stop writing to a region after this many failed writes in a row (0 = never stop).
    pub fn with_skip_after(mut self, failures: usize) -> Self {
        self.skip_after = failures;
        self
    }

    /// Each region's name and backend, in read order (for `sync`, `check`, `status`).
    pub fn regions(&self) -> &[(String, Arc<dyn Backend>)] {
        &self.regions
    }

    pub fn min_writes(&self) -> usize {
        self.min_writes
    }

    /// Regions that missed a write (or lack an object) since this was opened, each with the
    /// first error that showed it.
    pub fn behind(&self) -> Vec<(String, String)> {
        let state = self.lock();
        self.regions
            .iter()
            .zip(state.iter())
            .filter_map(|((name, _), s)| s.behind.clone().map(|e| (name.clone(), e)))
            .collect()
    }

    /// Bad copies rewritten with verified bytes since this was opened.
    pub fn repairs(&self) -> u64 {
        self.repairs.load(Ordering::SeqCst)
    }

    /// Check every region's full copy of `name`, and rewrite the bad and missing copies
    /// from a verified one. Returns how many regions were rewritten. Unreachable regions
    /// are left as they are (and reported through the warning callback).
    pub fn repair(&self, name: &ObjectName) -> Result<usize> {
        let mut good: Option<Vec<u8>> = None;
        let mut fix = Vec::new();
        let mut errors = Vec::new();
        for (i, (_, b)) in self.regions.iter().enumerate() {
            match b.get(name) {
                Ok(bytes) if name.verify(&bytes) => {
                    good.get_or_insert(bytes);
                }
                Ok(_) => {
                    self.warn_bad_copy(i, name);
                    fix.push(i);
                    errors.push((i, Error::corrupt("copy fails its name check")));
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    fix.push(i);
                    errors.push((i, e));
                }
                Err(e) => {
                    self.read_failed(i, &e);
                    if e.kind() == ErrorKind::Corrupt {
                        fix.push(i);
                    }
                    errors.push((i, e));
                }
            }
        }
        let Some(good) = good else {
            return Err(self.all_failed(name, "repair", errors));
        };
        Ok(self.rewrite(name, &good, &fix))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RegionState>> {
        // A panic elsewhere while holding the lock leaves plain flags behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn region_name(&self, i: usize) -> &str {
        &self.regions[i].0
    }

    /// Run `f` on the given regions, in parallel when there are several.
    /// Run a deletion in every region at once: "region: error" for each where it failed. What
    /// is already gone counts as deleted.
    fn delete_in_each(&self, delete: impl Fn(&dyn Backend) -> Result<()> + Sync) -> Vec<String> {
        let all: Vec<usize> = (0..self.regions.len()).collect();
        self.on_each(&all, delete)
            .into_iter()
            .filter_map(|(i, r)| match r {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    Some(format!("{}: {e}", self.region_name(i)))
                }
                _ => None,
            })
            .collect()
    }

    fn on_each<T: Send>(
        &self,
        targets: &[usize],
        f: impl Fn(&dyn Backend) -> Result<T> + Sync,
    ) -> Vec<(usize, Result<T>)> {
        if let [i] = targets {
            return vec![(*i, f(self.regions[*i].1.as_ref()))];
        }
        std::thread::scope(|s| {
            let handles: Vec<_> = targets
                .iter()
                .map(|&i| {
                    let (f, b) = (&f, self.regions[i].1.as_ref());
                    (i, s.spawn(move || f(b)))
                })
                .collect();
            handles
                .into_iter()
                .map(|(i, h)| {
                    let r = h.join().unwrap_or_else(|_| {
                        Err(Error::backend("the request thread panicked", false))
                    });
                    (i, r)
                })
                .collect()
        })
    }

    /// Record that region `i` lacks something it should have; warn the first time.
    fn mark_behind(&self, i: usize, message: String) {
        let first = {
            let mut state = self.lock();
            let first = state[i].behind.is_none();
            if first {
                state[i].behind = Some(message.clone());
            }
            first
        };
        if first {
            (self.warn)(&format!(
                "region {} is behind ({message}); `coffer sync` will catch it up",
                self.region_name(i)
            ));
        }
    }

    /// An object was found in a later region: the earlier ones that said NotFound lack it.
    /// (If no region has it, the object simply does not exist and nobody is behind.)
    fn missing_where_found(&self, name: &ObjectName, errors: &[(usize, Error)]) {
        for (i, e) in errors {
            if e.kind() == ErrorKind::NotFound {
                self.mark_behind(*i, format!("{name} is missing"));
            }
        }
    }

    fn write_failed(&self, i: usize, name: &ObjectName, e: &Error) {
        self.mark_behind(i, format!("write of {name} failed: {e}"));
        let now_skipped = {
            let mut state = self.lock();
            let s = &mut state[i];
            s.write_failures_in_a_row += 1;
            let skip =
                self.skip_after > 0 && s.write_failures_in_a_row >= self.skip_after && !s.skipped;
            s.skipped |= skip;
            skip
        };
        if now_skipped {
            (self.warn)(&format!(
                "region {} failed {} writes in a row: no more writes go to it in this run",
                self.region_name(i),
                self.skip_after
            ));
        }
    }

    fn read_failed(&self, i: usize, e: &Error) {
        let first = !std::mem::replace(&mut self.lock()[i].read_warned, true);
        if first {
            (self.warn)(&format!(
                "region {} could not be read ({e}); using the next region",
                self.region_name(i)
            ));
        }
    }

    fn warn_bad_copy(&self, i: usize, name: &ObjectName) {
        (self.warn)(&format!(
            "region {}: the copy of {name} fails its name check (damaged); using the next region",
            self.region_name(i)
        ));
    }

    /// Write verified bytes over the copies in `targets`; returns how many took them.
    fn rewrite(&self, name: &ObjectName, good: &[u8], targets: &[usize]) -> usize {
        if targets.is_empty() {
            return 0;
        }
        let bytes = Bytes::copy_from_slice(good);
        let mut done = 0;
        for (i, r) in self.on_each(targets, |b| b.put(name, bytes.clone())) {
            match r {
                Ok(()) => {
                    done += 1;
                    self.repairs.fetch_add(1, Ordering::SeqCst);
                    (self.warn)(&format!(
                        "region {}: rewrote {name} with a verified copy",
                        self.region_name(i)
                    ));
                }
                Err(e) => {
                    (self.warn)(&format!(
                        "region {}: could not rewrite {name}: {e}",
                        self.region_name(i)
                    ));
                    self.mark_behind(i, format!("rewrite of {name} failed: {e}"));
                }
            }
        }
        done
    }

    /// The error when no region could serve `name`: Corrupt if some copy exists but none
    /// passes its name check, NotFound if every region answered that it has no such object,
    /// else a backend error (retryable if any region's was) naming every region's failure.
    fn all_failed(&self, name: &ObjectName, op: &str, errors: Vec<(usize, Error)>) -> Error {
        let detail = errors
            .iter()
            .map(|(i, e)| format!("{}: {e}", self.region_name(*i)))
            .collect::<Vec<_>>()
            .join("; ");
        let message = format!("{op} {name} failed in every region ({detail})");
        if errors.iter().any(|(_, e)| e.kind() == ErrorKind::Corrupt) {
            Error::corrupt(message)
        } else if errors.iter().all(|(_, e)| e.kind() == ErrorKind::NotFound) {
            Error::not_found(message)
        } else {
            Error::backend(message, errors.iter().any(|(_, e)| e.is_retryable()))
        }
    }
}

impl Backend for Regions {
    fn repair(&self, name: &ObjectName) -> Result<usize> {
        Regions::repair(self, name)
    }

    /// The union over every region that answers: a temporary file belongs to the one
    /// writer that named it, so the same path in two regions is two leftovers of it.
    fn scratch(&self) -> Result<Vec<(String, u64)>> {
        let all: Vec<usize> = (0..self.regions.len()).collect();
        let mut union: BTreeMap<String, u64> = BTreeMap::new();
        for (i, r) in self.on_each(&all, |b| b.scratch()) {
            match r {
                Ok(files) => {
                    for (path, size) in files {
                        let e = union.entry(path).or_insert(size);
                        *e = (*e).max(size);
                    }
                }
                Err(e) => self.read_failed(i, &e),
            }
        }
        Ok(union.into_iter().collect())
    }

    fn delete_scratch(&self, path: &str) -> Result<()> {
        let failed = self.delete_in_each(|b| b.delete_scratch(path));
        if failed.is_empty() {
            return Ok(());
        }
        Err(Error::backend(
            format!("delete of {path} failed: {}", failed.join("; ")),
            false,
        ))
    }

    fn reachable(&self) -> Result<()> {
        let all: Vec<usize> = (0..self.regions.len()).collect();
        let down: Vec<String> = self
            .on_each(&all, |b| b.reachable())
            .into_iter()
            .filter_map(|(i, r)| r.err().map(|e| format!("{}: {e}", self.region_name(i))))
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        Err(Error::backend(
            format!("unreachable region(s): {}", down.join("; ")),
            true,
        ))
    }

    fn describe(&self) -> String {
        self.regions
            .iter()
            .map(|(n, b)| format!("{n}={}", b.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn get_limited(&self, name: &ObjectName, max_len: u64) -> Result<Vec<u8>> {
        let mut bad = Vec::new();
        let mut errors = Vec::new();
        for (i, (_, b)) in self.regions.iter().enumerate() {
            match b.get_limited(name, max_len) {
                Ok(bytes) if name.verify(&bytes) => {
                    self.missing_where_found(name, &errors);
                    self.rewrite(name, &bytes, &bad);
                    return Ok(bytes);
                }
                Ok(_) => {
                    self.warn_bad_copy(i, name);
                    bad.push(i);
                    errors.push((i, Error::corrupt("copy fails its name check")));
                }
                Err(e) => {
                    if e.kind() != ErrorKind::NotFound {
                        self.read_failed(i, &e);
                    }
                    // A copy refused as damaged (larger than its kind allows, truncated)
                    // is replaced like one that fails its name check.
                    if e.kind() == ErrorKind::Corrupt {
                        bad.push(i);
                    }
                    errors.push((i, e));
                }
            }
        }
        Err(self.all_failed(name, "read of", errors))
    }

    fn get_range(&self, name: &ObjectName, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut errors = Vec::new();
        for (i, (_, b)) in self.regions.iter().enumerate() {
            match b.get_range(name, offset, len) {
                Ok(bytes) => {
                    self.missing_where_found(name, &errors);
                    return Ok(bytes);
                }
                Err(e) => {
                    if e.kind() != ErrorKind::NotFound {
                        self.read_failed(i, &e);
                    }
                    errors.push((i, e));
                }
            }
        }
        Err(self.all_failed(name, "range read of", errors))
    }

    fn put(&self, name: &ObjectName, bytes: Bytes) -> Result<()> {
        let (targets, skipped): (Vec<usize>, Vec<usize>) =
            (0..self.regions.len()).partition(|&i| !self.lock()[i].skipped);
        let mut took = 0;
        let mut failed = Vec::new();
        for (i, r) in self.on_each(&targets, |b| b.put(name, bytes.clone())) {
            match r {
                Ok(()) => {
                    took += 1;
                    self.lock()[i].write_failures_in_a_row = 0;
                }
                Err(e) => {
                    self.write_failed(i, name, &e);
                    failed.push((i, e));
                }
            }
        }
        if took >= self.min_writes {
            return Ok(());
        }
        for i in skipped {
            failed.push((
                i,
                Error::backend("not written: the region failed too many writes", true),
            ));
        }
        let detail = failed
            .iter()
            .map(|(i, e)| format!("{}: {e}", self.region_name(*i)))
            .collect::<Vec<_>>()
            .join("; ");
        Err(Error::backend(
            format!(
                "write of {name} reached {took} of {} regions, {} needed ({detail})",
                self.regions.len(),
                self.min_writes
            ),
            failed.iter().any(|(_, e)| e.is_retryable()),
        ))
    }

    fn delete(&self, name: &ObjectName) -> Result<()> {
        let failed = self.delete_in_each(|b| b.delete(name));
        if failed.is_empty() {
            return Ok(());
        }
        Err(Error::backend(
            format!(
                "delete of {name} failed in {} of {} regions (done in the others): {}",
                failed.len(),
                self.regions.len(),
                failed.join("; ")
            ),
            false,
        ))
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>> {
        let all: Vec<usize> = (0..self.regions.len()).collect();
        let mut union: BTreeMap<ObjectName, u64> = BTreeMap::new();
        let mut errors = Vec::new();
        let mut answered = false;
        for (i, r) in self.on_each(&all, |b| b.list(kind)) {
            match r {
                Ok(objects) => {
                    answered = true;
                    for (name, size) in objects {
                        let e = union.entry(name).or_insert(size);
                        *e = (*e).max(size);
                    }
                }
                Err(e) => {
                    self.read_failed(i, &e);
                    errors.push(format!("{}: {e}", self.region_name(i)));
                }
            }
        }
        if !answered {
            return Err(Error::backend(
                format!(
                    "listing {} failed in every region ({})",
                    kind.dir(),
                    errors.join("; ")
                ),
                true,
            ));
        }
        Ok(union.into_iter().collect())
    }

    /// The size from the first region that has the object; `None` only if a region
    /// answered and none has it; an error only if no region answered at all.
    fn stat(&self, name: &ObjectName) -> Result<Option<u64>> {
        let mut errors = Vec::new();
        let mut answered = false;
        for (i, (_, b)) in self.regions.iter().enumerate() {
            match b.stat(name) {
                Ok(Some(size)) => return Ok(Some(size)),
                Ok(None) => answered = true,
                Err(e) => {
                    self.read_failed(i, &e);
                    errors.push((i, e));
                }
            }
        }
        if answered {
            Ok(None)
        } else {
            Err(self.all_failed(name, "stat of", errors))
        }
    }
}

#[cfg(test)]
#[path = "regions_tests.rs"]
mod tests;
