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

/// The wall clock shifted by a fixed offset: a test's "now" that still moves, so successive
/// snapshots get distinct times and durations stay real.
pub struct OffsetClock {
    pub offset_ns: i64,
}

impl OffsetClock {
    /// A clock that reads `start_ns` now and runs on from there.
    pub fn starting_at(start_ns: Nanos) -> Self {
        OffsetClock {
            offset_ns: start_ns.saturating_sub(SystemClock.now()),
        }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Nanos {
        SystemClock.now().saturating_add(self.offset_ns)
    }
}
