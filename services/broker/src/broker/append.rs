//! Appends of one produce request to several partitions at once.

use bytes::Bytes;
use strata_log::{AppendOptions, Appended, LogError, Partition};
use tokio::task::JoinSet;

use super::{Result, internal};

/// One partition's share of a produce: the partition, the request positions
/// of its records, its log partition and the batch holding them.
pub(super) type AppendJob = (u32, Vec<usize>, Partition, Bytes);
pub(super) type AppendDone = (u32, Vec<usize>, std::result::Result<Appended, LogError>);

/// Appends to several partitions at once; each result keeps the partition
/// and the request positions of its records.
pub(super) async fn append_all(
    jobs: Vec<AppendJob>,
    options: AppendOptions,
) -> Result<Vec<AppendDone>> {
    if jobs.len() == 1 {
        // The common case needs no task.
        let mut done = Vec::with_capacity(1);
        for (partition, indices, p, batch) in jobs {
            let result = p.append(&batch[..], options).await;
            done.push((partition, indices, result));
        }
        return Ok(done);
    }
    let mut tasks = JoinSet::new();
    for (partition, indices, p, batch) in jobs {
        tasks.spawn(async move {
            let result = p.append(&batch[..], options).await;
            (partition, indices, result)
        });
    }
    let mut done = Vec::new();
    let mut failure = None;
    // Every append runs to completion before an error is reported, so the
    // caller never returns while some of its records are still being written.
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(d) => done.push(d),
            Err(e) => {
                failure.get_or_insert(internal("append task failed", e));
            }
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(done),
    }
}
