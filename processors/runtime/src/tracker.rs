//! Per-partition offset tracking: records finish out of order, offsets are stored in
//! order.
//!
//! Sans-io: the processing loop asks [`Trackers::complete`] which offset to store and
//! stores it itself.

use std::collections::{BTreeSet, HashMap};

/// A partition's key.
pub(crate) type PartitionKey = (String, i32);

/// Records received from one partition during one assignment.
#[derive(Debug)]
struct PartitionTracker {
    /// Identifies this assignment; completions from an older one are ignored.
    generation: u64,
    /// Received but not finished.
    pending: BTreeSet<i64>,
    /// Highest finished offset.
    max_done: Option<i64>,
    /// Last position handed out for storing, initially the first offset received
    /// (where consumption started: storing it would change nothing).
    stored: i64,
}

impl PartitionTracker {
    /// The position to store now: below it every received record is finished.
    fn position(&self) -> Option<i64> {
        let max_done = self.max_done?;
        Some(self.pending.first().copied().unwrap_or(max_done + 1))
    }
}

/// The trackers of every partition currently assigned.
#[derive(Debug, Default)]
pub(crate) struct Trackers {
    partitions: HashMap<PartitionKey, PartitionTracker>,
    next_generation: u64,
}

/// Which assignment a received record belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Generation(u64);

impl Trackers {
    /// Notes that `offset` was received; returns the assignment generation to hand back
    /// to [`Trackers::complete`].
    pub(crate) fn begin(&mut self, topic: &str, partition: i32, offset: i64) -> Generation {
        let key = (topic.to_owned(), partition);
        let next = &mut self.next_generation;
        let tracker = self.partitions.entry(key).or_insert_with(|| {
            *next += 1;
            PartitionTracker {
                generation: *next,
                pending: BTreeSet::new(),
                max_done: None,
                stored: offset,
            }
        });
        tracker.pending.insert(offset);
        Generation(tracker.generation)
    }

    /// Notes that `offset` is finished (everything it produced is acknowledged). Returns
    /// the offset to store (next offset to consume) if the contiguous prefix grew, or
    /// `None` if nothing new can be stored or the completion is stale (the partition was
    /// revoked, and perhaps assigned again, since the record was received).
    pub(crate) fn complete(
        &mut self,
        generation: Generation,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Option<i64> {
        let tracker = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        if tracker.generation != generation.0 || !tracker.pending.remove(&offset) {
            return None;
        }
        tracker.max_done = Some(tracker.max_done.map_or(offset, |m| m.max(offset)));
        let position = tracker.position()?;
        if position <= tracker.stored {
            return None;
        }
        tracker.stored = position;
        Some(position)
    }

    /// Forgets a partition (revoked, or newly assigned): its pending completions become
    /// stale.
    pub(crate) fn reset(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&(topic.to_owned(), partition));
    }

    /// Forgets every partition: all pending completions become stale. Used after an
    /// aborted transaction, before the consumer is rewound to the committed offsets.
    pub(crate) fn reset_all(&mut self) {
        self.partitions.clear();
    }

    /// For each partition where something finished in this assignment, the position
    /// last handed out for storing (the next offset to consume): what a transaction
    /// commits with its outputs.
    pub(crate) fn positions(&self) -> Vec<(String, i32, i64)> {
        let mut out: Vec<(String, i32, i64)> = self
            .partitions
            .iter()
            .filter(|(_, t)| t.max_done.is_some())
            .map(|((topic, partition), t)| (topic.clone(), *partition, t.stored))
            .collect();
        out.sort();
        out
    }

    /// Records received and not finished, over all partitions.
    pub(crate) fn pending(&self) -> usize {
        self.partitions.values().map(|t| t.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "t";

    #[test]
    fn positions_list_what_finished_and_reset_all_makes_completions_stale() {
        let mut tr = Trackers::default();
        let g0 = tr.begin(T, 0, 10);
        tr.begin(T, 0, 11);
        let g1 = tr.begin(T, 1, 5);
        assert!(tr.positions().is_empty(), "nothing finished yet");
        assert_eq!(tr.complete(g0, T, 0, 11), None, "10 is still pending");
        assert_eq!(tr.positions(), vec![(T.to_owned(), 0, 10)]);
        assert_eq!(tr.complete(g0, T, 0, 10), Some(12));
        assert_eq!(tr.complete(g1, T, 1, 5), Some(6));
        assert_eq!(
            tr.positions(),
            vec![(T.to_owned(), 0, 12), (T.to_owned(), 1, 6)]
        );
        let g2 = tr.begin(T, 1, 6);
        tr.reset_all();
        assert_eq!(tr.complete(g2, T, 1, 6), None, "stale after reset_all");
        assert!(tr.positions().is_empty());
        assert_eq!(tr.pending(), 0);
    }

    #[test]
    fn in_order_completion_stores_each_next_offset() {
        let mut tr = Trackers::default();
        let g = tr.begin(T, 0, 0);
        tr.begin(T, 0, 1);
        assert_eq!(tr.complete(g, T, 0, 0), Some(1));
        assert_eq!(tr.complete(g, T, 0, 1), Some(2));
        assert_eq!(tr.pending(), 0);
    }

    #[test]
    fn out_of_order_completion_waits_for_the_gap() {
        let mut tr = Trackers::default();
        let g = tr.begin(T, 0, 10);
        for o in 11..15 {
            tr.begin(T, 0, o);
        }
        assert_eq!(tr.complete(g, T, 0, 12), None);
        assert_eq!(tr.complete(g, T, 0, 11), None);
        assert_eq!(tr.complete(g, T, 0, 10), Some(13));
        assert_eq!(tr.complete(g, T, 0, 14), None);
        assert_eq!(tr.complete(g, T, 0, 13), Some(15));
    }

    #[test]
    fn gaps_in_received_offsets_do_not_block() {
        // Compaction or transaction markers: offsets 1 and 2 never arrive.
        let mut tr = Trackers::default();
        let g = tr.begin(T, 0, 0);
        tr.begin(T, 0, 3);
        assert_eq!(tr.complete(g, T, 0, 3), None);
        assert_eq!(tr.complete(g, T, 0, 0), Some(4));
    }

    #[test]
    fn partitions_are_independent() {
        let mut tr = Trackers::default();
        let g0 = tr.begin(T, 0, 5);
        let g1 = tr.begin(T, 1, 7);
        tr.begin(T, 0, 6);
        assert_eq!(tr.complete(g1, T, 1, 7), Some(8));
        assert_eq!(tr.complete(g0, T, 0, 6), None);
        assert_eq!(tr.complete(g0, T, 0, 5), Some(7));
    }

    #[test]
    fn stale_completions_after_a_rebalance_are_ignored() {
        let mut tr = Trackers::default();
        let old = tr.begin(T, 0, 0);
        tr.reset(T, 0);
        assert_eq!(tr.complete(old, T, 0, 0), None);
        // Assigned again: the same offset arrives in a new generation.
        let new = tr.begin(T, 0, 0);
        assert_ne!(old, new);
        assert_eq!(tr.complete(old, T, 0, 0), None);
        assert_eq!(tr.complete(new, T, 0, 0), Some(1));
    }
}
