//! The cluster as Kafka clients see it: the brokers Metadata and
//! DescribeCluster list, who leads each partition, and who coordinates each
//! consumer group.
//!
//! A single node is a cluster of one: the broker lists no endpoints, and
//! this node (its id from the broker, its address from the listener's
//! advertised host and port) is the only broker, the leader of every
//! partition and the coordinator of every group. In a cluster, Kafka
//! clients follow Metadata and FindCoordinator: a request for a partition
//! led elsewhere gets NOT_LEADER_OR_FOLLOWER, one for a group coordinated
//! elsewhere NOT_COORDINATOR, and nothing is forwarded.

use kafka_protocol::messages::BrokerId;
use kafka_protocol::protocol::StrBytes;
use strata_broker::{BrokerEndpoint, PartitionLeader, TopicMeta};
use strata_log::Partition;

use crate::context::Shared;
use crate::errors;

/// A broker as Kafka clients reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KafkaBroker {
    pub id: BrokerId,
    pub host: StrBytes,
    pub port: i32,
    pub rack: Option<StrBytes>,
}

/// The Kafka broker id of a node; -1 (Kafka's "no broker") for an id that
/// does not fit Kafka's 32 bits.
pub(crate) fn broker_id(node_id: u64) -> BrokerId {
    BrokerId(i32::try_from(node_id).unwrap_or(-1))
}

/// This node's Kafka broker id: the broker's node id, everywhere ("this
/// broker" in Metadata, DescribeCluster, FindCoordinator, DescribeConfigs).
pub(crate) fn this_node(shared: &Shared) -> BrokerId {
    broker_id(shared.broker.node_id())
}

/// A leader epoch for the wire.
fn wire_epoch(epoch: u64) -> i32 {
    i32::try_from(epoch).unwrap_or(i32::MAX)
}

/// This node, at the listener's advertised address.
pub(crate) fn this_broker(shared: &Shared) -> KafkaBroker {
    KafkaBroker {
        id: this_node(shared),
        host: StrBytes::from_string(shared.config.advertised_host.clone()),
        port: i32::from(shared.config.advertised_port),
        rack: None,
    }
}

/// The brokers clients may connect to, by id: every live broker with a
/// Kafka listener, or only this node when the broker lists none (a single
/// node). This node is always listed: it is serving Kafka clients now.
pub(crate) fn brokers(shared: &Shared) -> Vec<KafkaBroker> {
    let endpoints = shared.broker.broker_endpoints();
    if endpoints.is_empty() {
        return vec![this_broker(shared)];
    }
    let mut listed: Vec<KafkaBroker> = endpoints.iter().filter_map(kafka_broker).collect();
    let me = this_node(shared);
    if !listed.iter().any(|b| b.id == me) {
        listed.push(this_broker(shared));
    }
    listed.sort_by_key(|b| b.id.0);
    listed.dedup_by_key(|b| b.id.0);
    listed
}

/// The broker with Kafka id `id` among `brokers`.
pub(crate) fn find(brokers: &[KafkaBroker], id: BrokerId) -> Option<&KafkaBroker> {
    brokers.iter().find(|b| b.id == id)
}

/// A live broker as a Kafka broker; `None` if it has no Kafka listener, or
/// one that cannot be advertised (logged).
fn kafka_broker(endpoint: &BrokerEndpoint) -> Option<KafkaBroker> {
    let addr = endpoint.kafka_addr.as_deref()?;
    let Some((host, port)) = parse_host_port(addr) else {
        tracing::warn!(
            node_id = endpoint.node_id,
            kafka_addr = addr,
            "a broker's advertised Kafka address is not host:port; leaving it out of Metadata"
        );
        return None;
    };
    let id = broker_id(endpoint.node_id);
    if id.0 < 0 {
        tracing::warn!(
            node_id = endpoint.node_id,
            "a broker's node id does not fit a Kafka broker id; leaving it out of Metadata"
        );
        return None;
    }
    Some(KafkaBroker {
        id,
        host: StrBytes::from_string(host),
        port,
        rack: (!endpoint.zone.is_empty()).then(|| StrBytes::from_string(endpoint.zone.clone())),
    })
}

/// `host:port` as the host (an IPv6 address without brackets, as Kafka
/// advertises it) and the port; `None` unless the host is non-empty and the
/// port is 1-65535. An IPv6 host is bracketed (`[::1]:9092`), or bare if
/// what precedes the last `:` is a whole IPv6 address (`::1:9092`).
pub(crate) fn parse_host_port(addr: &str) -> Option<(String, i32)> {
    let (host, port) = addr.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(']') => return None,
        None if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() => return None,
        None => host,
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some((host.to_string(), i32::from(port)))
}

/// Who leads a partition, for the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leader {
    pub id: BrokerId,
    pub epoch: i32,
    /// Whether the leader is this node.
    pub here: bool,
}

/// The leader of `partition` of `topic`.
pub(crate) fn leader(shared: &Shared, topic: &TopicMeta, partition: u32) -> Leader {
    match shared.broker.leader_of(topic, partition) {
        PartitionLeader::Local { epoch } => Leader {
            id: this_node(shared),
            epoch: wire_epoch(epoch),
            here: true,
        },
        PartitionLeader::Remote { node_id, epoch } => Leader {
            id: broker_id(node_id),
            epoch: wire_epoch(epoch),
            here: false,
        },
    }
}

/// A partition this node serves: its number, its log partition and the
/// leader epoch.
pub(crate) struct Served {
    pub index: u32,
    pub log: Partition,
    pub epoch: i32,
}

/// Why a partition is not served here.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub code: i16,
    pub message: String,
    /// The partition's leader, when it is another node (NOT_LEADER_OR_FOLLOWER).
    pub leader: Option<Leader>,
}

/// Partition `index` of `topic`, if this node leads it: UNKNOWN_TOPIC_OR_PARTITION
/// for a partition the topic does not have, NOT_LEADER_OR_FOLLOWER (with
/// the leader) for one led by another node. The local log is not touched
/// unless this node leads the partition.
pub(crate) async fn serve_here(
    shared: &Shared,
    topic: &TopicMeta,
    index: i32,
) -> Result<Served, Refused> {
    let unknown = || Refused {
        code: errors::UNKNOWN_TOPIC_OR_PARTITION,
        message: format!(
            "topic {:?} has no partition {index} (partitions 0..{})",
            topic.name, topic.partitions
        ),
        leader: None,
    };
    let partition = match u32::try_from(index) {
        Ok(p) if p < topic.partitions => p,
        _ => return Err(unknown()),
    };
    let leader = leader(shared, topic, partition);
    if !leader.here {
        return Err(Refused {
            code: errors::NOT_LEADER_OR_FOLLOWER,
            message: format!(
                "partition {index} of topic {:?} is led by broker {}, not this one ({})",
                topic.name,
                leader.id.0,
                this_node(shared).0
            ),
            leader: Some(leader),
        });
    }
    let log = match shared.broker.log_partition(topic, partition) {
        Ok(log) => log,
        // Led here but not in the log yet (a topic created, or a partition
        // assigned, through another node): bring the log up to the metadata.
        Err(_) => {
            if let Err(e) = shared.broker.sync_with_metadata().await {
                tracing::warn!(error = %e, "cannot bring the log up to the metadata");
            }
            shared
                .broker
                .log_partition(topic, partition)
                .map_err(|_| unknown())?
        }
    };
    Ok(Served {
        index: partition,
        log,
        epoch: leader.epoch,
    })
}

/// Whether this node coordinates consumer group `group` (every node agrees
/// on one coordinator per group, chosen by the group's hash).
pub(crate) fn coordinates(shared: &Shared, group: &str) -> bool {
    shared.broker.group_coordinator(group) == shared.broker.node_id()
}

#[cfg(test)]
mod tests;
