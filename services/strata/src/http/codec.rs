//! Keys, values and headers in JSON: UTF-8 strings by default, base64
//! (standard alphabet) with `encoding: base64`.
//!
//! Reading a record whose key, value or header value is not valid UTF-8 with
//! the default `utf8` encoding fails with `400 bad_request` naming the offset
//! and telling the client to read with `encoding=base64`: the API never
//! mangles bytes silently.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use strata_api::{ApiError, ErrorCode};
use strata_broker::{ConsumedRecord, ProduceRecord};
use utoipa::ToSchema;

/// How keys, values and header values are written in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 text (the default).
    #[default]
    #[serde(alias = "utf-8")]
    Utf8,
    /// Arbitrary bytes as standard base64.
    Base64,
}

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub key: String,
    pub value: String,
}

/// Headers in a request: a JSON object `{"k":"v"}` or a list `[{"key","value"}]`
/// (the list keeps order and allows repeated keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadersIn(pub Vec<(String, String)>);

/// The documented shape of [`HeadersIn`] (only used for the OpenAPI schema).
#[allow(dead_code)]
#[derive(ToSchema)]
#[serde(untagged)]
pub enum HeadersSchema {
    Map(std::collections::BTreeMap<String, String>),
    List(Vec<Header>),
}

impl<'de> Deserialize<'de> for HeadersIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeadersIn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"an object {"key":"value"} or a list [{"key":..,"value":..}]"#)
            }
            fn visit_unit<E: de::Error>(self) -> Result<HeadersIn, E> {
                Ok(HeadersIn::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<HeadersIn, E> {
                Ok(HeadersIn::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HeadersIn, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(HeadersIn(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HeadersIn, A::Error> {
                let mut out = Vec::new();
                while let Some(h) = seq.next_element::<Header>()? {
                    out.push((h.key, h.value));
                }
                Ok(HeadersIn(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordIn {
    /// UTF-8 text, or base64 with `encoding: base64`; `null` for no key.
    pub key: Option<String>,
    /// UTF-8 text, or base64 with `encoding: base64`; `null` for no value.
    pub value: Option<String>,
    /// `{"k":"v"}` or `[{"key":"k","value":"v"}]`; values follow `encoding`.
    #[serde(default)]
    #[schema(value_type = Option<HeadersSchema>)]
    pub headers: HeadersIn,
    /// Defaults to the time of the append.
    pub timestamp_ms: Option<i64>,
    /// Defaults to the key's partition (murmur2), or a spread partition for unkeyed records.
    pub partition: Option<u32>,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RecordOut {
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<String>,
    pub value: Option<String>,
    pub headers: Vec<Header>,
}

fn bad(message: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

fn decode(text: String, encoding: Encoding, what: &dyn Fn() -> String) -> Result<Bytes, ApiError> {
    match encoding {
        Encoding::Utf8 => Ok(Bytes::from(text)),
        Encoding::Base64 => BASE64
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(|e| bad(format!("{} is not valid base64: {e}", what()))),
    }
}

/// Turns request records into broker records, decoding base64 where asked.
pub fn decode_records(
    records: Vec<RecordIn>,
    encoding: Encoding,
) -> Result<Vec<ProduceRecord>, ApiError> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let key = r
                .key
                .map(|k| decode(k, encoding, &|| format!("records[{i}].key")))
                .transpose()?;
            let value = r
                .value
                .map(|v| decode(v, encoding, &|| format!("records[{i}].value")))
                .transpose()?;
            let headers = r
                .headers
                .0
                .into_iter()
                .map(|(k, v)| {
                    let v = decode(v, encoding, &|| format!("records[{i}].headers[{k:?}]"))?;
                    Ok((k, v))
                })
                .collect::<Result<Vec<_>, ApiError>>()?;
            Ok(ProduceRecord {
                key,
                value,
                headers,
                timestamp_ms: r.timestamp_ms,
                partition: r.partition,
            })
        })
        .collect()
}

fn encode(bytes: Bytes, encoding: Encoding, offset: u64, field: &str) -> Result<String, ApiError> {
    match encoding {
        Encoding::Base64 => Ok(BASE64.encode(&bytes)),
        Encoding::Utf8 => String::from_utf8(bytes.to_vec()).map_err(|_| {
            bad(format!(
                "the {field} of the record at offset {offset} is not valid UTF-8; read with encoding=base64"
            ))
            .with_details(serde_json::json!({ "offset": offset, "field": field }))
        }),
    }
}

/// Turns broker records into response records, encoding as asked.
pub fn encode_records(
    records: Vec<ConsumedRecord>,
    encoding: Encoding,
) -> Result<Vec<RecordOut>, ApiError> {
    records
        .into_iter()
        .map(|r| {
            let offset = r.offset;
            Ok(RecordOut {
                offset,
                timestamp_ms: r.timestamp_ms,
                key: r
                    .key
                    .map(|k| encode(k, encoding, offset, "key"))
                    .transpose()?,
                value: r
                    .value
                    .map(|v| encode(v, encoding, offset, "value"))
                    .transpose()?,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(key, v)| {
                        let value = encode(v, encoding, offset, "header value")?;
                        Ok(Header { key, value })
                    })
                    .collect::<Result<_, ApiError>>()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_accept_a_map_a_list_or_null() {
        let r: RecordIn = serde_json::from_str(r#"{"headers":{"a":"1","b":"2"}}"#).unwrap();
        assert_eq!(
            r.headers.0,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        let r: RecordIn = serde_json::from_str(
            r#"{"headers":[{"key":"a","value":"1"},{"key":"a","value":"2"}]}"#,
        )
        .unwrap();
        assert_eq!(
            r.headers.0,
            vec![("a".into(), "1".into()), ("a".into(), "2".into())]
        );
        let r: RecordIn = serde_json::from_str(r#"{"headers":null}"#).unwrap();
        assert!(r.headers.0.is_empty());
        assert!(serde_json::from_str::<RecordIn>(r#"{"headers":5}"#).is_err());
        assert!(serde_json::from_str::<RecordIn>(r#"{"headers":{"a":1}}"#).is_err());
        assert!(serde_json::from_str::<RecordIn>(r#"{"valu":"x"}"#).is_err());
    }

    #[test]
    fn base64_round_trips_arbitrary_bytes_and_utf8_refuses_them() {
        let rec = RecordIn {
            key: Some(BASE64.encode([0xff, 0x00])),
            value: None,
            headers: HeadersIn(vec![("h".into(), BASE64.encode([0xfe]))]),
            ..RecordIn::default()
        };
        let out = decode_records(vec![rec], Encoding::Base64).unwrap();
        assert_eq!(out[0].key.as_deref(), Some(&[0xff, 0x00][..]));
        assert_eq!(out[0].value, None);
        let consumed = ConsumedRecord {
            offset: 7,
            timestamp_ms: 1,
            key: out[0].key.clone(),
            value: None,
            headers: out[0].headers.clone(),
        };
        let back = encode_records(vec![consumed.clone()], Encoding::Base64).unwrap();
        assert_eq!(back[0].key.as_deref(), Some("/wA="));
        let err = encode_records(vec![consumed], Encoding::Utf8).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(err.message.contains("encoding=base64"), "{}", err.message);
        let bad = RecordIn {
            value: Some("not base64!".into()),
            ..RecordIn::default()
        };
        let err = decode_records(vec![bad], Encoding::Base64).unwrap_err();
        assert!(err.message.contains("records[0].value"), "{}", err.message);
    }
}
