//! Telling the outside world about runs: a webhook receives the run's JSON report on success
//! and on failure, and a healthchecks-style ping URL hears `URL/start` when a run starts, `URL`
//! when it succeeds and `URL/fail` when it fails (so a run that never reports is noticed by the
//! pinged service's own timer). Reporting never fails a backup: every problem comes back as a
//! warning for the caller to print.
//!
//! Warnings name only the scheme and host of a URL: webhook and ping paths usually carry the
//! secret token.

use super::RunReport;
use crate::config::Monitoring;
use reqwest::blocking::Client;
use reqwest::header::CONTENT_TYPE;
use std::time::Duration;

/// Per request; a hook that hangs must not hold up the next scheduled run.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before the one retry.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Most text sent with a ping (healthchecks.io keeps the first 100 kB as the run's log).
const PING_BODY_LIMIT: usize = 10_000;

/// Which ping a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    Start,
    Success,
    Failure,
}

/// The monitoring targets of a job file, with one HTTP client for all of them.
pub struct Notifier {
    client: Result<Client, String>,
    webhook: Option<String>,
    ping_url: Option<String>,
}

impl Notifier {
    pub fn new(m: &Monitoring) -> Notifier {
        Notifier {
            // No redirects: a hook that answers 3xx would otherwise send the report (and a
            // ping's log) wherever it points, up to ten hops away.
            client: Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("coffer/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| error_text(&e)),
            webhook: m.webhook.clone(),
            ping_url: m.ping_url.clone(),
        }
    }

    /// Is there anywhere to report to?
    pub fn is_configured(&self) -> bool {
        self.webhook.is_some() || self.ping_url.is_some()
    }

    /// A run is starting: `ping_url/start`. Returns warnings.
    pub fn started(&self) -> Vec<String> {
        match &self.ping_url {
            Some(url) => self
                .ping(url, Ping::Start, "coffer run started")
                .err()
                .into_iter()
                .collect(),
            None => Vec::new(),
        }
    }

    /// A run finished: POST the report to the webhook, then ping success or failure.
    /// Returns warnings.
    pub fn finished(&self, report: &RunReport) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(url) = &self.webhook {
            warnings.extend(self.post_webhook(url, report).err());
        }
        if let Some(url) = &self.ping_url {
            let which = if report.ok {
                Ping::Success
            } else {
                Ping::Failure
            };
            warnings.extend(self.ping(url, which, &ping_text(report)).err());
        }
        warnings
    }

    /// POST `report` as JSON to `url`.
    pub fn post_webhook(&self, url: &str, report: &RunReport) -> Result<(), String> {
        let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
        self.post(url, "application/json", body)
            .map_err(|e| format!("webhook {}: {e}", where_to(url)))
    }

    /// POST `body` (a short text) to the ping URL for `which`.
    pub fn ping(&self, url: &str, which: Ping, body: &str) -> Result<(), String> {
        let mut body = body.to_string();
        if body.len() > PING_BODY_LIMIT {
            let mut cut = PING_BODY_LIMIT;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
        }
        let target = ping_target(url, which);
        self.post(&target, "text/plain; charset=utf-8", body.into_bytes())
            .map_err(|e| format!("ping {}: {e}", where_to(url)))
    }

    /// POST with one retry after a connection error, a timeout or a server error (a 4xx
    /// answer will not change on retry, nor will a redirect, which is not followed).
    fn post(&self, url: &str, content_type: &str, body: Vec<u8>) -> Result<(), String> {
        let client = self
            .client
            .as_ref()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        let mut last = String::new();
        for attempt in 0..2 {
            if attempt > 0 {
                std::thread::sleep(RETRY_AFTER);
            }
            let sent = client
                .post(url)
                .header(CONTENT_TYPE, content_type)
                .body(body.clone())
                .send();
            match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().is_redirection() => {
                    return Err(format!(
                        "answered {} (a redirect, not followed: give the final URL)",
                        r.status()
                    ))
                }
                Ok(r) if r.status().is_client_error() => {
                    return Err(format!("answered {}", r.status()))
                }
                Ok(r) => last = format!("answered {}", r.status()),
                Err(e) => last = error_text(&e),
            }
        }
        Err(format!("{last} (tried twice)"))
    }
}

/// Warnings for the job file's webhook and ping URL that go out unencrypted over the network:
/// the run report names hosts, databases and errors, and the URL's path is often its token.
/// Plain `http://` to a loopback address never leaves the machine and is fine.
pub fn plaintext_warnings(m: &Monitoring) -> Vec<String> {
    [("webhook", &m.webhook), ("ping_url", &m.ping_url)]
        .into_iter()
        .filter_map(|(what, url)| {
            let url = url.as_deref()?;
            plaintext_to_network(url).then(|| {
                format!(
                    "{what} {} is plain http to another machine: the report and the URL's \
                     token travel unencrypted; use https",
                    where_to(url)
                )
            })
        })
        .collect()
}

fn plaintext_to_network(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    if u.scheme() != "http" {
        return false;
    }
    let host = u.host_str().unwrap_or("");
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match ip.parse::<std::net::IpAddr>() {
        Ok(a) => a.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost"),
    };
    !loopback
}

/// `URL`, `URL/start` or `URL/fail`, keeping any query string at the end.
pub fn ping_target(url: &str, which: Ping) -> String {
    let suffix = match which {
        Ping::Start => "/start",
        Ping::Success => return url.to_string(),
        Ping::Failure => "/fail",
    };
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = format!("{}{suffix}", base.trim_end_matches('/'));
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// One line per step, failures first: what the pinged service shows as the run's log.
pub fn ping_text(report: &RunReport) -> String {
    let mut steps: Vec<_> = report.steps.iter().collect();
    steps.sort_by_key(|s| s.ok);
    let mut out = format!(
        "coffer run on {}: {}\n",
        report.host,
        if report.ok { "ok" } else { "FAILED" }
    );
    for a in &report.alerts {
        out.push_str(&format!("FAIL {a}\n"));
    }
    for s in steps {
        out.push_str(&format!(
            "{} {} {}: {}\n",
            if s.ok { "ok  " } else { "FAIL" },
            s.job,
            s.step.name(),
            s.message
        ));
    }
    out
}

/// `https://hooks.internal:8443`: enough to say where, without the path's token.
fn where_to(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{}://{h}:{p}", u.scheme()),
            (Some(h), None) => format!("{}://{h}", u.scheme()),
            _ => u.scheme().to_string(),
        },
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// The error and its causes, without the URL (which may hold a token).
fn error_text(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        format!("no answer within {}s", TIMEOUT.as_secs())
    } else {
        String::new()
    };
    let mut cause: Option<&dyn std::error::Error> = std::error::Error::source(e);
    if out.is_empty() {
        out = e.to_string();
        if let Some(u) = e.url() {
            out = out
                .replace(&format!(" ({u})"), "")
                .replace(u.as_str(), "URL");
        }
    }
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{Step, StepResult};

    #[test]
    fn ping_urls_follow_the_healthchecks_convention() {
        let u = "https://hc.example/ping/abc-123";
        assert_eq!(
            ping_target(u, Ping::Start),
            "https://hc.example/ping/abc-123/start"
        );
        assert_eq!(ping_target(u, Ping::Success), u);
        assert_eq!(
            ping_target(&format!("{u}/"), Ping::Failure),
            format!("{u}/fail")
        );
        assert_eq!(
            ping_target("http://h/p?rid=7", Ping::Start),
            "http://h/p/start?rid=7"
        );
    }

    #[test]
    fn warnings_do_not_show_the_token_in_the_path() {
        assert_eq!(
            where_to("https://hooks.internal/T0k3n/secret"),
            "https://hooks.internal"
        );
        assert_eq!(where_to("http://127.0.0.1:9/x"), "http://127.0.0.1:9");
        let n = Notifier::new(&Monitoring::default());
        // Port 9 (discard) on loopback: refused, or at worst no answer before the timeout.
        let e = n
            .ping("http://127.0.0.1:9/s3cr3t", Ping::Start, "x")
            .unwrap_err();
        assert!(
            e.starts_with("ping http://127.0.0.1:9: ") && !e.contains("s3cr3t"),
            "{e}"
        );
    }

    #[test]
    fn plain_http_is_flagged_only_when_it_leaves_the_machine() {
        let m = |webhook: &str, ping: Option<&str>| Monitoring {
            webhook: Some(webhook.into()),
            ping_url: ping.map(str::to_string),
            ..Monitoring::default()
        };
        let w = plaintext_warnings(&m("http://hooks.example/T0k3n", Some("https://hc/x")));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("webhook http://hooks.example ") && !w[0].contains("T0k3n"),
            "{w:?}"
        );
        let w = plaintext_warnings(&m(
            "https://hooks.example/x",
            Some("http://10.0.0.7:8000/p"),
        ));
        assert!(
            w.len() == 1 && w[0].starts_with("ping_url http://10.0.0.7:8000 "),
            "{w:?}"
        );
        for local in [
            "http://127.0.0.1:9/x",
            "http://127.8.0.1/x",
            "http://[::1]:80/x",
            "http://localhost/x",
            "http://LOCALHOST:81/x",
        ] {
            assert!(plaintext_warnings(&m(local, None)).is_empty(), "{local}");
        }
    }

    #[test]
    fn the_ping_text_puts_failures_first() {
        let step = |step, ok, message: &str| StepResult {
            job: "app".into(),
            step,
            ok,
            started_ns: 0,
            duration_ns: 0,
            message: message.into(),
            snapshots: vec![],
            bytes_added: 0,
        };
        let r = RunReport {
            host: "db1".into(),
            started_ns: 0,
            finished_ns: 0,
            ok: false,
            steps: vec![
                step(Step::Backup, true, "2 snapshots"),
                step(Step::Check, false, "pack damaged"),
            ],
            alerts: vec![],
            wal_archive: None,
        };
        let text = ping_text(&r);
        assert_eq!(
            text,
            "coffer run on db1: FAILED\nFAIL app check: pack damaged\nok   app backup: 2 snapshots\n"
        );
    }
}
