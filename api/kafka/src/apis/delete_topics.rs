//! DeleteTopics (stub: to be implemented).

use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: DeleteTopicsRequest,
    _version: i16,
) -> DeleteTopicsResponse {
    DeleteTopicsResponse::default()
}
