//! A random share of a repository's objects, for checks that read only part of the data
//! (`check --read-data-subset`, a job's `check.read_data_subset`). Each run picks afresh, so
//! over many runs every object is read.

/// `share` (0 to 1) of `items`, chosen at random: the share rounded up, so any share above
/// zero reads at least one item. Rounding down read nothing of a small repository (10% of two
/// packs) and still said "no problems found". `key` gives each item's first hash bytes, which
/// are uniform; mixed with a salt drawn per call they order the items at random.
pub fn random_share<T>(items: Vec<T>, share: f64, key: impl Fn(&T) -> [u8; 4]) -> Vec<T> {
    let share = share.clamp(0.0, 1.0);
    if share >= 1.0 {
        return items;
    }
    let salt = u32::from_le_bytes(crate::crypto::random_bytes());
    // A hair below, so that 7% of 100 is 7 and not 8 by floating-point noise.
    let count = ((share * items.len() as f64) - 1e-9).ceil().max(0.0) as usize;
    let mut keyed: Vec<(u32, T)> = items
        .into_iter()
        .map(|i| (u32::from_le_bytes(key(&i)) ^ salt, i))
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    keyed.truncate(count);
    keyed.into_iter().map(|(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: u32) -> Vec<u32> {
        (0..n).map(|i| i.wrapping_mul(0x9E37_79B9)).collect()
    }

    #[test]
    fn any_share_above_zero_reads_at_least_one() {
        assert_eq!(random_share(items(2), 0.10, |i| i.to_le_bytes()).len(), 1);
        assert_eq!(random_share(items(1), 0.0001, |i| i.to_le_bytes()).len(), 1);
        assert!(random_share(items(2), 0.0, |i| i.to_le_bytes()).is_empty());
        assert!(random_share(Vec::<u32>::new(), 0.5, |i| i.to_le_bytes()).is_empty());
    }

    #[test]
    fn the_share_is_rounded_up_and_all_is_all() {
        assert_eq!(random_share(items(100), 0.07, |i| i.to_le_bytes()).len(), 7);
        assert_eq!(random_share(items(10), 0.15, |i| i.to_le_bytes()).len(), 2);
        assert_eq!(random_share(items(10), 1.0, |i| i.to_le_bytes()), items(10));
        let some = random_share(items(50), 0.5, |i| i.to_le_bytes());
        assert_eq!(some.len(), 25);
        let mut unique = some.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 25, "no item twice");
    }
}
