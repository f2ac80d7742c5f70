//! `coffer key list|add|remove ID|passwd`: the passwords that open the repository.

use super::common::{self, print_json};
use super::{Global, EXIT_OK};
use coffer::browse::format_time;
use coffer::crypto::KdfParams;
use coffer::id::KeyId;
use coffer::{Error, Result};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// List key files.
    List,
    /// Add a password (a new key file for the same master key).
    Add {
        /// Read the new password from this file (else COFFER_NEW_PASSWORD or a prompt).
        #[arg(long)]
        new_password_file: Option<PathBuf>,
    },
    /// Remove a key file by ID or unique prefix (not the one in use, not the last one).
    Remove { id: String },
    /// Change the password of the key in use: add a new key, then remove the old one.
    Passwd {
        /// Read the new password from this file (else COFFER_NEW_PASSWORD or a prompt).
        #[arg(long)]
        new_password_file: Option<PathBuf>,
    },
}

pub fn run(g: &Global, cmd: &KeyCommand) -> Result<i32> {
    let backend = common::backend(g)?;
    let password = common::password(g, "Repository password: ")?;
    let opts = common::open_options(g);
    let (host, user) = (opts.host.clone(), opts.user.clone());
    let repo = coffer::repo::Repository::open(backend, password.as_bytes(), opts)?;
    match cmd {
        KeyCommand::List => {
            let keys = repo.list_keys()?;
            if g.json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|(id, k)| {
                        serde_json::json!({
                            "id": id.to_hex(), "current": *id == repo.key_id(), "host": k.host,
                            "user": k.user, "created": coffer::browse::format_time_rfc3339(k.created_ns),
                            "kdf": {"memory_kib": k.kdf.memory_kib, "iterations": k.kdf.iterations, "parallelism": k.kdf.parallelism},
                        })
                    })
                    .collect();
                print_json(&list);
            } else {
                println!("  {:<8}  {:<19}  {:<12}  user", "id", "created", "host");
                for (id, k) in &keys {
                    let mark = if *id == repo.key_id() { "*" } else { " " };
                    println!(
                        "{mark} {:<8}  {:<19}  {:<12}  {}",
                        id.short(),
                        format_time(k.created_ns),
                        k.host,
                        k.user
                    );
                }
            }
        }
        KeyCommand::Add { new_password_file } => {
            let new = common::new_password(g, new_password_file.as_deref(), false)?;
            let master = repo.unwrap_master(password.as_bytes())?;
            let id = repo.add_key(&master, new.as_bytes(), KdfParams::DEFAULT, &host, &user)?;
            report(g, "added", &id);
        }
        KeyCommand::Remove { id } => {
            let keys = repo.list_keys()?;
            let want = id.to_ascii_lowercase();
            let matching: Vec<KeyId> = keys
                .iter()
                .map(|(k, _)| *k)
                .filter(|k| k.to_hex().starts_with(&want))
                .collect();
            let target = match matching.as_slice() {
                [one] => *one,
                [] => return Err(Error::not_found(format!("no key with ID {id}"))),
                _ => return Err(Error::invalid(format!("key prefix {id} is ambiguous"))),
            };
            repo.remove_key(&target)?;
            report(g, "removed", &target);
        }
        KeyCommand::Passwd { new_password_file } => {
            let new = common::new_password(g, new_password_file.as_deref(), false)?;
            let master = repo.unwrap_master(password.as_bytes())?;
            let id = repo.add_key(&master, new.as_bytes(), KdfParams::DEFAULT, &host, &user)?;
            // The new key is written before the old one goes: a crash leaves both usable.
            // The old one is buried (a tombstone, then the deletion), so that a sync from a
            // region that missed the deletion does not bring the old password back.
            let old =
                coffer::backend::ObjectName::new(coffer::backend::ObjectKind::Key, repo.key_id().0);
            for (_, deleted) in repo.bury(&[old])? {
                deleted?;
            }
            report(g, "changed password; new key", &id);
        }
    }
    Ok(EXIT_OK)
}

fn report(g: &Global, what: &str, id: &KeyId) {
    if g.json {
        print_json(&serde_json::json!({"result": what, "key_id": id.to_hex()}));
    } else if !g.quiet {
        println!("{what} {}", id.short());
    }
}
