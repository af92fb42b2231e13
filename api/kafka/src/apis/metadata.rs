//! Metadata: this broker, and the tenant's topics with their partitions
//! (every partition is led by this broker, its only replica).

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_broker::TopicMeta;

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
    let node = BrokerId(config.node_id);
    let broker = MetadataResponseBroker::default()
        .with_node_id(node)
        .with_host(StrBytes::from_string(config.advertised_host.clone()))
        .with_port(i32::from(config.advertised_port));
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
        .with_brokers(vec![broker])
        .with_cluster_id(Some(StrBytes::from_string(config.cluster_id.clone())))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(OPERATIONS_UNKNOWN)
}

fn describe(shared: &Shared, topic: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(shared.config.node_id);
    let partitions = (0..topic.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(i32::try_from(p).unwrap_or(i32::MAX))
                .with_leader_id(node)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(topics::name(topic))))
        .with_topic_id(topic_uuid(topic))
        .with_partitions(partitions)
        .with_topic_authorized_operations(OPERATIONS_UNKNOWN)
}
