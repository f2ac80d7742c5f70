//! Key files: the master secret wrapped under a password-derived key. A repository may hold
//! several; any one of them opens it.
//!
//! Layout: `"CFFK" version:u8 kdf:u8(1=argon2id v19) memory_kib:u32 iterations:u32
//! parallelism:u32 salt:[32] created_ns:i64 host:str16 user:str16` then
//! `sealed(master secret, 32 bytes)` = 72 bytes, with AAD = every byte before it.

use super::wire::{checked_len16, Reader, Writer};
use super::FORMAT_VERSION;
use crate::crypto::{self, derive_wrapping_key, KdfParams, MasterSecret, NONCE_LEN, SEAL_OVERHEAD};
use crate::error::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

pub const MAGIC: &[u8; 4] = b"CFFK";
const KDF_ARGON2ID: u8 = 1;
const WRAPPED_LEN: usize = 32 + SEAL_OVERHEAD;
/// Every field but the host and user names: 62 bytes before the box, then the box (§5.3).
const FIXED_LEN: usize = 62 + WRAPPED_LEN;
/// The largest key file the layout allows: host and user names of 65,535 bytes each.
pub const MAX_LEN: usize = FIXED_LEN + 2 * u16::MAX as usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    pub kdf: KdfParams,
    pub salt: [u8; 32],
    pub created_ns: i64,
    pub host: String,
    pub user: String,
    /// The sealed master secret.
    pub wrapped: Vec<u8>,
}

impl KeyFile {
    /// Wrap `master` under `password`. `fixed` gives the salt and nonce for test vectors; it
    /// is honoured only in builds with the `vectors` feature (see `Keys::seal_with_nonce`),
    /// and any other build draws both at random.
    pub fn create(
        master: &MasterSecret,
        password: &[u8],
        kdf: KdfParams,
        created_ns: i64,
        host: &str,
        user: &str,
        fixed: Option<([u8; 32], [u8; NONCE_LEN])>,
    ) -> Result<Self> {
        checked_len16("host name", host.as_bytes())?;
        checked_len16("user name", user.as_bytes())?;
        #[cfg(not(feature = "vectors"))]
        let fixed: Option<([u8; 32], [u8; NONCE_LEN])> = {
            let _ = fixed;
            None
        };
        let (salt, nonce) =
            fixed.unwrap_or_else(|| (crypto::random_bytes(), crypto::random_bytes()));
        let mut kf = KeyFile {
            kdf,
            salt,
            created_ns,
            host: host.to_string(),
            user: user.to_string(),
            wrapped: vec![],
        };
        let key = derive_wrapping_key(password, &salt, kdf)?;
        kf.wrapped = crypto::seal_raw(&key, nonce, &kf.public_bytes(), master.expose());
        Ok(kf)
    }

    /// Recover the master secret; a wrong password gives `ErrorKind::WrongPassword`.
    pub fn unwrap(&self, password: &[u8]) -> Result<MasterSecret> {
        let key = derive_wrapping_key(password, &self.salt, self.kdf)?;
        // The decrypted buffer is the master secret itself: wiped when dropped.
        let plain = Zeroizing::new(
            crypto::open_raw(&key, &self.public_bytes(), &self.wrapped)
                .map_err(|_| Error::new(ErrorKind::WrongPassword, "wrong password"))?,
        );
        MasterSecret::from_slice(&plain)
            .ok_or_else(|| Error::corrupt("key file holds a master secret of the wrong size"))
    }

    fn public_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(MAGIC);
        w.u8(FORMAT_VERSION);
        w.u8(KDF_ARGON2ID);
        w.u32(self.kdf.memory_kib);
        w.u32(self.kdf.iterations);
        w.u32(self.kdf.parallelism);
        w.raw(&self.salt);
        w.i64(self.created_ns);
        w.bytes16(self.host.as_bytes());
        w.bytes16(self.user.as_bytes());
        w.finish()
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.public_bytes();
        out.extend_from_slice(&self.wrapped);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "key file");
        r.header(MAGIC, FORMAT_VERSION)?;
        if r.u8()? != KDF_ARGON2ID {
            return Err(Error::corrupt(
                "key file names an unknown key derivation function",
            ));
        }
        let kdf = KdfParams {
            memory_kib: r.u32()?,
            iterations: r.u32()?,
            parallelism: r.u32()?,
        };
        if !kdf.is_within_bounds() {
            return Err(Error::corrupt(
                "key file has out-of-range argon2 parameters",
            ));
        }
        let salt = r.array()?;
        let created_ns = r.i64()?;
        let host = r.str16()?;
        let user = r.str16()?;
        let wrapped = r.take(WRAPPED_LEN)?.to_vec();
        r.end()?;
        Ok(KeyFile {
            kdf,
            salt,
            created_ns,
            host,
            user,
            wrapped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: KdfParams = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn the_largest_key_file_is_max_len_and_opens() {
        let master = MasterSecret::from_bytes([7; 32]);
        let long = "h".repeat(u16::MAX as usize);
        let kf = KeyFile::create(&master, b"pw", TINY, 0, &long, &long, None).unwrap();
        let bytes = kf.encode();
        assert_eq!(bytes.len(), MAX_LEN);
        let back = KeyFile::decode(&bytes).unwrap();
        assert_eq!(back.unwrap(b"pw").unwrap().expose(), &[7; 32]);
        assert_eq!(
            back.unwrap(b"not it").err().map(|e| e.kind()),
            Some(ErrorKind::WrongPassword)
        );
        let short = KeyFile::create(&master, b"pw", TINY, 0, "", "", None).unwrap();
        assert_eq!(short.encode().len(), FIXED_LEN);
    }
}
