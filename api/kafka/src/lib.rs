//! `strata-kafka`: the Kafka wire protocol in front of a Strata broker, so
//! the Kafka clients people already run work with nothing but a new
//! bootstrap address.
//!
//! [`codec`] turns frames into requests and responses into frames without
//! doing I/O; `conn` runs one connection (whole frames with a size limit,
//! pipelined requests answered in order); `dispatch` routes each request to
//! its API's module under `apis` or `group` (the consumer-group
//! coordinator). Produced batches are stored as the client built them and
//! fetched batches are sent as stored: nothing is re-encoded on either path.
//! See `docs/kafka-compatibility.md` for the APIs, versions and differences
//! from Apache Kafka.

mod apis;
mod cluster;
pub mod codec;
mod config;
mod conn;
mod context;
mod dispatch;
mod errors;
mod group;
mod metrics;
mod producers;
mod server;
mod topics;
pub mod versions;

pub use config::KafkaConfig;
pub use server::KafkaServer;
