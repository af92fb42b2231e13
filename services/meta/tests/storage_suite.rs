//! openraft's own storage test suite against the redb log store and the
//! snapshotting state machine.

use openraft::testing::{StoreBuilder, Suite};
use strata_meta::log_store::LogStore;
use strata_meta::state_machine::StateMachine;
use strata_meta::types::{StorageError, TypeConfig};
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft.redb")).expect("open log");
        let sm = StateMachine::open(dir.path(), None)?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite failed: {e}");
    }
}
