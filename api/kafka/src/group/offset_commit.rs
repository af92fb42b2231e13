//! OffsetCommit (v2-8): stores a group's consumed positions.
//!
//! Partitions of unknown topics fail on their own; the others are checked
//! against the group's membership (a member of the current generation, or
//! a client outside group management committing for a group with no
//! members) and then stored in one broker call. A group coordinated by
//! another node gets NOT_COORDINATOR on every partition.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use strata_api::{ApiError, ErrorCode};
use strata_broker::GroupOffset;

use super::{group_name, instance_id};
use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;

/// Longest metadata string a committed offset may carry (Kafka's
/// `offset.metadata.max.bytes`).
const MAX_METADATA_BYTES: usize = 4096;

/// The Kafka error for a topic that cannot take commits.
fn topic_error(e: &ApiError) -> i16 {
    match e.code {
        // Kafka knows no invalid topic names here, only unknown topics.
        ErrorCode::InvalidName => errors::UNKNOWN_TOPIC_OR_PARTITION,
        _ => errors::code(e),
    }
}

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: OffsetCommitRequest,
    version: i16,
) -> OffsetCommitResponse {
    let tenant = session.tenant.as_str();
    let group = group_name(&request.group_id);
    if strata_broker::validate_group(&group).is_ok() && !cluster::coordinates(shared, &group) {
        return every_partition(request, errors::NOT_COORDINATOR);
    }
    // Partition counts (or the error) of each topic named.
    let mut topics: HashMap<String, Result<u32, i16>> = HashMap::new();
    for topic in &request.topics {
        if let Entry::Vacant(slot) = topics.entry(topic.name.0.to_string()) {
            let found = shared.broker.topic_meta(tenant, slot.key()).await;
            slot.insert(found.map(|t| t.partitions).map_err(|e| topic_error(&e)));
        }
    }

    // One error slot per partition, in request order; `commits` are the
    // slots that passed the topic check, with what they would store.
    let mut errors_by_topic: Vec<Vec<i16>> = Vec::with_capacity(request.topics.len());
    let mut commits: Vec<((usize, usize), GroupOffset)> = Vec::new();
    for (t, topic) in request.topics.iter().enumerate() {
        let name = topic.name.0.as_str();
        let known = topics
            .get(name)
            .copied()
            .unwrap_or(Err(errors::UNKNOWN_TOPIC_OR_PARTITION));
        let mut slots = Vec::with_capacity(topic.partitions.len());
        for (p, partition) in topic.partitions.iter().enumerate() {
            let index = u32::try_from(partition.partition_index).ok();
            let error = match (known, index) {
                (Err(e), _) => e,
                (Ok(count), Some(i)) if i < count => {
                    let metadata = partition.committed_metadata.as_deref().unwrap_or_default();
                    match u64::try_from(partition.committed_offset) {
                        Ok(offset) => {
                            commits.push((
                                (t, p),
                                GroupOffset {
                                    topic: name.to_string(),
                                    partition: i,
                                    offset,
                                    metadata: metadata.to_string(),
                                },
                            ));
                            errors::NONE
                        }
                        // A negative offset cannot be stored.
                        Err(_) => errors::INVALID_REQUEST,
                    }
                }
                (Ok(_), _) => errors::UNKNOWN_TOPIC_OR_PARTITION,
            };
            slots.push(error);
        }
        errors_by_topic.push(slots);
    }

    if !commits.is_empty() {
        let instance = if version >= 7 {
            instance_id(request.group_instance_id.as_ref())
        } else {
            None
        };
        let allowed = if strata_broker::validate_group(&group).is_err() {
            Err(errors::INVALID_GROUP_ID)
        } else {
            shared.groups.check_commit(
                tenant,
                &group,
                &request.member_id,
                instance.as_deref(),
                request.generation_id_or_member_epoch,
            )
        };
        let mut set = |slot: (usize, usize), error: i16| {
            if let Some(e) = errors_by_topic
                .get_mut(slot.0)
                .and_then(|t| t.get_mut(slot.1))
            {
                *e = error;
            }
        };
        match allowed {
            Err(error) => {
                for (slot, _) in &commits {
                    set(*slot, error);
                }
            }
            Ok(()) => {
                let mut offsets = Vec::with_capacity(commits.len());
                let mut stored = Vec::with_capacity(commits.len());
                for (slot, offset) in commits {
                    if offset.metadata.len() > MAX_METADATA_BYTES {
                        set(slot, errors::OFFSET_METADATA_TOO_LARGE);
                    } else {
                        offsets.push(offset);
                        stored.push(slot);
                    }
                }
                if !offsets.is_empty()
                    && let Err(e) = shared.broker.commit_offsets(tenant, &group, offsets).await
                {
                    let error = topic_error(&e);
                    for slot in stored {
                        set(slot, error);
                    }
                }
            }
        }
    }

    let topics = request
        .topics
        .into_iter()
        .zip(errors_by_topic)
        .map(|(topic, slots)| {
            let partitions = topic
                .partitions
                .iter()
                .zip(slots)
                .map(|(p, error)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}

/// The same error for every partition of the request.
fn every_partition(request: OffsetCommitRequest, error: i16) -> OffsetCommitResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
