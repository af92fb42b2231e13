//! Records to batches and back.
//!
//! Produced records become Kafka RecordBatch v2 bytes (uncompressed: the
//! HTTP/gRPC paths hand over single records, where compression buys little
//! and costs latency); read batches become [`ConsumedRecord`]s.

use bytes::Bytes;
use strata_api::{ApiError, ErrorCode};
use strata_log::batch::{
    BatchBuilder, BatchError, BatchHeader, Compression, RecordHeader, decode_records,
};

use crate::broker::{ConsumedRecord, ProduceRecord};

/// A record's size as `max_message_bytes` counts it: key + value + header keys and values.
pub(crate) fn record_size(record: &ProduceRecord) -> u64 {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len() as u64);
    let headers: u64 = record
        .headers
        .iter()
        .map(|(k, v)| k.len() as u64 + v.len() as u64)
        .sum();
    len(&record.key) + len(&record.value) + headers
}

/// Checks each record against the topic's limit and the request against the
/// broker's, before anything is written.
pub(crate) fn check_sizes(
    records: &[ProduceRecord],
    max_message_bytes: u64,
    max_request_bytes: u64,
) -> Result<(), ApiError> {
    let mut total: u64 = 0;
    for (index, record) in records.iter().enumerate() {
        let size = record_size(record);
        if size > max_message_bytes {
            return Err(ApiError::new(
                ErrorCode::RecordTooLarge,
                format!("record {index} is {size} bytes, larger than the topic's max_message_bytes of {max_message_bytes}"),
            )
            .with_details(serde_json::json!({
                "index": index,
                "record_bytes": size,
                "max_message_bytes": max_message_bytes,
            })));
        }
        total = total.saturating_add(size);
    }
    if total > max_request_bytes {
        return Err(ApiError::new(
            ErrorCode::RequestTooLarge,
            format!("the request's records total {total} bytes, more than the limit of {max_request_bytes}"),
        )
        .with_details(serde_json::json!({ "request_bytes": total, "max_request_bytes": max_request_bytes })));
    }
    Ok(())
}

/// One uncompressed batch holding `records` in order; records without a
/// timestamp get `now_ms`.
pub(crate) fn build_batch<'a>(
    records: impl IntoIterator<Item = &'a ProduceRecord>,
    now_ms: i64,
) -> Result<Bytes, ApiError> {
    let mut builder = BatchBuilder::new(Compression::None);
    for r in records {
        let headers = r
            .headers
            .iter()
            .map(|(k, v)| RecordHeader {
                key: Bytes::copy_from_slice(k.as_bytes()),
                value: Some(v.clone()),
            })
            .collect();
        builder.push(
            r.key.clone(),
            r.value.clone(),
            headers,
            r.timestamp_ms.unwrap_or(now_ms),
        );
    }
    builder.build().map_err(|e| match e {
        BatchError::EmptyBatch => ApiError::new(ErrorCode::BadRequest, "no records to append"),
        BatchError::TooLarge { .. } => ApiError::new(ErrorCode::RequestTooLarge, e.to_string()),
        other => ApiError::new(ErrorCode::InvalidRecord, other.to_string()),
    })
}

/// Records decoded from whole batches, from `from` on, at most `max_records`.
/// Control batches (transaction markers) are not records a consumer sees.
/// Returns the records and whether `max_records` cut the last batch short.
pub(crate) fn decode(
    batches: impl IntoIterator<Item = Bytes>,
    from: u64,
    max_records: usize,
    max_uncompressed: usize,
) -> Result<(Vec<ConsumedRecord>, bool), ApiError> {
    let mut out = Vec::new();
    for batch in batches {
        let header = BatchHeader::parse(&batch).map_err(corrupt)?;
        if header.is_control() || header.next_offset() <= from as i64 {
            continue;
        }
        for r in decode_records(&batch, max_uncompressed).map_err(corrupt)? {
            let Ok(offset) = u64::try_from(r.offset) else {
                continue;
            };
            if offset < from {
                continue;
            }
            if out.len() >= max_records {
                return Ok((out, true));
            }
            out.push(ConsumedRecord {
                offset,
                timestamp_ms: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|h| {
                        // Kafka clients may write any bytes as a header key.
                        let key = String::from_utf8_lossy(&h.key).into_owned();
                        (key, h.value.unwrap_or_default())
                    })
                    .collect(),
            });
        }
    }
    Ok((out, false))
}

/// The log verified these batches on write and on read; failing to decode
/// one is a broker bug or corruption, not the client's fault.
fn corrupt(e: BatchError) -> ApiError {
    tracing::error!(error = %e, "stored record batch failed to decode");
    ApiError::new(
        ErrorCode::Internal,
        format!("stored record batch failed to decode: {e}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_log::batch::set_base_offset;

    fn rec(key: &str, value: &str) -> ProduceRecord {
        ProduceRecord {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![("h".into(), Bytes::from_static(b"vv"))],
            ..ProduceRecord::default()
        }
    }

    #[test]
    fn size_counts_key_value_and_headers() {
        assert_eq!(record_size(&rec("ab", "cde")), 2 + 3 + 1 + 2);
        assert_eq!(record_size(&ProduceRecord::default()), 0);
    }

    #[test]
    fn size_limits() {
        let records = vec![rec("k", "1234"), rec("k", "12345678")];
        let e = check_sizes(&records, 10, 1000).unwrap_err();
        assert_eq!(e.code, ErrorCode::RecordTooLarge);
        assert_eq!(e.details.unwrap()["index"], 1);
        let e = check_sizes(&records, 100, 15).unwrap_err();
        assert_eq!(e.code, ErrorCode::RequestTooLarge);
        check_sizes(&records, 100, 100).unwrap();
    }

    #[test]
    fn round_trip_skips_below_start_and_stops_at_max() {
        let mut r2 = rec("b", "2");
        r2.timestamp_ms = Some(42);
        let records = vec![rec("a", "1"), r2, rec("c", "3")];
        let batch = build_batch(&records, 1000).unwrap();
        let mut stored = batch.to_vec();
        set_base_offset(&mut stored, 10).unwrap();
        let stored = Bytes::from(stored);

        let (all, cut) = decode([stored.clone()], 0, 100, 1 << 20).unwrap();
        assert!(!cut);
        assert_eq!(
            all.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![10, 11, 12]
        );
        assert_eq!(all[0].timestamp_ms, 1000);
        assert_eq!(all[1].timestamp_ms, 42);
        assert_eq!(all[1].key.as_deref(), Some(&b"b"[..]));
        assert_eq!(
            all[2].headers,
            vec![("h".to_string(), Bytes::from_static(b"vv"))]
        );

        let (some, cut) = decode([stored.clone()], 11, 1, 1 << 20).unwrap();
        assert!(cut);
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].offset, 11);

        let (none, _) = decode([stored], 13, 10, 1 << 20).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn empty_batch_is_a_bad_request() {
        assert_eq!(build_batch(&[], 0).unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn non_utf8_header_keys_are_lossy() {
        let mut builder = BatchBuilder::new(Compression::None);
        let header = RecordHeader {
            key: Bytes::from_static(&[0x66, 0xff]),
            value: None,
        };
        builder.push(None, None, vec![header], 5);
        let (records, _) = decode([builder.build().unwrap()], 0, 10, 1 << 20).unwrap();
        assert_eq!(
            records[0].headers,
            vec![("f\u{fffd}".to_string(), Bytes::new())]
        );
        assert_eq!(records[0].key, None);
    }
}
