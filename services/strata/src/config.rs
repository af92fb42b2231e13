//! Server settings. Every setting has one name used three ways: a flag
//! (`--max-record-bytes`), an environment variable (`STRATA_MAX_RECORD_BYTES`)
//! and a key of the optional TOML config file (`max_record_bytes`). A flag or
//! variable wins over the file, the file over the default. Unknown file keys
//! are reported, not fatal, so an older binary still starts with a newer file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use strata_broker::BrokerConfig;
use strata_kafka::KafkaConfig;
use strata_log::Durability;

/// The address a node listens on unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
/// The Kafka listener's address unless told otherwise (Kafka's port).
pub const DEFAULT_KAFKA_LISTEN: &str = "127.0.0.1:9092";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityArg {
    /// Acknowledge after fdatasync (the default).
    Fsync,
    /// Acknowledge after the write to the OS; flushed every flush interval.
    Write,
}

#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServerArgs {
    /// Address of the one listener for HTTP and gRPC [default: 127.0.0.1:7070].
    #[arg(long, env = "STRATA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the write-ahead log and metadata [default: ./strata-data].
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Optional TOML file with any of these settings (keys in snake_case).
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// When produce requests are acknowledged by default [default: fsync].
    #[arg(long, env = "STRATA_DURABILITY", value_enum)]
    pub durability: Option<DurabilityArg>,
    /// Largest record accepted, in bytes [default: 1048576].
    #[arg(long, env = "STRATA_MAX_RECORD_BYTES")]
    pub max_record_bytes: Option<u64>,
    /// Largest produce request accepted, in bytes [default: 8388608].
    #[arg(long, env = "STRATA_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<u64>,
    /// How often retention runs, e.g. `5s` [default: 5s].
    #[arg(long, env = "STRATA_RETENTION_INTERVAL", value_parser = humantime::parse_duration)]
    pub retention_interval: Option<Duration>,
    /// Longest the journal waits to gather more appends into one commit, e.g. `0ms` [default: 0ms].
    #[arg(long, env = "STRATA_MAX_COMMIT_DELAY", value_parser = humantime::parse_duration)]
    pub max_commit_delay: Option<Duration>,
    /// Largest journal commit, in bytes [default: 4194304].
    #[arg(long, env = "STRATA_MAX_COMMIT_BYTES")]
    pub max_commit_bytes: Option<usize>,
    /// Size at which a journal file is closed and the next begun [default: 67108864].
    #[arg(long, env = "STRATA_JOURNAL_FILE_BYTES")]
    pub journal_file_bytes: Option<u64>,
    /// Longest a read may long-poll, e.g. `30s` [default: 30s].
    #[arg(long, env = "STRATA_MAX_WAIT", value_parser = humantime::parse_duration)]
    pub max_wait: Option<Duration>,
    /// How long an acks=all write on a replicated partition waits for a
    /// majority of its replicas before a retryable error [default: 5s].
    #[arg(long, env = "STRATA_REPLICATION_TIMEOUT", value_parser = humantime::parse_duration)]
    pub replication_timeout: Option<Duration>,
    /// Object storage for sealed segments: `file:///DIR`, `s3://BUCKET[/PREFIX]`
    /// (credentials, region and endpoint from the AWS_* variables) [default: DATA_DIR/objects].
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub object_store: Option<String>,
    /// How often sealed segments are uploaded, e.g. `1s` [default: 1s].
    #[arg(long, env = "STRATA_OFFLOAD_INTERVAL", value_parser = humantime::parse_duration)]
    pub offload_interval: Option<Duration>,
    /// Segment uploads at once [default: 4].
    #[arg(long, env = "STRATA_OFFLOAD_CONCURRENCY")]
    pub offload_concurrency: Option<usize>,
    /// Producers get a retryable error while more than this many bytes wait
    /// for upload; 0: no limit [default: 17179869184].
    #[arg(long, env = "STRATA_LOCAL_DISK_BUDGET_BYTES")]
    pub local_disk_budget_bytes: Option<u64>,
    /// Default for topics: uploaded segments leave local disk after this many
    /// ms; -2: the topic's retention_ms [default: 600000].
    #[arg(long, env = "STRATA_LOCAL_RETENTION_MS", allow_hyphen_values = true)]
    pub local_retention_ms: Option<i64>,
    /// Default for topics: uploaded segments leave local disk while a partition
    /// holds more; -1: no limit, -2: the topic's retention_bytes [default: -1].
    #[arg(long, env = "STRATA_LOCAL_RETENTION_BYTES", allow_hyphen_values = true)]
    pub local_retention_bytes: Option<i64>,
    /// Default for topics: an acks=all write needs this many replicas in sync,
    /// and is acknowledged once this many (and a majority) hold it [default: 1].
    #[arg(long, env = "STRATA_MIN_INSYNC_REPLICAS")]
    pub min_insync_replicas: Option<i64>,
    /// Replicas per partition of a topic that asks for none (as many as there
    /// are live brokers if fewer) [default: 3].
    #[arg(long, env = "STRATA_DEFAULT_REPLICATION_FACTOR")]
    pub default_replication_factor: Option<u32>,
    /// Objects no manifest names are deleted once older than this, e.g. `1h` [default: 1h].
    #[arg(long, env = "STRATA_ORPHAN_GRACE", value_parser = humantime::parse_duration)]
    pub orphan_grace: Option<Duration>,
    /// How often orphaned objects are looked for, e.g. `5m` [default: 5m].
    #[arg(long, env = "STRATA_GC_INTERVAL", value_parser = humantime::parse_duration)]
    pub gc_interval: Option<Duration>,
    /// Memory for cached segment blocks read from the bucket, in bytes [default: 268435456].
    #[arg(long, env = "STRATA_CACHE_MEMORY_BYTES")]
    pub cache_memory_bytes: Option<u64>,
    /// Local disk for cached segment blocks, in bytes; 0: memory only [default: 4294967296].
    #[arg(long, env = "STRATA_CACHE_DISK_BYTES")]
    pub cache_disk_bytes: Option<u64>,
    /// Size of the blocks segment objects are indexed by (one ranged GET, one
    /// cache entry), in bytes [default: 1048576].
    #[arg(long, env = "STRATA_TIER_BLOCK_BYTES")]
    pub tier_block_bytes: Option<usize>,
    /// Blocks fetched ahead of a sequential reader of the bucket [default: 8].
    #[arg(long, env = "STRATA_READ_AHEAD_BLOCKS")]
    pub read_ahead_blocks: Option<usize>,
    /// Address of the Kafka wire-protocol listener, or `off` [default: 127.0.0.1:9092].
    #[arg(long, env = "STRATA_KAFKA_LISTEN")]
    pub kafka_listen: Option<String>,
    /// Host Kafka clients are told to connect to [default: the listener's host].
    #[arg(long, env = "STRATA_KAFKA_ADVERTISED_HOST")]
    pub kafka_advertised_host: Option<String>,
    /// Port Kafka clients are told to connect to [default: the listener's port].
    #[arg(long, env = "STRATA_KAFKA_ADVERTISED_PORT")]
    pub kafka_advertised_port: Option<u16>,
    /// Whether Kafka Metadata requests create missing topics [default: true].
    #[arg(long, env = "STRATA_KAFKA_AUTO_CREATE_TOPICS")]
    pub kafka_auto_create_topics: Option<bool>,
    /// Partitions of a topic created over Kafka without a count [default: 1].
    #[arg(long, env = "STRATA_KAFKA_DEFAULT_PARTITIONS")]
    pub kafka_default_partitions: Option<u32>,
    /// How long a new consumer group waits for more members before its first
    /// assignment, e.g. `3s` [default: 3s].
    #[arg(long, env = "STRATA_KAFKA_GROUP_INITIAL_REBALANCE_DELAY", value_parser = humantime::parse_duration)]
    pub kafka_group_initial_rebalance_delay: Option<Duration>,
    /// Largest Kafka request frame accepted, in bytes [default: 16777216].
    #[arg(long, env = "STRATA_KAFKA_MAX_FRAME_BYTES")]
    pub kafka_max_frame_bytes: Option<usize>,
    /// This node's id in a cluster, from 1 [default: 1].
    #[arg(long, env = "STRATA_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address of the internal peer listener (Raft, forwarding), or `off` for
    /// a single node [default: off].
    #[arg(long, env = "STRATA_PEER_LISTEN")]
    pub peer_listen: Option<String>,
    /// Peer address other nodes use to reach this one [default: the peer listener's].
    #[arg(long, env = "STRATA_PEER_ADVERTISE")]
    pub peer_advertise: Option<String>,
    /// Initial voters of a new cluster, `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`
    /// (peer addresses; the same on every node).
    #[arg(long, env = "STRATA_BOOTSTRAP")]
    pub bootstrap: Option<String>,
    /// Peer address of any node of a running cluster to join.
    #[arg(long, env = "STRATA_JOIN")]
    pub join: Option<String>,
    /// What this node does: `meta` (votes in the metadata group), `broker`
    /// (serves partitions), or both [default: meta,broker].
    #[arg(long, env = "STRATA_ROLES")]
    pub roles: Option<String>,
    /// Rack or zone label, used to spread replicas [default: default].
    #[arg(long, env = "STRATA_ZONE")]
    pub zone: Option<String>,
    /// Metadata log entries between snapshots (each also uploaded to the
    /// bucket for `strata meta restore`) [default: 5000].
    #[arg(long, env = "STRATA_META_SNAPSHOT_EVERY")]
    pub meta_snapshot_every: Option<u64>,
    /// Move replicas and leaderships towards an even spread over the live
    /// brokers, e.g. onto a broker that joined [default: true].
    #[arg(long, env = "STRATA_AUTO_REBALANCE")]
    pub auto_rebalance: Option<bool>,
}

/// The config file: the same settings, durations as strings like "5s".
#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    durability: Option<DurabilityArg>,
    max_record_bytes: Option<u64>,
    max_request_bytes: Option<u64>,
    retention_interval: Option<String>,
    max_commit_delay: Option<String>,
    max_commit_bytes: Option<usize>,
    journal_file_bytes: Option<u64>,
    max_wait: Option<String>,
    replication_timeout: Option<String>,
    object_store: Option<String>,
    offload_interval: Option<String>,
    offload_concurrency: Option<usize>,
    local_disk_budget_bytes: Option<u64>,
    local_retention_ms: Option<i64>,
    local_retention_bytes: Option<i64>,
    min_insync_replicas: Option<i64>,
    default_replication_factor: Option<u32>,
    orphan_grace: Option<String>,
    gc_interval: Option<String>,
    cache_memory_bytes: Option<u64>,
    cache_disk_bytes: Option<u64>,
    read_ahead_blocks: Option<usize>,
    tier_block_bytes: Option<usize>,
    kafka_listen: Option<String>,
    kafka_advertised_host: Option<String>,
    kafka_advertised_port: Option<u16>,
    kafka_auto_create_topics: Option<bool>,
    kafka_default_partitions: Option<u32>,
    kafka_group_initial_rebalance_delay: Option<String>,
    kafka_max_frame_bytes: Option<usize>,
    node_id: Option<u64>,
    peer_listen: Option<String>,
    peer_advertise: Option<String>,
    bootstrap: Option<String>,
    join: Option<String>,
    roles: Option<String>,
    zone: Option<String>,
    meta_snapshot_every: Option<u64>,
    auto_rebalance: Option<bool>,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// Everything a node needs, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub broker: BrokerConfig,
    /// `None`: no Kafka listener.
    pub kafka: Option<KafkaSettings>,
    pub cluster: ClusterSettings,
}

/// The node's place in a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub node_id: u64,
    /// `None`: a single node with no peers.
    pub peer_listen: Option<SocketAddr>,
    /// What other nodes dial (defaults to the listener's address).
    pub peer_advertise: Option<String>,
    pub bootstrap: BTreeMap<u64, String>,
    pub join: Option<String>,
    pub voter: bool,
    pub broker: bool,
    pub zone: String,
    pub meta_snapshot_every: u64,
    /// Whether the metadata leader rebalances replicas and leaderships.
    pub auto_rebalance: bool,
}

/// The Kafka listener: where it listens, and its settings. An advertised
/// port of 0 means "the port actually bound" (for `--kafka-listen HOST:0`).
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub listen: SocketAddr,
    pub config: KafkaConfig,
}

impl ServerArgs {
    /// Merges flags and variables over the file over the defaults; returns
    /// warnings (unknown file keys) to log once logging is up.
    pub fn resolve(self) -> anyhow::Result<(ServerConfig, Vec<String>)> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .with_context(|| format!("invalid config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let warnings = file
            .unknown
            .keys()
            .map(|k| format!("unknown config file key {k:?} ignored"))
            .collect();
        let duration = |flag: Option<Duration>,
                        key: &str,
                        text: &Option<String>|
         -> anyhow::Result<Option<Duration>> {
            match (flag, text) {
                (Some(d), _) => Ok(Some(d)),
                (None, Some(t)) => humantime::parse_duration(t)
                    .map(Some)
                    .with_context(|| format!("config file key {key}: {t:?} is not a duration")),
                (None, None) => Ok(None),
            }
        };
        let listen = match self.listen.or(file.listen) {
            Some(a) => a,
            None => DEFAULT_LISTEN.parse()?,
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("strata-data"));
        let mut broker = BrokerConfig::new(data_dir);
        if let Some(d) = self.durability.or(file.durability) {
            broker.log.durability = match d {
                DurabilityArg::Fsync => Durability::Fsync,
                DurabilityArg::Write => Durability::Write,
            };
        }
        if let Some(v) = self.max_record_bytes.or(file.max_record_bytes) {
            broker.max_record_bytes = v;
            broker.default_topic.max_message_bytes =
                i64::try_from(v).context("max_record_bytes is too large")?;
        }
        if let Some(v) = self.max_request_bytes.or(file.max_request_bytes) {
            broker.max_request_bytes = v;
            broker.log.max_batch_bytes =
                usize::try_from(v).context("max_request_bytes is too large")?;
        }
        if let Some(v) = duration(
            self.retention_interval,
            "retention_interval",
            &file.retention_interval,
        )? {
            broker.retention_interval = v;
        }
        if let Some(v) = duration(
            self.max_commit_delay,
            "max_commit_delay",
            &file.max_commit_delay,
        )? {
            broker.log.max_commit_delay = v;
        }
        if let Some(v) = self.max_commit_bytes.or(file.max_commit_bytes) {
            broker.log.max_commit_bytes = v;
        }
        if let Some(v) = self.journal_file_bytes.or(file.journal_file_bytes) {
            broker.log.journal_file_bytes = v;
        }
        if let Some(v) = duration(self.max_wait, "max_wait", &file.max_wait)? {
            broker.max_wait = v;
        }
        if let Some(v) = duration(
            self.replication_timeout,
            "replication_timeout",
            &file.replication_timeout,
        )? {
            broker.replication_timeout = v;
        }
        let tier = &mut broker.tier;
        tier.object_store = self.object_store.or(file.object_store);
        if let Some(v) = duration(
            self.offload_interval,
            "offload_interval",
            &file.offload_interval,
        )? {
            tier.offload_interval = v;
        }
        if let Some(v) = self.offload_concurrency.or(file.offload_concurrency) {
            anyhow::ensure!(v >= 1, "offload_concurrency must be at least 1");
            tier.offload_concurrency = v;
        }
        if let Some(v) = self
            .local_disk_budget_bytes
            .or(file.local_disk_budget_bytes)
        {
            tier.local_disk_budget_bytes = v;
        }
        if let Some(v) = duration(self.orphan_grace, "orphan_grace", &file.orphan_grace)? {
            tier.orphan_grace = v;
        }
        if let Some(v) = duration(self.gc_interval, "gc_interval", &file.gc_interval)? {
            tier.gc_interval = v;
        }
        if let Some(v) = self.cache_memory_bytes.or(file.cache_memory_bytes) {
            tier.cache_memory_bytes = v;
        }
        if let Some(v) = self.cache_disk_bytes.or(file.cache_disk_bytes) {
            tier.cache_disk_bytes = v;
        }
        if let Some(v) = self.read_ahead_blocks.or(file.read_ahead_blocks) {
            tier.read_ahead_blocks = v;
        }
        if let Some(v) = self.tier_block_bytes.or(file.tier_block_bytes) {
            anyhow::ensure!(
                (4096..=64 << 20).contains(&v),
                "tier_block_bytes must be between 4096 and 67108864"
            );
            tier.block_bytes = v;
        }
        if let Some(v) = self.local_retention_ms.or(file.local_retention_ms) {
            broker.default_topic.local_retention_ms = v;
        }
        if let Some(v) = self.local_retention_bytes.or(file.local_retention_bytes) {
            broker.default_topic.local_retention_bytes = v;
        }
        if let Some(v) = self.min_insync_replicas.or(file.min_insync_replicas) {
            broker.default_topic.min_insync_replicas = v;
        }
        if let Some(v) = self
            .default_replication_factor
            .or(file.default_replication_factor)
        {
            if !(1..=strata_broker::MAX_REPLICATION_FACTOR).contains(&v) {
                anyhow::bail!(
                    "default_replication_factor must be between 1 and {}",
                    strata_broker::MAX_REPLICATION_FACTOR
                );
            }
            broker.default_replication_factor = v;
        }
        if broker.max_record_bytes == 0 || broker.max_record_bytes > broker.max_request_bytes {
            anyhow::bail!("max_record_bytes must be between 1 and max_request_bytes");
        }
        // The defaults every new topic takes: a bad one refuses to start the
        // server rather than failing each topic creation later.
        if let Err(e) = broker.default_topic.validate(broker.max_request_bytes) {
            anyhow::bail!("the default topic config: {}", e.message);
        }
        let delay = duration(
            self.kafka_group_initial_rebalance_delay,
            "kafka_group_initial_rebalance_delay",
            &file.kafka_group_initial_rebalance_delay,
        )?;
        let kafka_listen = self
            .kafka_listen
            .or(file.kafka_listen)
            .unwrap_or_else(|| DEFAULT_KAFKA_LISTEN.into());
        let kafka = if kafka_listen == "off" {
            None
        } else {
            let listen: SocketAddr = kafka_listen.parse().with_context(|| {
                format!("kafka_listen: {kafka_listen:?} is neither HOST:PORT nor \"off\"")
            })?;
            let mut config = KafkaConfig {
                advertised_host: listen.ip().to_string(),
                advertised_port: listen.port(),
                ..KafkaConfig::default()
            };
            if let Some(h) = self.kafka_advertised_host.or(file.kafka_advertised_host) {
                config.advertised_host = h;
            }
            if let Some(p) = self.kafka_advertised_port.or(file.kafka_advertised_port) {
                config.advertised_port = p;
            }
            if let Some(v) = self
                .kafka_auto_create_topics
                .or(file.kafka_auto_create_topics)
            {
                config.auto_create_topics = v;
            }
            if let Some(v) = self
                .kafka_default_partitions
                .or(file.kafka_default_partitions)
            {
                anyhow::ensure!(v >= 1, "kafka_default_partitions must be at least 1");
                config.default_partitions = v;
            }
            if let Some(v) = delay {
                config.group_initial_rebalance_delay = v;
            }
            if let Some(v) = self.kafka_max_frame_bytes.or(file.kafka_max_frame_bytes) {
                anyhow::ensure!(v >= 1024, "kafka_max_frame_bytes must be at least 1024");
                config.max_frame_bytes = v;
            }
            Some(KafkaSettings { listen, config })
        };
        let cluster = ClusterSettings::resolve(
            self.node_id.or(file.node_id),
            self.peer_listen.or(file.peer_listen),
            self.peer_advertise.or(file.peer_advertise),
            self.bootstrap.or(file.bootstrap),
            self.join.or(file.join),
            self.roles.or(file.roles),
            self.zone.or(file.zone),
        )?;
        let mut cluster = cluster;
        if let Some(v) = self.meta_snapshot_every.or(file.meta_snapshot_every) {
            anyhow::ensure!(v >= 1, "meta_snapshot_every must be at least 1");
            cluster.meta_snapshot_every = v;
        }
        if let Some(v) = self.auto_rebalance.or(file.auto_rebalance) {
            cluster.auto_rebalance = v;
        }
        Ok((
            ServerConfig {
                listen,
                broker,
                kafka,
                cluster,
            },
            warnings,
        ))
    }
}

impl ClusterSettings {
    fn resolve(
        node_id: Option<u64>,
        peer_listen: Option<String>,
        peer_advertise: Option<String>,
        bootstrap: Option<String>,
        join: Option<String>,
        roles: Option<String>,
        zone: Option<String>,
    ) -> anyhow::Result<ClusterSettings> {
        let node_id = node_id.unwrap_or(1);
        anyhow::ensure!(node_id >= 1, "node_id must be at least 1");
        let peer_listen =
            match peer_listen.as_deref() {
                None | Some("off") => None,
                Some(a) => Some(a.parse::<SocketAddr>().with_context(|| {
                    format!("peer_listen: {a:?} is neither HOST:PORT nor \"off\"")
                })?),
            };
        let mut voters = BTreeMap::new();
        for part in bootstrap.iter().flat_map(|b| b.split(',')).map(str::trim) {
            if part.is_empty() {
                continue;
            }
            let (id, addr) = part
                .split_once('=')
                .with_context(|| format!("bootstrap: {part:?} is not ID=HOST:PORT"))?;
            let id: u64 = id
                .trim()
                .parse()
                .with_context(|| format!("bootstrap: {id:?} is not a node id"))?;
            anyhow::ensure!(id >= 1, "bootstrap: node ids start at 1");
            anyhow::ensure!(
                voters.insert(id, addr.trim().to_string()).is_none(),
                "bootstrap: node {id} is listed twice"
            );
        }
        if !voters.is_empty() {
            anyhow::ensure!(
                voters.contains_key(&node_id),
                "bootstrap must list this node (node_id {node_id})"
            );
            anyhow::ensure!(join.is_none(), "bootstrap and join exclude each other");
        }
        if (!voters.is_empty() || join.is_some()) && peer_listen.is_none() {
            anyhow::bail!("a cluster node needs peer_listen (the address for Raft and forwarding)");
        }
        let roles = roles.unwrap_or_else(|| "meta,broker".into());
        let (mut voter, mut broker) = (false, false);
        for role in roles.split(',').map(str::trim) {
            match role {
                "meta" => voter = true,
                "broker" => broker = true,
                other => anyhow::bail!("roles: unknown role {other:?} (meta, broker)"),
            }
        }
        anyhow::ensure!(voter || broker, "roles: name at least one of meta, broker");
        Ok(ClusterSettings {
            node_id,
            peer_advertise: peer_advertise.or_else(|| peer_listen.map(|a| a.to_string())),
            peer_listen,
            bootstrap: voters,
            join,
            voter,
            broker,
            zone: zone.unwrap_or_else(|| "default".into()),
            meta_snapshot_every: 5000,
            auto_rebalance: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9999\"\nmax_record_bytes = 2048\nretention_interval = \"2s\"\nmystery = 1\n",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path),
            max_record_bytes: Some(4096),
            ..ServerArgs::default()
        };
        let (config, warnings) = args.resolve().unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.broker.max_record_bytes, 4096);
        assert_eq!(config.broker.retention_interval, Duration::from_secs(2));
        assert_eq!(
            warnings,
            vec!["unknown config file key \"mystery\" ignored".to_string()]
        );
    }

    #[test]
    fn defaults_apply_without_flags_or_file() {
        let (config, warnings) = ServerArgs::default().resolve().unwrap();
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(config.broker.log.durability, Durability::Fsync);
        assert!(warnings.is_empty());
    }

    #[test]
    fn replication_defaults_come_from_flags_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(
            &path,
            "min_insync_replicas = 2
default_replication_factor = 5
",
        )
        .unwrap();
        let args = ServerArgs {
            config: Some(path.clone()),
            ..ServerArgs::default()
        };
        let (config, warnings) = args.resolve().unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(config.broker.default_topic.min_insync_replicas, 2);
        assert_eq!(config.broker.default_replication_factor, 5);
        let args = ServerArgs {
            config: Some(path),
            default_replication_factor: Some(0),
            ..ServerArgs::default()
        };
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("default_replication_factor"), "{err}");
        let args = ServerArgs {
            min_insync_replicas: Some(0),
            ..ServerArgs::default()
        };
        let err = args.resolve().unwrap_err().to_string();
        assert!(
            err.contains("min_insync_replicas is 0, it must be between 1 and"),
            "{err}"
        );
        let (config, _) = ServerArgs::default().resolve().unwrap();
        assert_eq!(config.broker.default_topic.min_insync_replicas, 1);
        assert_eq!(config.broker.default_replication_factor, 3);
    }

    #[test]
    fn bad_values_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.toml");
        std::fs::write(&path, "retention_interval = \"soon\"\n").unwrap();
        let args = ServerArgs {
            config: Some(path),
            ..ServerArgs::default()
        };
        let err = args.resolve().unwrap_err().to_string();
        assert!(err.contains("retention_interval"), "{err}");
    }

    #[test]
    fn cluster_settings_are_checked() {
        let (config, _) = ServerArgs::default().resolve().unwrap();
        assert_eq!(config.cluster.node_id, 1);
        assert_eq!(config.cluster.peer_listen, None);
        assert!(config.cluster.voter && config.cluster.broker);

        let args = ServerArgs {
            node_id: Some(2),
            peer_listen: Some("127.0.0.1:7102".into()),
            bootstrap: Some("1=127.0.0.1:7101, 2=127.0.0.1:7102,3=127.0.0.1:7103".into()),
            roles: Some("meta".into()),
            ..ServerArgs::default()
        };
        let (config, _) = args.resolve().unwrap();
        assert_eq!(config.cluster.bootstrap.len(), 3);
        assert_eq!(
            config.cluster.peer_advertise.as_deref(),
            Some("127.0.0.1:7102")
        );
        assert!(config.cluster.voter && !config.cluster.broker);

        let bad = [
            ServerArgs {
                bootstrap: Some("1=127.0.0.1:7101".into()),
                ..ServerArgs::default()
            },
            ServerArgs {
                node_id: Some(4),
                peer_listen: Some("127.0.0.1:7104".into()),
                bootstrap: Some("1=a:1,2=b:2".into()),
                ..ServerArgs::default()
            },
            ServerArgs {
                roles: Some("meta,chef".into()),
                ..ServerArgs::default()
            },
            ServerArgs {
                node_id: Some(0),
                ..ServerArgs::default()
            },
        ];
        for args in bad {
            assert!(args.clone().resolve().is_err(), "{args:?}");
        }
    }
}
