//! `coffer completion SHELL` and `coffer generate-man DIR`: shell completions and man pages,
//! generated from the same clap definitions that parse the command line, so they can never
//! name an option the parser does not know.

use super::common::print_json;
use super::{Cli, Global, EXIT_OK};
use clap::CommandFactory;
use coffer::{Error, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args)]
#[command(after_help = "Install, for example:\n  \
coffer completion bash > /etc/bash_completion.d/coffer\n  \
coffer completion zsh > \"${fpath[1]}/_coffer\"\n  \
coffer completion fish > ~/.config/fish/completions/coffer.fish")]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args)]
#[command(after_help = "Install, for example:\n  \
coffer generate-man /usr/local/share/man/man1 && mandb")]
pub struct ManArgs {
    /// Folder to write the pages into (created if missing): coffer.1, and coffer-COMMAND.1
    /// for every command.
    pub dir: PathBuf,
}

pub fn completion(a: &CompletionArgs) -> Result<i32> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "coffer", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        // A reader that stops early (`| head`) is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("standard output", e))
        }
        _ => Ok(EXIT_OK),
    }
}

pub fn man(g: &Global, a: &ManArgs) -> Result<i32> {
    std::fs::create_dir_all(&a.dir).map_err(|e| Error::io(a.dir.display(), e))?;
    clap_mangen::generate_to(Cli::command(), &a.dir).map_err(|e| Error::io(a.dir.display(), e))?;
    let written = pages(&a.dir);
    if g.json {
        print_json(&serde_json::json!({"dir": a.dir.display().to_string(), "pages": written}));
    } else if !g.quiet {
        println!("wrote {written} man pages to {}", a.dir.display());
    }
    Ok(EXIT_OK)
}

/// coffer's pages in `dir`.
fn pages(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("coffer") && name.ends_with(".1")
                })
                .count()
        })
        .unwrap_or(0)
}
