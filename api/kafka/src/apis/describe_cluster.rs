//! DescribeCluster (stub: to be implemented).

use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};

use crate::context::{Session, Shared};

pub(crate) fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    DescribeClusterResponse::default()
}
