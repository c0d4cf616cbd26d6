//! Table housekeeping. A hash table or heap grows by doubling and never shrinks by
//! itself, so a burst (32 s of transactions at the peak rate, RFC 6026 Timer L/M) would
//! keep its slots for the life of the process: at 10,000 held calls after a 1,000 calls/s
//! ramp, the empty transaction tables held about 1 KB per call. These give the memory
//! back once a table has emptied out.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

/// Below this many slots a table is left alone.
const MIN_SLOTS: usize = 1024;

/// Whether a table of `capacity` slots holding `len` entries should shrink: fewer than an
/// eighth used. It then shrinks to twice its entries, so the rehash is paid once per
/// eightfold drop, never on a table that is merely breathing.
fn sparse(len: usize, capacity: usize) -> bool {
    capacity > MIN_SLOTS && len < capacity / 8
}

/// Shrinks `map` when it is [`sparse`].
pub fn shrink_map<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if sparse(map.len(), map.capacity()) {
        map.shrink_to(map.len() * 2);
    }
}

/// Shrinks `set` when it is [`sparse`].
pub fn shrink_set<K: Eq + Hash, S: BuildHasher>(set: &mut HashSet<K, S>) {
    if sparse(set.len(), set.capacity()) {
        set.shrink_to(set.len() * 2);
    }
}

/// Shrinks `heap` when it is [`sparse`].
pub fn shrink_heap<T: Ord>(heap: &mut BinaryHeap<T>) {
    if sparse(heap.len(), heap.capacity()) {
        heap.shrink_to(heap.len() * 2);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_emptied_out_gives_its_slots_back() {
        let mut map: HashMap<u32, u64> = HashMap::new();
        map.extend((0..100_000).map(|i| (i, 0)));
        let full = map.capacity();
        assert!(full >= 100_000);
        map.retain(|k, _| *k < 20_000);
        let fifth = map.capacity();
        shrink_map(&mut map);
        assert_eq!(map.capacity(), fifth, "a fifth used: left alone");
        map.retain(|k, _| *k < 1_000);
        shrink_map(&mut map);
        assert!(
            map.capacity() >= 2_000 && map.capacity() < full / 16,
            "{}",
            map.capacity()
        );
        assert_eq!(map.len(), 1_000);
        assert!((0..1_000).all(|k| map.contains_key(&k)));

        let mut heap: BinaryHeap<u32> = (0..100_000).collect();
        while heap.len() > 10 {
            heap.pop();
        }
        shrink_heap(&mut heap);
        assert!(heap.capacity() < 1_000, "{}", heap.capacity());
        assert_eq!(heap.pop(), Some(9));

        let mut small: HashSet<u32> = (0..500).collect();
        small.clear();
        let before = small.capacity();
        shrink_set(&mut small);
        assert_eq!(small.capacity(), before, "small tables are left alone");
    }
}
