//! ApiVersions: the APIs and version ranges this broker implements.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::versions::SUPPORTED;

/// The response listing every implemented API (the same in every version).
pub(crate) fn response(_version: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|&(api, min, max)| {
            ApiVersion::default()
                .with_api_key(api as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

pub(crate) fn handle(_request: &ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    response(version)
}
