use super::*;
use crate::backend::{ObjectKind, ObjectName};
use crate::format::wal::{WalCodec, WalHeader};

const SEG: u32 = 16 << 20;
const S: i64 = 1_000_000_000;

/// A segment of timeline `tli`, number `n`, written at second `n * 10` with commits in
/// its ten seconds (none if `idle`).
fn seg(tli: u32, n: u64, idle: bool) -> WalEntry {
    let name = segment_name(tli, n, SEG);
    WalEntry {
        object: ObjectName::new(ObjectKind::Wal, *blake3::hash(name.as_bytes()).as_bytes()),
        stored: 100,
        header: WalHeader {
            kind: WalKind::Segment,
            name,
            system_id: 9,
            timeline: tli,
            start_lsn: n * u64::from(SEG),
            segment_size: SEG,
            size: u64::from(SEG),
            hash: [0; 32],
            mtime_ns: (n as i64 * 10 + 10) * S,
            pushed_ns: (n as i64 * 10 + 11) * S,
            commits: (!idle).then_some(((n as i64 * 10 + 1) * S, (n as i64 * 10 + 9) * S)),
            codec: WalCodec::Zstd,
        },
    }
}

fn base(n: u64) -> BaseCandidate {
    BaseCandidate {
        snapshot: SnapshotId([n as u8; 32]),
        system_id: 9,
        timeline: 1,
        start_lsn: n * u64::from(SEG) + 40,
        stop_lsn: n * u64::from(SEG) + 5000,
        stop_time_ns: (n as i64 * 10 + 2) * S,
        segment_size: SEG,
    }
}

fn catalog(segs: Vec<WalEntry>) -> Catalog {
    Catalog::new(segs, vec![])
}

fn names(p: &Plan) -> Vec<String> {
    p.files.iter().map(|e| e.header.name.clone()).collect()
}

#[test]
fn a_time_picks_the_newest_base_before_it_and_the_segments_up_to_it() {
    let c = catalog((2..10).map(|n| seg(1, n, false)).collect());
    let bases = [base(2), base(5)];
    let p = plan(&c, &bases, &BTreeMap::new(), Target::Time(63 * S)).unwrap();
    assert_eq!(p.base.snapshot, bases[1].snapshot);
    // Segment 6 holds commits from 61 s to 69 s: the first after 63 s is there; 7 is
    // fetched in case the stopping record continues into it.
    assert_eq!(
        names(&p),
        [5, 6, 7].map(|n| segment_name(1, n, SEG)).to_vec()
    );
    assert_eq!(p.target, Target::Time(63 * S));

    // Before the newest base's end: the older one.
    let p = plan(&c, &bases, &BTreeMap::new(), Target::Time(40 * S)).unwrap();
    assert_eq!(p.base.snapshot, bases[0].snapshot);
    // Before every base: refused.
    let e = plan(&c, &bases, &BTreeMap::new(), Target::Time(5 * S)).unwrap_err();
    assert!(
        e.message()
            .contains("before the end of the oldest base backup"),
        "{e}"
    );
    // After the archive's end: refused; at its end with no later commit: to the end.
    let e = plan(&c, &bases, &BTreeMap::new(), Target::Time(500 * S)).unwrap_err();
    assert!(e.message().contains("after the end of the archive"), "{e}");
    let p = plan(&c, &bases, &BTreeMap::new(), Target::Time(99 * S + S / 2)).unwrap();
    assert_eq!(p.target, Target::End);
    assert!(p.note.is_some());
}

#[test]
fn a_gap_is_refused_with_its_name_unless_the_target_is_before_it() {
    let c = catalog(
        (2..10)
            .filter(|n| *n != 7)
            .map(|n| seg(1, n, false))
            .collect(),
    );
    let bases = [base(2)];
    let e = plan(&c, &bases, &BTreeMap::new(), Target::End).unwrap_err();
    assert!(e.message().contains(&segment_name(1, 7, SEG)), "{e}");
    let e = plan(&c, &bases, &BTreeMap::new(), Target::Time(85 * S)).unwrap_err();
    assert!(e.message().contains("gap"), "{e}");
    let p = plan(&c, &bases, &BTreeMap::new(), Target::Time(45 * S)).unwrap();
    assert_eq!(names(&p).last().unwrap(), &segment_name(1, 5, SEG));
    // A segment the base needs to become consistent.
    let c = catalog(vec![seg(1, 3, false)]);
    let e = plan(&c, &bases, &BTreeMap::new(), Target::End).unwrap_err();
    assert!(e.message().contains("consistent"), "{e}");
}

#[test]
fn recovery_follows_the_newest_timeline() {
    // Timeline 2 begins in segment 6 (at 6.5 segments).
    let switch = 6 * u64::from(SEG) + u64::from(SEG) / 2;
    let mut segs: Vec<WalEntry> = (2..=6).map(|n| seg(1, n, false)).collect();
    segs.extend((6..9).map(|n| seg(2, n, false)));
    let c = catalog(segs);
    let h = BTreeMap::from([(
        2,
        format!("1\t{}\tno recovery target specified\n", lsn_text(switch)),
    )]);
    let p = plan(&c, &[base(2)], &h, Target::End).unwrap();
    assert_eq!(p.timeline, 2);
    let want: Vec<String> = [(1, 2), (1, 3), (1, 4), (1, 5), (2, 6), (2, 7), (2, 8)]
        .map(|(t, n)| segment_name(t, n, SEG))
        .to_vec();
    assert_eq!(names(&p), want);
}
