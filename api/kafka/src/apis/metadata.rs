//! Metadata: the brokers, and the tenant's topics with their partitions.
//!
//! Every live broker with a Kafka listener is listed (a single node lists
//! itself); each partition has one replica, its leader, which is where
//! clients send its produces and fetches. This node answers as controller.

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_broker::TopicMeta;

use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;
use crate::topics::{self, topic_uuid};

/// "Not requested" for the authorized-operations fields.
const OPERATIONS_UNKNOWN: i32 = i32::MIN;

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let config = &shared.config;
    let brokers = cluster::brokers(shared)
        .into_iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(b.id)
                .with_host(b.host)
                .with_port(b.port)
                .with_rack(b.rack)
        })
        .collect();
    // v0 asks for every topic with an empty list; v1+ with null.
    let wanted = match request.topics {
        Some(list) if !(version == 0 && list.is_empty()) => Some(list),
        _ => None,
    };
    // v0-3 always allow auto-creation (the flag came in v4).
    let allow_create = version < 4 || request.allow_auto_topic_creation;
    let mut topics = Vec::new();
    match wanted {
        None => match shared.broker.list_topics(&session.tenant).await {
            Ok(list) => topics.extend(list.iter().map(|t| describe(shared, t))),
            Err(e) => tracing::warn!(error = %e, "metadata: cannot list topics"),
        },
        Some(list) => {
            let mut all: Option<Vec<TopicMeta>> = None;
            for wanted in list {
                let name = match wanted.name {
                    Some(name) => name.0.to_string(),
                    None => {
                        // v10+: by topic id.
                        if all.is_none() {
                            all = shared.broker.list_topics(&session.tenant).await.ok();
                        }
                        match all
                            .iter()
                            .flatten()
                            .find(|t| topic_uuid(t) == wanted.topic_id)
                        {
                            Some(t) => t.name.clone(),
                            None => {
                                topics.push(
                                    MetadataResponseTopic::default()
                                        .with_error_code(errors::UNKNOWN_TOPIC_ID)
                                        .with_topic_id(wanted.topic_id),
                                );
                                continue;
                            }
                        }
                    }
                };
                let topic =
                    match topics::get_or_create(shared, &session.tenant, &name, allow_create).await
                    {
                        Ok(t) => describe(shared, &t),
                        Err(e) => MetadataResponseTopic::default()
                            .with_error_code(errors::code(&e))
                            .with_name(Some(TopicName(StrBytes::from_string(name)))),
                    };
                topics.push(topic);
            }
        }
    }
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(StrBytes::from_string(config.cluster_id.clone())))
        .with_controller_id(cluster::this_node(shared))
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_UNKNOWN)
}

/// A topic's partitions with their leaders, replicas and in-sync replicas
/// (on a single node, the node itself is all three).
fn describe(shared: &Shared, topic: &TopicMeta) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .map(|p| {
            let leader = cluster::leader(shared, topic, p);
            let (replicas, isr) = match shared.broker.replicas_of(topic, p) {
                Some((replicas, isr)) if !replicas.is_empty() => (
                    replicas.into_iter().map(cluster::broker_id).collect(),
                    isr.into_iter().map(cluster::broker_id).collect(),
                ),
                _ => (vec![leader.id], vec![leader.id]),
            };
            MetadataResponsePartition::default()
                .with_partition_index(i32::try_from(p).unwrap_or(i32::MAX))
                .with_leader_id(leader.id)
                .with_leader_epoch(leader.epoch)
                .with_replica_nodes(replicas)
                .with_isr_nodes(isr)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(topics::name(topic))))
        .with_topic_id(topic_uuid(topic))
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_UNKNOWN)
}
