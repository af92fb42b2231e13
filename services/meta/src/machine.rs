//! The replicated state and how a command changes it: pure, with no I/O and
//! no clock, so every node reaches the same state from the same log and the
//! rules can be tested exhaustively.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_api::{ApiError, ErrorCode};
use strata_broker::{ChangeOutcome, MetadataChange, MetadataState};

use crate::types::{BrokerInfo, Command, NodeId, Reply};

/// Everything the metadata group agrees on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Tenants, topics, configs, committed offsets, segment manifests.
    pub metadata: MetadataState,
    /// Known brokers by node id.
    #[serde(default)]
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    /// Where each partition (by log partition key) is served.
    #[serde(default)]
    pub assignments: BTreeMap<String, Assignment>,
}

/// A partition's replicas and leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The nodes meant to hold it, the leader first. (Until partitions are
    /// replicated, only the leader holds the local tail.)
    pub replicas: Vec<NodeId>,
    pub leader: NodeId,
    /// Grows with every leader change, so a stale leader can be fenced.
    pub leader_epoch: u64,
    /// The replicas known to hold everything acknowledged. Until partitions
    /// are replicated this is the leader alone.
    #[serde(default)]
    pub isr: Vec<NodeId>,
}

impl ClusterState {
    /// Validates and applies `command`; a rejected command changes nothing.
    pub fn apply(&mut self, command: &Command) -> Reply {
        match self.try_apply(command) {
            Ok(outcome) => Reply::Applied(outcome),
            Err(e) => Reply::Rejected(e),
        }
    }

    fn try_apply(&mut self, command: &Command) -> Result<ChangeOutcome, ApiError> {
        match command {
            Command::Metadata { change, placement } => {
                let outcome = self.metadata.apply(change)?;
                self.assign(change, placement);
                Ok(outcome)
            }
            Command::RegisterBroker { broker } => {
                if broker.node_id == 0 {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        "node id 0 is reserved; node ids start at 1",
                    ));
                }
                let mut broker = broker.clone();
                if let Some(known) = self.brokers.get(&broker.node_id) {
                    broker.last_heartbeat_ms =
                        broker.last_heartbeat_ms.max(known.last_heartbeat_ms);
                }
                self.brokers.insert(broker.node_id, broker);
                Ok(ChangeOutcome::Done)
            }
            Command::Heartbeat { node_id, at_ms } => {
                if let Some(broker) = self.brokers.get_mut(node_id) {
                    broker.last_heartbeat_ms = broker.last_heartbeat_ms.max(*at_ms);
                }
                Ok(ChangeOutcome::Done)
            }
            Command::RemoveBroker { node_id } => {
                let existed = self.brokers.remove(node_id).is_some();
                self.move_leadership_from(*node_id);
                Ok(ChangeOutcome::Existed(existed))
            }
            Command::Assign { placement } => {
                let known: std::collections::BTreeSet<String> = self
                    .metadata
                    .all_topics()
                    .flat_map(|t| (0..t.partitions).map(|p| strata_broker::partition_key(t, p)))
                    .collect();
                for (key, replicas) in placement {
                    if self.assignments.contains_key(key) || !known.contains(key) {
                        continue;
                    }
                    if let Some(&leader) = replicas.first() {
                        self.assignments.insert(
                            key.clone(),
                            Assignment {
                                replicas: replicas.clone(),
                                leader,
                                leader_epoch: 1,
                                isr: vec![leader],
                            },
                        );
                    }
                }
                Ok(ChangeOutcome::Done)
            }
            Command::ElectLeader {
                partition,
                from_epoch,
                leader,
            } => {
                let assignment = self.assignments.get_mut(partition).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::PartitionNotFound,
                        format!("partition {partition} has no assignment"),
                    )
                })?;
                if assignment.leader_epoch != *from_epoch {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        format!(
                            "partition {partition} is at leader epoch {}, not {from_epoch}: \
                             another election won",
                            assignment.leader_epoch
                        ),
                    ));
                }
                if !assignment.replicas.contains(leader) {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        format!("node {leader} is not a replica of partition {partition}"),
                    ));
                }
                assignment.leader = *leader;
                assignment.leader_epoch += 1;
                assignment.replicas.retain(|r| r != leader);
                assignment.replicas.insert(0, *leader);
                assignment.isr.retain(|r| r != leader);
                assignment.isr.insert(0, *leader);
                // Replicas of brokers that left the cluster are replaced.
                let brokers: Vec<NodeId> = self.brokers.keys().copied().collect();
                let counts = self.replica_counts_of();
                if let Some(assignment) = self.assignments.get_mut(partition) {
                    let gone: Vec<NodeId> = assignment
                        .replicas
                        .iter()
                        .copied()
                        .filter(|r| !brokers.contains(r))
                        .collect();
                    for node in gone {
                        replace_replica(assignment, node, &brokers, &counts);
                    }
                }
                Ok(ChangeOutcome::Done)
            }
            Command::SetReplicas {
                partition,
                leader_epoch,
                replicas,
            } => {
                let known: Vec<NodeId> = self.brokers.keys().copied().collect();
                let assignment = self.assignments.get_mut(partition).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::PartitionNotFound,
                        format!("partition {partition} has no assignment"),
                    )
                })?;
                check_replica_step(assignment, *leader_epoch, replicas, &known).map_err(|why| {
                    ApiError::new(
                        ErrorCode::BadRequest,
                        format!("cannot set the replicas of {partition} to {replicas:?}: {why}"),
                    )
                })?;
                assignment.replicas = replicas.clone();
                assignment.isr.retain(|r| replicas.contains(r));
                Ok(ChangeOutcome::Done)
            }
            Command::UpdateIsr {
                partition,
                leader_epoch,
                isr,
            } => {
                if let Some(a) = self.assignments.get_mut(partition)
                    && a.leader_epoch == *leader_epoch
                    && isr.first() == Some(&a.leader)
                    && isr.iter().all(|r| a.replicas.contains(r))
                {
                    a.isr = isr.clone();
                }
                Ok(ChangeOutcome::Done)
            }
            Command::Import { state } => {
                if self.metadata.all_topics().next().is_some() {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        "the metadata group already holds topics; an import only seeds an empty group",
                    ));
                }
                let mut state = (**state).clone();
                state.normalize();
                self.metadata = state;
                Ok(ChangeOutcome::Done)
            }
        }
    }

    /// Records the placement a successful topic change came with.
    fn assign(&mut self, change: &MetadataChange, placement: &[(u32, Vec<NodeId>)]) {
        match change {
            MetadataChange::CreateTopic { topic } | MetadataChange::UpdateTopic { topic } => {
                for partition in 0..topic.partitions {
                    let key = strata_broker::partition_key(topic, partition);
                    if self.assignments.contains_key(&key) {
                        continue;
                    }
                    if let Some((_, replicas)) = placement.iter().find(|(p, _)| *p == partition)
                        && let Some(&leader) = replicas.first()
                    {
                        let assignment = Assignment {
                            replicas: replicas.clone(),
                            leader,
                            leader_epoch: 1,
                            isr: vec![leader],
                        };
                        self.assignments.insert(key, assignment);
                    }
                }
            }
            MetadataChange::DeleteTopic { tenant, name } => {
                // Names cannot contain '/': the prefix is exactly this topic's.
                let prefix = format!("{tenant}/{name}/");
                self.assignments.retain(|key, _| !key.starts_with(&prefix));
            }
            _ => {}
        }
    }

    /// Takes `node` (gone from the cluster) out of every partition. A
    /// follower replica is replaced by the known broker holding the fewest
    /// partitions that is not a replica yet (it copies the tail from the
    /// leader; the history is in the bucket). A partition it led keeps it
    /// as leader until an election picks the replica holding the most (see
    /// `strata_broker::replication`); one with no other replica moves to the
    /// least-loaded broker at once, continuing from the bucket.
    fn move_leadership_from(&mut self, node: NodeId) {
        let mut load = crate::placement::leader_counts(self);
        load.remove(&node);
        let brokers: Vec<NodeId> = self.brokers.keys().copied().collect();
        let mut keys: Vec<String> = self.assignments.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let counts = self.replica_counts_of();
            let Some(assignment) = self.assignments.get_mut(&key) else {
                continue;
            };
            if !assignment.replicas.contains(&node) && assignment.leader != node {
                continue;
            }
            if assignment.leader != node {
                replace_replica(assignment, node, &brokers, &counts);
                continue;
            }
            if assignment.replicas.iter().any(|r| *r != node) {
                continue;
            }
            let next = brokers
                .iter()
                .copied()
                .min_by_key(|b| (load.get(b).copied().unwrap_or(0), *b));
            // No broker left: the partition keeps its (absent) leader.
            let Some(next) = next else { continue };
            *load.entry(next).or_default() += 1;
            assignment.leader = next;
            assignment.leader_epoch += 1;
            assignment.replicas = vec![next];
            assignment.isr = vec![next];
        }
    }

    /// How many partitions each node holds a replica of.
    fn replica_counts_of(&self) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for a in self.assignments.values() {
            for r in &a.replicas {
                *counts.entry(*r).or_default() += 1;
            }
        }
        counts
    }
}

/// Why `replicas` is not one safe step from `assignment`'s at `epoch`:
/// the same leader first, distinct known brokers, and exactly one added,
/// or one follower dropped while all that stay are in sync.
fn check_replica_step(
    assignment: &Assignment,
    epoch: u64,
    replicas: &[NodeId],
    known: &[NodeId],
) -> Result<(), String> {
    if assignment.leader_epoch != epoch {
        return Err(format!(
            "it is at leader epoch {}, not {epoch}",
            assignment.leader_epoch
        ));
    }
    if replicas.first() != Some(&assignment.leader) {
        return Err(format!(
            "the leader, node {}, must stay first",
            assignment.leader
        ));
    }
    let distinct: std::collections::BTreeSet<&NodeId> = replicas.iter().collect();
    if distinct.len() != replicas.len() || replicas.iter().any(|r| !known.contains(r)) {
        return Err("replicas must be distinct known brokers".into());
    }
    let old = &assignment.replicas;
    let added: Vec<&NodeId> = replicas.iter().filter(|r| !old.contains(r)).collect();
    let dropped: Vec<&NodeId> = old.iter().filter(|r| !replicas.contains(r)).collect();
    match (added.len(), dropped.len()) {
        (1, 0) => Ok(()),
        (0, 1) if replicas.iter().all(|r| assignment.isr.contains(r)) => Ok(()),
        (0, 1) => Err("a replica may leave only while every one that stays is in sync".into()),
        _ => Err("one replica is added or dropped at a time".into()),
    }
}

/// Swaps replica `gone` of `assignment` for the known broker holding the
/// fewest replicas that is not one already; drops it if there is none.
fn replace_replica(
    assignment: &mut Assignment,
    gone: NodeId,
    brokers: &[NodeId],
    counts: &BTreeMap<NodeId, usize>,
) {
    let substitute = brokers
        .iter()
        .copied()
        .filter(|b| *b != gone && !assignment.replicas.contains(b))
        .min_by_key(|b| (counts.get(b).copied().unwrap_or(0), *b));
    match (
        assignment.replicas.iter().position(|r| *r == gone),
        substitute,
    ) {
        (Some(i), Some(b)) => assignment.replicas[i] = b,
        (Some(i), None) => {
            assignment.replicas.remove(i);
        }
        (None, _) => {}
    }
    assignment.isr.retain(|r| *r != gone);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use strata_broker::{GroupOffset, MetadataChange, RemoteSegmentRef, TopicConfig, TopicMeta};

    use super::*;

    fn tenant() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["default", "acme", "x"]).prop_map(String::from)
    }

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b"]).prop_map(String::from)
    }

    fn change() -> impl Strategy<Value = MetadataChange> {
        let topic = || {
            (tenant(), name(), 1u64..3, 1u32..4).prop_map(|(tenant, name, id, partitions)| {
                TopicMeta {
                    tenant,
                    name,
                    id,
                    partitions,
                    replication_factor: 3,
                    config: TopicConfig::default(),
                    created_ms: 7,
                }
            })
        };
        let offsets = prop::collection::vec((name(), 0u32..3, 0u64..100), 0..4).prop_map(|v| {
            v.into_iter()
                .map(|(topic, partition, offset)| GroupOffset {
                    topic,
                    partition,
                    offset,
                    metadata: String::new(),
                })
                .collect::<Vec<_>>()
        });
        let partition = prop::sample::select(vec!["p", "q"]).prop_map(String::from);
        let segment = (0u64..6, 1u64..4, 0u8..3).prop_map(|(base, len, tag)| RemoteSegmentRef {
            base_offset: base * 10,
            end_offset: base * 10 + len * 10,
            key: format!("k{base}-{len}-{tag}"),
            size: 1,
            batch_bytes: 1,
            record_count: len * 10,
            first_timestamp: 0,
            max_timestamp: 0,
            last_append_ms: None,
            committed_ms: 0,
        });
        prop_oneof![
            tenant().prop_map(|tenant| MetadataChange::CreateTenant { tenant }),
            topic().prop_map(|topic| MetadataChange::CreateTopic { topic }),
            topic().prop_map(|topic| MetadataChange::UpdateTopic { topic }),
            (tenant(), name())
                .prop_map(|(tenant, name)| MetadataChange::DeleteTopic { tenant, name }),
            (tenant(), name(), offsets).prop_map(|(tenant, group, offsets)| {
                MetadataChange::CommitOffsets {
                    tenant,
                    group,
                    offsets,
                }
            }),
            (tenant(), name())
                .prop_map(|(tenant, group)| MetadataChange::DeleteGroup { tenant, group }),
            (partition.clone(), segment.clone()).prop_map(|(partition, segment)| {
                MetadataChange::CommitSegment { partition, segment }
            }),
            (partition.clone(), prop::collection::vec(segment, 1..4)).prop_map(
                |(partition, segments)| MetadataChange::CommitSegments {
                    partition,
                    segments
                }
            ),
            (partition.clone(), 0u64..80).prop_map(|(partition, offset)| {
                MetadataChange::RemoveSegmentsBelow { partition, offset }
            }),
            partition
                .clone()
                .prop_map(|partition| MetadataChange::DropManifest { partition }),
            (partition, 0u64..80).prop_map(|(partition, offset)| MetadataChange::AdvanceLogStart {
                partition,
                offset
            }),
            (1u32..2000).prop_map(|count| MetadataChange::AllocateProducerIds { count }),
        ]
    }

    fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            8 => (change(), prop::collection::vec((0u32..4, prop::collection::vec(1u64..4, 1..3)), 0..3))
                .prop_map(|(change, placement)| Command::Metadata { change, placement }),
            1 => (0u64..3, 0i64..100).prop_map(|(node_id, at)| Command::RegisterBroker {
                broker: BrokerInfo {
                    node_id,
                    peer_addr: format!("127.0.0.1:{node_id}"),
                    api_addr: String::new(),
                    kafka_addr: None,
                    zone: "z".into(),
                    roles: vec![],
                    last_heartbeat_ms: at,
                }
            }),
            1 => (0u64..3, 0i64..100).prop_map(|(node_id, at_ms)| Command::Heartbeat { node_id, at_ms }),
            1 => (0u64..3).prop_map(|node_id| Command::RemoveBroker { node_id }),
            1 => prop::collection::vec(
                (
                    (prop::sample::select(vec!["default", "acme"]), prop::sample::select(vec!["a", "b"]), 1u64..3, 0u32..3)
                        .prop_map(|(t, n, id, p)| format!("{t}/{n}/{id}/{p}")),
                    prop::collection::vec(1u64..4, 1..3),
                ),
                0..3,
            )
            .prop_map(|placement| Command::Assign { placement }),
            1 => (
                (prop::sample::select(vec!["default", "acme"]), prop::sample::select(vec!["a", "b"]), 1u64..3, 0u32..3)
                    .prop_map(|(t, n, id, p)| format!("{t}/{n}/{id}/{p}")),
                1u64..3,
                prop::collection::vec(1u64..4, 1..5),
            )
                .prop_map(|(partition, leader_epoch, replicas)| Command::SetReplicas {
                    partition,
                    leader_epoch,
                    replicas,
                }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every node applying the same log reaches the same state and the
        /// same replies; a rejected command changes nothing; a snapshot
        /// (the serialized state) restores exactly; manifests stay contiguous;
        /// heartbeats never move a broker's clock back.
        #[test]
        fn commands_apply_deterministically(commands in prop::collection::vec(command(), 1..60)) {
            let (mut a, mut b) = (ClusterState::default(), ClusterState::default());
            // Producer id blocks handed out so far: they never overlap.
            let mut blocks: Vec<(i64, i64)> = Vec::new();
            for command in &commands {
                // Commands travel and rest as JSON: they must come back as they were.
                let json = serde_json::to_vec(command).unwrap();
                let decoded: Command = serde_json::from_slice(&json).unwrap();
                prop_assert_eq!(&decoded, command);
                let before = a.clone();
                let noop = matches!(command, Command::Metadata { change, .. } if before.metadata.is_noop(change));
                let reply = a.apply(command);
                prop_assert_eq!(&reply, &b.apply(command));
                if let (
                    Reply::Applied(strata_broker::ChangeOutcome::ProducerIds(first)),
                    Command::Metadata { change: MetadataChange::AllocateProducerIds { count }, .. },
                ) = (&reply, command)
                {
                    let block = (*first, first + i64::from(*count));
                    prop_assert!(blocks.iter().all(|b| block.0 >= b.1 || block.1 <= b.0));
                    blocks.push(block);
                }
                prop_assert_eq!(&a, &b);
                if matches!(reply, Reply::Rejected(_)) || noop {
                    prop_assert_eq!(&a, &before);
                }
                if let Command::Heartbeat { node_id, .. } = command
                    && let Some(old) = before.brokers.get(node_id)
                {
                    prop_assert!(a.brokers[node_id].last_heartbeat_ms >= old.last_heartbeat_ms);
                }
                let json = serde_json::to_vec(&a).unwrap();
                let restored: ClusterState = serde_json::from_slice(&json).unwrap();
                prop_assert_eq!(&restored, &a);
                for (key, assignment) in &a.assignments {
                    prop_assert_eq!(Some(&assignment.leader), assignment.replicas.first(), "{}", key);
                    prop_assert!(assignment.isr.contains(&assignment.leader), "{}", key);
                }
                // A log start never moves back.
                for key in ["p", "q"] {
                    if let (Some(old), Some(new)) = (before.metadata.log_start(key), a.metadata.log_start(key))
                        && !matches!(command, Command::Metadata { change: MetadataChange::DropManifest { .. }, .. })
                    {
                        prop_assert!(new >= old);
                    }
                }
                for manifest in a.metadata.manifests().values() {
                    for pair in manifest.windows(2) {
                        prop_assert_eq!(pair[0].end_offset, pair[1].base_offset);
                    }
                }
            }
        }
    }

    #[test]
    fn replicas_change_one_safe_step_at_a_time() {
        let a = Assignment {
            replicas: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 4,
            isr: vec![1, 2, 3],
        };
        let known = [1, 2, 3, 4, 5];
        assert!(check_replica_step(&a, 4, &[1, 2, 3, 4], &known).is_ok());
        assert!(check_replica_step(&a, 4, &[1, 3], &known).is_ok());
        for (epoch, replicas, why) in [
            (3, vec![1, 2, 3, 4], "leader epoch"),
            (4, vec![2, 1, 3, 4], "must stay first"),
            (4, vec![1, 2, 3, 9], "known brokers"),
            (4, vec![1, 2, 3, 3], "distinct"),
            (4, vec![1, 2, 3, 4, 5], "one replica"),
            (4, vec![1, 2, 4], "one replica"),
            (4, vec![1], "one replica"),
        ] {
            let e = check_replica_step(&a, epoch, &replicas, &known).unwrap_err();
            assert!(e.contains(why), "{replicas:?}: {e}");
        }
        // A replica that is not in sync yet: nobody else may leave.
        let growing = Assignment {
            replicas: vec![1, 2, 3, 4],
            isr: vec![1, 2, 3],
            ..a
        };
        let e = check_replica_step(&growing, 4, &[1, 3, 4], &known).unwrap_err();
        assert!(e.contains("in sync"), "{e}");
        assert!(check_replica_step(&growing, 4, &[1, 2, 3], &known).is_ok());
    }

    #[test]
    fn import_only_seeds_an_empty_group() {
        let mut seeded = MetadataState::default();
        seeded
            .apply(&MetadataChange::CreateTopic {
                topic: TopicMeta {
                    tenant: "default".into(),
                    name: "t".into(),
                    id: 1,
                    partitions: 1,
                    replication_factor: 1,
                    config: TopicConfig::default(),
                    created_ms: 0,
                },
            })
            .unwrap();
        let mut state = ClusterState::default();
        let import = Command::Import {
            state: Box::new(seeded.clone()),
        };
        assert!(matches!(state.apply(&import), Reply::Applied(_)));
        assert_eq!(state.metadata, seeded);
        assert!(matches!(state.apply(&import), Reply::Rejected(_)));
    }
}
