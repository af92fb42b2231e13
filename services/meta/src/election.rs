//! Partition leader elections, run by the metadata leader: when a
//! replicated partition's leader loses its liveness lease, its replicas
//! are asked for their log positions (each first promises to take nothing
//! more from older leaders), and the one holding the most among a majority
//! becomes leader at the next epoch. The rule is
//! `strata_broker::replication::quorum::choose_leader`; no record a
//! majority held can be lost by it.

use std::time::{Duration, Instant};

use futures::future::join_all;
use strata_broker::replication::quorum::{LogPosition, choose_leader};
use tracing::{info, warn};

use crate::machine::ClusterState;
use crate::node::MetaNode;
use crate::placement::{LIVENESS_LEASE_MS, is_live_broker};
use crate::types::{Command, NodeId};

/// How long a replica may take to answer an election.
const POSITION_TIMEOUT: Duration = Duration::from_millis(800);

/// A partition whose leader lost its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacancy {
    pub partition: String,
    pub epoch: u64,
    pub leader: NodeId,
    /// `(node, peer address)` of every replica, the old leader included
    /// (if it answers, it is alive after all and may lead again).
    pub replicas: Vec<(NodeId, String)>,
}

/// Replicated partitions whose leader is not a live broker at `now_ms`.
pub fn vacancies(state: &ClusterState, now_ms: i64) -> Vec<Vacancy> {
    state
        .assignments
        .iter()
        .filter(|(_, a)| a.replicas.len() > 1)
        .filter(|(_, a)| {
            !state
                .brokers
                .get(&a.leader)
                .is_some_and(|b| is_live_broker(b, now_ms))
        })
        .map(|(key, a)| Vacancy {
            partition: key.clone(),
            epoch: a.leader_epoch,
            leader: a.leader,
            replicas: a
                .replicas
                .iter()
                .filter_map(|r| {
                    let addr = state.brokers.get(r)?.peer_addr.clone();
                    (!addr.is_empty()).then_some((*r, addr))
                })
                .collect(),
        })
        .collect()
}

/// Runs the elections on the metadata leader.
pub struct Elections {
    /// The Raft term this node leads and since when: leases are judged only
    /// a lease after taking over, since heartbeats could not be written
    /// while there was no leader.
    leading_since: Option<(u64, Instant)>,
}

impl Default for Elections {
    fn default() -> Self {
        Self::new()
    }
}

impl Elections {
    pub fn new() -> Elections {
        Elections {
            leading_since: None,
        }
    }

    /// One round: elects a leader for every partition whose leader lapsed.
    pub async fn round(&mut self, node: &MetaNode, now_ms: i64) {
        let status = node.status();
        if status.leader != Some(node.id()) {
            self.leading_since = None;
            return;
        }
        let since = match self.leading_since {
            Some((term, at)) if term == status.term => at,
            _ => {
                let at = Instant::now();
                self.leading_since = Some((status.term, at));
                at
            }
        };
        if since.elapsed() < Duration::from_millis(LIVENESS_LEASE_MS as u64) {
            return;
        }
        let vacant = node.read(|s| vacancies(s, now_ms));
        join_all(vacant.into_iter().map(|v| elect(node, v))).await;
    }
}

async fn elect(node: &MetaNode, vacancy: Vacancy) {
    let started = Instant::now();
    let next = vacancy.epoch + 1;
    let asks = vacancy.replicas.iter().map(|(id, addr)| {
        let partition = vacancy.partition.clone();
        async move {
            let peer = crate::network::Peer::new(addr).ok()?;
            let reply = peer
                .replica_position(&partition, next, POSITION_TIMEOUT)
                .await
                .ok()?;
            Some((*id, reply.position))
        }
    });
    let answers: Vec<(NodeId, LogPosition)> = join_all(asks).await.into_iter().flatten().collect();
    let count = node.read(|s| {
        s.assignments
            .get(&vacancy.partition)
            .map_or(0, |a| a.replicas.len())
    });
    let Some(leader) = choose_leader(&answers, count) else {
        warn!(
            partition = vacancy.partition,
            answered = answers.len(),
            replicas = count,
            "no majority of replicas answered; the partition waits for its leader"
        );
        return;
    };
    let command = Command::ElectLeader {
        partition: vacancy.partition.clone(),
        from_epoch: vacancy.epoch,
        leader,
    };
    match node.write(command).await {
        Ok(_) => info!(
            partition = vacancy.partition,
            leader,
            epoch = next,
            previous = vacancy.leader,
            ?answers,
            took_ms = started.elapsed().as_millis() as u64,
            "partition leader elected"
        ),
        Err(e) => warn!(partition = vacancy.partition, error = %e.message, "election not recorded"),
    }
}
