mod common;
use common::Env;

#[test]
fn init_backup_restore_round_trip() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::write(src.join("d/file"), common::pseudo_random(1, 300_000)).unwrap();
    let id = env.backup(&[&src]);
    let target = env.path("out");
    env.ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    let restored = target.join(src.strip_prefix("/").unwrap()).join("d/file");
    assert_eq!(
        std::fs::read(restored).unwrap(),
        common::pseudo_random(1, 300_000)
    );
}

/// A file whose bytes equal an empty directory's tree encoding must not be confused with
/// that tree (blob IDs are typed).
#[test]
fn file_equal_to_a_tree_encoding_restores() {
    let env = Env::new();
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("looks-like-a-tree"), [1u8, 0, 0, 0, 0]).unwrap();
    let id = env.backup(&[&src]);
    let target = env.path("out");
    env.ok(&["restore", &id, "--target", target.to_str().unwrap()]);
    let root = target.join(src.strip_prefix("/").unwrap());
    assert_eq!(
        std::fs::read(root.join("looks-like-a-tree")).unwrap(),
        [1, 0, 0, 0, 0]
    );
    assert!(root.join("empty").is_dir());
    let check = env.run(&["check", "--read-data"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
