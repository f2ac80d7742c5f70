//! PostgreSQL connection URLs (`postgresql://user:password@host:port/db?param=value`).
//!
//! Secret parameters (the password, `sslpassword`, ...) are taken out of the URL as soon as
//! it is parsed: the tools get them from a private temporary file (`conn.rs`), so they are
//! on no command line that `ps` shows, and what is shown or recorded in a snapshot is the
//! URL without them.

use crate::error::{Error, Result};
use zeroize::Zeroizing;

/// libpq connection parameters whose values are secrets. `password` may also come from the
/// user information (`user:password@`).
pub const SECRET_PARAMS: &[&str] = &["password", "sslpassword", "oauth_client_secret"];

/// A parsed connection URL without its secrets.
#[derive(Clone)]
pub struct PgUrl {
    scheme: String,
    /// User name as written (percent-encoded), if any.
    user: Option<String>,
    /// Host list as written: `host[:port][,host[:port]]...`, possibly empty.
    hosts: String,
    /// Database name, decoded.
    dbname: Option<String>,
    /// Query parameters as written, in order, without the secrets and `dbname`.
    params: Vec<(String, String)>,
    /// Secret parameters (from `SECRET_PARAMS`), decoded; the last one given wins.
    secrets: Vec<(&'static str, Zeroizing<String>)>,
}

impl std::fmt::Debug for PgUrl {
    // Never print the password, not even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgUrl({})", self)
    }
}

impl PgUrl {
    pub fn parse(s: &str) -> Result<PgUrl> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "postgresql" | "postgres"))
            .ok_or_else(|| {
                // The text is not echoed: it may hold a password.
                Error::invalid(
                    "a PostgreSQL URL must look like postgresql://USER@HOST:PORT/DATABASE",
                )
            })?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        // The user information ends at the last '@' (a password may contain '@' only
        // percent-encoded, but be lenient).
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut url = PgUrl {
            scheme: scheme.to_string(),
            user: None,
            hosts: hosts.to_string(),
            dbname: None,
            params: Vec::new(),
            secrets: Vec::new(),
        };
        if let Some(u) = userinfo {
            let (user, password) = match u.split_once(':') {
                Some((user, pw)) => (user, Some(pw)),
                None => (u, None),
            };
            url.user = Some(user.to_string()).filter(|u| !u.is_empty());
            if let Some(p) = password {
                url.set_secret("password", percent_decode(p));
            }
        }
        url.dbname = path.filter(|p| !p.is_empty()).map(percent_decode);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if let Some(secret) = SECRET_PARAMS.iter().find(|s| **s == k) {
                url.set_secret(secret, percent_decode(v));
                continue;
            }
            match k {
                "dbname" => url.dbname = Some(percent_decode(v)),
                _ => url.params.push((k.to_string(), v.to_string())),
            }
        }
        Ok(url)
    }

    fn set_secret(&mut self, key: &'static str, value: String) {
        self.secrets.retain(|(k, _)| *k != key);
        self.secrets.push((key, Zeroizing::new(value)));
    }

    pub fn password(&self) -> Option<&str> {
        self.secret("password")
    }

    /// The value of secret parameter `key` (one of `SECRET_PARAMS`), if the URL gave it.
    pub fn secret(&self, key: &str) -> Option<&str> {
        self.secrets
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every secret the URL gave, as (parameter, value).
    pub fn secrets(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.secrets.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The user name before '@', decoded.
    pub fn user(&self) -> Option<String> {
        self.user.as_deref().map(percent_decode)
    }

    pub fn database(&self) -> Option<&str> {
        self.dbname.as_deref()
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, db: &str) -> PgUrl {
        PgUrl {
            dbname: Some(db.to_string()),
            ..self.clone()
        }
    }

    /// A (non-secret) query parameter's value, decoded; the last one given wins.
    pub fn param(&self, key: &str) -> Option<String> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| percent_decode(v))
    }

    /// `host:port` of the server, for snapshot paths (several hosts are joined by ',').
    /// A Unix-socket folder has its '/' written as `%2F` so the path stays one component.
    pub fn server_label(&self) -> String {
        let default_port = self.param("port").unwrap_or_else(|| "5432".to_string());
        let hosts: Vec<String> = if self.hosts.is_empty() {
            match self.param("host") {
                Some(h) => h.split(',').map(str::to_string).collect(),
                None => vec!["localhost".to_string()],
            }
        } else {
            self.hosts.split(',').map(percent_decode).collect()
        };
        hosts
            .iter()
            .map(|h| {
                // `[::1]:5432`, `db:5432` or a bare host.
                let has_port = match h.rfind(']') {
                    Some(end) => h[end..].contains(':'),
                    None => h.contains(':'),
                };
                let h = h.replace('/', "%2F");
                if has_port {
                    h
                } else {
                    format!("{h}:{default_port}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The URL without its secrets: what the tools are given and what is shown.
impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://", self.scheme)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        f.write_str(&self.hosts)?;
        if let Some(db) = &self.dbname {
            write!(f, "/{}", percent_encode(db))?;
        }
        for (i, (k, v)) in self.params.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{k}={v}")?;
        }
        Ok(())
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_taken_out() {
        let u =
            PgUrl::parse("postgresql://app:s%40cret@db.internal:6432/app?sslmode=require").unwrap();
        assert_eq!(u.password(), Some("s@cret"));
        assert_eq!(
            u.to_string(),
            "postgresql://app@db.internal:6432/app?sslmode=require"
        );
        assert!(!format!("{u:?}").contains("cret"));
        assert_eq!(u.server_label(), "db.internal:6432");
        assert_eq!(u.database(), Some("app"));

        let q = PgUrl::parse("postgres://h/db?password=pw&application_name=x").unwrap();
        assert_eq!(q.password(), Some("pw"));
        assert_eq!(q.to_string(), "postgres://h/db?application_name=x");
    }

    #[test]
    fn every_secret_is_taken_out() {
        let u = PgUrl::parse(
            "postgresql://app:first@h/db?sslpassword=k%26ey&sslmode=require\
             &oauth_client_secret=o&password=second",
        )
        .unwrap();
        assert_eq!(u.to_string(), "postgresql://app@h/db?sslmode=require");
        assert!(!format!("{u:?}").contains("k&ey"));
        let secrets: Vec<(&str, &str)> = u.secrets().collect();
        assert_eq!(
            secrets,
            [
                ("sslpassword", "k&ey"),
                ("oauth_client_secret", "o"),
                ("password", "second")
            ]
        );
        assert_eq!(u.with_database("x").secret("sslpassword"), Some("k&ey"));
    }

    #[test]
    fn labels_and_databases() {
        let u = PgUrl::parse("postgresql:///my%20db?host=/var/run/postgresql").unwrap();
        assert_eq!(u.database(), Some("my db"));
        assert_eq!(u.server_label(), "%2Fvar%2Frun%2Fpostgresql:5432");
        assert_eq!(
            u.with_database("postgres").to_string(),
            "postgresql:///postgres?host=/var/run/postgresql"
        );
        let v = PgUrl::parse("postgresql://u@[::1]:5433,h2/x?port=7").unwrap();
        assert_eq!(v.server_label(), "[::1]:5433,h2:7");
        let w = PgUrl::parse("postgresql://localhost").unwrap();
        assert_eq!(w.database(), None);
        assert_eq!(w.server_label(), "localhost:5432");
        assert_eq!(
            w.with_database("a/b c").to_string(),
            "postgresql://localhost/a%2Fb%20c"
        );
    }

    #[test]
    fn rejects_other_forms_without_echoing_them() {
        for bad in ["host=x password=hunter2", "mysql://u:hunter2@h/db", ""] {
            let e = PgUrl::parse(bad).unwrap_err();
            assert!(!e.to_string().contains("hunter2"));
        }
    }
}
