//! Progress reporting as a trait, so the library never depends on a terminal library.
//! The CLI implements it with indicatif; tests and scripts use `NoProgress`.

/// Receives progress of long operations. Implementations must be cheap and thread-safe:
/// `advance` is called from worker threads for every chunk.
pub trait Progress: Send + Sync {
    /// A new phase starts ("backup", "restore", "read data"); `total` in bytes if known.
    fn start(&self, _phase: &str, _total: Option<u64>) {}
    /// Like `start`, for a phase that counts items (snapshots, packs), not bytes.
    fn start_items(&self, phase: &str, total: Option<u64>) {
        self.start(phase, total)
    }
    /// `bytes` more were processed in the current phase.
    fn advance(&self, _bytes: u64) {}
    /// The item being worked on (a path), for display only.
    fn item(&self, _name: &str) {}
    /// A non-fatal problem the user should see (a file that could not be read...).
    fn warn(&self, _message: &str) {}
    /// The current phase ended.
    fn finish(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
