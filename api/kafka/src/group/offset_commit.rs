//! OffsetCommit (stub: to be implemented).

use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: OffsetCommitRequest,
    _version: i16,
) -> OffsetCommitResponse {
    OffsetCommitResponse::default()
}
