//! Typed 32-byte identifiers. Each kind of ID is its own type so a `PackId` can never be
//! passed where a `ChunkId` is expected; all share the hex form used in object names.

use crate::error::{Error, Result};
use std::fmt;

/// Length in bytes of every ID (BLAKE3 output).
pub const ID_LEN: usize = 32;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; ID_LEN]);

        impl $name {
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// The first 8 hex digits, as shown to people.
            pub fn short(&self) -> String {
                hex::encode(&self.0[..4])
            }
            pub fn from_hex(s: &str) -> Result<Self> {
                let mut out = [0u8; ID_LEN];
                hex::decode_to_slice(s, &mut out)
                    .map_err(|_| Error::invalid(format!("{s:?} is not a 64-digit hex ID")))?;
                Ok($name(out))
            }
            pub fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

typed_id!(
    /// Keyed BLAKE3 of a blob's type byte and plaintext: a data chunk, a tree or a chunk list.
    BlobId
);
typed_id!(
    /// Name of a pack file: unkeyed BLAKE3 of its stored bytes.
    PackId
);
typed_id!(
    /// Name of an index file: unkeyed BLAKE3 of its stored bytes.
    IndexId
);
typed_id!(
    /// Name of a snapshot object: unkeyed BLAKE3 of its stored bytes.
    SnapshotId
);
typed_id!(
    /// Name of a key file: unkeyed BLAKE3 of its stored bytes.
    KeyId
);
typed_id!(
    /// Name of the config object: unkeyed BLAKE3 of its stored bytes.
    ConfigId
);
typed_id!(
    /// Random identity of a repository, fixed at `init` (names its cache folder).
    RepoId
);

/// The unkeyed content hash that names every stored object.
pub fn object_hash(bytes: &[u8]) -> [u8; ID_LEN] {
    *blake3::hash(bytes).as_bytes()
}
