//! The follower's side: one task per leader node, fetching every partition
//! followed from it over one stream, appending what comes back with the
//! leader's offsets and epochs, truncating or starting over when told.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::{debug, info, warn};

use super::wire::{FetchOutcome, PartitionData, PartitionFetch, ReplicaFetch};
use super::{PartitionLineage, ReplicaChannel, Role, epoch_i32, quorum};
use crate::broker::Broker;

/// How long the leader may hold a fetch while nothing is new.
const FETCH_WAIT: Duration = Duration::from_millis(200);
/// A fetch that takes longer than this is given up and the stream reopened.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed fetch (the leader may be gone: the metadata will say).
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Most bytes of one partition per fetch.
const MAX_PARTITION_BYTES: u64 = 1024 * 1024;

/// Fetches from `leader` until this node follows nothing from it, the
/// broker shuts down, or the broker is dropped.
pub(super) async fn fetch_from(broker: Weak<Broker>, leader: u64) {
    let mut channel: Option<Box<dyn ReplicaChannel>> = None;
    loop {
        let Some(b) = broker.upgrade() else { return };
        if b.is_stopping() {
            return;
        }
        let Some(fetch) = b.build_fetch(leader) else {
            debug!(leader, "no partition followed from this leader any more");
            return;
        };
        if fetch.partitions.is_empty() {
            // Every partition awaits an election's outcome.
            drop(b);
            tokio::time::sleep(FETCH_WAIT).await;
            continue;
        }
        let ch = match channel.as_mut() {
            Some(ch) => ch,
            None => match b.cluster.open_replication(leader).await {
                Ok(ch) => channel.insert(ch),
                Err(e) => {
                    debug!(leader, error = %e.message, "cannot reach the leader");
                    drop(b);
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            },
        };
        let sent: Vec<(String, u64)> = fetch
            .partitions
            .iter()
            .map(|p| (p.key.clone(), p.leader_epoch))
            .collect();
        match tokio::time::timeout(FETCH_TIMEOUT, ch.exchange(fetch)).await {
            Ok(Ok(data)) => {
                let mut refused = false;
                let mut applies = Vec::with_capacity(data.partitions.len());
                for (part, (key, epoch)) in data.partitions.into_iter().zip(sent) {
                    if part.key != key {
                        warn!(
                            leader,
                            expected = key,
                            got = part.key,
                            "replica data out of order"
                        );
                        break;
                    }
                    refused |= matches!(part.outcome, FetchOutcome::NotLeader { .. });
                    applies.push(b.apply_replica_data(leader, epoch, part));
                }
                // The partitions' appends go to the committer together, so
                // one fsync makes them all durable rather than one each in
                // turn; the next fetch waits for all of them.
                futures::future::join_all(applies).await;
                if refused {
                    // Leadership is moving; the metadata will catch up shortly.
                    drop(b);
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
            Ok(Err(e)) => {
                debug!(leader, error = %e.message, "replica fetch failed");
                channel = None;
                drop(b);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(_) => {
                debug!(leader, "replica fetch timed out");
                channel = None;
            }
        }
    }
}

impl Broker {
    /// The next fetch from `leader`: every partition followed from it,
    /// from its durable end. `None` when there is none.
    fn build_fetch(&self, leader: u64) -> Option<ReplicaFetch> {
        let followed = self.replication.followed_from(leader);
        if followed.is_empty() {
            return None;
        }
        let mut partitions = Vec::with_capacity(followed.len());
        for (key, epoch) in followed {
            if self.replication.fence(&key).is_some_and(|f| f > epoch) {
                continue;
            }
            let Ok(p) = self.log.partition(&key) else {
                continue;
            };
            partitions.push(PartitionFetch {
                fetch_offset: p.offsets().end,
                last_epoch: p.last_epoch().unwrap_or(-1),
                known_high_watermark: p.high_watermark(),
                key,
                leader_epoch: epoch,
            });
        }
        Some(ReplicaFetch {
            follower: self.node_id(),
            partitions,
            max_wait_ms: FETCH_WAIT.as_millis() as u64,
            max_partition_bytes: MAX_PARTITION_BYTES,
        })
    }

    /// Applies one partition's answer, if this node still follows it from
    /// `leader` at `epoch` and has promised no newer epoch.
    async fn apply_replica_data(self: &Arc<Self>, leader: u64, epoch: u64, data: PartitionData) {
        let key = data.key.as_str();
        let still = matches!(self.replication.role(key),
            Some(Role::Follower { leader: l, epoch: e }) if l == leader && e == epoch);
        if !still || self.replication.fence(key).is_some_and(|f| f > epoch) {
            return;
        }
        let Ok(p) = self.log.partition(key) else {
            return;
        };
        match data.outcome {
            FetchOutcome::Data => {
                if !data.batches.is_empty()
                    && let Err(e) = p.append_replicated(&data.batches[..]).await
                {
                    warn!(partition = key, error = %e, "cannot append replicated batches");
                    return;
                }
                let end = p.offsets().end;
                // Holding everything the leader had when its epoch began, this
                // log is a prefix of the leader's: record the epoch.
                if end >= data.epoch_start
                    && let Ok(e) = epoch_i32(epoch)
                    && p.last_epoch().is_none_or(|last| last < e)
                    && let Err(err) = p.begin_epoch(e).await
                {
                    warn!(partition = key, error = %err, "cannot begin the leader's epoch");
                }
                p.advance_high_watermark(data.high_watermark.min(end));
            }
            FetchOutcome::Diverging { epoch, end_offset } => {
                let end = p.offsets().end;
                let offset =
                    quorum::truncation_point(&PartitionLineage(&p), end, epoch, end_offset);
                info!(
                    partition = key,
                    offset, epoch, end_offset, "truncating a divergent suffix"
                );
                if let Err(e) = p.truncate(offset).await {
                    warn!(partition = key, offset, error = %e, "cannot truncate; starting over from the leader");
                    self.reset_replica(key, data.leader_end.min(offset)).await;
                }
            }
            FetchOutcome::Reset { offset } => self.reset_replica(key, offset).await,
            FetchOutcome::NotLeader { .. } => {}
        }
    }

    /// Drops the local copy of a followed partition and starts it again at
    /// `offset` (what the leader keeps locally; the bucket has the rest).
    async fn reset_replica(&self, key: &str, offset: u64) {
        let Ok(old) = self.log.partition(key) else {
            return;
        };
        let (config, log_start) = (old.segment_config(), old.offsets().log_start);
        info!(
            partition = key,
            offset, "starting the local replica over from the leader"
        );
        if let Err(e) = self.log.delete_partition(key).await {
            warn!(partition = key, error = %e, "cannot drop the local replica");
            return;
        }
        match self
            .log
            .create_partition_at(key, Some(config), log_start.min(offset), offset)
            .await
        {
            Ok(p) => {
                p.set_follower(true);
                p.set_replicated(true);
            }
            Err(e) => warn!(partition = key, error = %e, "cannot recreate the local replica"),
        }
    }
}
