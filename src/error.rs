//! The one public error type: a kind that callers can match on, a message with context,
//! and whether retrying could help. Module-local failures are mapped into it at the edge.

use std::fmt;

/// What went wrong, coarsely enough for a caller (or an exit code) to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No key file in the repository opens with the given password.
    WrongPassword,
    /// Stored bytes fail their hash, authentication or structure: tampering or corruption.
    Corrupt,
    /// A named object, snapshot or path does not exist.
    NotFound,
    /// The thing being created already exists (e.g. `init` on a repository).
    AlreadyExists,
    /// The caller asked for something invalid (bad argument, ambiguous prefix...).
    InvalidInput,
    /// The storage service failed; `retryable` says whether trying again may help.
    Backend,
    /// A local file-system error.
    Io,
    /// The operation was cancelled (Ctrl-C); what was written so far is consistent.
    Interrupted,
    /// A feature this build does not provide.
    Unsupported,
    /// Another operation holds what this one needs (a second prune); try again later.
    Locked,
}

/// The crate's error: kind + human message (+ retryability).
#[derive(Debug, Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    retryable: bool,
    /// The failing library's own account (a storage service's request context, say): too
    /// much for the one line a person reads, shown with `--verbose`.
    detail: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            retryable: false,
            detail: None,
        }
    }
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    pub fn backend(message: impl Into<String>, retryable: bool) -> Self {
        Error {
            retryable,
            ..Self::new(ErrorKind::Backend, message)
        }
    }
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(ErrorKind::Io, format!("{context}: {err}"))
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
    /// Keep `detail` for `--verbose`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    /// Prefix the message with where the error happened, keeping the kind.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Attach context to any `Result` whose error converts into ours.
pub trait ResultExt<T> {
    fn context(self, context: impl fmt::Display) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }
}
