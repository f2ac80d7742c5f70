//! Password-based key derivation (argon2id) for wrapping the master secret in key files.

use crate::error::{Error, Result};
use argon2::{Algorithm, Argon2, Params, Version};
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
    /// Bounds a decoder accepts, so a hostile key file cannot demand absurd work.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    pub const MAX_ITERATIONS: u32 = 64;
    pub const MAX_PARALLELISM: u32 = 64;

    pub fn is_within_bounds(&self) -> bool {
        // In u64: a hostile parallelism must not overflow the product.
        self.memory_kib as u64 >= 8 * self.parallelism.max(1) as u64
            && self.memory_kib <= Self::MAX_MEMORY_KIB
            && (1..=Self::MAX_ITERATIONS).contains(&self.iterations)
            && (1..=Self::MAX_PARALLELISM).contains(&self.parallelism)
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
