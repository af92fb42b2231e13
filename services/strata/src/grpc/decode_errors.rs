//! Gives tonic's own request-decoding failures Strata's error codes.
//!
//! tonic rejects a message over the size limit (as OUT_OF_RANGE) and a
//! message that is not valid protobuf (as INTERNAL) before any Strata code
//! runs. Both are bad input, so clients should see `request_too_large`
//! (RESOURCE_EXHAUSTED) and `bad_request` (INVALID_ARGUMENT) like every
//! other front end reports them. These failures end the call before a
//! response body starts, so the status travels in the response headers
//! ("trailers-only"), where this layer can rewrite it.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use strata_api::{ApiError, ErrorCode};

/// The message tonic gives an over-limit message.
const TOO_LARGE: &str = "decoded message length too large";
/// The message prost decode failures carry.
const UNDECODABLE: &str = "failed to decode Protobuf message";

pub async fn map(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    let mapped = match code {
        Some(c) if c == tonic::Code::OutOfRange as i32 && message.contains(TOO_LARGE) => {
            Some(ApiError::new(ErrorCode::RequestTooLarge, message))
        }
        Some(c) if c == tonic::Code::Internal as i32 && message.contains(UNDECODABLE) => {
            Some(ApiError::new(
                ErrorCode::BadRequest,
                format!("malformed request message: {message}"),
            ))
        }
        _ => None,
    };
    if let Some(error) = mapped {
        replace_status(headers, tonic::Status::from(error));
    }
    response
}

fn replace_status(headers: &mut HeaderMap, status: tonic::Status) {
    // `Status::add_header` writes grpc-status, grpc-message and grpc-status-details-bin.
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(name);
    }
    if status.add_header(headers).is_err() {
        headers.insert("grpc-status", HeaderValue::from(status.code() as i32));
    }
}

/// grpc-message is percent-encoded.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn over_limit_becomes_request_too_large() {
        let status = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 10 bytes, the limit is: 5 bytes",
        );
        let response = map(status.into_http()).await;
        let back = tonic::Status::from_header_map(response.headers()).expect("status in headers");
        assert_eq!(back.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            ApiError::from_status(&back).code,
            ErrorCode::RequestTooLarge
        );
    }

    #[tokio::test]
    async fn undecodable_becomes_bad_request_and_others_stay() {
        let status = tonic::Status::internal("failed to decode Protobuf message: invalid varint");
        let response = map(status.into_http()).await;
        let back = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(ApiError::from_status(&back).code, ErrorCode::BadRequest);
        let other = tonic::Status::internal("something else");
        let response = map(other.into_http()).await;
        let back = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(back.code(), tonic::Code::Internal);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%zz"), "a b%zz");
    }
}
