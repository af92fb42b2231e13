//! The broker's metadata store, backed by the metadata group: reads from the
//! state applied on this node, changes through Raft.

use std::sync::Arc;

use async_trait::async_trait;
use strata_api::ApiError;
use strata_broker::{ChangeOutcome, MetadataBackend, MetadataChange, MetadataState};

use crate::node::MetaNode;
use crate::types::Command;

/// A [`strata_broker::MetadataStore`] replicated by the metadata group.
pub struct RaftMetadataStore {
    node: Arc<MetaNode>,
}

impl RaftMetadataStore {
    pub fn new(node: Arc<MetaNode>) -> RaftMetadataStore {
        RaftMetadataStore { node }
    }
}

#[async_trait]
impl MetadataBackend for RaftMetadataStore {
    fn read<T>(&self, read: impl FnOnce(&MetadataState) -> T) -> T {
        self.node.read(|s| read(&s.metadata))
    }

    async fn change(&self, change: MetadataChange) -> Result<ChangeOutcome, ApiError> {
        self.node.write(Command::Metadata { change }).await
    }

    async fn barrier(&self) -> Result<(), ApiError> {
        self.node.barrier().await
    }
}
