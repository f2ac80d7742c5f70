//! The fixed binary encoding used by every stored structure: little-endian fixed-width
//! integers, length-prefixed byte strings, no `usize` on disk. The reader treats input as
//! hostile: every length is checked against what remains before anything is allocated.

use crate::error::{Error, Result};

/// Appends encoded values to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn raw(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// Length (u16) then bytes. Callers guarantee the length fits; see `checked_len16`.
    pub fn bytes16(&mut self, v: &[u8]) {
        self.u16(v.len() as u16);
        self.raw(v);
    }
    /// Length (u32) then bytes.
    pub fn bytes32(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.raw(v);
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads encoded values from a slice, failing with `Corrupt` on any shortfall.
pub struct Reader<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// `what` names the structure in error messages ("tree", "index"...).
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, what }
    }
    fn short(&self) -> Error {
        Error::corrupt(format!("{} is truncated", self.what))
    }
    pub fn remaining(&self) -> usize {
        self.data.len()
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.data.len() {
            return Err(self.short());
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn bytes16(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    pub fn bytes32(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A u16-prefixed UTF-8 string.
    pub fn str16(&mut self) -> Result<String> {
        let what = self.what;
        String::from_utf8(self.bytes16()?.to_vec())
            .map_err(|_| Error::corrupt(format!("{what} holds a string that is not UTF-8")))
    }
    /// A u32 element count, refused if `count * min_size` exceeds the remaining bytes, so a
    /// forged count can never cause a large allocation.
    pub fn count(&mut self, min_size: usize) -> Result<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.data.len() {
            return Err(Error::corrupt(format!(
                "{} claims {n} entries, more than its size allows",
                self.what
            )));
        }
        Ok(n)
    }
    /// Fail unless every byte was consumed: trailing garbage is corruption too.
    pub fn end(&self) -> Result<()> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(Error::corrupt(format!(
                "{} has {} unexpected trailing bytes",
                self.what,
                self.data.len()
            )))
        }
    }
    /// Expect an exact magic and a supported version byte.
    pub fn header(&mut self, magic: &[u8; 4], version: u8) -> Result<()> {
        let what = self.what;
        if self.take(4)? != magic {
            return Err(Error::corrupt(format!("{what}: wrong magic bytes")));
        }
        let v = self.u8()?;
        if v != version {
            return Err(Error::new(
                crate::error::ErrorKind::Unsupported,
                format!("{what} has format version {v}; this coffer reads version {version}"),
            ));
        }
        Ok(())
    }
}

/// Lengths that must fit a u16 prefix are checked when a structure is built, not encoded.
pub fn checked_len16(what: &str, v: &[u8]) -> Result<()> {
    if v.len() > u16::MAX as usize {
        return Err(Error::invalid(format!("{what} is longer than 65535 bytes")));
    }
    Ok(())
}
