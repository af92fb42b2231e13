//! DeleteRecords: moves partitions' start offsets forward, deleting the
//! records below them; -1 means the high watermark (everything). A
//! partition led by another node gets NOT_LEADER_OR_FOLLOWER.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use strata_broker::TopicMeta;

use super::topic_configs::Failure;
use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;

/// The request's offset for "up to the high watermark".
const HIGH_WATERMARK: i64 = -1;
/// The low watermark of a partition that failed.
const INVALID_LOW_WATERMARK: i64 = -1;

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    let tenant = session.tenant.as_str();
    let mut topics = Vec::with_capacity(request.topics.len());
    for t in request.topics {
        // One lookup per topic: an unknown topic fails each of its partitions.
        let known = shared
            .broker
            .topic_meta(tenant, &t.name)
            .await
            .map_err(Failure::from);
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let result = match &known {
                Ok(meta) => match led_elsewhere(shared, meta, p.partition_index) {
                    Some(f) => Err(f),
                    None => delete(shared, tenant, &t.name, p.partition_index, p.offset).await,
                },
                Err(f) => Err(f.clone()),
            };
            let (low_watermark, error_code) = match result {
                Ok(low) => (low, errors::NONE),
                Err(f) => (INVALID_LOW_WATERMARK, f.code),
            };
            partitions.push(
                DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(low_watermark)
                    .with_error_code(error_code),
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// NOT_LEADER_OR_FOLLOWER if another node leads the partition (a partition
/// the topic does not have is left to [`delete`]).
fn led_elsewhere(shared: &Shared, topic: &TopicMeta, partition: i32) -> Option<Failure> {
    let index = u32::try_from(partition)
        .ok()
        .filter(|p| *p < topic.partitions)?;
    let leader = cluster::leader(shared, topic, index);
    (!leader.here).then(|| {
        Failure::new(
            errors::NOT_LEADER_OR_FOLLOWER,
            format!(
                "partition {partition} of topic {:?} is led by broker {}",
                topic.name, leader.id.0
            ),
        )
    })
}

/// Deletes one partition's records below `offset`; the new low watermark.
async fn delete(
    shared: &Shared,
    tenant: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64, Failure> {
    let partition = u32::try_from(partition).map_err(|_| {
        Failure::new(
            errors::UNKNOWN_TOPIC_OR_PARTITION,
            format!("partition {partition} does not exist"),
        )
    })?;
    let before = if offset == HIGH_WATERMARK {
        shared.broker.check_tail(tenant, topic, partition).await?.1
    } else {
        u64::try_from(offset).map_err(|_| {
            Failure::new(
                errors::OFFSET_OUT_OF_RANGE,
                format!("cannot delete records before offset {offset}: offsets are not negative"),
            )
        })?
    };
    let low = shared
        .broker
        .delete_records(tenant, topic, partition, before)
        .await?;
    Ok(i64::try_from(low).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::{ApiKey, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use strata_broker::{Acks, ProduceRecord, TopicConfigPatch};

    use super::*;
    use crate::apis::topic_configs::testing::{encodes, fixture};

    fn topic(name: &'static str, partitions: &[(i32, i64)]) -> DeleteRecordsTopic {
        DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_partitions(
                partitions
                    .iter()
                    .map(|&(p, o)| {
                        DeleteRecordsPartition::default()
                            .with_partition_index(p)
                            .with_offset(o)
                    })
                    .collect(),
            )
    }

    #[tokio::test]
    async fn deletes_records_per_partition() {
        let f = fixture().await;
        let broker = &f.shared.broker;
        broker
            .create_topic("default", "t", 2, TopicConfigPatch::default())
            .await
            .unwrap();
        let records = (0..5)
            .map(|i| ProduceRecord {
                value: Some(format!("v{i}").into()),
                partition: Some(i % 2),
                ..ProduceRecord::default()
            })
            .collect();
        broker
            .produce("default", "t", records, Acks::Fsync)
            .await
            .unwrap();

        let request = DeleteRecordsRequest::default().with_topics(vec![
            topic("t", &[(0, 2), (1, -1), (2, 0), (-1, 0)]),
            topic("missing", &[(0, 0)]),
        ]);
        let r = handle(&f.shared, &f.session, request, 2).await;
        let got: Vec<(i32, i64, i16)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.low_watermark, p.error_code))
            })
            .collect();
        assert_eq!(
            got,
            vec![(0, 2, 0), (1, 2, 0), (2, -1, 3), (-1, -1, 3), (0, -1, 3)]
        );
        for v in 0..=2 {
            encodes(
                ApiKey::DeleteRecords,
                v,
                ResponseKind::DeleteRecords(r.clone()),
            );
        }
        assert_eq!(broker.check_tail("default", "t", 0).await.unwrap(), (2, 3));
        assert_eq!(broker.check_tail("default", "t", 1).await.unwrap(), (2, 2));

        let request = DeleteRecordsRequest::default()
            .with_topics(vec![topic("t", &[(0, 4), (1, -2), (0, 1)])]);
        let r = handle(&f.shared, &f.session, request, 0).await;
        let got: Vec<(i64, i16)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.low_watermark, p.error_code))
            .collect();
        assert_eq!(got, vec![(-1, 1), (-1, 1), (2, 0)]);
    }
}
