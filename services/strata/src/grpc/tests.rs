//! The gRPC service end to end: a real broker in a temporary directory, the
//! routes on a real socket, the generated client.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use strata_api::proto::strata_client::StrataClient;
use strata_api::proto::{self, read_request::Start, read_session_response::Event};
use strata_api::{ApiError, ErrorCode};
use strata_broker::{Broker, BrokerConfig};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::routes;
use crate::state::AppState;

struct TestServer {
    client: StrataClient<Channel>,
    channel: Channel,
    shutdown: CancellationToken,
    _broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path())).await.unwrap();
    let shutdown = CancellationToken::new();
    let state = AppState {
        meta: None,
        broker: broker.clone(),
        shutdown: shutdown.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, routes(state))
            .with_graceful_shutdown(token.cancelled_owned())
            .await
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    TestServer {
        client: StrataClient::new(channel.clone()),
        channel,
        shutdown,
        _broker: broker,
        _dir: dir,
    }
}

fn code(status: &tonic::Status) -> ErrorCode {
    ApiError::from_status(status).code
}

fn records(values: &[&str]) -> Vec<proto::Record> {
    values
        .iter()
        .map(|v| proto::Record {
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            ..Default::default()
        })
        .collect()
}

async fn create(client: &mut StrataClient<Channel>, name: &str, partitions: u32) {
    let req = proto::CreateTopicRequest {
        tenant: String::new(),
        name: name.into(),
        partitions,
        config: None,
        replication_factor: None,
    };
    client.create_topic(req).await.unwrap();
}

#[tokio::test]
async fn topics_and_error_codes() {
    let mut s = start().await;
    let req = proto::CreateTopicRequest {
        tenant: String::new(),
        name: "orders".into(),
        partitions: 2,
        config: Some(proto::TopicConfig {
            retention_ms: Some(1000),
            local_retention_ms: Some(-2),
            ..Default::default()
        }),
        replication_factor: None,
    };
    let topic = s
        .client
        .create_topic(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!((topic.tenant.as_str(), topic.partitions), ("default", 2));
    let config = topic.config.unwrap();
    assert_eq!(config.retention_ms, Some(1000));
    assert_eq!(config.local_retention_ms, Some(-2));
    assert_eq!(config.local_retention_bytes, Some(-1), "the default");
    let err = s.client.create_topic(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert_eq!(code(&err), ErrorCode::TopicAlreadyExists);

    let describe = proto::DescribeTopicRequest {
        tenant: "default".into(),
        topic: "orders".into(),
    };
    let t = s
        .client
        .describe_topic(describe)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.partition_info.len(), 2);
    assert_eq!(
        t.partition_info[1],
        proto::PartitionInfo {
            partition: 1,
            ..Default::default()
        },
        "an empty partition: nothing local, nothing remote, no lag"
    );
    let missing = proto::DescribeTopicRequest {
        tenant: String::new(),
        topic: "nope".into(),
    };
    let err = s.client.describe_topic(missing).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::TopicNotFound);

    let alter = proto::AlterTopicRequest {
        tenant: String::new(),
        topic: "orders".into(),
        config: Some(proto::TopicConfig {
            segment_ms: Some(60_000),
            local_retention_bytes: Some(1 << 20),
            ..Default::default()
        }),
    };
    let t = s.client.alter_topic(alter).await.unwrap().into_inner();
    let config = t.config.unwrap();
    assert_eq!(config.segment_ms, Some(60_000));
    assert_eq!(config.local_retention_bytes, Some(1 << 20));
    assert_eq!(config.local_retention_ms, Some(-2), "unchanged");
    let list = s
        .client
        .list_topics(proto::ListTopicsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.topics.len(), 1);
    let delete = proto::DeleteTopicRequest {
        tenant: String::new(),
        topic: "orders".into(),
    };
    s.client.delete_topic(delete).await.unwrap();
}

#[tokio::test]
async fn append_read_tail_and_offsets() {
    let mut s = start().await;
    create(&mut s.client, "t", 2).await;
    let append = |partition, expected_offset, values: &[&str]| proto::AppendRequest {
        topic: "t".into(),
        records: records(values),
        partition,
        expected_offset,
        ..Default::default()
    };
    let r = s
        .client
        .append(append(Some(1), Some(0), &["a", "b"]))
        .await
        .unwrap()
        .into_inner();
    let offsets: Vec<_> = r.offsets.iter().map(|o| (o.partition, o.offset)).collect();
    assert_eq!(offsets, [(1, 0), (1, 1)]);
    let err = s
        .client
        .append(append(Some(1), Some(0), &["c"]))
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::OffsetMismatch);
    let err = s
        .client
        .append(append(None, Some(0), &["c"]))
        .await
        .unwrap_err();
    assert_eq!(code(&err), ErrorCode::BadRequest);
    let r = s
        .client
        .append(append(None, None, &["x", "y", "z"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.offsets.len(), 3);

    let tail = proto::CheckTailRequest {
        tenant: String::new(),
        topic: "t".into(),
        partition: 1,
    };
    let (start, next) = {
        let t = s.client.check_tail(tail).await.unwrap().into_inner();
        (t.start_offset, t.next_offset)
    };
    assert_eq!(start, 0);
    assert!(next >= 2);
    // No start: from the partition's first record.
    let read = proto::ReadRequest {
        topic: "t".into(),
        partition: 1,
        ..Default::default()
    };
    let r = s.client.read(read).await.unwrap().into_inner();
    assert_eq!(r.records[0].value.as_deref(), Some(b"a".as_slice()));
    assert_eq!(r.next_offset, next);
    let read = proto::ReadRequest {
        topic: "t".into(),
        partition: 1,
        start: Some(Start::Tail(1)),
        ..Default::default()
    };
    let r = s.client.read(read).await.unwrap().into_inner();
    assert_eq!(r.records.len(), 1);

    let commit = proto::CommitOffsetsRequest {
        tenant: String::new(),
        group: "g".into(),
        offsets: vec![proto::GroupOffset {
            topic: "t".into(),
            partition: 1,
            offset: 2,
            metadata: "m".into(),
        }],
    };
    s.client.commit_offsets(commit).await.unwrap();
    let fetched = s
        .client
        .fetch_offsets(proto::FetchOffsetsRequest {
            tenant: String::new(),
            group: "g".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.offsets.len(), 1);
    assert_eq!(
        (
            fetched.offsets[0].offset,
            fetched.offsets[0].metadata.as_str()
        ),
        (2, "m")
    );
}

#[tokio::test]
async fn append_session_answers_in_order_and_ends_at_the_first_error() {
    let mut s = start().await;
    create(&mut s.client, "t", 1).await;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    for i in 0..200 {
        let req = proto::AppendRequest {
            topic: "t".into(),
            records: records(&[&i.to_string(), "second"]),
            partition: Some(0),
            ..Default::default()
        };
        tx.send(req).await.unwrap();
    }
    // Partition 5 does not exist: this request fails and ends the session.
    tx.send(proto::AppendRequest {
        topic: "t".into(),
        records: records(&["bad"]),
        partition: Some(5),
        ..Default::default()
    })
    .await
    .unwrap();
    tx.send(proto::AppendRequest {
        topic: "t".into(),
        records: records(&["late"]),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut responses = s
        .client
        .append_session(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    for i in 0..200u64 {
        let r = responses.message().await.unwrap().unwrap();
        let offsets: Vec<_> = r.offsets.iter().map(|o| o.offset).collect();
        assert_eq!(offsets, [2 * i, 2 * i + 1]);
    }
    let err = responses.message().await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::PartitionNotFound);
    drop(tx);
    // The values landed in request order too.
    let read = proto::ReadRequest {
        topic: "t".into(),
        max_records: 10,
        ..Default::default()
    };
    let r = s.client.read(read).await.unwrap().into_inner();
    assert_eq!(r.records[2].value.as_deref(), Some(b"1".as_slice()));
}

#[tokio::test]
async fn read_session_follows_heartbeats_and_ends_at_shutdown() {
    let mut s = start().await;
    create(&mut s.client, "t", 1).await;
    let read = proto::ReadRequest {
        topic: "t".into(),
        partition: 0,
        start: Some(Start::Offset(0)),
        ..Default::default()
    };
    let mut session = s.client.read_session(read).await.unwrap().into_inner();
    // A session on a missing partition fails the call itself.
    let bad = proto::ReadRequest {
        topic: "t".into(),
        partition: 3,
        ..Default::default()
    };
    let err = s.client.read_session(bad).await.unwrap_err();
    assert_eq!(code(&err), ErrorCode::PartitionNotFound);
    let append = proto::AppendRequest {
        topic: "t".into(),
        records: records(&["a"]),
        partition: Some(0),
        ..Default::default()
    };
    s.client.append(append).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), session.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match first.event {
        Some(Event::Batch(b)) => assert_eq!(b.records[0].value.as_deref(), Some(b"a".as_slice())),
        other => panic!("expected a batch, got {other:?}"),
    }
    let idle = tokio::time::timeout(Duration::from_secs(8), session.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match idle.event {
        Some(Event::Heartbeat(h)) => assert_eq!(h.high_watermark, 1),
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    s.shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), session.message())
        .await
        .unwrap();
    assert_eq!(
        end.map_err(|e| code(&e)).err(),
        Some(ErrorCode::Unavailable)
    );
}

#[tokio::test]
async fn reflection_lists_the_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let s = start().await;
    let mut reflection = ServerReflectionClient::new(s.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response {response:?}");
    };
    assert!(
        list.service.iter().any(|s| s.name == "strata.v1.Strata"),
        "{list:?}"
    );
}
