//! Administration beyond creating, altering and deleting topics: growing a
//! topic, deleting a partition's oldest records, and checking a change
//! without making it (Kafka's `validate_only`).

use strata_api::{ApiError, ErrorCode};
use tracing::info;

use super::topics::{MAX_PARTITIONS, check_min_insync, create_partitions, delete_partitions};
use super::{Broker, Result, partition_key};
use crate::config::{TopicConfig, TopicConfigPatch};
use crate::errors::from_log;
use crate::metadata::TopicMeta;
use crate::names::{validate_tenant, validate_topic};

fn invalid_partitions(message: String, details: serde_json::Value) -> ApiError {
    ApiError::new(ErrorCode::InvalidPartitions, message).with_details(details)
}

/// Fails unless a topic may have `partitions` partitions.
fn check_partition_count(partitions: u32) -> Result<()> {
    if (1..=MAX_PARTITIONS).contains(&partitions) {
        return Ok(());
    }
    Err(invalid_partitions(
        format!("a topic has 1 to {MAX_PARTITIONS} partitions, not {partitions}"),
        serde_json::json!({ "partitions": partitions, "max_partitions": MAX_PARTITIONS }),
    ))
}

/// Fails unless `topic` may grow to `new_total` partitions: partitions are
/// added, never removed (keys would move and records would be lost).
fn check_growth(topic: &TopicMeta, new_total: u32) -> Result<()> {
    let details = serde_json::json!({
        "topic": topic.name,
        "partitions": topic.partitions,
        "requested": new_total,
    });
    if new_total == topic.partitions {
        return Err(invalid_partitions(
            format!(
                "topic {:?} already has {} partitions",
                topic.name, topic.partitions
            ),
            details,
        ));
    }
    if new_total < topic.partitions {
        return Err(invalid_partitions(
            format!(
                "topic {:?} has {} partitions, more than the {new_total} asked for: \
                 partitions can be added but never removed",
                topic.name, topic.partitions
            ),
            details,
        ));
    }
    check_partition_count(new_total)
}

impl Broker {
    /// Grows a topic to `new_total` partitions; the new partitions start
    /// empty. Fails with `invalid_partitions` unless `new_total` is more than
    /// the topic has (and at most the limit).
    pub async fn add_partitions(
        &self,
        tenant: &str,
        name: &str,
        new_total: u32,
    ) -> Result<TopicMeta> {
        validate_tenant(tenant)?;
        validate_topic(name)?;
        let _admin = self.admin.lock().await;
        let mut topic = self.topic(tenant, name).await?;
        check_growth(&topic, new_total)?;
        let keys: Vec<String> = (topic.partitions..new_total)
            .map(|p| partition_key(&topic, p))
            .collect();
        // Log partitions under these keys can only be leftovers of an earlier
        // attempt that failed midway (the metadata does not name them, and
        // the admin lock is held): start them afresh.
        let leftovers: Vec<String> = keys
            .iter()
            .filter(|k| self.log.partition(k).is_ok())
            .cloned()
            .collect();
        if !leftovers.is_empty() {
            delete_partitions(&self.log, leftovers).await;
        }
        // Log first, as at creation: a crash before the metadata names the new
        // partitions leaves orphans, which the next open deletes.
        create_partitions(&self.log, keys.clone(), topic.config.segment_config()).await?;
        let before = topic.partitions;
        topic.partitions = new_total;
        if let Err(e) = self.meta.update_topic(topic.clone()).await {
            delete_partitions(&self.log, keys).await;
            return Err(e);
        }
        info!(
            tenant,
            topic = name,
            id = topic.id,
            before,
            partitions = new_total,
            "partitions added"
        );
        Ok(topic)
    }

    /// Checks what [`Broker::add_partitions`] would do, changing nothing:
    /// the same errors, and the topic as it would be.
    pub async fn validate_add_partitions(
        &self,
        tenant: &str,
        name: &str,
        new_total: u32,
    ) -> Result<TopicMeta> {
        let mut topic = self.topic(tenant, name).await?;
        check_growth(&topic, new_total)?;
        topic.partitions = new_total;
        Ok(topic)
    }

    /// Checks what [`Broker::create_topic`] would do, creating nothing: the
    /// same errors, and the config the topic would have.
    pub async fn validate_new_topic(
        &self,
        tenant: &str,
        name: &str,
        partitions: u32,
        config: TopicConfigPatch,
    ) -> Result<TopicConfig> {
        self.validate_new_topic_with(tenant, name, partitions, None, config)
            .await
            .map(|(config, _)| config)
    }

    /// As [`Broker::validate_new_topic`], with a replication factor as
    /// [`Broker::create_topic_with`] takes it; returns the config and the
    /// replication factor the topic would get.
    pub async fn validate_new_topic_with(
        &self,
        tenant: &str,
        name: &str,
        partitions: u32,
        replication_factor: Option<u32>,
        config: TopicConfigPatch,
    ) -> Result<(TopicConfig, u32)> {
        validate_tenant(tenant)?;
        validate_topic(name)?;
        check_partition_count(partitions)?;
        let topic_config = self.config.default_topic.patched(&config);
        topic_config.validate(self.config.max_request_bytes)?;
        let replication_factor = self.check_replication_factor(replication_factor)?;
        check_min_insync(&topic_config, replication_factor)?;
        self.check_tenant(tenant).await?;
        if self.meta.topic(tenant, name).await?.is_some() {
            return Err(ApiError::new(
                ErrorCode::TopicAlreadyExists,
                format!("topic {name:?} already exists in tenant {tenant:?}"),
            )
            .with_details(serde_json::json!({ "tenant": tenant, "topic": name })));
        }
        Ok((topic_config, replication_factor))
    }

    /// Checks a whole topic config as [`Broker::create_topic`] and
    /// [`Broker::alter_topic`] do (`invalid_config` naming the field).
    pub fn validate_topic_config(&self, config: &TopicConfig) -> Result<()> {
        config.validate(self.config.max_request_bytes)
    }

    /// Deletes a partition's records below `before_offset` by moving its
    /// start offset there (Kafka's DeleteRecords); returns the start offset
    /// after the call. An offset at or below the start changes nothing; one
    /// past the end offset fails with `offset_out_of_range`.
    ///
    /// No admin lock: the log orders this with retention, and a topic
    /// deleted meanwhile makes the log call fail (a topic recreated under
    /// the same name has other log partitions).
    pub async fn delete_records(
        &self,
        tenant: &str,
        topic: &str,
        partition: u32,
        before_offset: u64,
    ) -> Result<u64> {
        let meta = self.topic(tenant, topic).await?;
        let p = self.partition(&meta, partition)?;
        let offsets = p.offsets();
        if before_offset > offsets.end {
            return Err(ApiError::new(
                ErrorCode::OffsetOutOfRange,
                format!(
                    "cannot delete records before offset {before_offset}: partition {partition} \
                     of topic {topic:?} ends at offset {}",
                    offsets.end
                ),
            )
            .with_details(serde_json::json!({
                "offset": before_offset,
                "start_offset": offsets.log_start,
                "end_offset": offsets.end,
            })));
        }
        if before_offset > offsets.log_start {
            p.advance_start_offset(before_offset)
                .await
                .map_err(from_log)?;
            self.meta
                .advance_log_start(&partition_key(&meta, partition), before_offset)
                .await?;
            info!(
                tenant,
                topic,
                partition,
                start_offset = before_offset,
                "records deleted"
            );
        }
        Ok(p.offsets().log_start)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::broker::{Acks, ProduceRecord, ReadRequest, ReadStart};
    use crate::config::BrokerConfig;

    async fn open(dir: &std::path::Path) -> Arc<Broker> {
        Broker::open(BrokerConfig::new(dir)).await.unwrap()
    }

    fn record(partition: u32, value: &str) -> ProduceRecord {
        ProduceRecord {
            value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
            partition: Some(partition),
            ..ProduceRecord::default()
        }
    }

    fn from_offset(offset: u64) -> ReadRequest {
        ReadRequest {
            start: ReadStart::Offset(offset),
            max_records: None,
            max_bytes: None,
            wait: std::time::Duration::ZERO,
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T>) -> ErrorCode {
        r.unwrap_err().code
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn partitions_are_added_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path()).await;
            let d = TopicConfigPatch::default();
            b.create_topic("default", "orders", 2, d).await.unwrap();
            b.produce("default", "orders", vec![record(1, "old")], Acks::Fsync)
                .await
                .unwrap();

            let checked = b.validate_add_partitions("default", "orders", 5).await;
            assert_eq!(checked.unwrap().partitions, 5);
            assert_eq!(
                b.topic_meta("default", "orders").await.unwrap().partitions,
                2
            );

            let grown = b.add_partitions("default", "orders", 5).await.unwrap();
            assert_eq!(grown.partitions, 5);
            assert_eq!(b.topic_meta("default", "orders").await.unwrap(), grown);
            let placed = b
                .produce("default", "orders", vec![record(4, "new")], Acks::Fsync)
                .await
                .unwrap();
            assert_eq!(placed, vec![(4, 0)]);

            for (total, needle) in [(5, "already has 5"), (3, "never removed")] {
                let e = b
                    .add_partitions("default", "orders", total)
                    .await
                    .unwrap_err();
                assert_eq!(e.code, ErrorCode::InvalidPartitions);
                assert!(e.message.contains(needle), "{}", e.message);
                let e = b
                    .validate_add_partitions("default", "orders", total)
                    .await
                    .unwrap_err();
                assert_eq!(e.code, ErrorCode::InvalidPartitions);
            }
            let too_many = b
                .add_partitions("default", "orders", MAX_PARTITIONS + 1)
                .await;
            assert_eq!(code(too_many), ErrorCode::InvalidPartitions);
            assert_eq!(
                code(b.add_partitions("default", "nope", 3).await),
                ErrorCode::TopicNotFound
            );
            assert_eq!(
                code(b.add_partitions("default", "bad/name", 3).await),
                ErrorCode::InvalidName
            );
            b.shutdown().await;
        }
        // Reconciliation at open keeps the grown topic's partitions and data.
        let b = open(dir.path()).await;
        let d = b.describe_topic("default", "orders").await.unwrap();
        assert_eq!(d.topic.partitions, 5);
        let ends: Vec<u64> = d.partitions.iter().map(|p| p.end_offset).collect();
        assert_eq!(ends, vec![0, 1, 0, 0, 1]);
        let read = b
            .read("default", "orders", 4, from_offset(0))
            .await
            .unwrap();
        assert_eq!(read.records.len(), 1);
        b.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_are_deleted_up_to_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path()).await;
            let d = TopicConfigPatch::default();
            b.create_topic("default", "events", 2, d).await.unwrap();
            let records = (0..10).map(|i| record(0, &format!("r{i}"))).collect();
            b.produce("default", "events", records, Acks::Fsync)
                .await
                .unwrap();

            assert_eq!(
                b.delete_records("default", "events", 0, 4).await.unwrap(),
                4
            );
            assert_eq!(b.check_tail("default", "events", 0).await.unwrap(), (4, 10));
            let old = b.read("default", "events", 0, from_offset(2)).await;
            assert_eq!(code(old), ErrorCode::OffsetOutOfRange);
            let read = b
                .read("default", "events", 0, from_offset(4))
                .await
                .unwrap();
            assert_eq!(read.records.first().map(|r| r.offset), Some(4));

            // Below the start: nothing changes.
            assert_eq!(
                b.delete_records("default", "events", 0, 2).await.unwrap(),
                4
            );
            let e = b
                .delete_records("default", "events", 0, 11)
                .await
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::OffsetOutOfRange);
            assert!(e.message.contains("ends at offset 10"), "{}", e.message);
            assert_eq!(b.check_tail("default", "events", 0).await.unwrap(), (4, 10));
            // Up to the end: everything goes; new records follow on.
            assert_eq!(
                b.delete_records("default", "events", 0, 10).await.unwrap(),
                10
            );
            // An empty partition: offset 0 is its end.
            assert_eq!(
                b.delete_records("default", "events", 1, 0).await.unwrap(),
                0
            );
            assert_eq!(
                code(b.delete_records("default", "events", 1, 1).await),
                ErrorCode::OffsetOutOfRange
            );
            assert_eq!(
                code(b.delete_records("default", "events", 2, 0).await),
                ErrorCode::PartitionNotFound
            );
            assert_eq!(
                code(b.delete_records("default", "nope", 0, 0).await),
                ErrorCode::TopicNotFound
            );
            b.shutdown().await;
        }
        let b = open(dir.path()).await;
        assert_eq!(
            b.check_tail("default", "events", 0).await.unwrap(),
            (10, 10)
        );
        let placed = b
            .produce("default", "events", vec![record(0, "next")], Acks::Fsync)
            .await
            .unwrap();
        assert_eq!(placed, vec![(0, 10)]);
        b.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn validation_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = open(dir.path()).await;
        let patch = TopicConfigPatch {
            retention_ms: Some(60_000),
            ..TopicConfigPatch::default()
        };
        let config = b
            .validate_new_topic("default", "t", 3, patch)
            .await
            .unwrap();
        assert_eq!(config.retention_ms, 60_000);
        assert_eq!(config.segment_bytes, b.config().default_topic.segment_bytes);
        assert!(b.list_topics("default").await.unwrap().is_empty());

        let bad = TopicConfigPatch {
            segment_bytes: Some(1),
            ..TopicConfigPatch::default()
        };
        let e = b
            .validate_new_topic("default", "t", 3, bad)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        assert!(e.message.contains("segment_bytes"), "{}", e.message);
        let d = TopicConfigPatch::default();
        for (name, partitions, expected) in [
            ("t", 0, ErrorCode::InvalidPartitions),
            ("t", MAX_PARTITIONS + 1, ErrorCode::InvalidPartitions),
            ("..", 1, ErrorCode::InvalidName),
        ] {
            let r = b.validate_new_topic("default", name, partitions, d).await;
            assert_eq!(code(r), expected, "{name} {partitions}");
        }
        assert_eq!(
            code(b.validate_new_topic("nope", "t", 1, d).await),
            ErrorCode::TenantNotFound
        );
        b.create_topic("default", "t", 1, d).await.unwrap();
        assert_eq!(
            code(b.validate_new_topic("default", "t", 1, d).await),
            ErrorCode::TopicAlreadyExists
        );

        let mut config = b.config().default_topic;
        b.validate_topic_config(&config).unwrap();
        config.max_message_bytes = 0;
        let e = b.validate_topic_config(&config).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidConfig);
        b.shutdown().await;
    }
}
