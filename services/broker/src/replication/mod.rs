//! Quorum replication of partitions.
//!
//! Each partition the metadata group assigns to several brokers has a
//! leader and followers. Followers pull: one task per leader node keeps one
//! stream to it that carries all the partitions they share ([`follower`]);
//! each fetch says how far the follower's log durably goes, which is how the
//! leader learns what to count ([`leader`]). The rules themselves (high
//! watermark, fetch decisions, elections) are pure functions in [`quorum`].
//!
//! Roles follow the metadata: [`Broker::reconcile_replicas`] runs every
//! [`RECONCILE_INTERVAL`] and makes this node lead the partitions it was
//! given (beginning their epoch before taking a write) and follow the
//! others. Elections are run by the metadata leader (`strata-meta`); the
//! replicas it asks answer with their position after a promise, the fence,
//! to take nothing more from an older leader.
//!
//! Single nodes and partitions with one replica skip all of this: their
//! high watermark is their end offset.

pub mod quorum;
pub mod wire;

mod fences;
mod follower;
mod handoff;
mod leader;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_api::{ApiError, ErrorCode};
use strata_log::Partition;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::broker::{Broker, Result};
use crate::errors::from_log;

pub use leader::{LeaderState, MAX_FETCH_BYTES};
pub use quorum::LogPosition;
pub use wire::{
    FetchOutcome, PartitionData, PartitionFetch, PositionReply, ReplicaData, ReplicaFetch,
};

/// How often roles are brought in line with the metadata.
pub const RECONCILE_INTERVAL: Duration = Duration::from_millis(100);

/// A partition's replicas as the metadata group assigned them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAssignment {
    /// Log partition key.
    pub key: String,
    pub leader: u64,
    pub leader_epoch: u64,
    /// The leader first.
    pub replicas: Vec<u64>,
    /// The topic's `min_insync_replicas`: acks=all writes need this many
    /// replicas (and a majority) in sync, and are acknowledged once this
    /// many hold them.
    pub min_insync: usize,
}

/// One stream to a leader node.
#[async_trait::async_trait]
pub trait ReplicaChannel: Send {
    async fn exchange(&mut self, fetch: ReplicaFetch) -> Result<ReplicaData, ApiError>;
}

/// What this node is to a partition.
#[derive(Clone)]
pub(crate) enum Role {
    Leader(Arc<LeaderState>),
    Follower { leader: u64, epoch: u64 },
}

/// The replication roles of one broker.
pub(crate) struct Replication {
    roles: Mutex<HashMap<String, Role>>,
    /// Partitions led here that stopped taking writes for a leadership
    /// handoff: the epoch and since when.
    handoffs: Mutex<HashMap<String, (u64, Instant)>>,
    /// The promises made in elections ([`fences`]).
    fences: fences::Fences,
    /// Per leader node: the task fetching from it.
    fetchers: Mutex<HashMap<u64, JoinHandle<()>>>,
}

impl Replication {
    /// The roles of a broker whose data directory is `data_dir`, with the
    /// fences it promised before it stopped.
    pub(crate) fn open(data_dir: &std::path::Path) -> Replication {
        Replication {
            roles: Mutex::default(),
            handoffs: Mutex::default(),
            fences: fences::Fences::open(data_dir),
            fetchers: Mutex::default(),
        }
    }

    pub(crate) fn role(&self, key: &str) -> Option<Role> {
        self.roles.lock().get(key).cloned()
    }

    pub(crate) fn leader_state(&self, key: &str) -> Option<Arc<LeaderState>> {
        match self.role(key) {
            Some(Role::Leader(state)) => Some(state),
            _ => None,
        }
    }

    /// The epoch this replica promised not to go below, if the promise holds.
    fn fence(&self, key: &str) -> Option<u64> {
        self.fences.get(key)
    }

    /// The partitions this node follows from `leader`, with their epochs.
    fn followed_from(&self, leader: u64) -> Vec<(String, u64)> {
        self.roles
            .lock()
            .iter()
            .filter_map(|(key, role)| match role {
                Role::Follower { leader: l, epoch } if *l == leader => Some((key.clone(), *epoch)),
                _ => None,
            })
            .collect()
    }
}

fn epoch_i32(epoch: u64) -> Result<i32> {
    i32::try_from(epoch).map_err(|_| {
        ApiError::new(
            ErrorCode::Internal,
            format!("leader epoch {epoch} does not fit a record batch"),
        )
    })
}

impl Broker {
    /// Starts the task that keeps this node's replication roles in line with
    /// the metadata (cluster nodes only).
    pub(crate) fn spawn_replication(
        self: &Arc<Self>,
        stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let broker = Arc::downgrade(self);
        tokio::spawn(reconcile_loop(broker, stop))
    }

    /// Makes this node lead, follow or leave each assigned partition as the
    /// metadata says, and runs one fetcher per leader node it follows.
    pub(crate) async fn reconcile_replicas(self: &Arc<Self>) {
        let me = self.node_id();
        let assignments = self.cluster.assignments();
        // A partition assigned here that the log lacks (a topic just created
        // through another node) is created now, not at the next metadata
        // sync, so its followers start replicating at once.
        let missing = assignments
            .iter()
            .any(|a| a.replicas.contains(&me) && self.log.partition(&a.key).is_err());
        if missing && let Err(e) = self.sync_with_metadata().await {
            warn!(error = %e.message, "cannot create the partitions assigned here");
        }
        for a in assignments {
            let fenced = self
                .replication
                .fence(&a.key)
                .is_some_and(|e| e > a.leader_epoch);
            if fenced {
                // An election for a newer epoch is under way: wait for its outcome.
                continue;
            }
            let Ok(p) = self.log.partition(&a.key) else {
                continue;
            };
            let current = self.replication.role(&a.key);
            if a.leader == me {
                let led = matches!(&current, Some(Role::Leader(s)) if s.epoch == a.leader_epoch);
                if led {
                    if let Some(Role::Leader(s)) = &current {
                        s.set_replicas(&a.replicas);
                        s.set_min_insync(a.min_insync);
                        p.set_replicated(a.replicas.len() > 1);
                    }
                    continue;
                }
                if let Err(e) = self.become_leader(&p, &a).await {
                    warn!(partition = a.key, error = %e.message, "cannot take the partition's leadership");
                }
            } else if a.replicas.contains(&me) {
                let follows = matches!(current, Some(Role::Follower { leader, epoch })
                    if leader == a.leader && epoch == a.leader_epoch);
                if !follows {
                    p.set_follower(true);
                    p.set_replicated(true);
                    info!(
                        partition = a.key,
                        leader = a.leader,
                        epoch = a.leader_epoch,
                        "following"
                    );
                    self.replication.roles.lock().insert(
                        a.key.clone(),
                        Role::Follower {
                            leader: a.leader,
                            epoch: a.leader_epoch,
                        },
                    );
                }
            } else if current.is_some() {
                p.set_follower(true);
                self.replication.roles.lock().remove(&a.key);
            }
        }
        self.run_fetchers();
        self.report_isrs();
        self.resume_stale_handoffs();
    }

    /// Records in the metadata the in-sync sets that changed (for status
    /// and describe; elections do not depend on them).
    fn report_isrs(&self) {
        let led: Vec<(String, Arc<LeaderState>)> = self
            .replication
            .roles
            .lock()
            .iter()
            .filter_map(|(k, r)| match r {
                Role::Leader(s) => Some((k.clone(), s.clone())),
                Role::Follower { .. } => None,
            })
            .collect();
        for (key, state) in led {
            let Ok(p) = self.log.partition(&key) else {
                continue;
            };
            let Some(isr) = state.isr_to_report(p.offsets().end) else {
                continue;
            };
            let cluster = self.cluster.clone();
            tokio::spawn(async move {
                let result = cluster.report_isr(&key, state.epoch, isr).await;
                if let Err(e) = &result {
                    tracing::debug!(partition = key, error = %e.message, "cannot record the in-sync replicas");
                }
                state.reported(result.is_ok());
            });
        }
    }

    /// Begins the partition's new epoch (durably) before it takes a write
    /// as leader: from here on its batches carry that epoch.
    async fn become_leader(&self, p: &Partition, a: &ReplicaAssignment) -> Result<()> {
        // No write may be stamped with an older epoch once another leader
        // may have had it. Epoch 1 is the partition's first leader: nothing
        // to keep apart, and a new topic takes writes at once.
        if a.leader_epoch > 1 {
            p.set_follower(true);
        }
        p.begin_epoch(epoch_i32(a.leader_epoch)?)
            .await
            .map_err(from_log)?;
        let epoch_start = p.offsets().end;
        let state = Arc::new(LeaderState::new(
            a.leader_epoch,
            epoch_start,
            self.node_id(),
            &a.replicas,
        ));
        state.set_min_insync(a.min_insync);
        p.set_replicated(a.replicas.len() > 1);
        self.replication
            .roles
            .lock()
            .insert(a.key.clone(), Role::Leader(state));
        p.set_follower(false);
        info!(
            partition = a.key,
            epoch = a.leader_epoch,
            epoch_start,
            replicas = ?a.replicas,
            "leading"
        );
        Ok(())
    }

    /// Starts a fetcher for each leader node followed that has none running.
    fn run_fetchers(self: &Arc<Self>) {
        let leaders: std::collections::BTreeSet<u64> = self
            .replication
            .roles
            .lock()
            .values()
            .filter_map(|r| match r {
                Role::Follower { leader, .. } => Some(*leader),
                Role::Leader(_) => None,
            })
            .collect();
        let mut fetchers = self.replication.fetchers.lock();
        fetchers.retain(|_, task| !task.is_finished());
        for leader in leaders {
            fetchers.entry(leader).or_insert_with(|| {
                tokio::spawn(follower::fetch_from(Arc::downgrade(self), leader))
            });
        }
    }

    /// A replica's answer to an election for `epoch`: its log position,
    /// after promising to take nothing more from leaders of older epochs
    /// (and, if it leads an older epoch itself, to stop taking writes).
    pub async fn replica_position(&self, key: &str, epoch: u64) -> Result<PositionReply> {
        let p = self.log.partition(key).map_err(from_log)?;
        // Epoch 0 only asks whether this node is there: it promises nothing.
        if epoch > 0 {
            self.replication.fences.promise(key, epoch).await?;
        }
        if let Some(state) = self.replication.leader_state(key)
            && state.epoch < epoch
        {
            p.set_follower(true);
            self.replication.roles.lock().remove(key);
            warn!(
                partition = key,
                epoch, "a newer leader is being elected: no more writes here"
            );
        }
        Ok(PositionReply {
            position: position_of(&p),
        })
    }

    /// Waits until a write that ends at `next_offset`, whose batch carries
    /// leader epoch `epoch` (`Appended::leader_epoch`), is held by a
    /// majority of the partition's replicas, and by `min_insync_replicas` of
    /// them if that is more (acks=all); at once for a partition with one
    /// replica. Fails with a retryable
    /// `replication_timeout`, or `not_leader` when this node lost the
    /// leadership meanwhile and its write was replaced: a deposed leader
    /// truncates its unreplicated suffix and takes the new leader's records
    /// at the same offsets, which moves its high watermark past them too.
    pub async fn await_replicated(
        &self,
        p: &Partition,
        epoch: i32,
        next_offset: u64,
    ) -> Result<()> {
        self.await_replicated_within(p, epoch, next_offset, self.config.replication_timeout)
            .await
    }

    /// As [`Broker::await_replicated`], waiting at most `timeout` (a Kafka
    /// Produce request's own `timeout_ms`, as Kafka's brokers honor it: a
    /// client whose request is answered early with "not enough replicas after
    /// append" treats its batch as possibly written, and librdkafka's
    /// idempotent producer then bumps its epoch and sends it again as new).
    pub async fn await_replicated_within(
        &self,
        p: &Partition,
        epoch: i32,
        next_offset: u64,
        timeout: std::time::Duration,
    ) -> Result<()> {
        if !p.is_replicated() {
            return Ok(());
        }
        let mut hw = p.watch_high_watermark();
        // Past a majority, `min_insync_replicas` may ask for more copies.
        let mut held = self
            .replication
            .leader_state(p.key())
            .filter(|s| s.needs_more_than_a_majority())
            .map(|s| s.watch_held());
        // The borrowed values are dropped at once (see watch_high_watermark).
        let waited = tokio::time::timeout(timeout, async {
            hw.wait_for(|h| *h >= next_offset).await.map(|h| *h)?;
            if let Some(held) = &mut held {
                held.wait_for(|h| *h >= next_offset).await.map(|h| *h)?;
            }
            Ok::<(), watch::error::RecvError>(())
        })
        .await;
        if !matches!(waited, Ok(Ok(()))) {
            return Err(ApiError::new(
                ErrorCode::ReplicationTimeout,
                format!(
                    "offsets up to {next_offset} of partition {} are written on the leader, but \
                     not enough replicas confirmed them within {timeout:?}; retry",
                    p.key(),
                ),
            ));
        }
        // Batches of one epoch come from its one leader: the same epoch at
        // the write's last offset means the same batch.
        if p.epoch_at(next_offset.saturating_sub(1)) != Some(epoch) {
            return Err(ApiError::new(
                ErrorCode::NotLeader,
                format!(
                    "partition {} changed leader while this write waited for its replicas, and \
                     the write is not in the new leader's log; retry",
                    p.key()
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a write that asks for acks=all when too few replicas are in
    /// sync to make a majority, or `min_insync_replicas` if that is more:
    /// `not_enough_replicas`, nothing written.
    pub fn check_in_sync(&self, p: &Partition) -> Result<()> {
        if self.awaits_leadership(p) {
            return Err(ApiError::new(
                ErrorCode::NotLeader,
                format!(
                    "partition {} is taking up its leadership and does not yet count its \
                     replicas; retry",
                    p.key()
                ),
            ));
        }
        if !p.is_replicated() {
            return Ok(());
        }
        let Some(state) = self.replication.leader_state(p.key()) else {
            return Ok(());
        };
        let (in_sync, replicas) = (state.in_sync(p.offsets().end).len(), state.replica_count());
        let needed = state.replicas_needed();
        if in_sync < needed {
            return Err(ApiError::new(
                ErrorCode::NotEnoughReplicas,
                format!(
                    "partition {} has {in_sync} of {replicas} replicas in sync, fewer than the \
                     {needed} a write needs; retry",
                    p.key()
                ),
            )
            .with_details(serde_json::json!({
                "in_sync": in_sync,
                "replicas": replicas,
                "needed": needed,
            })));
        }
        Ok(())
    }

    /// Whether the metadata gives `p` several replicas with this node as
    /// leader, but this node does not lead it by replication yet (a topic
    /// just created, before the next reconcile pass): a write acknowledged
    /// now would count this copy alone.
    pub(crate) fn awaits_leadership(&self, p: &Partition) -> bool {
        self.replication.leader_state(p.key()).is_none()
            && self.cluster.replicas(p.key()).is_some_and(|(replicas, _)| {
                replicas.len() > 1 && replicas.first() == Some(&self.node_id())
            })
    }

    /// Refuses reads (retryably) on a partition this node has just come to
    /// lead until a majority confirms the log it leads with: its high
    /// watermark, learned from the previous leader, may lag what readers
    /// already saw, and a high watermark never goes back.
    pub fn check_readable(&self, p: &Partition) -> Result<()> {
        let Some(state) = self.replication.leader_state(p.key()) else {
            return Ok(());
        };
        if p.is_replicated() && p.high_watermark() < state.epoch_start {
            return Err(ApiError::new(
                ErrorCode::NotLeader,
                format!(
                    "partition {} has a new leader that is still confirming its log with the \
                     other replicas; retry",
                    p.key()
                ),
            ));
        }
        Ok(())
    }

    /// The in-sync replicas of a partition led here (the leader first).
    pub fn in_sync_replicas(&self, key: &str) -> Option<Vec<u64>> {
        let state = self.replication.leader_state(key)?;
        let p = self.log.partition(key).ok()?;
        Some(state.in_sync(p.offsets().end))
    }
}

/// A partition's log as the replication rules see it.
pub(crate) struct PartitionLineage<'a>(pub &'a Partition);

impl quorum::Lineage for PartitionLineage<'_> {
    fn local_start(&self) -> u64 {
        self.0.offsets().local_start
    }
    fn end_offset(&self) -> u64 {
        self.0.offsets().end
    }
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
        self.0.end_offset_for_epoch(epoch)
    }
}

/// A replica's position: its newest epoch and its end.
pub(crate) fn position_of(p: &Partition) -> LogPosition {
    LogPosition {
        last_epoch: p.last_epoch().unwrap_or(-1),
        end_offset: p.offsets().end,
    }
}

async fn reconcile_loop(broker: Weak<Broker>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(RECONCILE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        if *stop.borrow() {
            return;
        }
        let Some(broker) = broker.upgrade() else {
            return;
        };
        broker.reconcile_replicas().await;
    }
}
