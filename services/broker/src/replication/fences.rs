//! Election fences: a replica asked for its position in an election for
//! epoch E promises to take nothing more from leaders of older epochs. The
//! promise must outlive a crash, or a replica restarted in the middle of an
//! election could follow the old leader and help it acknowledge writes the
//! election never saw; so each is written to a file before the replica
//! answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use strata_api::{ApiError, ErrorCode};

use crate::broker::Result;

/// How long a fence holds when no new leader was recorded (an election
/// that could not finish): then the replica follows the recorded leader again.
const FENCE_TTL: Duration = Duration::from_secs(10);

/// The fences of one broker.
pub(crate) struct Fences {
    /// Per partition: the epoch promised and when.
    promised: Mutex<HashMap<String, (u64, Instant)>>,
    /// Counts the promises made; read with `promised` held, so a snapshot
    /// of it knows which promises it includes.
    changes: AtomicU64,
    /// Serializes the writers of `file` (they share one temporary file)
    /// and holds the count of promises last written: elections for many
    /// partitions at once share one fsync instead of racing for the file.
    written: tokio::sync::Mutex<u64>,
    file: PathBuf,
}

impl Fences {
    /// The fences of a broker whose data directory is `data_dir`, as it
    /// promised them before it stopped (each holds for [`FENCE_TTL`] from
    /// now).
    pub(crate) fn open(data_dir: &Path) -> Fences {
        let file = data_dir.join("replication-fences.json");
        let stored: HashMap<String, u64> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let now = Instant::now();
        Fences {
            promised: Mutex::new(stored.into_iter().map(|(k, e)| (k, (e, now))).collect()),
            changes: AtomicU64::new(0),
            written: tokio::sync::Mutex::new(0),
            file,
        }
    }

    /// Promises not to take data below `epoch` of partition `key` (a newer
    /// promise for it stands), durably once this returns.
    pub(crate) async fn promise(&self, key: &str, epoch: u64) -> Result<()> {
        let change = {
            let mut promised = self.promised.lock();
            let entry = promised
                .entry(key.to_string())
                .or_insert((epoch, Instant::now()));
            if epoch >= entry.0 {
                *entry = (epoch, Instant::now());
            }
            self.changes.fetch_add(1, Ordering::SeqCst) + 1
        };
        self.persist(change).await
    }

    /// The epoch promised for `key`, if the promise holds.
    pub(crate) fn get(&self, key: &str) -> Option<u64> {
        let mut promised = self.promised.lock();
        match promised.get(key) {
            Some((epoch, at)) if at.elapsed() < FENCE_TTL => Some(*epoch),
            Some(_) => {
                promised.remove(key);
                None
            }
            None => None,
        }
    }

    /// Writes the fences (a new file, fsynced, renamed over the old) unless
    /// a write since promise number `change` already did.
    async fn persist(&self, change: u64) -> Result<()> {
        let mut written = self.written.lock().await;
        if *written >= change {
            return Ok(());
        }
        let (snapshot, upto): (HashMap<String, u64>, u64) = {
            let promised = self.promised.lock();
            let snapshot = promised
                .iter()
                .filter(|(_, (_, at))| at.elapsed() < FENCE_TTL)
                .map(|(k, (e, _))| (k.clone(), *e))
                .collect();
            (snapshot, self.changes.load(Ordering::SeqCst))
        };
        let path = self.file.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let tmp = path.with_extension("json.tmp");
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&serde_json::to_vec(&snapshot).unwrap_or_default())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("fence task failed: {e}")))?
        .map_err(|e| {
            ApiError::new(
                ErrorCode::Unavailable,
                format!("cannot record an election fence: {e}"),
            )
        })?;
        *written = upto;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_promises_all_succeed_and_all_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let fences = std::sync::Arc::new(Fences::open(dir.path()));
        let tasks: Vec<_> = (0..64u64)
            .map(|i| {
                let fences = fences.clone();
                tokio::spawn(async move { fences.promise(&format!("t/{i}"), i + 1).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().expect("every promise is recorded");
        }
        let reopened = Fences::open(dir.path());
        for i in 0..64u64 {
            assert_eq!(reopened.get(&format!("t/{i}")), Some(i + 1));
        }
    }

    #[tokio::test]
    async fn an_older_epoch_does_not_lower_a_promise() {
        let dir = tempfile::tempdir().unwrap();
        let fences = Fences::open(dir.path());
        fences.promise("t/0", 5).await.unwrap();
        fences.promise("t/0", 3).await.unwrap();
        assert_eq!(fences.get("t/0"), Some(5));
        assert_eq!(Fences::open(dir.path()).get("t/0"), Some(5));
    }
}
