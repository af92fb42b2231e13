//! The group APIs through their handlers, against a real broker, with the
//! coordinator's own deadline task (real time, short timeouts).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use strata_broker::{Broker, BrokerConfig, TopicConfigPatch};

use super::{
    Coordinator, delete, describe, heartbeat, join, leave, list, offset_commit, offset_fetch, sync,
};
use crate::config::KafkaConfig;
use crate::context::{Sasl, Session, Shared};
use crate::errors;
use crate::producers::Producers;

struct Env {
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

async fn env(initial_delay: Duration) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path())).await.unwrap();
    broker.create_tenant("other").await.unwrap();
    for tenant in ["default", "other"] {
        broker
            .create_topic(tenant, "t", 2, TopicConfigPatch::default())
            .await
            .unwrap();
    }
    let config = KafkaConfig {
        group_initial_rebalance_delay: initial_delay,
        group_min_session_timeout: Duration::from_millis(100),
        ..KafkaConfig::default()
    };
    let shared = Arc::new(Shared {
        broker,
        groups: Coordinator::new(&config),
        config,
        producers: Producers::new(),
    });
    Env { shared, _dir: dir }
}

fn session(tenant: &str) -> Session {
    Session {
        tenant: tenant.into(),
        sasl: Sasl::None,
    }
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn gid(x: &str) -> GroupId {
    GroupId(s(x))
}

/// Encodes a response as the connection would, so a field set for a
/// version that lacks it fails the test.
fn encodes<T: Encodable>(response: &T, version: i16) {
    let mut buf = BytesMut::new();
    response
        .encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("v{version}: {e}"));
}

fn join_request(group: &str, member_id: &str, session_ms: i32) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(session_ms)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"sub")),
        ])
}

fn sync_request(group: &str, member_id: &str, generation: i32) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member_id))
        .with_generation_id(generation)
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")))
}

fn commit_request(group: &str, member_id: &str, generation: i32) -> OffsetCommitRequest {
    let partition = |index: i32, offset: i64| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(index)
            .with_committed_offset(offset)
            .with_committed_metadata(Some(s("m")))
    };
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member_id))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![partition(0, 42), partition(5, 1)]),
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("missing")))
                .with_partitions(vec![partition(0, 1)]),
        ])
}

fn commit_errors(response: &OffsetCommitResponse) -> Vec<i16> {
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_from_join_to_delete() {
    let env = env(Duration::ZERO).await;
    let shared = env.shared.as_ref();
    let session = session("default");
    let tenant = "default";

    // v4+: a new member first gets its id.
    let r = join::handle(shared, tenant, join_request("g", "", 10_000), 5).await;
    assert_eq!(r.error_code, errors::MEMBER_ID_REQUIRED);
    assert_eq!(
        r.protocol_name.as_deref(),
        Some(""),
        "not nullable before v7"
    );
    encodes(&r, 5);
    let member = r.member_id.to_string();
    let r = join::handle(shared, tenant, join_request("g", &member, 10_000), 7).await;
    encodes(&r, 7);
    assert_eq!(r.error_code, errors::NONE);
    assert_eq!((r.generation_id, r.leader.as_str()), (1, member.as_str()));
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);

    let request = sync_request("g", &member, 1).with_assignments(vec![
        SyncGroupRequestAssignment::default()
            .with_member_id(s(&member))
            .with_assignment(Bytes::from_static(b"both partitions")),
    ]);
    let r = sync::handle(shared, tenant, request, 5).await;
    encodes(&r, 5);
    assert_eq!(r.error_code, errors::NONE);
    assert_eq!(r.assignment, Bytes::from_static(b"both partitions"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    let hb = HeartbeatRequest::default()
        .with_group_id(gid("g"))
        .with_member_id(s(&member))
        .with_generation_id(1);
    let r = heartbeat::handle(shared, &session, hb.clone(), 4);
    assert_eq!(r.error_code, errors::NONE);

    // Commits: per-partition errors for unknown topics and partitions.
    let r = offset_commit::handle(shared, &session, commit_request("g", &member, 1), 8).await;
    encodes(&r, 8);
    assert_eq!(
        commit_errors(&r),
        vec![
            errors::NONE,
            errors::UNKNOWN_TOPIC_OR_PARTITION,
            errors::UNKNOWN_TOPIC_OR_PARTITION
        ]
    );
    let r = offset_commit::handle(shared, &session, commit_request("g", &member, 0), 8).await;
    assert_eq!(commit_errors(&r)[0], errors::ILLEGAL_GENERATION);
    let r = offset_commit::handle(shared, &session, commit_request("g", "", -1), 2).await;
    assert_eq!(
        commit_errors(&r)[0],
        errors::UNKNOWN_MEMBER_ID,
        "the group has members"
    );

    // Fetch: uncommitted partitions are -1 with "" metadata.
    let asked = OffsetFetchRequestTopic::default()
        .with_name(TopicName(s("t")))
        .with_partition_indexes(vec![0, 1]);
    let request = OffsetFetchRequest::default()
        .with_group_id(gid("g"))
        .with_topics(Some(vec![asked]));
    for version in [1, 7] {
        let r = offset_fetch::handle(shared, &session, request.clone(), version).await;
        encodes(&r, version);
        let p = &r.topics[0].partitions;
        assert_eq!(
            (p[0].committed_offset, p[0].metadata.as_deref()),
            (42, Some("m"))
        );
        assert_eq!(
            (p[1].committed_offset, p[1].metadata.as_deref()),
            (-1, Some(""))
        );
        assert_eq!(p[1].error_code, errors::NONE);
    }
    let all = OffsetFetchRequest::default()
        .with_group_id(gid("g"))
        .with_topics(None);
    let r = offset_fetch::handle(shared, &session, all, 2).await;
    assert_eq!(r.topics.len(), 1);
    assert_eq!(r.topics[0].partitions.len(), 1);
    let batched = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(gid("g"))
            .with_topics(Some(vec![
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0]),
            ])),
        OffsetFetchRequestGroup::default().with_group_id(gid("never-committed")),
    ]);
    let r = offset_fetch::handle(shared, &session, batched, 8).await;
    encodes(&r, 8);
    assert_eq!(r.groups[0].topics[0].partitions[0].committed_offset, 42);
    assert_eq!((r.groups[1].error_code, r.groups[1].topics.len()), (0, 0));

    // Describe and list.
    let describe_g = DescribeGroupsRequest::default().with_groups(vec![gid("g"), gid("nope")]);
    let r = describe::handle(shared, &session, describe_g.clone(), 5).await;
    encodes(&r, 5);
    let (g, nope) = (&r.groups[0], &r.groups[1]);
    assert_eq!(g.group_state.as_str(), "Stable");
    assert_eq!(
        (g.protocol_type.as_str(), g.protocol_data.as_str()),
        ("consumer", "range")
    );
    assert_eq!(
        g.members[0].member_assignment,
        Bytes::from_static(b"both partitions")
    );
    assert_eq!(g.authorized_operations, i32::MIN);
    assert_eq!((nope.error_code, nope.group_state.as_str()), (0, "Dead"));
    encodes(
        &describe::handle(shared, &session, describe_g.clone(), 0).await,
        0,
    );
    let r = list::handle(shared, &session, ListGroupsRequest::default(), 4).await;
    encodes(&r, 4);
    assert_eq!(r.groups.len(), 1);
    assert_eq!(r.groups[0].group_state.as_str(), "Stable");
    let only_empty = ListGroupsRequest::default().with_states_filter(vec![s("empty")]);
    let r = list::handle(shared, &session, only_empty.clone(), 4).await;
    assert!(r.groups.is_empty());

    // A group with members cannot be deleted.
    let delete_g = DeleteGroupsRequest::default().with_groups_names(vec![gid("g")]);
    let r = delete::handle(shared, &session, delete_g.clone(), 2).await;
    assert_eq!(r.results[0].error_code, errors::NON_EMPTY_GROUP);

    // Leave (v3 batch): each member has its own error.
    let request = LeaveGroupRequest::default()
        .with_group_id(gid("g"))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&member)),
            MemberIdentity::default().with_member_id(s("stranger")),
        ]);
    let r = leave::handle(shared, &session, request, 3);
    encodes(&r, 3);
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![errors::NONE, errors::UNKNOWN_MEMBER_ID]);
    let r = heartbeat::handle(shared, &session, hb, 4);
    assert_eq!(r.error_code, errors::UNKNOWN_MEMBER_ID);
    let r = list::handle(shared, &session, only_empty, 4).await;
    assert_eq!(r.groups.len(), 1);
    let r = describe::handle(shared, &session, describe_g.clone(), 5).await;
    assert_eq!(r.groups[0].group_state.as_str(), "Empty");
    assert!(r.groups[0].members.is_empty());

    // Empty now: simple commits work, and the group can be deleted.
    let r = offset_commit::handle(shared, &session, commit_request("g", "", -1), 2).await;
    assert_eq!(commit_errors(&r)[0], errors::NONE);
    let r = delete::handle(shared, &session, delete_g.clone(), 2).await;
    assert_eq!(r.results[0].error_code, errors::NONE);
    let r = delete::handle(shared, &session, delete_g, 2).await;
    assert_eq!(r.results[0].error_code, errors::GROUP_ID_NOT_FOUND);
    let r = describe::handle(shared, &session, describe_g, 5).await;
    assert_eq!(r.groups[0].group_state.as_str(), "Dead");
    let request = OffsetFetchRequest::default().with_group_id(gid("g"));
    let r = offset_fetch::handle(shared, &session, request, 3).await;
    assert_eq!((r.error_code, r.topics.len()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_share_a_group() {
    let env = env(Duration::ZERO).await;
    let shared = env.shared.as_ref();
    let r = join::handle(shared, "default", join_request("g", "", 10_000), 3).await;
    assert_eq!(r.error_code, errors::NONE);
    let member = r.member_id.to_string();
    // The same member id means nothing in another tenant.
    let r = join::handle(shared, "other", join_request("g", &member, 10_000), 3).await;
    assert_eq!(r.error_code, errors::UNKNOWN_MEMBER_ID);
    let other = session("other");
    let r = offset_commit::handle(shared, &other, commit_request("g", "", -1), 2).await;
    assert_eq!(commit_errors(&r)[0], errors::NONE);
    let r = list::handle(shared, &other, ListGroupsRequest::default(), 4).await;
    assert_eq!(r.groups.len(), 1);
    assert_eq!(
        (
            r.groups[0].protocol_type.as_str(),
            r.groups[0].group_state.as_str()
        ),
        ("", "Empty"),
        "only offsets in this tenant"
    );
    let fetch = OffsetFetchRequest::default().with_group_id(gid("g"));
    let r = offset_fetch::handle(shared, &session("default"), fetch, 2).await;
    assert!(r.topics.is_empty(), "the other tenant's commit is not ours");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors() {
    let env = env(Duration::ZERO).await;
    let shared = env.shared.as_ref();
    let tenant = "default";
    let session = session(tenant);
    for (group, session_ms, expected) in [
        ("", 10_000, errors::INVALID_GROUP_ID),
        ("a/b", 10_000, errors::INVALID_GROUP_ID),
        ("g", -1, errors::INVALID_SESSION_TIMEOUT),
        ("g", 10, errors::INVALID_SESSION_TIMEOUT),
        ("g", i32::MAX, errors::INVALID_SESSION_TIMEOUT),
    ] {
        let r = join::handle(shared, tenant, join_request(group, "", session_ms), 0).await;
        assert_eq!(r.error_code, expected, "{group:?} {session_ms}");
        assert_eq!(r.generation_id, -1);
        encodes(&r, 0);
    }
    let r = join::handle(shared, tenant, join_request("g", "ghost", 10_000), 9).await;
    assert_eq!(r.error_code, errors::UNKNOWN_MEMBER_ID);
    assert_eq!(r.protocol_name, None);
    encodes(&r, 9);
    let r = sync::handle(shared, tenant, sync_request("g", "ghost", 1), 5).await;
    assert_eq!(r.error_code, errors::UNKNOWN_MEMBER_ID);
    let r = sync::handle(shared, tenant, sync_request("", "ghost", 1), 0).await;
    assert_eq!(r.error_code, errors::INVALID_GROUP_ID);
    encodes(&r, 0);
    let no_protocol = sync_request("g", "ghost", 1).with_protocol_name(None);
    let r = sync::handle(shared, tenant, no_protocol, 5).await;
    assert_eq!(r.error_code, errors::INCONSISTENT_GROUP_PROTOCOL);
    let r = leave::handle(
        shared,
        &session,
        LeaveGroupRequest::default()
            .with_group_id(gid("g"))
            .with_member_id(s("ghost")),
        0,
    );
    assert_eq!(r.error_code, errors::UNKNOWN_MEMBER_ID);
    encodes(&r, 0);
    // A commit for a generation of a group that does not exist.
    let r = offset_commit::handle(shared, &session, commit_request("g", "ghost", 3), 2).await;
    assert_eq!(commit_errors(&r)[0], errors::ILLEGAL_GENERATION);
    let negative = commit_request("g", "", -1).with_topics(vec![
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![
                OffsetCommitRequestPartition::default()
                    .with_partition_index(-1)
                    .with_committed_offset(1),
                OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(-5),
                OffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(5)
                    .with_committed_metadata(Some(s(&"x".repeat(5000)))),
            ]),
    ]);
    let r = offset_commit::handle(shared, &session, negative, 2).await;
    assert_eq!(
        commit_errors(&r),
        vec![
            errors::UNKNOWN_TOPIC_OR_PARTITION,
            errors::INVALID_REQUEST,
            errors::OFFSET_METADATA_TOO_LARGE
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_wait_for_the_leader_and_silent_members_expire() {
    let env = env(Duration::from_millis(200)).await;
    let shared = env.shared.as_ref();
    let tenant = "default";
    // Both join within the initial delay: one generation with both.
    let (a, b) = tokio::join!(
        join::handle(shared, tenant, join_request("g", "", 300), 3),
        join::handle(shared, tenant, join_request("g", "", 300), 3),
    );
    assert_eq!((a.error_code, b.error_code), (0, 0));
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    let (leader, follower) = if a.leader == a.member_id {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(leader.members.len(), 2);
    assert!(follower.members.is_empty());

    let follower_sync = sync::handle(shared, tenant, sync_request("g", &follower.member_id, 1), 3);
    let assignments = vec![
        SyncGroupRequestAssignment::default()
            .with_member_id(follower.member_id.clone())
            .with_assignment(Bytes::from_static(b"f")),
    ];
    let leader_sync = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let request = sync_request("g", &leader.member_id, 1).with_assignments(assignments);
        sync::handle(shared, tenant, request, 3).await
    };
    let (f, l) = tokio::join!(follower_sync, leader_sync);
    assert_eq!((f.error_code, f.assignment), (0, Bytes::from_static(b"f")));
    assert_eq!((l.error_code, l.assignment.len()), (0, 0));

    // Nobody heartbeats: the sessions (300 ms) end and the group empties
    // with no request at all.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let describe_g = DescribeGroupsRequest::default().with_groups(vec![gid("g")]);
    let r = describe::handle(shared, &session(tenant), describe_g, 1).await;
    assert_eq!(r.groups[0].group_state.as_str(), "Empty");
    assert!(r.groups[0].members.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_answers_and_encodes() {
    use crate::versions::supported;
    let env = env(Duration::ZERO).await;
    let shared = env.shared.as_ref();
    let tenant = "default";
    let session = session(tenant);
    let range = |api: ApiKey| {
        let (min, max) = supported(api).unwrap();
        min..=max
    };
    for version in range(ApiKey::JoinGroup) {
        // A group per version: a new member of a formed group would wait
        // for the others to rejoin.
        let group = format!("v{version}");
        let join_static = join_request(&group, "", 10_000).with_group_instance_id(Some(s("i")));
        let mut r = join::handle(shared, tenant, join_static, version).await;
        if r.error_code == errors::MEMBER_ID_REQUIRED {
            assert!(version >= 4);
            let again = join_request(&group, &r.member_id, 10_000);
            r = join::handle(shared, tenant, again, version).await;
        }
        encodes(&r, version);
        assert_eq!((r.error_code, r.generation_id), (0, 1), "v{version}");
        let static_member = r.members[0].group_instance_id.is_some();
        assert_eq!(static_member, version >= 5, "v{version}");

        let sync_version = version.min(5);
        let r2 = sync::handle(
            shared,
            tenant,
            sync_request(&group, &r.member_id, 1),
            sync_version,
        );
        let r2 = r2.await;
        encodes(&r2, sync_version);
        assert_eq!(r2.error_code, 0);
        let hb_version = version.min(4);
        let hb = HeartbeatRequest::default()
            .with_group_id(gid(&group))
            .with_member_id(r.member_id.clone())
            .with_generation_id(1);
        encodes(
            &heartbeat::handle(shared, &session, hb, hb_version),
            hb_version,
        );
    }
    for version in range(ApiKey::OffsetCommit) {
        let r = offset_commit::handle(shared, &session, commit_request("c", "", -1), version).await;
        encodes(&r, version);
    }
    for version in range(ApiKey::OffsetFetch) {
        let request = if version >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default().with_group_id(gid("c")),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(gid("c"))
                .with_topics((version >= 2).then(Vec::new).or_else(|| {
                    Some(vec![
                        OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![0]),
                    ])
                }))
        };
        let r = offset_fetch::handle(shared, &session, request, version).await;
        encodes(&r, version);
    }
    let described = DescribeGroupsRequest::default().with_groups(vec![gid("v9"), gid("c")]);
    for version in range(ApiKey::DescribeGroups) {
        let r = describe::handle(shared, &session, described.clone(), version).await;
        encodes(&r, version);
        assert_eq!(r.groups[1].group_state.as_str(), "Empty", "offsets only");
    }
    for version in range(ApiKey::ListGroups) {
        let r = list::handle(shared, &session, ListGroupsRequest::default(), version).await;
        encodes(&r, version);
        assert_eq!(r.groups.len(), 11);
    }
    for version in range(ApiKey::LeaveGroup) {
        let request = LeaveGroupRequest::default().with_group_id(gid("v0"));
        let request = if version >= 3 {
            request.with_members(vec![MemberIdentity::default().with_member_id(s("x"))])
        } else {
            request.with_member_id(s("x"))
        };
        encodes(&leave::handle(shared, &session, request, version), version);
    }
    for version in range(ApiKey::DeleteGroups) {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![gid("c")]);
        let r = delete::handle(shared, &session, request, version).await;
        encodes(&r, version);
    }
}
