//! Idempotent producers: producer ids, and per partition the sequence
//! numbers of each producer's recent batches, so a retried batch is
//! acknowledged with its original offset instead of being written twice,
//! and a batch out of order is refused.
//!
//! The rules are Apache Kafka's (`ProducerStateManager`): a batch must carry
//! the producer's current epoch or a newer one; with the current epoch its
//! first sequence must follow the last one appended (wrapping at `i32::MAX`);
//! a batch equal to one of the producer's last five is a duplicate. A producer
//! this partition has no state for (new, or state lost in a restart) may
//! start at any sequence.
//!
//! The state lives in memory and is rebuilt from the partition's recent
//! batches the first time an idempotent batch arrives after a restart (their
//! headers carry producer id, epoch and sequences), so a batch retried across
//! a restart is still recognized, as long as it is among the last
//! [`REBUILD_OFFSETS`] offsets of its partition.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::errors;

/// How many recent batches per producer are remembered for deduplication
/// (Kafka's `max.in.flight.requests.per.connection` limit for idempotence).
const RECENT_BATCHES: usize = 5;

/// How far back (in offsets) the state is rebuilt after a restart. The
/// batches a producer retries across a restart are the last it had in flight
/// when the broker stopped, so they sit at the partition's end; this bounds
/// the one read (headers only are looked at) to a few MiB per partition.
pub(crate) const REBUILD_OFFSETS: u64 = 20_000;

/// The producer fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecentBatch {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
}

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    recent: VecDeque<RecentBatch>,
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    Append,
    /// Already appended at this offset: acknowledge again, write nothing.
    Duplicate {
        base_offset: i64,
    },
    /// Refuse with this Kafka error code.
    Refuse(i16),
}

/// One partition's producers.
#[derive(Debug, Default)]
pub(crate) struct PartitionProducers {
    producers: HashMap<i64, ProducerEntry>,
    /// Whether the state was rebuilt from the log since this process started.
    pub loaded: bool,
    /// The partition's leader epoch when it was: a node that led, then
    /// followed (taking batches this state never saw), then leads again
    /// must rebuild it.
    pub loaded_epoch: Option<i32>,
}

impl PartitionProducers {
    /// What the state knows of one producer, for logs.
    pub fn describe(&self, producer_id: i64) -> String {
        format!("{:?}", self.producers.get(&producer_id))
    }

    /// Whether the state is current for `partition` as it is now.
    pub fn is_current(&self, partition: &strata_log::Partition) -> bool {
        self.loaded && self.loaded_epoch == partition.last_epoch()
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    next == last.wrapping_add(1) || (last == i32::MAX && next == 0)
}

impl PartitionProducers {
    pub fn check(&self, batch: BatchProducer) -> SequenceCheck {
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return SequenceCheck::Append;
        };
        if batch.epoch < entry.epoch {
            return SequenceCheck::Refuse(errors::INVALID_PRODUCER_EPOCH);
        }
        if batch.epoch > entry.epoch {
            // A bumped epoch restarts the sequence.
            return if batch.first_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Refuse(errors::OUT_OF_ORDER_SEQUENCE_NUMBER)
            };
        }
        if let Some(d) = entry.recent.iter().find(|r| {
            r.first_sequence == batch.first_sequence && r.last_sequence == batch.last_sequence
        }) {
            return SequenceCheck::Duplicate {
                base_offset: d.base_offset,
            };
        }
        match entry.recent.back() {
            Some(last) if !in_sequence(last.last_sequence, batch.first_sequence) => {
                SequenceCheck::Refuse(errors::OUT_OF_ORDER_SEQUENCE_NUMBER)
            }
            _ => SequenceCheck::Append,
        }
    }

    /// Rebuilds the state from the partition's recent batches (headers only):
    /// reads from [`REBUILD_OFFSETS`] before the end up to the end.
    pub async fn load(
        &mut self,
        partition: &strata_log::Partition,
    ) -> Result<(), strata_log::LogError> {
        self.producers.clear();
        let offsets = partition.offsets();
        let mut next = offsets
            .end
            .saturating_sub(REBUILD_OFFSETS)
            .max(offsets.local_start);
        while next < offsets.end {
            let read = partition.read(next, 1 << 20).await?;
            let mut advanced = false;
            for chunk in &read.chunks {
                for (header, _) in strata_log::batch::batches(chunk).flatten() {
                    if header.producer_id >= 0 {
                        self.record(
                            BatchProducer {
                                producer_id: header.producer_id,
                                epoch: header.producer_epoch,
                                first_sequence: header.base_sequence,
                                last_sequence: header
                                    .base_sequence
                                    .wrapping_add(header.last_offset_delta),
                            },
                            header.base_offset,
                        );
                    }
                }
            }
            if read.next_offset > next {
                next = read.next_offset;
                advanced = true;
            }
            if !advanced {
                break;
            }
        }
        self.loaded = true;
        self.loaded_epoch = partition.last_epoch();
        tracing::debug!(
            partition = partition.key(),
            from = offsets.end.saturating_sub(REBUILD_OFFSETS).max(offsets.local_start),
            to = next,
            end = offsets.end,
            epoch = ?self.loaded_epoch,
            producers = self.producers.len(),
            "idempotent producer state rebuilt from the log"
        );
        Ok(())
    }

    /// Records a batch appended at `base_offset`.
    pub fn record(&mut self, batch: BatchProducer, base_offset: i64) {
        let entry = self.producers.entry(batch.producer_id).or_default();
        if batch.epoch != entry.epoch {
            entry.epoch = batch.epoch;
            entry.recent.clear();
        }
        if entry.recent.len() == RECENT_BATCHES {
            entry.recent.pop_front();
        }
        entry.recent.push_back(RecentBatch {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            base_offset,
        });
    }
}

/// Every partition's producer state (ids come from the metadata group).
pub(crate) struct Producers {
    /// Per log partition key. The async mutex is held from the sequence check
    /// until the append is acknowledged, so appends of idempotent batches to
    /// one partition are checked and recorded strictly in turn.
    partitions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<PartitionProducers>>>>,
}

impl Producers {
    pub fn new() -> Producers {
        Producers {
            partitions: Mutex::new(HashMap::new()),
        }
    }

    pub fn partition(&self, key: &str) -> Arc<tokio::sync::Mutex<PartitionProducers>> {
        self.partitions
            .lock()
            .entry(key.to_owned())
            .or_default()
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, first: i32, last: i32) -> BatchProducer {
        BatchProducer {
            producer_id: 7,
            epoch,
            first_sequence: first,
            last_sequence: last,
        }
    }

    #[test]
    fn sequences_duplicates_and_fencing() {
        let mut p = PartitionProducers::default();
        assert_eq!(p.check(batch(0, 0, 4)), SequenceCheck::Append);
        p.record(batch(0, 0, 4), 100);
        assert_eq!(p.check(batch(0, 5, 9)), SequenceCheck::Append);
        p.record(batch(0, 5, 9), 105);
        // A retry of either recent batch is a duplicate with its offset.
        assert_eq!(
            p.check(batch(0, 0, 4)),
            SequenceCheck::Duplicate { base_offset: 100 }
        );
        assert_eq!(
            p.check(batch(0, 5, 9)),
            SequenceCheck::Duplicate { base_offset: 105 }
        );
        // A gap is out of order.
        assert_eq!(
            p.check(batch(0, 11, 12)),
            SequenceCheck::Refuse(errors::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        // An older epoch is fenced; a newer one must restart at 0.
        assert_eq!(
            p.check(batch(-1, 10, 10)),
            SequenceCheck::Refuse(errors::INVALID_PRODUCER_EPOCH)
        );
        assert_eq!(
            p.check(batch(1, 3, 3)),
            SequenceCheck::Refuse(errors::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(p.check(batch(1, 0, 0)), SequenceCheck::Append);
        p.record(batch(1, 0, 0), 110);
        assert_eq!(
            p.check(batch(0, 10, 10)),
            SequenceCheck::Refuse(errors::INVALID_PRODUCER_EPOCH)
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut p = PartitionProducers::default();
        for i in 0..7 {
            p.record(batch(0, i, i), i64::from(i) * 10);
        }
        assert_eq!(
            p.check(batch(0, 2, 2)),
            SequenceCheck::Duplicate { base_offset: 20 }
        );
        // Batch 1 has been forgotten: not a duplicate, and out of order.
        assert_eq!(
            p.check(batch(0, 1, 1)),
            SequenceCheck::Refuse(errors::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut p = PartitionProducers::default();
        p.record(batch(0, i32::MAX - 1, i32::MAX), 0);
        assert_eq!(p.check(batch(0, 0, 3)), SequenceCheck::Append);
    }
}
