//! `/v1/tenants/{tenant}/groups/{group}/offsets`: consumer-group offsets.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use strata_broker::GroupOffset;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiJson, ApiPath, ErrorBody, HttpResult};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupPath {
    pub tenant: String,
    pub group: String,
}

/// A committed offset: the next offset the group will read in a partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupOffsetBody {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    /// Free-form client data kept with the offset.
    #[serde(default)]
    pub metadata: String,
}

impl From<GroupOffset> for GroupOffsetBody {
    fn from(o: GroupOffset) -> Self {
        GroupOffsetBody {
            topic: o.topic,
            partition: o.partition,
            offset: o.offset,
            metadata: o.metadata,
        }
    }
}

impl From<GroupOffsetBody> for GroupOffset {
    fn from(o: GroupOffsetBody) -> Self {
        GroupOffset {
            topic: o.topic,
            partition: o.partition,
            offset: o.offset,
            metadata: o.metadata,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupOffsets {
    pub offsets: Vec<GroupOffsetBody>,
}

/// Commit offsets for a consumer group.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}/groups/{group}/offsets",
    tag = "groups",
    params(GroupPath),
    request_body = GroupOffsets,
    responses(
        (status = 204, description = "Committed"),
        (status = 400, description = "Malformed body or invalid group name", body = ErrorBody),
        (status = 404, description = "Unknown tenant, topic or partition", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.commit_offsets", skip_all, fields(tenant = %p.tenant, group = %p.group))]
pub async fn commit(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<GroupPath>,
    ApiJson(body): ApiJson<GroupOffsets>,
) -> HttpResult<StatusCode> {
    let offsets = body.offsets.into_iter().map(Into::into).collect();
    state
        .broker
        .commit_offsets(&p.tenant, &p.group, offsets)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A consumer group's committed offsets.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/groups/{group}/offsets",
    tag = "groups",
    params(GroupPath),
    responses(
        (status = 200, description = "The committed offsets", body = GroupOffsets),
        (status = 404, description = "Unknown tenant, or the group never committed", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.fetch_offsets", skip_all, fields(tenant = %p.tenant, group = %p.group))]
pub async fn fetch(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<GroupPath>,
) -> HttpResult<Json<GroupOffsets>> {
    let offsets = state.broker.fetch_offsets(&p.tenant, &p.group).await?;
    Ok(Json(GroupOffsets {
        offsets: offsets.into_iter().map(Into::into).collect(),
    }))
}
