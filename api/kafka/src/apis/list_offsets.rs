//! ListOffsets: the earliest offset, the latest, or the first at or after a
//! time, per partition. A partition led by another node gets
//! NOT_LEADER_OR_FOLLOWER.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use strata_broker::api_error_from_log;
use strata_log::Partition;

use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let meta = shared
            .broker
            .topic_meta(&session.tenant, topic.name.as_str())
            .await;
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let response = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let partition = match &meta {
                Err(e) => Err(errors::code(e)),
                Ok(meta) => cluster::serve_here(shared, meta, p.partition_index)
                    .await
                    .map_err(|refused| refused.code),
            };
            let response = match partition {
                Err(code) => response.with_error_code(code),
                Ok(served) => match lookup(shared, &served.log, p.timestamp).await {
                    Ok((timestamp, offset)) => response
                        .with_timestamp(timestamp)
                        .with_offset(offset)
                        // The field exists from v4; earlier versions must leave it unset.
                        .with_leader_epoch(if version >= 4 { served.epoch } else { -1 }),
                    Err(code) => response.with_error_code(code),
                },
            };
            partitions.push(response);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// `(timestamp, offset)` for a query; -1 timestamps where Kafka sends none.
async fn lookup(shared: &Shared, partition: &Partition, query: i64) -> Result<(i64, i64), i16> {
    shared
        .broker
        .check_readable(partition)
        .map_err(|e| errors::code(&e))?;
    let offsets = partition.offsets();
    match query {
        // The high watermark, as Kafka answers read_uncommitted consumers.
        LATEST => Ok((-1, offsets.high_watermark as i64)),
        EARLIEST => Ok((-1, offsets.log_start as i64)),
        t if t >= 0 => match partition.offset_for_timestamp(t).await {
            Ok(Some(offset)) if offset >= offsets.high_watermark => Ok((-1, -1)),
            Ok(Some(offset)) => {
                let offset = offset.max(offsets.log_start);
                Ok((t, offset as i64))
            }
            // Nothing that recent: Kafka answers offset -1 and timestamp -1.
            Ok(None) => Ok((-1, -1)),
            Err(e) => Err(errors::code(&api_error_from_log(e))),
        },
        _ => Err(errors::INVALID_REQUEST),
    }
}
