//! One consumer group of the classic protocol as a state machine: no
//! sockets, no clocks, no sleeping. Every method takes `now` and deadlines
//! are checked when the coordinator calls [`Group::expire`]; a JoinGroup or
//! SyncGroup that must wait leaves its `oneshot` sender in the member entry
//! and is answered through it.
//!
//! It follows Apache Kafka's classic `GroupCoordinator`:
//!
//! ```text
//!   Empty ──join──> PreparingRebalance ──every member rejoined, or the
//!     ^                  ^      |          rebalance timeout──> CompletingRebalance
//!     |                  |      └──no member left──> Empty           |
//!     |        join, leave, expiry                            leader's SyncGroup
//!     |                  |                                           v
//!     └──────────────────┴───────────────────────────────────────  Stable
//! ```
//!
//! Deadlines, all from the members' own requests:
//! - session timeout: a member that sends nothing (heartbeat, join, sync,
//!   commit) for this long is removed. Members waiting for a join or sync
//!   answer are kept; a new member's first join may wait 5 minutes.
//! - rebalance timeout (the largest of the members'): how long the join phase
//!   waits for known members to rejoin, and how long members have to send
//!   SyncGroup after it; latecomers are removed.
//! - initial rebalance delay: a join phase that starts from Empty waits this
//!   long for more members, again while new ones keep arriving, at most
//!   the rebalance timeout (Kafka's `InitialDelayedJoin`).

mod member;
mod ops;
mod types;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::errors;
use member::{Member, answer, new_member_id};
pub(crate) use types::{
    GroupState, GroupSummary, JoinMember, JoinRequest, JoinResult, JoinSender, MemberSummary,
    Protocol, SyncRequest, SyncResult, SyncSender,
};

/// How long the first JoinGroup of a new member may wait before the member
/// is dropped (Kafka's `group.new.member.join.timeout`): it cannot heartbeat
/// yet, and a client that gave up would otherwise hold every rebalance.
const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// Prefix of the member ids of dynamic members (Kafka uses the client id,
/// which the coordinator is not told).
const MEMBER_ID_PREFIX: &str = "consumer";

/// One group's membership.
pub(crate) struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → its current member id.
    static_members: HashMap<String, String>,
    /// Ids handed out with MEMBER_ID_REQUIRED, until their rejoin deadline.
    pending_members: HashMap<String, Instant>,
    /// Members that have not sent SyncGroup since the join phase completed.
    pending_sync: HashSet<String>,
    initial_delay: Duration,
    /// When the join phase in progress completes at the latest.
    join_deadline: Option<Instant>,
    /// While the initial delay runs: how much longer it may still be extended.
    initial_join_remaining: Option<Duration>,
    new_member_added: bool,
    /// When members that have not synced are removed.
    sync_deadline: Option<Instant>,
    empty_since: Option<Instant>,
}

impl Group {
    pub fn new(initial_delay: Duration, now: Instant) -> Group {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            initial_delay,
            join_deadline: None,
            initial_join_remaining: None,
            new_member_added: false,
            sync_deadline: None,
            empty_since: Some(now),
        }
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    #[cfg(test)]
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The protocol type, or "" (ListGroups).
    pub fn protocol_type(&self) -> &str {
        self.protocol_type.as_deref().unwrap_or_default()
    }

    #[cfg(test)]
    pub fn has_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// Empty, with no member to come back, for at least `retention` (or
    /// never formed): nothing is lost by forgetting it.
    pub fn is_idle(&self, now: Instant, retention: Duration) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending_members.is_empty()
            && (self.generation == 0
                || self
                    .empty_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= retention))
    }

    /// Handles a JoinGroup; the answer goes to `tx`, now or when the join
    /// phase completes.
    pub fn join(&mut self, request: JoinRequest, tx: JoinSender, now: Instant) {
        let known = !request.member_id.is_empty();
        // The member this join replaces does not vote with its old protocols.
        let rejoining = if known {
            Some(request.member_id.clone())
        } else {
            request
                .group_instance_id
                .as_ref()
                .and_then(|i| self.static_members.get(i).cloned())
        };
        if self.state == GroupState::Dead {
            answer(
                tx,
                JoinResult::error(request.member_id, errors::COORDINATOR_NOT_AVAILABLE),
            );
        } else if !self.supports_protocols(&request, rejoining.as_deref()) {
            answer(
                tx,
                JoinResult::error(request.member_id, errors::INCONSISTENT_GROUP_PROTOCOL),
            );
        } else if known {
            self.join_known(request, tx, now);
        } else {
            self.join_new(request, tx, now);
        }
        self.try_complete_join(now);
    }

    /// Whether the group can take a member with these protocols: the same
    /// protocol type, and one protocol every other member supports.
    fn supports_protocols(&self, request: &JoinRequest, except: Option<&str>) -> bool {
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(request.protocol_type.as_str()) {
            return false;
        }
        request.protocols.iter().any(|p| {
            self.members
                .values()
                .filter(|m| Some(m.id.as_str()) != except)
                .all(|m| m.supports(&p.name))
        })
    }

    fn join_new(&mut self, request: JoinRequest, tx: JoinSender, now: Instant) {
        match request.group_instance_id.clone() {
            Some(instance) => {
                let new_id = new_member_id(&instance);
                match self.static_members.get(&instance).cloned() {
                    Some(old_id) => self.replace_static_member(old_id, new_id, request, tx, now),
                    None => self.add_member(new_id, request, tx, now),
                }
            }
            None if request.require_known_member_id => {
                let new_id = new_member_id(MEMBER_ID_PREFIX);
                self.pending_members
                    .insert(new_id.clone(), now + request.session_timeout);
                answer(tx, JoinResult::error(new_id, errors::MEMBER_ID_REQUIRED));
            }
            None => {
                let new_id = new_member_id(MEMBER_ID_PREFIX);
                self.add_member(new_id, request, tx, now);
            }
        }
    }

    fn join_known(&mut self, request: JoinRequest, tx: JoinSender, now: Instant) {
        let id = request.member_id.clone();
        if self.pending_members.contains_key(&id) {
            if request.group_instance_id.is_some() {
                // Pending ids are only handed to dynamic members.
                answer(tx, JoinResult::error(id, errors::UNKNOWN_MEMBER_ID));
            } else {
                self.add_member(id, request, tx, now);
            }
            return;
        }
        if let Err(e) = self.validate_member(&id, request.group_instance_id.as_deref()) {
            answer(tx, JoinResult::error(id, e));
            return;
        }
        let is_leader = self.leader.as_deref() == Some(id.as_str());
        let Some(member) = self.members.get_mut(&id) else {
            answer(tx, JoinResult::error(id, errors::UNKNOWN_MEMBER_ID));
            return;
        };
        let unchanged = member.matches(&request.protocols);
        match self.state {
            GroupState::CompletingRebalance if unchanged => {
                // It missed the join answer: send it again.
                member.heard_from(now);
                answer(tx, self.current_generation(&id, is_leader));
            }
            GroupState::Stable if unchanged && !is_leader => {
                // Nothing changed: the member may go straight to SyncGroup.
                member.heard_from(now);
                answer(tx, self.current_generation(&id, false));
            }
            GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
            | GroupState::Stable => {
                // Changed metadata, or the leader asking for a new assignment.
                member.update(request, tx, now);
                self.maybe_prepare_rebalance(now);
            }
            GroupState::Empty | GroupState::Dead => {
                answer(tx, JoinResult::error(id, errors::UNKNOWN_MEMBER_ID));
            }
        }
    }

    /// This generation as the member `member_id` is told it.
    fn current_generation(&self, member_id: &str, with_members: bool) -> JoinResult {
        JoinResult {
            error: errors::NONE,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            skip_assignment: false,
            members: if with_members {
                self.member_list()
            } else {
                Vec::new()
            },
        }
    }

    fn add_member(&mut self, id: String, request: JoinRequest, tx: JoinSender, now: Instant) {
        if self.state == GroupState::PreparingRebalance && self.initial_join_remaining.is_some() {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(id.clone());
        }
        if let Some(instance) = &request.group_instance_id {
            self.static_members.insert(instance.clone(), id.clone());
        }
        self.pending_members.remove(&id);
        let member = Member {
            id: id.clone(),
            instance_id: request.group_instance_id,
            protocols: request.protocols,
            session_timeout: request.session_timeout,
            rebalance_timeout: request.rebalance_timeout,
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            deadline: now + NEW_MEMBER_JOIN_TIMEOUT,
            is_new: true,
        };
        self.members.insert(id, member);
        self.maybe_prepare_rebalance(now);
    }

    /// A known group.instance.id joins with a new member id: the new id
    /// takes over the old member (and its assignment); the old id is fenced.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        request: JoinRequest,
        tx: JoinSender,
        now: Instant,
    ) {
        let Some(mut member) = self.members.remove(&old_id) else {
            self.add_member(new_id, request, tx, now);
            return;
        };
        let current_leader = self.leader.clone().unwrap_or_default();
        if let Some(old) = member.awaiting_join.take() {
            answer(old, JoinResult::error(&old_id, errors::FENCED_INSTANCE_ID));
        }
        if let Some(old) = member.awaiting_sync.take() {
            answer(old, SyncResult::error(errors::FENCED_INSTANCE_ID));
        }
        let unchanged = member.matches(&request.protocols);
        let skip_supported = request.supports_skip_assignment;
        if let Some(instance) = &member.instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        if self.pending_sync.remove(&old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        member.id = new_id.clone();
        member.update(request, tx, now);
        self.members.insert(new_id.clone(), member);

        match self.state {
            GroupState::Stable if unchanged => {
                // Kafka: no rebalance; the member gets its assignment back at
                // SyncGroup. Told the old leader id, a leader before v9 does
                // not compute an assignment no one would receive.
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                let skip = is_leader && skip_supported;
                let mut result = self.current_generation(&new_id, skip);
                result.skip_assignment = skip;
                if !skip {
                    result.leader = current_leader;
                }
                if let Some(tx) = self
                    .members
                    .get_mut(&new_id)
                    .and_then(|m| m.awaiting_join.take())
                {
                    answer(tx, result);
                }
            }
            // The leader may be assigning for the old id: start over.
            GroupState::CompletingRebalance => self.prepare_rebalance(now),
            _ => self.maybe_prepare_rebalance(now),
        }
    }

    /// `Ok` if `member_id` is a member (and, if given, holds `instance_id`).
    fn validate_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), i16> {
        match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => Err(errors::UNKNOWN_MEMBER_ID),
                Some(current) if current != member_id => Err(errors::FENCED_INSTANCE_ID),
                Some(_) => Ok(()),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(errors::UNKNOWN_MEMBER_ID),
        }
    }

    fn rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default()
    }

    fn maybe_prepare_rebalance(&mut self, now: Instant) {
        if matches!(
            self.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(now);
        }
    }

    fn prepare_rebalance(&mut self, now: Instant) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for an assignment must rejoin instead.
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.awaiting_sync.take() {
                    answer(tx, SyncResult::error(errors::REBALANCE_IN_PROGRESS));
                }
            }
        }
        self.sync_deadline = None;
        self.pending_sync.clear();
        let timeout = self.rebalance_timeout();
        if self.state == GroupState::Empty && !self.initial_delay.is_zero() {
            self.join_deadline = Some(now + self.initial_delay);
            self.initial_join_remaining = Some(timeout.saturating_sub(self.initial_delay));
            self.new_member_added = false;
        } else {
            self.join_deadline = Some(now + timeout);
            self.initial_join_remaining = None;
        }
        self.state = GroupState::PreparingRebalance;
        self.empty_since = None;
        self.try_complete_join(now);
    }

    /// Completes the join phase if every known member has rejoined (not
    /// while the initial delay runs: it waits for members not known yet).
    fn try_complete_join(&mut self, now: Instant) {
        if self.state == GroupState::PreparingRebalance
            && self.initial_join_remaining.is_none()
            && self.pending_members.is_empty()
            && self.members.values().all(|m| m.awaiting_join.is_some())
        {
            self.complete_join(now);
        }
    }

    fn on_join_deadline(&mut self, now: Instant) {
        if let Some(remaining) = self.initial_join_remaining {
            if self.new_member_added && !remaining.is_zero() {
                // Someone new came: wait once more for the next.
                self.new_member_added = false;
                let delay = self.initial_delay.min(remaining);
                self.initial_join_remaining = Some(remaining - delay);
                self.join_deadline = Some(now + delay);
                return;
            }
            self.initial_join_remaining = None;
        }
        self.complete_join(now);
    }

    fn complete_join(&mut self, now: Instant) {
        // Dynamic members that did not rejoin are gone; static ones keep
        // their place until their session expires.
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        if !self.members.is_empty() && !self.elect_joined_leader() {
            // Only absent static members are left: wait for them (or for
            // their sessions to end).
            self.join_deadline = Some(now + self.rebalance_timeout());
            return;
        }
        self.generation = self.generation.checked_add(1).unwrap_or(1);
        self.join_deadline = None;
        self.pending_sync.clear();
        if self.members.is_empty() {
            self.protocol_name = None;
            self.state = GroupState::Empty;
            self.empty_since = Some(now);
            return;
        }
        let protocol = self.select_protocol();
        self.protocol_name = Some(protocol.clone());
        self.state = GroupState::CompletingRebalance;
        let leader = self.leader.clone().unwrap_or_default();
        let list = self.member_list();
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_join.take() {
                let members = if m.id == leader {
                    list.clone()
                } else {
                    Vec::new()
                };
                let result = JoinResult {
                    error: errors::NONE,
                    generation_id: self.generation,
                    protocol_type: self.protocol_type.clone(),
                    protocol_name: Some(protocol.clone()),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    skip_assignment: false,
                    members,
                };
                answer(tx, result);
            }
            m.deadline = now + m.session_timeout;
            m.is_new = false;
            self.pending_sync.insert(m.id.clone());
        }
        self.sync_deadline = Some(now + self.rebalance_timeout());
    }

    /// Keeps the leader if it rejoined, else picks a member that did;
    /// `false` if none did.
    fn elect_joined_leader(&mut self) -> bool {
        let leader_joined = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .is_some_and(|m| m.awaiting_join.is_some());
        if leader_joined {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// The protocol every member supports that most members prefer (each
    /// votes for its first such protocol); ties go to the leader's order.
    fn select_protocol(&self) -> String {
        let reference = self
            .leader
            .as_ref()
            .and_then(|l| self.members.get(l))
            .or_else(|| self.members.values().next());
        let Some(reference) = reference else {
            return String::new();
        };
        let candidates: Vec<&str> = reference
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for m in self.members.values() {
            if let Some(p) = m
                .protocols
                .iter()
                .find(|p| candidates.contains(&p.name.as_str()))
            {
                *votes.entry(p.name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for c in candidates {
            let n = votes.get(c).copied().unwrap_or(0);
            if best.is_none_or(|(_, most)| n > most) {
                best = Some((c, n));
            }
        }
        best.map(|(c, _)| c.to_string()).unwrap_or_default()
    }

    /// Every member with its metadata for the selected protocol (the leader's view).
    fn member_list(&self) -> Vec<JoinMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinMember {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    /// Removes a member without starting a rebalance; a JoinGroup or
    /// SyncGroup it has waiting is answered with UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, id: &str) {
        let Some(mut member) = self.members.remove(id) else {
            return;
        };
        if let Some(tx) = member.awaiting_join.take() {
            answer(tx, JoinResult::error("", errors::UNKNOWN_MEMBER_ID));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            answer(tx, SyncResult::error(errors::UNKNOWN_MEMBER_ID));
        }
        if let Some(instance) = &member.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(id)
        {
            self.static_members.remove(instance);
        }
        self.pending_sync.remove(id);
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// Removes a member and lets the others rebalance without it.
    fn remove_member_and_rebalance(&mut self, id: &str, now: Instant) {
        self.remove_member(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }
}

#[cfg(test)]
mod tests;
