//! Keeps the layers of DESIGN.md true: each external crate is used only where its layer
//! allows, and no module imports a layer above it.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Does the file name the crate in code (a `use` or a path), ignoring comments?
fn mentions(text: &str, krate: &str) -> bool {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .any(|l| l.contains(&format!("{krate}::")) || l.contains(&format!("use {krate}")))
}

fn layer_of(file: &str) -> usize {
    let top = file.split('/').next().unwrap().trim_end_matches(".rs");
    match top {
        "error" | "id" | "clock" | "progress" | "hostfile" | "child_env" | "lib" => 0,
        "crypto" | "chunker" | "compress" => 1,
        "format" => 2,
        "backend" => 3,
        "index" => 4,
        "repo" => 5,
        "main" | "cli" => 7,
        _ => 6, // use cases: backup, restore, check, browse, stats ...
    }
}

#[test]
fn external_crates_stay_in_their_layer() {
    // Each external crate and the only files allowed to name it (a prefix ending in '/'
    // allows a whole folder).
    let rules: [(&str, &str); 6] = [
        ("clap", "cli/"),
        ("indicatif", "cli/"),
        ("opendal", "backend/service.rs"),
        ("tokio", "backend/service.rs"),
        ("rusqlite", "index/cache.rs"),
        // The one HTTP client outside the backend: webhooks and health pings.
        ("reqwest", "jobs/notify.rs"),
    ];
    let allowed = |file: &str, place: &str| {
        if place.ends_with('/') {
            file.starts_with(place)
        } else {
            file == place
        }
    };
    let mut violations = Vec::new();
    for (file, text) in sources() {
        for (krate, place) in rules {
            if mentions(&text, krate) && !allowed(&file, place) {
                violations.push(format!("{file} uses {krate}"));
            }
        }
    }
    assert!(violations.is_empty(), "layer violations: {violations:#?}");
}

#[test]
fn modules_import_only_lower_layers() {
    let modules = [
        ("error", 0),
        ("id", 0),
        ("clock", 0),
        ("progress", 0),
        ("hostfile", 0),
        ("child_env", 0),
        ("crypto", 1),
        ("chunker", 1),
        ("compress", 1),
        ("format", 2),
        ("backend", 3),
        ("index", 4),
        ("repo", 5),
        ("backup", 6),
        ("restore", 6),
        ("check", 6),
        ("browse", 6),
        ("stats", 6),
        ("retention", 6),
        ("gc", 6),
        ("repair", 6),
        ("sync", 6),
    ];
    let mut violations = Vec::new();
    for (file, text) in sources() {
        let own = layer_of(&file);
        if own == 7 {
            continue;
        }
        let own_top = file
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_string();
        for (module, layer) in modules {
            if module == own_top {
                continue;
            }
            let used = mentions(&text, &format!("crate::{module}"))
                || text.contains(&format!("use crate::{{{module}"));
            // Use cases may call each other (restore uses browse); lower layers may not
            // reach up, and nothing below the CLI may reach a use case.
            if used && layer > own && !(own == 6 && layer == 6) {
                violations.push(format!(
                    "{file} (layer {own}) uses crate::{module} (layer {layer})"
                ));
            }
        }
    }
    assert!(violations.is_empty(), "upward imports: {violations:#?}");
}

#[test]
fn the_library_does_not_use_the_cli() {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    assert!(
        !lib.contains("mod cli"),
        "src/lib.rs must not contain the CLI"
    );
}

/// The jobs see sources only as `sources::SourceKind`: what a kind of source does (back up,
/// drill, runbook) lives in its folder under `src/sources/`, so a new kind never touches the
/// jobs. The WAL archive's health is the one exception (`crate::wal::status`): it is the
/// archive's, shared by every job that names a cluster.
#[test]
fn jobs_reach_sources_only_through_the_source_trait() {
    let mut violations = Vec::new();
    for (file, text) in sources() {
        if !file.starts_with("jobs/") || file.ends_with("_tests.rs") {
            continue;
        }
        for forbidden in [
            "crate::postgres",
            "crate::bucket",
            "crate::backup::backup",
            "Source::Paths",
            "crate::sources::files",
            "crate::sources::pg_dump",
            "crate::sources::bucket",
            "crate::sources::pg_pitr",
        ] {
            if mentions(&text, forbidden) || text.contains(forbidden) {
                violations.push(format!("{file} uses {forbidden}"));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:#?}");
}
