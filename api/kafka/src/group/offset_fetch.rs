//! OffsetFetch (stub: to be implemented).

use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: OffsetFetchRequest,
    _version: i16,
) -> OffsetFetchResponse {
    OffsetFetchResponse::default()
}
