//! Handing a partition's leadership to another replica (a rebalance): the
//! leader stops taking writes, waits until the target holds its whole log,
//! and the metadata leader then runs an ordinary election that prefers the
//! target when its position is the largest. Nothing acknowledged can be
//! lost: the election's rule is the same as after a failure.

use std::time::{Duration, Instant};

use strata_api::{ApiError, ErrorCode};
use tracing::info;

use crate::broker::{Broker, Result};
use crate::errors::from_log;

/// How long a leader that stopped taking writes for a handoff waits for the
/// election before it takes writes again (the metadata leader may have died
/// in between; an election that does happen fences it first).
const RESUME_AFTER: Duration = Duration::from_secs(3);

/// How often the target's progress is looked at while it catches up.
const POLL: Duration = Duration::from_millis(5);

impl Broker {
    /// Stops writes to the partition `key` led here at `epoch`, and waits up
    /// to `wait` until replica `to` holds everything this leader has; the
    /// end offset it holds. On failure the partition takes writes again.
    #[tracing::instrument(skip(self))]
    pub(crate) async fn hand_off(
        &self,
        key: &str,
        epoch: u64,
        to: u64,
        wait: Duration,
    ) -> Result<u64> {
        let not_leading = || {
            ApiError::new(
                ErrorCode::NotLeader,
                format!("partition {key} is not led here at epoch {epoch}"),
            )
        };
        let state = self
            .replication
            .leader_state(key)
            .filter(|s| s.epoch == epoch)
            .ok_or_else(not_leading)?;
        let p = self.log.partition(key).map_err(from_log)?;
        // Appends already queued still land; new ones are refused
        // (retryably) from here on.
        p.set_follower(true);
        let deadline = Instant::now() + wait.min(RESUME_AFTER);
        loop {
            let end = p.offsets().end;
            if state.matched(to).is_some_and(|m| m >= end) {
                info!(
                    partition = key,
                    to, end, "handing off: the target holds the log"
                );
                self.resume_unless_elected(key, epoch);
                return Ok(end);
            }
            if Instant::now() >= deadline {
                p.set_follower(false);
                return Err(ApiError::new(
                    ErrorCode::ReplicationTimeout,
                    format!("replica {to} did not catch up with partition {key} within {wait:?}"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Notes that the partition stopped taking writes for a handoff at
    /// `epoch`: [`Broker::resume_stale_handoffs`] lets it take them again if
    /// no election follows.
    fn resume_unless_elected(&self, key: &str, epoch: u64) {
        self.replication
            .handoffs
            .lock()
            .insert(key.to_string(), (epoch, Instant::now()));
    }

    /// Run by each reconcile pass: a partition still led here at the epoch
    /// of a handoff [`RESUME_AFTER`] ago (no election came) takes writes
    /// again; handoffs of partitions no longer led at that epoch are dropped.
    pub(crate) fn resume_stale_handoffs(&self) {
        let mut handoffs = self.replication.handoffs.lock();
        handoffs.retain(|key, (epoch, at)| {
            let leading = self
                .replication
                .leader_state(key)
                .is_some_and(|s| s.epoch == *epoch);
            if !leading {
                return false;
            }
            if at.elapsed() < RESUME_AFTER {
                return true;
            }
            if let Ok(p) = self.log.partition(key) {
                info!(
                    partition = key,
                    epoch, "no election followed the handoff: taking writes again"
                );
                p.set_follower(false);
            }
            false
        });
    }
}
