//! Settings of the Kafka listener.

use std::time::Duration;

/// How the Kafka front end behaves. The `strata` binary fills this from
/// flags, `STRATA_*` variables and the config file.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// The host clients are told to connect to (Metadata, FindCoordinator)
    /// when the broker lists no cluster endpoints (a single node), and for
    /// this node if it is missing from them. This node's Kafka broker id
    /// is always the broker's node id (`Broker::node_id`).
    pub advertised_host: String,
    /// The port clients are told to connect to.
    pub advertised_port: u16,
    /// Reported in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// Largest request frame accepted; a larger one closes the connection.
    pub max_frame_bytes: usize,
    /// Most requests of one connection being worked on or waiting for their
    /// turn to be answered; the connection is not read further until one is.
    pub max_in_flight: usize,
    /// Whether Metadata and Produce for a missing topic create it (Kafka's
    /// `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partitions of an auto-created topic (Kafka's `num.partitions`).
    pub default_partitions: u32,
    /// Consumer groups: how long the first join waits for more members
    /// (Kafka's `group.initial.rebalance.delay.ms`).
    pub group_initial_rebalance_delay: Duration,
    /// Consumer groups: the allowed range of session timeouts.
    pub group_min_session_timeout: Duration,
    pub group_max_session_timeout: Duration,
    /// Tenant of connections that do not authenticate.
    pub default_tenant: String,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            cluster_id: "strata".into(),
            max_frame_bytes: 16 * 1024 * 1024,
            max_in_flight: 64,
            auto_create_topics: true,
            default_partitions: 1,
            group_initial_rebalance_delay: Duration::from_secs(3),
            group_min_session_timeout: Duration::from_secs(6),
            group_max_session_timeout: Duration::from_secs(1800),
            default_tenant: "default".into(),
        }
    }
}
