//! Errors as HTTP responses, and extractors whose rejections are JSON errors
//! in the one error model (`{"error":{"code","message","details"?}}`), never
//! axum's plain-text defaults.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use strata_api::{ApiError, ErrorCode};
use utoipa::ToSchema;

/// An [`ApiError`] on its way out as an HTTP response.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

pub type HttpResult<T> = Result<T, HttpError>;

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl HttpError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        HttpError(ApiError::new(code, message))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        HttpError::new(ErrorCode::BadRequest, message)
    }
}

/// The HTTP status of an error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.code);
        if status.is_server_error() {
            tracing::warn!(code = %self.0.code, message = %self.0.message, "request failed");
        }
        (status, Json(self.0.to_json_body())).into_response()
    }
}

/// The error body, for the OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `topic_not_found`, `offset_out_of_range`.
    code: String,
    message: String,
    /// Structured facts, e.g. `{"start_offset":0,"end_offset":12}`.
    details: Option<serde_json::Value>,
}

impl From<JsonRejection> for HttpError {
    fn from(r: JsonRejection) -> Self {
        let code = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::RequestTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            s if s.is_server_error() => ErrorCode::Internal,
            _ => ErrorCode::BadRequest,
        };
        let message = match code {
            ErrorCode::RequestTooLarge => {
                "the request body is larger than the server's max_request_bytes".to_string()
            }
            ErrorCode::UnsupportedMediaType => {
                "the request body must be JSON (Content-Type: application/json)".into()
            }
            _ => r.body_text(),
        };
        HttpError::new(code, message)
    }
}

impl From<QueryRejection> for HttpError {
    fn from(r: QueryRejection) -> Self {
        HttpError::bad_request(r.body_text())
    }
}

impl From<PathRejection> for HttpError {
    fn from(r: PathRejection) -> Self {
        if r.status().is_server_error() {
            HttpError::new(ErrorCode::Internal, r.body_text())
        } else {
            HttpError::bad_request(format!("invalid path: {}", r.body_text()))
        }
    }
}

/// `Json<T>` whose rejections are [`HttpError`]s.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, HttpError> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(v))
    }
}

/// `Query<T>` whose rejections are [`HttpError`]s.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Query(v) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(v))
    }
}

/// `Path<T>` whose rejections are [`HttpError`]s.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path(v) = Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(v))
    }
}

/// Unknown routes answer 404 with code `bad_request` (there is no route code).
pub async fn not_found(method: Method, uri: Uri) -> Response {
    let e = ApiError::new(
        ErrorCode::BadRequest,
        format!("no route for {method} {}", uri.path()),
    );
    (StatusCode::NOT_FOUND, Json(e.to_json_body())).into_response()
}

/// A known route with another method: 405 with code `bad_request`.
pub async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let e = ApiError::new(
        ErrorCode::BadRequest,
        format!("method {method} is not allowed on {}", uri.path()),
    );
    (StatusCode::METHOD_NOT_ALLOWED, Json(e.to_json_body())).into_response()
}
