//! The page checksum against real pages, copied from a PostgreSQL 15 cluster initialised
//! with `--data-checksums` (pgbench scale 50, stopped cleanly, `pg_checksums --check`
//! clean): `testdata/pages.bin` holds four 8 KiB pages, from these files and blocks.

use super::*;

const PAGE: usize = 8192;
/// (what the page is, its block number in its relation, its stored checksum).
const PAGES: [(&str, u32, u16); 4] = [
    ("pgbench_accounts heap, base/5/16396", 1000, 0x5f9d),
    ("pgbench_accounts_pkey btree, base/5/16404", 500, 0xb11a),
    (
        "pgbench_accounts free space map, base/5/16396_fsm",
        0,
        0xaffc,
    ),
    ("pg_database heap, global/1262", 0, 0xdb50),
];

fn pages() -> Vec<Vec<u8>> {
    let all = include_bytes!("testdata/pages.bin");
    assert_eq!(all.len(), PAGE * PAGES.len());
    all.chunks(PAGE).map(|p| p.to_vec()).collect()
}

#[test]
fn real_pages_verify() {
    for (page, (what, blkno, stored)) in pages().iter().zip(PAGES) {
        assert_eq!(stored_checksum(page), stored, "{what}");
        assert_eq!(checksum(page, blkno), stored, "{what}");
        assert_eq!(verify(page, blkno, Lsn(u64::MAX)), Verdict::Good, "{what}");
    }
}

#[test]
fn a_flipped_byte_anywhere_fails() {
    for (page, (what, blkno, _)) in pages().iter().zip(PAGES) {
        // The header (but not pd_lsn, which would only make the page look recent), the
        // line pointers, and the tuples at the end.
        for at in [9, 12, 20, 30, 4000, PAGE - 1] {
            let mut bad = page.clone();
            bad[at] ^= 0x01;
            assert!(
                matches!(verify(&bad, blkno, Lsn(u64::MAX)), Verdict::Bad { .. }),
                "{what}: byte {at} flipped"
            );
        }
    }
}

#[test]
fn the_block_number_is_part_of_the_sum() {
    // A page copied to another place in its relation (or another segment) does not verify.
    let page = &pages()[0];
    assert_ne!(checksum(page, 1001), checksum(page, 1000));
    assert_ne!(checksum(page, 1000 + 131_072), checksum(page, 1000));
}

#[test]
fn new_and_recent_pages_are_not_checked() {
    let zero = vec![0u8; PAGE];
    assert_eq!(verify(&zero, 7, Lsn(1)), Verdict::Empty);
    // A "new" page (pd_upper 0) holding data is what PostgreSQL itself refuses.
    let mut junk = zero.clone();
    junk[100] = 1;
    assert!(matches!(verify(&junk, 7, Lsn(1)), Verdict::Bad { .. }));
    // Written since the backup started: even a damaged one is left to WAL replay.
    let mut page = pages()[0].clone();
    let at = lsn(&page);
    page[5000] ^= 0xFF;
    assert_eq!(verify(&page, 1000, at), Verdict::Recent);
    assert!(matches!(
        verify(&page, 1000, Lsn(at.0 + 1)),
        Verdict::Bad { .. }
    ));
}

#[test]
fn lsn_text() {
    assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
    assert_eq!("16/B374D848".parse::<Lsn>(), Ok(Lsn(0x16_B374_D848)));
    assert_eq!("0/2000028".parse::<Lsn>(), Ok(Lsn(0x200_0028)));
    assert!("0x16".parse::<Lsn>().is_err());
    assert!("1/2/3".parse::<Lsn>().is_err());
    assert_eq!(lsn(&pages()[3]), Lsn(0x17412d8));
}
