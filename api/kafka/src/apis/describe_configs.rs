//! DescribeConfigs (stub: to be implemented).

use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use crate::context::{Session, Shared};

pub(crate) async fn handle(
    _shared: &Shared,
    _session: &Session,
    _req: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    DescribeConfigsResponse::default()
}
