//! The one source of "now", so tests can pin time (snapshot times, selection by @TIME).

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch, UTC.
pub type Nanos = i64;

pub trait Clock: Send + Sync {
    fn now(&self) -> Nanos;
}

/// The real wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Nanos {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        d.as_nanos().min(i64::MAX as u128) as i64
    }
}

/// A clock that always answers the same instant.
pub struct FixedClock(pub Nanos);

impl Clock for FixedClock {
    fn now(&self) -> Nanos {
        self.0
    }
}
