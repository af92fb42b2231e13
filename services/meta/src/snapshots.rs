//! Metadata snapshots in the bucket: every snapshot a node writes is also
//! uploaded under `meta/snapshots/`, so a new cluster can be seeded from the
//! bucket alone (`strata meta restore`). Uploads run in the background and
//! only the newest pending one is kept: a slow bucket never holds up Raft.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::state_machine::SnapshotFile;

/// Where snapshots live in the bucket.
pub const PREFIX: &str = "meta/snapshots";

/// Snapshots kept in the bucket; older ones are deleted after an upload.
pub const KEEP: usize = 3;

/// The key of the snapshot that covers the log up to `index`; zero-padded
/// so keys sort by index.
pub fn key_for(index: u64) -> ObjectPath {
    ObjectPath::from(format!("{PREFIX}/{index:020}.json"))
}

/// Uploads snapshots to the bucket in the background.
#[derive(Clone)]
pub struct SnapshotUploader {
    pending: watch::Sender<Option<(u64, Bytes)>>,
}

impl SnapshotUploader {
    pub fn spawn(store: Arc<dyn ObjectStore>) -> SnapshotUploader {
        let (pending, mut rx) = watch::channel::<Option<(u64, Bytes)>>(None);
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let Some((index, bytes)) = rx.borrow_and_update().clone() else {
                    continue;
                };
                match store.put(&key_for(index), PutPayload::from(bytes)).await {
                    Ok(_) => {
                        debug!(index, "metadata snapshot uploaded");
                        if let Err(e) = prune(store.as_ref()).await {
                            warn!(error = %e, "cannot delete old metadata snapshots");
                        }
                    }
                    // The next snapshot retries; the local copy is the one Raft uses.
                    Err(e) => warn!(index, error = %e, "cannot upload the metadata snapshot"),
                }
            }
        });
        SnapshotUploader { pending }
    }

    pub fn upload(&self, index: u64, bytes: Vec<u8>) {
        self.pending.send_replace(Some((index, Bytes::from(bytes))));
    }
}

/// The snapshot objects in the bucket, oldest first.
async fn list(store: &dyn ObjectStore) -> Result<Vec<ObjectPath>, object_store::Error> {
    use futures::TryStreamExt;
    let prefix = ObjectPath::from(PREFIX);
    let mut keys: Vec<ObjectPath> = store
        .list(Some(&prefix))
        .map_ok(|o| o.location)
        .try_collect::<Vec<_>>()
        .await?
        .into_iter()
        .filter(|k| k.as_ref().ends_with(".json"))
        .collect();
    keys.sort();
    Ok(keys)
}

/// Deletes all but the newest [`KEEP`] snapshots.
async fn prune(store: &dyn ObjectStore) -> Result<(), object_store::Error> {
    let keys = list(store).await?;
    for key in keys.iter().take(keys.len().saturating_sub(KEEP)) {
        store.delete(key).await?;
    }
    Ok(())
}

/// The newest snapshot in the bucket, if there is one.
pub async fn latest(store: &dyn ObjectStore) -> Result<Option<SnapshotFile>, object_store::Error> {
    let Some(newest) = list(store).await?.pop() else {
        return Ok(None);
    };
    let bytes = store.get(&newest).await?.bytes().await?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| object_store::Error::Generic {
            store: "metadata snapshot",
            source: Box::new(e),
        })
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;
    use crate::machine::ClusterState;

    fn file(index: u64) -> Vec<u8> {
        let meta = crate::types::SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            )),
            ..Default::default()
        };
        serde_json::to_vec(&SnapshotFile {
            meta,
            state: ClusterState::default(),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn keeps_the_newest_few_and_restores_the_newest() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        assert!(latest(store.as_ref()).await.unwrap().is_none());
        let uploader = SnapshotUploader::spawn(store.clone());
        // Index 100 sorts after 9 only because keys are zero-padded.
        for index in [5, 9, 100, 120, 150] {
            uploader.upload(index, file(index));
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while latest(store.as_ref())
                .await
                .unwrap()
                .and_then(|f| f.meta.last_log_id)
                .map(|l| l.index)
                != Some(index)
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "snapshot {index} never uploaded"
                );
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let keys = list(store.as_ref()).await.unwrap();
        assert_eq!(keys, vec![key_for(100), key_for(120), key_for(150)]);
    }
}
