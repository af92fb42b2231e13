//! The Raft log, vote and commit index on local disk, in one `redb` file.
//! Every write is a transaction committed with `Durability::Immediate`
//! (fsync) before openraft is told it is done, so an acknowledged metadata
//! change survives a crash of any node that voted for it.

// openraft's StorageError is large by design and returned everywhere here.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

/// Log index → JSON-encoded entry.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// `vote`, `committed`, `last_purged` → JSON.
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_state");

/// The metadata group's durable log. Cloning shares the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

fn io_err(e: impl std::error::Error + 'static, write: bool) -> StorageError {
    if write {
        StorageIOError::write_logs(&e).into()
    } else {
        StorageIOError::read_logs(&e).into()
    }
}

impl LogStore {
    /// Opens (or creates) the log at `path`.
    pub fn open(path: &Path) -> Result<LogStore, redb::Error> {
        let db = Database::create(path)?;
        // Create the tables so readers never see them missing.
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(STATE)?;
        txn.commit()?;
        Ok(LogStore { db: Arc::new(db) })
    }

    /// Runs a write transaction on a blocking thread and commits it durably.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error> + Send + 'static,
    ) -> Result<T, redb::Error> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write()?;
            let out = f(&txn)?;
            txn.commit()?;
            Ok(out)
        })
        .await
        .map_err(|e| redb::Error::Io(std::io::Error::other(e)))?
    }

    fn read_state<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| io_err(e, false))?;
        let table = txn.open_table(STATE).map_err(|e| io_err(e, false))?;
        let Some(value) = table.get(key).map_err(|e| io_err(e, false))? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| io_err(e, false))
    }

    async fn write_state<T: serde::Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| io_err(e, true))?;
        self.write(move |txn| {
            txn.open_table(STATE)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
        .await
        .map_err(|e| io_err(e, true))
    }

    fn last_entry(&self) -> Result<Option<Entry>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| io_err(e, false))?;
        let table = txn.open_table(LOG).map_err(|e| io_err(e, false))?;
        match table.last().map_err(|e| io_err(e, false))? {
            Some((_, v)) => decode(v.value()).map(Some),
            None => Ok(None),
        }
    }
}

fn decode(bytes: &[u8]) -> Result<Entry, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| io_err(e, false))
}

fn to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| io_err(e, false))?;
        let table = txn.open_table(LOG).map_err(|e| io_err(e, false))?;
        let mut out = Vec::new();
        for item in table
            .range(to_bounds(&range))
            .map_err(|e| io_err(e, false))?
        {
            let (_, v) = item.map_err(|e| io_err(e, false))?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.read_state("last_purged")?;
        let last = self.last_entry()?.map(|e| e.log_id).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write_state("vote", vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_state("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_state("committed", &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_state::<Option<LogId>>("committed")?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| io_err(e, true))?;
            encoded.push((entry.log_id.index, bytes));
        }
        let result = self
            .write(move |txn| {
                let mut table = txn.open_table(LOG)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice())?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_err(e, true))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write(move |txn| {
            let mut table = txn.open_table(LOG)?;
            table.retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| io_err(e, true))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&log_id).map_err(|e| io_err(e, true))?;
        self.write(move |txn| {
            txn.open_table(STATE)?
                .insert("last_purged", bytes.as_slice())?;
            let mut table = txn.open_table(LOG)?;
            table.retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| io_err(e, true))
    }
}

/// The node id stored beside the log, so a data directory cannot silently
/// change identity.
pub(crate) fn node_id_of(store: &LogStore) -> Result<Option<NodeId>, StorageError> {
    store.read_state("node_id")
}

pub(crate) async fn set_node_id(store: &LogStore, id: NodeId) -> Result<(), StorageError> {
    store.write_state("node_id", &id).await
}
