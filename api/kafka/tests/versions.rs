//! Every implemented API at every advertised version, over a real socket
//! against a real broker: the request decodes, the handler answers, the
//! answer encodes for that version and decodes as a client would read it.
//! Also the frames that must close a connection without harming the server.

mod common;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use common::{Running, batch, call, frame, read_frame, start};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use strata_kafka::versions;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const TOPIC: &str = "conformance";

fn topic_name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

fn group() -> GroupId {
    GroupId(StrBytes::from_static_str("conformance-group"))
}

/// A typical request of each API (valid for every supported version).
fn sample(api: ApiKey, version: i16) -> RequestKind {
    use RequestKind as R;
    match api {
        ApiKey::ApiVersions => R::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(if version >= 3 {
                    StrBytes::from_static_str("test")
                } else {
                    StrBytes::default()
                })
                .with_client_software_version(if version >= 3 {
                    StrBytes::from_static_str("1.0")
                } else {
                    StrBytes::default()
                }),
        ),
        ApiKey::Metadata => R::Metadata(
            MetadataRequest::default()
                .with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name())),
                ]))
                .with_allow_auto_topic_creation(true),
        ),
        ApiKey::Produce => R::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(topic_name())
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch(&format!("v{version}")))),
                        ]),
                ]),
        ),
        ApiKey::Fetch => R::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(10)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_topics(vec![
                    fetch_request::FetchTopic::default()
                        .with_topic(topic_name())
                        .with_partitions(vec![
                            fetch_request::FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20),
                        ]),
                ]),
        ),
        ApiKey::ListOffsets => R::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic_name())
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-2),
                    ]),
            ])),
        ApiKey::FindCoordinator => {
            let r = FindCoordinatorRequest::default();
            R::FindCoordinator(if version >= 4 {
                r.with_coordinator_keys(vec![StrBytes::from_static_str("conformance-group")])
            } else {
                r.with_key(StrBytes::from_static_str("conformance-group"))
            })
        }
        ApiKey::InitProducerId => {
            R::InitProducerId(InitProducerIdRequest::default().with_transaction_timeout_ms(60000))
        }
        // A group per version: each join would otherwise wait out the
        // rebalance timeout for the members earlier versions left behind.
        ApiKey::JoinGroup => R::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(format!("join-v{version}"))))
                .with_session_timeout_ms(10000)
                .with_rebalance_timeout_ms(if version >= 1 { 10000 } else { -1 })
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(Bytes::from_static(b"\0\0")),
                ]),
        ),
        ApiKey::SyncGroup => R::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(group())
                .with_generation_id(1)
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::Heartbeat => R::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(group())
                .with_generation_id(1)
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::LeaveGroup => {
            let r = LeaveGroupRequest::default().with_group_id(group());
            R::LeaveGroup(if version >= 3 {
                r.with_members(vec![
                    leave_group_request::MemberIdentity::default()
                        .with_member_id(StrBytes::from_static_str("nobody")),
                ])
            } else {
                r.with_member_id(StrBytes::from_static_str("nobody"))
            })
        }
        ApiKey::OffsetCommit => R::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(group())
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(topic_name())
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => {
            let topics = vec![
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic_name())
                    .with_partition_indexes(vec![0]),
            ];
            R::OffsetFetch(if version >= 8 {
                OffsetFetchRequest::default().with_groups(vec![
                    offset_fetch_request::OffsetFetchRequestGroup::default()
                        .with_group_id(group())
                        .with_topics(Some(vec![
                            offset_fetch_request::OffsetFetchRequestTopics::default()
                                .with_name(topic_name())
                                .with_partition_indexes(vec![0]),
                        ])),
                ])
            } else {
                OffsetFetchRequest::default()
                    .with_group_id(group())
                    .with_topics(Some(topics))
            })
        }
        ApiKey::DescribeGroups => {
            R::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group()]))
        }
        ApiKey::ListGroups => R::ListGroups(ListGroupsRequest::default()),
        ApiKey::DeleteGroups => R::DeleteGroups(
            DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("no-such-group"))]),
        ),
        ApiKey::CreateTopics => R::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    create_topics_request::CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(format!(
                            "created-v{version}"
                        ))))
                        .with_num_partitions(2)
                        .with_replication_factor(1),
                ]),
        ),
        ApiKey::DeleteTopics => {
            let name = TopicName(StrBytes::from_string(format!("created-v{version}")));
            R::DeleteTopics(if version >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    delete_topics_request::DeleteTopicState::default().with_name(Some(name)),
                ])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![name])
            })
        }
        ApiKey::CreatePartitions => R::CreatePartitions(
            CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_validate_only(true)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(topic_name())
                        .with_count(4),
                ]),
        ),
        ApiKey::DescribeConfigs => {
            R::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str(TOPIC)),
            ]))
        }
        ApiKey::AlterConfigs => R::AlterConfigs(
            AlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![
                    alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str(TOPIC))
                        .with_configs(vec![
                            alter_configs_request::AlterableConfig::default()
                                .with_name(StrBytes::from_static_str("retention.ms"))
                                .with_value(Some(StrBytes::from_static_str("100000"))),
                        ]),
                ]),
        ),
        ApiKey::IncrementalAlterConfigs => R::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default()
                .with_validate_only(true)
                .with_resources(vec![
                    incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(StrBytes::from_static_str(TOPIC))
                        .with_configs(vec![
                            incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(StrBytes::from_static_str("retention.ms"))
                                .with_config_operation(0)
                                .with_value(Some(StrBytes::from_static_str("100000"))),
                        ]),
                ]),
        ),
        ApiKey::DeleteRecords => R::DeleteRecords(
            DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    delete_records_request::DeleteRecordsTopic::default()
                        .with_name(topic_name())
                        .with_partitions(vec![
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(0),
                        ]),
                ]),
        ),
        ApiKey::DescribeCluster => {
            R::DescribeCluster(DescribeClusterRequest::default().with_endpoint_type(1))
        }
        ApiKey::SaslHandshake => R::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        ),
        ApiKey::SaslAuthenticate => R::SaslAuthenticate(
            SaslAuthenticateRequest::default()
                .with_auth_bytes(Bytes::from_static(b"\0default\0secret")),
        ),
        other => panic!("no sample for {other:?}"),
    }
}

#[tokio::test]
async fn every_api_answers_at_every_advertised_version() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // Create the topic first (Metadata auto-creates it).
    call(
        &mut stream,
        ApiKey::Metadata,
        12,
        sample(ApiKey::Metadata, 12),
    )
    .await;
    let mut answered = 0;
    for &(api, min, max) in versions::SUPPORTED {
        for version in min..=max {
            // A fresh connection per SASL exchange: handshake state is per connection.
            if matches!(api, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
                let mut sasl = TcpStream::connect(server.addr).await.unwrap();
                if api == ApiKey::SaslAuthenticate {
                    let ResponseKind::SaslHandshake(h) = call(
                        &mut sasl,
                        ApiKey::SaslHandshake,
                        1,
                        sample(ApiKey::SaslHandshake, 1),
                    )
                    .await
                    else {
                        panic!("not a handshake answer")
                    };
                    assert_eq!(h.error_code, 0);
                }
                call(&mut sasl, api, version, sample(api, version)).await;
            } else {
                call(&mut stream, api, version, sample(api, version)).await;
            }
            answered += 1;
        }
    }
    assert!(answered > 100, "{answered}");
}

#[tokio::test]
async fn api_versions_lists_exactly_the_supported_ranges() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let ResponseKind::ApiVersions(r) = call(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        sample(ApiKey::ApiVersions, 3),
    )
    .await
    else {
        panic!("wrong answer")
    };
    assert_eq!(r.error_code, 0);
    let listed: Vec<(i16, i16, i16)> = r
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    let expected: Vec<(i16, i16, i16)> = versions::SUPPORTED
        .iter()
        .map(|&(a, min, max)| (a as i16, min, max))
        .collect();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn a_newer_api_versions_request_gets_unsupported_version_and_the_ranges() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // Version 99, with a body this broker cannot parse: the answer is v0.
    let mut buf = BytesMut::new();
    buf.put_i32(8);
    buf.put_i16(ApiKey::ApiVersions as i16);
    buf.put_i16(99);
    buf.put_i32(41);
    stream.write_all(&buf).await.unwrap();
    let mut answer = read_frame(&mut stream).await.expect("answered");
    assert_eq!(answer.get_i32(), 41);
    let r = ApiVersionsResponse::decode(&mut answer, 0).unwrap();
    assert_eq!(r.error_code, 35);
    assert!(
        r.api_keys
            .iter()
            .any(|k| k.api_key == ApiKey::Produce as i16)
    );
}

/// Sends raw bytes; returns whether the server closed the connection
/// (rather than answering), and checks the server still serves others.
async fn closes(server: &Running, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let closed = read_frame(&mut stream).await.is_none();
    let mut other = TcpStream::connect(server.addr).await.unwrap();
    let ResponseKind::ApiVersions(r) = call(
        &mut other,
        ApiKey::ApiVersions,
        0,
        sample(ApiKey::ApiVersions, 0),
    )
    .await
    else {
        panic!("wrong answer")
    };
    assert_eq!(r.error_code, 0, "the server stays up");
    closed
}

#[tokio::test]
async fn bad_frames_close_the_connection_and_nothing_else() {
    let server = start().await;
    let header = |api: i16, version: i16| {
        let mut b = BytesMut::new();
        b.put_i16(api);
        b.put_i16(version);
        b.put_i32(1);
        b.put_i16(-1); // null client id
        b
    };
    let framed = |body: BytesMut| {
        let mut b = BytesMut::new();
        b.put_i32(body.len() as i32);
        b.extend_from_slice(&body);
        b.to_vec()
    };
    // A Metadata v1 request declaring 2^31-1 topics in 4 bytes: must not
    // size an allocation (the vendored protocol crate's fix).
    let mut huge = header(ApiKey::Metadata as i16, 1);
    huge.put_i32(i32::MAX);
    assert!(closes(&server, &framed(huge)).await);
    // The same with a compact (varint) array length in a flexible version.
    let mut huge = header(ApiKey::Metadata as i16, 9);
    huge.put_u8(0); // header tagged fields
    huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(closes(&server, &framed(huge)).await);
    // Unknown API key, unsupported version, truncated body, short frame.
    assert!(closes(&server, &framed(header(999, 0))).await);
    assert!(closes(&server, &framed(header(ApiKey::Produce as i16, 1))).await);
    let mut truncated = header(ApiKey::Produce as i16, 3);
    truncated.put_i16(-1);
    assert!(closes(&server, &framed(truncated)).await);
    assert!(closes(&server, &[0, 0, 0, 2, 0, 1]).await);
    // Negative and oversized lengths.
    assert!(closes(&server, &(-5i32).to_be_bytes()).await);
    assert!(closes(&server, &(1i32 << 30).to_be_bytes()).await);
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = start().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    call(
        &mut stream,
        ApiKey::Metadata,
        12,
        sample(ApiKey::Metadata, 12),
    )
    .await;
    // A long-polling fetch, then produces: answers come back in request order
    // even though the produces finish first.
    let mut out = BytesMut::new();
    let fetch = FetchRequest::default()
        .with_max_wait_ms(300)
        .with_min_bytes(1 << 20)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(topic_name())
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    out.extend_from_slice(&frame(ApiKey::Fetch, 12, 1, &RequestKind::Fetch(fetch)));
    for i in 2..=20 {
        out.extend_from_slice(&frame(ApiKey::Produce, 9, i, &sample(ApiKey::Produce, 9)));
    }
    stream.write_all(&out).await.unwrap();
    let mut offsets = Vec::new();
    for expected in 1..=20 {
        let mut answer = read_frame(&mut stream).await.expect("answer");
        let api = if expected == 1 {
            ApiKey::Fetch
        } else {
            ApiKey::Produce
        };
        let header = ResponseHeader::decode(
            &mut answer,
            api.response_header_version(if expected == 1 { 12 } else { 9 }),
        )
        .unwrap();
        assert_eq!(header.correlation_id, expected);
        if expected > 1 {
            let r = ProduceResponse::decode(&mut answer, 9).unwrap();
            let p = &r.responses[0].partition_responses[0];
            assert_eq!(p.error_code, 0);
            offsets.push(p.base_offset);
        }
    }
    // Queued in request order, so their offsets ascend by one.
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
}
