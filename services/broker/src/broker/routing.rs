//! Any node answers: an operation on a partition led by another node is
//! forwarded to it over the cluster's peer protocol, so HTTP and gRPC
//! clients may talk to any node. (Kafka clients follow Metadata instead.)
//! A forwarded operation is served only where the partition is led, never
//! forwarded again, so a leader change cannot bounce it around.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;
use strata_api::{ApiError, ErrorCode};
use strata_log::Partition;
use tokio::sync::watch;
use tracing::warn;

use super::{
    Acks, AppendResult, Broker, PartitionDescription, ProduceRecord, ReadRequest, ReadResult,
    Result, now_ms, partition_not_found,
};
use crate::cluster::{PartitionLeader, PartitionOp, PartitionReply, not_leader};
use crate::metadata::TopicMeta;
use crate::partitioner::partition_for_key;

/// How long a request waits for this node to take over a partition the
/// metadata just gave it (its epoch begins first).
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);

/// How long one forwarded wait for a remote partition's end offset lasts.
const REMOTE_WAIT: Duration = Duration::from_secs(20);

fn unexpected(reply: &PartitionReply) -> ApiError {
    ApiError::new(
        ErrorCode::Internal,
        format!("unexpected reply from the partition leader: {reply:?}"),
    )
}

impl Broker {
    /// The node leading `partition`, if it is another one.
    fn remote_leader(&self, topic: &TopicMeta, partition: u32) -> Option<u64> {
        match self.leader_of(topic, partition) {
            PartitionLeader::Remote { node_id, .. } => Some(node_id),
            PartitionLeader::Local { .. } => None,
        }
    }

    /// The log partition of a partition this node serves, created from the
    /// metadata if this node has not made it yet (a topic created, or a
    /// partition assigned, through another node).
    pub(crate) async fn local_partition(
        &self,
        topic: &TopicMeta,
        partition: u32,
    ) -> Result<Partition> {
        let p = match self.partition(topic, partition) {
            Ok(p) => p,
            Err(e) if partition < topic.partitions => {
                self.sync_with_metadata().await?;
                self.partition(topic, partition).map_err(|_| e)?
            }
            Err(e) => return Err(e),
        };
        // Just made leader: its epoch begins within a reconcile pass (for a
        // new replicated partition too, which takes no acks=all write
        // before: see `check_in_sync`).
        let deadline = std::time::Instant::now() + TAKEOVER_WAIT;
        while (p.is_follower() || self.awaits_leadership(&p))
            && self.remote_leader(topic, partition).is_none()
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(p)
    }

    /// Makes the log hold the partitions the metadata names now.
    pub async fn sync_with_metadata(&self) -> Result<()> {
        let _admin = self.admin.lock().await;
        let last = super::topics::reconcile(&self.log, self.meta.as_ref()).await?;
        let mut known = self.last_topic_id.lock();
        *known = (*known).max(last);
        Ok(())
    }

    /// Produces records, each to its own partition; returns `(partition, offset)` per record,
    /// in request order. Records of partitions led elsewhere are forwarded.
    ///
    /// Records of one partition are appended as one batch, all-or-nothing;
    /// across partitions (as in Kafka) some may be written when another fails.
    pub async fn produce(
        &self,
        tenant: &str,
        topic: &str,
        mut records: Vec<ProduceRecord>,
        acks: Acks,
    ) -> Result<Vec<(u32, u64)>> {
        let meta = self.topic(tenant, topic).await?;
        // (Not "no live brokers": a cluster that lost its leases must still
        // not write partitions another node leads.)
        if self.cluster.is_single_node() || records.is_empty() {
            return self.produce_here(&meta, records, acks).await;
        }
        // Place every record first, so a bad partition fails the whole request.
        let mut spread = None;
        let mut by_node: BTreeMap<Option<u64>, Vec<usize>> = BTreeMap::new();
        for (index, record) in records.iter_mut().enumerate() {
            let partition = match (record.partition, &record.key) {
                (Some(p), _) if p >= meta.partitions => return Err(partition_not_found(&meta, p)),
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, meta.partitions),
                (None, None) => *spread.get_or_insert_with(|| self.spread_partition(&meta)),
            };
            record.partition = Some(partition);
            by_node
                .entry(self.remote_leader(&meta, partition))
                .or_default()
                .push(index);
        }
        if by_node.len() == 1 && by_node.contains_key(&None) {
            return self.produce_here(&meta, records, acks).await;
        }
        let pick = |indices: &[usize]| -> Vec<ProduceRecord> {
            indices
                .iter()
                .filter_map(|&i| records.get(i).cloned())
                .collect()
        };
        let meta = &meta;
        let jobs = by_node.iter().map(|(node, indices)| {
            let part = pick(indices);
            async move {
                match node {
                    None => self.produce_here(meta, part, acks).await,
                    Some(node) => {
                        let op = PartitionOp::Produce {
                            tenant: tenant.to_string(),
                            topic: topic.to_string(),
                            records: part,
                            acks,
                        };
                        match self.cluster.forward(*node, op).await? {
                            PartitionReply::Produced(offsets) => Ok(offsets),
                            other => Err(unexpected(&other)),
                        }
                    }
                }
            }
        });
        let results = join_all(jobs).await;
        let mut out = vec![(0u32, 0u64); records.len()];
        for ((_, indices), result) in by_node.iter().zip(results) {
            for (&index, offset) in indices.iter().zip(result?) {
                if let Some(slot) = out.get_mut(index) {
                    *slot = offset;
                }
            }
        }
        Ok(out)
    }

    /// Appends records to one partition atomically (one batch); with
    /// `expected_offset`, only if the partition ends there (else `offset_mismatch`
    /// with the actual end offset in the details).
    pub async fn append(
        &self,
        tenant: &str,
        topic: &str,
        partition: u32,
        records: Vec<ProduceRecord>,
        expected_offset: Option<u64>,
        acks: Acks,
    ) -> Result<AppendResult> {
        let meta = self.topic(tenant, topic).await?;
        match self.remote_leader(&meta, partition) {
            None => {
                self.append_here(&meta, partition, records, expected_offset, acks)
                    .await
            }
            Some(node) => {
                let op = PartitionOp::Append {
                    tenant: tenant.to_string(),
                    topic: topic.to_string(),
                    partition,
                    records,
                    expected_offset,
                    acks,
                };
                match self.cluster.forward(node, op).await? {
                    PartitionReply::Appended(result) => Ok(result),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }

    /// Reads records from one partition (long polling up to `request.wait`).
    pub async fn read(
        &self,
        tenant: &str,
        topic: &str,
        partition: u32,
        request: ReadRequest,
    ) -> Result<ReadResult> {
        let meta = self.topic(tenant, topic).await?;
        match self.remote_leader(&meta, partition) {
            None => self.read_here(&meta, partition, request).await,
            Some(node) => {
                let op = PartitionOp::Read {
                    tenant: tenant.to_string(),
                    topic: topic.to_string(),
                    partition,
                    request,
                };
                match self.cluster.forward(node, op).await? {
                    PartitionReply::Read(result) => Ok(result),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }

    /// One partition as `describe_topic` reports it, from its leader.
    pub(crate) async fn describe_partition(
        &self,
        topic: &TopicMeta,
        partition: u32,
        now: i64,
    ) -> Result<PartitionDescription> {
        match self.remote_leader(topic, partition) {
            None => self.describe_partition_here(topic, partition, now).await,
            Some(node) => {
                let op = PartitionOp::Describe {
                    tenant: topic.tenant.clone(),
                    topic: topic.name.clone(),
                    partition,
                };
                match self.cluster.forward(node, op).await? {
                    PartitionReply::Described(d) => Ok(*d),
                    other => Err(unexpected(&other)),
                }
            }
        }
    }

    /// `(start_offset, end_offset)` of a partition.
    pub async fn check_tail(
        &self,
        tenant: &str,
        topic: &str,
        partition: u32,
    ) -> Result<(u64, u64)> {
        let meta = self.topic(tenant, topic).await?;
        if self.remote_leader(&meta, partition).is_none() {
            return self.check_tail_here(tenant, topic, partition).await;
        }
        if partition >= meta.partitions {
            return Err(partition_not_found(&meta, partition));
        }
        let d = self.describe_partition(&meta, partition, now_ms()).await?;
        Ok((d.start_offset, d.end_offset))
    }

    /// Follows a partition's end offset; wakes tailing readers. For a
    /// partition led elsewhere, a task follows the leader's end offset
    /// until the receiver is dropped.
    pub async fn watch_end(
        &self,
        tenant: &str,
        topic: &str,
        partition: u32,
    ) -> Result<watch::Receiver<u64>> {
        let meta = self.topic(tenant, topic).await?;
        let Some(node) = self.remote_leader(&meta, partition) else {
            return self.watch_end_here(tenant, topic, partition).await;
        };
        let (_, end) = self.check_tail(tenant, topic, partition).await?;
        let (tx, rx) = watch::channel(end);
        let cluster = self.cluster.clone();
        let (tenant, topic) = (tenant.to_string(), topic.to_string());
        tokio::spawn(async move {
            let mut current = end;
            loop {
                let op = PartitionOp::WaitEnd {
                    tenant: tenant.clone(),
                    topic: topic.clone(),
                    partition,
                    after: current,
                    wait: REMOTE_WAIT,
                };
                let result = tokio::select! {
                    _ = tx.closed() => return,
                    r = cluster.forward(node, op) => r,
                };
                match result {
                    Ok(PartitionReply::End(end)) if end != current => {
                        current = end;
                        tx.send_replace(end);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e.message, node, "cannot follow a remote partition's end");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// The topic of a forwarded operation. The node that forwarded it may
    /// have seen a metadata change (a topic just created) that this node has
    /// not applied yet: before answering "no such topic", catch up.
    async fn topic_forwarded(&self, tenant: &str, topic: &str) -> Result<TopicMeta> {
        match self.topic(tenant, topic).await {
            Err(e) if e.code == ErrorCode::TopicNotFound || e.code == ErrorCode::TenantNotFound => {
                self.meta.barrier().await?;
                self.topic(tenant, topic).await
            }
            other => other,
        }
    }

    /// Serves an operation another node forwarded: only for partitions this
    /// node leads (else a retryable `not leader` error).
    pub async fn serve_forwarded(&self, op: PartitionOp) -> Result<PartitionReply> {
        let check = |meta: &TopicMeta, partition: u32| match self.remote_leader(meta, partition) {
            None => Ok(()),
            Some(leader) => Err(not_leader(
                &super::partition_key(meta, partition),
                Some(leader),
            )),
        };
        match op {
            PartitionOp::Produce {
                tenant,
                topic,
                records,
                acks,
            } => {
                let meta = self.topic_forwarded(&tenant, &topic).await?;
                for record in &records {
                    let partition = record.partition.ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::BadRequest,
                            "a forwarded record names no partition",
                        )
                    })?;
                    if partition >= meta.partitions {
                        return Err(partition_not_found(&meta, partition));
                    }
                    check(&meta, partition)?;
                }
                let offsets = self.produce_here(&meta, records, acks).await?;
                Ok(PartitionReply::Produced(offsets))
            }
            PartitionOp::Append {
                tenant,
                topic,
                partition,
                records,
                expected_offset,
                acks,
            } => {
                let meta = self.topic_forwarded(&tenant, &topic).await?;
                check(&meta, partition)?;
                let result = self
                    .append_here(&meta, partition, records, expected_offset, acks)
                    .await?;
                Ok(PartitionReply::Appended(result))
            }
            PartitionOp::Read {
                tenant,
                topic,
                partition,
                request,
            } => {
                let meta = self.topic_forwarded(&tenant, &topic).await?;
                check(&meta, partition)?;
                let result = self.read_here(&meta, partition, request).await?;
                Ok(PartitionReply::Read(result))
            }
            PartitionOp::Describe {
                tenant,
                topic,
                partition,
            } => {
                let meta = self.topic_forwarded(&tenant, &topic).await?;
                if partition >= meta.partitions {
                    return Err(partition_not_found(&meta, partition));
                }
                check(&meta, partition)?;
                let d = self
                    .describe_partition_here(&meta, partition, now_ms())
                    .await?;
                Ok(PartitionReply::Described(Box::new(d)))
            }
            PartitionOp::WaitEnd {
                tenant,
                topic,
                partition,
                after,
                wait,
            } => {
                let meta = self.topic_forwarded(&tenant, &topic).await?;
                check(&meta, partition)?;
                let p = self.local_partition(&meta, partition).await?;
                let mut end = p.watch_high_watermark();
                let wait = wait.min(self.config.max_wait);
                let _ = tokio::time::timeout(wait, end.wait_for(|&e| e != after)).await;
                Ok(PartitionReply::End(p.high_watermark()))
            }
            PartitionOp::HandOff {
                partition_key,
                epoch,
                to,
                wait,
            } => {
                let end = self.hand_off(&partition_key, epoch, to, wait).await?;
                Ok(PartitionReply::HandedOff(end))
            }
        }
    }
}
