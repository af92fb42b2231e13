//! The applied state: [`ClusterState`] in memory, rebuilt at start from the
//! last snapshot plus the committed log after it. Snapshots are written to
//! `snapshot.json` in the metadata directory (atomically, fsynced) and, when
//! a bucket is configured, uploaded to it so a cluster's metadata can be
//! restored from the bucket alone.

// openraft's StorageError is large by design and returned everywhere here.
#![allow(clippy::result_large_err)]

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::info;

use crate::machine::ClusterState;
use crate::snapshots::SnapshotUploader;
use crate::types::{
    Entry, LogId, Reply, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// What a snapshot file holds.
#[derive(Clone, Serialize, Deserialize)]
pub struct SnapshotFile {
    pub meta: SnapshotMeta,
    pub state: ClusterState,
}

/// The applied state and where it stands in the log.
#[derive(Default)]
pub(crate) struct Applied {
    pub(crate) state: ClusterState,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

/// Shared between the state machine (owned by Raft) and the readers.
pub(crate) struct Shared {
    pub(crate) applied: RwLock<Applied>,
    /// The last applied log index, for waiting on a write or a read barrier.
    pub(crate) applied_index: watch::Sender<u64>,
    snapshot_path: PathBuf,
    current: Mutex<Option<SnapshotFile>>,
    uploader: Option<SnapshotUploader>,
}

#[derive(Clone)]
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
}

fn sm_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::read_state_machine(&e).into()
}

fn snapshot_err(e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::write_snapshot(None, &e).into()
}

impl StateMachine {
    /// Loads the snapshot in `dir`, if any.
    pub fn open(
        dir: &Path,
        uploader: Option<SnapshotUploader>,
    ) -> Result<StateMachine, StorageError> {
        let snapshot_path = dir.join("snapshot.json");
        let current: Option<SnapshotFile> = match std::fs::read(&snapshot_path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(sm_err)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(sm_err(e)),
        };
        let mut applied = Applied::default();
        if let Some(file) = &current {
            applied.state = file.state.clone();
            applied.last_applied = file.meta.last_log_id;
            applied.membership = file.meta.last_membership.clone();
            info!(last_applied = ?file.meta.last_log_id, "metadata snapshot loaded");
        }
        let index = applied.last_applied.map_or(0, |l| l.index);
        Ok(StateMachine {
            shared: Arc::new(Shared {
                applied: RwLock::new(applied),
                applied_index: watch::channel(index).0,
                snapshot_path,
                current: Mutex::new(current),
                uploader,
            }),
        })
    }
}

impl Shared {
    fn persist(&self, file: &SnapshotFile) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(file).map_err(snapshot_err)?;
        let tmp = self.snapshot_path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.snapshot_path)?;
            if let Some(dir) = self.snapshot_path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(snapshot_err)?;
        if let Some(uploader) = &self.uploader {
            uploader.upload(file.meta.last_log_id.map_or(0, |l| l.index), bytes);
        }
        *self.current.lock() = Some(file.clone());
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let file = {
            let applied = self.shared.applied.read();
            let last = applied.last_applied;
            SnapshotFile {
                meta: SnapshotMeta {
                    last_log_id: last,
                    last_membership: applied.membership.clone(),
                    snapshot_id: last
                        .map_or_else(|| "0-0".into(), |l| format!("{}-{}", l.leader_id, l.index)),
                },
                state: applied.state.clone(),
            }
        };
        let shared = self.shared.clone();
        let to_persist = file.clone();
        tokio::task::spawn_blocking(move || shared.persist(&to_persist))
            .await
            .map_err(|e| snapshot_err(std::io::Error::other(e)))??;
        let data = serde_json::to_vec(&file.state).map_err(snapshot_err)?;
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.shared.applied.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Reply>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        let last_index = {
            let mut applied = self.shared.applied.write();
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                let reply = match entry.payload {
                    EntryPayload::Blank => Reply::Applied(strata_broker::ChangeOutcome::Done),
                    EntryPayload::Normal(command) => applied.state.apply(&command),
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m);
                        Reply::Applied(strata_broker::ChangeOutcome::Done)
                    }
                };
                replies.push(reply);
            }
            applied.last_applied.map_or(0, |l| l.index)
        };
        self.shared.applied_index.send_replace(last_index);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let state: ClusterState = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        let file = SnapshotFile {
            meta: meta.clone(),
            state: state.clone(),
        };
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.persist(&file))
            .await
            .map_err(|e| snapshot_err(std::io::Error::other(e)))??;
        {
            let mut applied = self.shared.applied.write();
            applied.state = state;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership.clone();
        }
        self.shared
            .applied_index
            .send_replace(meta.last_log_id.map_or(0, |l| l.index));
        info!(last = ?meta.last_log_id, "metadata snapshot installed from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let Some(file) = self.shared.current.lock().clone() else {
            return Ok(None);
        };
        let data = serde_json::to_vec(&file.state).map_err(sm_err)?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}
