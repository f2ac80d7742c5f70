//! Reports: the outcome of one integrity check or restore drill, stored in the repository so
//! that any machine with the password sees when the repository was last verified and how long
//! a restore took (format-spec §5.11). A sealed envelope like the objects of §5.10, so a
//! tampered region can delete a report but not forge a passing one.
//!
//! Layout: `"CFFR" version:u8` then the body, sealed with those 5 bytes as AAD:
//! `kind:u8 job:str16 time_ns:i64 duration_ns:u64 ok:u8 snapshots:count snapshot:[32]*
//! has_target:u8 target_ns:u64? message:str16 info_count:u16 (key:str16 value:str16)*`

use super::wire::{checked_len16, Reader, Writer};
use super::{open_envelope, seal_envelope, FORMAT_VERSION};
use crate::crypto::{Keys, NONCE_LEN};
use crate::error::{Error, Result};
use crate::id::SnapshotId;

pub const REPORT_MAGIC: &[u8; 4] = b"CFFR";

/// What was verified. The numbers are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ReportKind {
    /// `coffer check` (structure, or with some or all data read).
    Check = 1,
    /// `coffer drill`: a timed restore into scratch space, verified against the snapshot.
    Drill = 2,
}

impl ReportKind {
    fn from_u8(v: u8) -> Result<Self> {
        match v {
            1 => Ok(ReportKind::Check),
            2 => Ok(ReportKind::Drill),
            _ => Err(Error::corrupt(format!("report has unknown kind {v}"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ReportKind::Check => "check",
            ReportKind::Drill => "drill",
        }
    }
}

/// The outcome of one check or drill of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: ReportKind,
    /// The job it verified (empty for a check of the whole repository outside any job).
    pub job: String,
    /// When it started, ns since the Unix epoch.
    pub time_ns: i64,
    /// Wall time it took; for a drill, the RTO achieved.
    pub duration_ns: u64,
    pub ok: bool,
    /// The snapshots it restored (drill) or covered.
    pub snapshots: Vec<SnapshotId>,
    /// The job's RTO target when it ran, if the job has one.
    pub target_ns: Option<u64>,
    /// One line for people: what was done, or what went wrong.
    pub message: String,
    /// Details as key/value pairs, e.g. `files.bytes` → `1048576`.
    pub info: Vec<(String, String)>,
}

impl Report {
    /// Check the lengths the encoding bounds, before the report is written.
    pub fn validate(&self) -> Result<()> {
        if self.info.len() > u16::MAX as usize || self.snapshots.len() > u16::MAX as usize {
            return Err(Error::invalid(
                "a report holds too many info entries or snapshots",
            ));
        }
        checked_len16("report job", self.job.as_bytes())?;
        checked_len16("report message", self.message.as_bytes())?;
        for (k, v) in &self.info {
            checked_len16("report info key", k.as_bytes())?;
            checked_len16("report info value", v.as_bytes())?;
        }
        Ok(())
    }

    /// The value of an info entry.
    pub fn info(&self, key: &str) -> Option<&str> {
        self.info
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn encode(&self, keys: &Keys, nonce: Option<[u8; NONCE_LEN]>) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.kind as u8);
        w.bytes16(self.job.as_bytes());
        w.i64(self.time_ns);
        w.u64(self.duration_ns);
        w.u8(self.ok as u8);
        w.u32(self.snapshots.len() as u32);
        for s in &self.snapshots {
            w.raw(&s.0);
        }
        match self.target_ns {
            Some(t) => {
                w.u8(1);
                w.u64(t);
            }
            None => w.u8(0),
        }
        w.bytes16(self.message.as_bytes());
        w.u16(self.info.len() as u16);
        for (k, v) in &self.info {
            w.bytes16(k.as_bytes());
            w.bytes16(v.as_bytes());
        }
        let mut public = REPORT_MAGIC.to_vec();
        public.push(FORMAT_VERSION);
        seal_envelope(keys, nonce, public, &w.finish())
    }

    pub fn decode(keys: &Keys, bytes: &[u8]) -> Result<Self> {
        Reader::new(bytes, "report").header(REPORT_MAGIC, FORMAT_VERSION)?;
        let body = open_envelope(keys, bytes, 5, "report")?;
        let mut r = Reader::new(&body, "report");
        let kind = ReportKind::from_u8(r.u8()?)?;
        let job = r.str16()?;
        let time_ns = r.i64()?;
        let duration_ns = r.u64()?;
        let ok = flag(r.u8()?, "ok")?;
        let n = r.count(32)?;
        let mut snapshots = Vec::with_capacity(n);
        for _ in 0..n {
            snapshots.push(SnapshotId(r.array()?));
        }
        let target_ns = if flag(r.u8()?, "target")? {
            Some(r.u64()?)
        } else {
            None
        };
        let message = r.str16()?;
        let n = r.u16()?;
        // No capacity from the count: each entry is at least 4 bytes, checked as it is read.
        let mut info = Vec::new();
        for _ in 0..n {
            info.push((r.str16()?, r.str16()?));
        }
        r.end()?;
        Ok(Report {
            kind,
            job,
            time_ns,
            duration_ns,
            ok,
            snapshots,
            target_ns,
            message,
            info,
        })
    }
}

/// A one-byte boolean: 0 or 1, anything else is corruption (decoding stays canonical).
fn flag(v: u8, what: &str) -> Result<bool> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(Error::corrupt(format!("report {what} flag is not 0 or 1"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterSecret;

    fn keys() -> Keys {
        Keys::derive(&MasterSecret::from_bytes([7; 32]))
    }

    fn sample() -> Report {
        Report {
            kind: ReportKind::Drill,
            job: "app".into(),
            time_ns: -5,
            duration_ns: 7,
            ok: true,
            snapshots: vec![SnapshotId([1; 32]), SnapshotId([2; 32])],
            target_ns: Some(900_000_000_000),
            message: "restored 2 sources".into(),
            info: vec![("files.bytes".into(), "12".into())],
        }
    }

    #[test]
    fn round_trips() {
        let k = keys();
        for r in [
            sample(),
            Report {
                kind: ReportKind::Check,
                job: String::new(),
                ok: false,
                snapshots: vec![],
                target_ns: None,
                message: String::new(),
                info: vec![],
                ..sample()
            },
        ] {
            r.validate().unwrap();
            assert_eq!(Report::decode(&k, &r.encode(&k, None)).unwrap(), r);
        }
        assert_eq!(sample().info("files.bytes"), Some("12"));
    }

    #[test]
    fn refuses_bad_flags_and_kinds() {
        let k = keys();
        let public = b"CFFR\x03".to_vec();
        let sealed = |body: &[u8]| seal_envelope(&k, None, public.clone(), body);
        // kind 3; then ok = 2; then target flag = 2.
        let mut body = vec![3, 0, 0];
        body.extend([0; 16]);
        body.push(1);
        body.extend([0; 4]);
        body.push(0);
        body.extend([0; 4]);
        assert!(Report::decode(&k, &sealed(&body)).is_err());
        body[0] = 2;
        Report::decode(&k, &sealed(&body)).unwrap();
        body[19] = 2;
        assert!(Report::decode(&k, &sealed(&body)).is_err());
        body[19] = 1;
        body[24] = 2;
        assert!(Report::decode(&k, &sealed(&body)).is_err());
    }

    #[test]
    fn validate_bounds_lengths() {
        let mut r = sample();
        r.message = "x".repeat(70_000);
        assert!(r.validate().is_err());
    }
}
