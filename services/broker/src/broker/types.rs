//! What the broker's operations take and return. Serializable, because in a
//! cluster an operation on a partition led by another node is forwarded to it.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::metadata::TopicMeta;

/// When a produce is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Acks {
    /// After the records are durable on disk (the default); on a partition
    /// with several replicas, on a majority of them, and on the topic's
    /// `min_insync_replicas` if more (Kafka's acks=all).
    #[default]
    Fsync,
    /// After the records are written to the leader's OS (Kafka's acks=1).
    Write,
}

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProduceRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Header keys are UTF-8 strings, as in Kafka.
    pub headers: Vec<(String, Bytes)>,
    /// Defaults to the time of the append.
    pub timestamp_ms: Option<i64>,
    /// Defaults to the key's partition (murmur2), or a spread partition for unkeyed records.
    pub partition: Option<u32>,
}

/// Offsets assigned to an atomic append to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    pub partition: u32,
    pub base_offset: u64,
    /// One past the last offset appended.
    pub next_offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadStart {
    Offset(u64),
    /// The first record at or after this time.
    Timestamp(i64),
    /// The last N records.
    Tail(u64),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadRequest {
    pub start: ReadStart,
    /// `None`: the broker's default.
    pub max_records: Option<u32>,
    pub max_bytes: Option<u64>,
    /// Wait up to this long for a record when there is none yet (long poll).
    pub wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumedRecord {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadResult {
    pub records: Vec<ConsumedRecord>,
    /// The offset to read next.
    pub next_offset: u64,
    /// The partition's end offset (everything below it is readable).
    pub high_watermark: u64,
    pub start_offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionDescription {
    pub partition: u32,
    /// The first offset still readable, whichever tier holds it.
    pub start_offset: u64,
    pub end_offset: u64,
    /// Offsets on local disk: `local_start_offset..end_offset`.
    pub local_start_offset: u64,
    /// Bytes of record batches on local disk.
    pub local_bytes: u64,
    /// Offsets in the bucket: `remote_start_offset..remote_end_offset`
    /// (equal when the bucket holds none).
    pub remote_start_offset: u64,
    pub remote_end_offset: u64,
    /// Bytes of the partition's segment objects, and how many there are.
    pub remote_bytes: u64,
    pub remote_segments: u32,
    /// Sealed segments waiting for upload: their bytes, and the age of the
    /// oldest (0 when none).
    pub offload_lag_bytes: u64,
    pub offload_lag_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicDescription {
    pub topic: TopicMeta,
    pub partitions: Vec<PartitionDescription>,
}
