//! The only file that uses opendal (and tokio, which opendal runs on). It adapts opendal's
//! async operator to the synchronous `Backend` trait with a private tokio runtime, so no
//! async leaks into the layers above.

use super::{Backend, Bytes, Location, ObjectKind, ObjectName};
use crate::error::{Error, Result};
use opendal::{services, ErrorKind as OdKind, Operator};
use std::sync::OnceLock;
use tokio::runtime::Runtime;

/// One runtime per process, shared by all operators: created on first use.
fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("coffer-io")
            .enable_all()
            .build()
            .expect("cannot start the I/O runtime")
    })
}

pub struct OpendalBackend {
    op: Operator,
    description: String,
}

fn map_err(what: impl std::fmt::Display, e: opendal::Error) -> Error {
    match e.kind() {
        OdKind::NotFound => Error::not_found(format!("{what}: not found")),
        OdKind::PermissionDenied => Error::backend(format!("{what}: permission denied"), false),
        _ => Error::backend(format!("{what}: {e}"), e.is_temporary()),
    }
}

impl OpendalBackend {
    pub fn open(location: &Location) -> Result<Self> {
        let op = match location {
            Location::Local(path) => {
                let root = std::path::absolute(path).map_err(|e| Error::io(path.display(), e))?;
                let root_str = root.to_string_lossy().into_owned();
                // Writes go to a temporary file first and are renamed into place, so a
                // process killed mid-write never leaves a partial object under a real name.
                let tmp = root.join("tmp");
                let builder = services::Fs::default()
                    .root(&root_str)
                    .atomic_write_dir(&tmp.to_string_lossy());
                Operator::new(builder)
                    .map_err(|e| map_err(&root_str, e))?
                    .finish()
            }
            Location::Memory => Operator::new(services::Memory::default())
                .map_err(|e| map_err("memory", e))?
                .finish(),
        };
        Ok(OpendalBackend {
            op,
            description: location.to_string(),
        })
    }
}

impl OpendalBackend {
    /// Read `len` bytes at `offset` (all of the object when `len` is `None`) into one Vec
    /// of the right size, piece by piece as opendal delivers them: collecting opendal's
    /// pieces first and joining them would hold every pack twice at the peak.
    fn read_exact(&self, name: &ObjectName, offset: u64, len: Option<u64>) -> Result<Vec<u8>> {
        let path = name.path();
        runtime()
            .block_on(async {
                let reader = self.op.reader(&path).await?;
                let mut out = Vec::with_capacity(len.unwrap_or(0) as usize);
                match len {
                    Some(len) => reader.read_into(&mut out, offset..offset + len).await?,
                    None => reader.read_into(&mut out, offset..).await?,
                };
                Ok(out)
            })
            .map_err(|e| map_err(name, e))
    }
}

impl Backend for OpendalBackend {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn get(&self, name: &ObjectName) -> Result<Vec<u8>> {
        self.read_exact(name, 0, None)
    }

    fn get_range(&self, name: &ObjectName, offset: u64, len: u64) -> Result<Vec<u8>> {
        let buf = self.read_exact(name, offset, Some(len))?;
        if buf.len() as u64 != len {
            return Err(Error::corrupt(format!(
                "{name}: asked for {len} bytes at {offset}, got {} (object truncated?)",
                buf.len()
            )));
        }
        Ok(buf)
    }

    fn put(&self, name: &ObjectName, bytes: Bytes) -> Result<()> {
        runtime()
            .block_on(self.op.write(&name.path(), bytes))
            .map(|_| ())
            .map_err(|e| map_err(name, e))
    }

    fn delete(&self, name: &ObjectName) -> Result<()> {
        runtime()
            .block_on(self.op.delete(&name.path()))
            .map_err(|e| map_err(name, e))
    }

    fn list(&self, kind: ObjectKind) -> Result<Vec<(ObjectName, u64)>> {
        let dir = format!("{}/", kind.dir());
        let entries =
            match runtime().block_on(async { self.op.list_with(&dir).recursive(true).await }) {
                Ok(e) => e,
                Err(e) if e.kind() == OdKind::NotFound => return Ok(vec![]),
                Err(e) => return Err(map_err(&dir, e)),
            };
        let mut out = Vec::new();
        for entry in entries {
            let Some(name) = ObjectName::parse(entry.path()) else {
                continue;
            };
            if name.kind != kind {
                continue;
            }
            let meta = entry.metadata();
            // Some services leave sizes out of listings; ask for them then.
            let size = if meta.mode().is_file() && meta.content_length() > 0 {
                meta.content_length()
            } else {
                match self.stat(&name)? {
                    Some(s) => s,
                    None => continue,
                }
            };
            out.push((name, size));
        }
        out.sort();
        Ok(out)
    }

    fn stat(&self, name: &ObjectName) -> Result<Option<u64>> {
        match runtime().block_on(self.op.stat(&name.path())) {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == OdKind::NotFound => Ok(None),
            Err(e) => Err(map_err(name, e)),
        }
    }
}
