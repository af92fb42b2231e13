//! `/v1/tenants`: list and create tenants.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiPath, ErrorBody, HttpResult};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantPath {
    /// Tenant name (`default` always exists).
    pub tenant: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    pub tenants: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantBody {
    pub name: String,
}

/// List tenants, sorted.
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    responses((status = 200, description = "The tenants", body = TenantList))
)]
#[tracing::instrument(name = "http.list_tenants", skip_all)]
pub async fn list(State(state): State<AppState>) -> HttpResult<Json<TenantList>> {
    let tenants = state.broker.list_tenants().await?;
    Ok(Json(TenantList { tenants }))
}

/// Create a tenant (idempotent).
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}",
    tag = "tenants",
    params(TenantPath),
    responses(
        (status = 201, description = "Created", body = TenantBody),
        (status = 200, description = "Already existed", body = TenantBody),
        (status = 400, description = "Invalid name", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "http.create_tenant", skip_all, fields(tenant = %p.tenant))]
pub async fn create(
    State(state): State<AppState>,
    ApiPath(p): ApiPath<TenantPath>,
) -> HttpResult<(StatusCode, Json<TenantBody>)> {
    let existed = state.broker.list_tenants().await?.contains(&p.tenant);
    state.broker.create_tenant(&p.tenant).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(TenantBody { name: p.tenant })))
}
