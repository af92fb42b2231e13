//! Kafka frames to requests and responses to frames; no I/O.
//!
//! A frame is a 4-byte big-endian length and that many bytes. A request is a
//! header (API key, version, correlation id, client id) and a body whose
//! encoding depends on the API and version; the `kafka-protocol` crate holds
//! the per-version schemas.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::versions;

/// Why a request could not be decoded. Each closes the connection, as Apache
/// Kafka does, except an ApiVersions request of an unknown version, which is
/// answered (see [`Decoded::UnsupportedApiVersions`]).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("API {api:?} is not implemented")]
    Unimplemented { api: ApiKey },
    #[error("API {api:?} version {version} is not supported (supported: {min}..={max})")]
    UnsupportedVersion {
        api: ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("malformed {api:?} v{version} request: {reason}")]
    Malformed {
        api: ApiKey,
        version: i16,
        reason: String,
    },
    #[error("cannot encode the {api:?} v{version} response: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

/// A decoded request.
#[derive(Debug)]
pub struct Request {
    pub api: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// What a frame turned out to be.
#[derive(Debug)]
pub enum Decoded {
    Request(Box<Request>),
    /// An ApiVersions request newer than this broker: answered with
    /// UNSUPPORTED_VERSION and the supported ranges in a v0 response, which
    /// tells the client which version to retry with.
    UnsupportedApiVersions {
        correlation_id: i32,
    },
}

/// Decodes one frame (without its length prefix).
pub fn decode_request(mut frame: Bytes) -> Result<Decoded, CodecError> {
    if frame.len() < 8 {
        return Err(CodecError::TooShort(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|_| CodecError::UnknownApi(key))?;
    let Some((min, max)) = versions::supported(api) else {
        return Err(CodecError::Unimplemented { api });
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions && version > max {
            return Ok(Decoded::UnsupportedApiVersions { correlation_id });
        }
        return Err(CodecError::UnsupportedVersion {
            api,
            version,
            min,
            max,
        });
    }
    let malformed = |reason: String| CodecError::Malformed {
        api,
        version,
        reason,
    };
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| malformed(format!("header: {e}")))?;
    let body =
        RequestKind::decode(api, &mut frame, version).map_err(|e| malformed(e.to_string()))?;
    Ok(Decoded::Request(Box::new(Request {
        api,
        version,
        header,
        body,
    })))
}

/// Encodes a response as a whole frame, length prefix included.
pub fn encode_response(
    correlation_id: i32,
    api: ApiKey,
    version: i16,
    body: &ResponseKind,
) -> Result<Bytes, CodecError> {
    let err = |e: &dyn std::fmt::Display| CodecError::Encode {
        api,
        version,
        reason: e.to_string(),
    };
    let mut out = BytesMut::with_capacity(64);
    out.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut out, api.response_header_version(version))
        .map_err(|e| err(&e))?;
    body.encode(&mut out, version).map_err(|e| err(&e))?;
    finish_frame(out)
}

/// The answer to an ApiVersions request newer than this broker.
pub fn unsupported_api_versions(correlation_id: i32) -> Result<Bytes, CodecError> {
    let body = crate::apis::api_versions::response(0).with_error_code(35); // UNSUPPORTED_VERSION
    encode_response(
        correlation_id,
        ApiKey::ApiVersions,
        0,
        &ResponseKind::ApiVersions(body),
    )
}

fn finish_frame(mut out: BytesMut) -> Result<Bytes, CodecError> {
    let len = i32::try_from(out.len() - 4).map_err(|_| CodecError::Encode {
        api: ApiKey::ApiVersions,
        version: 0,
        reason: "response larger than 2 GiB".into(),
    })?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out.freeze())
}

/// Reads the length prefix of the next frame, if `buf` holds it.
pub fn frame_len(buf: &[u8]) -> Option<i32> {
    let mut b = buf.get(..4)?;
    Some(b.get_i32())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use proptest::prelude::*;

    fn header(api: i16, version: i16) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i16(api);
        b.put_i16(version);
        b.put_i32(9);
        b
    }

    #[test]
    fn huge_array_length_is_an_error_not_an_abort() {
        // Metadata v1: null client id, then a topic array claiming 2^31-1 entries.
        let mut frame = header(ApiKey::Metadata as i16, 1);
        frame.put_i16(-1);
        frame.put_i32(i32::MAX);
        assert!(matches!(
            decode_request(frame.freeze()),
            Err(CodecError::Malformed { .. })
        ));
    }

    #[test]
    fn header_errors_are_precise() {
        assert_eq!(
            decode_request(Bytes::from_static(&[0, 3])).unwrap_err(),
            CodecError::TooShort(2)
        );
        assert_eq!(
            decode_request(header(-7, 0).freeze()).unwrap_err(),
            CodecError::UnknownApi(-7)
        );
        assert!(matches!(
            decode_request(header(ApiKey::Produce as i16, 2).freeze()),
            Err(CodecError::UnsupportedVersion { min: 3, .. })
        ));
        // A known API this broker does not implement (transactions).
        assert!(matches!(
            decode_request(header(ApiKey::AddPartitionsToTxn as i16, 3).freeze()),
            Err(CodecError::Unimplemented { .. })
        ));
        assert!(matches!(
            decode_request(header(ApiKey::ApiVersions as i16, 77).freeze()),
            Ok(Decoded::UnsupportedApiVersions { correlation_id: 9 })
        ));
    }

    #[test]
    fn responses_are_framed_with_their_length() {
        let body = ResponseKind::ApiVersions(crate::apis::api_versions::response(3));
        let frame = encode_response(5, ApiKey::ApiVersions, 3, &body).unwrap();
        assert_eq!(frame_len(&frame), Some(frame.len() as i32 - 4));
        // ApiVersions answers always use header v0: just the correlation id.
        assert_eq!(&frame[4..8], &5i32.to_be_bytes());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_frames_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(Bytes::from(data));
        }

        /// A valid header of every implemented API and version, then arbitrary
        /// bytes: decoded or refused, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(
            index in 0..crate::versions::SUPPORTED.len(),
            version_pick in any::<u16>(),
            body in proptest::collection::vec(any::<u8>(), 0..256),
        ) {
            let (api, min, max) = crate::versions::SUPPORTED[index];
            let span = (max - min + 1) as u16;
            let version = min + (version_pick % span) as i16;
            let mut frame = header(api as i16, version);
            frame.extend_from_slice(&body);
            let _ = decode_request(frame.freeze());
        }
    }
}
