//! `restore --overwrite` with restic's meanings, on a folder where a user edited one file
//! after the backup and another is unchanged: `never` and `if-newer` keep the edit,
//! `if-changed` replaces only what differs, `always` (the default) restores the snapshot.

mod common;
use common::Env;
use std::path::Path;

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn each_mode_keeps_or_replaces_what_it_says() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("edited.txt"), "as backed up\n").unwrap();
    std::fs::write(src.join("same.txt"), "unchanged\n").unwrap();
    env.ok(&["backup", src.to_str().unwrap()]);
    let target = env.path("target");
    let t = target.to_str().unwrap();
    env.ok(&["restore", "latest", "--target", t]);
    let restored = target.join(src.strip_prefix("/").unwrap());
    // The user edits one file after the restore (a newer modification time).
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(restored.join("edited.txt"), "the user's edit\n").unwrap();

    for (mode, skipped) in [("never", 2), ("if-newer", 2), ("if-changed", 1)] {
        let v = env.json(&["restore", "latest", "--target", t, "--overwrite", mode]);
        assert_eq!(v["outcome"]["skipped"], skipped, "{mode}: {v}");
        assert_eq!(
            read(&restored.join("edited.txt")),
            if mode == "if-changed" {
                "as backed up\n"
            } else {
                "the user's edit\n"
            },
            "{mode}"
        );
        assert_eq!(read(&restored.join("same.txt")), "unchanged\n");
        // Put the edit back for the next mode.
        std::fs::write(restored.join("edited.txt"), "the user's edit\n").unwrap();
    }
    // The default replaces it, as restic does.
    let v = env.json(&["restore", "latest", "--target", t]);
    assert_eq!(v["outcome"]["skipped"], 0, "{v}");
    assert_eq!(read(&restored.join("edited.txt")), "as backed up\n");
    // A name clap does not know is a usage error.
    let o = env.run(&[
        "restore",
        "latest",
        "--target",
        t,
        "--overwrite",
        "sometimes",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
