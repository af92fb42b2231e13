//! Any Kafka-compatible broker (Kafka, Redpanda, Strata's Kafka listener)
//! through librdkafka: one `FutureProducer` per producer, one `StreamConsumer`
//! per consumer with its partitions assigned by hand (no group membership).
//!
//! librdkafka does its network work on threads of its own; what could block
//! (creating a client, fetching metadata) runs under `spawn_blocking`, the
//! rest uses its async APIs, so the tokio runtime is never held up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication, TopicResult};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};

use super::{Consumer, Driver, DriverError, Durability, Producer, SendFuture, System, Target};

const SYSTEM: &str = "kafka";
/// How long one admin or metadata request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `open` waits for the broker's first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `prepare` waits for the new topic's partitions to have leaders.
const LEADERS_TIMEOUT: Duration = Duration::from_secs(30);
/// The most records one `poll` hands back.
const MAX_POLL_RECORDS: usize = 5000;

type Admin = AdminClient<DefaultClientContext>;

pub struct KafkaDriver {
    address: String,
    durability: Durability,
    /// For topic administration and metadata; producers and consumers open
    /// clients (and so connections) of their own.
    admin: Arc<Admin>,
}

impl KafkaDriver {
    pub async fn open(target: &Target) -> Result<KafkaDriver, DriverError> {
        let address = target.address.clone();
        let admin: Admin = create(common_config(&address))
            .await
            .map_err(|e| connect(&address, e))?;
        let admin = Arc::new(admin);
        // librdkafka connects lazily: ask for metadata now so an unreachable
        // broker fails here, not in the middle of a run.
        metadata(&admin, None, CONNECT_TIMEOUT)
            .await
            .map_err(|e| connect(&address, e))?;
        Ok(KafkaDriver {
            address,
            durability: target.durability,
            admin,
        })
    }

    /// Creates `topic`; a topic of that name still being deleted (Kafka
    /// deletes asynchronously) is waited out, within `deadline`.
    async fn create_topic(
        &self,
        topic: &str,
        count: i32,
        deadline: Instant,
    ) -> Result<(), DriverError> {
        // Replication -1: the broker's default (a replicated cluster's
        // default.replication.factor; Strata keeps one copy).
        let new = NewTopic::new(topic, count, TopicReplication::Fixed(-1));
        loop {
            match topic_error(self.admin.create_topics([&new], &admin_options()).await) {
                Ok(None) => return Ok(()),
                Ok(Some(RDKafkaErrorCode::TopicAlreadyExists)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Some(code)) => return Err(failed("create", topic, code)),
                Err(e) => return Err(failed("create", topic, e)),
            }
        }
    }

    /// Waits until metadata shows `topic` with `partitions` partitions, each
    /// with a leader.
    async fn await_leaders(&self, topic: &str, partitions: usize) -> Result<(), DriverError> {
        let deadline = Instant::now() + LEADERS_TIMEOUT;
        let mut last = String::from("no metadata yet");
        while Instant::now() < deadline {
            match metadata(&self.admin, Some(topic), REQUEST_TIMEOUT).await {
                Ok(meta) => {
                    let t = meta.topics().iter().find(|t| t.name() == topic);
                    let led = t.map_or(0, |t| {
                        t.partitions()
                            .iter()
                            .filter(|p| p.leader() >= 0 && p.error().is_none())
                            .count()
                    });
                    if t.is_some_and(|t| t.error().is_none()) && led == partitions {
                        return Ok(());
                    }
                    last = format!("{led} of {partitions} partitions have a leader");
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(DriverError::request(
            SYSTEM,
            format!("{topic} not ready in {LEADERS_TIMEOUT:?}: {last}"),
        ))
    }
}

fn connect(address: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::Connect {
        system: SYSTEM,
        address: address.to_string(),
        message: e.to_string(),
    }
}

/// What every client of this driver is configured with.
fn common_config(address: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", address)
        .set("client.id", "strata-bench")
        // Small requests go out at once instead of waiting to fill a packet.
        .set("socket.nagle.disable", "true");
    config
}

/// The error of an admin request's one topic, if it failed there.
fn topic_error(
    results: KafkaResult<Vec<TopicResult>>,
) -> Result<Option<RDKafkaErrorCode>, KafkaError> {
    Ok(results?
        .into_iter()
        .find_map(|r| r.err())
        .map(|(_, code)| code))
}

fn failed(what: &str, topic: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::request(SYSTEM, format!("{what} {topic}: {e}"))
}

fn admin_options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        // How long the broker may take to finish (Kafka creates and deletes
        // in the background; with this it answers once done).
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// Creates a librdkafka client off the runtime: `rd_kafka_new` starts threads
/// and may resolve names.
async fn create<T>(config: ClientConfig) -> Result<T, String>
where
    T: rdkafka::config::FromClientConfig + Send + 'static,
{
    tokio::task::spawn_blocking(move || config.create::<T>())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Metadata of the cluster (or of one topic); librdkafka's call blocks.
async fn metadata(
    admin: &Arc<Admin>,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<rdkafka::metadata::Metadata, String> {
    let admin = Arc::clone(admin);
    let topic = topic.map(str::to_owned);
    tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(topic.as_deref(), timeout))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// A name no other consumer of this or any earlier run has.
fn unique_group() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("strata-bench-{}-{nanos}-{n}", std::process::id())
}

#[async_trait]
impl Driver for KafkaDriver {
    fn system(&self) -> System {
        System::Kafka
    }

    async fn prepare(&self, topic: &str, partitions: u32) -> Result<(), DriverError> {
        let count = i32::try_from(partitions)
            .map_err(|_| DriverError::request(SYSTEM, format!("{partitions} partitions")))?;
        let deadline = Instant::now() + LEADERS_TIMEOUT;
        match topic_error(self.admin.delete_topics(&[topic], &admin_options()).await) {
            // Gone, or never there: either way nothing of it is left.
            Ok(None | Some(RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Ok(Some(code)) => return Err(failed("delete", topic, code)),
            Err(e) => return Err(failed("delete", topic, e)),
        }
        self.create_topic(topic, count, deadline).await?;
        self.await_leaders(topic, partitions as usize).await
    }

    async fn producer(&self, topic: &str) -> Result<Box<dyn Producer>, DriverError> {
        let mut config = common_config(&self.address);
        config
            // Fsync: every in-sync replica has it (on Strata: fsynced);
            // Memory: the leader has it (on Strata: written to the OS).
            .set(
                "acks",
                match self.durability {
                    Durability::Fsync => "all",
                    Durability::Memory => "1",
                },
            )
            // Wait at most 1 ms for more records to batch: a low latency
            // floor; at high rates batches fill before that anyway.
            .set("linger.ms", "1")
            // Batches up to librdkafka's default of 1,000,000 bytes, under the
            // 1 MiB + 12 max.message.bytes Kafka and Strata default to.
            .set("batch.size", "1000000")
            .set("batch.num.messages", "10000")
            // Values are stored and measured as sent: no CPU spent compressing.
            .set("compression.codec", "none")
            // Plain at-least-once producing, as most deployments run; no
            // InitProducerId round trip or sequence bookkeeping.
            .set("enable.idempotence", "false")
            // A generous local queue, so a constant-rate run is not refused
            // locally (QueueFull) before the broker is the bottleneck.
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            // A record not acknowledged in 30 s fails (and is counted)
            // rather than being retried for librdkafka's default 5 minutes.
            .set("message.timeout.ms", "30000");
        let connect = |e| connect(&self.address, e);
        let producer: FutureProducer = create(config).await.map_err(connect)?;
        // Learn the topic's leaders now: a topic librdkafka first meets in a
        // send waits for its once-a-second scan before metadata is asked for,
        // which would add up to a second to the first records' latency.
        let warm = producer.clone();
        let name = topic.to_string();
        tokio::task::spawn_blocking(move || {
            warm.client().fetch_metadata(Some(&name), REQUEST_TIMEOUT)
        })
        .await
        .map_err(|e| connect(e.to_string()))?
        .map_err(|e| connect(e.to_string()))?;
        Ok(Box::new(KafkaProducer {
            topic: topic.to_string(),
            producer,
        }))
    }

    async fn consumer(
        &self,
        topic: &str,
        partitions: &[u32],
    ) -> Result<Box<dyn Consumer>, DriverError> {
        let mut assignment = TopicPartitionList::new();
        for &p in partitions {
            let p = i32::try_from(p)
                .map_err(|_| DriverError::request(SYSTEM, format!("partition {p}")))?;
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| DriverError::request(SYSTEM, e))?;
        }
        let mut config = common_config(&self.address);
        config
            // librdkafka wants a group even for assigned partitions; a fresh
            // one shares nothing (no committed offsets) with other consumers.
            .set("group.id", unique_group())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false");
        let name = topic.to_string();
        // Creating the client, fetching metadata and assigning (a round trip
        // to librdkafka's main thread) all block.
        let consumer = tokio::task::spawn_blocking(move || {
            let consumer: StreamConsumer = config.create()?;
            // Leaders first: a partition assigned before they are known
            // retries its start-offset query only 500 ms later.
            consumer.fetch_metadata(Some(&name), REQUEST_TIMEOUT)?;
            consumer.assign(&assignment)?;
            Ok::<_, KafkaError>(consumer)
        })
        .await
        .map_err(|e| DriverError::request(SYSTEM, e))?
        .map_err(|e| connect(&self.address, e))?;
        Ok(Box::new(KafkaConsumer {
            consumer,
            failed: None,
        }))
    }
}

struct KafkaProducer {
    topic: String,
    producer: FutureProducer,
}

impl Producer for KafkaProducer {
    fn send(&self, partition: u32, values: Vec<Bytes>) -> SendFuture {
        let Ok(partition) = i32::try_from(partition) else {
            let e = DriverError::request(SYSTEM, format!("partition {partition}"));
            return Box::pin(std::future::ready(Err(e)));
        };
        // Enqueued now, not when the future is first polled, so records sent
        // one call after another stay in that order in the partition.
        // librdkafka copies each payload.
        let mut deliveries = Vec::with_capacity(values.len());
        let mut refused = None;
        for value in &values {
            let record = FutureRecord::<(), [u8]>::to(&self.topic)
                .partition(partition)
                .payload(value.as_ref());
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                // Typically QueueFull: the broker is not keeping up. Retrying
                // later could reorder the partition, so the request fails.
                Err((e, _)) => {
                    refused = Some(format!(
                        "{} of {} records enqueued, then: {e}",
                        deliveries.len(),
                        values.len()
                    ));
                    break;
                }
            }
        }
        // Held until every delivery is reported: dropping the last handle
        // would purge the records still queued.
        let producer = self.producer.clone();
        Box::pin(async move {
            let results = futures::future::join_all(deliveries).await;
            drop(producer);
            if let Some(message) = refused {
                return Err(DriverError::request(SYSTEM, message));
            }
            for result in results {
                match result {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(DriverError::request(SYSTEM, e)),
                    Err(_) => return Err(DriverError::request(SYSTEM, "producer closed")),
                }
            }
            Ok(())
        })
    }
}

struct KafkaConsumer {
    consumer: StreamConsumer,
    /// An error met after some records of a poll: reported by the next poll,
    /// so those records are not lost with it.
    failed: Option<DriverError>,
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, wait: Duration) -> Result<Vec<Bytes>, DriverError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let mut stream = self.consumer.stream();
        let first = match tokio::time::timeout(wait, stream.next()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => return Err(DriverError::request(SYSTEM, "consumer closed")),
            Ok(Some(message)) => message.map_err(|e| DriverError::request(SYSTEM, e))?,
        };
        let mut out = vec![payload(&first)];
        // The stream polls librdkafka's queue without waiting first, so this
        // takes what has already arrived and stops at the first gap.
        while out.len() < MAX_POLL_RECORDS {
            match stream.next().now_or_never() {
                Some(Some(Ok(message))) => out.push(payload(&message)),
                Some(Some(Err(e))) => {
                    self.failed = Some(DriverError::request(SYSTEM, e));
                    break;
                }
                Some(None) | None => break,
            }
        }
        Ok(out)
    }
}

fn payload(message: &rdkafka::message::BorrowedMessage<'_>) -> Bytes {
    // A record without a value (not one of ours) reads as empty.
    Bytes::copy_from_slice(message.payload().unwrap_or_default())
}
