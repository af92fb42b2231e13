//! The leader's side: answering followers' fetches, counting what they hold,
//! moving the high watermark.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::debug;

use super::PartitionLineage;
use super::quorum::{self, FetchDecision};
use super::wire::{FetchOutcome, PartitionData, PartitionFetch, ReplicaData, ReplicaFetch};
use crate::broker::Broker;

/// Most bytes of batches in one answer, all partitions together (one batch
/// per partition more at most: a fetch always makes progress).
pub const MAX_FETCH_BYTES: usize = 8 * 1024 * 1024;

/// Longest a follower's fetch is held while nothing is new.
const MAX_FETCH_WAIT: Duration = Duration::from_secs(1);

/// A follower that matched the leader's end within this long is in sync.
const REPLICA_LAG_MAX: Duration = Duration::from_secs(10);

/// What a follower has confirmed to this leader.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// The follower's durable end, fetched under this leader's epoch.
    matched: Option<u64>,
    /// When it last held everything the leader had (`None`: not since it
    /// became a replica).
    caught_up_at: Option<Instant>,
}

/// A partition this node leads, at one epoch.
pub struct LeaderState {
    pub epoch: u64,
    /// The leader's end offset when it began the epoch.
    pub epoch_start: u64,
    me: u64,
    replicas: Mutex<Vec<u64>>,
    followers: Mutex<HashMap<u64, Progress>>,
    /// The in-sync set last recorded in the metadata.
    reported_isr: Mutex<Vec<u64>>,
    /// Whether a report of the in-sync set is on its way: one at a time, so
    /// an older report delayed in the metadata group cannot land after a
    /// newer one and leave a stale set recorded.
    reporting: AtomicBool,
    /// The topic's `min_insync_replicas`.
    min_insync: AtomicUsize,
    /// The offset below which [`LeaderState::replicas_needed`] replicas
    /// hold everything; acks=all waits on it when that is more than a
    /// majority (the high watermark covers a majority).
    held: watch::Sender<u64>,
}

impl LeaderState {
    pub fn new(epoch: u64, epoch_start: u64, me: u64, replicas: &[u64]) -> LeaderState {
        // Followers start out in sync (they were, with the previous leader,
        // as far as anyone knows); they fall out once they lag.
        let now = Instant::now();
        let followers = replicas
            .iter()
            .filter(|r| **r != me)
            .map(|r| {
                let progress = Progress {
                    matched: None,
                    caught_up_at: Some(now),
                };
                (*r, progress)
            })
            .collect();
        LeaderState {
            epoch,
            epoch_start,
            me,
            replicas: Mutex::new(replicas.to_vec()),
            followers: Mutex::new(followers),
            reported_isr: Mutex::new(vec![me]),
            reporting: AtomicBool::new(false),
            min_insync: AtomicUsize::new(1),
            held: watch::Sender::new(0),
        }
    }

    pub(crate) fn set_min_insync(&self, min_insync: usize) {
        self.min_insync.store(min_insync.max(1), Ordering::Relaxed);
    }

    /// Replicas an acks=all write needs: a majority, or the topic's
    /// `min_insync_replicas` if more.
    pub fn replicas_needed(&self) -> usize {
        quorum::majority(self.replica_count()).max(self.min_insync.load(Ordering::Relaxed))
    }

    pub(crate) fn needs_more_than_a_majority(&self) -> bool {
        self.replicas_needed() > quorum::majority(self.replica_count())
    }

    /// Follows the offset below which the needed replicas hold everything.
    pub(crate) fn watch_held(&self) -> watch::Receiver<u64> {
        self.held.subscribe()
    }

    /// Moves the offset the needed replicas hold, from their confirmed
    /// positions and the leader's end (only forward, and never before the
    /// epoch start: as for the high watermark, only this epoch's own
    /// records count).
    fn update_held(&self, leader_end: u64) {
        let matched: Vec<u64> = self
            .followers
            .lock()
            .values()
            .filter_map(|p| p.matched)
            .collect();
        let Some(held) = quorum::held_by(
            leader_end,
            matched,
            self.replicas_needed(),
            self.epoch_start,
        ) else {
            return;
        };
        self.held.send_if_modified(|h| {
            let moved = held > *h;
            *h = (*h).max(held);
            moved
        });
    }

    /// The in-sync set, if it changed since it was last taken for reporting
    /// and no report is on its way; the caller then reports it and calls
    /// [`LeaderState::reported`] when done.
    pub(crate) fn isr_to_report(&self, leader_end: u64) -> Option<Vec<u64>> {
        if self.reporting.load(Ordering::Acquire) {
            return None;
        }
        let isr = self.in_sync(leader_end);
        let mut reported = self.reported_isr.lock();
        if *reported == isr {
            return None;
        }
        *reported = isr.clone();
        self.reporting.store(true, Ordering::Release);
        Some(isr)
    }

    /// Ends a report of the in-sync set; after a failure the next pass
    /// reports again.
    pub(crate) fn reported(&self, ok: bool) {
        if !ok {
            self.reported_isr.lock().clear();
        }
        self.reporting.store(false, Ordering::Release);
    }

    pub(crate) fn set_replicas(&self, replicas: &[u64]) {
        let mut current = self.replicas.lock();
        if current.as_slice() == replicas {
            return;
        }
        *current = replicas.to_vec();
        let mut followers = self.followers.lock();
        followers.retain(|f, _| replicas.contains(f));
        // A replica added now (a rebalance) has copied nothing yet: it is
        // in sync only once it holds the leader's end.
        for r in replicas.iter().filter(|r| **r != self.me) {
            followers.entry(*r).or_insert(Progress {
                matched: None,
                caught_up_at: None,
            });
        }
    }

    pub fn replica_count(&self) -> usize {
        self.replicas.lock().len()
    }

    /// What `follower` durably holds under this epoch, if it said.
    pub(crate) fn matched(&self, follower: u64) -> Option<u64> {
        self.followers.lock().get(&follower).and_then(|p| p.matched)
    }

    fn is_replica(&self, node: u64) -> bool {
        node != self.me && self.replicas.lock().contains(&node)
    }

    /// Records that `follower` durably holds everything below `offset`
    /// (it fetches from there under this epoch).
    fn note_progress(&self, follower: u64, offset: u64, leader_end: u64) {
        let mut followers = self.followers.lock();
        let progress = followers.entry(follower).or_insert(Progress {
            matched: None,
            caught_up_at: None,
        });
        progress.matched = Some(progress.matched.map_or(offset, |m| m.max(offset)));
        if offset >= leader_end {
            progress.caught_up_at = Some(Instant::now());
        }
    }

    /// The high watermark the replicas' confirmed positions allow.
    fn high_watermark(&self, leader_end: u64) -> Option<u64> {
        let matched: Vec<u64> = self
            .followers
            .lock()
            .values()
            .filter_map(|p| p.matched)
            .collect();
        quorum::high_watermark(leader_end, matched, self.replica_count(), self.epoch_start)
    }

    /// This node and the followers in sync: caught up with the leader's end
    /// within [`REPLICA_LAG_MAX`], or holding it now.
    pub fn in_sync(&self, leader_end: u64) -> Vec<u64> {
        let mut out = vec![self.me];
        let mut caught_up: Vec<u64> = self
            .followers
            .lock()
            .iter()
            .filter(|(_, p)| {
                p.matched.is_some_and(|m| m >= leader_end)
                    || p.caught_up_at
                        .is_some_and(|t| t.elapsed() < REPLICA_LAG_MAX)
            })
            .map(|(id, _)| *id)
            .collect();
        caught_up.sort_unstable();
        out.extend(caught_up);
        out
    }
}

impl Broker {
    /// Answers a follower's fetch for all the partitions it replicates from
    /// this node. Progress is counted (and the high watermark moved) before
    /// anything waits; the fetch is held while nothing is new for it, up to
    /// its `max_wait_ms`.
    #[tracing::instrument(skip_all, fields(follower = fetch.follower, partitions = fetch.partitions.len()))]
    pub async fn serve_replica_fetch(&self, fetch: ReplicaFetch) -> ReplicaData {
        let wait = Duration::from_millis(fetch.max_wait_ms).min(MAX_FETCH_WAIT);
        let deadline = tokio::time::Instant::now() + wait;
        let max_bytes = usize::try_from(fetch.max_partition_bytes)
            .unwrap_or(usize::MAX)
            .max(1);
        loop {
            // Watch before looking, so an append in between wakes the wait.
            let mut watches = Vec::new();
            for pf in &fetch.partitions {
                if let Ok(p) = self.log.partition(&pf.key) {
                    watches.push(p.watch_end());
                    watches.push(p.watch_high_watermark());
                }
            }
            let mut news = false;
            let mut budget = MAX_FETCH_BYTES;
            let mut partitions = Vec::with_capacity(fetch.partitions.len());
            for pf in &fetch.partitions {
                // Past the budget a partition still reports progress (and
                // moves its high watermark) but sends no batches this time.
                let limit = if budget == 0 {
                    0
                } else {
                    max_bytes.min(budget)
                };
                let data = self.serve_partition(fetch.follower, pf, limit).await;
                budget = budget.saturating_sub(data.batches.len());
                news |= !matches!(data.outcome, FetchOutcome::Data)
                    || !data.batches.is_empty()
                    || data.high_watermark != pf.known_high_watermark;
                partitions.push(data);
            }
            if news || tokio::time::Instant::now() >= deadline || watches.is_empty() {
                return ReplicaData { partitions };
            }
            // A fresh receiver has seen the value it was made with, so a
            // change after the subscription above (even during the pass)
            // wakes this at once: never mark anything seen here.
            let changes = watches
                .iter_mut()
                .map(|w| w.changed().boxed())
                .collect::<Vec<_>>();
            let _ = tokio::time::timeout_at(deadline, futures::future::select_all(changes)).await;
        }
    }

    async fn serve_partition(
        &self,
        follower: u64,
        pf: &PartitionFetch,
        max_bytes: usize,
    ) -> PartitionData {
        let refuse = |leader_epoch: Option<u64>| PartitionData {
            key: pf.key.clone(),
            outcome: FetchOutcome::NotLeader { leader_epoch },
            high_watermark: 0,
            epoch_start: 0,
            leader_end: 0,
            batches: Bytes::new(),
        };
        let Some(state) = self.replication.leader_state(&pf.key) else {
            return refuse(None);
        };
        if state.epoch != pf.leader_epoch || !state.is_replica(follower) {
            return refuse(Some(state.epoch));
        }
        let Ok(p) = self.log.partition(&pf.key) else {
            return refuse(None);
        };
        let end = p.offsets().end;
        let mut data = PartitionData {
            key: pf.key.clone(),
            outcome: FetchOutcome::Data,
            high_watermark: p.high_watermark(),
            epoch_start: state.epoch_start,
            leader_end: end,
            batches: Bytes::new(),
        };
        match quorum::decide_fetch(&PartitionLineage(&p), pf.fetch_offset, pf.last_epoch) {
            FetchDecision::Diverging { epoch, end_offset } => {
                data.outcome = FetchOutcome::Diverging { epoch, end_offset }
            }
            FetchDecision::Reset(offset) => data.outcome = FetchOutcome::Reset { offset },
            FetchDecision::Serve => {
                // Only a follower that has begun this epoch holds a prefix of
                // this leader's log that counts toward a majority (a fetch
                // from the epoch start whose answer was lost has not).
                if i64::from(pf.last_epoch) == i64::try_from(state.epoch).unwrap_or(-1) {
                    state.note_progress(follower, pf.fetch_offset, end);
                    state.update_held(end);
                }
                if let Some(hw) = state.high_watermark(end) {
                    let before = p.high_watermark();
                    data.high_watermark = p.advance_high_watermark(hw);
                    if data.high_watermark > before {
                        tracing::trace!(
                            partition = pf.key,
                            follower,
                            fetch_offset = pf.fetch_offset,
                            end,
                            hw = data.high_watermark,
                            epoch = state.epoch,
                            "high watermark"
                        );
                    }
                }
                if pf.fetch_offset < end && max_bytes > 0 {
                    match p.read(pf.fetch_offset, max_bytes).await {
                        Ok(read) => data.batches = concat(read.chunks),
                        Err(e) => debug!(partition = pf.key, error = %e, "replica read failed"),
                    }
                }
            }
        }
        data
    }
}

/// The chunks (whole batches, contiguous) as one buffer; no copy for one chunk.
fn concat(chunks: Vec<Bytes>) -> Bytes {
    if chunks.len() == 1 {
        return chunks.into_iter().next().unwrap_or_default();
    }
    let mut out = BytesMut::new();
    for c in chunks {
        out.extend_from_slice(&c);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_sync_sets_are_reported_one_at_a_time_and_again_after_a_failure() {
        let state = LeaderState::new(3, 0, 1, &[1, 2, 3]);
        assert_eq!(state.isr_to_report(0), Some(vec![1, 2, 3]));
        // While that report is on its way, a change waits for it.
        state.set_replicas(&[1, 2]);
        assert_eq!(state.isr_to_report(0), None);
        state.reported(true);
        assert_eq!(state.isr_to_report(0), Some(vec![1, 2]));
        state.reported(false);
        // It failed: the same set goes again; then nothing changed.
        assert_eq!(state.isr_to_report(0), Some(vec![1, 2]));
        state.reported(true);
        assert_eq!(state.isr_to_report(0), None);
    }
}
