//! `strata consume`: print a topic's records, one per line.

use std::collections::HashMap;
use std::io;

use anyhow::bail;
use futures::StreamExt;
use futures::stream::select_all;
use strata_api::proto::{self, read_request::Start, read_session_response::Event};
use strata_api::{ApiError, ErrorCode};

use super::output::{Out, Output, record_human, record_json};
use super::{Client, ClientOpts, status_error};

#[derive(clap::Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    pub topic: String,
    /// Read only this partition (default: all partitions, merged).
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Start at the first record, even when the group has committed offsets.
    #[arg(long, conflicts_with_all = ["offset", "from_end"])]
    pub from_beginning: bool,
    /// Start after the last record: only records produced from now on (with --follow).
    #[arg(long, conflicts_with = "offset")]
    pub from_end: bool,
    /// Start at this offset (in every partition read).
    #[arg(long)]
    pub offset: Option<u64>,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub max_records: Option<u64>,
    /// Keep waiting for new records instead of stopping at the end seen at start.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// A consumer group: start where it left off and commit offsets after each batch.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
}

/// One partition's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    partition: u32,
    next: u64,
    /// Where to stop without --follow: the end offset seen at start.
    end: u64,
}

pub async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut client = args.client.connect().await?;
    let tenant = args.client.tenant.clone();
    let describe = proto::DescribeTopicRequest {
        tenant: tenant.clone(),
        topic: args.topic.clone(),
    };
    let topic = client
        .describe_topic(describe)
        .await
        .map_err(status_error)?
        .into_inner();
    let committed = match &args.group {
        Some(group) if args.offset.is_none() && !args.from_beginning && !args.from_end => {
            committed_offsets(&mut client, &tenant, group, &args.topic).await?
        }
        _ => HashMap::new(),
    };
    let positions = start_positions(&args, &topic.partition_info, &committed)?;
    let mut sink = Sink {
        client: client.clone(),
        tenant,
        topic: args.topic.clone(),
        group: args.group.clone(),
        output: args.client.output,
        out: Out::default(),
        remaining: args.max_records,
    };
    if sink.remaining == Some(0) {
        return Ok(());
    }
    let result = if args.follow {
        follow(&mut client, &mut sink, &positions).await
    } else {
        read_to_end(&mut client, &mut sink, positions).await
    };
    match result {
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn committed_offsets(
    client: &mut Client,
    tenant: &str,
    group: &str,
    topic: &str,
) -> anyhow::Result<HashMap<u32, u64>> {
    let req = proto::FetchOffsetsRequest {
        tenant: tenant.to_string(),
        group: group.to_string(),
    };
    match client.fetch_offsets(req).await {
        Ok(r) => Ok(r
            .into_inner()
            .offsets
            .into_iter()
            .filter(|o| o.topic == topic)
            .map(|o| (o.partition, o.offset))
            .collect()),
        // A new group starts like a consumer without one.
        Err(s) if ApiError::from_status(&s).code == ErrorCode::GroupNotFound => Ok(HashMap::new()),
        Err(s) => Err(status_error(s)),
    }
}

/// Where each partition starts: an explicit choice, else the group's
/// committed offset, else the partition's first record.
fn start_positions(
    args: &ConsumeArgs,
    partitions: &[proto::PartitionInfo],
    committed: &HashMap<u32, u64>,
) -> anyhow::Result<Vec<Position>> {
    let chosen: Vec<&proto::PartitionInfo> = match args.partition {
        None => partitions.iter().collect(),
        Some(p) => match partitions.iter().find(|i| i.partition == p) {
            Some(info) => vec![info],
            None => bail!(
                "partition_not_found: topic {} has {} partitions",
                args.topic,
                partitions.len()
            ),
        },
    };
    Ok(chosen
        .into_iter()
        .map(|info| {
            let next = if let Some(o) = args.offset {
                o
            } else if args.from_end {
                info.end_offset
            } else if args.from_beginning {
                info.start_offset
            } else {
                committed
                    .get(&info.partition)
                    .copied()
                    .unwrap_or(info.start_offset)
            };
            Position {
                partition: info.partition,
                next,
                end: info.end_offset,
            }
        })
        .collect())
}

/// Reads every partition, round robin, up to the end offsets seen at start.
async fn read_to_end(
    client: &mut Client,
    sink: &mut Sink,
    mut positions: Vec<Position>,
) -> anyhow::Result<()> {
    positions.retain(|p| p.next < p.end);
    while !positions.is_empty() {
        let mut i = 0;
        while i < positions.len() {
            let pos = positions[i];
            let req = proto::ReadRequest {
                tenant: sink.tenant.clone(),
                topic: sink.topic.clone(),
                partition: pos.partition,
                start: Some(Start::Offset(pos.next)),
                max_records: read_limit(pos.end - pos.next, sink.remaining),
                ..Default::default()
            };
            let batch = client.read(req).await.map_err(status_error)?.into_inner();
            let records: Vec<_> = batch
                .records
                .into_iter()
                .filter(|r| r.offset < pos.end)
                .collect();
            if !sink.deliver(pos.partition, &records).await? {
                return Ok(());
            }
            // No progress below the end (a gap the server skips no further): give up on it.
            let next = batch
                .next_offset
                .max(records.last().map_or(0, |r| r.offset + 1));
            if next <= pos.next || next >= pos.end {
                positions.remove(i);
            } else {
                positions[i].next = next;
                i += 1;
            }
        }
    }
    Ok(())
}

fn read_limit(left_in_partition: u64, remaining: Option<u64>) -> u32 {
    let n = remaining.map_or(left_in_partition, |r| r.min(left_in_partition));
    // 0 asks for the server's default; larger asks are capped by the server anyway.
    u32::try_from(n).unwrap_or(0)
}

/// One read session per partition, merged, until --max-records or interrupted.
async fn follow(
    client: &mut Client,
    sink: &mut Sink,
    positions: &[Position],
) -> anyhow::Result<()> {
    let mut sessions = Vec::new();
    for pos in positions {
        let req = proto::ReadRequest {
            tenant: sink.tenant.clone(),
            topic: sink.topic.clone(),
            partition: pos.partition,
            start: Some(Start::Offset(pos.next)),
            ..Default::default()
        };
        let stream = client
            .read_session(req)
            .await
            .map_err(status_error)?
            .into_inner();
        let partition = pos.partition;
        sessions.push(stream.map(move |item| (partition, item)).boxed());
    }
    let mut merged = select_all(sessions);
    while let Some((partition, item)) = merged.next().await {
        let event = item.map_err(status_error)?.event;
        if let Some(Event::Batch(batch)) = event
            && !sink.deliver(partition, &batch.records).await?
        {
            return Ok(());
        }
    }
    bail!("unavailable: the server ended the read sessions")
}

/// Prints records and commits the group's offsets.
struct Sink {
    client: Client,
    tenant: String,
    topic: String,
    group: Option<String>,
    output: Output,
    out: Out,
    remaining: Option<u64>,
}

impl Sink {
    /// Prints a batch (up to --max-records), then commits its offsets; false
    /// when the consumer is done.
    async fn deliver(
        &mut self,
        partition: u32,
        records: &[proto::ConsumedRecord],
    ) -> anyhow::Result<bool> {
        let take = self
            .remaining
            .map_or(records.len(), |r| records.len().min(r as usize));
        let records = &records[..take];
        for r in records {
            match self.output {
                Output::Human => self.out.line(record_human(r))?,
                Output::Json => self.out.line(record_json(partition, r))?,
            }
        }
        self.out.flush()?;
        if let (Some(group), Some(last)) = (&self.group, records.last()) {
            let req = proto::CommitOffsetsRequest {
                tenant: self.tenant.clone(),
                group: group.clone(),
                offsets: vec![proto::GroupOffset {
                    topic: self.topic.clone(),
                    partition,
                    offset: last.offset + 1,
                    metadata: String::new(),
                }],
            };
            self.client
                .commit_offsets(req)
                .await
                .map_err(status_error)?;
        }
        if let Some(r) = &mut self.remaining {
            *r -= take as u64;
            return Ok(*r > 0);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: ConsumeArgs,
    }

    fn positions(argv: &[&str], committed: &[(u32, u64)]) -> anyhow::Result<Vec<(u32, u64, u64)>> {
        let cmd = Cmd::try_parse_from(std::iter::once("consume").chain(argv.iter().copied()))?;
        let info = [
            proto::PartitionInfo {
                partition: 0,
                start_offset: 2,
                end_offset: 10,
                ..Default::default()
            },
            proto::PartitionInfo {
                partition: 1,
                start_offset: 0,
                end_offset: 5,
                ..Default::default()
            },
        ];
        let committed = committed.iter().copied().collect();
        Ok(start_positions(&cmd.args, &info, &committed)?
            .into_iter()
            .map(|p| (p.partition, p.next, p.end))
            .collect())
    }

    #[test]
    fn start_offsets_follow_the_flags_then_the_group() -> anyhow::Result<()> {
        assert_eq!(positions(&["t"], &[])?, [(0, 2, 10), (1, 0, 5)]);
        assert_eq!(positions(&["t"], &[(1, 3)])?, [(0, 2, 10), (1, 3, 5)]);
        assert_eq!(
            positions(&["t", "--from-end"], &[])?,
            [(0, 10, 10), (1, 5, 5)]
        );
        assert_eq!(
            positions(&["t", "-p", "1", "--offset", "4"], &[])?,
            [(1, 4, 5)]
        );
        assert!(positions(&["t", "-p", "7"], &[]).is_err());
        assert!(positions(&["t", "--from-beginning", "--offset", "1"], &[]).is_err());
        Ok(())
    }

    #[test]
    fn read_limits() {
        assert_eq!(read_limit(100, None), 100);
        assert_eq!(read_limit(100, Some(3)), 3);
        assert_eq!(read_limit(u64::MAX, None), 0);
    }
}
