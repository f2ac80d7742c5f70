//! `coffer key list|add|remove ID|passwd`: the passwords that open the repository.

use super::common::{self, print_json};
use super::{Global, EXIT_OK};
use coffer::browse::format_time;
use coffer::crypto::KdfParams;
use coffer::id::KeyId;
use coffer::repo::{describe_cost, KeyListing, Repository};
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
        KeyCommand::List => list(g, &repo)?,
        KeyCommand::Add { new_password_file } => {
            let new = common::new_password(g, new_password_file.as_deref(), false)?;
            let master = repo.unwrap_master(password.as_bytes())?;
            let id = repo.add_key(&master, new.as_bytes(), KdfParams::DEFAULT, &host, &user)?;
            report(g, "added", &id);
        }
        KeyCommand::Remove { id } => {
            // Every key file, damaged ones too: a planted or broken one must be removable.
            let keys = repo.key_files()?;
            let want = id.to_ascii_lowercase();
            let matching: Vec<KeyId> = keys
                .iter()
                .map(|k| k.id)
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

/// `key list`. Every key file is shown, marked rather than hidden when its host, user and
/// time are only claims: a key file authenticates those fields under its own password, so
/// only the key in use (`*`) has them verified. Hiding the others would also hide a planted
/// key file from the one command that shows it before `key remove`. Each key file's Argon2
/// cost is shown, and a cost above the limit says the key file is skipped when opening.
fn list(g: &Global, repo: &Repository) -> Result<()> {
    let keys = repo.key_files()?;
    let limit = common::open_options(g).kdf_limit;
    let note = |k: &KeyListing| -> String {
        match &k.file {
            Err(e) => format!("unusable: {e}"),
            Ok(f) if !limit.allows(&f.kdf) => format!(
                "unverified; skipped when opening: Argon2 {} is above the limit",
                describe_cost(&f.kdf)
            ),
            Ok(_) if k.verified => "in use".to_string(),
            Ok(_) => "unverified".to_string(),
        }
    };
    if g.json {
        let list: Vec<_> = keys
            .iter()
            .map(|k| {
                let mut v = serde_json::json!({
                    "id": k.id.to_hex(),
                    "current": k.id == repo.key_id(),
                    "verified": k.verified,
                    "note": note(k),
                });
                if let Ok(f) = &k.file {
                    v["host"] = f.host.clone().into();
                    v["user"] = f.user.clone().into();
                    v["created"] = coffer::browse::format_time_rfc3339(f.created_ns).into();
                    v["kdf"] = serde_json::json!({"memory_kib": f.kdf.memory_kib,
                        "iterations": f.kdf.iterations, "parallelism": f.kdf.parallelism});
                    v["skipped_when_opening"] = (!limit.allows(&f.kdf)).into();
                }
                v
            })
            .collect();
        print_json(&list);
        return Ok(());
    }
    println!(
        "  {:<8}  {:<19}  {:<12}  {:<12}  note",
        "id", "created", "host", "user"
    );
    for k in &keys {
        let mark = if k.id == repo.key_id() { "*" } else { " " };
        let (created, host, user) = match &k.file {
            Ok(f) => (format_time(f.created_ns), f.host.as_str(), f.user.as_str()),
            Err(_) => ("?".to_string(), "?", "?"),
        };
        println!(
            "{mark} {:<8}  {created:<19}  {host:<12}  {user:<12}  {}",
            k.id.short(),
            note(k)
        );
    }
    if !g.quiet && keys.iter().any(|k| !k.verified) {
        println!(
            "created, host and user are verified only for the key in use (*): for the others \
             they are what the key file claims, and anyone who can write to the storage can \
             add a key file"
        );
    }
    Ok(())
}

fn report(g: &Global, what: &str, id: &KeyId) {
    if g.json {
        print_json(&serde_json::json!({"result": what, "key_id": id.to_hex()}));
    } else if !g.quiet {
        println!("{what} {}", id.short());
    }
}
