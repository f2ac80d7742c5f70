//! `coffer init`: create a repository with one key.

use super::common::{self, print_json};
use super::{Global, EXIT_OK};
use coffer::crypto::KdfParams;
use coffer::repo::Repository;
use coffer::Result;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Read the new repository's password from this file (else the usual password sources).
    #[arg(long)]
    pub new_password_file: Option<PathBuf>,
    /// Argon2id memory for the key, in KiB (default 65536). Lower only for tests; under
    /// 19456 the key gets OWASP's minimum for Argon2id instead: 19 MiB and 2 passes.
    #[arg(long, hide = true, default_value_t = KdfParams::DEFAULT.memory_kib)]
    pub kdf_memory_kib: u32,
}

pub fn run(g: &Global, a: &Args) -> Result<i32> {
    // A new repository must start complete in every region: all of them must take it.
    let regions = common::region_locations(g)?.len();
    let backend = common::backend(&Global {
        min_regions: regions,
        ..g.clone()
    })?;
    let password = common::new_password(g, a.new_password_file.as_deref(), true)?;
    let kdf = KdfParams {
        memory_kib: a.kdf_memory_kib,
        ..KdfParams::DEFAULT
    };
    let (repo_id, key_id) = Repository::init(
        backend.clone(),
        password.as_bytes(),
        kdf,
        &common::open_options(g),
    )?;
    if g.json {
        print_json(&serde_json::json!({
            "repository": backend.describe(),
            "repository_id": repo_id.to_hex(),
            "key_id": key_id.to_hex(),
        }));
    } else if !g.quiet {
        println!(
            "created repository {} at {}",
            repo_id.short(),
            backend.describe()
        );
        println!("keep the password safe: without it the data cannot be recovered");
    }
    Ok(EXIT_OK)
}
