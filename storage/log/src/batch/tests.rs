//! Tests for the whole batch module: round trips, cross-checks against the
//! independent `kafka-protocol` crate (the proof that the bytes are Kafka's),
//! known answers, corruption, truncation and fuzzing.

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records as kp;
use proptest::prelude::*;

use super::header::{ATTRIBUTES, CRC, TIMESTAMP_TYPE_FLAG};
use super::varint::{encode_varint, encode_varlong};
use super::*;

const ALL: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

const MAX: usize = 64 << 20;

fn kp_codec(c: Compression) -> kp::Compression {
    match c {
        Compression::None => kp::Compression::None,
        Compression::Gzip => kp::Compression::Gzip,
        Compression::Snappy => kp::Compression::Snappy,
        Compression::Lz4 => kp::Compression::Lz4,
        Compression::Zstd => kp::Compression::Zstd,
    }
}

fn hdr(key: &str, value: Option<&[u8]>) -> RecordHeader {
    RecordHeader {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: value.map(Bytes::copy_from_slice),
    }
}

fn b(s: &[u8]) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s))
}

/// (key, value, headers, timestamp) tuples, the builder's input.
type Input = (Option<Bytes>, Option<Bytes>, Vec<RecordHeader>, i64);

fn sample_inputs() -> Vec<Input> {
    let many_headers: Vec<RecordHeader> = (0..300)
        .map(|i| hdr(&format!("header-{i}"), (i % 3 != 0).then_some(&b"v"[..])))
        .collect();
    vec![
        (b(b"key"), b(b"value"), vec![], 1_700_000_000_000),
        (None, None, vec![], 1_700_000_000_500),
        (b(b""), b(b""), vec![hdr("", None), hdr("e", Some(b""))], -5),
        (None, b(b"tombstone-not"), many_headers, i32::MIN as i64 * 4),
        (
            b(&vec![7u8; 70 * 1024]),
            b(&(0..200 * 1024).map(|i| (i % 251) as u8).collect::<Vec<_>>()),
            vec![hdr("big", Some(&[1u8; 66_000]))],
            1_700_000_000_100,
        ),
        (
            b(b"k"),
            None,
            vec![hdr("dup", None), hdr("dup2", Some(b"x"))],
            0,
        ),
    ]
}

fn build(c: Compression, inputs: &[Input]) -> Bytes {
    let mut builder = BatchBuilder::new(c);
    for (k, v, h, ts) in inputs {
        builder.push(k.clone(), v.clone(), h.clone(), *ts);
    }
    builder.build().unwrap()
}

fn check_decoded(records: &[Record], inputs: &[Input], base_offset: i64) {
    assert_eq!(records.len(), inputs.len());
    for (i, (r, (k, v, h, ts))) in records.iter().zip(inputs).enumerate() {
        assert_eq!(r.offset, base_offset + i as i64);
        assert_eq!(r.timestamp, *ts);
        assert_eq!(&r.key, k);
        assert_eq!(&r.value, v);
        assert_eq!(&r.headers, h);
    }
}

/// Recomputes the CRC after a test edits CRC-covered bytes.
fn reseal(buf: &mut [u8]) {
    let crc = crc32c::crc32c(&buf[ATTRIBUTES..]);
    buf[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A hand-made batch around a raw records section, with a valid CRC.
fn raw_batch(attributes: i16, last_offset_delta: i32, count: i32, section: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&(49 + section.len() as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out.push(2);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&attributes.to_be_bytes());
    out.extend_from_slice(&last_offset_delta.to_be_bytes());
    out.extend_from_slice(&1000i64.to_be_bytes());
    out.extend_from_slice(&2000i64.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(section);
    reseal(&mut out);
    out
}

/// One raw record with explicit (possibly invalid) length fields.
fn raw_record(offset_delta: i32, key_len: i32, key: &[u8], extra: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    encode_varlong(10, &mut body);
    encode_varint(offset_delta, &mut body);
    encode_varint(key_len, &mut body);
    body.extend_from_slice(key);
    encode_varint(-1, &mut body); // null value
    encode_varint(0, &mut body); // no headers
    body.extend_from_slice(extra);
    let mut out = Vec::new();
    encode_varint(body.len() as i32, &mut out);
    out.extend_from_slice(&body);
    out
}

fn kp_record(offset: i64, timestamp: i64, key: Option<Bytes>, value: Option<Bytes>) -> kp::Record {
    kp::Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: kp::TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}

/// kafka-protocol starts a new batch whenever `offset - sequence` changes, so
/// tests that want gaps in one batch keep the two in step.
fn with_sequences(mut records: Vec<kp::Record>) -> Vec<kp::Record> {
    for r in &mut records {
        r.sequence = r.offset as i32;
    }
    records
}

fn kp_encode(c: Compression, records: &[kp::Record]) -> Bytes {
    let mut buf = BytesMut::new();
    kp::RecordBatchEncoder::encode(
        &mut buf,
        records,
        &kp::RecordEncodeOptions {
            version: 2,
            compression: kp_codec(c),
        },
    )
    .unwrap();
    buf.freeze()
}

#[test]
fn round_trip_every_codec() {
    let inputs = sample_inputs();
    for c in ALL {
        let batch = build(c, &inputs);
        let header = verify_batch(&batch, MAX).unwrap();
        assert_eq!(header.compression(), Ok(c));
        assert_eq!(header.base_offset, 0);
        assert_eq!(header.partition_leader_epoch, -1);
        assert_eq!(header.records_count, inputs.len() as i32);
        assert_eq!(header.last_offset_delta, inputs.len() as i32 - 1);
        assert_eq!(header.base_timestamp, inputs[0].3);
        assert_eq!(header.max_timestamp, 1_700_000_000_500);
        assert_eq!(
            (
                header.producer_id,
                header.producer_epoch,
                header.base_sequence
            ),
            (-1, -1, -1)
        );
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert!(!header.is_transactional() && !header.is_control());
        assert_eq!(header.total_len(), batch.len());
        assert_eq!(header.next_offset(), inputs.len() as i64);
        check_decoded(&decode_records(&batch, MAX).unwrap(), &inputs, 0);
        if c != Compression::None {
            assert!(batch.len() < build(Compression::None, &inputs).len());
        }
    }
}

#[test]
fn builder_options_and_errors() {
    let mut builder = BatchBuilder::new(Compression::Lz4)
        .producer(42, 3, 17)
        .transactional(true);
    assert!(builder.is_empty());
    assert_eq!(builder.build(), Err(BatchError::EmptyBatch));
    builder.push(None, b(b"a"), vec![], 5);
    builder.push(None, b(b"b"), vec![], 9);
    builder.push(None, b(b"c"), vec![], 7);
    assert_eq!(builder.len(), 3);
    let batch = builder.build().unwrap();
    let h = verify_batch(&batch, MAX).unwrap();
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (42, 3, 17)
    );
    assert!(h.is_transactional());
    assert_eq!((h.base_timestamp, h.max_timestamp), (5, 9));

    // kafka-protocol sees the same producer state and sequences.
    let set = kp::RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
    let seqs: Vec<i32> = set.records.iter().map(|r| r.sequence).collect();
    assert_eq!(seqs, [17, 18, 19]);
    assert!(
        set.records
            .iter()
            .all(|r| r.transactional && r.producer_id == 42)
    );
}

#[test]
fn our_batches_decode_with_kafka_protocol() {
    let inputs = sample_inputs();
    for c in ALL {
        let batch = build(c, &inputs);
        let set = kp::RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
        assert_eq!(set.compression, kp_codec(c));
        assert_eq!(set.records.len(), inputs.len());
        for (i, (r, (k, v, h, ts))) in set.records.iter().zip(&inputs).enumerate() {
            assert_eq!(r.offset, i as i64);
            assert_eq!(r.timestamp, *ts, "{c:?} record {i}");
            assert_eq!(&r.key, k);
            assert_eq!(&r.value, v);
            let theirs: Vec<(Bytes, Option<Bytes>)> = r
                .headers
                .iter()
                .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v.clone()))
                .collect();
            let ours: Vec<(Bytes, Option<Bytes>)> =
                h.iter().map(|h| (h.key.clone(), h.value.clone())).collect();
            assert_eq!(theirs, ours);
            assert_eq!(r.partition_leader_epoch, -1);
            assert_eq!(r.timestamp_type, kp::TimestampType::Creation);
        }
    }
}

#[test]
fn kafka_protocol_batches_verify_and_decode_with_ours() {
    // Non-contiguous offsets (as after compaction) and out-of-order
    // timestamps (kafka-protocol uses the minimum as base timestamp).
    let mut records = with_sequences(vec![
        kp_record(100, 5_000, b(b"a"), b(b"one")),
        kp_record(101, 3_000, None, None),
        kp_record(105, 9_000, b(b""), b(&vec![9u8; 100_000])),
    ]);
    records[2]
        .headers
        .insert(StrBytes::from_static_str("h1"), b(b"x"));
    records[2]
        .headers
        .insert(StrBytes::from_static_str("h2"), None);
    for c in ALL {
        let bytes = kp_encode(c, &records);
        let header = verify_batch(&bytes, MAX).unwrap();
        assert_eq!(header.compression(), Ok(c));
        assert_eq!(header.base_offset, 100);
        assert_eq!(header.last_offset_delta, 5);
        assert_eq!(header.records_count, 3);
        assert_eq!(header.next_offset(), 106);
        assert_eq!(
            (header.base_timestamp, header.max_timestamp),
            (3_000, 9_000)
        );
        let ours = decode_records(&bytes, MAX).unwrap();
        let offsets: Vec<i64> = ours.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [100, 101, 105]);
        for (o, t) in ours.iter().zip(&records) {
            assert_eq!(o.timestamp, t.timestamp);
            assert_eq!(o.key, t.key);
            assert_eq!(o.value, t.value);
        }
        assert_eq!(
            ours[2].headers,
            vec![hdr("h1", Some(b"x")), hdr("h2", None)]
        );
    }
}

#[test]
fn kafka_protocol_control_and_transactional_batches() {
    let mut marker = kp_record(0, 77, b(&[0, 0, 0, 1]), b(&[0, 0, 0, 0, 0, 5]));
    marker.control = true;
    marker.transactional = true;
    marker.producer_id = 9;
    marker.producer_epoch = 2;
    for c in ALL {
        let bytes = kp_encode(c, std::slice::from_ref(&marker));
        let h = verify_batch(&bytes, MAX).unwrap();
        assert!(h.is_control() && h.is_transactional());
        assert_eq!((h.producer_id, h.producer_epoch), (9, 2));
        let records = decode_records(&bytes, MAX).unwrap();
        assert_eq!(records[0].key, marker.key);
        assert_eq!(records[0].value, marker.value);
    }
}

#[test]
fn batches_splits_concatenated_batches() {
    // Records differing in producer id make kafka-protocol write two batches.
    let mut recs = vec![
        kp_record(0, 1, None, b(b"a")),
        kp_record(1, 2, None, b(b"b")),
    ];
    recs[1].producer_id = 5;
    let mut all = kp_encode(Compression::Gzip, &recs).to_vec();
    all.extend_from_slice(&build(Compression::Zstd, &sample_inputs()));
    let found: Vec<_> = batches(&all).collect::<Result<_, _>>().unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(found[2].1.end, all.len());
    for (h, range) in &found {
        assert_eq!(verify_batch(&all[range.clone()], MAX).unwrap(), *h);
    }

    // A torn tail: one error, then nothing, and the valid prefix is known.
    let torn = &all[..all.len() - 1];
    let mut it = batches(torn);
    assert!(it.next().unwrap().is_ok());
    assert!(it.next().unwrap().is_ok());
    let valid = it.position();
    assert!(matches!(it.next(), Some(Err(BatchError::Truncated { .. }))));
    assert!(it.next().is_none());
    assert_eq!(it.position(), valid);
    assert_eq!(valid, found[2].1.start);
    assert!(batches(&[]).next().is_none());
}

/// Known answer: one record (key "k", value "hello", header h=v, timestamp
/// 1700000000000), no compression. CRC-32C 0xc622acfa was computed
/// independently (bitwise CRC-32C in Python over bytes 21..).
const KNOWN_BATCH: [u8; 78] = [
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x42, 0xff, 0xff, 0xff, 0xff,
    0x02, 0xc6, 0x22, 0xac, 0xfa, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x8b, 0xcf,
    0xe5, 0x68, 0x00, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01, 0x20, 0x00, 0x00,
    0x00, 0x02, 0x6b, 0x0a, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x02, 0x02, 0x68, 0x02, 0x76,
];

#[test]
fn known_answer_batch() {
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    let h = verify_batch(&KNOWN_BATCH, MAX).unwrap();
    assert_eq!(h.crc, 0xc622_acfa);
    assert_eq!(h.batch_length, 66);

    let mut builder = BatchBuilder::new(Compression::None);
    builder.push(
        b(b"k"),
        b(b"hello"),
        vec![hdr("h", Some(b"v"))],
        1_700_000_000_000,
    );
    assert_eq!(&builder.build().unwrap()[..], &KNOWN_BATCH[..]);

    let mut theirs = kp_record(0, 1_700_000_000_000, b(b"k"), b(b"hello"));
    theirs
        .headers
        .insert(StrBytes::from_static_str("h"), b(b"v"));
    assert_eq!(
        &kp_encode(Compression::None, &[theirs])[..],
        &KNOWN_BATCH[..]
    );

    let records = decode_records(&KNOWN_BATCH, MAX).unwrap();
    assert_eq!(
        records,
        vec![Record {
            offset: 0,
            timestamp: 1_700_000_000_000,
            key: b(b"k"),
            value: b(b"hello"),
            headers: vec![hdr("h", Some(b"v"))],
        }]
    );
}

#[test]
fn known_answer_from_kafka_protocol_docs() {
    // The fetch-response example in kafka-protocol's `records` docs: offset
    // delta 1 of last offset delta 3, leader epoch 0, CRC 0x736d297b.
    let bytes: [u8; 79] = [
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x43, 0x0, 0x0, 0x0, 0x0, 0x2, 0x73,
        0x6d, 0x29, 0x7b, 0x0, 0x0, 0x0, 0x0, 0x0, 0x3, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0x0, 0x0, 0x1, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0,
        0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x1, 0x22, 0x1, 0xd0, 0xf, 0x2, 0xa, 0x68, 0x65, 0x6c,
        0x6c, 0x6f, 0xa, 0x77, 0x6f, 0x72, 0x6c, 0x64, 0x0,
    ];
    let h = verify_batch(&bytes, MAX).unwrap();
    assert_eq!(h.crc, 0x736d_297b);
    assert_eq!(h.next_offset(), 4);
    let records = decode_records(&bytes, MAX).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].offset, 1);
    assert_eq!(records[0].timestamp, 1000);
    assert_eq!(records[0].key, b(b"hello"));
    assert_eq!(records[0].value, b(b"world"));
}

#[test]
fn broker_fields_rewrite_without_breaking_the_crc() {
    for c in ALL {
        let mut batch = build(c, &sample_inputs()[..3]).to_vec();
        set_base_offset(&mut batch, 1_000_000).unwrap();
        set_partition_leader_epoch(&mut batch, 7).unwrap();
        let h = verify_batch(&batch, MAX).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (1_000_000, 7));
        let records = decode_records(&batch, MAX).unwrap();
        assert_eq!(records[2].offset, 1_000_002);
    }
    let mut short = [0u8; 60];
    assert!(set_base_offset(&mut short, 1).is_err());
    assert!(set_partition_leader_epoch(&mut short, 1).is_err());
    assert!(set_base_offset(&mut [], 1).is_err());
}

#[test]
fn log_append_time_uses_max_timestamp() {
    let mut batch = build(Compression::Snappy, &sample_inputs()[..3]).to_vec();
    let attrs =
        i16::from_be_bytes([batch[ATTRIBUTES], batch[ATTRIBUTES + 1]]) | TIMESTAMP_TYPE_FLAG;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[35..43].copy_from_slice(&42i64.to_be_bytes());
    reseal(&mut batch);
    let h = verify_batch(&batch, MAX).unwrap();
    assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
    let records = decode_records(&batch, MAX).unwrap();
    assert!(records.iter().all(|r| r.timestamp == 42));
}

#[test]
fn every_single_byte_flip_is_detected_or_harmless() {
    let inputs = vec![
        (b(b"k1"), b(b"v1"), vec![hdr("h", Some(b"x"))], 10),
        (None, b(b"v2"), vec![], 12),
    ];
    for c in ALL {
        let batch = build(c, &inputs);
        for pos in 0..batch.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = batch.to_vec();
                bad[pos] ^= mask;
                let outside_crc = pos < 8 || (12..16).contains(&pos);
                if outside_crc {
                    assert!(verify_batch(&bad, MAX).is_ok(), "{c:?} pos {pos}");
                    assert!(decode_records(&bad, MAX).is_ok());
                } else {
                    assert!(verify_batch(&bad, MAX).is_err(), "{c:?} pos {pos}");
                    assert!(verify_batch_crc(&bad).is_err(), "{c:?} pos {pos}");
                    assert!(decode_records(&bad, MAX).is_err());
                }
            }
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    for c in ALL {
        let batch = build(c, &sample_inputs()[..3]);
        for len in 0..batch.len() {
            let cut = &batch[..len];
            assert!(verify_batch(cut, MAX).is_err());
            assert!(verify_batch_crc(cut).is_err());
            assert!(decode_records(cut, MAX).is_err());
            let mut it = batches(cut);
            if len > 0 {
                assert!(it.next().unwrap().is_err());
            }
            assert!(it.next().is_none());
        }
        let mut long = batch.to_vec();
        long.push(0);
        assert!(matches!(
            verify_batch(&long, MAX),
            Err(BatchError::LengthMismatch { .. })
        ));
    }
}

#[test]
fn header_level_errors() {
    let good = raw_batch(0, 0, 1, &raw_record(0, 1, b"k", &[]));
    assert!(verify_batch(&good, MAX).is_ok());

    let mut magic = good.clone();
    magic[16] = 1;
    assert_eq!(BatchHeader::parse(&magic), Err(BatchError::BadMagic(1)));

    let mut length = good.clone();
    length[8..12].copy_from_slice(&48i32.to_be_bytes());
    assert_eq!(BatchHeader::parse(&length), Err(BatchError::BadLength(48)));
    length[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(matches!(
        verify_batch(&length, MAX),
        Err(BatchError::Truncated { .. })
    ));

    let mut crc = good.clone();
    crc[CRC] ^= 1;
    assert!(matches!(
        verify_batch_crc(&crc),
        Err(BatchError::CrcMismatch { .. })
    ));

    let empty = raw_batch(0, 0, -1, &[]);
    assert_eq!(
        verify_batch(&empty, MAX),
        Err(BatchError::BadRecordCount(-1))
    );
    let delta = raw_batch(0, 0, 2, &[]);
    assert!(matches!(
        verify_batch(&delta, MAX),
        Err(BatchError::BadLastOffsetDelta { .. })
    ));
    let negative = raw_batch(0, -1, 0, &[]);
    assert!(matches!(
        verify_batch(&negative, MAX),
        Err(BatchError::BadLastOffsetDelta { .. })
    ));
    let codec = raw_batch(5, 0, 1, &raw_record(0, 1, b"k", &[]));
    assert_eq!(
        verify_batch(&codec, MAX),
        Err(BatchError::UnsupportedCompression(5))
    );
    // verify_batch_crc does not look at the codec or the counts.
    assert!(verify_batch_crc(&codec).is_ok());
}

#[test]
fn empty_batch_as_left_by_compaction() {
    for attrs in [0, 1, 4] {
        let batch = raw_batch(attrs, 5, 0, &[]);
        let h = verify_batch(&batch, MAX).unwrap();
        assert_eq!(h.next_offset(), 6);
        assert_eq!(decode_records(&batch, MAX).unwrap(), vec![]);
    }
    // ... but an empty batch may not carry records.
    let stray = raw_batch(0, 5, 0, &raw_record(0, -1, b"", &[]));
    assert_eq!(
        verify_batch(&stray, MAX),
        Err(BatchError::RecordCountMismatch {
            header: 0,
            actual: 1
        })
    );
}

#[test]
fn record_level_errors() {
    let malformed = |section: Vec<u8>, lod: i32, count: i32| {
        let batch = raw_batch(0, lod, count, &section);
        let err = verify_batch(&batch, MAX).unwrap_err();
        assert_eq!(decode_records(&batch, MAX).unwrap_err(), err);
        err
    };
    let two = [raw_record(0, 1, b"a", &[]), raw_record(1, 1, b"b", &[])].concat();
    assert_eq!(
        malformed(two.clone(), 1, 1),
        BatchError::RecordCountMismatch {
            header: 1,
            actual: 2
        }
    );
    assert_eq!(
        malformed(raw_record(0, 1, b"a", &[]), 1, 2),
        BatchError::RecordCountMismatch {
            header: 2,
            actual: 1
        }
    );
    let same = [raw_record(0, 1, b"a", &[]), raw_record(0, 1, b"b", &[])].concat();
    assert!(matches!(
        malformed(same, 1, 2),
        BatchError::BadOffsetDelta {
            delta: 0,
            previous: Some(0),
            ..
        }
    ));
    assert!(matches!(
        malformed(raw_record(3, 1, b"a", &[]), 2, 1),
        BatchError::BadOffsetDelta { delta: 3, .. }
    ));
    assert!(matches!(
        malformed(raw_record(-1, 1, b"a", &[]), 2, 1),
        BatchError::BadOffsetDelta { delta: -1, .. }
    ));
    assert!(matches!(
        malformed(raw_record(0, -2, b"", &[]), 0, 1),
        BatchError::MalformedRecord(_)
    ));
    // A huge declared key length must fail fast, not allocate.
    assert!(matches!(
        malformed(raw_record(0, i32::MAX, b"abc", &[]), 0, 1),
        BatchError::MalformedRecord(_)
    ));
    // A record whose length covers a stray byte after its fields.
    assert!(matches!(
        malformed(raw_record(0, 1, b"a", &[0]), 0, 1),
        BatchError::MalformedRecord(_)
    ));
    // Trailing garbage after the last record.
    let mut trailing = raw_record(0, 1, b"a", &[]);
    trailing.push(0x7f);
    assert!(matches!(
        malformed(trailing, 0, 1),
        BatchError::MalformedRecord(_)
    ));
    // Record length past the end of the section.
    let mut overlong = raw_record(0, 1, b"a", &[]);
    overlong[0] = 0x7e;
    assert!(matches!(
        malformed(overlong, 0, 1),
        BatchError::MalformedRecord(_)
    ));
    // Header count far beyond the record's bytes.
    let mut body = vec![0u8, 0, 0, 1, 1];
    encode_varint(i32::MAX, &mut body);
    let mut huge_headers = Vec::new();
    encode_varint(body.len() as i32, &mut huge_headers);
    huge_headers.extend_from_slice(&body);
    assert!(matches!(
        malformed(huge_headers, 0, 1),
        BatchError::MalformedRecord(_)
    ));
}

#[test]
fn decompression_is_bounded() {
    let inputs = vec![(None, b(&vec![0u8; 4 << 20]), vec![], 0)];
    for c in ALL {
        let batch = build(c, &inputs);
        assert_eq!(
            verify_batch(&batch, 1 << 20),
            Err(BatchError::TooLarge { limit: 1 << 20 }),
            "{c:?}"
        );
        assert_eq!(
            decode_records(&batch, 1 << 20),
            Err(BatchError::TooLarge { limit: 1 << 20 })
        );
        assert!(verify_batch(&batch, 5 << 20).is_ok());
    }
}

#[test]
fn errors_read_well() {
    let e = BatchError::CrcMismatch {
        stored: 1,
        computed: 2,
    };
    assert_eq!(
        e.to_string(),
        "record batch CRC mismatch: stored 0x00000001, computed 0x00000002"
    );
    assert_eq!(
        BatchError::Truncated {
            needed: 61,
            available: 3
        }
        .to_string(),
        "record batch truncated: needed 61 bytes, only 3 available"
    );
}

fn input_strategy(ts: BoxedStrategy<i64>) -> impl Strategy<Value = Vec<Input>> {
    let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64));
    let headers = proptest::collection::vec(("[a-z]{0,6}", bytes()), 0..4).prop_map(|hs| {
        // Unique, UTF-8 keys so kafka-protocol's map keeps them all in order.
        hs.into_iter()
            .enumerate()
            .map(|(i, (k, v))| RecordHeader {
                key: Bytes::from(format!("{i}{k}")),
                value: v.map(Bytes::from),
            })
            .collect::<Vec<_>>()
    });
    proptest::collection::vec(
        (bytes(), bytes(), headers, ts)
            .prop_map(|(k, v, h, t)| (k.map(Bytes::from), v.map(Bytes::from), h, t)),
        1..20,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let _ = verify_batch(&bytes, 1 << 20);
        let _ = verify_batch_crc(&bytes);
        let _ = decode_records(&bytes, 1 << 20);
        let _ = BatchHeader::parse(&bytes);
        prop_assert!(batches(&bytes).count() <= bytes.len() / 61 + 1);
        for c in ALL {
            let _ = c.decompress(&bytes, 1 << 20);
        }
    }

    /// Garbage behind a well-formed header with a valid CRC, so the record
    /// walker and the decompressors see it.
    #[test]
    fn sealed_garbage_never_panics(
        codec in 0i16..8,
        lod in -2i32..40,
        count in -2i32..40,
        section in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let batch = raw_batch(codec, lod, count, &section);
        let verified = verify_batch(&batch, 1 << 20);
        let decoded = decode_records(&batch, 1 << 20);
        prop_assert_eq!(verified.is_ok(), decoded.is_ok());
        if let Ok(records) = decoded {
            prop_assert_eq!(records.len(), count as usize);
        }
    }

    /// Small edits inside the records of a real batch, resealed.
    #[test]
    fn resealed_mutations_never_panic(
        inputs in input_strategy(any::<i64>().boxed()),
        codec in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut batch = build(ALL[codec], &inputs).to_vec();
        for (at, byte) in edits {
            let pos = 61 + at.index(batch.len() - 61);
            batch[pos] = byte;
        }
        reseal(&mut batch);
        let verified = verify_batch(&batch, 1 << 20);
        let decoded = decode_records(&batch, 1 << 20);
        prop_assert_eq!(verified.is_ok(), decoded.is_ok());
    }

    #[test]
    fn build_decode_round_trip(inputs in input_strategy(any::<i64>().boxed()), codec in 0usize..5) {
        let batch = build(ALL[codec], &inputs);
        let header = verify_batch(&batch, MAX).unwrap();
        prop_assert_eq!(header.records_count as usize, inputs.len());
        prop_assert_eq!(header.max_timestamp, inputs.iter().map(|i| i.3).max().unwrap());
        check_decoded(&decode_records(&batch, MAX).unwrap(), &inputs, 0);
    }

    #[test]
    fn kafka_protocol_agrees(
        inputs in input_strategy((-(1i64 << 50)..(1i64 << 50)).boxed()),
        codec in 0usize..5,
    ) {
        let c = ALL[codec];
        // Ours -> kafka-protocol.
        let batch = build(c, &inputs);
        let set = kp::RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
        prop_assert_eq!(set.records.len(), inputs.len());
        for (r, (k, v, h, ts)) in set.records.iter().zip(&inputs) {
            prop_assert_eq!(r.timestamp, *ts);
            prop_assert_eq!(&r.key, k);
            prop_assert_eq!(&r.value, v);
            prop_assert_eq!(r.headers.len(), h.len());
        }
        // kafka-protocol -> ours.
        let theirs: Vec<kp::Record> = inputs
            .iter()
            .enumerate()
            .map(|(i, (k, v, h, ts))| {
                let mut r = kp_record(i as i64 * 2 + 10, *ts, k.clone(), v.clone());
                for x in h {
                    let key = StrBytes::from_utf8(x.key.clone()).unwrap();
                    r.headers.insert(key, x.value.clone());
                }
                r
            })
            .collect();
        let bytes = kp_encode(c, &with_sequences(theirs));
        let ours = decode_records(&bytes, MAX).unwrap();
        prop_assert_eq!(ours.len(), inputs.len());
        for (i, (o, (k, v, h, ts))) in ours.iter().zip(&inputs).enumerate() {
            prop_assert_eq!(o.offset, i as i64 * 2 + 10);
            prop_assert_eq!(o.timestamp, *ts);
            prop_assert_eq!(&o.key, k);
            prop_assert_eq!(&o.value, v);
            prop_assert_eq!(&o.headers, h);
        }
    }
}
