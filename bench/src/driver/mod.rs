//! The systems a workload runs against, behind one interface.
//!
//! A driver opens producers and consumers on one system. Every record's value
//! starts with the time it was due to be sent (8 bytes, µs since the Unix
//! epoch, see [`crate::measure::encode_sent`]), so end-to-end latency is
//! measured the same way on every system, without relying on headers.

pub mod conformance;
mod grpc;
mod http;
#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Why a driver could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The system cannot be reached or refused the connection.
    #[error("cannot connect to {system} at {address}: {message}")]
    Connect {
        system: &'static str,
        address: String,
        message: String,
    },
    /// The system cannot run this benchmark as asked (a durability class it
    /// lacks, a server configured differently from the class asked for).
    #[error("{system} cannot run this: {message}")]
    Unsupported {
        system: &'static str,
        message: String,
    },
    /// A request failed; the run goes on and counts it.
    #[error("{system}: {message}")]
    Request {
        system: &'static str,
        message: String,
    },
    /// The driver is not in this build.
    #[error("the {0} driver is not built in: rebuild strata-bench with `--features {1}`")]
    NotBuilt(&'static str, &'static str),
}

impl DriverError {
    pub fn request(system: &'static str, e: impl std::fmt::Display) -> DriverError {
        DriverError::Request {
            system,
            message: e.to_string(),
        }
    }
}

/// When a system acknowledges a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After the write is on disk (fsync / fdatasync).
    Fsync,
    /// After the write is in the server's memory or the OS page cache.
    Memory,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Memory => "memory",
        }
    }
}

/// The systems there are drivers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    /// Strata's gRPC API (append and read sessions).
    StrataGrpc,
    /// Strata's HTTP API (JSON).
    StrataHttp,
    /// Any Kafka-compatible broker through librdkafka (feature `kafka`).
    Kafka,
    /// NATS JetStream (feature `nats`).
    Nats,
    /// Redis Streams, pipelined XADD / XREAD (feature `redis`).
    Redis,
}

impl System {
    pub fn as_str(self) -> &'static str {
        match self {
            System::StrataGrpc => "strata-grpc",
            System::StrataHttp => "strata-http",
            System::Kafka => "kafka",
            System::Nats => "nats",
            System::Redis => "redis",
        }
    }
}

/// How to reach a system.
#[derive(Debug, Clone)]
pub struct Target {
    pub system: System,
    /// `http://host:port` for Strata, `host:port` for Kafka, NATS and Redis.
    pub address: String,
    pub durability: Durability,
}

/// An acknowledgement still to come.
pub type SendFuture = Pin<Box<dyn Future<Output = Result<(), DriverError>> + Send + 'static>>;

/// One producer connection.
pub trait Producer: Send + Sync {
    /// Sends `values` to `partition` as one request (or one pipeline). The
    /// returned future resolves once the system acknowledged every record in
    /// the driver's durability class. Many may be in flight at once.
    fn send(&self, partition: u32, values: Vec<Bytes>) -> SendFuture;
}

/// One consumer connection, reading some partitions from their start.
#[async_trait]
pub trait Consumer: Send {
    /// The values delivered next, waiting up to `wait` for some; empty when
    /// none came in time.
    async fn poll(&mut self, wait: Duration) -> Result<Vec<Bytes>, DriverError>;
}

/// A system under test.
#[async_trait]
pub trait Driver: Send + Sync {
    fn system(&self) -> System;
    /// Creates `topic` with `partitions` partitions, empty: whatever a previous
    /// run left under that name is deleted first.
    async fn prepare(&self, topic: &str, partitions: u32) -> Result<(), DriverError>;
    /// As [`Driver::prepare`], with topic settings (`segment_bytes`,
    /// `retention_ms`, ... as Strata names them). Systems without such
    /// settings refuse any.
    async fn prepare_configured(
        &self,
        topic: &str,
        partitions: u32,
        config: &BTreeMap<String, i64>,
    ) -> Result<(), DriverError> {
        if let Some(key) = config.keys().next() {
            return Err(DriverError::Unsupported {
                system: self.system().as_str(),
                message: format!("no topic setting {key} here"),
            });
        }
        self.prepare(topic, partitions).await
    }
    /// A new producer connection.
    async fn producer(&self, topic: &str) -> Result<Box<dyn Producer>, DriverError>;
    /// A new consumer connection for `partitions`, from their first record.
    async fn consumer(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Box<dyn Consumer>, DriverError>;
}

/// Opens the driver for `target`.
pub async fn open(target: &Target) -> Result<Box<dyn Driver>, DriverError> {
    match target.system {
        System::StrataGrpc => Ok(Box::new(grpc::GrpcDriver::open(target).await?)),
        System::StrataHttp => Ok(Box::new(http::HttpDriver::open(target)?)),
        #[cfg(feature = "kafka")]
        System::Kafka => Ok(Box::new(kafka::KafkaDriver::open(target).await?)),
        #[cfg(not(feature = "kafka"))]
        System::Kafka => Err(DriverError::NotBuilt("kafka", "kafka")),
        #[cfg(feature = "nats")]
        System::Nats => Ok(Box::new(nats::NatsDriver::open(target).await?)),
        #[cfg(not(feature = "nats"))]
        System::Nats => Err(DriverError::NotBuilt("nats", "nats")),
        #[cfg(feature = "redis")]
        System::Redis => Ok(Box::new(redis::RedisDriver::open(target).await?)),
        #[cfg(not(feature = "redis"))]
        System::Redis => Err(DriverError::NotBuilt("redis", "redis")),
    }
}
