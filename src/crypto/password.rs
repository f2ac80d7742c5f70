//! Password-based key derivation (argon2id) for wrapping the master secret in key files.

use crate::error::{Error, Result};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::atomic::{AtomicBool, Ordering};
use zeroize::Zeroizing;

/// Argon2id cost parameters, stored in each key file so they can be raised later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The default for new keys: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommendation
    /// uses 64 MiB and 3 passes; one lane keeps it deterministic in cost on small machines).
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };
    /// Bounds a decoder accepts (format-spec §6), so a hostile key file cannot demand absurd
    /// work. What a reader actually spends is bounded further by a [`KdfLimit`].
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    pub const MAX_ITERATIONS: u32 = 64;
    pub const MAX_PARALLELISM: u32 = 64;
    /// The least a new key file gets: OWASP's minimum configuration for Argon2id, 19 MiB
    /// and 2 passes. Below it a stolen key file is too cheap to guess passwords against.
    pub const MIN_NEW_MEMORY_KIB: u32 = 19 * 1024;
    pub const MIN_NEW_ITERATIONS: u32 = 2;

    pub fn is_within_bounds(&self) -> bool {
        // In u64: a hostile parallelism must not overflow the product.
        self.memory_kib as u64 >= 8 * self.parallelism.max(1) as u64
            && self.memory_kib <= Self::MAX_MEMORY_KIB
            && (1..=Self::MAX_ITERATIONS).contains(&self.iterations)
            && (1..=Self::MAX_PARALLELISM).contains(&self.parallelism)
    }

    /// The work one derivation takes, in KiB of memory filled: Argon2 fills `memory_kib`
    /// once per pass whatever the lanes. Orders key files cheapest first.
    pub fn cost(&self) -> u64 {
        self.memory_kib as u64 * self.iterations as u64
    }

    /// These parameters for a key file about to be written: below 19 MiB of memory they
    /// become OWASP's minimum configuration (19 MiB, 2 passes; the passes asked for went
    /// with the smaller memory). The library's own unit tests, and a debug build asked to by
    /// the test suite ([`allow_tiny_kdf_in_tests`]), keep tiny keys for speed.
    pub fn for_new_key(self) -> KdfParams {
        let tiny_allowed = cfg!(test) || TINY_KDF_IN_TESTS.load(Ordering::Relaxed);
        if tiny_allowed || self.memory_kib >= Self::MIN_NEW_MEMORY_KIB {
            return self;
        }
        KdfParams {
            memory_kib: Self::MIN_NEW_MEMORY_KIB,
            iterations: Self::MIN_NEW_ITERATIONS,
            ..self
        }
    }
}

/// The most Argon2 work a reader spends on one key file. A key file that asks for more is
/// skipped, not tried: anyone who can write to the storage can plant key files, and every
/// open would otherwise pay for them (format-spec §4.2). Raise it only for a key you made
/// with a higher cost on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfLimit {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
}

impl KdfLimit {
    /// 1 GiB and 10 passes: about 16 and 3 times the default for new keys.
    pub const DEFAULT: KdfLimit = KdfLimit {
        memory_kib: 1024 * 1024,
        iterations: 10,
    };

    pub fn allows(&self, kdf: &KdfParams) -> bool {
        kdf.memory_kib <= self.memory_kib && kdf.iterations <= self.iterations
    }
}

impl Default for KdfLimit {
    fn default() -> Self {
        KdfLimit::DEFAULT
    }
}

/// Derive the 32-byte key that wraps the master secret.
pub fn derive_wrapping_key(
    password: &[u8],
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>> {
    if !params.is_within_bounds() {
        return Err(Error::corrupt(
            "key file asks for out-of-range argon2 parameters",
        ));
    }
    let p = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|e| Error::corrupt(format!("invalid argon2 parameters: {e}")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(password, salt, out.as_mut())
        .map_err(|e| Error::corrupt(format!("argon2 failed: {e}")))?;
    Ok(out)
}

static TINY_KDF_IN_TESTS: AtomicBool = AtomicBool::new(false);

/// Let new key files keep a cost below OWASP's minimum: for the test suite, whose hundreds of
/// commands would each pay 0.1 s more for a real key. Only a debug build honours it (the CLI
/// calls this when `COFFER_TEST_TINY_KDF` is set in a debug build), so a release binary
/// always writes keys of at least the minimum.
#[doc(hidden)]
pub fn allow_tiny_kdf_in_tests() {
    if cfg!(debug_assertions) {
        TINY_KDF_IN_TESTS.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_allows_the_default_and_refuses_planted_costs() {
        let limit = KdfLimit::DEFAULT;
        assert!(limit.allows(&KdfParams::DEFAULT));
        for planted in [
            KdfParams {
                memory_kib: KdfParams::MAX_MEMORY_KIB,
                ..KdfParams::DEFAULT
            },
            KdfParams {
                iterations: KdfParams::MAX_ITERATIONS,
                ..KdfParams::DEFAULT
            },
        ] {
            assert!(planted.is_within_bounds() && !limit.allows(&planted));
        }
    }

    #[test]
    fn cost_orders_by_memory_times_passes() {
        let cheap = KdfParams {
            memory_kib: 1024,
            iterations: 3,
            parallelism: 1,
        };
        let dear = KdfParams {
            memory_kib: 1024,
            iterations: 4,
            parallelism: 1,
        };
        assert!(cheap.cost() < dear.cost());
        assert!(KdfParams::DEFAULT.cost() < dear.cost() * 1024);
    }
}
