//! Broker settings and per-topic configuration.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use strata_api::{ApiError, ErrorCode};
use strata_log::{LogConfig, SegmentConfig};

/// Settings of a broker. The `strata` binary fills these from flags,
/// `STRATA_*` variables and the config file.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where the write-ahead log and the metadata live.
    pub data_dir: PathBuf,
    pub log: LogConfig,
    /// Largest record (key + value + headers) accepted unless a topic says otherwise.
    pub max_record_bytes: u64,
    /// Largest produce request accepted, all records together.
    pub max_request_bytes: u64,
    /// Topic config used where a topic sets nothing.
    pub default_topic: TopicConfig,
    /// How often retention is enforced.
    pub retention_interval: Duration,
    /// Largest read response unless the request asks for less.
    pub default_max_read_bytes: u64,
    /// Most records in one read response unless the request asks for fewer.
    pub default_max_read_records: u32,
    /// Longest a read may wait for new records.
    pub max_wait: Duration,
    /// Tiered storage: where sealed segments go.
    pub tier: TierConfig,
    /// How long a write acknowledged after a majority of replicas (acks=all)
    /// waits for them before it fails with a retryable `replication_timeout`.
    pub replication_timeout: Duration,
    /// Replicas per partition of a topic created without a replication
    /// factor (capped at the live brokers).
    pub default_replication_factor: u32,
}

/// Settings of tiered storage.
#[derive(Debug, Clone)]
pub struct TierConfig {
    /// `file:///dir`, `s3://bucket/prefix` or `memory://`; `None`: a
    /// directory `objects` under the data directory.
    pub object_store: Option<String>,
    /// How often sealed segments are looked for and uploaded.
    pub offload_interval: Duration,
    /// Segments uploaded at the same time, across partitions.
    pub offload_concurrency: usize,
    /// Producing is refused (retryably) while the local log holds more than
    /// this many bytes not yet in the bucket: back-pressure instead of a full
    /// disk when the bucket is unreachable. 0: no limit.
    pub local_disk_budget_bytes: u64,
    /// Objects under the store's prefix that no manifest names are deleted
    /// once older than this (leftovers of an upload whose commit never happened).
    pub orphan_grace: Duration,
    /// How often the orphan collector runs.
    pub gc_interval: Duration,
    /// Bytes of segment blocks cached in memory and on local disk.
    pub cache_memory_bytes: u64,
    pub cache_disk_bytes: u64,
    /// Blocks fetched ahead of a reader that reads sequentially.
    pub read_ahead_blocks: usize,
    /// Size of the blocks a segment object is indexed by: the unit of a
    /// ranged GET and of the cache.
    pub block_bytes: usize,
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            object_store: None,
            offload_interval: Duration::from_secs(1),
            offload_concurrency: 4,
            local_disk_budget_bytes: 16 * 1024 * 1024 * 1024,
            orphan_grace: Duration::from_secs(3600),
            gc_interval: Duration::from_secs(300),
            cache_memory_bytes: 256 * 1024 * 1024,
            cache_disk_bytes: 4 * 1024 * 1024 * 1024,
            read_ahead_blocks: 8,
            block_bytes: strata_tier::segment::DEFAULT_BLOCK_SIZE,
        }
    }
}

impl BrokerConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: data_dir.into(),
            log: LogConfig::default(),
            max_record_bytes: 1024 * 1024,
            max_request_bytes: 8 * 1024 * 1024,
            default_topic: TopicConfig::default(),
            retention_interval: Duration::from_secs(5),
            default_max_read_bytes: 1024 * 1024,
            default_max_read_records: 1000,
            max_wait: Duration::from_secs(30),
            tier: TierConfig::default(),
            replication_timeout: Duration::from_secs(5),
            default_replication_factor: crate::metadata::DEFAULT_REPLICATION_FACTOR,
        }
    }
}

/// A topic's configuration, with Kafka's names in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// Records older than this are deleted; -1 keeps them forever. Kafka's default: 7 days.
    pub retention_ms: i64,
    /// Per partition: oldest segments are deleted while the partition is larger; -1: no limit.
    pub retention_bytes: i64,
    pub segment_bytes: i64,
    pub segment_ms: i64,
    /// Largest record accepted (Kafka's `max.message.bytes`).
    pub max_message_bytes: i64,
    /// Segments already in the bucket leave local disk once older than this;
    /// -2: the same as `retention_ms` (Kafka's `local.retention.ms`).
    #[serde(default = "default_local_retention_ms")]
    pub local_retention_ms: i64,
    /// Per partition: segments already in the bucket leave local disk while
    /// the local copy is larger than this; -1: no size limit, -2: the same as
    /// `retention_bytes` (Kafka's `local.retention.bytes`).
    #[serde(default = "default_local_retention_bytes")]
    pub local_retention_bytes: i64,
    /// An acks=all write needs at least this many replicas in sync, and is
    /// acknowledged once this many (and a majority) hold it durably (Kafka's
    /// `min.insync.replicas`). At most the topic's replication factor.
    #[serde(default = "default_min_insync_replicas")]
    pub min_insync_replicas: i64,
}

fn default_min_insync_replicas() -> i64 {
    1
}

/// Ten minutes of history stay on local disk after they reach the bucket:
/// enough for consumers that fall a little behind to read without a fetch
/// from the bucket, little enough that local disks only hold the tail.
fn default_local_retention_ms() -> i64 {
    10 * 60 * 1000
}

fn default_local_retention_bytes() -> i64 {
    -1
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            segment_bytes: 64 * 1024 * 1024,
            segment_ms: 10 * 60 * 1000,
            max_message_bytes: 1024 * 1024,
            local_retention_ms: default_local_retention_ms(),
            local_retention_bytes: default_local_retention_bytes(),
            min_insync_replicas: default_min_insync_replicas(),
        }
    }
}

/// Changes to a topic's configuration: each `Some` field is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfigPatch {
    pub retention_ms: Option<i64>,
    pub retention_bytes: Option<i64>,
    pub segment_bytes: Option<i64>,
    pub segment_ms: Option<i64>,
    pub max_message_bytes: Option<i64>,
    pub local_retention_ms: Option<i64>,
    pub local_retention_bytes: Option<i64>,
    pub min_insync_replicas: Option<i64>,
}

/// Smallest segment accepted: Kafka allows 14 bytes, but segments that small
/// would turn every batch into a segment and every retention pass into churn.
const MIN_SEGMENT_BYTES: i64 = 1024;

/// Most replicas a partition may have: a write waits for a majority of
/// them, and every replica is another follower stream on the leader.
pub const MAX_REPLICATION_FACTOR: u32 = 7;

impl TopicConfig {
    /// This config with every `Some` field of `patch` set.
    pub(crate) fn patched(mut self, patch: &TopicConfigPatch) -> TopicConfig {
        let TopicConfigPatch {
            retention_ms,
            retention_bytes,
            segment_bytes,
            segment_ms,
            max_message_bytes,
            local_retention_ms,
            local_retention_bytes,
            min_insync_replicas,
        } = *patch;
        self.retention_ms = retention_ms.unwrap_or(self.retention_ms);
        self.retention_bytes = retention_bytes.unwrap_or(self.retention_bytes);
        self.segment_bytes = segment_bytes.unwrap_or(self.segment_bytes);
        self.segment_ms = segment_ms.unwrap_or(self.segment_ms);
        self.max_message_bytes = max_message_bytes.unwrap_or(self.max_message_bytes);
        self.local_retention_ms = local_retention_ms.unwrap_or(self.local_retention_ms);
        self.local_retention_bytes = local_retention_bytes.unwrap_or(self.local_retention_bytes);
        self.min_insync_replicas = min_insync_replicas.unwrap_or(self.min_insync_replicas);
        self
    }

    /// Checks every field; the error names the field, its value and the allowed range.
    pub fn validate(&self, max_request_bytes: u64) -> Result<(), ApiError> {
        let max_message = i64::try_from(max_request_bytes).unwrap_or(i64::MAX);
        let checks: [(&str, i64, i64, i64); 8] = [
            ("retention_ms", self.retention_ms, -1, i64::MAX),
            ("retention_bytes", self.retention_bytes, -1, i64::MAX),
            (
                "segment_bytes",
                self.segment_bytes,
                MIN_SEGMENT_BYTES,
                i64::MAX,
            ),
            ("segment_ms", self.segment_ms, 1, i64::MAX),
            ("max_message_bytes", self.max_message_bytes, 1, max_message),
            ("local_retention_ms", self.local_retention_ms, -2, i64::MAX),
            (
                "local_retention_bytes",
                self.local_retention_bytes,
                -2,
                i64::MAX,
            ),
            (
                "min_insync_replicas",
                self.min_insync_replicas,
                1,
                i64::from(MAX_REPLICATION_FACTOR),
            ),
        ];
        for (field, value, min, max) in checks {
            if value < min || value > max {
                let range = if max == i64::MAX {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                return Err(ApiError::new(
                    ErrorCode::InvalidConfig,
                    format!("invalid topic config: {field} is {value}, it must be {range}"),
                )
                .with_details(
                    serde_json::json!({ "field": field, "value": value, "min": min, "max": max }),
                ));
            }
        }
        Ok(())
    }

    /// `local_retention_ms` with -2 resolved to `retention_ms` (-1: never by
    /// age), and never longer than `retention_ms`: the local copy cannot
    /// outlive the data (Kafka refuses such a config; a default of 10 minutes
    /// under a shorter `retention_ms` is simply capped here).
    pub fn effective_local_retention_ms(&self) -> i64 {
        cap(self.local_retention_ms, self.retention_ms)
    }

    /// `local_retention_bytes` with -2 resolved to `retention_bytes` (-1: no
    /// limit), and never more than `retention_bytes`.
    pub fn effective_local_retention_bytes(&self) -> i64 {
        cap(self.local_retention_bytes, self.retention_bytes)
    }

    /// The log's view of this config. `segment_bytes` is validated positive.
    pub(crate) fn segment_config(&self) -> SegmentConfig {
        SegmentConfig {
            segment_bytes: u64::try_from(self.segment_bytes).unwrap_or(u64::MAX),
            segment_ms: self.segment_ms,
        }
    }
}

/// A local limit resolved against the total one: -2 follows it, -1 (no
/// limit) or a larger value gives way to a finite total.
fn cap(local: i64, total: i64) -> i64 {
    match (local, total) {
        (-2, t) => t,
        (l, t) if t >= 0 && (l < 0 || l > t) => t,
        (l, _) => l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(config: TopicConfig) -> String {
        match config.validate(8 * 1024 * 1024) {
            Err(e) if e.code == ErrorCode::InvalidConfig => e.message,
            other => panic!("expected invalid_config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        TopicConfig::default().validate(8 * 1024 * 1024).unwrap();
    }

    #[test]
    fn patch_sets_only_given_fields() {
        let patch = TopicConfigPatch {
            retention_ms: Some(-1),
            segment_bytes: Some(4096),
            ..TopicConfigPatch::default()
        };
        let c = TopicConfig::default().patched(&patch);
        assert_eq!(c.retention_ms, -1);
        assert_eq!(c.segment_bytes, 4096);
        assert_eq!(c.retention_bytes, TopicConfig::default().retention_bytes);
        assert_eq!(
            c.max_message_bytes,
            TopicConfig::default().max_message_bytes
        );
        c.validate(8 * 1024 * 1024).unwrap();
    }

    #[test]
    fn local_retention_follows_and_never_exceeds_retention() {
        let c = |retention_ms, local_retention_ms| TopicConfig {
            retention_ms,
            local_retention_ms,
            ..TopicConfig::default()
        };
        assert_eq!(c(1000, -2).effective_local_retention_ms(), 1000);
        assert_eq!(c(1000, 2000).effective_local_retention_ms(), 1000);
        assert_eq!(c(1000, -1).effective_local_retention_ms(), 1000);
        assert_eq!(c(1000, 500).effective_local_retention_ms(), 500);
        assert_eq!(c(-1, 500).effective_local_retention_ms(), 500);
        assert_eq!(c(-1, -1).effective_local_retention_ms(), -1);
        assert_eq!(c(-1, -2).effective_local_retention_ms(), -1);
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        let d = TopicConfig::default();
        assert!(
            invalid(TopicConfig {
                retention_ms: -2,
                ..d
            })
            .contains("retention_ms is -2")
        );
        assert!(
            invalid(TopicConfig {
                retention_bytes: -5,
                ..d
            })
            .contains("retention_bytes")
        );
        assert!(
            invalid(TopicConfig {
                segment_bytes: 1023,
                ..d
            })
            .contains("at least 1024")
        );
        assert!(invalid(TopicConfig { segment_ms: 0, ..d }).contains("segment_ms"));
        assert!(
            invalid(TopicConfig {
                max_message_bytes: 0,
                ..d
            })
            .contains("max_message_bytes")
        );
        let too_big = TopicConfig {
            max_message_bytes: 8 * 1024 * 1024 + 1,
            ..d
        };
        assert!(invalid(too_big).contains("between 1 and 8388608"));
        for bad in [0, 8] {
            let c = TopicConfig {
                min_insync_replicas: bad,
                ..d
            };
            assert!(invalid(c).contains("min_insync_replicas"), "{bad}");
        }
        TopicConfig {
            segment_bytes: 1024,
            retention_bytes: -1,
            retention_ms: -1,
            ..d
        }
        .validate(8 * 1024 * 1024)
        .unwrap();
    }

    #[test]
    fn segment_config_follows_the_topic() {
        let c = TopicConfig {
            segment_bytes: 2048,
            segment_ms: 60_000,
            ..TopicConfig::default()
        };
        assert_eq!(
            c.segment_config(),
            SegmentConfig {
                segment_bytes: 2048,
                segment_ms: 60_000
            }
        );
    }
}
