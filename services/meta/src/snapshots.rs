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
                    Ok(_) => debug!(index, "metadata snapshot uploaded"),
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

/// The newest snapshot in the bucket, if there is one.
pub async fn latest(store: &dyn ObjectStore) -> Result<Option<SnapshotFile>, object_store::Error> {
    use futures::TryStreamExt;
    let prefix = ObjectPath::from(PREFIX);
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    let Some(newest) = objects
        .iter()
        .filter(|o| o.location.as_ref().ends_with(".json"))
        .max_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()))
    else {
        return Ok(None);
    };
    let bytes = store.get(&newest.location).await?.bytes().await?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| object_store::Error::Generic {
            store: "metadata snapshot",
            source: Box::new(e),
        })
}
