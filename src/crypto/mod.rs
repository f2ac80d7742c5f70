//! Keys and authenticated encryption.
//!
//! A repository has one random 32-byte master secret. Every purpose gets its own subkey,
//! derived with BLAKE3's key derivation mode so that keys never serve two roles:
//! the AEAD key (XChaCha20-Poly1305), the chunk-ID key (keyed BLAKE3) and the chunker's
//! gear table (a keyed BLAKE3 PRF).
//! Key files wrap the master secret under a password-derived key (argon2id).

mod password;

pub use password::{allow_tiny_kdf_in_tests, derive_wrapping_key, KdfLimit, KdfParams};

use crate::error::{Error, Result};
use crate::id::{BlobId, ID_LEN};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::{OsRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Bytes of nonce in front of every sealed box.
pub const NONCE_LEN: usize = 24;
/// Bytes of Poly1305 tag at the end of every sealed box.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Fill a buffer from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    OsRng.fill_bytes(&mut out);
    out
}

/// The repository's master secret. Zeroized on drop; deliberately not `Debug` or `Copy`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterSecret([u8; 32]);

impl MasterSecret {
    pub fn generate() -> Self {
        MasterSecret(random_bytes())
    }
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        MasterSecret(bytes)
    }
    /// Copy a secret out of a decrypted buffer straight into its zeroized home, so no other
    /// copy of it is left behind on the stack. `None` unless it is 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut m = MasterSecret([0; 32]);
        if bytes.len() != m.0.len() {
            return None;
        }
        m.0.copy_from_slice(bytes);
        Some(m)
    }
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The subkeys derived from a master secret.
#[derive(Clone, ZeroizeOnDrop)]
pub struct Keys {
    aead_key: [u8; 32],
    chunk_id_key: [u8; 32],
    chunker_gear: [u64; 256],
}

/// Domain strings for key derivation. Changing one changes every ID: they are part of the format.
const CTX_AEAD: &str = "coffer v1 2026-11 aead key";
const CTX_CHUNK_ID: &str = "coffer v1 2026-11 blob id key";
/// The key of the chunker's gear table (format-spec §4.1). Writers only: no reader derives it.
/// It replaced "coffer v1 2026-11 chunker seed", a 64-bit seed XORed into FastCDC's public
/// table, and is a context of its own so that nothing of that weaker keying (whose bits
/// chunk boundaries may have leaked) is reused.
const CTX_CHUNKER_GEAR: &str = "coffer v3 2026-12 chunker gear key";

/// The gear table: `gear[i]` = the first 8 bytes (little-endian) of
/// `BLAKE3-keyed(gear key, "gear" || i)`, so every entry is an independent secret value.
fn derive_gear(master: &MasterSecret) -> [u64; 256] {
    let mut key = blake3::derive_key(CTX_CHUNKER_GEAR, master.expose());
    let mut gear = [0u64; 256];
    for (i, g) in gear.iter_mut().enumerate() {
        let mut out = *blake3::keyed_hash(&key, &[b'g', b'e', b'a', b'r', i as u8]).as_bytes();
        *g = u64::from_le_bytes(out[..8].try_into().expect("8 bytes"));
        out.zeroize();
    }
    key.zeroize();
    gear
}

impl Keys {
    pub fn derive(master: &MasterSecret) -> Self {
        Keys {
            aead_key: blake3::derive_key(CTX_AEAD, master.expose()),
            chunk_id_key: blake3::derive_key(CTX_CHUNK_ID, master.expose()),
            chunker_gear: derive_gear(master),
        }
    }

    /// A blob's ID: keyed BLAKE3 of its type byte followed by its plaintext. The key makes
    /// IDs differ between repositories; the type byte keeps a data chunk that happens to
    /// equal a tree's bytes from ever sharing the tree's ID.
    pub fn blob_id(&self, blob_type: u8, plaintext: &[u8]) -> BlobId {
        let mut h = blake3::Hasher::new_keyed(&self.chunk_id_key);
        h.update(&[blob_type]);
        h.update(plaintext);
        let id = BlobId(*h.finalize().as_bytes());
        // The hasher's state holds the blob-ID key, expanded.
        h.zeroize();
        id
    }

    /// The secret gear table that places chunk boundaries, so stored sizes don't fingerprint
    /// content.
    pub fn chunker_gear(&self) -> &[u64; 256] {
        &self.chunker_gear
    }

    /// Encrypt and authenticate `plaintext`, binding `aad`. Output: nonce || ciphertext || tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_raw(&self.aead_key, random_bytes(), aad, plaintext)
    }

    /// `seal` with a caller-chosen nonce, for the spec's test vectors only: a nonce must
    /// never repeat. It exists only in builds with the `vectors` feature, which the test
    /// suite turns on (Cargo.toml) and a release build never has, so production code cannot
    /// call it by mistake.
    #[cfg(feature = "vectors")]
    pub fn seal_with_nonce(&self, nonce: [u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_raw(&self.aead_key, nonce, aad, plaintext)
    }

    /// What the encoders call: `seal`, or with `Some(nonce)` the vectors' fixed nonce. The
    /// fixed nonce is honoured only with the `vectors` feature; any other build draws a
    /// fresh one whatever it is given, so no production path can repeat a nonce.
    pub fn seal_fixed_or_random(
        &self,
        nonce: Option<[u8; NONCE_LEN]>,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        #[cfg(feature = "vectors")]
        if let Some(n) = nonce {
            return self.seal_with_nonce(n, aad, plaintext);
        }
        #[cfg(not(feature = "vectors"))]
        let _ = nonce;
        self.seal(aad, plaintext)
    }

    /// Check and decrypt a sealed box. Any change to nonce, ciphertext, tag or `aad` fails.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
        open_raw(&self.aead_key, aad, sealed)
    }
}

pub(crate) fn seal_raw(key: &[u8; 32], nonce: [u8; NONCE_LEN], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let ct = cipher
        .encrypt(XNonce::from_slice(&nonce), Payload { msg, aad })
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

pub(crate) fn open_raw(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Error::corrupt("sealed data is shorter than nonce and tag"));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .map_err(|_| Error::corrupt("authentication failed: data was modified or damaged"))
}

/// Hash length re-exported for layers that size buffers.
pub const BLOB_ID_LEN: usize = ID_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let keys = Keys::derive(&MasterSecret::generate());
        let sealed = keys.seal(b"aad", b"hello");
        assert_eq!(keys.open(b"aad", &sealed).unwrap(), b"hello");
        assert!(keys.open(b"other", &sealed).is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(keys.open(b"aad", &bad).is_err(), "flip at {i} not caught");
        }
        assert!(keys.open(b"aad", &sealed[..sealed.len() - 1]).is_err());
    }

    #[test]
    fn blob_ids_are_keyed() {
        let a = Keys::derive(&MasterSecret::generate());
        let b = Keys::derive(&MasterSecret::generate());
        assert_ne!(a.blob_id(0, b"same"), b.blob_id(0, b"same"));
        assert_eq!(a.blob_id(0, b"same"), a.blob_id(0, b"same"));
        assert_ne!(a.blob_id(0, b"same"), a.blob_id(1, b"same"));
    }

    #[test]
    fn gear_tables_are_keyed() {
        let m = MasterSecret::from_bytes([3; 32]);
        let a = Keys::derive(&m);
        assert_eq!(a.chunker_gear(), Keys::derive(&m).chunker_gear());
        let b = Keys::derive(&MasterSecret::from_bytes([4; 32]));
        // Every entry differs, not only some: no entry is shared by two keys' tables.
        assert!(a
            .chunker_gear()
            .iter()
            .zip(b.chunker_gear())
            .all(|(x, y)| x != y));
    }
}
