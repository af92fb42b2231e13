//! End-to-end behaviour of the log through its public API.

use bytes::Bytes;
use strata_log::batch::{BatchBuilder, Compression, decode_records};
use strata_log::{AppendOptions, Log, LogConfig, LogError};

fn batch(values: &[&str], ts: i64) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    for (i, v) in values.iter().enumerate() {
        b.push(
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::copy_from_slice(v.as_bytes())),
            vec![],
            ts + i as i64,
        );
    }
    b.build().unwrap()
}

fn values(read: &strata_log::ReadBatches) -> Vec<(i64, String)> {
    read.batches()
        .flat_map(|b| decode_records(&b, 1 << 20).unwrap())
        .map(|r| {
            (
                r.offset,
                String::from_utf8(r.value.unwrap().to_vec()).unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn append_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let p = log
            .create_partition("default/orders/0", None)
            .await
            .unwrap();
        let q = log
            .create_partition("default/orders/1", None)
            .await
            .unwrap();
        let a = p
            .append(batch(&["a", "b"], 100).as_ref(), AppendOptions::default())
            .await
            .unwrap();
        assert_eq!((a.base_offset, a.next_offset), (0, 2));
        let b = q
            .append(batch(&["x"], 100).as_ref(), AppendOptions::default())
            .await
            .unwrap();
        assert_eq!((b.base_offset, b.next_offset), (0, 1));
        let c = p
            .append(batch(&["c"], 200).as_ref(), AppendOptions::default())
            .await
            .unwrap();
        assert_eq!((c.base_offset, c.next_offset), (2, 3));
        let read = p.read(1, 1 << 20).await.unwrap();
        assert_eq!(
            values(&read),
            vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
        );
        assert_eq!(read.next_offset, 3);
        assert!(matches!(
            p.read(4, 100).await,
            Err(LogError::OffsetOutOfRange {
                offset: 4,
                start: 0,
                end: 3
            })
        ));
        assert_eq!(p.offset_for_timestamp(101).await.unwrap(), Some(1));
        assert_eq!(p.offset_for_timestamp(150).await.unwrap(), Some(2));
        assert_eq!(p.offset_for_timestamp(201).await.unwrap(), None);
        let err = p
            .append(
                batch(&["d"], 1).as_ref(),
                AppendOptions {
                    expected_offset: Some(1),
                    ..Default::default()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            LogError::OffsetMismatch {
                expected: 1,
                actual: 3
            }
        ));
    }
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let p = log.partition("default/orders/0").unwrap();
    assert_eq!(p.offsets().end, 3);
    let read = p.read(0, 1 << 20).await.unwrap();
    assert_eq!(values(&read).len(), 3);
    let q = log.partition("default/orders/1").unwrap();
    assert_eq!(q.offsets().end, 1);
}

#[tokio::test]
async fn rolls_files_and_reopens_from_footers() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        journal_file_bytes: 4096,
        ..LogConfig::default()
    };
    let mut expected;
    {
        let log = Log::open(dir.path(), config.clone()).unwrap();
        let p = log.create_partition("t/0", None).await.unwrap();
        for i in 0..200 {
            let a = p
                .append(
                    batch(&[&format!("v{i}")], i).as_ref(),
                    AppendOptions::default(),
                )
                .await
                .unwrap();
            assert_eq!(a.base_offset, i as u64);
        }
        assert!(log.journal_files().len() > 3);
        p.truncate(150).await.unwrap();
        expected = 150;
        for i in 150..160 {
            p.append(
                batch(&[&format!("w{i}")], i).as_ref(),
                AppendOptions::default(),
            )
            .await
            .unwrap();
            expected += 1;
        }
    }
    let log = Log::open(dir.path(), config).unwrap();
    let p = log.partition("t/0").unwrap();
    assert_eq!(p.offsets().end, expected);
    let mut next = 0;
    let mut all = Vec::new();
    while next < expected {
        let r = p.read(next, 1 << 20).await.unwrap();
        all.extend(values(&r));
        next = r.next_offset;
    }
    assert_eq!(all.len() as u64, expected);
    for (i, (off, v)) in all.iter().enumerate() {
        assert_eq!(*off, i as i64);
        if i < 150 {
            assert_eq!(v, &format!("v{i}"));
        } else {
            assert_eq!(v, &format!("w{i}"));
        }
    }
}

#[tokio::test]
async fn a_partition_can_start_past_zero() {
    // The local log of a partition whose history 40..100 is in object storage.
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let p = log
            .create_partition_at("default/restored/0", None, 40, 100)
            .await
            .unwrap();
        let o = p.offsets();
        assert_eq!((o.log_start, o.local_start, o.end), (40, 100, 100));
        let a = p
            .append(batch(&["a", "b"], 1), AppendOptions::default())
            .await
            .unwrap();
        assert_eq!((a.base_offset, a.next_offset), (100, 102));
        assert!(matches!(
            p.read(99, 1 << 20).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        log.close();
    }
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let p = log.partition("default/restored/0").unwrap();
    let o = p.offsets();
    assert_eq!((o.log_start, o.local_start, o.end), (40, 100, 102));
    assert_eq!(
        values(&p.read(100, 1 << 20).await.unwrap()),
        [(100, "a".to_string()), (101, "b".to_string())]
    );
}

#[tokio::test]
async fn offload_bookkeeping_in_one_batch_survives_reopen() {
    use strata_log::OffloadOp;
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let p = log.create_partition("default/a/0", None).await.unwrap();
        let q = log.create_partition("default/a/1", None).await.unwrap();
        for part in [&p, &q] {
            for round in 0..2 {
                part.append(batch(&["x", "y"], 100).as_ref(), AppendOptions::default())
                    .await
                    .unwrap();
                if round == 0 {
                    part.seal_active_segment().await.unwrap();
                }
            }
            part.seal_active_segment().await.unwrap();
        }
        // Both sealed segments of both partitions offloaded, and the first of
        // each released, in one batch; a bad operation fails alone.
        let results = log
            .apply_offload_ops(&[
                (p.clone(), OffloadOp::Offloaded { base_offset: 0 }),
                (p.clone(), OffloadOp::Offloaded { base_offset: 2 }),
                (q.clone(), OffloadOp::Offloaded { base_offset: 0 }),
                (q.clone(), OffloadOp::Offloaded { base_offset: 99 }),
                (p.clone(), OffloadOp::ReleaseLocal { up_to: 2 }),
                (q.clone(), OffloadOp::ReleaseLocal { up_to: 2 }),
            ])
            .await
            .unwrap();
        assert_eq!(results.len(), 6);
        assert!(results[..3].iter().all(Result::is_ok), "{results:?}");
        assert!(results[3].is_err(), "no segment starts at 99");
        assert!(results[4..].iter().all(Result::is_ok), "{results:?}");
        assert_eq!(p.offsets().local_start, 2);
        assert_eq!(q.offsets().local_start, 2);
    }
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let p = log.partition("default/a/0").unwrap();
    let q = log.partition("default/a/1").unwrap();
    assert_eq!(p.offsets().local_start, 2);
    assert!(p.segments().iter().all(|s| s.offloaded || !s.sealed));
    assert_eq!(q.offsets().local_start, 2);
    assert!(
        !q.segments()[1].offloaded,
        "q's second segment was never marked"
    );
}

/// The hooks replication builds on: an epoch begun with no batch yet
/// survives a reopen and is what the next leader batch carries; a follower
/// takes no leader appends; a replicated partition's high watermark moves
/// only when told, never past the end, and drops with a truncation.
#[tokio::test]
async fn epochs_begin_empty_and_replicas_keep_a_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), LogConfig::default()).unwrap();
        let p = log.create_partition("default/r/0", None).await.unwrap();
        p.append(batch(&["a", "b"], 1).as_ref(), AppendOptions::default())
            .await
            .unwrap();
        assert_eq!(p.last_epoch(), Some(0));
        assert_eq!(p.high_watermark(), 2, "unreplicated: the end");

        p.begin_epoch(3).await.unwrap();
        assert_eq!(p.last_epoch(), Some(3));
        assert_eq!(p.end_offset_for_epoch(0), Some((0, 2)));
        assert_eq!(p.end_offset_for_epoch(3), Some((3, 2)));
        // Beginning an older or the same epoch again changes nothing.
        p.begin_epoch(2).await.unwrap();
        p.begin_epoch(3).await.unwrap();
        assert_eq!(p.last_epoch(), Some(3));

        p.set_replicated(true);
        // Nothing local is known to be on a majority: down to the local start.
        assert_eq!(
            p.high_watermark(),
            0,
            "replicated: only what is known committed"
        );
        assert_eq!(p.advance_high_watermark(2), 2);
        let c = p
            .append(batch(&["c"], 2).as_ref(), AppendOptions::default())
            .await
            .unwrap();
        assert_eq!((c.base_offset, c.next_offset), (2, 3));
        assert_eq!(c.leader_epoch, 3, "the epoch stamped on the batch");
        assert_eq!(p.epoch_at(2), Some(3));
        assert_eq!(p.high_watermark(), 2, "replicated: not moved by appends");
        assert_eq!(p.offsets().high_watermark, 2);
        p.set_replicated(true);
        assert_eq!(
            p.high_watermark(),
            2,
            "already replicated: not lowered again"
        );
        assert_eq!(p.advance_high_watermark(9), 3, "capped at the end");
        assert_eq!(p.advance_high_watermark(1), 3, "never back");
        let read = p.read_up_to(0, 1 << 20, 2).await.unwrap();
        assert_eq!(values(&read).len(), 2, "nothing at or past the bound");

        p.set_follower(true);
        let refused = p
            .append(batch(&["d"], 3).as_ref(), AppendOptions::default())
            .await;
        assert!(
            matches!(refused, Err(LogError::NotLeader(_))),
            "{refused:?}"
        );
        p.truncate(2).await.unwrap();
        assert_eq!(p.high_watermark(), 2, "a truncation lowers it");
        // A cut at 2 drops the epochs that start at or after it (3 did); a
        // follower begins its leader's epoch again once it has caught up.
        assert_eq!(p.last_epoch(), Some(0));
        p.begin_epoch(4).await.unwrap();
        log.close();
    }
    let log = Log::open(dir.path(), LogConfig::default()).unwrap();
    let p = log.partition("default/r/0").unwrap();
    assert_eq!(p.last_epoch(), Some(4), "an empty epoch survives a reopen");
    assert_eq!(p.offsets().end, 2);
    assert!(
        !p.is_follower(),
        "roles are not persisted: the broker sets them"
    );
}
