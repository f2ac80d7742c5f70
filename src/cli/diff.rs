//! `coffer diff SNAPSHOT SNAPSHOT`: added (+), removed (-), modified (M), type changed (T)
//! and metadata-only (U) paths.

use super::common::{self, print_json};
use super::{term, Global, EXIT_OK};
use coffer::browse::{diff, find_snapshot};
use coffer::Result;

#[derive(clap::Args)]
pub struct Args {
    /// The older snapshot.
    pub from: String,
    /// The newer snapshot.
    pub to: String,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    let repo = common::open(g)?;
    let (ia, sa) = find_snapshot(&repo, &a.from)?;
    let (ib, sb) = find_snapshot(&repo, &a.to)?;
    let changes = diff(&repo, &sa.root, &sb.root)?;
    if g.json {
        print_json(
            &serde_json::json!({"from": ia.to_hex(), "to": ib.to_hex(), "changes": changes}),
        );
    } else {
        for c in &changes {
            println!("{} {}", c.change, term::name(c.path.as_bytes()));
        }
        if !g.quiet {
            println!(
                "{} change(s) from {} to {}",
                changes.len(),
                ia.short(),
                ib.short()
            );
        }
    }
    Ok(EXIT_OK)
}
