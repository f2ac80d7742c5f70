//! How sources are shown in runbooks and messages: URLs without secrets, values quoted for
//! a shell.

/// Query keys kept in URLs shown in the runbook: they say where, never who.
const SAFE_QUERY_KEYS: [&str; 4] = ["endpoint", "region", "sslmode", "host"];

/// `url` without a password in its user part and without query keys that may hold secrets.
/// `postgresql://backup:pw@db:5432/app?sslmode=require&password=x` →
/// `postgresql://backup@db:5432/app?sslmode=require`.
pub fn redact_url(url: &str) -> String {
    let (main, query) = match url.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (url, None),
    };
    let main = match main.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest
                .split_once('/')
                .map_or((rest, None), |(a, p)| (a, Some(p)));
            let authority = match authority.rsplit_once('@') {
                Some((user, host)) => {
                    let user = user.split_once(':').map_or(user, |(u, _)| u);
                    format!("{user}@{host}")
                }
                None => authority.to_string(),
            };
            match path {
                Some(p) => format!("{scheme}://{authority}/{p}"),
                None => format!("{scheme}://{authority}"),
            }
        }
        None => main.to_string(),
    };
    let kept: Vec<&str> = query
        .unwrap_or("")
        .split('&')
        .filter(|kv| {
            let key = kv.split('=').next().unwrap_or("");
            SAFE_QUERY_KEYS.contains(&key)
        })
        .collect();
    if kept.is_empty() {
        main
    } else {
        format!("{main}?{}", kept.join("&"))
    }
}

/// A value quoted for a POSIX shell.
pub fn sh(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@=,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
