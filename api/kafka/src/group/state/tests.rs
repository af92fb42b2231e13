//! The group state machine with explicit instants: no runtime, no sleeping.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot::{self, Receiver, error::TryRecvError};

use super::*;
use crate::errors;

const SESSION: Duration = Duration::from_secs(10);
const REBALANCE: Duration = Duration::from_secs(30);
const DELAY: Duration = Duration::from_secs(3);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn protocol(name: &str, metadata: &str) -> Protocol {
    Protocol {
        name: name.into(),
        metadata: Bytes::copy_from_slice(metadata.as_bytes()),
    }
}

fn request(member_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        protocol_type: "consumer".into(),
        protocols: vec![protocol("range", "sub")],
        session_timeout: SESSION,
        rebalance_timeout: REBALANCE,
        require_known_member_id: false,
        supports_skip_assignment: false,
    }
}

fn static_request(member_id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.into()),
        ..request(member_id)
    }
}

fn join(g: &mut Group, r: JoinRequest, now: Instant) -> Receiver<JoinResult> {
    let (tx, rx) = oneshot::channel();
    g.join(r, tx, now);
    rx
}

fn sync(
    g: &mut Group,
    member_id: &str,
    generation: i32,
    assignments: &[(&str, &str)],
    now: Instant,
) -> Receiver<SyncResult> {
    let (tx, rx) = oneshot::channel();
    let request = SyncRequest {
        member_id: member_id.into(),
        group_instance_id: None,
        generation_id: generation,
        protocol_type: Some("consumer".into()),
        protocol_name: Some("range".into()),
        assignments: assignments
            .iter()
            .map(|(m, a)| (m.to_string(), Bytes::copy_from_slice(a.as_bytes())))
            .collect(),
    };
    g.sync(request, tx, now);
    rx
}

/// Runs the join phase of members that all joined at `t0` to its end: the
/// initial delay, extended once because more than the first member came.
fn settle(g: &mut Group, t0: Instant) -> Instant {
    g.expire(t0 + DELAY);
    g.expire(t0 + DELAY * 2);
    t0 + DELAY * 2
}

fn done<T>(rx: &mut Receiver<T>) -> T {
    rx.try_recv().expect("the request has its answer")
}

fn waiting<T>(rx: &mut Receiver<T>) -> bool {
    matches!(rx.try_recv(), Err(TryRecvError::Empty))
}

/// A Stable group of `n` dynamic members, all synced; `(group, member ids
/// with the leader first, generation, now)`.
fn stable_group(n: usize, t0: Instant) -> (Group, Vec<String>, i32, Instant) {
    let mut g = Group::new(DELAY, t0);
    let mut joins: Vec<_> = (0..n).map(|_| join(&mut g, request(""), t0)).collect();
    let now = settle(&mut g, t0);
    let results: Vec<JoinResult> = joins.iter_mut().map(done).collect();
    let leader = results[0].leader.clone();
    let generation = results[0].generation_id;
    let mut ids: Vec<String> = results.iter().map(|r| r.member_id.clone()).collect();
    ids.sort_by_key(|id| *id != leader);
    let assignments: Vec<(String, String)> = ids
        .iter()
        .map(|id| (id.clone(), format!("a-{id}")))
        .collect();
    let pairs: Vec<(&str, &str)> = assignments
        .iter()
        .map(|(m, a)| (m.as_str(), a.as_str()))
        .collect();
    for id in ids.iter().skip(1) {
        let _answer = sync(&mut g, id, generation, &[], now);
    }
    let mut s = sync(&mut g, &ids[0], generation, &pairs, now);
    assert_eq!(done(&mut s).error, errors::NONE);
    assert_eq!(g.state(), GroupState::Stable);
    (g, ids, generation, now)
}

#[test]
fn a_single_member_joins_after_the_initial_delay_and_syncs() {
    let t0 = Instant::now();
    let mut g = Group::new(DELAY, t0);
    let mut j = join(&mut g, request(""), t0);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    g.expire(t0 + secs(2));
    assert!(waiting(&mut j));

    g.expire(t0 + DELAY);
    let r = done(&mut j);
    assert_eq!(r.error, errors::NONE);
    assert_eq!(r.generation_id, 1);
    assert!(r.member_id.starts_with("consumer-"), "{}", r.member_id);
    assert_eq!(r.leader, r.member_id);
    assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(r.members[0].metadata, Bytes::from_static(b"sub"));
    assert_eq!(g.state(), GroupState::CompletingRebalance);

    let mut s = sync(
        &mut g,
        &r.member_id,
        1,
        &[(&r.member_id, "mine")],
        t0 + DELAY,
    );
    let s = done(&mut s);
    assert_eq!(s.error, errors::NONE);
    assert_eq!(s.assignment, Bytes::from_static(b"mine"));
    assert_eq!(s.protocol_name.as_deref(), Some("range"));
    assert_eq!(g.state(), GroupState::Stable);
    let now = t0 + DELAY + secs(1);
    assert_eq!(g.heartbeat(&r.member_id, None, 1, now), errors::NONE);
    let summary = g.summary();
    assert_eq!(summary.protocol, "range");
    assert_eq!(summary.members[0].assignment, Bytes::from_static(b"mine"));
}

#[test]
fn three_members_elect_the_first_as_leader_and_get_their_assignments() {
    let t0 = Instant::now();
    let mut g = Group::new(DELAY, t0);
    let mut first = join(&mut g, request(""), t0);
    let mut second = join(&mut g, request(""), t0 + secs(1));
    let mut third = join(&mut g, request(""), t0 + secs(2));
    // Members kept arriving: the initial delay is extended once more.
    g.expire(t0 + DELAY);
    assert!(waiting(&mut first));
    g.expire(t0 + DELAY * 2);
    let (r1, r2, r3) = (done(&mut first), done(&mut second), done(&mut third));
    assert_eq!(r1.leader, r1.member_id);
    assert_eq!(r2.leader, r1.member_id);
    assert_eq!(r1.members.len(), 3);
    assert!(r2.members.is_empty() && r3.members.is_empty());
    assert!([&r1, &r2, &r3].iter().all(|r| r.generation_id == 1));

    let now = t0 + DELAY * 2;
    let mut s2 = sync(&mut g, &r2.member_id, 1, &[], now);
    let mut s3 = sync(&mut g, &r3.member_id, 1, &[], now);
    assert!(waiting(&mut s2) && waiting(&mut s3));
    // The leader's SyncGroup answers everyone; a member it left out gets nothing.
    let mut s1 = sync(
        &mut g,
        &r1.member_id,
        1,
        &[(&r1.member_id, "p0"), (&r2.member_id, "p1")],
        now,
    );
    assert_eq!(done(&mut s1).assignment, Bytes::from_static(b"p0"));
    assert_eq!(done(&mut s2).assignment, Bytes::from_static(b"p1"));
    let s3 = done(&mut s3);
    assert_eq!((s3.error, s3.assignment.len()), (errors::NONE, 0));
    // A late SyncGroup in Stable gets the stored assignment.
    let mut again = sync(&mut g, &r2.member_id, 1, &[], now);
    assert_eq!(done(&mut again).assignment, Bytes::from_static(b"p1"));
}

#[test]
fn the_initial_delay_never_exceeds_the_rebalance_timeout() {
    let t0 = Instant::now();
    let mut g = Group::new(DELAY, t0);
    let mut first = join(
        &mut g,
        JoinRequest {
            rebalance_timeout: secs(10),
            ..request("")
        },
        t0,
    );
    for at in [2, 5, 8] {
        let _answer = join(
            &mut g,
            JoinRequest {
                rebalance_timeout: secs(10),
                ..request("")
            },
            t0 + secs(at),
        );
        g.expire(t0 + secs(at + 1));
        assert!(waiting(&mut first), "completed at {}s", at + 1);
    }
    let _answer = join(
        &mut g,
        request(""),
        t0 + secs(9) + Duration::from_millis(500),
    );
    g.expire(t0 + secs(10));
    assert_eq!(done(&mut first).members.len(), 5);
}

#[test]
fn a_leaving_member_makes_the_others_rebalance() {
    let t0 = Instant::now();
    let (mut g, ids, generation, now) = stable_group(2, t0);
    assert_eq!(g.leave(&ids[1], None, now), errors::NONE);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&ids[0], None, generation, now),
        errors::REBALANCE_IN_PROGRESS
    );
    assert_eq!(
        g.leave(&ids[1], None, now),
        errors::UNKNOWN_MEMBER_ID,
        "already gone"
    );
    // The only member left rejoins: the join phase completes at once.
    let mut j = join(&mut g, request(&ids[0]), now);
    let r = done(&mut j);
    assert_eq!(r.generation_id, generation + 1);
    assert_eq!(r.members.len(), 1);
    // The last one leaving empties the group.
    let _answer = sync(&mut g, &ids[0], generation + 1, &[], now);
    assert_eq!(g.leave(&ids[0], None, now), errors::NONE);
    assert_eq!(g.state(), GroupState::Empty);
    assert!(!g.has_members());
}

#[test]
fn an_expired_session_makes_the_others_rebalance() {
    let t0 = Instant::now();
    let (mut g, ids, generation, now) = stable_group(2, t0);
    assert_eq!(
        g.heartbeat(&ids[0], None, generation, now + secs(6)),
        errors::NONE
    );
    g.expire(now + SESSION - Duration::from_millis(1));
    assert_eq!(g.state(), GroupState::Stable);
    // No request at all: the deadline alone removes the silent member.
    g.expire(now + SESSION);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let later = now + SESSION;
    assert_eq!(
        g.heartbeat(&ids[1], None, generation, later),
        errors::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        g.heartbeat(&ids[0], None, generation, later),
        errors::REBALANCE_IN_PROGRESS
    );
    let mut j = join(&mut g, request(&ids[0]), later);
    let r = done(&mut j);
    assert_eq!((r.generation_id, r.members.len()), (generation + 1, 1));
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_timeout() {
    let t0 = Instant::now();
    let (mut g, ids, generation, now) = stable_group(2, t0);
    // The leader rejoining starts a rebalance.
    let mut j = join(&mut g, request(&ids[0]), now);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    // The follower keeps its session but never rejoins.
    let mut t = now;
    while t < now + REBALANCE - secs(5) {
        t += secs(5);
        assert_eq!(
            g.heartbeat(&ids[1], None, generation, t),
            errors::REBALANCE_IN_PROGRESS
        );
        g.expire(t);
    }
    assert!(waiting(&mut j));
    g.expire(now + REBALANCE);
    let r = done(&mut j);
    assert_eq!((r.generation_id, r.members.len()), (generation + 1, 1));
    assert_eq!(
        g.heartbeat(&ids[1], None, generation, now + REBALANCE),
        errors::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn a_leader_that_never_syncs_is_removed_and_the_group_rebalances() {
    let t0 = Instant::now();
    let mut g = Group::new(DELAY, t0);
    let mut a = join(&mut g, request(""), t0);
    let mut b = join(&mut g, request(""), t0);
    let now = settle(&mut g, t0);
    let (ra, rb) = (done(&mut a), done(&mut b));
    let (leader, follower) = if ra.leader == ra.member_id {
        (ra, rb)
    } else {
        (rb, ra)
    };
    let mut s = sync(&mut g, &follower.member_id, 1, &[], now);
    // Waiting for its assignment, the follower needs no heartbeat; the
    // leader's session ends first.
    g.expire(now + SESSION);
    assert_eq!(done(&mut s).error, errors::REBALANCE_IN_PROGRESS);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&leader.member_id, None, 1, now + SESSION),
        errors::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn members_that_never_sync_are_removed_at_the_rebalance_timeout() {
    let t0 = Instant::now();
    let mut g = Group::new(DELAY, t0);
    let mut a = join(&mut g, request(""), t0);
    let mut b = join(&mut g, request(""), t0);
    let now = settle(&mut g, t0);
    let (ra, rb) = (done(&mut a), done(&mut b));
    // Both heartbeat (so their sessions hold) but only the leader syncs.
    let (leader, other) = if ra.leader == ra.member_id {
        (ra, rb)
    } else {
        (rb, ra)
    };
    let _answer = sync(&mut g, &leader.member_id, 1, &[], now);
    let mut t = now;
    while t < now + REBALANCE {
        t += secs(5);
        assert_eq!(g.heartbeat(&leader.member_id, None, 1, t), errors::NONE);
        assert_eq!(g.heartbeat(&other.member_id, None, 1, t), errors::NONE);
        g.expire(t);
    }
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&other.member_id, None, 1, t),
        errors::UNKNOWN_MEMBER_ID
    );
}

/// Two static members "a" and "b", Stable; `(group, [id of a, id of b], now)`.
fn static_group(t0: Instant) -> (Group, [String; 2], Instant) {
    let mut g = Group::new(DELAY, t0);
    let mut a = join(&mut g, static_request("", "a"), t0);
    let mut b = join(&mut g, static_request("", "b"), t0);
    let now = settle(&mut g, t0);
    let (ra, rb) = (done(&mut a), done(&mut b));
    assert!(ra.member_id.starts_with("a-"), "{}", ra.member_id);
    let _answer = sync(&mut g, &rb.member_id, 1, &[], now);
    let assignments = [(ra.member_id.as_str(), "pa"), (rb.member_id.as_str(), "pb")];
    let _answer = sync(&mut g, &ra.leader, 1, &assignments, now);
    assert_eq!(g.state(), GroupState::Stable);
    (g, [ra.member_id, rb.member_id], now)
}

#[test]
fn a_static_member_rejoins_a_stable_group_without_a_rebalance() {
    let t0 = Instant::now();
    let (mut g, [a, b], now) = static_group(t0);
    // "b" restarts: no member id, same protocols.
    let mut j = join(&mut g, static_request("", "b"), now);
    let r = done(&mut j);
    assert_eq!(r.error, errors::NONE);
    assert_eq!(r.generation_id, 1);
    assert_ne!(r.member_id, b);
    assert!(r.member_id.starts_with("b-"));
    assert_eq!(r.leader, a);
    assert!(r.members.is_empty());
    assert_eq!(g.state(), GroupState::Stable);
    // It gets its old assignment back.
    let mut s = sync(&mut g, &r.member_id, 1, &[], now);
    assert_eq!(done(&mut s).assignment, Bytes::from_static(b"pb"));

    // The leader restarting is told the old leader id before v9 (so it
    // does not assign), and to skip the assignment from v9.
    let mut j = join(&mut g, static_request("", "a"), now);
    let r = done(&mut j);
    assert_eq!((r.leader.as_str(), r.skip_assignment), (a.as_str(), false));
    let mut j = join(
        &mut g,
        JoinRequest {
            supports_skip_assignment: true,
            ..static_request("", "a")
        },
        now,
    );
    let r = done(&mut j);
    assert_eq!(r.leader, r.member_id);
    assert!(r.skip_assignment);
    assert_eq!(r.members.len(), 2);
    assert_eq!(g.state(), GroupState::Stable);
    let mut s = sync(&mut g, &r.member_id, 1, &[], now);
    assert_eq!(done(&mut s).assignment, Bytes::from_static(b"pa"));

    // With changed protocols it rebalances.
    let _answer = join(
        &mut g,
        JoinRequest {
            protocols: vec![protocol("range", "new-subscription")],
            ..static_request("", "b")
        },
        now,
    );
    assert_eq!(g.state(), GroupState::PreparingRebalance);
}

#[test]
fn the_old_id_of_a_replaced_static_member_is_fenced() {
    let t0 = Instant::now();
    let (mut g, [_, old], now) = static_group(t0);
    let mut j = join(&mut g, static_request("", "b"), now);
    let new = done(&mut j).member_id;
    assert_eq!(
        g.heartbeat(&old, Some("b"), 1, now),
        errors::FENCED_INSTANCE_ID
    );
    assert_eq!(g.heartbeat(&old, None, 1, now), errors::UNKNOWN_MEMBER_ID);
    assert_eq!(
        g.check_commit(&old, Some("b"), 1, now),
        Err(errors::FENCED_INSTANCE_ID)
    );
    let mut j = join(&mut g, static_request(&old, "b"), now);
    assert_eq!(done(&mut j).error, errors::FENCED_INSTANCE_ID);
    assert_eq!(g.leave(&old, Some("b"), now), errors::FENCED_INSTANCE_ID);
    assert_eq!(g.heartbeat(&new, Some("b"), 1, now), errors::NONE);

    // A JoinGroup the old id has waiting is answered when it is replaced.
    let _newcomer = join(&mut g, request(""), now);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    let mut waiting_old = join(&mut g, static_request(&new, "b"), now);
    assert!(waiting(&mut waiting_old));
    let mut newer = join(&mut g, static_request("", "b"), now);
    assert_eq!(done(&mut waiting_old).error, errors::FENCED_INSTANCE_ID);
    assert!(waiting(&mut newer));
    // Static members leave by instance id.
    assert_eq!(g.leave("", Some("b"), now), errors::NONE);
    assert_eq!(done(&mut newer).error, errors::UNKNOWN_MEMBER_ID);
    assert_eq!(g.leave("", Some("b"), now), errors::UNKNOWN_MEMBER_ID);
}

#[test]
fn absent_static_members_keep_their_place_until_their_session_ends() {
    let t0 = Instant::now();
    let (mut g, [a, b], now) = static_group(t0);
    // The leader rejoining starts a rebalance; "b" heartbeats but does not rejoin.
    let mut j = join(&mut g, static_request(&a, "a"), now);
    let mut t = now;
    while t < now + REBALANCE {
        t += secs(5);
        assert_eq!(
            g.heartbeat(&b, Some("b"), 1, t),
            errors::REBALANCE_IN_PROGRESS
        );
        g.expire(t);
    }
    // Static, "b" stays a member of generation 2 (a dynamic one would not).
    let r = done(&mut j);
    assert_eq!((r.generation_id, r.members.len()), (2, 2));
    // Its session ends in time, and the group goes on without it.
    let mut s = sync(&mut g, &a, 2, &[], t);
    assert_eq!(done(&mut s).error, errors::NONE);
    assert_eq!(g.heartbeat(&a, Some("a"), 2, t + secs(5)), errors::NONE);
    g.expire(t + SESSION);
    assert_eq!(g.state(), GroupState::PreparingRebalance);
    assert_eq!(
        g.heartbeat(&b, Some("b"), 2, t + SESSION),
        errors::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn wrong_generations_are_illegal() {
    let t0 = Instant::now();
    let (mut g, ids, generation, now) = stable_group(2, t0);
    let stale = generation - 1;
    assert_eq!(
        g.heartbeat(&ids[0], None, stale, now),
        errors::ILLEGAL_GENERATION
    );
    assert_eq!(
        g.check_commit(&ids[0], None, stale, now),
        Err(errors::ILLEGAL_GENERATION)
    );
    let mut s = sync(&mut g, &ids[1], stale, &[], now);
    assert_eq!(done(&mut s).error, errors::ILLEGAL_GENERATION);
    assert_eq!(g.check_commit(&ids[0], None, generation, now), Ok(()));
    assert_eq!(
        g.check_commit("nobody", None, generation, now),
        Err(errors::UNKNOWN_MEMBER_ID)
    );
    // A commit from outside the group's membership needs an empty group.
    assert_eq!(
        g.check_commit("", None, -1, now),
        Err(errors::UNKNOWN_MEMBER_ID)
    );
    // During PreparingRebalance members may still commit; not in between.
    let _answer = join(&mut g, request(&ids[0]), now);
    assert_eq!(g.check_commit(&ids[1], None, generation, now), Ok(()));
    let _answer = join(&mut g, request(&ids[1]), now);
    assert_eq!(g.state(), GroupState::CompletingRebalance);
    assert_eq!(
        g.check_commit(&ids[1], None, generation + 1, now),
        Err(errors::REBALANCE_IN_PROGRESS)
    );
    assert_eq!(g.leave(&ids[0], None, now), errors::NONE);
    assert_eq!(g.leave(&ids[1], None, now), errors::NONE);
    assert_eq!(g.state(), GroupState::Empty);
    assert_eq!(g.check_commit("", None, -1, now), Ok(()));
}

#[test]
fn member_id_required_round_trip() {
    let t0 = Instant::now();
    let mut g = Group::new(DELAY, t0);
    let required = JoinRequest {
        require_known_member_id: true,
        ..request("")
    };
    let mut j = join(&mut g, required.clone(), t0);
    let r = done(&mut j);
    assert_eq!(r.error, errors::MEMBER_ID_REQUIRED);
    assert_eq!(r.generation_id, -1);
    assert!(r.member_id.starts_with("consumer-"));
    assert_eq!(g.state(), GroupState::Empty);
    assert!(!g.is_idle(t0, Duration::ZERO), "a member id is pending");

    let mut j = join(
        &mut g,
        JoinRequest {
            member_id: r.member_id.clone(),
            ..required.clone()
        },
        t0 + secs(1),
    );
    g.expire(t0 + secs(1) + DELAY);
    let joined = done(&mut j);
    assert_eq!(joined.error, errors::NONE);
    assert_eq!(joined.member_id, r.member_id);

    // An id the group never handed out.
    let mut j = join(&mut g, request("consumer-made-up"), t0 + secs(5));
    assert_eq!(done(&mut j).error, errors::UNKNOWN_MEMBER_ID);

    // An id handed out but never used expires with the session timeout.
    let mut j = join(&mut g, required, t0 + secs(5));
    let unused = done(&mut j).member_id;
    g.expire(t0 + secs(5) + SESSION);
    let mut j = join(&mut g, request(&unused), t0 + secs(5) + SESSION);
    assert_eq!(done(&mut j).error, errors::UNKNOWN_MEMBER_ID);
}

#[test]
fn protocols_must_be_shared_and_the_most_preferred_wins() {
    let t0 = Instant::now();
    let (mut g, ids, _, now) = stable_group(1, t0);
    let mut j = join(
        &mut g,
        JoinRequest {
            protocols: vec![protocol("roundrobin", "")],
            ..request("")
        },
        now,
    );
    assert_eq!(done(&mut j).error, errors::INCONSISTENT_GROUP_PROTOCOL);
    let mut j = join(
        &mut g,
        JoinRequest {
            protocol_type: "connect".into(),
            ..request("")
        },
        now,
    );
    assert_eq!(done(&mut j).error, errors::INCONSISTENT_GROUP_PROTOCOL);
    let mut j = join(
        &mut g,
        JoinRequest {
            protocols: vec![],
            ..request("")
        },
        now,
    );
    assert_eq!(done(&mut j).error, errors::INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(g.state(), GroupState::Stable);
    // The only member may change its protocols entirely.
    let mut j = join(
        &mut g,
        JoinRequest {
            protocols: vec![protocol("roundrobin", "")],
            ..request(&ids[0])
        },
        now,
    );
    assert_eq!(done(&mut j).protocol_name.as_deref(), Some("roundrobin"));

    let mut g = Group::new(DELAY, t0);
    let prefs: [&[&str]; 3] = [
        &["range", "roundrobin"],
        &["roundrobin", "range"],
        &["sticky", "roundrobin", "range"],
    ];
    let mut joins: Vec<_> = prefs
        .iter()
        .map(|names| {
            let protocols = names.iter().map(|n| protocol(n, "")).collect();
            join(
                &mut g,
                JoinRequest {
                    protocols,
                    ..request("")
                },
                t0,
            )
        })
        .collect();
    settle(&mut g, t0);
    for j in &mut joins {
        assert_eq!(done(j).protocol_name.as_deref(), Some("roundrobin"));
    }
}

#[test]
fn describe_shows_metadata_only_when_stable() {
    let t0 = Instant::now();
    let (mut g, ids, _, now) = stable_group(2, t0);
    let s = g.summary();
    assert_eq!((s.state.name(), s.protocol.as_str()), ("Stable", "range"));
    assert_eq!(s.protocol_type, "consumer");
    assert!(s.members.iter().all(|m| m.metadata == "sub"));
    let _answer = join(&mut g, request(&ids[0]), now);
    let s = g.summary();
    assert_eq!(
        (s.state.name(), s.protocol.as_str()),
        ("PreparingRebalance", "")
    );
    assert_eq!(s.members.len(), 2);
    assert!(s.members.iter().all(|m| m.metadata.is_empty()));
}

#[test]
fn an_empty_group_is_idle_after_its_retention() {
    let t0 = Instant::now();
    let (mut g, ids, _, now) = stable_group(1, t0);
    assert!(!g.is_idle(now, Duration::ZERO));
    assert_eq!(g.leave(&ids[0], None, now), errors::NONE);
    assert_eq!(g.generation(), 2);
    assert!(!g.is_idle(now, secs(60)));
    assert!(g.is_idle(now + secs(60), secs(60)));
    assert!(Group::new(DELAY, t0).is_idle(t0, secs(60)), "never formed");
}
