//! `strata-broker`: what a Strata broker does, apart from sockets.
//!
//! Tenants own topics; a topic has partitions, each a partition of the local
//! write-ahead log (`strata-log`). The broker validates names and configs,
//! turns produced records into Kafka record batches (placing keyed records
//! with Kafka's murmur2 partitioner so Kafka clients and the HTTP API
//! agree), reads records back by offset, time or tail with long polling,
//! stores consumer-group offsets, and enforces retention in the background.
//! Metadata lives behind the [`MetadataStore`] trait: a local file today, the
//! metadata Raft group later.
//!
//! The HTTP, gRPC and Kafka front ends call [`Broker`]; every error is a
//! [`strata_api::ApiError`] with one code for every protocol.

mod broker;
mod cluster;
mod config;
mod errors;
mod metadata;
mod metrics;
mod names;
mod partitioner;
mod records;
pub mod replication;
mod retention;
mod tiering;

pub use broker::{
    Acks, AppendResult, Broker, ConsumedRecord, PartitionDescription, ProduceRecord, ReadRequest,
    ReadResult, ReadStart, TopicDescription, partition_key,
};
pub use cluster::{
    BrokerEndpoint, ClusterView, PartitionLeader, PartitionOp, PartitionReply, SingleNode,
    not_leader,
};
pub use config::{BrokerConfig, MAX_REPLICATION_FACTOR, TierConfig, TopicConfig, TopicConfigPatch};
pub use errors::from_log as api_error_from_log;
pub use metadata::{
    ChangeOutcome, DEFAULT_REPLICATION_FACTOR, DEFAULT_TENANT, GroupOffset, LocalMetadataStore,
    MetadataBackend, MetadataChange, MetadataState, MetadataStore, RemoteSegmentRef, TopicMeta,
};
pub use names::{validate_group, validate_tenant, validate_topic};
pub use partitioner::{kafka_murmur2, partition_for_key};
