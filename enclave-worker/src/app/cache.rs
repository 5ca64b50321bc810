//! A small bounded least-recently-used map, bounded by entry count and by total weight.
//!
//! Used for the duplicate-request cache (weight = sealed result bytes) and the unwrapped
//! DEK cache (weight 1). Evicted values are dropped at once, so values that zeroize on
//! drop (`Dek`) are wiped when they leave the cache.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// An LRU map with lazy deletion: every touch appends `(key, generation)` to the queue,
/// and stale queue entries are skipped on eviction and compacted away when the queue
/// grows past twice the live entries.
pub(crate) struct BoundedCache<K, V> {
    entries: HashMap<K, Entry<V>>,
    queue: VecDeque<(K, u64)>,
    next_generation: u64,
    max_entries: usize,
    max_weight: usize,
    weight: usize,
}

struct Entry<V> {
    value: V,
    generation: u64,
    weight: usize,
}

impl<K: Eq + Hash + Clone, V> BoundedCache<K, V> {
    /// A cache holding at most `max_entries` values of total weight at most `max_weight`.
    /// A zero bound disables the cache (nothing is kept).
    pub(crate) fn new(max_entries: usize, max_weight: usize) -> Self {
        Self {
            entries: HashMap::new(),
            queue: VecDeque::new(),
            next_generation: 0,
            max_entries,
            max_weight,
            weight: 0,
        }
    }

    /// The value for `key`, marking it most recently used.
    pub(crate) fn get(&mut self, key: &K) -> Option<&V> {
        let generation = self.bump();
        let entry = self.entries.get_mut(key)?;
        entry.generation = generation;
        self.queue.push_back((key.clone(), generation));
        self.compact();
        self.entries.get(key).map(|e| &e.value)
    }

    /// Inserts `value` with `weight`, evicting least recently used values until both
    /// bounds hold. A value heavier than the whole cache is not kept.
    pub(crate) fn insert(&mut self, key: K, value: V, weight: usize) {
        if let Some(old) = self.entries.remove(&key) {
            self.weight -= old.weight;
        }
        if self.max_entries == 0 || weight > self.max_weight {
            return;
        }
        let generation = self.bump();
        self.weight += weight;
        self.entries.insert(
            key.clone(),
            Entry {
                value,
                generation,
                weight,
            },
        );
        self.queue.push_back((key, generation));
        while self.entries.len() > self.max_entries || self.weight > self.max_weight {
            if !self.evict_one() {
                break;
            }
        }
        self.compact();
    }

    /// Number of values held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Total weight held.
    #[cfg(test)]
    pub(crate) fn weight(&self) -> usize {
        self.weight
    }

    fn bump(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Evicts the least recently used live entry; false when there is none.
    fn evict_one(&mut self) -> bool {
        while let Some((key, generation)) = self.queue.pop_front() {
            let live = self
                .entries
                .get(&key)
                .is_some_and(|e| e.generation == generation);
            if live {
                if let Some(old) = self.entries.remove(&key) {
                    self.weight -= old.weight;
                }
                return true;
            }
        }
        false
    }

    /// Drops stale queue entries once they outnumber the live ones.
    fn compact(&mut self) {
        if self.queue.len() > 2 * self.entries.len() + 16 {
            let entries = &self.entries;
            self.queue
                .retain(|(k, g)| entries.get(k).is_some_and(|e| e.generation == *g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_by_count() {
        let mut c = BoundedCache::new(2, usize::MAX);
        c.insert(1, "a", 1);
        c.insert(2, "b", 1);
        assert_eq!(c.get(&1), Some(&"a"));
        c.insert(3, "c", 1);
        assert_eq!(c.get(&2), None);
        assert_eq!(c.get(&1), Some(&"a"));
        assert_eq!(c.get(&3), Some(&"c"));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn evicts_by_weight_and_refuses_oversized_values() {
        let mut c = BoundedCache::new(100, 10);
        c.insert(1, (), 6);
        c.insert(2, (), 6);
        assert_eq!(c.len(), 1);
        assert_eq!(c.weight(), 6);
        assert!(c.get(&2).is_some());
        c.insert(3, (), 11);
        assert!(c.get(&3).is_none());
        assert_eq!(c.weight(), 6);
        c.insert(2, (), 2);
        assert_eq!(c.weight(), 2);
    }

    #[test]
    fn many_hits_keep_the_queue_bounded() {
        let mut c = BoundedCache::new(4, usize::MAX);
        for k in 0..4 {
            c.insert(k, k, 1);
        }
        for _ in 0..10_000 {
            assert!(c.get(&0).is_some());
        }
        assert!(c.queue.len() <= 2 * c.len() + 17);
        let mut zero = BoundedCache::new(0, 0);
        zero.insert(1, 1, 0);
        assert_eq!(zero.len(), 0);
    }
}
