//! Restore must be exact: a real tree of tens of thousands of files plus every awkward kind
//! of entry comes back identical (types, permission bits, owners, sizes, mtimes to the
//! nanosecond, symlink targets, contents, hard-link structure), restored with an empty cache.
//! Also: an unchanged incremental backup reads nothing, a one-byte change stores only the
//! chunks around it, `--include` restores only what it names, and stdin streams dedupe.
//!
//! Everything runs as root (chown, mknod and setuid need it).

mod common;

use common::{pseudo_random, Env};
use filetime::FileTime;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Helpers

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn p(base: &Path, rel: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(rel))
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn set_mtime(path: &Path, secs: i64, nanos: u32) {
    let t = FileTime::from_unix_time(secs, nanos);
    filetime::set_symlink_file_times(path, t, t)
        .unwrap_or_else(|e| panic!("utimes {}: {e}", path.display()));
}

fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Where `restore --target target` puts the snapshot path `abs`.
fn restored(target: &Path, abs: &Path) -> PathBuf {
    target.join(abs.strip_prefix("/").expect("absolute path"))
}

/// A fresh temp folder's canonical path: snapshot paths are canonical.
fn canonical_dir(env: &Env, rel: &str) -> PathBuf {
    let d = env.path(rel);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::canonicalize(d).unwrap()
}

fn json_cmd(mut cmd: Command, args: &[&str]) -> serde_json::Value {
    let out = cmd.arg("--json").args(args).output().expect("run coffer");
    common::assert_ok(&out, args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "coffer {args:?}: invalid JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// `coffer --json backup ARGS`: the whole JSON answer.
fn backup_json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["backup"];
    all.extend_from_slice(args);
    let v = env.json(&all);
    assert_eq!(v["exit_code"], 0, "backup reported a problem: {v}");
    v
}

fn num(v: &serde_json::Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {key:?} in {v}"))
}

/// Restore `snapshot` into `target` using a fresh, empty cache folder; require no errors.
fn restore_fresh_cache(env: &Env, snapshot: &str, target: &Path, includes: &[&Path]) {
    let cache = tempfile::tempdir().unwrap();
    let mut args = vec![
        "restore".to_string(),
        snapshot.to_string(),
        "--target".into(),
        target.to_str().unwrap().into(),
    ];
    for inc in includes {
        args.push("--include".into());
        args.push(inc.to_str().unwrap().into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let v = json_cmd(env.cmd_with_cache(cache.path()), &args);
    assert_eq!(v["exit_code"], 0, "restore reported a problem: {v}");
    assert_eq!(
        v["outcome"]["errors"].as_array().map(Vec::len),
        Some(0),
        "restore errors: {v}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tree scanning and comparison

struct Entry {
    meta: std::fs::Metadata,
    link: Option<Vec<u8>>,
}

/// Every entry below `root` (not `root` itself: key b"" is root), by relative path bytes.
fn scan(root: &Path) -> BTreeMap<Vec<u8>, Entry> {
    fn walk(root: &Path, rel: &[u8], out: &mut BTreeMap<Vec<u8>, Entry>) {
        let path = if rel.is_empty() {
            root.to_path_buf()
        } else {
            p(root, rel)
        };
        let meta = std::fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let link = meta.file_type().is_symlink().then(|| {
            std::fs::read_link(&path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec()
        });
        let is_dir = meta.is_dir();
        out.insert(rel.to_vec(), Entry { meta, link });
        if is_dir {
            for e in std::fs::read_dir(&path).unwrap() {
                let e = e.unwrap();
                let mut child = rel.to_vec();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(e.file_name().as_bytes());
                walk(root, &child, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, b"", &mut out);
    out
}

/// Names sharing an inode (non-directories), as sorted groups of two or more names.
fn link_groups(tree: &BTreeMap<Vec<u8>, Entry>) -> Vec<Vec<Vec<u8>>> {
    let mut by_inode: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    for (path, e) in tree {
        if !e.meta.is_dir() {
            by_inode
                .entry((e.meta.dev(), e.meta.ino()))
                .or_default()
                .push(path.clone());
        }
    }
    let mut groups: Vec<Vec<Vec<u8>>> = by_inode
        .into_values()
        .filter(|g| g.len() > 1)
        .map(|mut g| {
            g.sort();
            g
        })
        .collect();
    groups.sort();
    groups
}

fn kind(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_file() {
        "file"
    } else if t.is_dir() {
        "dir"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "chardev"
    } else if t.is_block_device() {
        "blockdev"
    } else {
        "other"
    }
}

fn same_contents(a: &Path, b: &Path) -> bool {
    let (Ok(mut fa), Ok(mut fb)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Compare two trees entry by entry; returns per-kind counts of the source.
fn assert_trees_equal(src: &Path, dst: &Path) -> BTreeMap<&'static str, u64> {
    let a = scan(src);
    let b = scan(dst);
    let mut problems: Vec<String> = Vec::new();
    let show = |k: &[u8]| format!("{:?}", String::from_utf8_lossy(k));
    for k in a.keys().filter(|k| !b.contains_key(*k)) {
        problems.push(format!("missing from restore: {}", show(k)));
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        problems.push(format!("extra in restore: {}", show(k)));
    }
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut bytes = 0u64;
    for (k, ea) in &a {
        let Some(eb) = b.get(k) else { continue };
        let (ma, mb) = (&ea.meta, &eb.meta);
        *counts.entry(kind(ma)).or_default() += 1;
        let mut diff = |what: &str, x: String, y: String| {
            if x != y {
                problems.push(format!("{}: {what} {x} != {y}", show(k)));
            }
        };
        diff("type", kind(ma).into(), kind(mb).into());
        diff(
            "mode",
            format!("{:o}", ma.mode() & 0o7777),
            format!("{:o}", mb.mode() & 0o7777),
        );
        diff("uid", ma.uid().to_string(), mb.uid().to_string());
        diff("gid", ma.gid().to_string(), mb.gid().to_string());
        diff(
            "mtime",
            format!("{}.{:09}", ma.mtime(), ma.mtime_nsec()),
            format!("{}.{:09}", mb.mtime(), mb.mtime_nsec()),
        );
        if !ma.is_dir() {
            // Directory sizes depend on the file system's history, not on the contents.
            diff("size", ma.len().to_string(), mb.len().to_string());
            diff("nlink", ma.nlink().to_string(), mb.nlink().to_string());
        }
        if ma.file_type().is_char_device() || ma.file_type().is_block_device() {
            diff("rdev", ma.rdev().to_string(), mb.rdev().to_string());
        }
        if ea.link != eb.link {
            problems.push(format!(
                "{}: symlink target {:?} != {:?}",
                show(k),
                ea.link.as_deref().map(String::from_utf8_lossy),
                eb.link.as_deref().map(String::from_utf8_lossy)
            ));
        }
        if ma.is_file() && mb.is_file() {
            bytes += ma.len();
            if !same_contents(&p(src, k), &p(dst, k)) {
                problems.push(format!("{}: contents differ", show(k)));
            }
        }
    }
    let (ga, gb) = (link_groups(&a), link_groups(&b));
    if ga != gb {
        let fmt = |g: &Vec<Vec<Vec<u8>>>| -> Vec<Vec<String>> {
            g.iter()
                .map(|names| names.iter().map(|n| show(n)).collect())
                .collect()
        };
        problems.push(format!(
            "hard-link structure differs:\n source:  {:?}\n restore: {:?}",
            fmt(&ga),
            fmt(&gb)
        ));
    }
    if !problems.is_empty() {
        let n = problems.len();
        problems.truncate(60);
        panic!(
            "restore is inexact: {n} problem(s), first ones:\n{}",
            problems.join("\n")
        );
    }
    counts.insert("hard-link groups", ga.len() as u64);
    counts.insert(
        "hard-link names",
        ga.iter().map(|g| g.len() as u64).sum::<u64>(),
    );
    counts.insert("file bytes", bytes);
    counts
}

// ---------------------------------------------------------------------------------------------
// Building the source tree

/// Entries (lstat-wise, without following symlinks) and bytes below `dir`.
fn measure(dir: &Path) -> (u64, u64) {
    let mut entries = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            entries += 1;
            if m.is_dir() {
                stack.push(e.path());
            } else {
                bytes += m.len();
            }
        }
    }
    (entries, bytes)
}

/// Copy real system folders into `dest` with `cp -a` until the copy holds at least
/// `want_entries` entries, staying under `max_bytes`. Folders with many small files come
/// first: entries are what this test is about, bytes mostly cost time.
/// Returns (entries, bytes, folders).
fn copy_real_folders(dest: &Path, want_entries: u64, max_bytes: u64) -> (u64, u64, Vec<PathBuf>) {
    let mut candidates: Vec<PathBuf> = [
        "/usr/share/man",
        "/usr/share/zoneinfo",
        "/usr/share/terminfo",
        "/usr/share/i18n",
        "/usr/share/perl",
        "/usr/share/perl5",
        "/usr/include",
        "/usr/share/doc",
        "/usr/share/locale",
        "/usr/share/mime",
        "/usr/share/info",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    // /usr/lib/python3, /usr/lib/python3.N
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        candidates.extend(
            rd.flatten()
                .filter(|e| e.file_name().as_bytes().starts_with(b"python3"))
                .map(|e| e.path()),
        );
    }
    let mut measured: Vec<(PathBuf, u64, u64)> = candidates
        .into_iter()
        .filter(|c| c.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false))
        .map(|c| {
            let (n, b) = measure(&c);
            (c, n, b)
        })
        .filter(|(_, n, _)| *n > 0)
        .collect();
    measured.sort_by_key(|(c, n, b)| (b / n, c.clone()));
    let (mut entries, mut bytes, mut used) = (0u64, 0u64, Vec::new());
    for (c, n, b) in measured {
        if entries >= want_entries {
            break;
        }
        if bytes + b > max_bytes {
            continue;
        }
        let name = c
            .to_string_lossy()
            .trim_start_matches('/')
            .replace('/', "_");
        run(Command::new("cp").arg("-a").arg(&c).arg(dest.join(name)));
        entries += n + 1;
        bytes += b;
        used.push(c);
    }
    (entries, bytes, used)
}

/// Add every awkward kind of entry under `dir` (which must exist).
fn add_awkward_entries(dir: &Path) {
    let d = |rel: &str| dir.join(rel);
    let mkdir = |rel: &str| std::fs::create_dir_all(dir.join(rel)).unwrap();

    // Empty files, empty directories (nested too), a 0-byte file in a subfolder.
    write(&d("empty"), b"");
    mkdir("emptydir");
    mkdir("nested/empty/a/b/c/d");
    mkdir("nested/withfile");
    write(&d("nested/withfile/zero"), b"");

    // Symlinks: dangling, to a directory, absolute, relative upwards, long dangling target.
    symlink("does/not/exist", d("dangling")).unwrap();
    symlink("nested/empty", d("to_dir")).unwrap();
    symlink("/etc/passwd", d("absolute_link")).unwrap();
    symlink("../../empty", d("nested/withfile/up_link")).unwrap();
    symlink("x/".repeat(1500), d("long_target_link")).unwrap();

    // Hard links: three names for one inode; a pair across directories; a hard-linked
    // symlink; a hard-linked file with an owner and odd mode.
    mkdir("hl");
    mkdir("other/deeper");
    write(&d("hl/one"), b"three names, one inode\n");
    std::fs::hard_link(d("hl/one"), d("hl/two")).unwrap();
    std::fs::hard_link(d("hl/one"), d("hl/three")).unwrap();
    write(&d("hl/pair_a"), &pseudo_random(7, 100_000));
    std::fs::hard_link(d("hl/pair_a"), d("other/deeper/pair_b")).unwrap();
    symlink("one", d("hl/sym1")).unwrap();
    std::fs::hard_link(d("hl/sym1"), d("hl/sym2")).unwrap();
    write(&d("hl/owned_a"), b"owned and linked\n");
    std::fs::hard_link(d("hl/owned_a"), d("other/owned_b")).unwrap();
    std::os::unix::fs::lchown(d("hl/owned_a"), Some(1234), Some(5678)).unwrap();
    chmod(&d("hl/owned_a"), 0o640);
    let empty_linked = d("hl/empty_linked");
    write(&empty_linked, b"");
    std::fs::hard_link(&empty_linked, d("other/empty_linked2")).unwrap();

    // Names: not UTF-8, newline, and other characters a shell or glob would mangle.
    write(&p(dir, b"bad\xff\xfename"), b"non-utf8 name\n");
    std::fs::create_dir(p(dir, b"dir\xfe\xff")).unwrap();
    write(
        &p(dir, b"dir\xfe\xff/inner\xff"),
        b"inside a non-utf8 dir\n",
    );
    write(&d("new\nline"), b"newline in name\n");
    write(&d("-dash"), b"dash\n");
    write(&d("sp ace"), b"space\n");
    write(&d("star*?[x]{a,b}"), b"glob chars\n");
    write(&d("back\\slash"), b"backslash\n");
    write(&d("\u{e9}t\u{e9} \u{1F600}"), b"unicode\n");
    write(&d(&"L".repeat(255)), b"longest name\n");
    let mut deep = dir.join("deep");
    for i in 0..40 {
        deep.push(format!("level{i}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    write(&deep.join("bottom"), b"deep\n");

    // Modes.
    write(&d("mode000"), b"nobody may read me\n");
    chmod(&d("mode000"), 0o000);
    write(&d("setuid"), b"#!/bin/sh\n");
    chmod(&d("setuid"), 0o4755);
    write(&d("setgid"), b"#!/bin/sh\n");
    chmod(&d("setgid"), 0o2711);
    write(&d("all_bits"), b"suid sgid sticky\n");
    chmod(&d("all_bits"), 0o7777);
    mkdir("sticky");
    write(&d("sticky/inside"), b"in a sticky dir\n");
    chmod(&d("sticky"), 0o1777);
    mkdir("readonly/sub");
    write(&d("readonly/a"), b"in a read-only dir\n");
    write(&d("readonly/sub/b"), b"deeper in a read-only dir\n");
    chmod(&d("readonly/sub"), 0o500);
    chmod(&d("readonly"), 0o500);
    mkdir("noperm");
    write(&d("noperm/hidden"), b"in a 000 dir\n");
    chmod(&d("noperm"), 0o000);
    mkdir("setgid_dir/child");
    chmod(&d("setgid_dir/child"), 0o755);
    chmod(&d("setgid_dir"), 0o2775);

    // Owners: a file, a directory with contents, a symlink, a setuid file owned by non-root.
    write(&d("owned"), b"owned by 1234:5678\n");
    std::os::unix::fs::lchown(d("owned"), Some(1234), Some(5678)).unwrap();
    mkdir("owned_dir");
    write(&d("owned_dir/f"), b"x");
    std::os::unix::fs::lchown(d("owned_dir"), Some(1234), Some(5678)).unwrap();
    symlink("owned", d("owned_link")).unwrap();
    std::os::unix::fs::lchown(d("owned_link"), Some(1234), Some(5678)).unwrap();
    write(&d("owned_setuid"), b"#!/bin/sh\n");
    std::os::unix::fs::lchown(d("owned_setuid"), Some(1234), Some(5678)).unwrap();
    chmod(&d("owned_setuid"), 0o4750);
    write(&d("owned_nobody"), b"65534\n");
    std::os::unix::fs::lchown(d("owned_nobody"), Some(65534), Some(65534)).unwrap();

    // Special files: a FIFO, a socket and (if allowed) a character device.
    let c = std::ffi::CString::new(d("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o640) }, 0, "mkfifo");
    drop(std::os::unix::net::UnixListener::bind(d("socket")).unwrap());
    let c = std::ffi::CString::new(d("chardev").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; makedev has no preconditions.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o620, libc::makedev(1, 3)) };
    if rc != 0 {
        eprintln!(
            "note: mknod of a character device is not permitted here ({}); skipped",
            std::io::Error::last_os_error()
        );
    }

    // Contents: a 20 MB pseudo-random file, a file with a hole, and a 0-byte file.
    write(&d("random20m"), &pseudo_random(20, 20_000_000));
    {
        let mut f = std::fs::File::create(d("sparse")).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(b"after the hole").unwrap();
    }
    write(&d("zero_bytes"), b"");

    // Times, last (creating entries changes their parent's mtime): nanoseconds on a file,
    // a directory and a symlink; before 1970; far future.
    write(&d("nanos"), b"mtime with nanoseconds\n");
    set_mtime(&d("nanos"), 981_173_106, 123_456_789); // 2001-02-03 04:05:06.123456789 UTC
}

fn set_awkward_times(dir: &Path) {
    let d = |rel: &str| dir.join(rel);
    set_mtime(&d("pre_epoch_file"), -1, 500_000_000); // 1969-12-31 23:59:59.5
    set_mtime(&d("future_file"), 7_258_118_400, 999_999_999); // 2200-01-01
    set_mtime(&d("nested/empty/a"), 1_000_000_000, 1);
    set_mtime(&d("dangling"), 1_234_567_890, 987_654_321);
    set_mtime(&d("to_dir"), 1_111_111_111, 111_111_111);
    set_mtime(&d("readonly"), 1_500_000_000, 500);
    set_mtime(&d("fifo"), 1_600_000_000, 42);
}

// ---------------------------------------------------------------------------------------------
// Tests

/// /dev/shm when it is a roomy tmpfs (creating and deleting tens of thousands of files there
/// takes seconds, not minutes on a busy disk); else the usual temp folder.
fn env_for_big_tree() -> Env {
    let shm = Path::new("/dev/shm");
    let c = std::ffi::CString::new("/dev/shm").unwrap();
    // SAFETY: statvfs writes only into `st`; `c` is a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let roomy = unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0
        && (st.f_bavail as u64).saturating_mul(st.f_frsize as u64) >= 2 << 30;
    if roomy && tempfile::tempdir_in(shm).is_ok() {
        Env::new_in(shm)
    } else {
        Env::new()
    }
}

#[test]
fn real_tree_round_trip() {
    let started = Instant::now();
    let env = env_for_big_tree();
    env.init();
    let src = canonical_dir(&env, "src");

    let (mut entries, bytes, used) = copy_real_folders(&src, 24_000, 300 << 20);
    if entries < 20_000 {
        // A minimal system: make up the difference with generated files.
        let n = 20_000 - entries;
        eprintln!("note: only {entries} entries in real folders; adding {n} generated files");
        for i in 0..n {
            let dir = src.join(format!("generated/d{:03}", i / 200));
            if i % 200 == 0 {
                std::fs::create_dir_all(&dir).unwrap();
            }
            write(
                &dir.join(format!("f{i}")),
                format!("generated file {i}\n").as_bytes(),
            );
        }
        entries += n;
    }
    let awkward = src.join("awkward");
    std::fs::create_dir(&awkward).unwrap();
    write(&awkward.join("pre_epoch_file"), b"before 1970\n");
    write(&awkward.join("future_file"), b"after 2199\n");
    add_awkward_entries(&awkward);
    set_awkward_times(&awkward);
    eprintln!(
        "copied {used:?}: {entries} entries, {} MB; tree built in {:.1}s",
        bytes >> 20,
        started.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let v = backup_json(&env, &[src.to_str().unwrap()]);
    let snapshot = v["snapshot"].as_str().unwrap().to_string();
    let s = &v["summary"];
    assert_eq!(num(s, "read_errors"), 0, "{v}");
    eprintln!("backup: {:.1}s, summary {s}", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let target = canonical_dir(&env, "restore");
    restore_fresh_cache(&env, &snapshot, &target, &[]);
    eprintln!("restore (fresh cache): {:.1}s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let counts = assert_trees_equal(&src, &restored(&target, &src));
    eprintln!(
        "compared in {:.1}s, all equal: {counts:?}",
        t.elapsed().as_secs_f64()
    );
    let total: u64 = ["file", "dir", "symlink", "fifo", "socket", "chardev"]
        .iter()
        .filter_map(|k| counts.get(k))
        .sum();
    assert!(total >= 20_000, "only {total} entries compared");
    assert!(counts.get("fifo").copied() >= Some(1));
    assert!(counts.get("socket").copied() >= Some(1));
    assert!(counts["hard-link groups"] >= 5, "{counts:?}");
    eprintln!(
        "total {:.1}s in {}",
        started.elapsed().as_secs_f64(),
        env.dir.path().display()
    );
}

#[test]
fn incremental_reads_nothing_when_unchanged() {
    let env = Env::new();
    env.init();
    let src = canonical_dir(&env, "src");
    let mut files = 0u64;
    for d in 0..10 {
        let dir = src.join(format!("dir{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..40 {
            write(
                &dir.join(format!("file{f}")),
                &pseudo_random(d * 1000 + f + 1, (f as usize) * 1500),
            );
            files += 1;
        }
    }
    const BIG: usize = 30_000_000;
    let original = pseudo_random(424242, BIG);
    let big = src.join("big.bin");
    write(&big, &original);
    files += 1;
    let src_arg = src.to_str().unwrap();

    let first = backup_json(&env, &[src_arg]);
    let s = &first["summary"];
    assert_eq!(num(s, "files_new"), files, "{first}");
    assert_eq!(num(s, "files_unmodified"), 0);
    let first_id = first["snapshot"].as_str().unwrap().to_string();

    // Unchanged: nothing read, every file unmodified, only tree blobs added.
    let before = env.json(&["stats"]);
    let second = backup_json(&env, &[src_arg]);
    let s = &second["summary"];
    eprintln!("unchanged backup: {s}");
    assert_eq!(
        second["parent"].as_str(),
        Some(first_id.as_str()),
        "{second}"
    );
    assert_eq!(num(s, "bytes_read"), 0, "{second}");
    assert_eq!(num(s, "files_unmodified"), files, "{second}");
    assert_eq!(num(s, "files_new") + num(s, "files_changed"), 0, "{second}");
    assert_eq!(num(s, "total_bytes"), num(&first["summary"], "total_bytes"));
    let after = env.json(&["stats"]);
    assert_eq!(num(&after, "data_blobs"), num(&before, "data_blobs"));
    assert_eq!(
        num(&after, "chunk_list_blobs"),
        num(&before, "chunk_list_blobs")
    );
    assert_eq!(
        num(&after, "tree_blobs") - num(&before, "tree_blobs"),
        num(s, "blobs_added"),
        "only tree blobs may be added"
    );
    // At most the trees of the folders above the source (whose metadata may change).
    let ancestors = src.components().count() as u64;
    assert!(num(s, "blobs_added") <= ancestors, "{second}");

    // One byte changed in the middle of the big file, in place (same inode and size).
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&big)
            .unwrap();
        f.seek(SeekFrom::Start(BIG as u64 / 2)).unwrap();
        f.write_all(&[original[BIG / 2] ^ 0x5a]).unwrap();
    }
    let mut modified = original.clone();
    modified[BIG / 2] ^= 0x5a;
    let third = backup_json(&env, &[src_arg]);
    let s = &third["summary"];
    eprintln!("one byte changed: {s}");
    assert_eq!(num(s, "files_changed"), 1, "{third}");
    assert_eq!(num(s, "files_unmodified"), files - 1, "{third}");
    assert_eq!(num(s, "bytes_read"), BIG as u64, "{third}");
    // Only the chunk(s) around the change (about 1 MiB each, 8 MiB at most) and trees.
    let added = num(s, "bytes_added_raw");
    assert!(
        added < 10 << 20 && added < BIG as u64 / 3,
        "a one-byte change added {added} bytes: {third}"
    );
    let third_id = third["snapshot"].as_str().unwrap().to_string();

    // Both versions restore exactly.
    let out_new = canonical_dir(&env, "restore-new");
    restore_fresh_cache(&env, &third_id, &out_new, &[]);
    assert!(std::fs::read(restored(&out_new, &big)).unwrap() == modified);
    assert_trees_equal(&src, &restored(&out_new, &src));
    let out_old = canonical_dir(&env, "restore-old");
    restore_fresh_cache(&env, &first_id, &out_old, &[&big]);
    assert!(std::fs::read(restored(&out_old, &big)).unwrap() == original);
}

#[test]
fn include_restores_only_selected_paths() {
    let env = Env::new();
    env.init();
    let src = canonical_dir(&env, "src");
    for dir in [
        "keep/sub/deeper",
        "keep/sub/empty_dir",
        "keep/sub2",
        "other/x",
    ] {
        std::fs::create_dir_all(src.join(dir)).unwrap();
    }
    let files: &[(&str, &[u8])] = &[
        ("keep/sub/a.txt", b"a"),
        ("keep/sub/deeper/b.txt", b"b"),
        ("keep/sibling.txt", b"sibling"),
        ("keep/sub2/c.txt", b"c"),
        ("keep/sub-x.txt", b"prefix-sharing sibling"),
        ("keep/su", b"prefix of the include"),
        ("other/d.txt", b"d"),
        ("other/x/e.txt", b"e"),
        ("top.txt", b"top"),
    ];
    for (rel, data) in files {
        write(&src.join(rel), data);
    }
    symlink("a.txt", src.join("keep/sub/link")).unwrap();
    set_mtime(&src.join("keep/sub"), 1_300_000_000, 7);
    env.backup(&[&src]);

    // One subtree.
    let t1 = canonical_dir(&env, "restore1");
    restore_fresh_cache(&env, "latest", &t1, &[&src.join("keep/sub")]);
    let r = restored(&t1, &src);
    assert_trees_equal(&src.join("keep/sub"), &r.join("keep/sub"));
    let names = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        names(&r),
        ["keep"],
        "siblings of the included path's parents"
    );
    assert_eq!(
        names(&r.join("keep")),
        ["sub"],
        "siblings of the included path"
    );
    assert!(r.join("keep").is_dir());

    // A single file plus a folder given with a trailing slash.
    let t2 = canonical_dir(&env, "restore2");
    let sub2 = format!("{}/", src.join("keep/sub2").display());
    restore_fresh_cache(
        &env,
        "latest",
        &t2,
        &[&src.join("other/d.txt"), Path::new(&sub2)],
    );
    let r = restored(&t2, &src);
    assert_eq!(names(&r), ["keep", "other"]);
    assert_eq!(names(&r.join("keep")), ["sub2"]);
    assert_eq!(names(&r.join("other")), ["d.txt"]);
    assert_eq!(std::fs::read(r.join("other/d.txt")).unwrap(), b"d");
    assert_trees_equal(&src.join("keep/sub2"), &r.join("keep/sub2"));
}

/// About `size` bytes of SQL-dump-like text: repetitive, but every line differs.
fn sql_dump(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 200);
    out.extend_from_slice(
        b"-- dump\nCREATE TABLE accounts (id int, name text, email text, balance int);\n",
    );
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut i = 0u64;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        writeln!(
            out,
            "INSERT INTO accounts VALUES ({i}, 'user{}', 'user{i}@example.org', {});",
            x % 100_000,
            x >> 40
        )
        .unwrap();
        i += 1;
    }
    out
}

fn backup_stdin(env: &Env, data: &[u8]) -> serde_json::Value {
    let mut child = env
        .cmd()
        .args(["--json", "backup", "--stdin", "--stdin-name", "dump.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let out = std::thread::scope(|s| {
        s.spawn(move || {
            stdin.write_all(data).unwrap();
        });
        child.wait_with_output().unwrap()
    });
    common::assert_ok(&out, &["backup", "--stdin"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_code"], 0, "{v}");
    v
}

#[test]
fn stdin_stream_dedupes_and_dumps_exactly() {
    let env = Env::new();
    env.init();
    let v1 = sql_dump(50_000_000);
    // Edits in three places: a changed value, an inserted line, a deleted line.
    let mut v2 = v1.clone();
    let line_start =
        |v: &[u8], at: usize| at + v[at..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let a = line_start(&v2, v2.len() / 2);
    v2[a + 27] = b'9';
    let b = line_start(&v2, v2.len() / 4);
    v2.splice(
        b..b,
        b"INSERT INTO accounts VALUES (-1, 'new', 'new@example.org', 0);\n"
            .iter()
            .copied(),
    );
    let c = line_start(&v2, v2.len() * 3 / 4);
    let c_end = line_start(&v2, c);
    v2.drain(c..c_end);
    assert_ne!(v1, v2);

    let first = backup_stdin(&env, &v1);
    let s = &first["summary"];
    assert_eq!(num(s, "bytes_read"), v1.len() as u64, "{first}");
    assert_eq!(num(s, "total_bytes"), v1.len() as u64, "{first}");
    let first_id = first["snapshot"].as_str().unwrap().to_string();
    let stats = env.json(&["stats"]);
    assert!(
        num(&stats, "chunk_list_blobs") > 0,
        "a 50 MB stream should need chunk lists: {stats}"
    );

    let second = backup_stdin(&env, &v2);
    let s = &second["summary"];
    eprintln!("modified stream: {s}");
    assert_eq!(num(s, "bytes_read"), v2.len() as u64);
    let added = num(s, "bytes_added_raw");
    assert!(
        added < v2.len() as u64 / 20,
        "three small edits added {added} of {} bytes: {second}",
        v2.len()
    );

    let dump = |snap: &str| {
        let cache = tempfile::tempdir().unwrap();
        let out = env
            .cmd_with_cache(cache.path())
            .args(["dump", snap, "dump.sql"])
            .output()
            .unwrap();
        common::assert_ok(&out, &["dump", snap, "dump.sql"]);
        out.stdout
    };
    let got = dump("latest");
    assert_eq!(got.len(), v2.len());
    assert!(got == v2, "dump of the latest stream differs");
    let got = dump(&first_id);
    assert!(got == v1, "dump of the first stream differs");
}

/// A time the format cannot hold (i64 nanoseconds end in 2262) must not crash the backup or
/// wrap to a time in the past: it is clamped to the latest time the format holds.
#[test]
fn mtime_beyond_format_range_is_clamped_not_wrapped() {
    let env = Env::new();
    env.init();
    let src = canonical_dir(&env, "src");
    let f = src.join("from_2400");
    write(&f, b"far future\n");
    let year_2400 = 13_569_465_600; // 2400-01-01T00:00:00Z
    set_mtime(&f, year_2400, 5);
    if std::fs::symlink_metadata(&f).unwrap().mtime() != year_2400 {
        eprintln!("note: this file system cannot store a year-2400 mtime; skipped");
        return;
    }
    write(&src.join("normal"), b"normal\n");
    set_mtime(&src.join("normal"), 1_000_000_000, 123);
    let id = env.backup(&[&src]);
    let target = canonical_dir(&env, "restore");
    restore_fresh_cache(&env, &id, &target, &[]);
    let r = restored(&target, &src);
    assert_eq!(std::fs::read(r.join("from_2400")).unwrap(), b"far future\n");
    let m = std::fs::symlink_metadata(r.join("from_2400")).unwrap();
    assert_eq!(
        (m.mtime(), m.mtime_nsec()),
        (i64::MAX / 1_000_000_000, i64::MAX % 1_000_000_000),
        "restored mtime should be the format's latest time (2262-04-11), not a wrapped one"
    );
    let m = std::fs::symlink_metadata(r.join("normal")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_000_000_000, 123));
}
