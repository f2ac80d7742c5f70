//! The multi-region wrapper over memory backends, with faults injected by `Faulty`.

use super::*;
use crate::backend::faulty::Faulty;
use crate::backend::{open, Location};

/// A memory backend behind a fault switch, and the warnings the wrapper gave.
struct Setup {
    regions: Regions,
    faulty: Vec<Arc<Faulty>>,
    warnings: Arc<Mutex<Vec<String>>>,
}

fn setup(names: &[&str], min: usize) -> Setup {
    let faulty: Vec<Arc<Faulty>> = names
        .iter()
        .map(|_| Arc::new(Faulty::new(open(&Location::Memory).unwrap())))
        .collect();
    let list = names
        .iter()
        .zip(&faulty)
        .map(|(n, f)| (n.to_string(), f.clone() as Arc<dyn Backend>))
        .collect();
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let sink = warnings.clone();
    let regions = Regions::new(list, min)
        .unwrap()
        .with_warning(Arc::new(move |m: &str| {
            sink.lock().unwrap().push(m.to_string())
        }));
    Setup {
        regions,
        faulty,
        warnings,
    }
}

impl Setup {
    fn warnings(&self) -> Vec<String> {
        self.warnings.lock().unwrap().clone()
    }
    /// The object as stored in region `i`, bypassing every fault.
    fn stored(&self, i: usize, name: &ObjectName) -> Result<Vec<u8>> {
        self.faulty[i].inner().get(name)
    }
}

fn object(seed: u8, len: usize) -> (ObjectName, Bytes) {
    let bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    (
        ObjectName::for_bytes(ObjectKind::Pack, &bytes),
        Bytes::from(bytes),
    )
}

#[test]
fn a_write_with_one_region_down_succeeds_with_min_1_and_marks_it_behind() {
    let s = setup(&["eu", "us"], 1);
    s.faulty[1].set_fail_all(true);
    let (n, b) = object(1, 100);
    s.regions.put(&n, b.clone()).unwrap();
    assert_eq!(s.stored(0, &n).unwrap(), b);
    assert_eq!(s.stored(1, &n).unwrap_err().kind(), ErrorKind::NotFound);
    let behind = s.regions.behind();
    assert_eq!(behind.len(), 1, "{behind:?}");
    assert_eq!(behind[0].0, "us");
    assert!(behind[0].1.contains("injected fault"), "{behind:?}");
    let w = s.warnings();
    assert!(w.iter().any(|m| m.contains("region us is behind")), "{w:?}");
}

#[test]
fn a_write_fails_when_fewer_than_min_regions_take_it() {
    let s = setup(&["eu", "us"], 2);
    s.faulty[1].set_fail_all(true);
    let (n, b) = object(2, 100);
    let e = s.regions.put(&n, b).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend);
    assert!(
        e.message().contains("reached 1 of 2 regions, 2 needed"),
        "{e}"
    );
    assert!(e.message().contains("us: "), "{e}");
    assert!(e.is_retryable());
    assert_eq!(s.regions.behind()[0].0, "us");
}

#[test]
fn reads_fall_back_to_the_next_region() {
    let s = setup(&["eu", "us"], 1);
    let (n, b) = object(3, 1000);
    s.regions.put(&n, b.clone()).unwrap();
    s.faulty[0].set_fail_all(true);
    assert_eq!(s.regions.get(&n).unwrap(), b);
    assert_eq!(s.regions.get_range(&n, 10, 20).unwrap(), &b[10..30]);
    assert_eq!(s.regions.stat(&n).unwrap(), Some(1000));
    assert_eq!(s.regions.list(ObjectKind::Pack).unwrap(), vec![(n, 1000)]);
    // Only the first read failure is reported.
    let w = s.warnings();
    assert_eq!(
        w.iter().filter(|m| m.contains("could not be read")).count(),
        1,
        "{w:?}"
    );
}

#[test]
fn an_object_missing_in_the_first_region_is_read_from_the_next_and_marks_it_behind() {
    let s = setup(&["eu", "us"], 1);
    let (n, b) = object(4, 50);
    s.faulty[1].inner().put(&n, b.clone()).unwrap();
    assert_eq!(s.regions.stat(&n).unwrap(), Some(50));
    assert_eq!(s.regions.get(&n).unwrap(), b);
    assert_eq!(s.regions.behind()[0].0, "eu");
    // Not written back by a read: that is sync's job.
    assert!(s.stored(0, &n).is_err());
}

#[test]
fn an_object_missing_everywhere_is_not_found_and_nobody_is_behind() {
    let s = setup(&["eu", "us"], 1);
    let (n, _) = object(5, 10);
    assert_eq!(s.regions.get(&n).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(
        s.regions.get_range(&n, 0, 1).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(s.regions.stat(&n).unwrap(), None);
    assert!(s.regions.behind().is_empty());
}

#[test]
fn a_damaged_copy_is_skipped_and_repaired() {
    let s = setup(&["eu", "us"], 2);
    let (n, b) = object(6, 4096);
    s.regions.put(&n, b.clone()).unwrap();
    let mut rotten = b.to_vec();
    rotten[100] ^= 0x40;
    s.faulty[0].inner().put(&n, Bytes::from(rotten)).unwrap();

    assert_eq!(s.regions.get(&n).unwrap(), b);
    assert_eq!(s.stored(0, &n).unwrap(), b, "the bad copy was rewritten");
    assert_eq!(s.regions.repairs(), 1);
    let w = s.warnings();
    assert!(
        w.iter()
            .any(|m| m.contains("region eu") && m.contains("fails its name check")),
        "{w:?}"
    );
    assert!(w.iter().any(|m| m.contains("rewrote")), "{w:?}");
}

#[test]
fn a_flipped_byte_on_read_falls_back_and_rewrites() {
    let s = setup(&["eu", "us"], 2);
    let (n, b) = object(7, 300);
    s.regions.put(&n, b.clone()).unwrap();
    s.faulty[0].set_flip_reads(true);
    assert_eq!(s.regions.get(&n).unwrap(), b);
    assert_eq!(s.regions.repairs(), 1);
    assert_eq!(s.faulty[0].puts(), 2, "the first put and the repair");
}

#[test]
fn every_copy_damaged_is_corrupt() {
    let s = setup(&["eu", "us"], 2);
    let (n, b) = object(8, 64);
    s.regions.put(&n, b).unwrap();
    s.faulty[0].set_flip_reads(true);
    s.faulty[1].set_flip_reads(true);
    let e = s.regions.get(&n).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert_eq!(s.regions.repair(&n).unwrap_err().kind(), ErrorKind::Corrupt);
    assert_eq!(s.regions.repairs(), 0);
}

#[test]
fn ranges_are_not_verified_but_repair_fixes_the_bad_region() {
    let s = setup(&["eu", "us", "ap"], 1);
    let (n, b) = object(9, 2000);
    s.regions.put(&n, b.clone()).unwrap();
    let mut rotten = b.to_vec();
    rotten[500] ^= 0xff;
    s.faulty[0].inner().put(&n, Bytes::from(rotten)).unwrap();
    s.faulty[2].inner().delete(&n).unwrap();

    // The range comes from the bad copy: the caller's authentication would catch it.
    assert_ne!(s.regions.get_range(&n, 490, 20).unwrap(), &b[490..510]);
    assert_eq!(
        s.regions.repair(&n).unwrap(),
        2,
        "eu (bad) and ap (missing)"
    );
    assert_eq!(s.regions.get_range(&n, 490, 20).unwrap(), &b[490..510]);
    assert_eq!(s.stored(2, &n).unwrap(), b);
    assert_eq!(s.regions.repair(&n).unwrap(), 0, "nothing left to fix");
}

#[test]
fn list_is_the_union_keeping_the_largest_size() {
    let s = setup(&["eu", "us"], 1);
    let (a, ab) = object(10, 10);
    let (c, cb) = object(11, 20);
    s.faulty[0].inner().put(&a, ab.clone()).unwrap();
    s.faulty[1].inner().put(&c, cb).unwrap();
    // A truncated copy of `a` in us.
    s.faulty[1].inner().put(&a, ab.slice(..4)).unwrap();
    let mut want = vec![(a, 10), (c, 20)];
    want.sort();
    assert_eq!(s.regions.list(ObjectKind::Pack).unwrap(), want);
    assert!(s.regions.list(ObjectKind::Index).unwrap().is_empty());
    s.faulty[1].set_fail_all(true);
    assert_eq!(s.regions.list(ObjectKind::Pack).unwrap(), vec![(a, 10)]);
    s.faulty[0].set_fail_all(true);
    assert_eq!(
        s.regions.list(ObjectKind::Pack).unwrap_err().kind(),
        ErrorKind::Backend
    );
}

#[test]
fn a_region_that_keeps_failing_is_skipped_for_the_session() {
    let s = setup(&["eu", "us"], 1);
    let s = Setup {
        regions: s.regions.with_skip_after(2),
        ..s
    };
    s.faulty[1].fail_writes_after(1);
    for seed in 20..25 {
        let (n, b) = object(seed, 10);
        s.regions.put(&n, b).unwrap();
    }
    // One write went through, two failed, then the region was left alone.
    assert_eq!(s.faulty[1].puts(), 1);
    assert_eq!(s.faulty[0].puts(), 5);
    let w = s.warnings();
    assert!(
        w.iter()
            .any(|m| m.contains("region us failed 2 writes in a row")),
        "{w:?}"
    );
    assert_eq!(s.regions.behind().len(), 1);
}

#[test]
fn a_success_resets_the_failure_count() {
    let s = setup(&["eu", "us"], 1);
    let s = Setup {
        regions: s.regions.with_skip_after(2),
        ..s
    };
    for seed in 30..36 {
        // Fail every other write: never two in a row.
        s.faulty[1].set_fail_all(seed % 2 == 0);
        let (n, b) = object(seed, 10);
        s.regions.put(&n, b).unwrap();
    }
    assert_eq!(s.faulty[1].puts(), 3);
}

#[test]
fn delete_reaches_every_region_and_reports_failures() {
    let s = setup(&["eu", "us"], 2);
    let (n, b) = object(40, 10);
    s.regions.put(&n, b.clone()).unwrap();
    s.regions.delete(&n).unwrap();
    assert!(s.stored(0, &n).is_err() && s.stored(1, &n).is_err());
    // Deleting what is already gone is fine.
    s.regions.delete(&n).unwrap();

    s.regions.put(&n, b).unwrap();
    s.faulty[1].set_fail_all(true);
    let e = s.regions.delete(&n).unwrap_err();
    assert!(
        e.message().contains("failed in 1 of 2 regions") && e.message().contains("us:"),
        "{e}"
    );
    assert!(s.stored(0, &n).is_err(), "deleted where it could be");
    assert!(s.stored(1, &n).is_ok());
}

#[test]
fn a_single_region_behaves_like_its_backend() {
    let s = setup(&["only"], 1);
    let (n, b) = object(50, 100);
    s.regions.put(&n, b.clone()).unwrap();
    assert_eq!(s.regions.get(&n).unwrap(), b);
    s.faulty[0].set_fail_all(true);
    let e = s.regions.get(&n).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend);
    assert!(e.is_retryable());
    assert!(s.regions.put(&n, b).is_err());
    assert_eq!(s.regions.describe(), "only=memory:");
}

#[test]
fn bad_configurations_are_refused() {
    let m = || open(&Location::Memory).unwrap();
    let err = |r: Result<Regions>| r.err().expect("should be refused");
    assert_eq!(err(Regions::new(vec![], 1)).kind(), ErrorKind::InvalidInput);
    assert!(err(Regions::new(vec![("a".into(), m())], 0))
        .message()
        .contains("from 1 to 1"));
    assert!(err(Regions::new(vec![("a".into(), m())], 2))
        .message()
        .contains("not 2"));
    let twice = vec![("a".into(), m()), ("a".into(), m())];
    assert!(err(Regions::new(twice, 1)).message().contains("used twice"));
}

#[test]
fn a_copy_larger_than_its_kind_allows_is_refused_unread_and_rewritten() {
    let s = setup(&["eu", "us"], 1);
    let good = vec![5u8; 106];
    let n = ObjectName::for_bytes(ObjectKind::Config, &good);
    // Region eu holds a giant under the config's name (planted, or damaged storage).
    s.faulty[0]
        .inner()
        .put(&n, Bytes::from(vec![0u8; 4096]))
        .unwrap();
    s.faulty[1]
        .inner()
        .put(&n, Bytes::from(good.clone()))
        .unwrap();
    assert_eq!(s.regions.get(&n).unwrap(), good);
    assert_eq!(
        s.stored(0, &n).unwrap(),
        good,
        "the giant copy was replaced"
    );
    let w = s.warnings();
    assert!(w.iter().any(|m| m.contains("4096 bytes")), "{w:?}");
    assert!(w.iter().any(|m| m.contains("rewrote")), "{w:?}");
}
