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
