//! DeleteGroups (stub: to be implemented).

use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: DeleteGroupsRequest,
    _version: i16,
) -> DeleteGroupsResponse {
    DeleteGroupsResponse::default()
}
