//! DeleteRecords (stub: to be implemented).

use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: DeleteRecordsRequest,
    _version: i16,
) -> DeleteRecordsResponse {
    DeleteRecordsResponse::default()
}
