//! The broker end to end over a temporary data directory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_api::{ApiError, ErrorCode};
use strata_broker::{
    Acks, Broker, BrokerConfig, GroupOffset, ProduceRecord, ReadRequest, ReadResult, ReadStart,
    TopicConfigPatch, partition_for_key,
};

fn config(dir: &std::path::Path) -> BrokerConfig {
    let mut config = BrokerConfig::new(dir);
    config.retention_interval = Duration::from_millis(50);
    config.max_wait = Duration::from_secs(5);
    config
}

async fn open(dir: &std::path::Path) -> Arc<Broker> {
    Broker::open(config(dir)).await.unwrap()
}

fn rec(key: Option<&str>, value: &str) -> ProduceRecord {
    ProduceRecord {
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        ..ProduceRecord::default()
    }
}

fn from(start: ReadStart, max_records: Option<u32>) -> ReadRequest {
    ReadRequest {
        start,
        max_records,
        max_bytes: None,
        wait: Duration::ZERO,
    }
}

fn code<T: std::fmt::Debug>(r: Result<T, ApiError>) -> ErrorCode {
    r.unwrap_err().code
}

fn offsets(r: &ReadResult) -> Vec<u64> {
    r.records.iter().map(|r| r.offset).collect()
}

fn values(r: &ReadResult) -> Vec<String> {
    r.records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// End offsets of every partition of a topic: what "no data changed" compares.
async fn ends(b: &Broker, tenant: &str, topic: &str) -> Vec<(u64, u64)> {
    let d = b.describe_topic(tenant, topic).await.unwrap();
    d.partitions
        .iter()
        .map(|p| (p.start_offset, p.end_offset))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_and_topic_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    assert_eq!(b.list_tenants().await.unwrap(), vec!["default"]);
    b.create_tenant("acme").await.unwrap();
    b.create_tenant("acme").await.unwrap();
    assert_eq!(b.list_tenants().await.unwrap(), vec!["acme", "default"]);

    let patch = TopicConfigPatch {
        retention_ms: Some(60_000),
        ..TopicConfigPatch::default()
    };
    let orders = b.create_topic("acme", "orders", 3, patch).await.unwrap();
    assert_eq!((orders.partitions, orders.config.retention_ms), (3, 60_000));
    assert_eq!(
        orders.config.segment_bytes,
        b.config().default_topic.segment_bytes
    );
    b.create_topic("acme", "audit", 1, TopicConfigPatch::default())
        .await
        .unwrap();
    assert_eq!(
        code(
            b.create_topic("acme", "orders", 3, TopicConfigPatch::default())
                .await
        ),
        ErrorCode::TopicAlreadyExists
    );
    for bad in [0, 10_001] {
        assert_eq!(
            code(
                b.create_topic("acme", "x", bad, TopicConfigPatch::default())
                    .await
            ),
            ErrorCode::InvalidPartitions
        );
    }
    let bad_config = TopicConfigPatch {
        segment_bytes: Some(100),
        ..TopicConfigPatch::default()
    };
    let e = b
        .create_topic("acme", "x", 1, bad_config)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidConfig);
    assert!(e.message.contains("segment_bytes"), "{}", e.message);
    // One broker: one copy per partition, and no more can be asked for.
    assert_eq!(orders.replication_factor, 1);
    for bad in [0, 2, 8] {
        let e = b
            .create_topic_with("acme", "x", 1, Some(bad), TopicConfigPatch::default())
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidReplicationFactor, "{bad}: {e:?}");
    }
    let two_in_sync = TopicConfigPatch {
        min_insync_replicas: Some(2),
        ..TopicConfigPatch::default()
    };
    let e = b
        .create_topic_with("acme", "x", 1, Some(1), two_in_sync)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidConfig);
    assert!(
        e.message.contains("min_insync_replicas is 2"),
        "{}",
        e.message
    );
    let e = b
        .alter_topic("acme", "orders", two_in_sync)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidConfig, "{e:?}");
    let names: Vec<String> = b
        .list_topics("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["audit", "orders"]);
    assert!(b.list_topics("default").await.unwrap().is_empty());

    let d = b.describe_topic("acme", "orders").await.unwrap();
    assert_eq!(d.topic, orders);
    assert_eq!(d.partitions.len(), 3);
    assert!(
        d.partitions
            .iter()
            .all(|p| p.start_offset == 0 && p.end_offset == 0)
    );

    let altered = b
        .alter_topic(
            "acme",
            "orders",
            TopicConfigPatch {
                retention_bytes: Some(1 << 20),
                segment_bytes: Some(4096),
                ..TopicConfigPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(altered.config.retention_bytes, 1 << 20);
    assert_eq!(altered.config.segment_bytes, 4096);
    assert_eq!(altered.config.retention_ms, 60_000);
    assert_eq!(
        b.describe_topic("acme", "orders").await.unwrap().topic,
        altered
    );
    let bad_alter = TopicConfigPatch {
        max_message_bytes: Some(0),
        ..TopicConfigPatch::default()
    };
    assert_eq!(
        code(b.alter_topic("acme", "orders", bad_alter).await),
        ErrorCode::InvalidConfig
    );
    assert_eq!(
        b.describe_topic("acme", "orders").await.unwrap().topic,
        altered
    );

    b.produce("acme", "orders", vec![rec(Some("k"), "v")], Acks::Fsync)
        .await
        .unwrap();
    b.delete_topic("acme", "orders").await.unwrap();
    assert_eq!(
        code(b.describe_topic("acme", "orders").await),
        ErrorCode::TopicNotFound
    );
    assert_eq!(
        code(b.delete_topic("acme", "orders").await),
        ErrorCode::TopicNotFound
    );
    assert_eq!(
        code(
            b.produce("acme", "orders", vec![rec(None, "v")], Acks::Fsync)
                .await
        ),
        ErrorCode::TopicNotFound
    );

    // A new topic of the same name starts empty, with a new id.
    let again = b
        .create_topic("acme", "orders", 2, TopicConfigPatch::default())
        .await
        .unwrap();
    assert_ne!(again.id, orders.id);
    assert_eq!(ends(&b, "acme", "orders").await, vec![(0, 0), (0, 0)]);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_places_keyed_and_unkeyed_records() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("default", "t", 4, TopicConfigPatch::default())
        .await
        .unwrap();

    let keys: Vec<String> = (0..20).map(|i| format!("key-{i}")).collect();
    let records: Vec<ProduceRecord> = keys.iter().map(|k| rec(Some(k), k)).collect();
    let placed = b
        .produce("default", "t", records, Acks::Fsync)
        .await
        .unwrap();
    assert_eq!(placed.len(), 20);
    let mut next = [0u64; 4];
    for (key, (partition, offset)) in keys.iter().zip(&placed) {
        assert_eq!(*partition, partition_for_key(key.as_bytes(), 4), "{key}");
        // Request order is offset order within a partition.
        assert_eq!(*offset, next[*partition as usize]);
        next[*partition as usize] += 1;
    }
    // The same key goes to the same partition next time.
    let again = b
        .produce("default", "t", vec![rec(Some("key-3"), "x")], Acks::Write)
        .await
        .unwrap();
    assert_eq!(again[0].0, placed[3].0);

    // Unkeyed records of one request share one partition; the next request rotates.
    let unkeyed: Vec<ProduceRecord> = (0..5).map(|i| rec(None, &i.to_string())).collect();
    let first = b
        .produce("default", "t", unkeyed.clone(), Acks::Fsync)
        .await
        .unwrap();
    assert!(first.iter().all(|(p, _)| *p == first[0].0));
    assert!(first.windows(2).all(|w| w[1].1 == w[0].1 + 1));
    let second = b
        .produce("default", "t", unkeyed, Acks::Fsync)
        .await
        .unwrap();
    assert_ne!(second[0].0, first[0].0);

    // An explicit partition wins over the key.
    let explicit = ProduceRecord {
        partition: Some(2),
        ..rec(Some("key-0"), "explicit")
    };
    assert_eq!(
        b.produce("default", "t", vec![explicit], Acks::Fsync)
            .await
            .unwrap()[0]
            .0,
        2
    );

    // A bad partition fails the whole request and writes nothing.
    let before = ends(&b, "default", "t").await;
    let bad = ProduceRecord {
        partition: Some(4),
        ..rec(None, "x")
    };
    let e = b
        .produce("default", "t", vec![rec(Some("a"), "ok"), bad], Acks::Fsync)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PartitionNotFound);
    assert_eq!(ends(&b, "default", "t").await, before);
    assert_eq!(
        b.produce("default", "t", vec![], Acks::Fsync)
            .await
            .unwrap(),
        vec![]
    );

    // What was produced reads back, headers included.
    let with_headers = ProduceRecord {
        headers: vec![("trace".into(), Bytes::from_static(b"abc"))],
        timestamp_ms: Some(1234),
        partition: Some(1),
        ..rec(Some("h"), "with headers")
    };
    let (_, offset) = b
        .produce("default", "t", vec![with_headers], Acks::Fsync)
        .await
        .unwrap()[0];
    let r = b
        .read("default", "t", 1, from(ReadStart::Offset(offset), Some(1)))
        .await
        .unwrap();
    assert_eq!(
        r.records[0].headers,
        vec![("trace".to_string(), Bytes::from_static(b"abc"))]
    );
    assert_eq!(r.records[0].timestamp_ms, 1234);
    assert_eq!(r.records[0].key.as_deref(), Some(&b"h"[..]));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_append() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("default", "log", 2, TopicConfigPatch::default())
        .await
        .unwrap();
    let two = vec![rec(None, "a"), rec(None, "b")];
    let r = b
        .append("default", "log", 1, two.clone(), Some(0), Acks::Fsync)
        .await
        .unwrap();
    assert_eq!((r.partition, r.base_offset, r.next_offset), (1, 0, 2));

    let e = b
        .append("default", "log", 1, two.clone(), Some(0), Acks::Fsync)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::OffsetMismatch);
    assert_eq!(e.code.http_status(), 412);
    assert_eq!(
        e.details,
        Some(serde_json::json!({ "expected_offset": 0, "end_offset": 2 }))
    );
    assert_eq!(b.check_tail("default", "log", 1).await.unwrap(), (0, 2));

    let r = b
        .append("default", "log", 1, two.clone(), Some(2), Acks::Write)
        .await
        .unwrap();
    assert_eq!((r.base_offset, r.next_offset), (2, 4));
    let r = b
        .append("default", "log", 1, two.clone(), None, Acks::Fsync)
        .await
        .unwrap();
    assert_eq!((r.base_offset, r.next_offset), (4, 6));
    let read = b
        .read("default", "log", 1, from(ReadStart::Offset(0), None))
        .await
        .unwrap();
    assert_eq!(values(&read), vec!["a", "b", "a", "b", "a", "b"]);

    assert_eq!(
        code(
            b.append("default", "log", 2, two.clone(), None, Acks::Fsync)
                .await
        ),
        ErrorCode::PartitionNotFound
    );
    assert_eq!(
        code(
            b.append("default", "log", 0, vec![], None, Acks::Fsync)
                .await
        ),
        ErrorCode::BadRequest
    );
    assert_eq!(ends(&b, "default", "log").await, vec![(0, 0), (0, 6)]);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_by_offset_time_and_tail() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("default", "r", 1, TopicConfigPatch::default())
        .await
        .unwrap();
    // Ten records in batches of 3, 3 and 4, timestamps 1000..1009.
    let record = |i: i64| ProduceRecord {
        timestamp_ms: Some(1000 + i),
        ..rec(None, &format!("v{i}"))
    };
    for range in [0..3, 3..6, 6..10] {
        let batch: Vec<ProduceRecord> = range.map(record).collect();
        b.append("default", "r", 0, batch, None, Acks::Fsync)
            .await
            .unwrap();
    }

    let r = b
        .read("default", "r", 0, from(ReadStart::Offset(0), Some(4)))
        .await
        .unwrap();
    assert_eq!(offsets(&r), vec![0, 1, 2, 3]);
    assert_eq!(
        (r.next_offset, r.high_watermark, r.start_offset),
        (4, 10, 0)
    );
    // From the middle of a batch: earlier records of the batch are skipped.
    let r = b
        .read("default", "r", 0, from(ReadStart::Offset(4), None))
        .await
        .unwrap();
    assert_eq!(offsets(&r), vec![4, 5, 6, 7, 8, 9]);
    assert_eq!(r.next_offset, 10);
    assert_eq!(r.records[0].timestamp_ms, 1004);

    let r = b
        .read("default", "r", 0, from(ReadStart::Timestamp(1005), Some(2)))
        .await
        .unwrap();
    assert_eq!(offsets(&r), vec![5, 6]);
    assert_eq!(r.next_offset, 7);
    let r = b
        .read("default", "r", 0, from(ReadStart::Timestamp(0), Some(1)))
        .await
        .unwrap();
    assert_eq!(offsets(&r), vec![0]);
    let r = b
        .read("default", "r", 0, from(ReadStart::Timestamp(5000), None))
        .await
        .unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.next_offset, 10);

    let r = b
        .read("default", "r", 0, from(ReadStart::Tail(3), None))
        .await
        .unwrap();
    assert_eq!(offsets(&r), vec![7, 8, 9]);
    assert_eq!(values(&r), vec!["v7", "v8", "v9"]);
    let r = b
        .read("default", "r", 0, from(ReadStart::Tail(100), Some(2)))
        .await
        .unwrap();
    assert_eq!(offsets(&r), vec![0, 1]);

    // At the end: nothing, and the next offset stays there.
    let r = b
        .read("default", "r", 0, from(ReadStart::Offset(10), None))
        .await
        .unwrap();
    assert!(r.records.is_empty());
    assert_eq!((r.next_offset, r.high_watermark), (10, 10));

    // Small max_bytes still returns at least one batch.
    let small = ReadRequest {
        max_bytes: Some(1),
        ..from(ReadStart::Offset(0), None)
    };
    let r = b.read("default", "r", 0, small).await.unwrap();
    assert_eq!(offsets(&r), vec![0, 1, 2]);
    assert_eq!(r.next_offset, 3);

    let e = b
        .read("default", "r", 0, from(ReadStart::Offset(11), None))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::OffsetOutOfRange);
    let details = e.details.unwrap();
    assert_eq!(
        (
            details["start_offset"].as_u64(),
            details["end_offset"].as_u64()
        ),
        (Some(0), Some(10))
    );
    assert_eq!(
        code(
            b.read("default", "r", 1, from(ReadStart::Offset(0), None))
                .await
        ),
        ErrorCode::PartitionNotFound
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("default", "poll", 1, TopicConfigPatch::default())
        .await
        .unwrap();

    // Nothing arrives: the read returns empty after about the wait.
    let started = Instant::now();
    let waiting = ReadRequest {
        wait: Duration::from_millis(200),
        ..from(ReadStart::Offset(0), None)
    };
    let r = b.read("default", "poll", 0, waiting).await.unwrap();
    assert!(r.records.is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // A record arrives while the reader waits: it wakes well before the wait ends.
    let reader = {
        let b = b.clone();
        tokio::spawn(async move {
            let request = ReadRequest {
                wait: Duration::from_secs(30),
                ..from(ReadStart::Offset(0), None)
            };
            let started = Instant::now();
            let r = b.read("default", "poll", 0, request).await.unwrap();
            (r, started.elapsed())
        })
    };
    let mut end = b.watch_end("default", "poll", 0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.produce("default", "poll", vec![rec(None, "hello")], Acks::Fsync)
        .await
        .unwrap();
    let (r, waited) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(values(&r), vec!["hello"]);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    tokio::time::timeout(Duration::from_secs(5), end.wait_for(|&e| e == 1))
        .await
        .unwrap()
        .unwrap();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("default", "t", 2, TopicConfigPatch::default())
        .await
        .unwrap();
    assert_eq!(
        code(b.fetch_offsets("default", "g").await),
        ErrorCode::GroupNotFound
    );
    let offsets = vec![
        GroupOffset {
            topic: "t".into(),
            partition: 0,
            offset: 5,
            metadata: "m".into(),
        },
        GroupOffset {
            topic: "t".into(),
            partition: 1,
            offset: 7,
            metadata: String::new(),
        },
    ];
    b.commit_offsets("default", "g", offsets.clone())
        .await
        .unwrap();
    assert_eq!(b.fetch_offsets("default", "g").await.unwrap(), offsets);
    let update = GroupOffset {
        topic: "t".into(),
        partition: 0,
        offset: 9,
        metadata: "m2".into(),
    };
    b.commit_offsets("default", "g", vec![update.clone()])
        .await
        .unwrap();
    assert_eq!(
        b.fetch_offsets("default", "g").await.unwrap(),
        vec![update.clone(), offsets[1].clone()]
    );

    let unknown_topic = GroupOffset {
        topic: "nope".into(),
        ..update.clone()
    };
    assert_eq!(
        code(b.commit_offsets("default", "g", vec![unknown_topic]).await),
        ErrorCode::TopicNotFound
    );
    let bad_partition = GroupOffset {
        partition: 2,
        ..update.clone()
    };
    assert_eq!(
        code(b.commit_offsets("default", "g", vec![bad_partition]).await),
        ErrorCode::PartitionNotFound
    );
    let bad_topic = GroupOffset {
        topic: "a b".into(),
        ..update.clone()
    };
    assert_eq!(
        code(b.commit_offsets("default", "g", vec![bad_topic]).await),
        ErrorCode::InvalidName
    );
    assert_eq!(
        code(b.commit_offsets("default", "a/b", vec![]).await),
        ErrorCode::InvalidName
    );
    assert_eq!(
        code(b.fetch_offsets("default", "").await),
        ErrorCode::InvalidName
    );
    assert_eq!(
        code(b.fetch_offsets("nobody", "g").await),
        ErrorCode::TenantNotFound
    );
    assert_eq!(
        b.fetch_offsets("default", "g").await.unwrap(),
        vec![update, offsets[1].clone()]
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_tenant("acme").await.unwrap();
    let topic = b
        .create_topic("acme", "events", 2, TopicConfigPatch::default())
        .await
        .unwrap();
    b.create_topic("acme", "gone", 1, TopicConfigPatch::default())
        .await
        .unwrap();
    b.delete_topic("acme", "gone").await.unwrap();
    let records: Vec<ProduceRecord> = (0..6)
        .map(|i| rec(Some(&format!("k{i}")), &format!("v{i}")))
        .collect();
    b.produce("acme", "events", records, Acks::Fsync)
        .await
        .unwrap();
    let committed = vec![GroupOffset {
        topic: "events".into(),
        partition: 1,
        offset: 2,
        metadata: "meta".into(),
    }];
    b.commit_offsets("acme", "readers", committed.clone())
        .await
        .unwrap();
    let before = ends(&b, "acme", "events").await;
    let mut before_values = Vec::new();
    for p in 0..2 {
        before_values.push(values(
            &b.read("acme", "events", p, from(ReadStart::Offset(0), None))
                .await
                .unwrap(),
        ));
    }
    b.shutdown().await;
    // After shutdown the broker refuses work instead of hanging.
    assert_eq!(
        code(
            b.produce("acme", "events", vec![rec(None, "late")], Acks::Fsync)
                .await
        ),
        ErrorCode::Unavailable
    );
    drop(b);

    let b = open(dir.path()).await;
    assert_eq!(b.list_tenants().await.unwrap(), vec!["acme", "default"]);
    let topics = b.list_topics("acme").await.unwrap();
    assert_eq!(topics, vec![topic]);
    assert_eq!(ends(&b, "acme", "events").await, before);
    for p in 0..2 {
        let r = b
            .read("acme", "events", p, from(ReadStart::Offset(0), None))
            .await
            .unwrap();
        assert_eq!(values(&r), before_values[p as usize]);
    }
    assert_eq!(b.fetch_offsets("acme", "readers").await.unwrap(), committed);
    // Appends continue where the partition ended.
    let (p, offset) = b
        .produce("acme", "events", vec![rec(Some("k0"), "more")], Acks::Fsync)
        .await
        .unwrap()[0];
    assert_eq!(offset, before[p as usize].1);
    b.shutdown().await;
}

/// Polls a partition's start offset until it passes `min` or ten seconds pass.
async fn wait_for_start(b: &Broker, topic: &str, min: u64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (start, end) = b.check_tail("default", topic, 0).await.unwrap();
        if start > min || Instant::now() > deadline {
            return (start, end);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_advances_the_start_offset() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let by_size = TopicConfigPatch {
        segment_bytes: Some(1024),
        retention_bytes: Some(2048),
        ..TopicConfigPatch::default()
    };
    let by_time = TopicConfigPatch {
        segment_bytes: Some(1024),
        retention_ms: Some(1),
        ..TopicConfigPatch::default()
    };
    b.create_topic("default", "sized", 1, by_size)
        .await
        .unwrap();
    b.create_topic("default", "timed", 1, by_time)
        .await
        .unwrap();
    let value = "x".repeat(300);
    for _ in 0..30 {
        for topic in ["sized", "timed"] {
            b.produce("default", topic, vec![rec(None, &value)], Acks::Write)
                .await
                .unwrap();
        }
    }

    let (start, end) = wait_for_start(&b, "sized", 0).await;
    assert!(start > 0, "size retention did not run: start {start}");
    assert_eq!(end, 30);
    // Everything at and after the start is still readable; below it is gone.
    let r = b
        .read("default", "sized", 0, from(ReadStart::Offset(start), None))
        .await
        .unwrap();
    assert_eq!(r.records.first().map(|r| r.offset), Some(start));
    assert_eq!(r.start_offset, start);
    let e = b
        .read("default", "sized", 0, from(ReadStart::Offset(0), None))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::OffsetOutOfRange);
    assert_eq!(e.details.unwrap()["start_offset"].as_u64(), Some(start));
    // Size retention keeps at least retention_bytes: well over 2048 bytes of batches remain.
    assert!(end - start >= 6, "kept only {} records", end - start);

    // Time retention deletes every sealed segment, never the active one.
    let (start, end) = wait_for_start(&b, "timed", 0).await;
    assert!(
        start > 0 && start < end,
        "time retention: start {start}, end {end}"
    );
    let r = b
        .read("default", "timed", 0, from(ReadStart::Tail(100), None))
        .await
        .unwrap();
    assert_eq!(r.records.first().map(|r| r.offset), Some(start));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_fail_with_their_code_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let small = TopicConfigPatch {
        max_message_bytes: Some(100),
        ..TopicConfigPatch::default()
    };
    b.create_topic("default", "t", 2, small).await.unwrap();
    b.produce("default", "t", vec![rec(Some("k"), "v")], Acks::Fsync)
        .await
        .unwrap();
    let before = ends(&b, "default", "t").await;

    // Invalid names, even of tenants that do not exist.
    assert_eq!(code(b.create_tenant("Bad!").await), ErrorCode::InvalidName);
    assert_eq!(code(b.list_topics("Nope").await), ErrorCode::InvalidName);
    assert_eq!(
        code(
            b.create_topic("default", "a/b", 1, TopicConfigPatch::default())
                .await
        ),
        ErrorCode::InvalidName
    );
    assert_eq!(
        code(
            b.create_topic("UPPER", "t", 1, TopicConfigPatch::default())
                .await
        ),
        ErrorCode::InvalidName
    );
    assert_eq!(
        code(
            b.produce("missing_", "t", vec![rec(None, "v")], Acks::Fsync)
                .await
        ),
        ErrorCode::InvalidName
    );
    assert_eq!(
        code(
            b.read("default", "..", 0, from(ReadStart::Offset(0), None))
                .await
        ),
        ErrorCode::InvalidName
    );
    assert_eq!(
        code(b.check_tail("default", "", 0).await),
        ErrorCode::InvalidName
    );

    // Unknown things.
    assert_eq!(
        code(b.list_topics("nobody").await),
        ErrorCode::TenantNotFound
    );
    assert_eq!(
        code(
            b.create_topic("nobody", "t", 1, TopicConfigPatch::default())
                .await
        ),
        ErrorCode::TenantNotFound
    );
    assert_eq!(
        code(
            b.produce("nobody", "t", vec![rec(None, "v")], Acks::Fsync)
                .await
        ),
        ErrorCode::TenantNotFound
    );
    assert_eq!(
        code(
            b.produce("default", "nope", vec![rec(None, "v")], Acks::Fsync)
                .await
        ),
        ErrorCode::TopicNotFound
    );
    assert_eq!(
        code(b.check_tail("default", "t", 2).await),
        ErrorCode::PartitionNotFound
    );
    assert_eq!(
        code(b.watch_end("default", "t", 7).await),
        ErrorCode::PartitionNotFound
    );
    assert_eq!(
        code(b.describe_topic("default", "nope").await),
        ErrorCode::TopicNotFound
    );
    let e = b
        .read("default", "t", 9, from(ReadStart::Offset(0), None))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.code.http_status()),
        (ErrorCode::PartitionNotFound, 404)
    );

    // Too large: one record over the topic's limit, or the request over the broker's.
    let big = rec(Some("k"), &"x".repeat(100));
    let e = b
        .produce(
            "default",
            "t",
            vec![rec(None, "ok"), big.clone()],
            Acks::Fsync,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.code.http_status()),
        (ErrorCode::RecordTooLarge, 413)
    );
    assert_eq!(e.details.unwrap()["index"], 1);
    assert_eq!(
        code(
            b.append("default", "t", 0, vec![big], None, Acks::Fsync)
                .await
        ),
        ErrorCode::RecordTooLarge
    );
    let header_heavy = ProduceRecord {
        headers: vec![("h".into(), Bytes::from(vec![0u8; 98]))],
        ..rec(Some("k"), "v")
    };
    assert_eq!(
        code(
            b.produce("default", "t", vec![header_heavy], Acks::Fsync)
                .await
        ),
        ErrorCode::RecordTooLarge
    );

    assert_eq!(ends(&b, "default", "t").await, before);
    b.shutdown().await;
    drop(b);

    // The request limit is the broker's: reopen with a tight one.
    let mut tight = config(dir.path());
    tight.max_request_bytes = 150;
    tight.default_topic.max_message_bytes = 100;
    let b = Broker::open(tight).await.unwrap();
    let many: Vec<ProduceRecord> = (0..3).map(|_| rec(Some("k"), &"y".repeat(60))).collect();
    assert_eq!(
        code(b.produce("default", "t", many, Acks::Fsync).await),
        ErrorCode::RequestTooLarge
    );
    let too_big_limit = TopicConfigPatch {
        max_message_bytes: Some(151),
        ..TopicConfigPatch::default()
    };
    assert_eq!(
        code(b.create_topic("default", "u", 1, too_big_limit).await),
        ErrorCode::InvalidConfig
    );
    assert_eq!(ends(&b, "default", "t").await, before);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_reconciles_the_log_with_the_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    let keep = b
        .create_topic("default", "keep", 1, TopicConfigPatch::default())
        .await
        .unwrap();
    let dropped = b
        .create_topic("default", "dropped", 2, TopicConfigPatch::default())
        .await
        .unwrap();
    b.shutdown().await;
    drop(b);

    // As a crash between the metadata and the log change would leave it: one
    // topic gone from the metadata only, one added to the metadata only.
    let path = dir.path().join("metadata.json");
    let mut meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let topics = meta["topics"]["default"].as_object_mut().unwrap();
    topics.remove("dropped");
    let mut fresh = serde_json::to_value(&keep).unwrap();
    fresh["name"] = "fresh".into();
    fresh["id"] = 42.into();
    fresh["partitions"] = 2.into();
    fresh["config"]["segment_bytes"] = 4096.into();
    topics.insert("fresh".into(), fresh);
    std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();

    let b = open(dir.path()).await;
    assert_eq!(ends(&b, "default", "fresh").await, vec![(0, 0), (0, 0)]);
    b.produce("default", "fresh", vec![rec(Some("k"), "v")], Acks::Fsync)
        .await
        .unwrap();
    assert_eq!(
        code(b.describe_topic("default", "dropped").await),
        ErrorCode::TopicNotFound
    );
    b.shutdown().await;
    drop(b);

    let log =
        strata_log::Log::open(dir.path().join("log"), strata_log::LogConfig::default()).unwrap();
    let keys = log.partition_keys();
    assert!(
        keys.contains(&format!("default/keep/{}/0", keep.id)),
        "{keys:?}"
    );
    assert!(keys.contains(&"default/fresh/42/1".to_string()), "{keys:?}");
    assert!(
        !keys
            .iter()
            .any(|k| k.contains(&format!("/{}/", dropped.id))),
        "{keys:?}"
    );
    assert_eq!(
        log.partition("default/fresh/42/0")
            .unwrap()
            .segment_config()
            .segment_bytes,
        4096
    );
    log.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_metadata_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("metadata.json"), b"not json").unwrap();
    let e = Broker::open(config(dir.path())).await.err().unwrap();
    assert_eq!(e.code, ErrorCode::Internal);
    assert!(
        e.message.contains("metadata.json") && e.message.contains("corrupt"),
        "{}",
        e.message
    );
}
