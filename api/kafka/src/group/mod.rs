//! The classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, the offset APIs and group administration) for the groups
//! this node coordinates: every group on a single node; in a cluster, the
//! groups the broker assigns to this node by their hash
//! (`Broker::group_coordinator`). A request for a group coordinated by
//! another node gets NOT_COORDINATOR (clients then ask FindCoordinator)
//! and never reaches the [`Coordinator`].
//!
//! [`state`] is one group's membership as a state machine that never sees a
//! socket or a clock. [`Coordinator`] keeps the groups, keyed by tenant and
//! group id so tenants never meet, behind one mutex, and runs their
//! deadlines from a background task that ticks every 100 ms (started on the
//! first JoinGroup, it holds only a weak reference and ends with the
//! coordinator). A waiting JoinGroup or SyncGroup is a `oneshot` receiver
//! its handler awaits on its own task. Membership lives in memory: after a
//! restart members rejoin, as after a Kafka coordinator moves. Committed
//! offsets live in the broker's metadata store.

pub(crate) mod delete;
pub(crate) mod describe;
pub(crate) mod heartbeat;
pub(crate) mod join;
pub(crate) mod leave;
pub(crate) mod list;
pub(crate) mod offset_commit;
pub(crate) mod offset_fetch;
pub(crate) mod state;
pub(crate) mod sync;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kafka_protocol::messages::GroupId;
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::config::KafkaConfig;
use crate::errors;
use state::{Group, GroupState, GroupSummary, JoinRequest, JoinResult, SyncRequest, SyncResult};

/// How often deadlines (sessions, join and sync phases) are checked: a
/// deadline is acted on at most this late.
const TICK: Duration = Duration::from_millis(100);

/// How long a group with no members is remembered (its protocol type and
/// generation; its offsets stay in the broker regardless).
const EMPTY_GROUP_RETENTION: Duration = Duration::from_secs(600);

/// tenant → group id → group.
type Groups = HashMap<String, HashMap<String, Group>>;

struct Inner {
    groups: Mutex<Groups>,
    initial_delay: Duration,
}

impl Inner {
    fn expire(&self, now: Instant) {
        let mut groups = self.groups.lock();
        for tenant in groups.values_mut() {
            for group in tenant.values_mut() {
                group.expire(now);
            }
            tenant.retain(|_, g| !g.is_idle(now, EMPTY_GROUP_RETENTION));
        }
        groups.retain(|_, tenant| !tenant.is_empty());
    }
}

/// Every group's membership.
pub(crate) struct Coordinator {
    inner: Arc<Inner>,
    min_session: Duration,
    max_session: Duration,
    ticking: AtomicBool,
}

/// What [`Coordinator::delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    /// The group had no members and is forgotten.
    Removed,
    /// The group has members (NON_EMPTY_GROUP).
    NotEmpty,
    /// The coordinator does not know the group (it may have offsets).
    Unknown,
}

impl Coordinator {
    pub fn new(config: &KafkaConfig) -> Coordinator {
        Coordinator {
            inner: Arc::new(Inner {
                groups: Mutex::new(HashMap::new()),
                initial_delay: config.group_initial_rebalance_delay,
            }),
            min_session: config.group_min_session_timeout,
            max_session: config.group_max_session_timeout,
            ticking: AtomicBool::new(false),
        }
    }

    /// A client's session timeout if the coordinator allows it.
    pub fn session_timeout(&self, ms: i32) -> Option<Duration> {
        let timeout = Duration::from_millis(u64::try_from(ms).ok()?);
        (self.min_session..=self.max_session)
            .contains(&timeout)
            .then_some(timeout)
    }

    /// Starts the deadline task, once, if there is a runtime to run it.
    fn start_ticking(&self) {
        if self.ticking.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.ticking.store(false, Ordering::Release);
            return;
        };
        let inner = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(inner) = inner.upgrade() else {
                    break;
                };
                inner.expire(Instant::now());
            }
        });
    }

    /// Runs `f` on the group, if it exists.
    fn with_group<T>(
        &self,
        tenant: &str,
        group: &str,
        f: impl FnOnce(&mut Group) -> T,
    ) -> Option<T> {
        let mut groups = self.inner.groups.lock();
        groups.get_mut(tenant).and_then(|t| t.get_mut(group)).map(f)
    }

    /// Handles a JoinGroup; the receiver gets the answer, at once or when
    /// the join phase completes. A group is created by its first member.
    pub fn join(
        &self,
        tenant: &str,
        group: &str,
        request: JoinRequest,
    ) -> oneshot::Receiver<JoinResult> {
        self.start_ticking();
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let mut groups = self.inner.groups.lock();
        let existing = groups.get_mut(tenant).and_then(|t| t.get_mut(group));
        match existing {
            Some(g) => g.join(request, tx, now),
            None if request.member_id.is_empty() => {
                let mut g = Group::new(self.inner.initial_delay, now);
                g.join(request, tx, now);
                groups
                    .entry(tenant.to_string())
                    .or_default()
                    .insert(group.to_string(), g);
            }
            None => {
                let _ = tx.send(JoinResult::error(
                    request.member_id,
                    errors::UNKNOWN_MEMBER_ID,
                ));
            }
        }
        rx
    }

    /// Handles a SyncGroup; the receiver gets the answer, at once or when
    /// the leader sends the assignment.
    pub fn sync(
        &self,
        tenant: &str,
        group: &str,
        request: SyncRequest,
    ) -> oneshot::Receiver<SyncResult> {
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let mut groups = self.inner.groups.lock();
        match groups.get_mut(tenant).and_then(|t| t.get_mut(group)) {
            Some(g) => g.sync(request, tx, now),
            None => {
                let _ = tx.send(SyncResult::error(errors::UNKNOWN_MEMBER_ID));
            }
        }
        rx
    }

    pub fn heartbeat(
        &self,
        tenant: &str,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        let now = Instant::now();
        self.with_group(tenant, group, |g| {
            g.heartbeat(member_id, instance_id, generation, now)
        })
        .unwrap_or(errors::UNKNOWN_MEMBER_ID)
    }

    /// Removes members (member id, or empty and the instance id): one error
    /// code per member.
    pub fn leave(
        &self,
        tenant: &str,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Vec<i16> {
        let now = Instant::now();
        self.with_group(tenant, group, |g| {
            members
                .iter()
                .map(|(id, instance)| g.leave(id, instance.as_deref(), now))
                .collect()
        })
        .unwrap_or_else(|| vec![errors::UNKNOWN_MEMBER_ID; members.len()])
    }

    /// Whether an OffsetCommit may store offsets (see [`Group::check_commit`]).
    pub fn check_commit(
        &self,
        tenant: &str,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        let now = Instant::now();
        match self.with_group(tenant, group, |g| {
            g.check_commit(member_id, instance_id, generation, now)
        }) {
            Some(checked) => checked,
            // No members: only a commit from outside group management.
            None if generation < 0 && member_id.is_empty() && instance_id.is_none() => Ok(()),
            None if generation >= 0 => Err(errors::ILLEGAL_GENERATION),
            None => Err(errors::UNKNOWN_MEMBER_ID),
        }
    }

    pub fn describe(&self, tenant: &str, group: &str) -> Option<GroupSummary> {
        self.with_group(tenant, group, |g| g.summary())
    }

    /// The tenant's groups: `(group id, protocol type, state)`.
    pub fn list(&self, tenant: &str) -> Vec<(String, String, GroupState)> {
        let groups = self.inner.groups.lock();
        groups
            .get(tenant)
            .map(|t| {
                t.iter()
                    .map(|(id, g)| (id.clone(), g.protocol_type().to_string(), g.state()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets a group that has no members.
    pub fn delete(&self, tenant: &str, group: &str) -> Deleted {
        let mut groups = self.inner.groups.lock();
        let Some(t) = groups.get_mut(tenant) else {
            return Deleted::Unknown;
        };
        match t.get(group) {
            None => Deleted::Unknown,
            Some(g) if g.state() != GroupState::Empty => Deleted::NotEmpty,
            Some(_) => {
                t.remove(group);
                if t.is_empty() {
                    groups.remove(tenant);
                }
                Deleted::Removed
            }
        }
    }
}

/// A group id from the wire.
pub(crate) fn group_name(id: &GroupId) -> String {
    id.0.to_string()
}

/// An optional string from the wire (an empty instance id means none).
pub(crate) fn instance_id(id: Option<&StrBytes>) -> Option<String> {
    id.filter(|s| !s.is_empty()).map(|s| s.to_string())
}

/// A string for the wire.
pub(crate) fn wire(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

#[cfg(test)]
mod tests;
