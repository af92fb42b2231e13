//! Partition leader elections, run by the metadata leader: when a
//! replicated partition's leader loses its liveness lease, its replicas
//! are asked for their log positions (each first promises to take nothing
//! more from older leaders), and the one holding the most among a majority
//! becomes leader at the next epoch. The rule is
//! `strata_broker::replication::quorum::choose_leader`; no record a
//! majority held can be lost by it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;
use futures::stream::FuturesUnordered;
use strata_broker::replication::quorum::{
    LogPosition, choose_leader, choose_leader_preferring, majority,
};
use tracing::{info, warn};

use crate::machine::ClusterState;
use crate::node::MetaNode;
use crate::placement::is_live_broker;
use crate::types::{Command, NodeId};

/// How long a replica may take to answer an election.
const POSITION_TIMEOUT: Duration = Duration::from_millis(800);

/// Once a majority of replicas answered an election, how much longer the
/// others may take: the longest log among all who answer is preferred, but
/// a replica cut off the network must not hold the election up.
const LATE_ANSWER_GRACE: Duration = Duration::from_millis(100);

/// How long a leader whose lease lapsed may take to answer "are you there".
/// Leases lapse for live brokers too (a new metadata leader has heard no
/// heartbeat yet): a leader that answers keeps its partitions.
const PING_TIMEOUT: Duration = Duration::from_millis(300);

/// A leader that answers but has not renewed its lease for this long is
/// cut off from the metadata group: it is replaced all the same.
const CUT_OFF_MS: i64 = 5_000;

/// A partition whose leader lost its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vacancy {
    pub partition: String,
    pub epoch: u64,
    pub leader: NodeId,
    /// How long ago the leader last renewed its lease (`None`: never known).
    pub lapsed_ms: Option<i64>,
    /// `(node, peer address)` of every replica, the old leader included
    /// (if it answers, it is alive after all and may lead again).
    pub replicas: Vec<(NodeId, String)>,
}

/// Replicated partitions whose leader is not a live broker at `now_ms`,
/// or is on a node found `down` (its lease may not have lapsed yet; the
/// election asks it first, see [`elect`]).
pub fn vacancies(state: &ClusterState, now_ms: i64, down: &BTreeSet<NodeId>) -> Vec<Vacancy> {
    state
        .assignments
        .iter()
        .filter(|(_, a)| a.replicas.len() > 1)
        .filter(|(_, a)| {
            down.contains(&a.leader)
                || !state
                    .brokers
                    .get(&a.leader)
                    .is_some_and(|b| is_live_broker(b, now_ms))
        })
        .filter_map(|(key, _)| vacancy_of(state, key, now_ms))
        .collect()
}

/// Partition `key` as an election sees it.
pub(crate) fn vacancy_of(state: &ClusterState, key: &str, now_ms: i64) -> Option<Vacancy> {
    let a = state.assignments.get(key)?;
    Some(Vacancy {
        partition: key.to_string(),
        epoch: a.leader_epoch,
        leader: a.leader,
        lapsed_ms: state
            .brokers
            .get(&a.leader)
            .map(|b| now_ms - b.last_heartbeat_ms),
        replicas: a
            .replicas
            .iter()
            .filter_map(|r| {
                let addr = state.brokers.get(r)?.peer_addr.clone();
                (!addr.is_empty()).then_some((*r, addr))
            })
            .collect(),
    })
}

/// One round on the metadata leader: elects a leader for every replicated
/// partition whose leader lost its lease, or sits on a node Raft found
/// down, and does not answer.
pub async fn round(node: &MetaNode, now_ms: i64) {
    if node.status().leader != Some(node.id()) {
        return;
    }
    let down = node.down_peers();
    let vacant = node.read(|s| vacancies(s, now_ms, &down));
    join_all(vacant.into_iter().map(|v| elect(node, v, None))).await;
}

/// Whether a replicated partition's leader lost its lease: an election is
/// due (rebalancing waits for it).
pub fn any_vacancy(state: &ClusterState, now_ms: i64) -> bool {
    !vacancies(state, now_ms, &BTreeSet::new()).is_empty()
}

/// Whether the partition's leader answers (a query that fences nothing).
async fn answers(vacancy: &Vacancy) -> bool {
    let Some((_, addr)) = vacancy
        .replicas
        .iter()
        .find(|(id, _)| *id == vacancy.leader)
    else {
        return false;
    };
    let Ok(peer) = crate::network::Peer::new(addr) else {
        return false;
    };
    peer.replica_position(&vacancy.partition, 0, PING_TIMEOUT)
        .await
        .is_ok()
}

/// The positions of the replicas that answer: all of them, or, once a
/// majority has answered, those that answer within [`LATE_ANSWER_GRACE`]
/// more. A majority is enough for safety (it holds every record a majority
/// held, and each replica that answered takes nothing more from older
/// leaders); waiting out [`POSITION_TIMEOUT`] for a replica that is cut off
/// would only delay the failover.
async fn gather_positions<F>(
    asks: impl IntoIterator<Item = F>,
    majority: usize,
) -> Vec<(NodeId, LogPosition)>
where
    F: Future<Output = Option<(NodeId, LogPosition)>>,
{
    let mut pending: FuturesUnordered<F> = asks.into_iter().collect();
    let mut answers = Vec::with_capacity(pending.len());
    let mut grace_until: Option<tokio::time::Instant> = None;
    loop {
        let next = match grace_until {
            None => pending.next().await,
            Some(until) => match tokio::time::timeout_at(until, pending.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        let Some(answer) = next else { break };
        answers.extend(answer);
        if grace_until.is_none() && answers.len() >= majority {
            grace_until = Some(tokio::time::Instant::now() + LATE_ANSWER_GRACE);
        }
    }
    answers
}

/// Elects the leader of `vacancy.partition` at the next epoch; with
/// `preferred` (a handoff), the live leader is not asked whether it is
/// there, and `preferred` wins if it holds as much as any replica.
pub(crate) async fn elect(node: &MetaNode, vacancy: Vacancy, preferred: Option<NodeId>) {
    if preferred.is_none()
        && vacancy.lapsed_ms.is_some_and(|l| l < CUT_OFF_MS)
        && answers(&vacancy).await
    {
        return;
    }
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
    let count = node.read(|s| {
        s.assignments
            .get(&vacancy.partition)
            .map_or(0, |a| a.replicas.len())
    });
    let answers = gather_positions(asks, majority(count.max(1))).await;
    let chosen = match preferred {
        Some(p) => choose_leader_preferring(&answers, count, p),
        None => choose_leader(&answers, count),
    };
    let Some(leader) = chosen else {
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
            ?preferred,
            ?answers,
            took_ms = started.elapsed().as_millis() as u64,
            "partition leader elected"
        ),
        Err(e) => warn!(partition = vacancy.partition, error = %e.message, "election not recorded"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::{BoxFuture, FutureExt, pending, ready};

    fn position(end: u64) -> LogPosition {
        LogPosition {
            last_epoch: 1,
            end_offset: end,
        }
    }

    #[tokio::test]
    async fn a_replica_that_never_answers_does_not_hold_up_a_majority() {
        let asks: Vec<BoxFuture<'static, Option<(NodeId, LogPosition)>>> = vec![
            ready(Some((1, position(10)))).boxed(),
            pending().boxed(),
            ready(Some((3, position(12)))).boxed(),
        ];
        let answers = tokio::time::timeout(Duration::from_secs(10), gather_positions(asks, 2))
            .await
            .expect("a majority answered: the gathering ends");
        assert_eq!(answers, vec![(1, position(10)), (3, position(12))]);
        assert_eq!(choose_leader(&answers, 3), Some(3));
    }

    #[tokio::test]
    async fn without_a_majority_every_replica_is_waited_for() {
        let asks: Vec<BoxFuture<'static, Option<(NodeId, LogPosition)>>> = vec![
            ready(Some((1, position(10)))).boxed(),
            ready(None).boxed(),
            async {
                tokio::time::sleep(LATE_ANSWER_GRACE * 3).await;
                Some((3, position(12)))
            }
            .boxed(),
        ];
        let answers = gather_positions(asks, 2).await;
        assert_eq!(answers, vec![(1, position(10)), (3, position(12))]);
    }
}
