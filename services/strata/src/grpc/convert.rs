//! Conversions between the generated protobuf types and the broker's types.
//! Kept apart from the handlers so they can be tested without a broker.

use std::time::Duration;

use strata_api::proto::{self, read_request::Start};
use strata_api::{ApiError, ErrorCode};
use strata_broker::{
    Acks, ConsumedRecord, GroupOffset, PartitionDescription, ProduceRecord, ReadResult, ReadStart,
    TopicConfigPatch, TopicDescription, TopicMeta,
};

/// An empty tenant is the default tenant, so clients may leave the field out.
pub fn tenant(t: &str) -> &str {
    if t.is_empty() { "default" } else { t }
}

pub fn patch_from_proto(config: Option<proto::TopicConfig>) -> TopicConfigPatch {
    let c = config.unwrap_or_default();
    TopicConfigPatch {
        retention_ms: c.retention_ms,
        retention_bytes: c.retention_bytes,
        segment_bytes: c.segment_bytes,
        segment_ms: c.segment_ms,
        max_message_bytes: c.max_message_bytes,
        local_retention_ms: c.local_retention_ms,
        local_retention_bytes: c.local_retention_bytes,
        min_insync_replicas: c.min_insync_replicas,
    }
}

pub fn topic_to_proto(meta: &TopicMeta) -> proto::Topic {
    let c = &meta.config;
    proto::Topic {
        tenant: meta.tenant.clone(),
        name: meta.name.clone(),
        partitions: meta.partitions,
        config: Some(proto::TopicConfig {
            retention_ms: Some(c.retention_ms),
            retention_bytes: Some(c.retention_bytes),
            segment_bytes: Some(c.segment_bytes),
            segment_ms: Some(c.segment_ms),
            max_message_bytes: Some(c.max_message_bytes),
            local_retention_ms: Some(c.local_retention_ms),
            local_retention_bytes: Some(c.local_retention_bytes),
            min_insync_replicas: Some(c.min_insync_replicas),
        }),
        partition_info: Vec::new(),
        replication_factor: meta.replication_factor,
    }
}

pub fn description_to_proto(d: &TopicDescription) -> proto::Topic {
    let mut topic = topic_to_proto(&d.topic);
    topic.partition_info = d.partitions.iter().map(partition_to_proto).collect();
    topic
}

fn partition_to_proto(p: &PartitionDescription) -> proto::PartitionInfo {
    let PartitionDescription {
        partition,
        start_offset,
        end_offset,
        local_start_offset,
        local_bytes,
        remote_start_offset,
        remote_end_offset,
        remote_bytes,
        remote_segments,
        offload_lag_bytes,
        offload_lag_ms,
    } = *p;
    proto::PartitionInfo {
        partition,
        start_offset,
        end_offset,
        local_start_offset,
        local_bytes,
        remote_start_offset,
        remote_end_offset,
        remote_bytes,
        remote_segments,
        offload_lag_bytes,
        offload_lag_ms,
    }
}

pub fn acks_from_proto(acks: i32) -> Result<Acks, ApiError> {
    match proto::Acks::try_from(acks) {
        // The server's default is to acknowledge after fsync.
        Ok(proto::Acks::Default | proto::Acks::Fsync) => Ok(Acks::Fsync),
        Ok(proto::Acks::Write) => Ok(Acks::Write),
        Err(_) => Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("unknown acks value {acks}"),
        )),
    }
}

pub fn record_from_proto(r: proto::Record) -> ProduceRecord {
    ProduceRecord {
        key: r.key,
        value: r.value,
        headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
        timestamp_ms: r.timestamp_ms,
        partition: r.partition,
    }
}

fn consumed_to_proto(r: ConsumedRecord) -> proto::ConsumedRecord {
    proto::ConsumedRecord {
        offset: r.offset,
        timestamp_ms: r.timestamp_ms,
        key: r.key,
        value: r.value,
        headers: r
            .headers
            .into_iter()
            .map(|(key, value)| proto::Header { key, value })
            .collect(),
    }
}

pub fn read_result_to_proto(r: ReadResult) -> proto::ReadResponse {
    proto::ReadResponse {
        records: r.records.into_iter().map(consumed_to_proto).collect(),
        next_offset: r.next_offset,
        high_watermark: r.high_watermark,
    }
}

/// The requested start; `None` when the request names none (the caller picks
/// the partition's start offset).
pub fn read_start(start: Option<Start>) -> Option<ReadStart> {
    start.map(|s| match s {
        Start::Offset(o) => ReadStart::Offset(o),
        Start::TimestampMs(t) => ReadStart::Timestamp(t),
        Start::Tail(n) => ReadStart::Tail(n),
    })
}

/// A broker read request; zero limits mean "the server's default".
pub fn read_request(
    start: ReadStart,
    max_records: u32,
    max_bytes: u64,
    wait: Duration,
) -> strata_broker::ReadRequest {
    strata_broker::ReadRequest {
        start,
        max_records: (max_records > 0).then_some(max_records),
        max_bytes: (max_bytes > 0).then_some(max_bytes),
        wait,
    }
}

pub fn group_offset_from_proto(o: proto::GroupOffset) -> GroupOffset {
    GroupOffset {
        topic: o.topic,
        partition: o.partition,
        offset: o.offset,
        metadata: o.metadata,
    }
}

pub fn group_offset_to_proto(o: GroupOffset) -> proto::GroupOffset {
    proto::GroupOffset {
        topic: o.topic,
        partition: o.partition,
        offset: o.offset,
        metadata: o.metadata,
    }
}

/// One offset per record: a partition append assigns consecutive offsets.
pub fn append_offsets(partition: u32, base_offset: u64, count: usize) -> Vec<proto::RecordOffset> {
    (0..count as u64)
        .map(|i| proto::RecordOffset {
            partition,
            offset: base_offset + i,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use strata_broker::TopicConfig;

    #[test]
    fn empty_tenant_is_default() {
        assert_eq!(tenant(""), "default");
        assert_eq!(tenant("acme"), "acme");
    }

    #[test]
    fn acks_map_and_unknown_values_are_bad_requests() {
        assert_eq!(acks_from_proto(0).ok(), Some(Acks::Fsync));
        assert_eq!(acks_from_proto(1).ok(), Some(Acks::Fsync));
        assert_eq!(acks_from_proto(2).ok(), Some(Acks::Write));
        let err = acks_from_proto(7).err().map(|e| e.code);
        assert_eq!(err, Some(ErrorCode::BadRequest));
    }

    #[test]
    fn topic_config_patch_keeps_only_set_fields() {
        let patch = patch_from_proto(Some(proto::TopicConfig {
            retention_ms: Some(-1),
            segment_bytes: Some(1024),
            local_retention_ms: Some(-2),
            ..Default::default()
        }));
        assert_eq!(
            patch,
            TopicConfigPatch {
                retention_ms: Some(-1),
                segment_bytes: Some(1024),
                local_retention_ms: Some(-2),
                ..Default::default()
            }
        );
        let patch = patch_from_proto(Some(proto::TopicConfig {
            local_retention_bytes: Some(1 << 30),
            ..Default::default()
        }));
        assert_eq!(
            patch,
            TopicConfigPatch {
                local_retention_bytes: Some(1 << 30),
                ..Default::default()
            }
        );
        assert_eq!(patch_from_proto(None), TopicConfigPatch::default());
    }

    #[test]
    fn description_carries_config_and_partitions() {
        let d = TopicDescription {
            topic: TopicMeta {
                tenant: "default".into(),
                name: "orders".into(),
                id: 1,
                partitions: 2,
                replication_factor: 3,
                config: TopicConfig {
                    local_retention_ms: -2,
                    local_retention_bytes: 1 << 30,
                    ..TopicConfig::default()
                },
                created_ms: 0,
            },
            partitions: vec![
                PartitionDescription {
                    partition: 0,
                    start_offset: 0,
                    end_offset: 5,
                    local_start_offset: 0,
                    local_bytes: 300,
                    remote_start_offset: 0,
                    remote_end_offset: 0,
                    remote_bytes: 0,
                    remote_segments: 0,
                    offload_lag_bytes: 0,
                    offload_lag_ms: 0,
                },
                PartitionDescription {
                    partition: 1,
                    start_offset: 2,
                    end_offset: 30,
                    local_start_offset: 20,
                    local_bytes: 900,
                    remote_start_offset: 2,
                    remote_end_offset: 25,
                    remote_bytes: 4096,
                    remote_segments: 3,
                    offload_lag_bytes: 512,
                    offload_lag_ms: 1500,
                },
            ],
        };
        let t = description_to_proto(&d);
        assert_eq!(t.name, "orders");
        assert_eq!(t.partitions, 2);
        assert_eq!(t.partition_info.len(), 2);
        assert_eq!(
            t.partition_info[1],
            proto::PartitionInfo {
                partition: 1,
                start_offset: 2,
                end_offset: 30,
                local_start_offset: 20,
                local_bytes: 900,
                remote_start_offset: 2,
                remote_end_offset: 25,
                remote_bytes: 4096,
                remote_segments: 3,
                offload_lag_bytes: 512,
                offload_lag_ms: 1500,
            }
        );
        assert_eq!(t.partition_info[0].local_bytes, 300);
        let c = t.config.unwrap_or_default();
        assert_eq!(c.retention_bytes, Some(-1));
        assert_eq!(c.local_retention_ms, Some(-2));
        assert_eq!(c.local_retention_bytes, Some(1 << 30));
        // And back: the config read from a topic, sent as a patch, sets every field to it.
        let config = d.topic.config;
        assert_eq!(
            patch_from_proto(Some(c)),
            TopicConfigPatch {
                retention_ms: Some(config.retention_ms),
                retention_bytes: Some(config.retention_bytes),
                segment_bytes: Some(config.segment_bytes),
                segment_ms: Some(config.segment_ms),
                max_message_bytes: Some(config.max_message_bytes),
                local_retention_ms: Some(-2),
                local_retention_bytes: Some(1 << 30),
                min_insync_replicas: Some(config.min_insync_replicas),
            }
        );
    }

    #[test]
    fn read_request_zero_limits_are_defaults() {
        let r = read_request(ReadStart::Offset(3), 0, 0, Duration::ZERO);
        assert_eq!(r.max_records, None);
        assert_eq!(r.max_bytes, None);
        let r = read_request(ReadStart::Tail(1), 10, 100, Duration::ZERO);
        assert_eq!((r.max_records, r.max_bytes), (Some(10), Some(100)));
        assert_eq!(
            read_start(Some(Start::TimestampMs(9))),
            Some(ReadStart::Timestamp(9))
        );
        assert_eq!(read_start(None), None);
    }

    #[test]
    fn records_convert_with_headers() {
        let r = record_from_proto(proto::Record {
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![proto::Header {
                key: "h".into(),
                value: Bytes::from_static(b"v"),
            }],
            timestamp_ms: Some(5),
            partition: Some(1),
        });
        assert_eq!(r.headers, vec![("h".to_string(), Bytes::from_static(b"v"))]);
        assert_eq!((r.timestamp_ms, r.partition), (Some(5), Some(1)));
        let offsets = append_offsets(3, 10, 2);
        assert_eq!(
            offsets
                .iter()
                .map(|o| (o.partition, o.offset))
                .collect::<Vec<_>>(),
            [(3, 10), (3, 11)]
        );
    }
}
