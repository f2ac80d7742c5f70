//! What coffer leaves on the host, through the real binary (security review M4, M5, L9, L10):
//! a `./coffer.toml` that someone else could have written does not choose the repository, and
//! commands name the repository they use; nothing coffer writes is readable by others whatever
//! the umask (but the metrics file, on purpose); names holding escape sequences are shown
//! escaped; a webhook's redirect is not followed.

mod common;

use common::http::HookServer;
use common::{assert_ok, Env, PASSWORD};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const NOBODY: u32 = 65534;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn set_mode(p: &Path, m: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

/// `coffer` run in `dir` with nothing but PATH, HOME, TZ and a cache folder: no repository
/// and no password unless the test adds them.
fn bare(env: &Env, dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_coffer"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.dir.path())
        .env("TZ", "UTC")
        .arg("--cache-dir")
        .arg(env.cache())
        .arg("--state-dir")
        .arg(env.state())
        .current_dir(dir)
        .stdin(Stdio::null());
    c
}

fn snapshot_count(repo: &Path) -> usize {
    common::repo_listing(&repo.join("snapshots")).len()
}

fn source(env: &Env) -> PathBuf {
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("data"), b"the user's data").unwrap();
    src
}

/// Security review M4: in the review's experiment, a backup run in a folder holding someone
/// else's `coffer.toml` went to that someone's repository, and said nothing.
#[test]
fn a_coffer_toml_that_others_could_write_does_not_choose_the_repository() {
    let env = Env::new();
    env.init();
    let src = source(&env);
    // The attacker's repository, and the password file that opens it.
    let evil = env.path("evil");
    let evil_pw = env.path("evil-password");
    std::fs::write(&evil_pw, "attacker\n").unwrap();
    let out = bare(&env, env.dir.path())
        .arg("--repo")
        .arg(&evil)
        .arg("--password-file")
        .arg(&evil_pw)
        .args(["init", "--kdf-memory-kib", "1024"])
        .output()
        .unwrap();
    assert_ok(&out, &["init", "(the attacker's repository)"]);
    let job = format!(
        "[repository]\nregions = [\"{}\"]\npassword_file = \"{}\"\n\n\
         [[job]]\nname = \"evil\"\npaths = [\"{}\"]\nschedule = \"every 1h\"\n",
        evil.display(),
        evil_pw.display(),
        src.display()
    );
    let work = env.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let toml = work.join("coffer.toml");
    let planted = env.path("planted.toml");
    std::fs::write(&planted, &job).unwrap();

    for (case, why) in [
        ("owned by nobody", "belongs to uid 65534"),
        ("writable by all", "writable by group or others"),
        ("a symlink", "symbolic link"),
    ] {
        let _ = std::fs::remove_file(&toml);
        match case {
            "owned by nobody" => {
                std::fs::write(&toml, &job).unwrap();
                set_mode(&toml, 0o644);
                std::os::unix::fs::chown(&toml, Some(NOBODY), Some(NOBODY)).unwrap();
            }
            "writable by all" => {
                std::fs::write(&toml, &job).unwrap();
                set_mode(&toml, 0o666);
            }
            _ => std::os::unix::fs::symlink(&planted, &toml).unwrap(),
        }
        // No repository given: the backup fails rather than going to the attacker.
        let out = bare(&env, &work).arg("backup").arg(&src).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {err}");
        assert!(
            err.contains("ignoring ./coffer.toml") && err.contains(why),
            "{case}: {err}"
        );
        assert!(err.contains("no repository given"), "{case}: {err}");
        assert_eq!(
            snapshot_count(&evil),
            0,
            "{case}: the attacker got a backup"
        );

        // With COFFER_REPOSITORY the backup goes there, and says so.
        let with_repo = |args: &[&str]| {
            bare(&env, &work)
                .env("COFFER_REPOSITORY", env.repo())
                .env("COFFER_PASSWORD", PASSWORD)
                .args(args)
                .output()
                .unwrap()
        };
        let out = with_repo(&["backup", src.to_str().unwrap()]);
        assert_ok(&out, &[case, "backup"]);
        let line = format!(
            "repository {} (from COFFER_REPOSITORY)",
            env.repo().display()
        );
        assert!(
            text(&out.stderr).contains(&line),
            "{case}: {}",
            text(&out.stderr)
        );
        // `coffer run` does not run the planted jobs.
        let out = with_repo(&["run"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{case}: {err}");
        assert!(
            err.contains("no job file: ./coffer.toml was ignored"),
            "{case}: {err}"
        );
        assert_eq!(
            snapshot_count(&evil),
            0,
            "{case}: the attacker got a backup"
        );
    }
    assert_eq!(snapshot_count(&env.repo()), 3);

    // The user's own 0644 file is used, and the output names it as the source.
    std::fs::remove_file(&toml).unwrap();
    std::fs::write(
        &toml,
        format!("[repository]\nregions = [\"{}\"]\n", env.repo().display()),
    )
    .unwrap();
    set_mode(&toml, 0o644);
    let run = |dir: &Path, args: &[&str]| {
        bare(&env, dir)
            .env("COFFER_PASSWORD", PASSWORD)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&work, &["backup", src.to_str().unwrap()]);
    assert_ok(&out, &["backup", "(own coffer.toml)"]);
    let line = format!("repository {} (from ./coffer.toml)", env.repo().display());
    assert!(text(&out.stderr).contains(&line), "{}", text(&out.stderr));
    let out = run(&work, &["--json", "backup", src.to_str().unwrap()]);
    assert_ok(&out, &["--json", "backup"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["repository"]["from"], "./coffer.toml", "{v}");
    assert_eq!(
        v["repository"]["regions"][0]["url"].as_str(),
        env.repo().to_str(),
        "{v}"
    );
    assert!(
        !text(&out.stderr).contains("repository "),
        "{}",
        text(&out.stderr)
    );

    // `--config F` is the user's choice, even when others may write it: used, with a warning.
    set_mode(&toml, 0o666);
    let out = run(
        env.dir.path(),
        &["--config", toml.to_str().unwrap(), "snapshots"],
    );
    assert_ok(&out, &["--config", "snapshots"]);
    let err = text(&out.stderr);
    assert!(err.contains("is writable by group or others"), "{err}");
    assert!(err.contains(&format!("(from {})", toml.display())), "{err}");
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
    assert!(env.state().join("jobs/run.lock").exists());
    let open = [
        open_to_others(&env.repo()),
        open_to_others(&env.cache()),
        open_to_others(&env.state()),
    ]
    .concat();
    assert!(open.is_empty(), "readable by others after a run: {open:#?}");
}

/// Security review L9: anyone who can create a file in a backed-up folder could put escape
/// sequences into an admin's terminal through `ls`, `diff` and warnings.
#[test]
fn names_with_escape_sequences_are_shown_escaped_and_json_keeps_them_exact() {
    let env = Env::new();
    // Everything runs as nobody, for whom a root-only file is unreadable: a backup warning.
    std::os::unix::fs::chown(env.dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let src = source(&env);
    let as_nobody = |args: &[&str]| -> Output {
        let mut c = env.cmd();
        c.uid(NOBODY).gid(NOBODY);
        c.args(args).output().unwrap()
    };
    let raw = |out: &[u8]| out.iter().any(|b| *b == 0x1b || *b == 0x07);
    assert_ok(
        &as_nobody(&["init", "--kdf-memory-kib", "1024"]),
        &["init", "(as nobody)"],
    );
    let first = as_nobody(&["--json", "backup", src.to_str().unwrap()]);
    assert_ok(&first, &["backup", "(as nobody)"]);
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let first = first["snapshot"].as_str().unwrap().to_string();

    let readable = src.join(OsStr::from_bytes(b"a\x1b]0;pwned\x07b"));
    std::fs::write(&readable, b"x").unwrap();
    let root_only = src.join(OsStr::from_bytes(b"c\x1b]0;pwned\x07d"));
    std::fs::write(&root_only, b"y").unwrap();
    set_mode(&root_only, 0o600);
    let shown = |name: &str| format!("{}/{name}", src.display());

    let out = as_nobody(&["backup", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(!raw(&out.stderr), "raw escapes in: {:?}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&shown(r"c\x1b]0;pwned\x07d")),
        "{}",
        text(&out.stderr)
    );

    for args in [&["ls", "latest"][..], &["ls", "--long", "latest"]] {
        let out = as_nobody(args);
        assert_ok(&out, args);
        assert!(!raw(&out.stdout), "raw escapes in: {:?}", text(&out.stdout));
        assert!(
            text(&out.stdout).contains(&shown(r"a\x1b]0;pwned\x07b")),
            "{}",
            text(&out.stdout)
        );
    }
    let out = as_nobody(&["diff", &first, "latest"]);
    assert_ok(&out, &["diff"]);
    assert!(!raw(&out.stdout), "raw escapes in: {:?}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&format!("+ {}", shown(r"a\x1b]0;pwned\x07b"))),
        "{}",
        text(&out.stdout)
    );

    // JSON keeps the name exact (serde escapes it as \u001b).
    let out = as_nobody(&["--json", "ls", "latest"]);
    assert_ok(&out, &["--json", "ls"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let exact = readable.to_str().unwrap();
    assert!(
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == exact),
        "{v}"
    );

    // An error message quoting a name.
    let out = as_nobody(&["ls", "latest", "/nowhere\x1b[2J"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(!raw(&out.stderr), "raw escapes in: {:?}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(r"/nowhere\x1b[2J"),
        "{}",
        text(&out.stderr)
    );
}

/// Security review L10: reqwest followed up to ten redirects, so a hook answering 302 sent
/// the run report wherever it pointed.
#[test]
fn a_webhook_that_redirects_is_not_followed() {
    let env = Env::new();
    env.init();
    let src = source(&env);
    let hook = HookServer::start_redirecting("/elsewhere");
    let job = env.path("job.toml");
    std::fs::write(
        &job,
        format!(
            "[[job]]\nname = \"app\"\npaths = [\"{}\"]\nschedule = \"every 1h\"\n\n\
             [monitoring]\nwebhook = \"{}/hook/T0KEN\"\n",
            src.display(),
            hook.url()
        ),
    )
    .unwrap();
    let out = env
        .cmd()
        .arg("--config")
        .arg(&job)
        .arg("run")
        .output()
        .unwrap();
    // Reporting never fails a run.
    assert_ok(&out, &["run"]);
    let paths: Vec<String> = hook.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, vec!["/hook/T0KEN".to_string()]);
    let err = text(&out.stderr);
    assert!(
        err.contains("webhook") && err.contains("302") && !err.contains("T0KEN"),
        "{err}"
    );
}
