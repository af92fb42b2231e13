//! The Kafka front end of one node of a (pretend) cluster: a real broker
//! whose `ClusterView` names other nodes, so every API's cluster answers
//! (brokers, leaders, NOT_LEADER_OR_FOLLOWER, coordinators, NOT_COORDINATOR)
//! are checked without a second process. Nothing here reaches another node:
//! the view counts forward calls, and every test expects none.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use strata_api::{ApiError, ErrorCode};
use strata_broker::{
    Broker, BrokerConfig, BrokerEndpoint, ClusterView, GroupOffset, LocalMetadataStore,
    PartitionOp, PartitionReply, TopicConfigPatch, TopicMeta, partition_key,
};
use strata_log::batch::{BatchBuilder, Compression};

use super::parse_host_port;
use crate::apis::topic_configs::testing::{encodes, fixture};
use crate::apis::{
    delete_records, describe_cluster, fetch, find_coordinator, list_offsets, metadata, produce,
};
use crate::config::KafkaConfig;
use crate::context::{Sasl, Session, Shared};
use crate::dispatch::Reply;
use crate::group::{
    self, delete, describe, heartbeat, join, leave, list, offset_commit, offset_fetch, sync,
};

type Forwarded = Pin<Box<dyn Future<Output = Result<PartitionReply, ApiError>> + Send>>;

/// Node 1's view of a four-node cluster: node 2 has a Kafka listener, node
/// 3 none, node 4 a malformed one.
struct FourNodes {
    leaders: Mutex<HashMap<String, (u64, u64)>>,
    forwards: AtomicUsize,
}

fn endpoint(node_id: u64, kafka_addr: Option<&str>, zone: &str) -> BrokerEndpoint {
    BrokerEndpoint {
        node_id,
        api_addr: format!("node{node_id}.example:8080"),
        kafka_addr: kafka_addr.map(str::to_string),
        zone: zone.to_string(),
    }
}

impl ClusterView for FourNodes {
    fn node_id(&self) -> u64 {
        1
    }

    fn brokers(&self) -> Vec<BrokerEndpoint> {
        vec![
            endpoint(2, Some("node2.example:19093"), ""),
            endpoint(1, Some("node1.example:19092"), "zone-a"),
            endpoint(3, None, "zone-c"),
            endpoint(4, Some("node4.example"), "zone-d"),
        ]
    }

    fn leader(&self, partition_key: &str) -> Option<(u64, u64)> {
        self.leaders.lock().get(partition_key).copied()
    }

    // What `#[async_trait]` expands to, without the macro.
    fn forward<'life0, 'async_trait>(&'life0 self, node_id: u64, _op: PartitionOp) -> Forwarded
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.forwards.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            Err(ApiError::new(
                ErrorCode::Internal,
                format!("no node {node_id} in a test"),
            ))
        })
    }
}

struct Node {
    shared: Arc<Shared>,
    session: Session,
    view: Arc<FourNodes>,
    topic: TopicMeta,
    _dir: tempfile::TempDir,
}

/// Node 1, with topic "t": partition 0 led here (epoch 3), partition 1 by
/// node 2 (epoch 5).
async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let view = Arc::new(FourNodes {
        leaders: Mutex::new(HashMap::new()),
        forwards: AtomicUsize::new(0),
    });
    let store = Arc::new(LocalMetadataStore::open(dir.path().join("metadata.json")).unwrap());
    let broker = Broker::open_with(BrokerConfig::new(dir.path()), store, view.clone())
        .await
        .unwrap();
    let topic = broker
        .create_topic("default", "t", 2, TopicConfigPatch::default())
        .await
        .unwrap();
    {
        let mut leaders = view.leaders.lock();
        leaders.insert(partition_key(&topic, 0), (1, 3));
        leaders.insert(partition_key(&topic, 1), (2, 5));
    }
    let config = KafkaConfig {
        group_initial_rebalance_delay: Duration::ZERO,
        group_min_session_timeout: Duration::from_millis(100),
        ..KafkaConfig::default()
    };
    let session = Session {
        tenant: "default".into(),
        sasl: Sasl::None,
    };
    let shared = Arc::new(Shared {
        broker,
        groups: group::Coordinator::new(&config),
        producers: crate::producers::Producers::new(),
        config,
    });
    Node {
        shared,
        session,
        view,
        topic,
        _dir: dir,
    }
}

impl Node {
    /// Fails the test if anything was sent to another node.
    fn nothing_forwarded(&self) {
        assert_eq!(self.view.forwards.load(Ordering::SeqCst), 0);
    }

    /// A group id coordinated by `node`.
    fn group_of(&self, node: u64) -> String {
        (0..1000)
            .map(|i| format!("g-{i}"))
            .find(|g| self.shared.broker.group_coordinator(g) == node)
            .unwrap()
    }

    fn end_offset(&self, partition: u32) -> u64 {
        self.shared
            .broker
            .log_partition(&self.topic, partition)
            .unwrap()
            .offsets()
            .end
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn batch(value: &str) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(
        Some(Bytes::from_static(b"k")),
        Some(Bytes::from(value.to_owned())),
        vec![],
        1_700_000_000_000,
    );
    b.build().unwrap()
}

async fn produce_to(node: &Node, partitions: &[i32], version: i16) -> ProduceResponse {
    let data = partitions
        .iter()
        .map(|&p| {
            produce_request::PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(batch("v")))
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(TopicName(s("t")))
                .with_partition_data(data),
        ]);
    match produce::handle(&node.shared, &node.session, request, version).await {
        Reply::Pending(answer) => match answer.await {
            ResponseKind::Produce(r) => r,
            _ => panic!("not a produce response"),
        },
        _ => panic!("acks=-1 is answered later"),
    }
}

/// A Metadata request for every topic.
fn all_topics() -> MetadataRequest {
    MetadataRequest::default().with_topics(None)
}

#[test]
fn host_and_port() {
    let ok = |addr: &str, host: &str, port: i32| {
        assert_eq!(
            parse_host_port(addr),
            Some((host.to_string(), port)),
            "{addr}"
        );
    };
    ok("broker-1.example:9092", "broker-1.example", 9092);
    ok("10.0.0.7:19092", "10.0.0.7", 19092);
    ok("[::1]:9092", "::1", 9092);
    ok("[2001:db8::7]:9092", "2001:db8::7", 9092);
    // The server formats its advertised address as host:port, IPv6 or not.
    ok("::1:9092", "::1", 9092);
    ok("localhost:65535", "localhost", 65535);
    for bad in [
        "",
        "host",
        "host:",
        ":9092",
        "host:0",
        "host:65536",
        "host:+92",
        "host:-1",
        "host:9092x",
        "::1",
        "2001:db8::",
        "[::1:9092",
        "[]:9092",
        "a b:9092",
        "host]:9092",
    ] {
        assert_eq!(parse_host_port(bad), None, "{bad:?}");
    }
}

/// A single node is broker 1 (the broker's node id) everywhere: the only
/// broker, the controller, every partition's leader, every group's coordinator.
#[tokio::test]
async fn single_node_is_one_broker_with_one_id() {
    let f = fixture().await;
    f.shared
        .broker
        .create_topic("default", "t", 2, TopicConfigPatch::default())
        .await
        .unwrap();
    for v in [0, 1, 7, 12] {
        let r = metadata::handle(&f.shared, &f.session, all_topics(), v).await;
        let brokers: Vec<_> = r
            .brokers
            .iter()
            .map(|b| (b.node_id, b.host.to_string(), b.port, b.rack.clone()))
            .collect();
        assert_eq!(brokers, vec![(BrokerId(1), "127.0.0.1".into(), 9092, None)]);
        assert_eq!(r.controller_id, BrokerId(1));
        let partitions = &r.topics[0].partitions;
        assert_eq!(partitions.len(), 2);
        for p in partitions {
            assert_eq!((p.leader_id, p.leader_epoch), (BrokerId(1), 0));
            assert_eq!(p.replica_nodes, vec![BrokerId(1)]);
            assert_eq!(p.isr_nodes, vec![BrokerId(1)]);
        }
        encodes(ApiKey::Metadata, v, ResponseKind::Metadata(r));
    }
    for v in 0..=3 {
        let request = FindCoordinatorRequest::default().with_key(s("any-group"));
        let r = find_coordinator::handle(&f.shared, &f.session, request, v);
        assert_eq!((r.error_code, r.node_id, r.port), (0, BrokerId(1), 9092));
        encodes(ApiKey::FindCoordinator, v, ResponseKind::FindCoordinator(r));
    }
    let request = FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]);
    let r = find_coordinator::handle(&f.shared, &f.session, request, 4);
    assert!(
        r.coordinators
            .iter()
            .all(|c| (c.error_code, c.node_id, &*c.host) == (0, BrokerId(1), "127.0.0.1"))
    );
}

#[tokio::test]
async fn metadata_lists_every_broker_and_partition_leader() {
    let node = node().await;
    for v in 0..=12 {
        let r = metadata::handle(&node.shared, &node.session, all_topics(), v).await;
        // Node 3 has no Kafka listener, node 4 a malformed one: left out.
        let brokers: Vec<_> = r
            .brokers
            .iter()
            .map(|b| (b.node_id, b.host.to_string(), b.port, b.rack.clone()))
            .collect();
        assert_eq!(
            brokers,
            vec![
                (
                    BrokerId(1),
                    "node1.example".into(),
                    19092,
                    Some(s("zone-a"))
                ),
                (BrokerId(2), "node2.example".into(), 19093, None),
            ],
            "v{v}"
        );
        assert_eq!(r.controller_id, BrokerId(1));
        let partitions: Vec<_> = r.topics[0]
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.leader_id,
                    p.leader_epoch,
                    p.replica_nodes.clone(),
                    p.isr_nodes.clone(),
                )
            })
            .collect();
        assert_eq!(
            partitions,
            vec![
                (0, BrokerId(1), 3, vec![BrokerId(1)], vec![BrokerId(1)]),
                (1, BrokerId(2), 5, vec![BrokerId(2)], vec![BrokerId(2)]),
            ]
        );
        encodes(ApiKey::Metadata, v, ResponseKind::Metadata(r));
    }

    for v in 0..=1 {
        let r = describe_cluster::handle(
            &node.shared,
            &node.session,
            DescribeClusterRequest::default().with_endpoint_type(1),
            v,
        );
        assert_eq!(r.error_code, 0);
        assert_eq!(r.controller_id, BrokerId(1));
        let brokers: Vec<_> = r
            .brokers
            .iter()
            .map(|b| (b.broker_id, b.host.to_string(), b.port, b.rack.clone()))
            .collect();
        assert_eq!(
            brokers,
            vec![
                (
                    BrokerId(1),
                    "node1.example".into(),
                    19092,
                    Some(s("zone-a"))
                ),
                (BrokerId(2), "node2.example".into(), 19093, None),
            ]
        );
        encodes(ApiKey::DescribeCluster, v, ResponseKind::DescribeCluster(r));
    }
    node.nothing_forwarded();
}

#[tokio::test]
async fn produce_to_a_partition_led_elsewhere_is_refused() {
    let node = node().await;
    for v in [3, 9, 10, 11] {
        let r = produce_to(&node, &[0, 1], v).await;
        let p = &r.responses[0].partition_responses;
        assert_eq!((p[0].index, p[0].error_code), (0, 0), "v{v}");
        assert_eq!((p[1].index, p[1].error_code, p[1].base_offset), (1, 6, -1));
        if v >= 10 {
            // KIP-951: the leader and its address come with the refusal.
            assert_eq!(
                (
                    p[1].current_leader.leader_id,
                    p[1].current_leader.leader_epoch
                ),
                (BrokerId(2), 5)
            );
            assert_eq!(p[0].current_leader, Default::default());
            let endpoints: Vec<_> = r
                .node_endpoints
                .iter()
                .map(|e| (e.node_id, e.host.to_string(), e.port))
                .collect();
            assert_eq!(
                endpoints,
                vec![(BrokerId(2), "node2.example".into(), 19093)]
            );
        } else {
            assert_eq!(p[1].current_leader, Default::default());
            assert!(r.node_endpoints.is_empty());
        }
        if v >= 8 {
            assert!(p[1].error_message.is_some());
        }
        encodes(ApiKey::Produce, v, ResponseKind::Produce(r));
    }
    // Every produce landed on partition 0; partition 1's log was not touched.
    assert_eq!((node.end_offset(0), node.end_offset(1)), (4, 0));
    node.nothing_forwarded();
}

#[tokio::test]
async fn fetch_from_a_partition_led_elsewhere_is_refused() {
    let node = node().await;
    produce_to(&node, &[0], 9).await;
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(TopicName(s("t")))
                .with_partitions(
                    [0, 1]
                        .into_iter()
                        .map(|p| {
                            fetch_request::FetchPartition::default()
                                .with_partition(p)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                ),
        ]);
    for v in [4, 11, 12] {
        let r = fetch::handle(&node.shared, "default", request.clone(), v).await;
        let p = &r.responses[0].partitions;
        assert_eq!((p[0].error_code, p[0].high_watermark), (0, 1), "v{v}");
        assert!(!p[0].records.as_ref().unwrap().is_empty());
        assert_eq!(p[0].current_leader, Default::default());
        assert_eq!(
            (
                p[1].error_code,
                p[1].high_watermark,
                p[1].last_stable_offset,
                p[1].log_start_offset
            ),
            (6, -1, -1, -1)
        );
        assert!(p[1].records.as_ref().unwrap().is_empty());
        let leader = (
            p[1].current_leader.leader_id,
            p[1].current_leader.leader_epoch,
        );
        if v >= 12 {
            assert_eq!(leader, (BrokerId(2), 5));
        } else {
            assert_eq!(leader, (BrokerId(-1), -1));
        }
        encodes(ApiKey::Fetch, v, ResponseKind::Fetch(r));
    }
    node.nothing_forwarded();
}

#[tokio::test]
async fn list_offsets_and_delete_records_of_a_partition_led_elsewhere_are_refused() {
    let node = node().await;
    produce_to(&node, &[0], 9).await;
    let request = ListOffsetsRequest::default().with_topics(vec![
        list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(
                [0, 1, 2]
                    .into_iter()
                    .map(|p| {
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(-1)
                    })
                    .collect(),
            ),
    ]);
    for v in 1..=6 {
        let r = list_offsets::handle(&node.shared, &node.session, request.clone(), v).await;
        let got: Vec<_> = r.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.offset, p.leader_epoch))
            .collect();
        // The leader epoch (v4+) is the partition's.
        let epoch = if v >= 4 { 3 } else { -1 };
        assert_eq!(got, vec![(0, 1, epoch), (6, -1, -1), (3, -1, -1)], "v{v}");
        encodes(ApiKey::ListOffsets, v, ResponseKind::ListOffsets(r));
    }

    let request = DeleteRecordsRequest::default().with_topics(vec![
        delete_records_request::DeleteRecordsTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(
                [0, 1, 2]
                    .into_iter()
                    .map(|p| {
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(p)
                            .with_offset(-1)
                    })
                    .collect(),
            ),
    ]);
    let r = delete_records::handle(&node.shared, &node.session, request, 2).await;
    let got: Vec<_> = r.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code, p.low_watermark))
        .collect();
    assert_eq!(got, vec![(0, 0, 1), (1, 6, -1), (2, 3, -1)]);
    node.nothing_forwarded();
}

#[tokio::test]
async fn find_coordinator_names_the_group_coordinator() {
    let node = node().await;
    // Node 3 has no Kafka listener: it coordinates no group. Node 4's
    // address is malformed: this node answers for its groups (and refuses them).
    assert!((0..1000).all(|i| node.shared.broker.group_coordinator(&format!("g-{i}")) != 3));
    let (here, there, unreachable) = (node.group_of(1), node.group_of(2), node.group_of(4));
    let answer =
        |r: &FindCoordinatorResponse| (r.error_code, r.node_id, r.host.to_string(), r.port);
    for v in 0..=3 {
        let ask = |group: &str| {
            let request = FindCoordinatorRequest::default().with_key(s(group));
            find_coordinator::handle(&node.shared, &node.session, request, v)
        };
        let r = ask(&there);
        assert_eq!(answer(&r), (0, BrokerId(2), "node2.example".into(), 19093));
        encodes(ApiKey::FindCoordinator, v, ResponseKind::FindCoordinator(r));
        let this_node = (0, BrokerId(1), "node1.example".to_string(), 19092);
        assert_eq!(answer(&ask(&here)), this_node);
        assert_eq!(answer(&ask(&unreachable)), this_node);
    }
    // A transactional id: as before, no coordinator.
    let request = FindCoordinatorRequest::default()
        .with_key(s("tx"))
        .with_key_type(1);
    let r = find_coordinator::handle(&node.shared, &node.session, request, 3);
    assert_eq!(r.error_code, 15);

    let request = FindCoordinatorRequest::default().with_coordinator_keys(vec![
        s(&there),
        s(&here),
        s(&unreachable),
    ]);
    let r = find_coordinator::handle(&node.shared, &node.session, request, 4);
    let got: Vec<_> = r
        .coordinators
        .iter()
        .map(|c| (c.key.to_string(), c.error_code, c.node_id, c.port))
        .collect();
    assert_eq!(
        got,
        vec![
            (there.clone(), 0, BrokerId(2), 19093),
            (here.clone(), 0, BrokerId(1), 19092),
            (unreachable.clone(), 0, BrokerId(1), 19092),
        ]
    );
    encodes(ApiKey::FindCoordinator, 4, ResponseKind::FindCoordinator(r));
    let request = FindCoordinatorRequest::default()
        .with_key_type(1)
        .with_coordinator_keys(vec![s("tx")]);
    let r = find_coordinator::handle(&node.shared, &node.session, request, 4);
    assert_eq!(r.coordinators[0].error_code, 15);
}

/// Every group API refuses a group coordinated by another node with
/// NOT_COORDINATOR and leaves it alone; the node's own groups are served.
#[tokio::test]
async fn group_apis_refuse_groups_coordinated_elsewhere() {
    let node = node().await;
    let (shared, session) = (&node.shared, &node.session);
    let (here, there) = (node.group_of(1), node.group_of(2));
    let gid = |g: &str| GroupId(s(g));
    let tenant = "default";

    // Offsets committed through another door (they are shared by every node).
    for g in [&here, &there] {
        let offset = GroupOffset {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            metadata: String::new(),
        };
        shared
            .broker
            .commit_offsets(tenant, g, vec![offset])
            .await
            .unwrap();
    }

    let join_request = |g: &str| {
        JoinGroupRequest::default()
            .with_group_id(gid(g))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(s("range"))
                    .with_metadata(Bytes::from_static(b"sub")),
            ])
    };
    for v in [0, 4, 9] {
        let r = join::handle(shared, tenant, join_request(&there), v).await;
        assert_eq!(r.error_code, 16, "v{v}");
    }
    // This node's group reaches the coordinator (v4+ first asks for a member id).
    let r = join::handle(shared, tenant, join_request(&here), 4).await;
    assert_eq!(r.error_code, 79);

    let request = SyncGroupRequest::default()
        .with_group_id(gid(&there))
        .with_member_id(s("m"))
        .with_generation_id(1)
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")));
    assert_eq!(
        sync::handle(shared, tenant, request, 5).await.error_code,
        16
    );

    let request = HeartbeatRequest::default()
        .with_group_id(gid(&there))
        .with_member_id(s("m"))
        .with_generation_id(1);
    assert_eq!(
        heartbeat::handle(shared, session, request, 4).error_code,
        16
    );

    for v in [0, 3, 5] {
        let mut request = LeaveGroupRequest::default().with_group_id(gid(&there));
        if v >= 3 {
            request = request.with_members(vec![
                leave_group_request::MemberIdentity::default().with_member_id(s("m")),
            ]);
        } else {
            request = request.with_member_id(s("m"));
        }
        let r = leave::handle(shared, session, request, v);
        assert_eq!((r.error_code, r.members.len()), (16, 0), "v{v}");
        encodes(ApiKey::LeaveGroup, v, ResponseKind::LeaveGroup(r));
    }

    let request = OffsetCommitRequest::default()
        .with_group_id(gid(&there))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(
                    [0, 1]
                        .into_iter()
                        .map(|p| {
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(99)
                        })
                        .collect(),
                ),
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("missing")))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ]);
    let r = offset_commit::handle(shared, session, request, 8).await;
    let codes: Vec<i16> = r
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(codes, vec![16, 16, 16]);
    encodes(ApiKey::OffsetCommit, 8, ResponseKind::OffsetCommit(r));
    // Nothing was stored.
    let stored = shared.broker.fetch_offsets(tenant, &there).await.unwrap();
    assert_eq!(stored.iter().map(|o| o.offset).collect::<Vec<_>>(), vec![7]);

    let topics = || {
        Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0]),
        ])
    };
    let r = offset_fetch::handle(
        shared,
        session,
        OffsetFetchRequest::default()
            .with_group_id(gid(&there))
            .with_topics(topics()),
        1,
    )
    .await;
    // v1 has no group error: the partition carries it.
    assert_eq!(r.topics[0].partitions[0].error_code, 16);
    assert_eq!(r.topics[0].partitions[0].committed_offset, -1);
    encodes(ApiKey::OffsetFetch, 1, ResponseKind::OffsetFetch(r));
    for v in [2, 7] {
        let request = OffsetFetchRequest::default()
            .with_group_id(gid(&there))
            .with_topics(topics());
        let r = offset_fetch::handle(shared, session, request, v).await;
        assert_eq!((r.error_code, r.topics.len()), (16, 0), "v{v}");
        encodes(ApiKey::OffsetFetch, v, ResponseKind::OffsetFetch(r));
    }
    let request = OffsetFetchRequest::default().with_groups(
        [&there, &here]
            .into_iter()
            .map(|g| {
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(gid(g))
                    .with_topics(None)
            })
            .collect(),
    );
    let r = offset_fetch::handle(shared, session, request, 8).await;
    let got: Vec<_> = r
        .groups
        .iter()
        .map(|g| {
            let offsets: Vec<i64> = g
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.committed_offset))
                .collect();
            (g.error_code, offsets)
        })
        .collect();
    assert_eq!(got, vec![(16, vec![]), (0, vec![7])]);
    encodes(ApiKey::OffsetFetch, 8, ResponseKind::OffsetFetch(r));

    let request = DescribeGroupsRequest::default().with_groups(vec![gid(&there), gid(&here)]);
    let r = describe::handle(shared, session, request, 5).await;
    let got: Vec<_> = r
        .groups
        .iter()
        .map(|g| (g.error_code, g.group_state.to_string()))
        .collect();
    assert_eq!(got[0], (16, String::new()));
    assert_eq!(got[1].0, 0);
    encodes(ApiKey::DescribeGroups, 5, ResponseKind::DescribeGroups(r));

    // Only the groups this node coordinates are listed.
    for v in 0..=4 {
        let r = list::handle(shared, session, ListGroupsRequest::default(), v).await;
        let listed: Vec<String> = r.groups.iter().map(|g| g.group_id.0.to_string()).collect();
        assert_eq!(listed, vec![here.clone()], "v{v}");
    }

    let request = DeleteGroupsRequest::default().with_groups_names(vec![gid(&there)]);
    let r = delete::handle(shared, session, request, 2).await;
    assert_eq!(r.results[0].error_code, 16);
    // The other node's group keeps its offsets.
    assert_eq!(
        shared
            .broker
            .fetch_offsets(tenant, &there)
            .await
            .unwrap()
            .len(),
        1
    );
    // The coordinator never heard of it.
    assert!(shared.groups.describe(tenant, &there).is_none());
    node.nothing_forwarded();
}

/// A request frame as a client sends it.
fn frame(api: ApiKey, version: i16, correlation_id: i32, body: &RequestKind) -> Bytes {
    use bytes::BufMut;
    use kafka_protocol::protocol::Encodable;
    let mut buf = bytes::BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(s("test")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let len = i32::try_from(buf.len() - 4).unwrap();
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// acks=0 gets no answer, so a produce to a partition led elsewhere closes
/// the connection instead (the producer then refreshes its metadata, as
/// with Kafka); the request's partitions led here are still written, and
/// a produce with only those keeps the connection open.
#[tokio::test]
async fn unanswered_produce_to_another_node_closes_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let node = node().await;
    let produce = |partitions: &[i32]| {
        let data = partitions
            .iter()
            .map(|&p| {
                produce_request::PartitionProduceData::default()
                    .with_index(p)
                    .with_records(Some(batch("v")))
            })
            .collect();
        RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(0)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_data(data),
                ]),
        )
    };
    let (mut client, server) = tokio::io::duplex(1 << 20);
    tokio::spawn(crate::conn::serve(
        node.shared.clone(),
        server,
        "test".into(),
    ));

    // Led here: no answer, and the connection stays open (ApiVersions is answered).
    client
        .write_all(&frame(ApiKey::Produce, 9, 1, &produce(&[0])))
        .await
        .unwrap();
    let versions = RequestKind::ApiVersions(ApiVersionsRequest::default());
    client
        .write_all(&frame(ApiKey::ApiVersions, 0, 2, &versions))
        .await
        .unwrap();
    let len = client.read_i32().await.unwrap();
    let mut answer = vec![0; usize::try_from(len).unwrap()];
    client.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer[..4], &2i32.to_be_bytes(), "the ApiVersions answer");

    // One partition led elsewhere: the connection closes, without an answer.
    client
        .write_all(&frame(ApiKey::Produce, 9, 3, &produce(&[0, 1])))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest))
        .await
        .unwrap();
    assert_eq!(read.unwrap(), 0, "no answer before the close");

    // Both produces reached partition 0; partition 1 was not touched.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while node.end_offset(0) < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!((node.end_offset(0), node.end_offset(1)), (2, 0));
    node.nothing_forwarded();
}
