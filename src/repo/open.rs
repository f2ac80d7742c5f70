//! Creating and opening repositories, and managing their key files.

use super::Repository;
use crate::backend::{Backend, ObjectKind, ObjectName};
use crate::clock::Clock;
use crate::crypto;
use crate::crypto::{KdfParams, Keys, MasterSecret};
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
        let master = MasterSecret::generate();
        let keys = Keys::derive(&master);
        let config = Config::new(RepoId(crypto::random_bytes()));
        let kf = KeyFile::create(
            &master,
            password,
            kdf,
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

    /// Open with a password: try every key file, then read the config.
    pub fn open(
        backend: Arc<dyn Backend>,
        password: &[u8],
        opts: OpenOptions,
    ) -> Result<Repository> {
        let configs = backend.list(ObjectKind::Config)?;
        let key_names = backend.list(ObjectKind::Key)?;
        if configs.is_empty() {
            return Err(Error::not_found(format!(
                "there is no repository at {} (run `coffer init` to create one)",
                backend.describe()
            )));
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
        // it is never mistaken for a wrong password.
        Config::peek_repo_id(&config_bytes)?;
        // Try every key file. One that unwraps but whose master secret does not open the
        // config belongs elsewhere (or was planted): keep trying the others.
        let mut opened = None;
        let mut wrong_password = false;
        let mut other_errors = Vec::new();
        for (name, _) in &key_names {
            let attempt = backend.get(name).and_then(|bytes| {
                if !name.verify(&bytes) {
                    return Err(Error::corrupt(format!("key file {name} is damaged")));
                }
                let master = KeyFile::decode(&bytes)?.unwrap(password)?;
                let keys = Keys::derive(&master);
                let config = Config::decode(&keys, &config_bytes)
                    .map_err(|e| e.context(format!("key file {name} opens, but not the config")))?;
                Ok((keys, config))
            });
            match attempt {
                Ok((keys, config)) => {
                    opened = Some((KeyId(name.hash), keys, config));
                    break;
                }
                Err(e) if e.kind() == ErrorKind::WrongPassword => wrong_password = true,
                Err(e) => other_errors.push(e),
            }
        }
        let (key_id, keys, config) = match opened {
            Some(o) => o,
            None if wrong_password || other_errors.is_empty() => {
                let note = if other_errors.is_empty() {
                    String::new()
                } else {
                    format!(" ({} other key file(s) are unreadable)", other_errors.len())
                };
                return Err(Error::new(
                    ErrorKind::WrongPassword,
                    format!("wrong password: no key in this repository opens with it{note}"),
                ));
            }
            None => return Err(other_errors.remove(0)),
        };
        let cache = match &opts.cache_dir {
            Some(dir) => Some(Mutex::new(Cache::open(dir, &config.repo_id)?)),
            None => None,
        };
        Ok(Repository {
            backend,
            keys,
            config,
            key_id,
            cache,
            index: RwLock::new(None),
            index_filter: RwLock::new(Default::default()),
            recent_frames: super::FrameCache::new(super::RECENT_FRAMES_BYTES),
            clock: opts.clock,
            warn: opts.warn,
        })
    }

    /// Every key file with its metadata.
    pub fn list_keys(&self) -> Result<Vec<(KeyId, KeyFile)>> {
        let mut out = Vec::new();
        for (name, _) in self.backend.list(ObjectKind::Key)? {
            let kf = KeyFile::decode(&self.read_object(&name)?)?;
            out.push((KeyId(name.hash), kf));
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
        let kf = KeyFile::create(master, password, kdf, self.clock.now(), host, user, None)?;
        let name = self.write_object(ObjectKind::Key, kf.encode())?;
        Ok(KeyId(name.hash))
    }

    /// Remove a key file. The last key, and the key in use, cannot be removed.
    pub fn remove_key(&self, id: &KeyId) -> Result<()> {
        let keys = self.list_keys()?;
        if !keys.iter().any(|(k, _)| k == id) {
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
    };
    let kdf = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    Repository::init(store.clone(), b"pw", kdf, &opts).expect("init");
    Repository::open(store, b"pw", opts).expect("open")
}
