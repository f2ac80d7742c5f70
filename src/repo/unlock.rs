//! Which key file opens the repository, and what to say when none does (format-spec §4.2).
//!
//! Anyone who can write to the storage can add key files, so trying them must not cost
//! whatever they ask. The key file that opened this repository last time on this machine
//! (a hint kept in the cache) is tried first, and alone when it opens. Otherwise every key
//! file is read (each at most a key file's size), and the usable ones are tried cheapest
//! first. One whose Argon2 cost is above the reader's limit is skipped, not tried, and
//! named. One that fails its name check is damaged, and is reported as damaged, never as a
//! wrong password.

use crate::backend::{Backend, ObjectKind, ObjectName};
use crate::crypto::{KdfLimit, KdfParams, Keys};
use crate::error::{Error, ErrorKind, Result};
use crate::format::config::Config;
use crate::format::keyfile::KeyFile;
use crate::id::KeyId;

/// The key file that opened the repository, with what it opened.
pub(super) struct Unlocked {
    pub key_id: KeyId,
    pub keys: Keys,
    pub config: Config,
}

/// What the key files that did not open the repository said.
#[derive(Default)]
struct Findings {
    /// Intact key files that the password does not open.
    wrong_password: usize,
    /// Key files that fail their name check (or could not be read whole), with why.
    damaged: Vec<(ObjectName, String)>,
    /// Key files not tried: their cost (or size) is above what a reader spends.
    skipped: Vec<(ObjectName, String)>,
    /// Anything else: not a key file, a key of another repository, a read that failed.
    other: Vec<Error>,
}

/// Find the key file that opens `config_bytes` with `password`. `listed` is the listing of
/// `keys/` with sizes; `hint` the key that opened the repository last time here.
pub(super) fn unlock(
    backend: &dyn Backend,
    listed: &[(ObjectName, u64)],
    config_bytes: &[u8],
    password: &[u8],
    limit: KdfLimit,
    hint: Option<KeyId>,
    warn: &dyn Fn(&str),
) -> Result<Unlocked> {
    let mut f = Findings::default();
    let hinted = hint.and_then(|h| listed.iter().find(|(n, _)| n.hash == h.0));
    if let Some(entry) = hinted {
        if let Some(kf) = read_key(backend, entry, limit, &mut f) {
            if let Some(u) = try_key(&entry.0, &kf, password, config_bytes, &mut f) {
                return Ok(u);
            }
        }
    }
    let mut usable = Vec::new();
    for entry in listed.iter().filter(|e| Some(*e) != hinted) {
        if let Some(kf) = read_key(backend, entry, limit, &mut f) {
            usable.push((entry.0, kf));
        }
    }
    usable.sort_by_key(|(name, kf)| (kf.kdf.cost(), *name));
    let opened = usable
        .iter()
        .find_map(|(name, kf)| try_key(name, kf, password, config_bytes, &mut f));
    match opened {
        Some(u) => {
            f.warn_about_the_others(limit, warn);
            Ok(u)
        }
        None => Err(f.into_error(backend, listed.len(), limit)),
    }
}

/// Read, check and decode one key file; `None` (with the reason in `f`) when it cannot be
/// tried.
fn read_key(
    backend: &dyn Backend,
    (name, size): &(ObjectName, u64),
    limit: KdfLimit,
    f: &mut Findings,
) -> Option<KeyFile> {
    let max = ObjectKind::Key.max_len();
    if *size > max {
        f.skipped.push((
            *name,
            format!("it is {size} bytes, more than a key file can be ({max})"),
        ));
        return None;
    }
    let bytes = match backend.get(name) {
        Ok(b) => b,
        // Removed since the listing (`key passwd` elsewhere): not a key file any more.
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) if e.kind() == ErrorKind::Corrupt => {
            f.damaged.push((*name, e.to_string()));
            return None;
        }
        Err(e) => {
            f.other.push(e);
            return None;
        }
    };
    if !name.verify(&bytes) {
        f.damaged
            .push((*name, "its bytes do not match its name".to_string()));
        return None;
    }
    let kf = match KeyFile::decode(&bytes) {
        Ok(kf) => kf,
        Err(e) => {
            f.other.push(e.context(format!("key file {name}")));
            return None;
        }
    };
    if !limit.allows(&kf.kdf) {
        f.skipped.push((
            *name,
            format!("it asks Argon2 for {}", describe_cost(&kf.kdf)),
        ));
        return None;
    }
    Some(kf)
}

/// Unwrap one key file and open the config with what it holds.
fn try_key(
    name: &ObjectName,
    kf: &KeyFile,
    password: &[u8],
    config_bytes: &[u8],
    f: &mut Findings,
) -> Option<Unlocked> {
    let master = match kf.unwrap(password) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::WrongPassword => {
            f.wrong_password += 1;
            return None;
        }
        Err(e) => {
            f.other.push(e.context(format!("key file {name}")));
            return None;
        }
    };
    let keys = Keys::derive(&master);
    // One that unwraps but does not open the config belongs elsewhere, or was planted
    // (§4.2): keep trying the others.
    match Config::decode(&keys, config_bytes) {
        Ok(config) => Some(Unlocked {
            key_id: KeyId(name.hash),
            keys,
            config,
        }),
        Err(e) => {
            f.other
                .push(e.context(format!("key file {name} opens, but not the config")));
            None
        }
    }
}

/// `4096 MiB and 64 passes`.
pub fn describe_cost(kdf: &KdfParams) -> String {
    let passes = if kdf.iterations == 1 {
        "pass"
    } else {
        "passes"
    };
    format!(
        "{} MiB and {} {passes}",
        kdf.memory_kib.div_ceil(1024),
        kdf.iterations
    )
}

/// What raises the limit, for messages.
fn limit_hint(limit: KdfLimit) -> String {
    format!(
        "the limit is {}; --max-kdf-memory SIZE and --max-kdf-passes N raise it for a key \
         you made that way",
        describe_cost(&KdfParams {
            memory_kib: limit.memory_kib,
            iterations: limit.iterations,
            parallelism: 1,
        })
    )
}

/// `keys/ab…, keys/cd… and 3 more`.
fn names(list: &[(ObjectName, String)]) -> String {
    const SHOWN: usize = 3;
    let mut out: Vec<String> = list
        .iter()
        .take(SHOWN)
        .map(|(n, _)| n.to_string())
        .collect();
    if list.len() > SHOWN {
        out.push(format!("{} more", list.len() - SHOWN));
    }
    out.join(", ")
}

/// `keys/ab… (why)` for one, the names for several.
fn described(list: &[(ObjectName, String)]) -> String {
    match list {
        [(name, why)] => format!("{name} ({why})"),
        _ => names(list),
    }
}

impl Findings {
    /// After a successful open: name the key files that could not be used, so planted and
    /// damaged ones do not go unnoticed.
    fn warn_about_the_others(&self, limit: KdfLimit, warn: &dyn Fn(&str)) {
        if !self.damaged.is_empty() {
            warn(&format!(
                "damaged key file(s): {}; `coffer sync` puts back a good copy from another \
                 region",
                described(&self.damaged)
            ));
        }
        if !self.skipped.is_empty() {
            warn(&format!(
                "key file(s) skipped, not tried: {} ({}); `coffer key list` shows them, \
                 `coffer key remove ID` removes one you did not make",
                described(&self.skipped),
                limit_hint(limit)
            ));
        }
        for e in self.other.iter().take(3) {
            warn(&format!("a key file cannot be used: {e}"));
        }
    }

    /// Nothing opened: the most useful explanation first.
    fn into_error(mut self, backend: &dyn Backend, listed: usize, limit: KdfLimit) -> Error {
        let place = backend.describe();
        let mut notes = Vec::new();
        if !self.skipped.is_empty() {
            notes.push(format!(
                "{} key file(s) skipped, not tried: {}; {}",
                self.skipped.len(),
                described(&self.skipped),
                limit_hint(limit)
            ));
        }
        if !self.other.is_empty() && (self.wrong_password > 0 || !self.damaged.is_empty()) {
            notes.push(format!(
                "{} other key file(s) cannot be used",
                self.other.len()
            ));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        if !self.damaged.is_empty() {
            let which = match self.damaged.as_slice() {
                [(name, why)] => format!("key file {name} is damaged ({why})"),
                list => format!("key files {} are damaged", names(list)),
            };
            return Error::corrupt(format!(
                "{which}, and no other key file opens with this password: if the password \
                 belongs to a damaged key file, put back a good copy of it (`coffer sync` \
                 from another region, or a copy of the repository){notes}"
            ));
        }
        if self.wrong_password > 0 {
            return Error::new(
                ErrorKind::WrongPassword,
                format!("wrong password: no key in this repository opens with it{notes}"),
            );
        }
        if !self.other.is_empty() {
            let first = self.other.remove(0);
            return match notes.is_empty() {
                true => first,
                false => Error::new(first.kind(), format!("{first}{notes}")),
            };
        }
        if !self.skipped.is_empty() {
            return Error::new(
                ErrorKind::Unsupported,
                format!(
                    "no key file of {place} was tried: {} key file(s) ask for more work than \
                     a reader spends: {}; {}",
                    self.skipped.len(),
                    described(&self.skipped),
                    limit_hint(limit)
                ),
            );
        }
        if listed > 0 {
            return Error::not_found(format!(
                "the key files of {place} went away while they were read (a `key passwd` \
                 elsewhere?); try again"
            ));
        }
        Error::corrupt(format!(
            "{place} has a config but no key file, so nothing can open it: copy keys/ back \
             from another region (`coffer sync`) or from a copy of the repository"
        ))
    }
}
