//! The requests of a formed group: SyncGroup, Heartbeat, LeaveGroup, the
//! OffsetCommit check, deadlines and DescribeGroups.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;

use super::member::answer;
use super::{Group, GroupState, GroupSummary, MemberSummary, SyncRequest, SyncResult, SyncSender};
use crate::errors;

/// Whether a protocol type or name a SyncGroup gives differs from the group's.
fn inconsistent(asked: &Option<String>, ours: &Option<String>) -> bool {
    matches!((asked, ours), (Some(a), Some(o)) if a != o)
}

impl Group {
    /// Handles a SyncGroup; the answer goes to `tx`, now or when the leader
    /// sends the assignment.
    pub fn sync(&mut self, request: SyncRequest, tx: SyncSender, now: Instant) {
        let id = request.member_id.as_str();
        let checked = if self.state == GroupState::Dead {
            Err(errors::COORDINATOR_NOT_AVAILABLE)
        } else {
            self.validate_member(id, request.group_instance_id.as_deref())
        };
        let checked = checked.and_then(|()| {
            if request.generation_id != self.generation {
                Err(errors::ILLEGAL_GENERATION)
            } else if inconsistent(&request.protocol_type, &self.protocol_type)
                || inconsistent(&request.protocol_name, &self.protocol_name)
            {
                Err(errors::INCONSISTENT_GROUP_PROTOCOL)
            } else {
                match self.state {
                    GroupState::Empty | GroupState::Dead => Err(errors::UNKNOWN_MEMBER_ID),
                    GroupState::PreparingRebalance => Err(errors::REBALANCE_IN_PROGRESS),
                    GroupState::CompletingRebalance | GroupState::Stable => Ok(()),
                }
            }
        });
        if let Err(e) = checked {
            answer(tx, SyncResult::error(e));
            return;
        }
        let is_leader = self.leader.as_deref() == Some(id);
        let Some(member) = self.members.get_mut(id) else {
            answer(tx, SyncResult::error(errors::UNKNOWN_MEMBER_ID));
            return;
        };
        member.heard_from(now);
        self.pending_sync.remove(id);
        if self.pending_sync.is_empty() {
            self.sync_deadline = None;
        }
        if self.state == GroupState::Stable {
            let assignment = member.assignment.clone();
            answer(tx, self.sync_result(assignment));
            return;
        }
        // CompletingRebalance: wait for the leader's assignment.
        member.awaiting_sync = Some(tx);
        if is_leader {
            let assignments: HashMap<String, Bytes> = request.assignments.into_iter().collect();
            let (protocol_type, protocol_name) =
                (self.protocol_type.clone(), self.protocol_name.clone());
            for m in self.members.values_mut() {
                m.assignment = assignments.get(&m.id).cloned().unwrap_or_default();
                if let Some(tx) = m.awaiting_sync.take() {
                    answer(
                        tx,
                        SyncResult {
                            error: errors::NONE,
                            protocol_type: protocol_type.clone(),
                            protocol_name: protocol_name.clone(),
                            assignment: m.assignment.clone(),
                        },
                    );
                }
            }
            self.state = GroupState::Stable;
        }
    }

    fn sync_result(&self, assignment: Bytes) -> SyncResult {
        SyncResult {
            error: errors::NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    /// Handles a Heartbeat: its error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return errors::COORDINATOR_NOT_AVAILABLE;
        }
        if let Err(e) = self.validate_member(member_id, instance_id) {
            return e;
        }
        if generation != self.generation {
            return errors::ILLEGAL_GENERATION;
        }
        let state = self.state;
        let Some(member) = self.members.get_mut(member_id) else {
            return errors::UNKNOWN_MEMBER_ID;
        };
        match state {
            GroupState::Empty | GroupState::Dead => errors::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => {
                member.heard_from(now);
                errors::REBALANCE_IN_PROGRESS
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.heard_from(now);
                errors::NONE
            }
        }
    }

    /// Handles one member of a LeaveGroup (by member id, or by instance id
    /// with an empty member id): its error code.
    pub fn leave(&mut self, member_id: &str, instance_id: Option<&str>, now: Instant) -> i16 {
        if self.state == GroupState::Dead {
            return errors::COORDINATOR_NOT_AVAILABLE;
        }
        if member_id.is_empty() {
            let current = instance_id.and_then(|i| self.static_members.get(i).cloned());
            return match current {
                Some(id) => {
                    self.remove_member_and_rebalance(&id, now);
                    errors::NONE
                }
                None => errors::UNKNOWN_MEMBER_ID,
            };
        }
        if self.pending_members.remove(member_id).is_some() {
            self.try_complete_join(now);
            return errors::NONE;
        }
        match self.validate_member(member_id, instance_id) {
            Ok(()) => {
                self.remove_member_and_rebalance(member_id, now);
                errors::NONE
            }
            Err(e) => e,
        }
    }

    /// Whether an OffsetCommit may store offsets now. A commit with no
    /// member and a negative generation is from a client that does not use
    /// the group's membership, allowed only while the group has no members.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(errors::COORDINATOR_NOT_AVAILABLE);
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            self.validate_member(member_id, instance_id)?;
            if generation != self.generation {
                return Err(errors::ILLEGAL_GENERATION);
            }
        } else if self.state != GroupState::Empty {
            return Err(errors::UNKNOWN_MEMBER_ID);
        }
        match self.state {
            // The member has its new generation but not its assignment yet.
            GroupState::CompletingRebalance => Err(errors::REBALANCE_IN_PROGRESS),
            // Commits during PreparingRebalance are allowed, as in Kafka: the
            // consumer commits what it consumed before it rejoins.
            _ => {
                if let Some(member) = self.members.get_mut(member_id) {
                    member.heard_from(now);
                }
                Ok(())
            }
        }
    }

    /// Applies every deadline that has passed by `now`.
    pub fn expire(&mut self, now: Instant) {
        let late_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &late_pending {
            self.pending_members.remove(id);
        }
        if !late_pending.is_empty() {
            self.try_complete_join(now);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.alive(now))
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            // A rebalance completed by an earlier removal may have renewed it.
            if self.members.get(&id).is_some_and(|m| !m.alive(now)) {
                self.remove_member_and_rebalance(&id, now);
            }
        }
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline.is_some_and(|d| d <= now)
        {
            self.on_join_deadline(now);
        }
        if matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) && self.sync_deadline.is_some_and(|d| d <= now)
        {
            self.sync_deadline = None;
            if !self.pending_sync.is_empty() {
                let late: Vec<String> = self.pending_sync.drain().collect();
                for id in late {
                    self.remove_member(&id);
                }
                self.prepare_rebalance(now);
            }
        }
    }

    pub fn summary(&self) -> GroupSummary {
        let stable = self.state == GroupState::Stable;
        let protocol = if stable {
            self.protocol_name.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let members = self
            .members
            .values()
            .map(|m| MemberSummary {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                metadata: if stable {
                    m.metadata(&protocol)
                } else {
                    Bytes::new()
                },
                assignment: if stable {
                    m.assignment.clone()
                } else {
                    Bytes::new()
                },
            })
            .collect();
        GroupSummary {
            state: self.state,
            protocol_type: self.protocol_type().to_string(),
            protocol,
            members,
        }
    }
}
