//! Fetch: stored batches are sent as they are, compressed or not.
//!
//! Each partition is read from the requested offset (the first batch may
//! start before it; clients skip the records they did not ask for), within
//! the partition's and the response's byte limits, except that the first
//! batch with data is always sent whole, however large (KIP-74), so a
//! consumer can never get stuck behind a big batch. With fewer than
//! `min_bytes` available the request waits, up to `max_wait_ms`, for any of
//! its partitions to grow (long poll). Fetch sessions (KIP-227) are not
//! kept: every response is a full one (session id 0), which clients accept.
//! A partition led by another node is answered NOT_LEADER_OR_FOLLOWER with
//! no offsets (-1) and, from v12, its leader; it is not read here.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use strata_broker::TopicMeta;
use strata_log::{Partition, batch};

use crate::cluster::{self, Leader};
use crate::context::Shared;
use crate::errors;

/// One requested partition: its topic, number and log partition, or the
/// error code that answers it.
struct Wanted {
    index: i32,
    offset: i64,
    max_bytes: usize,
    partition: Result<(TopicMeta, u32, Partition), i16>,
    /// The partition's leader, when it is another node.
    elsewhere: Option<Leader>,
}

/// What a partition contributes to the response.
struct Found {
    error: i16,
    high_watermark: i64,
    log_start: i64,
    records: Option<Bytes>,
}

pub(crate) async fn handle(
    shared: &Shared,
    tenant: &str,
    request: FetchRequest,
    version: i16,
) -> FetchResponse {
    let mut topics: Vec<(TopicName, Vec<Wanted>)> = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let meta = shared.broker.topic_meta(tenant, topic.topic.as_str()).await;
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let mut elsewhere = None;
            let partition = match &meta {
                Err(e) => Err(errors::code(e)),
                Ok(meta) => match cluster::serve_here(shared, meta, p.partition).await {
                    Ok(served) => Ok((meta.clone(), served.index, served.log)),
                    Err(refused) => {
                        elsewhere = refused.leader;
                        Err(refused.code)
                    }
                },
            };
            partitions.push(Wanted {
                index: p.partition,
                offset: p.fetch_offset,
                max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                partition,
                elsewhere,
            });
        }
        topics.push((topic.topic, partitions));
    }

    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0))
        .min(shared.broker.config().max_wait);
    let deadline = Instant::now() + max_wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let response_budget = usize::try_from(request.max_bytes).unwrap_or(0);
    loop {
        // Watch before reading, so a record arriving in between wakes the wait.
        let watches: Vec<_> = topics
            .iter()
            .flat_map(|(_, ps)| ps.iter())
            .filter_map(|w| {
                w.partition
                    .as_ref()
                    .ok()
                    .map(|(_, _, p)| p.watch_high_watermark())
            })
            .collect();
        let found = read_all(shared, &topics, response_budget).await;
        let bytes: usize = found
            .iter()
            .flatten()
            .filter_map(|f| f.records.as_ref().map(Bytes::len))
            .sum();
        let failed = found.iter().flatten().any(|f| f.error != errors::NONE);
        let now = Instant::now();
        if bytes >= min_bytes.max(1) || failed || now >= deadline || watches.is_empty() {
            let records: usize = found
                .iter()
                .flatten()
                .filter_map(|f| f.records.as_ref())
                .map(|r| count_records(r))
                .sum();
            shared.broker.note_read(tenant, records, bytes);
            return respond(topics, found, version);
        }
        wait_for_growth(watches, deadline - now).await;
    }
}

/// Reads every partition at once (reads from the bucket each wait on
/// object-store round trips; in turn they would add up), then applies the
/// response's byte budget in request order: past the first partition with
/// data, a partition whose data does not fit in what is left sends none
/// (its next fetch gets it).
async fn read_all(
    shared: &Shared,
    topics: &[(TopicName, Vec<Wanted>)],
    budget: usize,
) -> Vec<Vec<Found>> {
    let reads = topics.iter().map(|(_, partitions)| {
        futures::future::join_all(
            partitions
                .iter()
                .map(|wanted| read_one(shared, wanted, budget)),
        )
    });
    let mut out = futures::future::join_all(reads).await;
    let mut left = budget;
    let mut first = true;
    for found in out.iter_mut().flatten() {
        let Some(len) = found.records.as_ref().map(Bytes::len) else {
            continue;
        };
        if first || len <= left {
            left = left.saturating_sub(len);
            first = false;
        } else {
            found.records = None;
        }
    }
    out
}

/// One partition, up to its own limit and `budget` (at least one batch when
/// it has data).
async fn read_one(shared: &Shared, wanted: &Wanted, budget: usize) -> Found {
    let (topic, index, p) = match &wanted.partition {
        Ok(p) => p,
        Err(code) => {
            return Found {
                error: *code,
                high_watermark: -1,
                log_start: -1,
                records: None,
            };
        }
    };
    if let Err(e) = shared.broker.check_readable(p) {
        return Found {
            error: errors::code(&e),
            high_watermark: -1,
            log_start: -1,
            records: None,
        };
    }
    let offsets = p.offsets();
    let (start, end) = (offsets.log_start as i64, offsets.end as i64);
    // As Kafka: offsets up to the log end are valid, records are served
    // only below the high watermark (what a majority of replicas hold).
    let high_watermark = offsets.high_watermark as i64;
    let mut found = Found {
        error: errors::NONE,
        high_watermark,
        log_start: start,
        records: None,
    };
    if wanted.offset < start || wanted.offset > end {
        found.error = errors::OFFSET_OUT_OF_RANGE;
        return found;
    }
    let limit = wanted.max_bytes.min(budget);
    if wanted.offset >= high_watermark || wanted.max_bytes == 0 {
        return found;
    }
    // At least one whole batch comes back, however large (KIP-74).
    let read = shared
        .broker
        .read_batches(topic, *index, p, wanted.offset as u64, limit.max(1))
        .await;
    match read {
        Ok(read) => {
            found.high_watermark = read.end_offset as i64;
            found.log_start = read.log_start as i64;
            let len = read.len_bytes();
            found.records = Some(concat(read.chunks, len));
        }
        Err(e) => found.error = errors::code(&e),
    }
    found
}

/// The chunks as one buffer (no copy for the common single chunk).
fn concat(chunks: Vec<Bytes>, len: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.into_iter().next().unwrap_or_default();
    }
    let mut out = BytesMut::with_capacity(len);
    for c in chunks {
        out.extend_from_slice(&c);
    }
    out.freeze()
}

fn count_records(records: &[u8]) -> usize {
    batch::batches(records)
        .filter_map(Result::ok)
        .map(|(h, _)| usize::try_from(h.records_count).unwrap_or(0))
        .sum()
}

/// Waits until any watched partition's end moves, or `wait` passes.
async fn wait_for_growth(watches: Vec<tokio::sync::watch::Receiver<u64>>, wait: Duration) {
    let changes = watches.into_iter().map(|mut rx| {
        Box::pin(async move {
            let _ = rx.changed().await;
        })
    });
    let _ = tokio::time::timeout(wait, select_all(changes)).await;
}

fn respond(
    topics: Vec<(TopicName, Vec<Wanted>)>,
    found: Vec<Vec<Found>>,
    version: i16,
) -> FetchResponse {
    let responses = topics
        .into_iter()
        .zip(found)
        .map(|((name, wanted), found)| {
            let partitions = wanted
                .into_iter()
                .zip(found)
                .map(|(w, f)| {
                    let mut data = PartitionData::default()
                        .with_partition_index(w.index)
                        .with_error_code(f.error)
                        .with_high_watermark(f.high_watermark)
                        .with_last_stable_offset(f.high_watermark)
                        .with_log_start_offset(f.log_start)
                        // librdkafka reads a null record set as a protocol error: send empty.
                        .with_records(Some(f.records.unwrap_or_default()));
                    // v12+: where to fetch it instead (KIP-951).
                    if let Some(leader) = w.elsewhere.filter(|_| version >= 12) {
                        data = data.with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(leader.id)
                                .with_leader_epoch(leader.epoch),
                        );
                    }
                    data
                })
                .collect();
            FetchableTopicResponse::default()
                .with_topic(name)
                .with_partitions(partitions)
        })
        .collect();
    FetchResponse::default().with_responses(responses)
}
