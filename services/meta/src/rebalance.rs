//! Rebalancing, run by the metadata leader: when a broker joins (or the
//! load is uneven for any reason), replicas and then leaderships move, one
//! step at a time, from the broker holding the most to the one holding the
//! fewest, until no two live brokers differ by more than one. First, a
//! partition left with fewer replicas than its replication factor (a broker
//! removed when no other could replace it) gets them back as brokers come.
//!
//! - A replica moves in two steps: the new broker is added as one more
//!   replica (it copies only the leader's local tail; the history is in the
//!   bucket), and once every replica is in sync the busiest follower is
//!   dropped. Each step changes the set by one broker, so every majority of
//!   the new set overlaps every majority of the old one (`SetReplicas` is
//!   validated that way in the state machine).
//! - A leadership moves by a handoff: the leader stops taking writes until
//!   the target holds its whole log, then an ordinary election runs that
//!   prefers the target on a tie (see `strata_broker::replication`).
//!
//! [`next_move`] is pure: the same state gives the same move.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use strata_broker::{PartitionOp, PartitionReply, TopicMeta};
use tracing::{info, warn};

use crate::election;
use crate::machine::{Assignment, ClusterState};
use crate::node::MetaNode;
use crate::placement::is_live_broker;
use crate::types::{Command, NodeId};

/// How long a leader may take to bring a handoff's target up to its end.
const HANDOFF_WAIT: Duration = Duration::from_secs(2);

/// One step of a rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Move {
    /// Give `partition` (still at `epoch`) these replicas: one added or one
    /// dropped.
    SetReplicas {
        partition: String,
        epoch: u64,
        replicas: Vec<NodeId>,
    },
    /// Hand the leadership of `partition` from `from` to `to`.
    Lead {
        partition: String,
        epoch: u64,
        from: NodeId,
        to: NodeId,
    },
}

/// The next step towards balance, if any is due.
pub fn next_move(state: &ClusterState, now_ms: i64) -> Option<Move> {
    let live: BTreeSet<NodeId> = state
        .brokers
        .values()
        .filter(|b| is_live_broker(b, now_ms))
        .map(|b| b.node_id)
        .collect();
    if live.len() < 2 {
        return None;
    }
    let topics = topics_by_prefix(state);
    let wanted = |key: &str| {
        let (prefix, _) = key.rsplit_once('/')?;
        Some(topics.get(prefix)?.replicas_wanted(live.len()))
    };
    let healthy = |a: &Assignment| {
        a.replicas
            .iter()
            .all(|r| live.contains(r) && a.isr.contains(r))
    };
    let replicas = load(state, &live, |a| a.replicas.clone());

    // A partition short of replicas (a broker was removed while no other
    // could take its place): the live broker holding the fewest joins it,
    // copying the leader's local tail only.
    for (key, a) in &state.assignments {
        let Some(wanted) = wanted(key) else { continue };
        if a.replicas.len() >= wanted || !healthy(a) {
            continue;
        }
        let Some(add) = live
            .iter()
            .filter(|n| !a.replicas.contains(n))
            .min_by_key(|n| (replicas.get(n).copied().unwrap_or(0), **n))
        else {
            continue;
        };
        let mut grown = a.replicas.clone();
        grown.push(*add);
        return Some(Move::SetReplicas {
            partition: key.clone(),
            epoch: a.leader_epoch,
            replicas: grown,
        });
    }
    // A partition that grew by a replica: drop its busiest follower once
    // the new one is in sync.
    for (key, a) in &state.assignments {
        let Some(wanted) = wanted(key) else { continue };
        if a.replicas.len() <= wanted || !healthy(a) {
            continue;
        }
        let Some(drop) = a
            .replicas
            .iter()
            .skip(1)
            .max_by_key(|r| (replicas.get(r).copied().unwrap_or(0), **r))
        else {
            continue;
        };
        return Some(Move::SetReplicas {
            partition: key.clone(),
            epoch: a.leader_epoch,
            replicas: a.replicas.iter().copied().filter(|r| r != drop).collect(),
        });
    }
    // Replicas: from the broker holding the most to the one holding the fewest.
    let (busiest, idlest) = extremes(&replicas)?;
    if replicas[&busiest] >= replicas[&idlest] + 2 {
        let candidate = state.assignments.iter().find(|(key, a)| {
            healthy(a)
                && wanted(key) == Some(a.replicas.len())
                && a.leader != busiest
                && a.replicas.contains(&busiest)
                && !a.replicas.contains(&idlest)
        });
        if let Some((key, a)) = candidate {
            let mut grown = a.replicas.clone();
            grown.push(idlest);
            return Some(Move::SetReplicas {
                partition: key.clone(),
                epoch: a.leader_epoch,
                replicas: grown,
            });
        }
    }
    // Leaderships: to the broker leading the fewest, from any leading two
    // more, where it is an in-sync replica.
    let leaders = load(state, &live, |a| vec![a.leader]);
    let (_, idlest) = extremes(&leaders)?;
    let busy = |n: &NodeId| leaders.get(n).is_some_and(|c| *c >= leaders[&idlest] + 2);
    state
        .assignments
        .iter()
        .find(|(_, a)| busy(&a.leader) && healthy(a) && a.isr.contains(&idlest))
        .map(|(key, a)| Move::Lead {
            partition: key.clone(),
            epoch: a.leader_epoch,
            from: a.leader,
            to: idlest,
        })
}

/// Topics by the prefix of their partitions' keys (`tenant/topic/id`).
fn topics_by_prefix(state: &ClusterState) -> HashMap<String, &TopicMeta> {
    state
        .metadata
        .all_topics()
        .filter_map(|t| {
            let key = strata_broker::partition_key(t, 0);
            let (prefix, _) = key.rsplit_once('/')?;
            Some((prefix.to_string(), t))
        })
        .collect()
}

/// How many of `of(assignment)` each live broker is, zero included.
fn load(
    state: &ClusterState,
    live: &BTreeSet<NodeId>,
    of: impl Fn(&Assignment) -> Vec<NodeId>,
) -> BTreeMap<NodeId, usize> {
    let mut counts: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
    for a in state.assignments.values() {
        for n in of(a) {
            if let Some(c) = counts.get_mut(&n) {
                *c += 1;
            }
        }
    }
    counts
}

/// The brokers with the most and the fewest (ties: the lowest id).
fn extremes(counts: &BTreeMap<NodeId, usize>) -> Option<(NodeId, NodeId)> {
    let busiest = counts
        .iter()
        .max_by_key(|(n, c)| (**c, std::cmp::Reverse(**n)))?;
    let idlest = counts.iter().min_by_key(|(n, c)| (**c, **n))?;
    Some((*busiest.0, *idlest.0))
}

/// One round on the metadata leader: makes the next move, if any, unless a
/// partition waits for an election.
pub async fn round(node: &MetaNode, now_ms: i64) {
    if node.status().leader != Some(node.id()) {
        return;
    }
    let next = node.read(|s| {
        if election::any_vacancy(s, now_ms) {
            None
        } else {
            next_move(s, now_ms)
        }
    });
    match next {
        None => {}
        Some(Move::SetReplicas {
            partition,
            epoch,
            replicas,
        }) => {
            let command = Command::SetReplicas {
                partition: partition.clone(),
                leader_epoch: epoch,
                replicas: replicas.clone(),
            };
            match node.write(command).await {
                Ok(_) => info!(partition, ?replicas, "rebalance: replicas changed"),
                Err(e) => warn!(partition, error = %e.message, "rebalance: replicas not changed"),
            }
        }
        Some(Move::Lead {
            partition,
            epoch,
            from,
            to,
        }) => hand_off(node, partition, epoch, from, to, now_ms).await,
    }
}

async fn hand_off(
    node: &MetaNode,
    partition: String,
    epoch: u64,
    from: NodeId,
    to: NodeId,
    now_ms: i64,
) {
    let Some((addr, vacancy)) = node.read(|s| {
        let addr = s.brokers.get(&from)?.peer_addr.clone();
        Some((addr, election::vacancy_of(s, &partition, now_ms)?))
    }) else {
        return;
    };
    let op = PartitionOp::HandOff {
        partition_key: partition.clone(),
        epoch,
        to,
        wait: HANDOFF_WAIT,
    };
    match node.forward_partition_op(&addr, &op).await {
        Ok(PartitionReply::HandedOff(end)) => {
            info!(
                partition,
                from, to, end, "rebalance: handing the leadership over"
            );
            election::elect(node, vacancy, Some(to)).await;
        }
        Ok(other) => warn!(partition, ?other, "rebalance: unexpected handoff answer"),
        Err(e) => warn!(partition, from, to, error = %e.message, "rebalance: no handoff"),
    }
}

#[cfg(test)]
mod tests {
    use strata_broker::{MetadataChange, TopicConfig};

    use super::*;
    use crate::types::BrokerInfo;

    /// Brokers 1..=n, live at 10 000; one topic `t` of `partitions`
    /// partitions with replication factor `rf`.
    fn cluster(n: u64, partitions: u32, rf: u32) -> ClusterState {
        let mut s = ClusterState::default();
        for id in 1..=n {
            s.brokers.insert(
                id,
                BrokerInfo {
                    node_id: id,
                    peer_addr: format!("127.0.0.1:{id}"),
                    api_addr: String::new(),
                    kafka_addr: None,
                    zone: String::new(),
                    roles: vec!["broker".into()],
                    last_heartbeat_ms: 10_000,
                },
            );
        }
        let topic = TopicMeta {
            tenant: "default".into(),
            name: "t".into(),
            id: 1,
            partitions,
            replication_factor: rf,
            config: TopicConfig::default(),
            created_ms: 0,
        };
        let placement =
            crate::placement::place(&s, (0..partitions).map(|p| (p, rf as usize)), 10_000)
                .into_iter()
                .collect();
        s.apply(&Command::Metadata {
            change: MetadataChange::CreateTopic { topic },
            placement,
        });
        // Everyone in sync.
        for a in s.assignments.values_mut() {
            a.isr = a.replicas.clone();
        }
        s
    }

    /// Applies `m` as the cluster would once it is done: replicas set (and
    /// in sync at once), or the leadership handed over.
    fn apply(s: &mut ClusterState, m: &Move) {
        match m {
            Move::SetReplicas {
                partition,
                epoch,
                replicas,
            } => {
                let reply = s.apply(&Command::SetReplicas {
                    partition: partition.clone(),
                    leader_epoch: *epoch,
                    replicas: replicas.clone(),
                });
                assert!(
                    matches!(reply, crate::types::Reply::Applied(_)),
                    "{reply:?}"
                );
                let a = s.assignments.get_mut(partition).unwrap();
                a.isr = a.replicas.clone();
            }
            Move::Lead {
                partition,
                epoch,
                to,
                ..
            } => {
                let reply = s.apply(&Command::ElectLeader {
                    partition: partition.clone(),
                    from_epoch: *epoch,
                    leader: *to,
                });
                assert!(
                    matches!(reply, crate::types::Reply::Applied(_)),
                    "{reply:?}"
                );
            }
        }
    }

    fn counts(s: &ClusterState, of: impl Fn(&Assignment) -> Vec<NodeId>) -> Vec<usize> {
        let live: BTreeSet<NodeId> = s.brokers.keys().copied().collect();
        load(s, &live, of).into_values().collect()
    }

    /// Broker `id` joins, like broker 1.
    fn join(s: &mut ClusterState, id: NodeId) {
        let mut joined = s.brokers[&1].clone();
        joined.node_id = id;
        s.brokers.insert(id, joined);
    }

    #[test]
    fn a_joining_broker_gets_replicas_then_leaderships() {
        let mut s = cluster(3, 6, 3);
        assert_eq!(next_move(&s, 10_100), None, "balanced already");
        join(&mut s, 4);
        let mut moves = 0;
        while let Some(m) = next_move(&s, 10_100) {
            apply(&mut s, &m);
            moves += 1;
            assert!(moves < 50, "no convergence");
            for a in s.assignments.values() {
                assert!(a.replicas.len() == 3 || a.replicas.len() == 4, "{a:?}");
                assert_eq!(a.replicas.first(), Some(&a.leader));
            }
        }
        for a in s.assignments.values() {
            assert_eq!(a.replicas.len(), 3, "back to the replication factor: {a:?}");
        }
        let replicas = counts(&s, |a| a.replicas.clone());
        assert_eq!(replicas.iter().sum::<usize>(), 18);
        assert!(
            replicas.iter().max().unwrap() - replicas.iter().min().unwrap() <= 1,
            "{replicas:?}"
        );
        let leaders = counts(&s, |a| vec![a.leader]);
        assert!(
            leaders.iter().max().unwrap() - leaders.iter().min().unwrap() <= 1,
            "{leaders:?}"
        );
        assert!(leaders[3] >= 1, "the new broker leads: {leaders:?}");
    }

    #[test]
    fn a_partition_short_of_replicas_gets_them_back_from_a_new_broker() {
        let mut s = cluster(3, 2, 3);
        // Broker 3 is removed with no other to take its place: two replicas each.
        s.brokers.remove(&3);
        for a in s.assignments.values_mut() {
            a.replicas.retain(|r| *r != 3);
            a.isr.retain(|r| *r != 3);
            if a.leader == 3 {
                a.leader = a.replicas[0];
            }
        }
        assert_eq!(
            next_move(&s, 10_100),
            None,
            "two live brokers: two replicas is all"
        );
        join(&mut s, 4);
        let mut moves = 0;
        while let Some(m) = next_move(&s, 10_100) {
            apply(&mut s, &m);
            moves += 1;
            assert!(moves < 20, "no convergence");
        }
        for a in s.assignments.values() {
            assert_eq!(a.replicas.len(), 3, "{a:?}");
            assert!(a.replicas.contains(&4), "{a:?}");
        }
    }

    #[test]
    fn nothing_moves_while_a_replica_is_out_of_sync_or_down() {
        let mut s = cluster(3, 6, 3);
        join(&mut s, 4);
        let Some(Move::SetReplicas {
            partition,
            epoch,
            replicas,
        }) = next_move(&s, 10_100)
        else {
            panic!("a replica should move first");
        };
        s.apply(&Command::SetReplicas {
            partition: partition.clone(),
            leader_epoch: epoch,
            replicas,
        });
        // The new replica is not in sync yet: the partition keeps four.
        let m = next_move(&s, 10_100);
        assert!(
            !matches!(&m, Some(Move::SetReplicas { partition: p, .. }) if *p == partition),
            "{m:?}"
        );
        // A broker down: its partitions are left alone.
        s.brokers.get_mut(&2).unwrap().last_heartbeat_ms = 0;
        if let Some(Move::SetReplicas { partition: p, .. } | Move::Lead { partition: p, .. }) =
            next_move(&s, 10_100)
        {
            assert!(!s.assignments[&p].replicas.contains(&2), "{p}");
        }
    }
}
