//! One member of a group, and member ids.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{JoinRequest, JoinSender, Protocol, SyncSender};

pub(super) struct Member {
    pub(super) id: String,
    pub(super) instance_id: Option<String>,
    pub(super) protocols: Vec<Protocol>,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) assignment: Bytes,
    pub(super) awaiting_join: Option<JoinSender>,
    pub(super) awaiting_sync: Option<SyncSender>,
    /// The member is removed if nothing is heard from it by then.
    pub(super) deadline: Instant,
    /// Added in the join phase in progress (its first JoinGroup is waiting).
    pub(super) is_new: bool,
}

impl Member {
    pub(super) fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol)
    }

    pub(super) fn matches(&self, protocols: &[Protocol]) -> bool {
        self.protocols == protocols
    }

    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    pub(super) fn heard_from(&mut self, now: Instant) {
        self.deadline = self.deadline.max(now + self.session_timeout);
    }

    /// Whether the member's session still holds at `now`.
    pub(super) fn alive(&self, now: Instant) -> bool {
        if !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some()) {
            // Waiting for the coordinator, it cannot be expected to heartbeat.
            return true;
        }
        now < self.deadline
    }

    pub(super) fn update(&mut self, request: JoinRequest, tx: JoinSender, now: Instant) {
        self.protocols = request.protocols;
        self.session_timeout = request.session_timeout;
        self.rebalance_timeout = request.rebalance_timeout;
        // A JoinGroup sent again replaces the first (whose client gave up on it).
        self.awaiting_join = Some(tx);
        self.heard_from(now);
    }
}

/// Sends an answer; a requester that went away is no longer interested.
pub(super) fn answer<T>(tx: oneshot::Sender<T>, value: T) {
    let _ = tx.send(value);
}

/// A fresh member id: `{prefix}-{uuid}` as in Kafka (a random v4 UUID).
pub(super) fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}
