//! Tests of `segment.rs`.

use super::*;
use bytes::Bytes;
use proptest::prelude::*;
use strata_log::batch::{BatchBuilder, Compression, set_base_offset};

/// A batch of `values.len()` records at `base`, record `i` with value
/// `values[i]` bytes long and timestamp `ts0 + i`.
pub(crate) fn batch_at(base: u64, values: &[usize], ts0: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, len) in values.iter().enumerate() {
        let value = Bytes::from(vec![b'v'; *len]);
        b.push(Some(Bytes::from("k")), Some(value), vec![], ts0 + i as i64);
    }
    let mut buf = b.build().expect("batch").to_vec();
    set_base_offset(&mut buf, base as i64).expect("base offset");
    Bytes::from(buf)
}

/// Consecutive batches from `base`: one per element, with that many
/// records of `value_len` bytes and timestamps from `ts0[i]`.
pub(crate) fn batches_from(base: u64, shapes: &[(usize, usize, i64)]) -> Vec<Bytes> {
    let mut next = base;
    shapes
        .iter()
        .map(|&(records, value_len, ts0)| {
            let b = batch_at(next, &vec![value_len; records], ts0);
            next += records as u64;
            b
        })
        .collect()
}

pub(crate) fn fields() -> SegmentFields {
    SegmentFields {
        tenant: "acme".into(),
        topic: "orders.v2".into(),
        topic_id: 42,
        partition: 3,
        epochs: vec![
            EpochStart {
                epoch: 4,
                start_offset: 0,
            },
            EpochStart {
                epoch: 7,
                start_offset: 1000,
            },
        ],
    }
}

pub(crate) fn build(base: u64, batches: &[Bytes], block_size: usize) -> SegmentObject {
    let mut b = SegmentBuilder::with_block_size(base, block_size);
    for batch in batches {
        b.push(batch).expect("push");
    }
    b.finish(fields()).expect("finish")
}

/// Everything a reader does with a whole object, blocks included.
fn decode_object(obj: &[u8]) -> Result<(SegmentMeta, Vec<IndexEntry>)> {
    let size = obj.len() as u64;
    let start = obj
        .len()
        .checked_sub(TRAILER_LEN)
        .ok_or(FormatError::Truncated {
            region: Region::Object,
            needed: TRAILER_LEN as u64,
            available: size,
        })?;
    let tail: &[u8; TRAILER_LEN] = obj
        .get(start..)
        .and_then(|t| t.try_into().ok())
        .expect("32 bytes");
    let t = Trailer::decode(tail)?;
    t.check_object_len(size)?;
    let slice = |r: Range<u64>| obj.get(r.start as usize..r.end as usize).expect("in range");
    let meta = decode_header(slice(t.header_range()))?;
    let index = decode_index(slice(t.index_range()), t.index_entries)?;
    check_index(
        &index,
        &meta,
        t.batches_range().end - t.batches_range().start,
    )?;
    let batches = slice(t.batches_range());
    for e in &index {
        let block = batches.get(e.position as usize..e.range().end as usize);
        verify_block(block.expect("checked by check_index"), e)?;
    }
    Ok((meta, index))
}

fn shapes() -> impl Strategy<Value = Vec<(usize, usize, i64)>> {
    prop::collection::vec((1usize..6, 0usize..3000, 0i64..1_000_000), 0..40)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(
        base in 0u64..1 << 40,
        shapes in shapes(),
        block_size in 1usize..20_000,
        split in 1usize..5,
    ) {
        let batches = batches_from(base, &shapes);
        let mut b = SegmentBuilder::with_block_size(base, block_size);
        // Push in chunks of `split` batches, as the log's reader does.
        for chunk in batches.chunks(split) {
            b.push_bytes(Bytes::from(chunk.concat())).expect("push");
        }
        let obj = b.finish(fields()).expect("finish");
        let bytes = obj.to_bytes();
        prop_assert_eq!(bytes.len() as u64, obj.len);
        let (meta, index) = decode_object(&bytes).expect("decodes");
        prop_assert_eq!(&meta, &obj.meta);
        prop_assert_eq!(&index, &obj.index);

        let records: usize = shapes.iter().map(|s| s.0).sum();
        prop_assert_eq!(meta.base_offset, base);
        prop_assert_eq!(meta.end_offset, base + records as u64);
        prop_assert_eq!(meta.record_count, records as u64);
        prop_assert_eq!(meta.first_timestamp, shapes.first().map_or(-1, |s| s.2));
        let max = shapes.iter().map(|s| s.2 + s.0 as i64 - 1).max().unwrap_or(-1);
        prop_assert_eq!(meta.max_timestamp, max);
        prop_assert_eq!(meta.epochs, fields().epochs);

        // Blocks hold whole batches, in order, at most one batch over size.
        let area = &bytes[obj.trailer.batches_range().start as usize..obj.trailer.index_position as usize];
        prop_assert_eq!(area, &batches.concat()[..]);
        let mut starts = batches.iter().scan((0u64, base), |(pos, off), b| {
            let at = (*pos, *off);
            *pos += b.len() as u64;
            *off = batch::BatchHeader::parse(b).unwrap().next_offset() as u64;
            Some(at)
        });
        for e in &index {
            prop_assert!(starts.any(|(pos, off)| pos == e.position && off == e.first_offset));
            let single = batches.iter().any(|b| b.len() as u64 == u64::from(e.len));
            prop_assert!(e.len as usize <= block_size || single);
        }
        // Every offset is found in the block that holds it.
        for (i, e) in index.iter().enumerate() {
            let end = index.get(i + 1).map_or(meta.end_offset, |n| n.first_offset);
            for offset in [e.first_offset, (e.first_offset + end) / 2, end - 1] {
                prop_assert_eq!(block_for_offset(&index, offset), Some(i));
            }
        }
    }

    #[test]
    fn every_bit_flip_is_detected(
        shapes in prop::collection::vec((1usize..4, 0usize..200, 0i64..1000), 0..6),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let obj = build(100, &batches_from(100, &shapes), 300).to_bytes();
        let mut bytes = obj.to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(decode_object(&bytes).is_err(), "flip at byte {} undetected", i);
    }

    #[test]
    fn every_truncation_is_detected(
        shapes in prop::collection::vec((1usize..4, 0usize..200, 0i64..1000), 0..6),
        at in any::<prop::sample::Index>(),
    ) {
        let obj = build(100, &batches_from(100, &shapes), 300).to_bytes();
        let keep = at.index(obj.len());
        prop_assert!(decode_object(&obj[..keep]).is_err());
        prop_assert!(decode_object(&obj[obj.len() - keep..]).is_err() || keep == obj.len());
    }

    #[test]
    fn decoders_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        trailer in prop::array::uniform32(any::<u8>()),
        entries in any::<u32>(),
        entry in (any::<u64>(), any::<u64>(), any::<u32>(), any::<i64>(), any::<u32>()),
        offset in any::<u64>(),
        ts in any::<i64>(),
    ) {
        let _ = Trailer::decode(&trailer);
        let _ = decode_header(&bytes);
        let _ = decode_index(&bytes, entries);
        let _ = decode_index(&bytes, (bytes.len().saturating_sub(4) / INDEX_ENTRY_LEN) as u32);
        let (first_offset, position, len, max_timestamp, crc) = entry;
        let e = IndexEntry { first_offset, position, len, max_timestamp, crc };
        let _ = verify_block(&bytes, &e);
        let fixed = IndexEntry { len: bytes.len() as u32, crc: crc32c::crc32c(&bytes), ..e };
        let _ = verify_block(&bytes, &fixed);
        let _ = decode_object(&bytes);
        let _ = block_for_offset(&[e, fixed], offset);
        let _ = block_for_timestamp(&[e, fixed], ts);
        let mut b = SegmentBuilder::with_block_size(first_offset, len as usize);
        let _ = b.push(&bytes);
    }

    #[test]
    fn mutated_headers_never_panic(
        shapes in prop::collection::vec((1usize..4, 0usize..50, 0i64..1000), 0..3),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        // Garbage with a valid CRC reaches the field decoders.
        let obj = build(5, &batches_from(5, &shapes), 300);
        let mut header = obj.parts[0].to_vec();
        for (at, byte) in edits {
            let i = at.index(header.len() - 4);
            header[i] = byte;
        }
        let n = header.len();
        let crc = crc32c::crc32c(&header[..n - 4]);
        header[n - 4..].copy_from_slice(&crc.to_le_bytes());
        let _ = decode_header(&header);
    }
}

#[test]
fn lookups_at_block_edges() {
    // Batches of 2 records; each block holds two batches (4 offsets).
    let shapes: Vec<_> = (0..6).map(|i| (2, 100, 1000 + 10 * i)).collect();
    let batches = batches_from(50, &shapes);
    let block = batches[0].len() * 2;
    let obj = build(50, &batches, block);
    let idx = &obj.index;
    assert_eq!(
        idx.iter().map(|e| e.first_offset).collect::<Vec<_>>(),
        [50, 54, 58]
    );
    assert_eq!(
        idx.iter().map(|e| e.max_timestamp).collect::<Vec<_>>(),
        [1011, 1031, 1051]
    );
    assert_eq!(block_for_offset(idx, 49), None);
    assert_eq!(block_for_offset(idx, 50), Some(0));
    assert_eq!(block_for_offset(idx, 53), Some(0));
    assert_eq!(block_for_offset(idx, 54), Some(1));
    assert_eq!(block_for_offset(idx, 57), Some(1));
    assert_eq!(block_for_offset(idx, 58), Some(2));
    assert_eq!(block_for_offset(idx, 61), Some(2));
    assert_eq!(block_for_offset(&[], 50), None);

    assert_eq!(block_for_timestamp(idx, i64::MIN), Some(0));
    assert_eq!(block_for_timestamp(idx, 1011), Some(0));
    assert_eq!(block_for_timestamp(idx, 1012), Some(1));
    assert_eq!(block_for_timestamp(idx, 1031), Some(1));
    assert_eq!(block_for_timestamp(idx, 1032), Some(2));
    assert_eq!(block_for_timestamp(idx, 1051), Some(2));
    assert_eq!(block_for_timestamp(idx, 1052), None);
    assert_eq!(block_for_timestamp(&[], 0), None);
}

#[test]
fn timestamps_need_not_increase() {
    let batches = batches_from(0, &[(1, 10, 500), (1, 10, 100), (1, 10, 300)]);
    let obj = build(0, &batches, 1);
    assert_eq!(obj.index.len(), 3);
    assert_eq!(obj.meta.first_timestamp, 500);
    assert_eq!(obj.meta.max_timestamp, 500);
    assert_eq!(block_for_timestamp(&obj.index, 200), Some(0));
    assert_eq!(block_for_timestamp(&obj.index, 501), None);
}

#[test]
fn a_batch_larger_than_a_block_is_its_own_block() {
    let batches = batches_from(0, &[(1, 10, 0), (3, 5000, 0), (1, 10, 0), (1, 10, 0)]);
    let small = batches[0].len();
    let obj = build(0, &batches, 1000);
    let lens: Vec<usize> = obj.index.iter().map(|e| e.len as usize).collect();
    assert_eq!(lens, [small, batches[1].len(), 2 * small]);
    assert_eq!(
        obj.index.iter().map(|e| e.first_offset).collect::<Vec<_>>(),
        [0, 1, 4]
    );
}

#[test]
fn an_empty_segment_round_trips() {
    let obj = SegmentBuilder::new(77).finish(fields()).expect("finish");
    let (meta, index) = decode_object(&obj.to_bytes()).expect("decodes");
    assert_eq!(
        (meta.base_offset, meta.end_offset, meta.record_count),
        (77, 77, 0)
    );
    assert_eq!((meta.first_timestamp, meta.max_timestamp), (-1, -1));
    assert!(index.is_empty());
    assert_eq!(obj.trailer.batches_position, obj.trailer.index_position);
}

#[test]
fn the_builder_rejects_bad_batches_and_keeps_its_state() {
    let batches = batches_from(10, &[(2, 10, 0), (2, 10, 0), (2, 10, 0)]);
    let mut b = SegmentBuilder::new(10);
    // A batch that does not start at the base offset.
    let e = b.push(&batches[1]).unwrap_err();
    assert_eq!(
        e,
        FormatError::OffsetGap {
            region: Region::Batches,
            position: 0,
            expected: 10,
            found: 12
        }
    );
    b.push(&batches[0]).expect("first batch");
    // A bad CRC in the second batch of a chunk: nothing of it is taken.
    let mut corrupt = [batches[1].to_vec(), batches[2].to_vec()].concat();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let e = b.push(&corrupt).unwrap_err();
    assert!(
        matches!(
            e,
            FormatError::InvalidBatch {
                region: Region::Batches,
                source: BatchError::CrcMismatch { .. },
                position,
            } if position == (batches[0].len() + batches[1].len()) as u64
        ),
        "{e:?}"
    );
    assert_eq!(b.next_offset(), 12);
    assert_eq!(b.batches_len(), batches[0].len() as u64);
    // A gap.
    let e = b.push(&batches[2]).unwrap_err();
    assert!(matches!(
        e,
        FormatError::OffsetGap {
            expected: 12,
            found: 14,
            ..
        }
    ));
    // A torn batch.
    let torn = &batches[1][..batches[1].len() - 1];
    assert!(matches!(
        b.push(torn).unwrap_err(),
        FormatError::InvalidBatch {
            source: BatchError::Truncated { .. },
            ..
        }
    ));
    b.push(&batches[1]).expect("second batch");
    b.push(&batches[2]).expect("third batch");
    let obj = b.finish(fields()).expect("finish");
    assert_eq!(obj.meta.end_offset, 16);
    decode_object(&obj.to_bytes()).expect("decodes");
}

#[test]
fn headers_check_names_and_epochs() {
    let mut f = fields();
    f.topic = "t".repeat(MAX_NAME_LEN + 1);
    let e = SegmentBuilder::new(0).finish(f).unwrap_err();
    assert_eq!(
        e,
        FormatError::NameTooLong {
            field: "topic",
            len: MAX_NAME_LEN + 1
        }
    );

    let mut f = fields();
    f.epochs.reverse();
    let e = SegmentBuilder::new(0).finish(f).unwrap_err();
    assert!(matches!(
        e,
        FormatError::Inconsistent {
            region: Region::Header,
            ..
        }
    ));

    let mut f = fields();
    f.tenant = "t".repeat(MAX_NAME_LEN);
    let obj = SegmentBuilder::new(0)
        .finish(f.clone())
        .expect("longest name");
    assert_eq!(
        decode_header(&obj.parts[0]).expect("decodes").tenant,
        f.tenant
    );
}

#[test]
fn decoders_report_precisely() {
    let obj = build(0, &batches_from(0, &[(2, 10, 0)]), 100);
    let bytes = obj.to_bytes();
    let header = obj.parts[0].to_vec();

    let mut wrong = header.clone();
    wrong[0] = b'X';
    assert!(matches!(
        decode_header(&wrong),
        Err(FormatError::BadMagic {
            region: Region::Header,
            ..
        })
    ));
    // A future version, intact: unsupported. A damaged version: corrupt.
    let mut future = header.clone();
    future[8..10].copy_from_slice(&2u16.to_le_bytes());
    let n = future.len();
    let crc = crc32c::crc32c(&future[..n - 4]);
    future[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        decode_header(&future),
        Err(FormatError::UnsupportedVersion(2))
    );
    let mut damaged = header.clone();
    damaged[8] ^= 1;
    assert!(matches!(
        decode_header(&damaged),
        Err(FormatError::ChecksumMismatch {
            region: Region::Header,
            ..
        })
    ));
    assert_eq!(
        decode_header(&header[..header.len() - 1]),
        Err(FormatError::Truncated {
            region: Region::Header,
            needed: header.len() as u64,
            available: header.len() as u64 - 1
        })
    );

    let t = obj.trailer;
    let tail: [u8; TRAILER_LEN] = bytes[bytes.len() - TRAILER_LEN..].try_into().unwrap();
    assert_eq!(Trailer::decode(&tail), Ok(t));
    let mut bad = tail;
    bad[31] = b'X';
    assert!(matches!(
        Trailer::decode(&bad),
        Err(FormatError::BadMagic {
            region: Region::Trailer,
            ..
        })
    ));
    let mut bad = tail;
    bad[3] ^= 4;
    assert!(matches!(
        Trailer::decode(&bad),
        Err(FormatError::ChecksumMismatch {
            region: Region::Trailer,
            ..
        })
    ));
    assert!(t.check_object_len(bytes.len() as u64 - 1).is_err());

    let index = &bytes[t.index_range().start as usize..t.index_range().end as usize];
    assert!(matches!(
        decode_index(&index[1..], 1),
        Err(FormatError::Truncated {
            region: Region::Index,
            needed: 36,
            available: 35
        })
    ));
    assert!(matches!(
        decode_index(index, 0),
        Err(FormatError::LengthMismatch {
            region: Region::Index,
            expected: 4,
            actual: 36
        })
    ));

    let e = obj.index[0];
    let block = &obj.parts[1][..];
    verify_block(block, &e).expect("intact");
    let mut flipped = block.to_vec();
    flipped[70] ^= 1;
    assert!(matches!(
        verify_block(&flipped, &e),
        Err(FormatError::ChecksumMismatch {
            region: Region::Block {
                first_offset: 0,
                position: 0
            },
            ..
        })
    ));
    let shifted = IndexEntry {
        first_offset: 1,
        ..e
    };
    assert!(matches!(
        verify_block(block, &shifted),
        Err(FormatError::OffsetGap {
            expected: 1,
            found: 0,
            ..
        })
    ));
}
