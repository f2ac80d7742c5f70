//! Creating and opening repositories, and managing their key files.

use super::Repository;
use crate::backend::{Backend, ObjectKind, ObjectName};
use crate::clock::Clock;
use crate::crypto;
use crate::crypto::{KdfLimit, KdfParams, Keys, MasterSecret};
use crate::error::{Error, ErrorKind, Result};
use crate::format::config::Config;
use crate::format::keyfile::KeyFile;
use crate::id::{KeyId, RepoId};
use crate::index::cache::Cache;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

pub struct OpenOptions {
    /// Folder of the local cache; `None` works without one (slower, nothing written locally).
    pub cache_dir: Option<PathBuf>,
    pub clock: Arc<dyn Clock>,
    /// Who and where, recorded in new key files.
    pub host: String,
    pub user: String,
    /// Told about damage that the repository works around (e.g. an unreadable index file
    /// whose packs are then found again by the next backup).
    pub warn: Arc<dyn Fn(&str) + Send + Sync>,
    /// The most Argon2 work spent on one key file; costlier ones are skipped, not tried.
    pub kdf_limit: KdfLimit,
}

/// `$XDG_CACHE_HOME/coffer`, else `~/.cache/coffer`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("coffer"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("coffer"))
}

impl Repository {
    /// Create a new repository with one key. Refuses if anything repository-like exists.
    pub fn init(
        backend: Arc<dyn Backend>,
        password: &[u8],
        kdf: KdfParams,
        opts: &OpenOptions,
    ) -> Result<(RepoId, KeyId)> {
        for kind in [ObjectKind::Config, ObjectKind::Key] {
            if !backend.list(kind)?.is_empty() {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!(
                        "{} already holds a repository; refusing to overwrite it",
                        backend.describe()
                    ),
                ));
            }
        }
        check_new_password(password)?;
        let master = MasterSecret::generate();
        let keys = Keys::derive(&master);
        let config = Config::new(RepoId(crypto::random_bytes()));
        let kf = KeyFile::create(
            &master,
            password,
            kdf.for_new_key(),
            opts.clock.now(),
            &opts.host,
            &opts.user,
            None,
        )?;
        // Key first: a config without a key could never be opened.
        let key_bytes = kf.encode();
        let key_name = ObjectName::for_bytes(ObjectKind::Key, &key_bytes);
        backend.put(&key_name, key_bytes.into())?;
        let config_bytes = config.encode(&keys, None);
        backend.put(
            &ObjectName::for_bytes(ObjectKind::Config, &config_bytes),
            config_bytes.into(),
        )?;
        Ok((config.repo_id, KeyId(key_name.hash)))
    }

    /// Open with a password: check the config, find the key file that opens it
    /// (`unlock.rs`), then remember that key file as a hint for next time.
    pub fn open(
        backend: Arc<dyn Backend>,
        password: &[u8],
        opts: OpenOptions,
    ) -> Result<Repository> {
        let configs = backend.list(ObjectKind::Config)?;
        let key_names = backend.list(ObjectKind::Key)?;
        if configs.is_empty() {
            return Err(missing_config(backend.as_ref(), key_names.len())?);
        }
        if configs.len() > 1 {
            return Err(Error::corrupt(format!(
                "{} holds {} config objects; a repository has exactly one",
                backend.describe(),
                configs.len()
            )));
        }
        let config_name = configs[0].0;
        let config_bytes = backend.get(&config_name)?;
        if !config_name.verify(&config_bytes) {
            return Err(Error::corrupt(format!("{config_name}: config is damaged")));
        }
        // The format version is public: refuse a newer repository before trying any key, so
        // it is never mistaken for a wrong password. The repository ID is public too (and
        // authenticated once a key opens the config): it finds the cache, and in it the hint.
        let repo_id = Config::peek_repo_id(&config_bytes)?;
        let early_cache = opts
            .cache_dir
            .as_deref()
            .and_then(|dir| Cache::open_existing(dir, &repo_id).ok().flatten());
        let hint = early_cache
            .as_ref()
            .and_then(|c| c.last_key().ok().flatten());
        let unlocked = super::unlock::unlock(
            backend.as_ref(),
            &key_names,
            &config_bytes,
            password,
            opts.kdf_limit,
            hint,
            opts.warn.as_ref(),
        )?;
        let cache = match (early_cache, &opts.cache_dir) {
            (Some(c), _) => Some(c),
            // The cache only saves time: one that cannot be made (a server's archive_command
            // or a service user running with a HOME it cannot write, a --cache-dir on a
            // read-only mount) costs speed, not the command, as with restic. Every command
            // opens the repository here, so this is the one place that decides it.
            (None, Some(dir)) => match Cache::open(dir, &unlocked.config.repo_id) {
                Ok(c) => Some(c),
                Err(e) if e.kind() == crate::error::ErrorKind::Io => {
                    (opts.warn)(&format!(
                        "working without a local cache, which is slower: {e}; give \
                         --cache-dir DIR for a folder this user can write, or --no-cache"
                    ));
                    None
                }
                Err(e) => return Err(e),
            },
            (None, None) => None,
        };
        if let Some(c) = &cache {
            if hint != Some(unlocked.key_id) {
                // Only a hint: a cache that cannot take it costs speed next time, nothing else.
                let _ = c.set_last_key(&unlocked.key_id);
            }
        }
        Ok(Repository {
            backend,
            keys: unlocked.keys,
            config: unlocked.config,
            key_id: unlocked.key_id,
            cache: cache.map(Mutex::new),
            index: RwLock::new(None),
            index_filter: RwLock::new(Default::default()),
            recent_frames: super::FrameCache::new(super::RECENT_FRAMES_BYTES),
            unreadable: Default::default(),
            clock: opts.clock,
            warn: opts.warn,
        })
    }

    /// Every key file with its metadata. Fails if any key file is damaged (`key_files`
    /// lists them all).
    pub fn list_keys(&self) -> Result<Vec<(KeyId, KeyFile)>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(ObjectKind::Key)? {
            let kf = KeyFile::decode(&self.read_object(&name)?)?;
            out.push((KeyId(name.hash), kf));
        }
        Ok(out)
    }

    /// Every key file, readable or not, with what can be believed of it: a key file's
    /// host, user and time are authenticated only by its own password, so for any key file
    /// but the one this repository was opened with they are claims that anyone who can
    /// write to the storage could make.
    pub fn key_files(&self) -> Result<Vec<KeyListing>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(ObjectKind::Key)? {
            let id = KeyId(name.hash);
            let file = self
                .read_object(&name)
                .and_then(|bytes| KeyFile::decode(&bytes));
            if let Err(e) = &file {
                if e.kind() == ErrorKind::NotFound {
                    continue;
                }
            }
            out.push(KeyListing {
                id,
                verified: id == self.key_id,
                file,
            });
        }
        Ok(out)
    }

    /// Add a key file that opens this repository with `password`.
    pub fn add_key(
        &self,
        master: &MasterSecret,
        password: &[u8],
        kdf: KdfParams,
        host: &str,
        user: &str,
    ) -> Result<KeyId> {
        check_new_password(password)?;
        let kdf = kdf.for_new_key();
        let kf = KeyFile::create(master, password, kdf, self.clock.now(), host, user, None)?;
        let name = self.write_object(ObjectKind::Key, kf.encode())?;
        Ok(KeyId(name.hash))
    }

    /// Remove a key file, damaged or not. The last key, and the key in use, cannot be
    /// removed.
    pub fn remove_key(&self, id: &KeyId) -> Result<()> {
        let keys = self.backend.list(ObjectKind::Key)?;
        if !keys.iter().any(|(k, _)| k.hash == id.0) {
            return Err(Error::not_found(format!("no key {}", id.short())));
        }
        if *id == self.key_id {
            return Err(Error::invalid(
                "refusing to remove the key this command was opened with; open with another key first",
            ));
        }
        // Buried, not only deleted: a sync must not bring the removed password back.
        for (_, deleted) in self.bury(&[ObjectName::new(ObjectKind::Key, id.0)])? {
            deleted?;
        }
        Ok(())
    }

    /// The master secret, re-derived from the opening key file (for adding keys).
    pub fn unwrap_master(&self, password: &[u8]) -> Result<MasterSecret> {
        let name = ObjectName::new(ObjectKind::Key, self.key_id.0);
        KeyFile::decode(&self.read_object(&name)?)?.unwrap(password)
    }
}

/// One key file as `key list` shows it.
pub struct KeyListing {
    pub id: KeyId,
    /// Its public fields, or why it cannot be read (damaged, not a key file).
    pub file: Result<KeyFile>,
    /// Whether its host, user and time are authenticated: only for the key file this
    /// repository was opened with, whose password proved them.
    pub verified: bool,
}

/// A new password must not be empty: an empty one protects nothing.
fn check_new_password(password: &[u8]) -> Result<()> {
    if password.is_empty() {
        return Err(Error::invalid("an empty password is not allowed"));
    }
    Ok(())
}

/// The error for a folder without a config: "no repository" when it holds nothing of
/// coffer's, and when it does, that its config is missing and how to get it back (never
/// `init`, which would start another repository over the old one's objects).
fn missing_config(backend: &dyn Backend, keys: usize) -> Result<Error> {
    let place = backend.describe();
    let mut held = Vec::new();
    if keys > 0 {
        held.push(format!("{keys} key file(s)"));
    }
    for kind in [ObjectKind::Snapshot, ObjectKind::Index, ObjectKind::Pack] {
        // Packs are listed only when nothing cheaper answered: a listing of data/ is long.
        if kind == ObjectKind::Pack && !held.is_empty() {
            break;
        }
        let n = backend.list(kind)?.len();
        if n > 0 {
            held.push(format!("{n} {}(s)", kind.noun()));
        }
    }
    if held.is_empty() {
        return Ok(Error::not_found(format!(
            "there is no repository at {place} (run `coffer init` to create one)"
        )));
    }
    Ok(Error::not_found(format!(
        "no repository config at {place}, but it holds {}: the repository's config object \
         (config/) is missing. Copy it back from another region (`coffer sync` with every \
         region given) or from a copy of the repository",
        held.join(", ")
    )))
}

/// A repository in memory with a cheap key, for unit tests of the layers above.
#[cfg(test)]
pub(crate) fn memory_repository() -> Repository {
    use crate::backend::{self, Location};
    let store = backend::open(&Location::Memory).expect("memory backend");
    let opts = OpenOptions {
        cache_dir: None,
        clock: Arc::new(crate::clock::SystemClock),
        host: "test".into(),
        user: "test".into(),
        warn: Arc::new(|_| {}),
        kdf_limit: KdfLimit::DEFAULT,
    };
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    Repository::init(store.clone(), b"pw", kdf, &opts).expect("init");
    Repository::open(store, b"pw", opts).expect("open")
}
