//! The produce path over a real socket: idempotent producers (duplicates,
//! gaps, fencing), errors that change nothing, acks=0, compressed batches
//! fetched back byte for byte.

mod common;

use bytes::Bytes;
use common::{call, start};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_log::batch::{BatchBuilder, Compression};
use tokio::net::TcpStream;

const V: i16 = 9;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None).producer(producer_id, epoch, sequence);
    for v in values {
        b.push(
            None,
            Some(Bytes::from(v.to_string())),
            vec![],
            1_700_000_000_000,
        );
    }
    b.build().unwrap()
}

/// `(error code, base offset)` of a one-partition produce.
async fn produce(stream: &mut TcpStream, topic: &str, acks: i16, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let ResponseKind::Produce(r) =
        call(stream, ApiKey::Produce, V, RequestKind::Produce(request)).await
    else {
        panic!("not a produce answer")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn create(stream: &mut TcpStream, topic: &str) {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic))),
        ]))
        .with_allow_auto_topic_creation(true);
    call(stream, ApiKey::Metadata, 12, RequestKind::Metadata(request)).await;
}

async fn init_producer(stream: &mut TcpStream) -> (i64, i16) {
    let ResponseKind::InitProducerId(r) = call(
        stream,
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        ),
    )
    .await
    else {
        panic!("not an InitProducerId answer")
    };
    assert_eq!(r.error_code, 0);
    assert!(r.producer_id.0 >= 0);
    (r.producer_id.0, r.producer_epoch)
}

/// Fetches partition 0 from offset 0: the raw record set.
async fn fetch_all(stream: &mut TcpStream, topic: &str) -> (i16, Bytes) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let ResponseKind::Fetch(r) = call(stream, ApiKey::Fetch, 12, RequestKind::Fetch(request)).await
    else {
        panic!("not a fetch answer")
    };
    let p = &r.responses[0].partitions[0];
    (p.error_code, p.records.clone().unwrap_or_default())
}

fn values(records: &Bytes) -> Vec<String> {
    let mut out = Vec::new();
    for item in strata_log::batch::batches(records) {
        let (_, range) = item.unwrap();
        for r in strata_log::batch::decode_records(&records[range], 1 << 24).unwrap() {
            out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
        }
    }
    out
}

#[tokio::test]
async fn idempotent_producer_retries_are_deduplicated_and_gaps_refused() {
    let server = start().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    create(&mut s, "idem").await;
    let (pid, epoch) = init_producer(&mut s).await;

    let first = idempotent_batch(pid, epoch, 0, &["a", "b"]);
    assert_eq!(produce(&mut s, "idem", -1, first.clone()).await, (0, 0));
    let second = idempotent_batch(pid, epoch, 2, &["c"]);
    assert_eq!(produce(&mut s, "idem", -1, second.clone()).await, (0, 2));
    // Retries of both: acknowledged with their first offsets, nothing written.
    assert_eq!(produce(&mut s, "idem", -1, first).await, (0, 0));
    assert_eq!(produce(&mut s, "idem", -1, second).await, (0, 2));
    // A gap (sequence 5 after 2): OUT_OF_ORDER_SEQUENCE_NUMBER, nothing written.
    let gap = idempotent_batch(pid, epoch, 5, &["x"]);
    assert_eq!(produce(&mut s, "idem", -1, gap).await.0, 45);
    // The next in sequence goes on.
    assert_eq!(
        produce(&mut s, "idem", -1, idempotent_batch(pid, epoch, 3, &["d"])).await,
        (0, 3)
    );
    // An older epoch is fenced once a newer one has written.
    assert_eq!(
        produce(
            &mut s,
            "idem",
            -1,
            idempotent_batch(pid, epoch + 1, 0, &["e"])
        )
        .await,
        (0, 4)
    );
    assert_eq!(
        produce(&mut s, "idem", -1, idempotent_batch(pid, epoch, 4, &["y"]))
            .await
            .0,
        47
    );
    let (error, records) = fetch_all(&mut s, "idem").await;
    assert_eq!(error, 0);
    assert_eq!(values(&records), ["a", "b", "c", "d", "e"]);
}

/// A partition that stops taking writes (a leader pausing for a handoff)
/// refuses every batch as not leader, before the sequence check: a batch
/// after an earlier refused one is not a gap to report (which would make
/// the client bump its epoch), and the retries in order go on afterwards.
#[tokio::test]
async fn a_paused_partition_refuses_as_not_leader_before_checking_sequences() {
    let server = start().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    create(&mut s, "paused").await;
    let (pid, epoch) = init_producer(&mut s).await;
    let batch = |seq: i32, v: &str| idempotent_batch(pid, epoch, seq, &[v]);
    assert_eq!(produce(&mut s, "paused", -1, batch(0, "a")).await, (0, 0));

    let topic = server.broker.topic_meta("default", "paused").await.unwrap();
    let partition = server.broker.log_partition(&topic, 0).unwrap();
    partition.set_follower(true);
    assert_eq!(produce(&mut s, "paused", -1, batch(1, "b")).await.0, 6);
    assert_eq!(produce(&mut s, "paused", -1, batch(2, "c")).await.0, 6);
    partition.set_follower(false);

    assert_eq!(produce(&mut s, "paused", -1, batch(1, "b")).await, (0, 1));
    assert_eq!(produce(&mut s, "paused", -1, batch(2, "c")).await, (0, 2));
    let (error, records) = fetch_all(&mut s, "paused").await;
    assert_eq!(error, 0);
    assert_eq!(values(&records), ["a", "b", "c"]);
}

#[tokio::test]
async fn bad_produces_get_precise_errors_and_change_nothing() {
    let server = start().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    create(&mut s, "errors").await;
    let good = common::batch("ok");
    // Corrupt CRC.
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce(&mut s, "errors", -1, Bytes::from(corrupt)).await.0,
        2
    );
    // Garbage and empty record sets.
    assert_eq!(
        produce(&mut s, "errors", -1, Bytes::from_static(b"garbage"))
            .await
            .0,
        2
    );
    assert_eq!(produce(&mut s, "errors", -1, Bytes::new()).await.0, 87);
    // Invalid acks, unknown topic, unknown partition.
    assert_eq!(produce(&mut s, "errors", 2, good.clone()).await.0, 21);
    assert_eq!(
        produce(&mut s, "no-such-topic", -1, good.clone()).await.0,
        3
    );
    // A transactional batch.
    let txn = BatchBuilder::new(Compression::None)
        .producer(1, 0, 0)
        .transactional(true);
    let mut txn = txn;
    txn.push(None, Some(Bytes::from_static(b"t")), vec![], 0);
    assert_eq!(
        produce(&mut s, "errors", -1, txn.build().unwrap()).await.0,
        87
    );
    // Nothing was written; a good batch still lands at offset 0.
    let (_, records) = fetch_all(&mut s, "errors").await;
    assert!(records.is_empty());
    assert_eq!(produce(&mut s, "errors", -1, good).await, (0, 0));
}

#[tokio::test]
async fn compressed_batches_are_fetched_back_as_stored() {
    let server = start().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    create(&mut s, "codecs").await;
    let mut sent = Vec::new();
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
        Compression::None,
    ] {
        let mut b = BatchBuilder::new(codec);
        for i in 0..20 {
            b.push(
                None,
                Some(Bytes::from(format!("{} record {i}", codec.name()))),
                vec![],
                1,
            );
        }
        let batch = b.build().unwrap();
        let (error, _) = produce(&mut s, "codecs", 1, batch.clone()).await;
        assert_eq!(error, 0, "{}", codec.name());
        sent.push(batch);
    }
    let (_, fetched) = fetch_all(&mut s, "codecs").await;
    // Byte for byte but for the base offset (bytes 0..8) and the leader
    // epoch (12..16), which the log assigns; the CRC covers neither.
    let mut at = 0;
    for (i, batch) in sent.iter().enumerate() {
        let stored = &fetched[at..at + batch.len()];
        assert_eq!(&stored[8..12], &batch[8..12], "batch {i}");
        assert_eq!(&stored[16..], &batch[16..], "batch {i}");
        assert_eq!(
            i64::from_be_bytes(stored[..8].try_into().unwrap()),
            i as i64 * 20
        );
        at += batch.len();
    }
    assert_eq!(at, fetched.len());
}

#[tokio::test]
async fn acks_zero_is_not_answered_but_written() {
    let server = start().await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    create(&mut s, "fire").await;
    let request = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(name("fire"))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(common::batch("forgotten"))),
                ]),
        ]);
    use tokio::io::AsyncWriteExt;
    s.write_all(&common::frame(
        ApiKey::Produce,
        V,
        99,
        &RequestKind::Produce(request),
    ))
    .await
    .unwrap();
    // The next answer on the connection is the fetch's (correlation 7), and
    // eventually it holds the record.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, records) = fetch_all(&mut s, "fire").await;
        if !records.is_empty() {
            assert_eq!(values(&records), ["forgotten"]);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "acks=0 record never appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
