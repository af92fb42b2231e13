//! CreateTopics (stub: to be implemented).

use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: CreateTopicsRequest,
    _version: i16,
) -> CreateTopicsResponse {
    CreateTopicsResponse::default()
}
