//! coffer: a content-addressed, deduplicating, encrypted snapshot store for backup and
//! disaster recovery. See `format-spec/` for the on-disk format and `README.md` with `docs/` for use.
//!
//! Layers, bottom to top (each uses only those below; `tests/architecture.rs` checks it):
//! `error id clock progress hostfile child_env` → `crypto chunker compress` → `format` → `backend` →
//! `index` → `repo` → use cases (`backup restore check browse keys stats retention gc repair sync`) →
//! `cli` (binary).

pub mod backend;
pub mod backup;
pub mod browse;
pub mod bucket;
pub mod check;
pub mod child_env;
pub mod chunker;
pub mod clock;
pub mod compress;
pub mod config;
pub mod crypto;
pub mod error;
pub mod format;
pub mod gc;
pub mod hostfile;
pub mod id;
pub mod index;
pub mod jobs;
pub mod postgres;
pub mod progress;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod sample;
pub mod sources;
pub mod stats;
pub mod sync;
pub mod wal;

pub use error::{Error, ErrorKind, Result};
