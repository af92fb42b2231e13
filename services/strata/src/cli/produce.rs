//! `strata produce`: records from stdin, one per line, over one append session.

use std::io::BufRead as _;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use strata_api::proto;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::output::{Out, Output};
use super::{ClientOpts, status_error};

/// How long a partial batch waits for more lines, so typing a line at a
/// terminal produces it at once while piped input still fills whole batches.
const LINGER: Duration = Duration::from_millis(20);
/// Requests queued ahead of the session.
const QUEUE: usize = 64;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcksArg {
    /// Acknowledged once durable on disk.
    Fsync,
    /// Acknowledged once written to the OS.
    Write,
}

impl AcksArg {
    pub fn to_proto(acks: Option<AcksArg>) -> proto::Acks {
        match acks {
            None => proto::Acks::Default,
            Some(AcksArg::Fsync) => proto::Acks::Fsync,
            Some(AcksArg::Write) => proto::Acks::Write,
        }
    }
}

#[derive(clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub client: ClientOpts,
    pub topic: String,
    /// The key of every record (default: none, records are spread over partitions).
    #[arg(long, short = 'k')]
    pub key: Option<String>,
    /// Append every batch to this partition, atomically.
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// When the server acknowledges (default: the server's, fsync).
    #[arg(long, value_enum)]
    pub acks: Option<AcksArg>,
    /// Lines per append request.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
}

pub async fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let mut client = args.client.connect().await?;
    let template = proto::AppendRequest {
        tenant: args.client.tenant.clone(),
        topic: args.topic.clone(),
        records: Vec::new(),
        partition: args.partition,
        expected_offset: None,
        acks: AcksArg::to_proto(args.acks) as i32,
    };
    let key = args.key.map(Bytes::from);
    let (tx, rx) = mpsc::channel(QUEUE);
    let reader = tokio::spawn(read_batches(
        stdin_lines(),
        args.batch as usize,
        key,
        template,
        tx,
    ));

    let mut responses = client
        .append_session(ReceiverStream::new(rx))
        .await
        .map_err(status_error)?
        .into_inner();
    let mut out = Out::default();
    let mut produced = 0u64;
    let mut write_result = Ok(());
    while let Some(response) = responses.message().await.map_err(status_error)? {
        produced += response.offsets.len() as u64;
        if write_result.is_ok() {
            write_result = print_offsets(&mut out, args.client.output, &response.offsets);
        }
    }
    reader.await.context("stdin reader failed")??;
    if args.client.output == Output::Human {
        eprintln!("produced {produced} records to {}", args.topic);
    }
    Out::finish(write_result)
}

fn print_offsets(
    out: &mut Out,
    output: Output,
    offsets: &[proto::RecordOffset],
) -> std::io::Result<()> {
    for o in offsets {
        match output {
            Output::Human => out.line(format_args!("{}/{}", o.partition, o.offset))?,
            Output::Json => {
                out.line(serde_json::json!({"partition": o.partition, "offset": o.offset}))?
            }
        }
    }
    out.flush()
}

/// Reads stdin on a thread of its own: tokio's stdin would keep the runtime
/// from shutting down while a terminal read is pending (after an error).
fn stdin_lines() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {
                    if tx.blocking_send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// Lines into append requests of up to `batch` records; a partial batch goes
/// out when input pauses for `LINGER`.
async fn read_batches(
    mut lines: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    batch: usize,
    key: Option<Bytes>,
    template: proto::AppendRequest,
    tx: mpsc::Sender<proto::AppendRequest>,
) -> anyhow::Result<()> {
    let mut records = Vec::with_capacity(batch);
    let send = |records: Vec<proto::Record>| {
        let tx = tx.clone();
        let request = proto::AppendRequest {
            records,
            ..template.clone()
        };
        async move { tx.send(request).await.is_ok() }
    };
    loop {
        let line = tokio::select! {
            line = lines.recv() => line,
            () = tokio::time::sleep(LINGER), if !records.is_empty() => {
                if !send(std::mem::take(&mut records)).await {
                    return Ok(());
                }
                continue;
            }
        };
        let Some(line) = line else { break };
        let value = Bytes::from(line.context("cannot read stdin")?);
        records.push(proto::Record {
            key: key.clone(),
            value: Some(strip_line_ending(value)),
            ..Default::default()
        });
        if records.len() >= batch && !send(std::mem::take(&mut records)).await {
            // The session ended (an error the caller reports): stop reading.
            return Ok(());
        }
    }
    if !records.is_empty() {
        send(records).await;
    }
    Ok(())
}

fn strip_line_ending(mut b: Bytes) -> Bytes {
    if b.ends_with(b"\n") {
        b.truncate(b.len() - 1);
        if b.ends_with(b"\r") {
            b.truncate(b.len() - 1);
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_become_batches() -> anyhow::Result<()> {
        let (line_tx, lines) = mpsc::channel(8);
        for line in ["a\n", "b\r\n", "\n", "c"] {
            line_tx.send(Ok(line.as_bytes().to_vec())).await?;
        }
        drop(line_tx);
        let (tx, mut rx) = mpsc::channel(8);
        let template = proto::AppendRequest {
            topic: "t".into(),
            partition: Some(2),
            ..Default::default()
        };
        read_batches(lines, 2, Some(Bytes::from("k")), template, tx).await?;
        let mut batches = Vec::new();
        while let Some(r) = rx.recv().await {
            assert_eq!(r.partition, Some(2));
            let values: Vec<Vec<u8>> = r
                .records
                .iter()
                .map(|r| r.value.clone().unwrap_or_default().to_vec())
                .collect();
            assert!(
                r.records
                    .iter()
                    .all(|r| r.key.as_deref() == Some(b"k".as_slice()))
            );
            batches.push(values);
        }
        assert_eq!(
            batches,
            vec![
                vec![b"a".to_vec(), b"b".to_vec()],
                vec![b"".to_vec(), b"c".to_vec()]
            ]
        );
        Ok(())
    }
}
