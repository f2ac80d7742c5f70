//! Where a repository region lives, parsed from the `--repo` URL forms of the CLI contract:
//!
//! - a plain path, or `file://PATH`;
//! - `memory:` (tests only);
//! - `s3://BUCKET[/PREFIX][?endpoint=URL&region=NAME]`;
//! - `azblob://CONTAINER[/PREFIX][?endpoint=URL]`;
//! - `sftp://[USER@]HOST[:PORT]/PATH[?key=FILE&known_hosts=strict|add|accept]`.
//!
//! A `Location` never holds a secret: credentials come from the environment (see
//! `service.rs`), and a URL that carries one (`user:password@`) is refused, so printing a
//! location (`Display`, `Debug`, error messages) cannot leak one.

use crate::error::{Error, Result};
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A folder on a local (or mounted) file system.
    Local(PathBuf),
    /// Process memory: for tests only, gone when the process ends.
    Memory,
    S3(S3Location),
    Azblob(AzblobLocation),
    Sftp(SftpLocation),
}

/// An S3 bucket (AWS or any S3-compatible service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Folder inside the bucket, without leading or trailing `/` ("" = the bucket's root).
    pub prefix: String,
    /// `http(s)://host[:port]` of an S3-compatible service; `None` = AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// An Azure Blob Storage container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzblobLocation {
    pub container: String,
    /// Folder inside the container, without leading or trailing `/`.
    pub prefix: String,
    /// Blob service URL (`https://ACCOUNT.blob.core.windows.net`, or Azurite's
    /// `http://127.0.0.1:10000/devstoreaccount1`); `None` = derived from the account name.
    pub endpoint: Option<String>,
}

/// A folder on an SSH server, reached through the system's OpenSSH client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpLocation {
    /// Login name; `None` lets ssh decide (its config, or the local user name).
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    /// Absolute path of the repository folder on the server.
    pub path: String,
    /// Private key file; `None` = `COFFER_SFTP_KEY`, else ssh's default keys and agent.
    pub key: Option<PathBuf>,
    pub known_hosts: KnownHosts,
}

/// How the SSH server's host key is checked (ssh's `StrictHostKeyChecking`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KnownHosts {
    /// The host key must already be in `~/.ssh/known_hosts` (the default, and the safe one).
    #[default]
    Strict,
    /// Trust on first use: an unknown host is added, a changed key is refused.
    Add,
    /// Any host key is accepted: for throwaway test servers only.
    Accept,
}

impl KnownHosts {
    fn parse(v: &str) -> Result<Self> {
        match v {
            "strict" => Ok(KnownHosts::Strict),
            "add" => Ok(KnownHosts::Add),
            "accept" => Ok(KnownHosts::Accept),
            _ => Err(Error::invalid(format!(
                "sftp:// option known_hosts={v} is not one of strict, add, accept"
            ))),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KnownHosts::Strict => "strict",
            KnownHosts::Add => "add",
            KnownHosts::Accept => "accept",
        }
    }
}

impl Location {
    /// Parse one repository URL. Malformed URLs, unknown schemes and unknown options are
    /// refused with a message naming the problem.
    pub fn parse(url: &str) -> Result<Self> {
        if url == "memory:" || url == "memory://" {
            return Ok(Location::Memory);
        }
        if let Some(path) = url.strip_prefix("file://") {
            if path.is_empty() {
                return Err(Error::invalid("file:// URL without a path"));
            }
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if let Some((scheme, rest)) = url.split_once("://") {
            // A scheme is letters, digits, + - . (RFC 3986); anything else is a path that
            // happens to contain "://", which a plain path may.
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            {
                return match scheme {
                    "s3" => parse_s3(rest).map(Location::S3),
                    "azblob" => parse_azblob(rest).map(Location::Azblob),
                    "sftp" => parse_sftp(rest).map(Location::Sftp),
                    // The user typed it: a usage error (exit 2), like any other bad URL.
                    _ => Err(Error::invalid(format!(
                        "repository URL scheme {scheme}:// is not supported \
                         (use a path, s3://, azblob://, sftp:// or memory:)"
                    ))),
                };
            }
        }
        if url.is_empty() {
            return Err(Error::invalid("empty repository location"));
        }
        Ok(Location::Local(PathBuf::from(url)))
    }
}

/// `BUCKET/PREFIX?query` after `s3://`.
fn parse_s3(rest: &str) -> Result<S3Location> {
    let (target, query) = split_query(rest);
    let (bucket, prefix) = bucket_and_prefix("s3", "bucket", target)?;
    let mut loc = S3Location {
        bucket,
        prefix,
        endpoint: None,
        region: None,
    };
    for (k, v) in parse_query("s3", query, &["endpoint", "region"])? {
        match k.as_str() {
            "endpoint" => loc.endpoint = Some(check_endpoint("s3", &v)?),
            _ => loc.region = Some(v),
        }
    }
    Ok(loc)
}

/// `CONTAINER/PREFIX?query` after `azblob://`.
fn parse_azblob(rest: &str) -> Result<AzblobLocation> {
    let (target, query) = split_query(rest);
    let (container, prefix) = bucket_and_prefix("azblob", "container", target)?;
    let mut loc = AzblobLocation {
        container,
        prefix,
        endpoint: None,
    };
    for (_, v) in parse_query("azblob", query, &["endpoint"])? {
        loc.endpoint = Some(check_endpoint("azblob", &v)?);
    }
    Ok(loc)
}

/// `[USER@]HOST[:PORT]/PATH?query` after `sftp://`.
fn parse_sftp(rest: &str) -> Result<SftpLocation> {
    let (target, query) = split_query(rest);
    let (authority, path) = match target.find('/') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            if u.contains(':') {
                return Err(Error::invalid(
                    "sftp:// URLs take no password: coffer logs in with an SSH key \
                     (?key=FILE, COFFER_SFTP_KEY, ssh-agent or ~/.ssh)",
                ));
            }
            if u.is_empty() {
                return Err(Error::invalid(
                    "sftp:// URL has an empty user name before @",
                ));
            }
            (Some(percent_decode("sftp", u)?), h)
        }
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport)?;
    let path = percent_decode("sftp", path)?;
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err(Error::invalid(
            "sftp:// URL needs the repository's folder: sftp://USER@HOST[:PORT]/PATH",
        ));
    }
    if path.split('/').any(|s| s == "..") {
        return Err(Error::invalid(format!("sftp:// path {path} contains `..`")));
    }
    let mut loc = SftpLocation {
        user,
        host,
        port,
        path: path.to_string(),
        key: None,
        known_hosts: KnownHosts::default(),
    };
    for (k, v) in parse_query("sftp", query, &["key", "known_hosts"])? {
        match k.as_str() {
            "key" => loc.key = Some(PathBuf::from(v)),
            _ => loc.known_hosts = KnownHosts::parse(&v)?,
        }
    }
    // `accept` takes any host key, and the ssh that opendal starts for the SFTP connection
    // (whose options coffer cannot set) also records it in ~/.ssh/known_hosts, where a later
    // `strict` run would trust it: a man in the middle once would be trusted for good
    // (security review L1). So it is only for a throwaway server on this machine.
    if loc.known_hosts == KnownHosts::Accept && !is_loopback_host(&loc.host) {
        return Err(Error::invalid(format!(
            "sftp:// known_hosts=accept is only for a test server on this machine, not {}: \
             use known_hosts=add (trust on first use) or strict",
            loc.host
        )));
    }
    Ok(loc)
}

/// `localhost`, or an address of the loopback interface.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>)> {
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        // IPv6 literal: [::1]:2222
        let (h, after) = inner.split_once(']').ok_or_else(|| {
            Error::invalid(format!("sftp:// host {hostport} lacks its closing ]"))
        })?;
        match after {
            "" => (h, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => {
                    return Err(Error::invalid(format!(
                        "sftp:// host {hostport}: unexpected {after} after ]"
                    )))
                }
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(Error::invalid("sftp:// URL without a host name"));
    }
    // ssh reads an argument that starts with '-' as an option (`-oProxyCommand=...` runs a
    // command), whether or not the caller could put `--` before it.
    if host.starts_with('-') {
        return Err(Error::invalid(format!(
            "sftp:// host name {host} starts with '-', which ssh would read as an option"
        )));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || "/?#@[]".contains(c))
    {
        return Err(Error::invalid(format!(
            "sftp:// host name {host} is not valid"
        )));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(Error::invalid(format!(
                    "sftp:// port {p} is not a number from 1 to 65535"
                )))
            }
        },
    };
    Ok((host.to_string(), port))
}

fn split_query(rest: &str) -> (&str, &str) {
    match rest.split_once('?') {
        Some((t, q)) => (t, q),
        None => (rest, ""),
    }
}

/// `NAME/PRE/FIX` into the bucket (or container) name and a normalised prefix.
fn bucket_and_prefix(scheme: &str, what: &str, target: &str) -> Result<(String, String)> {
    let (name, prefix) = target.split_once('/').unwrap_or((target, ""));
    if name.is_empty() {
        return Err(Error::invalid(format!(
            "{scheme}:// URL without a {what} name: {scheme}://{}/PREFIX",
            what.to_uppercase()
        )));
    }
    // Bucket and container names are DNS-like; this also keeps `user:secret@` out.
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(Error::invalid(format!(
            "the {what} name of an {scheme}:// URL may hold only letters, digits, `-`, `.` \
             and `_` (credentials belong in the environment, not the URL)"
        )));
    }
    let prefix = percent_decode(scheme, prefix)?;
    let parts: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    if parts.iter().any(|s| *s == "." || *s == "..") {
        return Err(Error::invalid(format!(
            "{scheme}:// prefix {prefix} contains `.` or `..`"
        )));
    }
    Ok((name.to_string(), parts.join("/")))
}

/// `k=v&k=v`, with only `known` keys, each at most once, values percent-decoded.
fn parse_query(scheme: &str, query: &str, known: &[&str]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            Error::invalid(format!(
                "{scheme}:// option {pair} has no value (write {pair}=VALUE)"
            ))
        })?;
        let k = percent_decode(scheme, k)?;
        if !known.contains(&k.as_str()) {
            return Err(Error::invalid(format!(
                "unknown {scheme}:// option {k} (known: {})",
                known.join(", ")
            )));
        }
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(Error::invalid(format!(
                "{scheme}:// option {k} given twice"
            )));
        }
        // A value may be a secret someone pasted by mistake: the message names only the key.
        let v = percent_decode(scheme, v).map_err(|_| {
            Error::invalid(format!(
                "{scheme}:// option {k} has a bad %-escape or is not UTF-8 once decoded"
            ))
        })?;
        if v.is_empty() {
            return Err(Error::invalid(format!("{scheme}:// option {k} is empty")));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// An endpoint must say its protocol (so `http://` for a local test server is never
/// silently upgraded to https) and must not carry credentials, a query or a fragment: a
/// pre-signed `?sig=` is a secret, and locations are printed. Its value, already
/// percent-decoded once, is checked for `?` and `#` escaped once more too. A refused
/// endpoint is never printed whole: messages show at most its host.
fn check_endpoint(scheme: &str, v: &str) -> Result<String> {
    let Some(after) = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
    else {
        return Err(Error::invalid(format!(
            "{scheme}:// endpoint {} must start with http:// or https://",
            endpoint_shown(v)
        )));
    };
    let authority = after.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(Error::invalid(format!(
            "{scheme}:// endpoint must not contain credentials; set them in the environment"
        )));
    }
    if authority.is_empty() {
        return Err(Error::invalid(format!(
            "{scheme}:// endpoint {} has no host",
            endpoint_shown(v)
        )));
    }
    let lower = v.to_ascii_lowercase();
    if v.contains(['?', '#']) || lower.contains("%3f") || lower.contains("%23") {
        return Err(Error::invalid(format!(
            "{scheme}:// endpoint {} must not hold a query or fragment (`?`, `#`): \
             a signature or token there would be shown wherever the URL is; set credentials \
             in the environment",
            endpoint_shown(v)
        )));
    }
    Ok(v.trim_end_matches('/').to_string())
}

/// What a message may show of an endpoint: its scheme and host, never a path, query,
/// fragment or user part, where secrets hide.
fn endpoint_shown(v: &str) -> String {
    let (scheme, rest) = match v.split_once("://") {
        Some((s, r)) if s == "http" || s == "https" => (format!("{s}://"), r),
        _ => (String::new(), v),
    };
    let host = rest.split(['/', '?', '#', '&', ';']).next().unwrap_or("");
    if host.contains(['@', '%', '=']) || host.len() > 255 {
        return "(not shown)".to_string();
    }
    format!("{scheme}{host}…")
}

fn percent_decode(scheme: &str, s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    Error::invalid(format!("{scheme}:// URL has a bad %-escape in {s}"))
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::invalid(format!("{scheme}:// URL: {s} is not UTF-8 once decoded")))
}

/// Escape what would otherwise end or split a query value or path.
fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let plain =
            b.is_ascii_alphanumeric() || b"-._~:@".contains(&b) || (keep_slash && b == b'/');
        if plain {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `?k=v&k=v` for the options that are set, or nothing.
fn write_query(f: &mut fmt::Formatter<'_>, pairs: &[(&str, Option<&str>)]) -> fmt::Result {
    let mut sep = '?';
    for (k, v) in pairs {
        if let Some(v) = v {
            // Endpoints keep their `//` readable; `&`, `=`, `?`, `#` and `%` are escaped.
            write!(f, "{sep}{k}={}", percent_encode(v, true))?;
            sep = '&';
        }
    }
    Ok(())
}

/// Prints the URL form that `parse` reads back to the same location. Holds no secret,
/// because a `Location` never has one.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Memory => f.write_str("memory:"),
            Location::S3(s) => {
                write!(f, "s3://{}", s.bucket)?;
                if !s.prefix.is_empty() {
                    write!(f, "/{}", percent_encode(&s.prefix, true))?;
                }
                write_query(
                    f,
                    &[
                        ("endpoint", s.endpoint.as_deref()),
                        ("region", s.region.as_deref()),
                    ],
                )
            }
            Location::Azblob(a) => {
                write!(f, "azblob://{}", a.container)?;
                if !a.prefix.is_empty() {
                    write!(f, "/{}", percent_encode(&a.prefix, true))?;
                }
                write_query(f, &[("endpoint", a.endpoint.as_deref())])
            }
            Location::Sftp(s) => {
                f.write_str("sftp://")?;
                if let Some(u) = &s.user {
                    write!(f, "{}@", percent_encode(u, false))?;
                }
                if s.host.contains(':') {
                    write!(f, "[{}]", s.host)?;
                } else {
                    f.write_str(&s.host)?;
                }
                if let Some(p) = s.port {
                    write!(f, ":{p}")?;
                }
                let path = percent_encode(&s.path, true);
                if !path.starts_with('/') {
                    f.write_str("/")?;
                }
                f.write_str(&path)?;
                let key = s.key.as_ref().map(|k| k.to_string_lossy());
                let kh = match s.known_hosts {
                    KnownHosts::Strict => None,
                    k => Some(k.as_str()),
                };
                write_query(f, &[("key", key.as_deref()), ("known_hosts", kh)])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn err(url: &str) -> Error {
        match Location::parse(url) {
            Ok(l) => panic!("{url} parsed as {l:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_forms() {
        assert_eq!(Location::parse("memory:").unwrap(), Location::Memory);
        assert_eq!(
            Location::parse("/srv/repo").unwrap(),
            Location::Local("/srv/repo".into())
        );
        assert_eq!(
            Location::parse("file:///srv/repo").unwrap(),
            Location::Local("/srv/repo".into())
        );
        assert_eq!(err("").kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn s3_form() {
        let l = Location::parse("s3://bucket/a/b/?endpoint=http://127.0.0.1:9000&region=eu-west-1")
            .unwrap();
        assert_eq!(
            l,
            Location::S3(S3Location {
                bucket: "bucket".into(),
                prefix: "a/b".into(),
                endpoint: Some("http://127.0.0.1:9000".into()),
                region: Some("eu-west-1".into()),
            })
        );
        let Location::S3(bare) = Location::parse("s3://b").unwrap() else {
            panic!()
        };
        assert_eq!(
            (bare.prefix.as_str(), bare.endpoint, bare.region),
            ("", None, None)
        );
    }

    #[test]
    fn azblob_form() {
        let l = Location::parse(
            "azblob://backups/app?endpoint=http%3A%2F%2F127.0.0.1%3A10000%2Fdevstoreaccount1",
        )
        .unwrap();
        assert_eq!(
            l,
            Location::Azblob(AzblobLocation {
                container: "backups".into(),
                prefix: "app".into(),
                endpoint: Some("http://127.0.0.1:10000/devstoreaccount1".into()),
            })
        );
    }

    #[test]
    fn sftp_form() {
        let l = Location::parse("sftp://backup@host.example:2222/srv/repo?known_hosts=add&key=/k")
            .unwrap();
        assert_eq!(
            l,
            Location::Sftp(SftpLocation {
                user: Some("backup".into()),
                host: "host.example".into(),
                port: Some(2222),
                path: "/srv/repo".into(),
                key: Some("/k".into()),
                known_hosts: KnownHosts::Add,
            })
        );
        let Location::Sftp(v6) = Location::parse("sftp://[::1]:22/r").unwrap() else {
            panic!()
        };
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.user),
            ("::1", Some(22), None)
        );
    }

    #[test]
    fn display_round_trips() {
        for url in [
            "memory:",
            "/srv/repo",
            "s3://bucket",
            "s3://bucket/a/b?endpoint=http://127.0.0.1:9000&region=us-east-1",
            "s3://bucket/with%20space",
            "azblob://c/p?endpoint=http://127.0.0.1:10000/devstoreaccount1",
            "sftp://u@127.0.0.1:2/srv/r?key=/home/u/.ssh/id%26x&known_hosts=accept",
            "sftp://u@h:2/srv/r?known_hosts=add",
            "sftp://[::1]/srv/r",
        ] {
            let l = Location::parse(url).unwrap();
            let shown = l.to_string();
            assert_eq!(Location::parse(&shown).unwrap(), l, "{url} -> {shown}");
        }
    }

    #[test]
    fn bad_urls_are_refused_with_reasons() {
        let cases: &[(&str, ErrorKind, &str)] = &[
            ("gcs://b/p", ErrorKind::InvalidInput, "gcs://"),
            (
                "sftp://u@backup.example/r?known_hosts=accept",
                ErrorKind::InvalidInput,
                "only for a test server",
            ),
            ("ftp://h/x", ErrorKind::InvalidInput, "ftp://"),
            ("http://[::1", ErrorKind::InvalidInput, "http://"),
            (
                "s3://b?endpoint=http://h/x%3Fsig%3Dsecret",
                ErrorKind::InvalidInput,
                "query",
            ),
            (
                "s3://b?endpoint=http://h/x%253Fsig=secret",
                ErrorKind::InvalidInput,
                "query",
            ),
            (
                "s3://b?endpoint=http://h%23secret",
                ErrorKind::InvalidInput,
                "fragment",
            ),
            (
                "azblob://c?endpoint=https://h/a%3Fsv%3D1%26sig%3Dsecret",
                ErrorKind::InvalidInput,
                "query",
            ),
            (
                "s3://b?endpoint=h.example/secret",
                ErrorKind::InvalidInput,
                "http://",
            ),
            (
                "s3://b?endpoint=http://h/%zzsecret",
                ErrorKind::InvalidInput,
                "%-escape",
            ),
            ("s3://", ErrorKind::InvalidInput, "bucket name"),
            ("s3:///prefix", ErrorKind::InvalidInput, "bucket name"),
            (
                "s3://AKIA:secret@bucket/p",
                ErrorKind::InvalidInput,
                "environment",
            ),
            (
                "s3://b?color=red",
                ErrorKind::InvalidInput,
                "unknown s3:// option color",
            ),
            ("s3://b?region", ErrorKind::InvalidInput, "no value"),
            ("s3://b?region=a&region=b", ErrorKind::InvalidInput, "twice"),
            (
                "s3://b?endpoint=127.0.0.1:9000",
                ErrorKind::InvalidInput,
                "http://",
            ),
            (
                "s3://b?endpoint=http://k:s@h",
                ErrorKind::InvalidInput,
                "credentials",
            ),
            ("s3://b/../x", ErrorKind::InvalidInput, ".."),
            ("s3://b/%zz", ErrorKind::InvalidInput, "%-escape"),
            (
                "azblob://c?region=x",
                ErrorKind::InvalidInput,
                "known: endpoint",
            ),
            ("sftp://u:pw@h/p", ErrorKind::InvalidInput, "no password"),
            ("sftp://h", ErrorKind::InvalidInput, "folder"),
            ("sftp://h/", ErrorKind::InvalidInput, "folder"),
            ("sftp://h:99999/p", ErrorKind::InvalidInput, "port 99999"),
            ("sftp://h:x/p", ErrorKind::InvalidInput, "port x"),
            ("sftp://@h/p", ErrorKind::InvalidInput, "user"),
            ("sftp://[::1/p", ErrorKind::InvalidInput, "]"),
            (
                "sftp://-oProxyCommand=touch${IFS}x/srv/r",
                ErrorKind::InvalidInput,
                "starts with '-'",
            ),
            (
                "sftp://u@[-x]:22/r",
                ErrorKind::InvalidInput,
                "starts with '-'",
            ),
            (
                "sftp://h/p?known_hosts=maybe",
                ErrorKind::InvalidInput,
                "strict, add, accept",
            ),
        ];
        for (url, kind, needle) in cases {
            let e = err(url);
            assert_eq!(e.kind(), *kind, "{url}: {e}");
            assert!(e.message().contains(needle), "{url}: {e}");
            assert!(
                !e.message().contains("secret") && !e.message().contains("pw"),
                "{e}"
            );
        }
    }
}
