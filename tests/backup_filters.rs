//! `backup`'s file choices with restic's names: --exclude-file, --iexclude,
//! --exclude-if-present, --exclude-caches, --exclude-larger-than, --one-file-system (where
//! the machine allows a mount), --files-from. Each is checked on what the snapshot holds.

mod common;
use common::Env;
use std::path::Path;

fn listed(env: &Env) -> Vec<String> {
    let v = env.json(&["ls", "latest"]);
    let mut names: Vec<String> = v["entries"]
        .as_array()
        .expect("ls --json lists entries")
        .iter()
        .filter_map(|n| n["path"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn has(list: &[String], suffix: &str) -> bool {
    list.iter().any(|p| p.ends_with(suffix))
}

fn write(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

#[test]
fn each_option_leaves_out_what_it_says_and_nothing_else() {
    let env = Env::new();
    env.init();
    let d = env.path("data");
    write(&d.join("keep.txt"), b"k");
    write(&d.join("notes.TMP"), b"t");
    write(&d.join("drop.bak"), b"b");
    write(&d.join("big.bin"), &vec![7u8; 300_000]);
    write(&d.join("small.bin"), &vec![7u8; 3_000]);
    write(&d.join("tagged/.nobackup"), b"");
    write(&d.join("tagged/inside.txt"), b"i");
    write(
        &d.join("cache/CACHEDIR.TAG"),
        b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n",
    );
    write(&d.join("cache/blob"), b"c");
    // A marker without the right header is not a cache tag.
    write(&d.join("fake/CACHEDIR.TAG"), b"not a tag");
    write(&d.join("fake/data"), b"f");
    let list = env.path("excludes.txt");
    std::fs::write(&list, "# backups\n\n*.bak\n").unwrap();
    let from = env.path("paths.txt");
    std::fs::write(&from, format!("# what to save\n{}\n", d.display())).unwrap();
    env.ok(&[
        "backup",
        "--files-from",
        from.to_str().unwrap(),
        "--exclude-file",
        list.to_str().unwrap(),
        "--iexclude",
        "*.tmp",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-caches",
        "--exclude-larger-than",
        "100K",
    ]);
    let got = listed(&env);
    for kept in [
        "keep.txt",
        "small.bin",
        "tagged",
        "cache",
        "fake/data",
        "fake/CACHEDIR.TAG",
    ] {
        assert!(has(&got, kept), "{kept} missing: {got:?}");
    }
    for gone in [
        "notes.TMP",
        "drop.bak",
        "big.bin",
        "tagged/inside.txt",
        "tagged/.nobackup",
        "cache/blob",
    ] {
        assert!(!has(&got, gone), "{gone} kept: {got:?}");
    }
    // Without the options, everything is there (the options did the leaving out).
    env.ok(&["backup", d.to_str().unwrap()]);
    let all = listed(&env);
    for p in [
        "notes.TMP",
        "drop.bak",
        "big.bin",
        "tagged/inside.txt",
        "cache/blob",
    ] {
        assert!(has(&all, p), "{p}: {all:?}");
    }
    // A files-from list with no path is an error, not an empty snapshot.
    let empty = env.path("none.txt");
    std::fs::write(&empty, "# nothing\n").unwrap();
    let o = env.run(&["backup", "--files-from", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

/// `--one-file-system` keeps a mount point below the path as an empty folder. Needs root
/// and a tmpfs mount; skipped (with a note) where the machine forbids mounting.
#[test]
fn one_file_system_keeps_mount_points_empty() {
    let env = Env::new();
    env.init();
    let d = env.path("fs");
    write(&d.join("here.txt"), b"h");
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!("skipped: cannot mount a tmpfs here");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _u = Unmount(&mnt);
    write(&mnt.join("other.txt"), b"o");
    env.ok(&["backup", "--one-file-system", d.to_str().unwrap()]);
    let got = listed(&env);
    assert!(has(&got, "here.txt") && has(&got, "/mnt"), "{got:?}");
    assert!(!has(&got, "other.txt"), "{got:?}");
    env.ok(&["backup", d.to_str().unwrap()]);
    assert!(has(&listed(&env), "other.txt"));
}
