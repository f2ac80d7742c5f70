//! What coffer leaves on the host, through the real binary (security review M5): nothing
//! coffer writes is readable by others whatever the umask (but the metrics file, on purpose).

mod common;

use common::{assert_ok, Env};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data"), b"the user's data").unwrap();
    src
}

/// `Env::cmd` with the umask a login shell usually has, 022.
fn umask_022(mut c: Command) -> Command {
    // SAFETY: umask is async-signal-safe and touches nothing but the child's mask.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    c
}

/// Every file and folder below `root` (itself included) that group or others may use.
fn open_to_others(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if meta.permissions().mode() & 0o077 != 0 {
            out.push(format!("{} {:o}", p.display(), mode(&p)));
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    out
}

/// Security review M5: key files (offline password guessing) and the cache of decrypted index
/// bodies were 0644, their folders 0755.
#[test]
fn nothing_coffer_writes_is_readable_by_others_even_with_umask_022() {
    let env = Env::new();
    let src = source(&env);
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let out = umask_022(env.cmd())
            .envs(extra.iter().copied())
            .args(args)
            .output()
            .unwrap();
        assert_ok(&out, args);
    };
    run(&["init", "--kdf-memory-kib", "1024"], &[]);
    run(&["backup", src.to_str().unwrap()], &[]);
    run(
        &["key", "add"],
        &[("COFFER_NEW_PASSWORD", "a second password")],
    );
    let open = [open_to_others(&env.repo()), open_to_others(&env.cache())].concat();
    assert!(open.is_empty(), "readable by others: {open:#?}");

    // Modes an older coffer left wider are narrowed by the next command.
    let key = std::fs::read_dir(env.repo().join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let cache = std::fs::read_dir(env.cache())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("cache.sqlite").exists())
        .expect("the repository's cache folder");
    set_mode(&key, 0o644);
    set_mode(&cache, 0o755);
    set_mode(&cache.join("cache.sqlite"), 0o644);
    run(&["snapshots"], &[]);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&cache.join("cache.sqlite")), 0o600);

    // A run: the job state and run lock are private, the metrics file is 0644 on purpose
    // (node_exporter reads it as its own user).
    let textfile = env.path("textfile");
    std::fs::create_dir_all(&textfile).unwrap();
    let metrics = textfile.join("coffer.prom");
    let job = env.path("job.toml");
    std::fs::write(
        &job,
        format!(
            "[[job]]\nname = \"app\"\npaths = [\"{}\"]\nschedule = \"every 1h\"\n\n\
             [monitoring]\nprometheus_textfile = \"{}\"\n",
            src.display(),
            metrics.display()
        ),
    )
    .unwrap();
    run(&["--config", job.to_str().unwrap(), "run"], &[]);
    assert_eq!(mode(&metrics), 0o644);
    assert!(env.cache().join("jobs/run.lock").exists());
    let open = [open_to_others(&env.repo()), open_to_others(&env.cache())].concat();
    assert!(open.is_empty(), "readable by others after a run: {open:#?}");
}
