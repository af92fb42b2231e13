//! Where new partitions go: spread over the live brokers and their zones,
//! each new partition led by the broker that leads the fewest so far.
//! Pure: the proposer computes a placement from its view and the command
//! carries it, so applying the command stays deterministic.

use std::collections::{BTreeMap, BTreeSet};

use crate::machine::ClusterState;
use crate::types::{BrokerInfo, NodeId};

/// A broker whose last heartbeat is older than this is down: it is given no
/// new partitions, and the replicated partitions it leads get new leaders.
/// Brokers renew it every [`HEARTBEAT_INTERVAL_MS`]; a dead leader is
/// replaced within about a lease plus an election round.
pub const LIVENESS_LEASE_MS: i64 = 1_500;

/// How often a broker renews its lease.
pub const HEARTBEAT_INTERVAL_MS: u64 = 300;

/// Whether `broker` serves partitions and its lease is current at `now_ms`.
pub fn is_live_broker(broker: &BrokerInfo, now_ms: i64) -> bool {
    broker.roles.iter().any(|r| r == "broker")
        && now_ms - broker.last_heartbeat_ms < LIVENESS_LEASE_MS
}

/// How many partitions each node leads.
pub fn leader_counts(state: &ClusterState) -> BTreeMap<NodeId, usize> {
    let mut counts = BTreeMap::new();
    for a in state.assignments.values() {
        *counts.entry(a.leader).or_default() += 1;
    }
    counts
}

/// How many brokers are live at `now_ms`.
pub fn live_brokers(state: &ClusterState, now_ms: i64) -> usize {
    state
        .brokers
        .values()
        .filter(|b| is_live_broker(b, now_ms))
        .count()
}

/// Replicas (leader first) for each of `partitions`, given with the number
/// of replicas it should have (at most the live brokers), over the brokers
/// live at `now_ms`; empty when none is.
pub fn place(
    state: &ClusterState,
    partitions: impl IntoIterator<Item = (u32, usize)>,
    now_ms: i64,
) -> BTreeMap<u32, Vec<NodeId>> {
    let live: Vec<&BrokerInfo> = state
        .brokers
        .values()
        .filter(|b| is_live_broker(b, now_ms))
        .collect();
    let mut out = BTreeMap::new();
    if live.is_empty() {
        return out;
    }
    let mut load = leader_counts(state);
    for (partition, wanted) in partitions {
        let wanted = wanted.clamp(1, live.len());
        let leader = live
            .iter()
            .min_by_key(|b| (load.get(&b.node_id).copied().unwrap_or(0), b.node_id))
            .map(|b| b.node_id);
        let Some(leader) = leader else { break };
        *load.entry(leader).or_default() += 1;
        let mut replicas = vec![leader];
        let mut zones: BTreeSet<&str> = live
            .iter()
            .filter(|b| b.node_id == leader)
            .map(|b| b.zone.as_str())
            .collect();
        // Followers: other zones first, then anyone, the least loaded first.
        let mut others: Vec<&&BrokerInfo> = live.iter().filter(|b| b.node_id != leader).collect();
        others.sort_by_key(|b| (load.get(&b.node_id).copied().unwrap_or(0), b.node_id));
        for pass in 0..2 {
            for b in &others {
                if replicas.len() >= wanted || replicas.contains(&b.node_id) {
                    continue;
                }
                if pass == 0 && zones.contains(b.zone.as_str()) {
                    continue;
                }
                zones.insert(b.zone.as_str());
                replicas.push(b.node_id);
            }
        }
        out.insert(partition, replicas);
    }
    out
}

/// Placements for every partition of every topic that has none yet, keyed
/// by log partition key; empty when none is missing or no broker is live.
pub fn unplaced(state: &ClusterState, now_ms: i64) -> Vec<(String, Vec<NodeId>)> {
    let live = live_brokers(state, now_ms);
    let missing: Vec<(String, usize)> = state
        .metadata
        .all_topics()
        .flat_map(|t| {
            (0..t.partitions)
                .map(move |p| (strata_broker::partition_key(t, p), t.replicas_wanted(live)))
        })
        .filter(|(key, _)| !state.assignments.contains_key(key))
        .collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let placed = place(
        state,
        (0u32..).zip(missing.iter().map(|(_, wanted)| *wanted)),
        now_ms,
    );
    missing
        .into_iter()
        .map(|(key, _)| key)
        .zip(placed.into_values())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: NodeId, zone: &str, at: i64) -> BrokerInfo {
        BrokerInfo {
            node_id: id,
            peer_addr: String::new(),
            api_addr: String::new(),
            kafka_addr: None,
            zone: zone.into(),
            roles: vec!["meta".into(), "broker".into()],
            last_heartbeat_ms: at,
        }
    }

    #[test]
    fn spreads_leaders_and_zones_and_skips_dead_brokers() {
        let mut state = ClusterState::default();
        for (id, zone) in [(1, "a"), (2, "a"), (3, "b"), (4, "c")] {
            state.brokers.insert(id, broker(id, zone, 10_000));
        }
        // Node 4 missed its lease.
        state.brokers.get_mut(&4).unwrap().last_heartbeat_ms = 0;
        let placed = place(&state, (0..6).map(|p| (p, 3)), 10_500);
        let mut leaders = BTreeMap::new();
        for replicas in placed.values() {
            assert_eq!(replicas.len(), 3);
            assert!(!replicas.contains(&4));
            let zones: BTreeSet<&str> = replicas
                .iter()
                .map(|r| state.brokers[r].zone.as_str())
                .collect();
            assert_eq!(zones.len(), 2, "both live zones used: {replicas:?}");
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), [2, 2, 2]);
        // No live broker (or only meta nodes): no placement.
        assert!(place(&state, [(0, 3)], 100_000).is_empty());
    }

    #[test]
    fn each_partition_gets_the_replicas_it_asks_for_up_to_the_live_brokers() {
        let mut state = ClusterState::default();
        for id in 1..=4 {
            state.brokers.insert(id, broker(id, "a", 10_000));
        }
        let placed = place(&state, [(0, 1), (1, 2), (2, 4), (3, 9), (4, 0)], 10_500);
        let sizes: Vec<usize> = placed.values().map(Vec::len).collect();
        assert_eq!(sizes, [1, 2, 4, 4, 1]);
        for replicas in placed.values() {
            let distinct: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(distinct.len(), replicas.len(), "{replicas:?}");
        }
    }
}
