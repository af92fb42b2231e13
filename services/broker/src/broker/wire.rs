//! What a wire-protocol front end (Kafka) needs beyond the record API: the
//! topic metadata and the log partitions themselves, so stored batches can be
//! appended and served as they are, without turning them into records.

use std::time::Instant;

use strata_api::{ApiError, ErrorCode};
use strata_log::{Partition, ReadBatches};

use super::{Broker, Result, partition_key};
use crate::errors::from_log;
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

    /// Whole batches from the one holding `offset`, up to `max_bytes` (at
    /// least one batch), from whichever tier holds them: local disk at and
    /// above the partition's local start, the bucket below it.
    pub async fn read_batches(
        &self,
        topic: &TopicMeta,
        partition: u32,
        p: &Partition,
        offset: u64,
        max_bytes: usize,
    ) -> Result<ReadBatches> {
        let offsets = p.offsets();
        if offset >= offsets.local_start {
            if !p.is_replicated() {
                return p.read(offset, max_bytes).await.map_err(from_log);
            }
            // Only what a majority of replicas hold, and say so.
            let hw = offsets.high_watermark;
            let mut read = p
                .read_up_to(offset, max_bytes, hw)
                .await
                .map_err(from_log)?;
            read.end_offset = hw;
            return Ok(read);
        }
        // The entry holding `offset` and the few read-ahead may continue into.
        let wanted = 1 + self.config.tier.read_ahead_blocks;
        let manifest = self
            .meta
            .manifest_from(&partition_key(topic, partition), offset, wanted)
            .await?;
        let (chunks, next_offset) = self.tier.read(&manifest, offset, max_bytes).await?;
        Ok(ReadBatches {
            chunks,
            next_offset,
            end_offset: offsets.high_watermark,
            log_start: offsets.log_start,
        })
    }

    /// Refuses new data (retryably) while more bytes wait for the bucket
    /// than the local disk budget allows: back-pressure, not a full disk,
    /// when the bucket is unreachable.
    pub fn check_disk_budget(&self) -> Result<()> {
        let budget = self.config.tier.local_disk_budget_bytes;
        let pending = self.tier.pending_bytes();
        if budget > 0 && pending > budget {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "{pending} bytes are waiting for upload to object storage, more than the \
                     local disk budget of {budget} bytes; retry once the upload catches up"
                ),
            )
            .with_details(serde_json::json!({
                "pending_offload_bytes": pending,
                "local_disk_budget_bytes": budget,
            })));
        }
        Ok(())
    }

    /// Counts a read that bypassed [`Broker::read`] in the read metrics.
    pub fn note_read(&self, tenant: &str, records: usize, bytes: usize) {
        crate::metrics::read(tenant, records, bytes);
    }
}

/// Front ends run reads on spawned tasks: the read futures must be `Send`
/// for every lifetime (a compile-time check).
#[cfg(test)]
#[allow(dead_code)]
fn read_batches_is_send(b: &'static Broker, t: &'static TopicMeta, p: &'static Partition) {
    fn is_send<T: Send>(_: T) {}
    is_send(b.read_batches(t, 0, p, 0, 1));
    is_send(b.tier.read(&[], 0, 1));
}
