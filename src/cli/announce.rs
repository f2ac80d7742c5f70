//! Naming the repository a command uses, and where that choice came from (`--repo`,
//! `COFFER_REPOSITORY`, a job file): a `./coffer.toml` in the working directory once sent
//! backups to another repository without a word (security review M4).

use super::{term, Global};
use coffer::backend::Location;
use std::sync::OnceLock;

/// The text of one JSON document. Once the command has opened its repository, an object gets
/// a `repository` field naming it; a list (`snapshots`, `key list`: restic's shape) cannot,
/// so the repository line goes to stderr instead.
pub fn json_text(v: &impl serde::Serialize) -> serde_json::Result<String> {
    #[derive(serde::Serialize)]
    struct WithRepository<'a, T: serde::Serialize> {
        repository: &'a serde_json::Value,
        #[serde(flatten)]
        doc: &'a T,
    }
    match REPOSITORY.get() {
        Some(repo) => match serde_json::to_value(v) {
            Ok(serde_json::Value::Object(m)) if !m.contains_key("repository") => {
                serde_json::to_string_pretty(&WithRepository {
                    repository: &repo.json,
                    doc: v,
                })
            }
            Ok(serde_json::Value::Object(_)) => serde_json::to_string_pretty(v),
            _ => {
                if let Some(line) = &repo.line {
                    eprintln!("{line}");
                }
                serde_json::to_string_pretty(v)
            }
        },
        None => serde_json::to_string_pretty(v),
    }
}

/// The repository this process opened, as shown to the user.
struct Announced {
    json: serde_json::Value,
    /// The human line, unless output is quiet.
    line: Option<String>,
}

static REPOSITORY: OnceLock<Announced> = OnceLock::new();

/// Say which repository the command uses and where that came from, once per process: a job
/// file in the working directory once redirected backups silently (security review M4). Human
/// output gets a line on stderr; JSON output gets a `repository` field (see `json_text`).
/// URLs carry no secrets: credentials come from the environment.
pub fn announce(g: &Global, locations: &[(String, Location)]) {
    let shown: Vec<(&str, String)> = locations
        .iter()
        .map(|(name, loc)| {
            let url = match loc {
                Location::Local(p) => std::path::absolute(p)
                    .unwrap_or_else(|_| p.clone())
                    .display()
                    .to_string(),
                _ => loc.to_string(),
            };
            (name.as_str(), url)
        })
        .collect();
    let list = match shown.as_slice() {
        [(_, url)] => term::name(url.as_bytes()),
        _ => shown
            .iter()
            .map(|(n, u)| format!("{n}={}", term::name(u.as_bytes())))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let line = format!(
        "repository {list} (from {})",
        term::name(g.repo_from.as_bytes())
    );
    let announced = Announced {
        json: serde_json::json!({
            "regions": shown
                .iter()
                .map(|(n, u)| serde_json::json!({"name": n, "url": u}))
                .collect::<Vec<_>>(),
            "from": g.repo_from,
        }),
        line: (!g.quiet).then_some(line),
    };
    if REPOSITORY.set(announced).is_ok() && !g.json {
        if let Some(line) = &REPOSITORY.get().and_then(|a| a.line.as_ref()) {
            eprintln!("{line}");
        }
    }
}
