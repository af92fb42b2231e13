//! What a wire-protocol front end (Kafka) needs beyond the record API: the
//! topic metadata and the log partitions themselves, so stored batches can be
//! appended and served as they are, without turning them into records.

use std::time::Instant;

use strata_log::Partition;

use super::{Broker, Result};
use crate::metadata::TopicMeta;

impl Broker {
    /// A topic's metadata; `topic_not_found` (or `tenant_not_found`) if missing.
    pub async fn topic_meta(&self, tenant: &str, topic: &str) -> Result<TopicMeta> {
        self.topic(tenant, topic).await
    }

    /// The log partition behind a topic partition; `partition_not_found` if
    /// the topic has no such partition.
    pub fn log_partition(&self, topic: &TopicMeta, partition: u32) -> Result<Partition> {
        self.partition(topic, partition)
    }

    /// Largest size a compressed batch may expand to when it is verified or decoded.
    pub fn max_uncompressed_batch_bytes(&self) -> usize {
        self.log.config().max_uncompressed_batch_bytes
    }

    /// Counts a produce that bypassed [`Broker::produce`] in the produce metrics.
    pub fn note_produced(&self, tenant: &str, records: usize, bytes: u64, started: Instant) {
        crate::metrics::produced(tenant, records, bytes, started);
    }

    /// Counts a read that bypassed [`Broker::read`] in the read metrics.
    pub fn note_read(&self, tenant: &str, records: usize, bytes: usize) {
        crate::metrics::read(tenant, records, bytes);
    }
}
