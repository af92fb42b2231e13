//! OffsetFetch (v1-8): a group's committed positions. v1-7 ask for one
//! group, v8 for a batch; no topic list (v2+) means every committed offset.
//! A partition without a commit (or a group that never committed) answers
//! offset -1 with empty metadata and no error, as in Kafka. A group
//! coordinated by another node gets NOT_COORDINATOR (v1: on every
//! partition asked for; v2+: the group's error).

use std::collections::HashMap;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use strata_api::ErrorCode;
use strata_broker::GroupOffset;

use super::{group_name, wire};
use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;

/// One partition's answer: `(partition, offset, metadata)`.
type Position = (i32, i64, String);
/// The answer for one group: positions by topic, in the order asked (or
/// sorted, for all of them).
type Positions = Vec<(String, Vec<Position>)>;

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let tenant = session.tenant.as_str();
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for g in request.groups {
            let asked = g.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            let fetched = fetch(shared, tenant, &group_name(&g.group_id), asked).await;
            let (error, positions) =
                fetched.map_or_else(|e| (e, Vec::new()), |p| (errors::NONE, p));
            let topics = positions
                .into_iter()
                .map(|(topic, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|(partition, offset, metadata)| {
                            OffsetFetchResponsePartitions::default()
                                .with_partition_index(partition)
                                .with_committed_offset(offset)
                                .with_metadata(Some(wire(metadata)))
                        })
                        .collect();
                    OffsetFetchResponseTopics::default()
                        .with_name(TopicName(wire(topic)))
                        .with_partitions(partitions)
                })
                .collect();
            groups.push(
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_error_code(error)
                    .with_topics(topics),
            );
        }
        return OffsetFetchResponse::default().with_groups(groups);
    }

    let asked: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let group = group_name(&request.group_id);
    let (error, positions) = match fetch(shared, tenant, &group, asked.clone()).await {
        Ok(positions) => (errors::NONE, positions),
        // v1 has no response-level error: each partition asked for carries it.
        Err(e) if version < 2 => (e, no_offsets(asked.unwrap_or_default())),
        Err(e) => (e, Vec::new()),
    };
    let partition_error = if version < 2 { error } else { errors::NONE };
    let topics = positions
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(partition, offset, metadata)| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset)
                        .with_metadata(Some(wire(metadata)))
                        .with_error_code(partition_error)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(wire(topic)))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default()
        .with_error_code(if version >= 2 { error } else { errors::NONE })
        .with_topics(topics)
}

/// Every partition asked for, without a committed offset.
fn no_offsets(asked: Vec<(String, Vec<i32>)>) -> Positions {
    asked
        .into_iter()
        .map(|(topic, partitions)| {
            let positions = partitions
                .into_iter()
                .map(|p| (p, -1, String::new()))
                .collect();
            (topic, positions)
        })
        .collect()
}

/// The group's committed offsets for the partitions asked (`None`: all of
/// them); `Err` is a group-level error code.
async fn fetch(
    shared: &Shared,
    tenant: &str,
    group: &str,
    asked: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Positions, i16> {
    // A name Strata cannot store never has offsets.
    let committed = if strata_broker::validate_group(group).is_err() {
        Vec::new()
    } else if !cluster::coordinates(shared, group) {
        return Err(errors::NOT_COORDINATOR);
    } else {
        match shared.broker.fetch_offsets(tenant, group).await {
            Ok(offsets) => offsets,
            Err(e) if e.code == ErrorCode::GroupNotFound => Vec::new(),
            Err(e) => return Err(errors::code(&e)),
        }
    };
    let position = |o: &GroupOffset| -> Position {
        (
            i32::try_from(o.partition).unwrap_or(i32::MAX),
            i64::try_from(o.offset).unwrap_or(i64::MAX),
            o.metadata.clone(),
        )
    };
    let Some(asked) = asked else {
        // Everything, by topic; the store keeps offsets sorted by topic and partition.
        let mut all: Positions = Vec::new();
        for o in &committed {
            match all.last_mut() {
                Some((topic, positions)) if *topic == o.topic => positions.push(position(o)),
                _ => all.push((o.topic.clone(), vec![position(o)])),
            }
        }
        return Ok(all);
    };
    let by_partition: HashMap<(&str, i64), &GroupOffset> = committed
        .iter()
        .map(|o| ((o.topic.as_str(), i64::from(o.partition)), o))
        .collect();
    Ok(asked
        .into_iter()
        .map(|(topic, partitions)| {
            let positions = partitions
                .into_iter()
                .map(
                    |p| match by_partition.get(&(topic.as_str(), i64::from(p))) {
                        Some(o) => position(o),
                        None => (p, -1, String::new()),
                    },
                )
                .collect();
            (topic, positions)
        })
        .collect())
}
