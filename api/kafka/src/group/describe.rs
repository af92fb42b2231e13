//! DescribeGroups (stub: to be implemented).

use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: DescribeGroupsRequest,
    _version: i16,
) -> DescribeGroupsResponse {
    DescribeGroupsResponse::default()
}
