//! NATS JetStream: one file-backed stream per topic, one subject per
//! partition (`<topic>.<partition>`), acknowledged publishes, one ordered pull
//! consumer per partition read back.
//!
//! Durability: JetStream acknowledges a publish once it is written to the OS
//! and fsyncs only every `sync_interval` (2 minutes by default), so the
//! server's defaults are the memory class. The fsync class needs the server
//! started with `jetstream { sync_interval: always }`, a setting nats-server
//! has only since 2.10 (2.9 refuses it); the runner starts the server that
//! way, and this driver refuses the class on an older server, whose
//! acknowledgements can never mean "on disk".

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::SelectAll;
use futures::{FutureExt as _, StreamExt as _};

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig, OrderedError};
use async_nats::jetstream::consumer::{DeliverPolicy, ReplayPolicy};
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use async_nats::jetstream::{self, Context};

use super::{Consumer, Driver, DriverError, Durability, Producer, SendFuture, System, Target};

const SYSTEM: &str = "nats";
/// How long one JetStream API request or publish acknowledgement may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most records one `poll` hands back.
const MAX_POLL_RECORDS: usize = 5000;
/// The first server version with `sync_interval: always`.
const FSYNC_SINCE: (u64, u64) = (2, 10);
/// Acks in flight on one connection before `publish` waits. The client holds
/// a permit until the ack future is awaited, and `send` awaits its acks only
/// after publishing the whole batch: with the client's default (5000), large
/// batches in flight together would each wait for permits the others hold.
/// The runner bounds what is in flight itself.
const MAX_ACKS_IN_FLIGHT: usize = 1 << 22;

pub struct NatsDriver {
    address: String,
    /// For stream administration; producers and consumers connect on their own.
    js: Context,
}

impl NatsDriver {
    pub async fn open(target: &Target) -> Result<NatsDriver, DriverError> {
        let address = target.address.clone();
        let client = connect(&address).await?;
        let info = client.server_info();
        let unsupported = |message: String| DriverError::Unsupported {
            system: SYSTEM,
            message,
        };
        if !info.jetstream {
            return Err(unsupported(format!(
                "the server at {address} runs without JetStream (start it with -js)"
            )));
        }
        if target.durability == Durability::Fsync {
            match parse_version(&info.version) {
                Some(v) if v >= FSYNC_SINCE => {}
                Some(_) => {
                    return Err(unsupported(format!(
                        "nats-server {} acknowledges writes before they are fsynced and has no \
                         `sync_interval: always` (added in 2.10.0); the fsync class needs 2.10 or later",
                        info.version
                    )));
                }
                None => {
                    return Err(unsupported(format!(
                        "cannot tell whether nats-server version {:?} can fsync every write \
                         (`sync_interval: always` needs 2.10.0 or later)",
                        info.version
                    )));
                }
            }
        }
        Ok(NatsDriver {
            address,
            js: context(client),
        })
    }
}

async fn connect(address: &str) -> Result<async_nats::Client, DriverError> {
    async_nats::ConnectOptions::new()
        .name("strata-bench")
        .connection_timeout(CONNECT_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        .connect(address)
        .await
        .map_err(|e| DriverError::Connect {
            system: SYSTEM,
            address: address.to_string(),
            message: e.to_string(),
        })
}

fn context(client: async_nats::Client) -> Context {
    jetstream::context::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .max_ack_inflight(MAX_ACKS_IN_FLIGHT)
        .build(client)
}

/// `major.minor` of a version such as `2.9.10` or `2.10.0-beta.3`.
fn parse_version(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?;
    let digits = minor
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(minor.len());
    Some((major, minor[..digits].parse().ok()?))
}

/// Stream names may not hold `.`, `*`, `>`, path separators or whitespace;
/// anything but letters, digits, `-` and `_` becomes `_`.
fn stream_name(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn subject(topic: &str, partition: u32) -> String {
    format!("{topic}.{partition}")
}

/// The topic becomes the leading tokens of subjects, so it must be a valid
/// subject prefix itself; renaming it as for stream names would let distinct
/// topics share subjects.
fn check_topic(topic: &str) -> Result<(), DriverError> {
    let valid = !topic.is_empty()
        && topic
            .split('.')
            .all(|t| !t.is_empty() && !t.contains(['*', '>']) && !t.contains(char::is_whitespace));
    if valid {
        Ok(())
    } else {
        Err(DriverError::Unsupported {
            system: SYSTEM,
            message: format!("topic {topic:?} is not a valid NATS subject prefix"),
        })
    }
}

fn request(e: impl std::fmt::Display) -> DriverError {
    DriverError::request(SYSTEM, e)
}

#[async_trait]
impl Driver for NatsDriver {
    fn system(&self) -> System {
        System::Nats
    }

    async fn prepare(&self, topic: &str, partitions: u32) -> Result<(), DriverError> {
        check_topic(topic)?;
        let name = stream_name(topic);
        if let Err(e) = self.js.delete_stream(&name).await {
            let missing = matches!(
                e.kind(),
                GetStreamErrorKind::JetStream(ref j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND
            );
            if !missing {
                return Err(request(format!("delete stream {name}: {e}")));
            }
        }
        let config = StreamConfig {
            name: name.clone(),
            // Exactly the topic's partitions: a wildcard would also store
            // publishes to partitions the topic does not have.
            subjects: (0..partitions).map(|p| subject(topic, p)).collect(),
            storage: StorageType::File,
            ..Default::default()
        };
        self.js
            .create_stream(config)
            .await
            .map_err(|e| request(format!("create stream {name}: {e}")))?;
        Ok(())
    }

    async fn producer(&self, topic: &str) -> Result<Box<dyn Producer>, DriverError> {
        check_topic(topic)?;
        Ok(Box::new(NatsProducer {
            topic: topic.to_string(),
            js: context(connect(&self.address).await?),
        }))
    }

    async fn consumer(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Box<dyn Consumer>, DriverError> {
        check_topic(topic)?;
        let name = stream_name(topic);
        let js = context(connect(&self.address).await?);
        let stream = js
            .get_stream_no_info(&name)
            .await
            .map_err(|e| request(format!("stream {name}: {e}")))?;
        let mut merged = SelectAll::new();
        for &partition in partitions {
            let filter = subject(topic, partition);
            // Ordered: ephemeral, no acks, recreated from the last sequence
            // seen if the server loses it, so each partition reads in order.
            let consumer = stream
                .create_consumer(OrderedConfig {
                    filter_subject: filter.clone(),
                    deliver_policy: DeliverPolicy::All,
                    replay_policy: ReplayPolicy::Instant,
                    ..Default::default()
                })
                .await
                .map_err(|e| request(format!("consumer of {filter}: {e}")))?;
            let messages = consumer
                .messages()
                .await
                .map_err(|e| request(format!("read {filter}: {e}")))?;
            merged.push(Box::pin(messages));
        }
        Ok(Box::new(NatsConsumer { merged, held: None }))
    }
}

struct NatsProducer {
    topic: String,
    js: Context,
}

impl Producer for NatsProducer {
    fn send(&self, partition: u32, values: Vec<Bytes>) -> SendFuture {
        let js = self.js.clone();
        let subject = subject(&self.topic, partition);
        Box::pin(async move {
            // Publish all before awaiting any ack, so the batch is pipelined
            // on the connection as one request would be.
            let mut acks = Vec::with_capacity(values.len());
            for value in values {
                let ack = js
                    .publish(subject.clone(), value)
                    .await
                    .map_err(|e| request(format!("publish to {subject}: {e}")))?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await
                    .map_err(|e| request(format!("ack from {subject}: {e}")))?;
            }
            Ok(())
        })
    }
}

struct NatsConsumer {
    merged: SelectAll<std::pin::Pin<Box<Ordered>>>,
    /// An error that came after records in the same poll, reported next time
    /// so those records are not lost.
    held: Option<DriverError>,
}

fn take(
    item: Option<Result<jetstream::Message, OrderedError>>,
    out: &mut Vec<Bytes>,
) -> Result<(), DriverError> {
    match item {
        Some(Ok(message)) => {
            out.push(message.message.payload);
            Ok(())
        }
        Some(Err(e)) => Err(request(format!("read: {e}"))),
        None => Err(request("every partition's consumer ended")),
    }
}

#[async_trait]
impl Consumer for NatsConsumer {
    async fn poll(&mut self, wait: Duration) -> Result<Vec<Bytes>, DriverError> {
        if let Some(e) = self.held.take() {
            return Err(e);
        }
        let mut out = Vec::new();
        let first = match tokio::time::timeout(wait, self.merged.next()).await {
            Err(_) => return Ok(out),
            Ok(item) => item,
        };
        take(first, &mut out)?;
        // Whatever else has arrived, without waiting again.
        while out.len() < MAX_POLL_RECORDS {
            let Some(item) = self.merged.next().now_or_never() else {
                break;
            };
            if let Err(e) = take(item, &mut out) {
                self.held = Some(e);
                break;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("2.9.10"), Some((2, 9)));
        assert_eq!(parse_version("2.10.0-beta.3"), Some((2, 10)));
        assert_eq!(parse_version("v2.11.1"), Some((2, 11)));
        assert_eq!(parse_version("2"), None);
        assert!(parse_version("2.9.10").is_some_and(|v| v < FSYNC_SINCE));
    }

    #[test]
    fn names() {
        assert_eq!(stream_name("bench-t"), "bench-t");
        assert_eq!(stream_name("a.b/c d"), "a_b_c_d");
        assert!(check_topic("bench-t").is_ok());
        assert!(check_topic("a.b").is_ok());
        assert!(check_topic("a..b").is_err());
        assert!(check_topic("a*").is_err());
        assert!(check_topic("").is_err());
    }
}
