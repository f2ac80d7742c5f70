//! PostgreSQL's write-ahead log, archived continuously: the files PostgreSQL hands to
//! `archive_command` are stored one object each in `wal/` (format-spec §5.13), and handed
//! back to `restore_command` during recovery. Together with physical base backups they
//! bring a database back to any moment the archive covers.

pub mod catalog;
pub mod chain;
pub mod fetch;
pub mod names;
pub mod push;
pub mod retention;
pub mod scan;
pub mod status;
/// Synthetic segments for the test vector, tests and fuzz seeds (never in a release build).
#[cfg(any(test, feature = "vectors"))]
pub mod synthetic;
pub mod verify;

pub use catalog::{Catalog, WalEntry};
pub use fetch::{fetch, from_spool, Fetched};
pub use names::WalName;
pub use push::{push_file, PushReport, Pushed};
