//! Which peers the metadata leader's Raft messages find down: a peer whose
//! last message was refused at the transport (nothing listens at its
//! address: the process died) is down until a message gets through again.
//!
//! Elections use it to skip the liveness lease for a dead leader: the
//! leader of a partition on a down node is asked whether it is there
//! (which a dead one answers with a refused connection at once) instead of
//! being waited on for the rest of its lease. A peer that is only slow or
//! cut off (messages time out) is not down here: the lease decides for it,
//! so a loaded node does not lose its partitions to a hiccup.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use parking_lot::Mutex;

use crate::types::NodeId;

/// What one Raft message to a peer came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Answered (with success or a Raft-level refusal: the node is there).
    Answered,
    /// The connection was refused or reset: nothing serves the address.
    Refused,
    /// No answer in time, or any other failure: says nothing about liveness.
    Unknown,
}

impl Delivery {
    /// How a gRPC status from a peer call is read: tonic reports a failed
    /// connect as `Unavailable`, but a call in flight on a connection the
    /// peer's death closed as `Unknown` with the I/O error (broken pipe,
    /// reset) as its source; the call's own deadline is `DeadlineExceeded`.
    pub fn of_status(status: &tonic::Status) -> Delivery {
        if status.code() == tonic::Code::Unavailable || closed_by_peer(status) {
            Delivery::Refused
        } else {
            Delivery::Unknown
        }
    }
}

/// Whether an I/O error in `status`'s sources says the peer's end of the
/// connection is gone (which a peer only stalled or cut off never causes).
fn closed_by_peer(status: &tonic::Status) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionRefused, ConnectionReset};
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                BrokenPipe | ConnectionReset | ConnectionAborted | ConnectionRefused
            )
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// The peers found down, and since when.
#[derive(Debug, Default)]
pub struct Reachability {
    down: Mutex<HashMap<NodeId, Instant>>,
}

impl Reachability {
    pub fn note(&self, peer: NodeId, delivery: Delivery) {
        let mut down = self.down.lock();
        match delivery {
            Delivery::Answered => {
                down.remove(&peer);
            }
            Delivery::Refused => {
                down.entry(peer).or_insert_with(Instant::now);
            }
            Delivery::Unknown => {}
        }
    }

    /// The peers whose last telling message was refused.
    pub fn down(&self) -> BTreeSet<NodeId> {
        self.down.lock().keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_peer_is_down_until_it_answers_and_timeouts_change_nothing() {
        let r = Reachability::default();
        r.note(2, Delivery::Refused);
        r.note(3, Delivery::Unknown);
        assert_eq!(r.down(), BTreeSet::from([2]));
        r.note(2, Delivery::Unknown);
        assert_eq!(r.down(), BTreeSet::from([2]), "a timeout does not clear it");
        r.note(2, Delivery::Answered);
        assert!(r.down().is_empty());
    }

    #[test]
    fn statuses_are_read_by_code() {
        let refused = tonic::Status::unavailable("tcp connect error");
        let late = tonic::Status::deadline_exceeded("peer call timed out");
        assert_eq!(Delivery::of_status(&refused), Delivery::Refused);
        assert_eq!(Delivery::of_status(&late), Delivery::Unknown);
        assert_eq!(
            Delivery::of_status(&tonic::Status::internal("bad reply")),
            Delivery::Unknown
        );
        let mut broken = tonic::Status::unknown("transport error");
        broken.set_source(std::sync::Arc::new(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "stream closed because of a broken pipe",
        )));
        assert_eq!(Delivery::of_status(&broken), Delivery::Refused);
        let mut other = tonic::Status::unknown("transport error");
        other.set_source(std::sync::Arc::new(std::io::Error::other("odd")));
        assert_eq!(Delivery::of_status(&other), Delivery::Unknown);
    }
}
