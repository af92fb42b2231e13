//! CreatePartitions (stub: to be implemented).

use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    CreatePartitionsResponse::default()
}
