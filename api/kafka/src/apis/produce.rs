//! Produce: client batches are stored as they are.
//!
//! The log verifies each batch (CRC, lengths, every record; compressed ones
//! are decompressed only to be checked) and assigns offsets by rewriting the
//! header's base offset; nothing is re-encoded. Batches of one request are
//! queued for the log before the next request is read, so pipelined requests
//! land in order; the answer waits for durability on a task of its own.
//! acks=all waits for fsync; acks=1 for the write to the OS (Kafka's
//! leader-only acknowledgement); acks=0 is not answered.
//!
//! A partition led by another node is answered NOT_LEADER_OR_FOLLOWER
//! (from v10 with its leader, KIP-951) and nothing is written for it here;
//! with acks=0 nobody reads that answer, so the connection is closed
//! instead (as Kafka does), which makes the producer refresh its metadata.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use strata_api::ApiError;
use strata_broker::{TopicMeta, api_error_from_log};
use strata_log::batch::{self, BatchHeader};
use strata_log::{AppendOptions, Appended, Durability, LogError, Partition};

use crate::cluster::{self, Leader};
use crate::context::{Session, Shared};
use crate::dispatch::{PendingResponse, Reply};
use crate::errors;
use crate::producers::{BatchProducer, SequenceCheck};

/// Bytes a batch may exceed the topic's `max_message_bytes` by: the batch
/// and record framing around the payload (Kafka's default limit is 1 MiB + 12).
const BATCH_OVERHEAD: usize = 1024;

/// An acknowledged append: base offset, log start offset, records and bytes written.
#[derive(Debug, Clone, Copy)]
struct Acked {
    base_offset: i64,
    log_start: i64,
    records: usize,
    bytes: u64,
}

type Outcome = Result<Acked, (i16, Option<String>)>;
type PendingOutcome = futures::future::BoxFuture<'static, Outcome>;

fn refuse(code: i16, message: impl Into<String>) -> Outcome {
    Err((code, Some(message.into())))
}

fn from_api(e: &ApiError) -> (i16, Option<String>) {
    (errors::code(e), Some(e.message.clone()))
}

/// The Kafka error for a failed append.
fn from_log(e: LogError) -> (i16, Option<String>) {
    let code = match &e {
        LogError::InvalidBatch(batch::BatchError::CrcMismatch { .. }) => errors::CORRUPT_MESSAGE,
        LogError::InvalidBatch(_) => errors::INVALID_RECORD,
        LogError::BatchTooLarge { .. } => errors::MESSAGE_TOO_LARGE,
        _ => return from_api(&api_error_from_log(e)),
    };
    (code, Some(e.to_string()))
}

pub(crate) async fn handle(
    shared: &Arc<Shared>,
    session: &Session,
    request: ProduceRequest,
    version: i16,
) -> Reply {
    let started = Instant::now();
    let acks = request.acks;
    // acks=all waits for replicas up to the request's own timeout (0 or
    // less: the broker's --replication-timeout).
    let replication_wait = u64::try_from(request.timeout_ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map_or(
            shared.broker.config().replication_timeout,
            Duration::from_millis,
        );
    let durability = match acks {
        -1 => Some(Durability::Fsync),
        0 | 1 => Some(Durability::Write),
        _ => None,
    };
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let meta = shared
            .broker
            .topic_meta(&session.tenant, topic.name.as_str())
            .await;
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            // The partition's leader, when it is another node.
            let mut elsewhere = None;
            let outcome: PendingOutcome = match (&meta, durability) {
                (_, None) => ready(refuse(
                    errors::INVALID_REQUIRED_ACKS,
                    format!("acks must be -1, 0 or 1, not {acks}"),
                )),
                (Err(e), _) => ready(Err(from_api(e))),
                (Ok(meta), Some(durability)) => {
                    match cluster::serve_here(shared, meta, data.index).await {
                        Ok(served) => {
                            let records = data.records.unwrap_or_default();
                            produce_partition(
                                shared,
                                meta,
                                served.log,
                                records,
                                (durability, replication_wait),
                            )
                            .await
                        }
                        Err(refused) => {
                            elsewhere = refused.leader;
                            ready(refuse(refused.code, refused.message))
                        }
                    }
                }
            };
            partitions.push((data.index, (outcome, elsewhere)));
        }
        topics.push((topic.name, partitions));
    }
    // The leaders of partitions refused as led elsewhere.
    let mut leaders: Vec<Leader> = topics
        .iter()
        .flat_map(|(_, ps)| ps.iter().filter_map(|(_, (_, leader))| *leader))
        .collect();
    let misdirected = !leaders.is_empty();
    // KIP-951 (v10+): they and their addresses come with the answer, so
    // clients need not wait for Metadata.
    if version < 10 {
        leaders.clear();
    }
    let node_endpoints = if leaders.is_empty() {
        Vec::new()
    } else {
        cluster::brokers(shared)
            .into_iter()
            .filter(|b| leaders.iter().any(|l| l.id == b.id))
            .map(|b| {
                NodeEndpoint::default()
                    .with_node_id(b.id)
                    .with_host(b.host)
                    .with_port(b.port)
                    .with_rack(b.rack)
            })
            .collect()
    };

    let (shared, tenant) = (shared.clone(), session.tenant.clone());
    let respond: PendingResponse = Box::pin(async move {
        let mut responses = Vec::with_capacity(topics.len());
        let mut produced_bytes = 0u64;
        let mut produced_records = 0usize;
        for (name, partitions) in topics {
            let (indices, outcomes): (Vec<i32>, Vec<(PendingOutcome, Option<Leader>)>) =
                partitions.into_iter().unzip();
            let (outcomes, leaders): (Vec<PendingOutcome>, Vec<Option<Leader>>) =
                outcomes.into_iter().unzip();
            let mut partition_responses = Vec::with_capacity(indices.len());
            let answers = join_all(outcomes).await;
            for ((index, outcome), leader) in indices.into_iter().zip(answers).zip(leaders) {
                let mut r = PartitionProduceResponse::default().with_index(index);
                if let Some(leader) = leader.filter(|_| version >= 10) {
                    r = r.with_current_leader(
                        LeaderIdAndEpoch::default()
                            .with_leader_id(leader.id)
                            .with_leader_epoch(leader.epoch),
                    );
                }
                match outcome {
                    Ok(acked) => {
                        produced_records += acked.records;
                        produced_bytes += acked.bytes;
                        r = r
                            .with_base_offset(acked.base_offset)
                            .with_log_start_offset(acked.log_start);
                    }
                    Err((code, message)) => {
                        r = r.with_error_code(code).with_base_offset(-1);
                        if version >= 8 {
                            r = r.with_error_message(message.map(StrBytes::from_string));
                        }
                    }
                }
                partition_responses.push(r);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(partition_responses),
            );
        }
        if produced_records > 0 {
            shared
                .broker
                .note_produced(&tenant, produced_records, produced_bytes, started);
        }
        ResponseKind::Produce(
            ProduceResponse::default()
                .with_responses(responses)
                .with_node_endpoints(node_endpoints),
        )
    });
    if acks == 0 {
        // Nobody waits for the answer, but the appends still complete.
        tokio::spawn(respond);
        return if misdirected {
            Reply::Close
        } else {
            Reply::Nothing
        };
    }
    Reply::Pending(respond)
}

fn ready(outcome: Outcome) -> PendingOutcome {
    Box::pin(std::future::ready(outcome))
}

/// Checks the records of a partition led here and queues them for the
/// log; the returned future resolves to `(base offset, log start offset)`
/// once acknowledged.
async fn produce_partition(
    shared: &Arc<Shared>,
    topic: &TopicMeta,
    partition: Partition,
    records: bytes::Bytes,
    (durability, replication_wait): (Durability, Duration),
) -> PendingOutcome {
    // Back-pressure while the bucket is behind: a retryable error, not a full disk.
    if let Err(e) = shared.broker.check_disk_budget() {
        return ready(Err(from_api(&e)));
    }
    let headers = match check_batches(&records, topic) {
        Ok(h) => h,
        Err(e) => return ready(Err(e)),
    };
    let options = AppendOptions {
        durability: Some(durability),
        ..AppendOptions::default()
    };
    let count: usize = headers
        .iter()
        .map(|h| usize::try_from(h.records_count).unwrap_or(0))
        .sum();
    let size = (count, records.len() as u64);
    let producer = headers
        .first()
        .filter(|h| h.producer_id >= 0)
        .map(|h| BatchProducer {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            first_sequence: h.base_sequence,
            last_sequence: h.base_sequence.wrapping_add(h.last_offset_delta),
        });
    // acks=all: a majority of the partition's replicas must be in sync
    // before anything is written, and hold the batch before it is acknowledged.
    let all = durability == Durability::Fsync;
    if all && let Err(e) = shared.broker.check_in_sync(&partition) {
        return ready(Err(from_api(&e)));
    }
    let Some(producer) = producer else {
        return match partition.enqueue_append(records, options) {
            Ok(acked) => {
                let shared = shared.clone();
                Box::pin(async move {
                    let result = acked.await;
                    replicated(
                        &shared,
                        &partition,
                        all.then_some(replication_wait),
                        result,
                        size,
                    )
                    .await
                })
            }
            Err(e) => ready(Err(from_log(e))),
        };
    };
    if headers.len() != 1 {
        return ready(refuse(
            errors::INVALID_RECORD,
            "an idempotent produce carries exactly one batch per partition",
        ));
    }
    // Held until the append is acknowledged: the next idempotent batch for
    // this partition is checked against the state this one leaves.
    let mut state = shared
        .producers
        .partition(partition.key())
        .lock_owned()
        .await;
    // A partition not taking writes here (a follower, or a leader pausing
    // for a handoff) refuses before the sequence check, as Kafka checks
    // leadership first: checked after, a batch refused while an earlier one
    // of the same producer was refused too would see a gap and be answered
    // OUT_OF_ORDER_SEQUENCE_NUMBER, and the client would bump its epoch
    // for what is only a retry.
    if partition.is_follower() {
        return ready(Err(from_log(LogError::NotLeader(
            partition.key().to_owned(),
        ))));
    }
    if !state.is_current(&partition)
        && let Err(e) = state.load(&partition).await
    {
        return ready(Err(from_log(e)));
    }
    match state.check(producer) {
        SequenceCheck::Refuse(code) => {
            // Rare, and fatal for a librdkafka producer when it refuses the
            // batch the client expects to be next: worth a warning, with what
            // the state was built from.
            tracing::warn!(
                partition = partition.key(),
                producer = producer.producer_id,
                epoch = producer.epoch,
                first = producer.first_sequence,
                last = producer.last_sequence,
                code,
                state = ?state.describe(producer.producer_id),
                loaded_epoch = ?state.loaded_epoch,
                log_epoch = ?partition.last_epoch(),
                offsets = ?partition.offsets(),
                "idempotent batch refused"
            );
            ready(refuse(
                code,
                format!(
                    "producer {} epoch {} sequence {} refused",
                    producer.producer_id, producer.epoch, producer.first_sequence
                ),
            ))
        }
        SequenceCheck::Duplicate { base_offset } => {
            // A retry of a batch already in the log: acknowledged once a
            // majority holds it (a high watermark past its base offset is
            // past all of it: the watermark moves by whole batches).
            let (shared, offset) = (shared.clone(), base_offset.max(0) as u64);
            // (The batch is in this log at this epoch now: a later truncation
            // would change the epoch found there.)
            let epoch = partition.epoch_at(offset).unwrap_or(-1);
            Box::pin(async move {
                if all
                    && let Err(e) = shared
                        .broker
                        .await_replicated_within(&partition, epoch, offset + 1, replication_wait)
                        .await
                {
                    return Err(from_api(&e));
                }
                Ok(Acked {
                    base_offset,
                    log_start: partition.offsets().log_start as i64,
                    records: 0,
                    bytes: 0,
                })
            })
        }
        SequenceCheck::Append => match partition.enqueue_append(records, options) {
            Ok(acked) => {
                let shared = shared.clone();
                Box::pin(async move {
                    let result = {
                        let mut state = state;
                        let result = acked.await;
                        if let Ok(a) = &result {
                            state.record(producer, a.base_offset as i64);
                        }
                        result
                    };
                    // The sequence is taken once the batch is in the leader's
                    // log; later batches need not wait for its replication.
                    replicated(
                        &shared,
                        &partition,
                        all.then_some(replication_wait),
                        result,
                        size,
                    )
                    .await
                })
            }
            Err(e) => ready(Err(from_log(e))),
        },
    }
}

/// [`outcome`], once a majority of replicas hold the append, waiting up
/// to `wait` (acks=all; `None`: no wait).
async fn replicated(
    shared: &Shared,
    partition: &Partition,
    wait: Option<Duration>,
    result: Result<Appended, LogError>,
    size: (usize, u64),
) -> Outcome {
    if let (Some(wait), Ok(a)) = (wait, &result)
        && let Err(e) = shared
            .broker
            .await_replicated_within(partition, a.leader_epoch, a.next_offset, wait)
            .await
    {
        return Err(from_api(&e));
    }
    outcome(partition, result, size)
}

fn outcome(
    partition: &Partition,
    result: Result<Appended, LogError>,
    (records, bytes): (usize, u64),
) -> Outcome {
    match result {
        Ok(a) => Ok(Acked {
            base_offset: a.base_offset as i64,
            log_start: partition.offsets().log_start as i64,
            records,
            bytes,
        }),
        Err(e) => Err(from_log(e)),
    }
}

/// Headers of the batches in `records`, after the checks the log does not
/// make: the topic's size limit per batch, no transactions, no control batches.
fn check_batches(
    records: &[u8],
    topic: &TopicMeta,
) -> Result<Vec<BatchHeader>, (i16, Option<String>)> {
    let limit = usize::try_from(topic.config.max_message_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(BATCH_OVERHEAD);
    let mut headers = Vec::with_capacity(1);
    for item in batch::batches(records) {
        let (header, range) = item.map_err(|e| (errors::CORRUPT_MESSAGE, Some(e.to_string())))?;
        if range.len() > limit {
            return Err((
                errors::MESSAGE_TOO_LARGE,
                Some(format!(
                    "a batch of {} bytes is larger than topic {:?} allows ({} bytes)",
                    range.len(),
                    topic.name,
                    limit
                )),
            ));
        }
        if header.is_transactional() || header.is_control() {
            return Err((
                errors::INVALID_RECORD,
                Some("transactional batches are not supported".into()),
            ));
        }
        headers.push(header);
    }
    if headers.is_empty() {
        return Err((
            errors::INVALID_RECORD,
            Some("the produce request holds no record batch".into()),
        ));
    }
    Ok(headers)
}
