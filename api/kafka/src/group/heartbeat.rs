//! Heartbeat (stub: to be implemented).

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::context::{Session, Shared};

pub(crate) fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: HeartbeatRequest,
    _version: i16,
) -> HeartbeatResponse {
    HeartbeatResponse::default()
}
