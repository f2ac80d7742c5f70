//! Retention tests: hand-worked small cases for every rule, then a two-year series checked
//! against exact counts reasoned out below and against an independent, set-based
//! formulation of the rules.

use super::*;
use crate::error::ErrorKind;
use std::collections::{BTreeMap, BTreeSet};

const UTC: TimeZone = TimeZone::UTC;

/// `2026-01-01T03:00` in UTC, as nanoseconds.
fn ts(s: &str) -> i64 {
    let dt: DateTime = s.parse().unwrap();
    dt.to_zoned(TimeZone::UTC)
        .unwrap()
        .timestamp()
        .as_nanosecond() as i64
}

/// Far in the future of every test snapshot.
fn now() -> i64 {
    ts("2100-01-01T00:00")
}

fn id(n: u32) -> SnapshotId {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    SnapshotId(b)
}

fn num(id: &SnapshotId) -> u32 {
    u32::from_be_bytes(id.0[..4].try_into().unwrap())
}

fn snap(n: u32, time: &str) -> Candidate {
    snap_at(n, ts(time))
}

fn snap_at(n: u32, time_ns: i64) -> Candidate {
    Candidate {
        id: id(n),
        time_ns,
        host: "h".into(),
        paths: vec![b"/data".to_vec()],
        tags: vec![],
    }
}

fn tagged(mut c: Candidate, tags: &[&str]) -> Candidate {
    c.tags = tags.iter().map(|t| t.to_string()).collect();
    c
}

/// Kept snapshot numbers, newest first, over all groups in order.
fn kept(plan: &Plan) -> Vec<u32> {
    plan.kept().map(|d| num(&d.id)).collect()
}

fn reasons(plan: &Plan, n: u32) -> Vec<String> {
    plan.decisions()
        .find(|d| num(&d.id) == n)
        .unwrap()
        .reasons
        .clone()
}

/// Ten snapshots in one group. ISO weeks: 2026-01-01 is a Thursday, so 1-3 are in 2026-W01,
/// 4 (Monday) and 5 (Sunday) in W02, 6 in W03, 7-8 in W06, 9 in W11, and 10 (a Friday)
/// still in 2026-W53.
fn small() -> Vec<Candidate> {
    vec![
        snap(1, "2026-01-01T10:00"),
        snap(2, "2026-01-01T14:00"),
        tagged(snap(3, "2026-01-02T09:00"), &["prod"]),
        tagged(snap(4, "2026-01-05T09:00"), &["x"]),
        snap(5, "2026-01-11T23:00"),
        snap(6, "2026-01-12T01:00"),
        tagged(snap(7, "2026-02-03T08:00"), &["prod", "x"]),
        snap(8, "2026-02-03T08:30"),
        snap(9, "2026-03-15T12:00"),
        snap(10, "2027-01-01T00:30"),
    ]
}

fn within(s: &str) -> Option<Within> {
    Some(Within::parse(s).unwrap())
}

#[test]
fn each_rule_on_a_small_history() {
    let p = Policy::default;
    let tags = |t: &[&str]| Policy {
        keep_tags: t.iter().map(|s| s.to_string()).collect(),
        ..p()
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Policy, Vec<u32>)> = vec![
        ("last 3", Policy { keep_last: Some(3), ..p() }, vec![10, 9, 8]),
        // 7 shares 8's hour.
        ("hourly 4", Policy { keep_hourly: Some(4), ..p() }, vec![10, 9, 8, 6]),
        ("daily 5", Policy { keep_daily: Some(5), ..p() }, vec![10, 9, 8, 6, 5]),
        // Counts left at the oldest (1, same day as 2): it is kept too.
        ("daily 20", Policy { keep_daily: Some(20), ..p() }, vec![10, 9, 8, 6, 5, 4, 3, 2, 1]),
        ("weekly 3", Policy { keep_weekly: Some(3), ..p() }, vec![10, 9, 8]),
        // 4 shares W02 with 5; 3 is the newest of W01.
        ("weekly 6", Policy { keep_weekly: Some(6), ..p() }, vec![10, 9, 8, 6, 5, 3]),
        ("monthly 2", Policy { keep_monthly: Some(2), ..p() }, vec![10, 9]),
        ("monthly 4", Policy { keep_monthly: Some(4), ..p() }, vec![10, 9, 8, 6]),
        ("monthly all", Policy { keep_monthly: Some(UNLIMITED), ..p() }, vec![10, 9, 8, 6, 1]),
        ("yearly 1", Policy { keep_yearly: Some(1), ..p() }, vec![10]),
        ("yearly 2", Policy { keep_yearly: Some(2), ..p() }, vec![10, 9]),
        ("yearly 3", Policy { keep_yearly: Some(3), ..p() }, vec![10, 9, 1]),
        ("last all", Policy { keep_last: Some(UNLIMITED), ..p() }, (1..=10).rev().collect()),
        ("zero counts are no rule", Policy { keep_last: Some(0), keep_daily: Some(1), ..p() }, vec![10]),
        ("tag prod", tags(&["prod"]), vec![7, 3]),
        ("tag x or prod", tags(&["x", "prod"]), vec![7, 4, 3]),
        // Newest is 2027-01-01T00:30; the cutoff is excluded.
        ("within 1h", Policy { keep_within: within("1h"), ..p() }, vec![10]),
        ("within 10m", Policy { keep_within: within("10m"), ..p() }, vec![10, 9]),
        ("within 11m", Policy { keep_within: within("11m"), ..p() }, vec![10, 9, 8, 7]),
        // 2026-02-01 minus 21 days = 2026-01-11T00:30.
        ("within 11m21d", Policy { keep_within: within("11m21d"), ..p() }, vec![10, 9, 8, 7, 6, 5]),
        // 2026-01-11T00:30 minus 2h = 2026-01-10T22:30: still 5 and newer.
        ("within 11m21d2h", Policy { keep_within: within("11m21d2h"), ..p() }, vec![10, 9, 8, 7, 6, 5]),
        ("within 1y", Policy { keep_within: within("1y"), ..p() }, (1..=10).rev().collect()),
        (
            "last 2, daily 3, tag prod",
            Policy { keep_last: Some(2), keep_daily: Some(3), keep_tags: vec!["prod".into()], ..p() },
            vec![10, 9, 8, 7, 3],
        ),
        (
            "weekly 2, monthly 3, within 2m",
            Policy { keep_weekly: Some(2), keep_monthly: Some(3), keep_within: within("2m"), ..p() },
            vec![10, 9, 8],
        ),
    ];
    for (name, policy, want) in cases {
        let plan = apply(&small(), &policy, now(), &UTC);
        assert_eq!(kept(&plan), want, "{name}");
        for d in plan.decisions() {
            assert_eq!(d.keep, !d.reasons.is_empty(), "{name}: {d:?}");
        }
    }
}

#[test]
fn reasons_name_every_rule_that_keeps() {
    let policy = Policy {
        keep_last: Some(2),
        keep_daily: Some(3),
        keep_monthly: Some(UNLIMITED),
        keep_within: within("10m"),
        keep_tags: vec!["x".into(), "prod".into()],
        ..Default::default()
    };
    let plan = apply(&small(), &policy, now(), &UTC);
    assert_eq!(
        reasons(&plan, 10),
        ["within 10m", "last", "daily", "monthly"]
    );
    assert_eq!(
        reasons(&plan, 9),
        ["within 10m", "last", "daily", "monthly"]
    );
    assert_eq!(reasons(&plan, 8), ["daily", "monthly"]);
    assert_eq!(reasons(&plan, 7), ["tag x", "tag prod"]);
    assert_eq!(reasons(&plan, 6), ["monthly"]);
    assert_eq!(reasons(&plan, 5), Vec::<String>::new());
    assert_eq!(reasons(&plan, 1), ["monthly"]);
    assert_eq!(
        policy.describe(),
        "keep 2 last, 3 daily, all monthly snapshots; all within 10m of the newest; \
         all tagged x or prod"
    );
}

#[test]
fn within_follows_go_add_date_and_excludes_the_cutoff() {
    // 31 March minus one month is "31 February", normalised to 3 March (Go), not clamped
    // to 28 February: so 2 and 3 March are outside, 3 March 12:00 exactly on the cutoff.
    let snaps = vec![
        snap(1, "2026-02-28T12:00"),
        snap(2, "2026-03-02T12:00"),
        snap(3, "2026-03-03T12:00"),
        snap(4, "2026-03-04T00:00"),
        snap(5, "2026-03-31T12:00"),
    ];
    let policy = Policy {
        keep_within: within("1m"),
        ..Default::default()
    };
    assert_eq!(kept(&apply(&snaps, &policy, now(), &UTC)), [5, 4]);
    // A day and an hour either side of an exact cutoff.
    let snaps = vec![snap(1, "2026-01-09T12:00"), snap(2, "2026-01-10T12:00")];
    for (d, want) in [("1d", vec![2]), ("1d1h", vec![2, 1]), ("23h", vec![2])] {
        let policy = Policy {
            keep_within: within(d),
            ..Default::default()
        };
        assert_eq!(kept(&apply(&snaps, &policy, now(), &UTC)), want, "{d}");
    }
}

#[test]
fn within_measures_from_the_newest_snapshot_not_in_the_future() {
    let snaps = vec![
        snap(1, "2026-01-01T00:00"),
        snap(2, "2026-01-05T00:00"),
        snap(3, "2026-02-01T00:00"),
    ];
    let policy = Policy {
        keep_within: within("2d"),
        ..Default::default()
    };
    // Backups stopped long ago: the newest is still kept, with what is near it.
    assert_eq!(kept(&apply(&snaps, &policy, now(), &UTC)), [3]);
    // 3 is in the future of `now`: measured from 2, and 3 (after the cutoff) is kept.
    let now = ts("2026-01-06T00:00");
    assert_eq!(kept(&apply(&snaps, &policy, now, &UTC)), [3, 2]);
    // Every snapshot in the future: nothing to measure from, all kept (as restic).
    let now = ts("2025-01-01T00:00");
    assert_eq!(kept(&apply(&snaps, &policy, now, &UTC)), [3, 2, 1]);
}

#[test]
fn groups_by_host_and_paths() {
    let mut snaps = Vec::new();
    let mk = |n: u32, t: &str, host: &str, paths: &[&str]| Candidate {
        host: host.into(),
        paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
        ..snap(n, t)
    };
    snaps.push(mk(1, "2026-01-01T00:00", "b", &["/a", "/b"]));
    snaps.push(mk(2, "2026-01-02T00:00", "b", &["/b", "/a"]));
    snaps.push(mk(3, "2026-01-03T00:00", "a", &["/a"]));
    snaps.push(mk(4, "2026-01-04T00:00", "a", &["/a"]));
    snaps.push(mk(5, "2026-01-05T00:00", "a", &["/a", "/b"]));
    snaps.push(mk(6, "2026-01-06T00:00", "b", &["/a"]));
    let policy = Policy {
        keep_last: Some(1),
        ..Default::default()
    };
    let plan = apply(&snaps, &policy, now(), &UTC);
    let shape: Vec<(String, Vec<String>, Vec<u32>)> = plan
        .groups
        .iter()
        .map(|g| {
            (
                g.host.clone(),
                g.paths
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect(),
                g.snapshots.iter().map(|d| num(&d.id)).collect(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        shape,
        vec![
            ("a".into(), s(&["/a"]), vec![4, 3]),
            ("a".into(), s(&["/a", "/b"]), vec![5]),
            ("b".into(), s(&["/a"]), vec![6]),
            ("b".into(), s(&["/a", "/b"]), vec![2, 1]),
        ]
    );
    assert_eq!(kept(&plan), [4, 5, 6, 2]);
    // within is measured from each group's own newest snapshot.
    let policy = Policy {
        keep_within: within("1d1h"),
        ..Default::default()
    };
    assert_eq!(
        kept(&apply(&snaps, &policy, now(), &UTC)),
        [4, 3, 5, 6, 2, 1]
    );
}

#[test]
fn ties_are_broken_by_id_newest_first() {
    let t = "2026-01-01T12:00";
    let snaps = vec![snap(2, t), snap(1, t)];
    let last1 = Policy {
        keep_last: Some(1),
        ..Default::default()
    };
    let daily = |n| Policy {
        keep_daily: Some(n),
        ..Default::default()
    };
    assert_eq!(kept(&apply(&snaps, &last1, now(), &UTC)), [2]);
    assert_eq!(kept(&apply(&snaps, &daily(1), now(), &UTC)), [2]);
    // Counts left at the oldest: kept as well.
    assert_eq!(kept(&apply(&snaps, &daily(2), now(), &UTC)), [2, 1]);
    // The input order does not matter.
    let rev: Vec<_> = snaps.iter().rev().cloned().collect();
    assert_eq!(
        apply(&rev, &daily(1), now(), &UTC),
        apply(&snaps, &daily(1), now(), &UTC)
    );
    // A tie in the middle of a day: only the first of the two takes the day.
    let snaps = vec![
        snap(7, "2026-01-01T01:00"),
        snap(5, t),
        snap(6, t),
        snap(8, "2026-01-02T00:00"),
    ];
    assert_eq!(kept(&apply(&snaps, &daily(2), now(), &UTC)), [8, 6]);
    assert_eq!(kept(&apply(&snaps, &daily(3), now(), &UTC)), [8, 6, 7]);
    assert_eq!(
        kept(&apply(
            &snaps,
            &Policy {
                keep_last: Some(3),
                ..Default::default()
            },
            now(),
            &UTC
        )),
        [8, 6, 5]
    );
}

#[test]
fn buckets_are_counted_in_the_given_time_zone() {
    let snaps = vec![
        snap(1, "2025-12-20T12:00"),
        snap(2, "2026-01-01T20:00"),
        snap(3, "2026-01-02T03:00"),
        snap(4, "2026-01-02T10:00"),
    ];
    let policy = Policy {
        keep_daily: Some(5),
        ..Default::default()
    };
    assert_eq!(kept(&apply(&snaps, &policy, now(), &UTC)), [4, 2, 1]);
    // At UTC-5, 3 is on 1 January at 22:00, and 2 at 15:00 the same day.
    let minus5 = TimeZone::fixed(jiff::tz::offset(-5));
    assert_eq!(kept(&apply(&snaps, &policy, now(), &minus5)), [4, 3, 1]);
}

#[test]
fn an_empty_policy_or_a_wiped_group_is_refused_unless_forced() {
    let snaps = small();
    for empty in [
        Policy::default(),
        Policy {
            keep_last: Some(0),
            keep_daily: Some(0),
            keep_within: Some(Within::default()),
            ..Default::default()
        },
    ] {
        assert!(empty.is_empty());
        let e = plan(&snaps, &empty, now(), &UTC, false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.message().contains("empty"), "{e}");
        let forced = plan(&snaps, &empty, now(), &UTC, true).unwrap();
        assert_eq!(forced.kept().count(), 0);
        assert_eq!(forced.removed().count(), 10);
    }
    // A misspelt tag would remove a whole group.
    let mut two_groups = small();
    two_groups.push(Candidate {
        host: "other".into(),
        ..tagged(snap(11, "2026-01-01T00:00"), &["prod"])
    });
    let typo = Policy {
        keep_tags: vec!["prod".into()],
        ..Default::default()
    };
    assert!(plan(&two_groups, &typo, now(), &UTC, false).is_ok());
    let typo = Policy {
        keep_tags: vec!["prdo".into()],
        ..Default::default()
    };
    let e = plan(&two_groups, &typo, now(), &UTC, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.message().contains("host h"), "{e}");
    let forced = plan(&two_groups, &typo, now(), &UTC, true).unwrap();
    assert_eq!(forced.kept().count(), 0);
    // No snapshots: nothing to refuse.
    assert_eq!(
        plan(&[], &typo, now(), &UTC, false).unwrap(),
        Plan::default()
    );
}

#[test]
fn durations_parse_like_restic() {
    let w = |y, m, d, h| Within {
        years: y,
        months: m,
        days: d,
        hours: h,
    };
    for (s, want) in [
        ("1y2m3d4h", w(1, 2, 3, 4)),
        ("30d", w(0, 0, 30, 0)),
        ("12h", w(0, 0, 0, 12)),
        ("2d12h", w(0, 0, 2, 12)),
        ("4h1y", w(1, 0, 0, 4)),
        ("0d", w(0, 0, 0, 0)),
    ] {
        assert_eq!(Within::parse(s).unwrap(), want, "{s}");
    }
    assert_eq!(w(1, 0, 3, 0).to_string(), "1y3d");
    assert_eq!(w(0, 0, 0, 0).to_string(), "0h");
    for bad in [
        "",
        "3x",
        "d",
        "12",
        "1y1y",
        "-1d",
        "1.5d",
        "1 d",
        "99999999999d",
        "1dd",
        "7D",
    ] {
        let e = Within::parse(bad).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
    }
}

// ---------------------------------------------------------------------------------------
// Two years of snapshots every six hours, with gaps.

/// 2024-01-01T00:00 to 2025-12-31T18:00 UTC every 6 hours (731 days, 2924 slots), less
/// 10-19 March 2024 (40), all of June 2025 (120) and 2025-12-30T06:00 (1): 2763 snapshots,
/// numbered by time.
fn series() -> Vec<Candidate> {
    let start = ts("2024-01-01T00:00");
    let six_h = 6 * 3_600_000_000_000i64;
    let gaps = [
        (ts("2024-03-10T00:00"), ts("2024-03-20T00:00")),
        (ts("2025-06-01T00:00"), ts("2025-07-01T00:00")),
        (ts("2025-12-30T06:00"), ts("2025-12-30T06:01")),
    ];
    (0..2924)
        .map(|i| start + i * six_h)
        .filter(|t| !gaps.iter().any(|(a, b)| (*a..*b).contains(t)))
        .enumerate()
        .map(|(n, t)| snap_at(n as u32 + 1, t))
        .collect()
}

fn kept_times(plan: &Plan) -> Vec<i64> {
    plan.kept().map(|d| d.time_ns).collect()
}

#[test]
fn two_years_exact_counts() {
    let s = series();
    assert_eq!(s.len(), 2763);
    let run = |p: Policy| apply(&s, &p, now(), &UTC);
    let p = Policy::default;

    // The last seven days, each at 18:00 (30 December lost only its 06:00).
    let plan = run(Policy {
        keep_daily: Some(7),
        ..p()
    });
    let want: Vec<i64> = (25..=31)
        .rev()
        .map(|d| ts(&format!("2025-12-{d}T18:00")))
        .collect();
    assert_eq!(kept_times(&plan), want);

    // 23 months present (June 2025 is missing), each month's last day at 18:00, and the
    // oldest snapshot because an unlimited count never runs out.
    let plan = run(Policy {
        keep_monthly: Some(UNLIMITED),
        ..p()
    });
    assert_eq!(plan.kept().count(), 24);
    assert_eq!(
        kept_times(&plan)[..2],
        [ts("2025-12-31T18:00"), ts("2025-11-30T18:00")]
    );
    assert!(!kept_times(&plan).contains(&ts("2025-06-30T18:00")));
    assert!(kept_times(&plan).contains(&ts("2025-05-31T18:00")));
    assert_eq!(
        kept_times(&plan)[22..],
        [ts("2024-01-31T18:00"), ts("2024-01-01T00:00")]
    );

    // Two years present; three counts left over, so the oldest too.
    let plan = run(Policy {
        keep_yearly: Some(5),
        ..p()
    });
    assert_eq!(
        kept_times(&plan),
        [
            ts("2025-12-31T18:00"),
            ts("2024-12-31T18:00"),
            ts("2024-01-01T00:00")
        ]
    );

    // 52 ISO weeks back from 2026-W01 (29-31 Dec 2025): 2025-W52..W27 (26), 2025-W22..W01
    // (22; June's W23-W26 are empty) and 2024-W52..W50 (3). The oldest is Sunday 15 Dec
    // 2024 at 18:00, every other kept one but the first a Sunday 18:00.
    let plan = run(Policy {
        keep_weekly: Some(52),
        ..p()
    });
    let times = kept_times(&plan);
    assert_eq!(times.len(), 52);
    assert_eq!(times[0], ts("2025-12-31T18:00"));
    assert_eq!(times[51], ts("2024-12-15T18:00"));
    // 2025-W22 ends on 1 June, lost with the rest of June: its newest is Saturday 31 May.
    assert!(times.contains(&ts("2025-05-31T18:00")));
    for t in times[1..].iter().filter(|t| **t != ts("2025-05-31T18:00")) {
        let dt = UTC.to_datetime(Timestamp::from_nanosecond(*t as i128).unwrap());
        assert_eq!(
            (dt.weekday(), dt.hour()),
            (jiff::civil::Weekday::Sunday, 18)
        );
    }

    // Every snapshot is in its own hour: hourly N is last N.
    let hourly = run(Policy {
        keep_hourly: Some(10),
        ..p()
    });
    let last = run(Policy {
        keep_last: Some(10),
        ..p()
    });
    assert_eq!(kept(&hourly), kept(&last));
    assert_eq!(kept(&last), (2754..=2763).rev().collect::<Vec<u32>>());

    // 31 Dec minus one month is "31 Nov" = 1 Dec 18:00 (excluded): 2-31 Dec is 30 days of
    // 4, less the missing slot.
    let plan = run(Policy {
        keep_within: within("1m"),
        ..p()
    });
    assert_eq!(plan.kept().count(), 119);
    assert_eq!(*kept_times(&plan).last().unwrap(), ts("2025-12-02T00:00"));
    // 2d12h: after 29 Dec 06:00: 29th 12:00 and 18:00, three on the 30th, four on the 31st.
    let plan = run(Policy {
        keep_within: within("2d12h"),
        ..p()
    });
    assert_eq!(plan.kept().count(), 9);

    // A realistic policy: 7 daily + 4 weekly + 12 monthly + 3 yearly. Daily: 25-31 Dec.
    // Weekly: 2026-W01 and 2025-W52 are among the dailies (31st, Sunday 28th); W51 and W50
    // (Sundays 21 and 14 Dec) are new. Monthly: Dec 2025 (a daily), Nov..Jul and May..Jan
    // (10 new), then 31 Dec 2024 as the twelfth. Yearly: 31 Dec 2025 and 2024 (both kept
    // already), then the oldest snapshot because a count is left.
    let plan = run(Policy {
        keep_daily: Some(7),
        keep_weekly: Some(4),
        keep_monthly: Some(12),
        keep_yearly: Some(3),
        ..p()
    });
    assert_eq!(plan.kept().count(), 7 + 2 + 10 + 1 + 1);
    assert_eq!(reasons(&plan, 1), ["yearly"]);
    let dec2024 = plan
        .decisions()
        .find(|d| d.time_ns == ts("2024-12-31T18:00"))
        .unwrap();
    assert_eq!(dec2024.reasons, ["monthly", "yearly"]);
}

/// The rules stated as sets, independently of `apply`'s single pass: per counted rule, the
/// newest snapshot of each of the N newest buckets, plus the oldest snapshot when there are
/// fewer than N buckets; the tags; everything after `newest - within` (days and hours only,
/// exact in UTC). Bucket keys come from jiff's formatting, not from `Rule::bucket`.
fn reference(
    snaps: &[Candidate],
    policy: &Policy,
    within_hours: Option<i64>,
) -> BTreeSet<SnapshotId> {
    let mut groups: BTreeMap<(String, Vec<Vec<u8>>), Vec<&Candidate>> = BTreeMap::new();
    for c in snaps {
        let mut p = c.paths.clone();
        p.sort();
        groups.entry((c.host.clone(), p)).or_default().push(c);
    }
    let mut keep = BTreeSet::new();
    for members in groups.values() {
        let mut m = members.clone();
        m.sort_by_key(|c| std::cmp::Reverse((c.time_ns, c.id)));
        let key = |fmt: &str, c: &Candidate| -> String {
            let z = Timestamp::from_nanosecond(c.time_ns as i128)
                .unwrap()
                .to_zoned(TimeZone::UTC);
            match fmt {
                "last" => c.id.to_hex(),
                "week" => {
                    let w = z.date().iso_week_date();
                    format!("{}-W{}", w.year(), w.week())
                }
                f => z.strftime(f).to_string(),
            }
        };
        for (n, fmt) in [
            (policy.keep_last, "last"),
            (policy.keep_hourly, "%Y-%m-%d %H"),
            (policy.keep_daily, "%Y-%m-%d"),
            (policy.keep_weekly, "week"),
            (policy.keep_monthly, "%Y-%m"),
            (policy.keep_yearly, "%Y"),
        ] {
            let n = n.unwrap_or(0) as usize;
            if n == 0 {
                continue;
            }
            let mut buckets: Vec<String> = Vec::new();
            let mut newest_of: BTreeMap<String, SnapshotId> = BTreeMap::new();
            for c in &m {
                let k = key(fmt, c);
                if !newest_of.contains_key(&k) {
                    newest_of.insert(k.clone(), c.id);
                    buckets.push(k);
                }
            }
            for k in buckets.iter().take(n) {
                keep.insert(newest_of[k]);
            }
            if buckets.len() < n {
                keep.insert(m.last().unwrap().id);
            }
        }
        for c in &m {
            if c.tags.iter().any(|t| policy.keep_tags.contains(t)) {
                keep.insert(c.id);
            }
        }
        if let Some(h) = within_hours {
            let cutoff = m[0].time_ns - h * 3_600_000_000_000;
            keep.extend(m.iter().filter(|c| c.time_ns > cutoff).map(|c| c.id));
        }
    }
    keep
}

#[test]
fn two_years_agree_with_the_set_formulation() {
    // Two hosts: the full series on one, a thinned copy (about one in three, tagged now and
    // then) on the other, with a few exact ties.
    let mut snaps = series();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut extra = Vec::new();
    for c in &snaps {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 3 == 0 {
            let mut d = c.clone();
            d.id = id(100_000 + num(&c.id));
            d.host = "other".into();
            if x % 7 == 0 {
                d.tags = vec!["monthly-export".into()];
            }
            if x % 11 == 0 {
                let mut twin = d.clone();
                twin.id = id(200_000 + num(&c.id));
                extra.push(twin);
            }
            extra.push(d);
        }
    }
    snaps.extend(extra);
    let counts = [None, Some(1), Some(3), Some(13), Some(60), Some(UNLIMITED)];
    let mut checked = 0;
    for (i, last) in counts.iter().enumerate() {
        for (j, daily) in counts.iter().enumerate() {
            // A spread of combinations, not all 6^6.
            let weekly = counts[(i + j) % 6];
            let monthly = counts[(i * 2 + j) % 6];
            let yearly = counts[(i + j * 5) % 6];
            let hourly = counts[(i * 3 + j * 2) % 6];
            let (within, within_hours) = match (i + j) % 3 {
                0 => (None, None),
                1 => (Some(Within::parse("20d").unwrap()), Some(20 * 24)),
                _ => (Some(Within::parse("3d7h").unwrap()), Some(3 * 24 + 7)),
            };
            let keep_tags = if j % 2 == 0 {
                vec!["monthly-export".to_string()]
            } else {
                vec![]
            };
            let policy = Policy {
                keep_last: *last,
                keep_hourly: hourly,
                keep_daily: *daily,
                keep_weekly: weekly,
                keep_monthly: monthly,
                keep_yearly: yearly,
                keep_within: within,
                keep_tags,
            };
            let counted = [last, &hourly, daily, &weekly, &monthly, &yearly]
                .iter()
                .any(|c| c.unwrap_or(0) > 0)
                || within.is_some();
            let plan = apply(&snaps, &policy, now(), &UTC);
            let got: BTreeSet<SnapshotId> = plan.kept().map(|d| d.id).collect();
            assert_eq!(got, reference(&snaps, &policy, within_hours), "{policy:?}");
            assert_eq!(plan.decisions().count(), snaps.len());
            for g in &plan.groups {
                assert!(g.snapshots.windows(2).all(|w| w[0].time_ns >= w[1].time_ns));
                if counted {
                    // Any counted rule or `within` keeps each group's newest snapshot.
                    assert!(g.snapshots[0].keep, "{policy:?}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 36);
}
