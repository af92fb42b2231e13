//! The rules of quorum replication, as pure functions: no sockets, no
//! clocks, no logs. The leader, the followers and the election all call
//! these, and the deterministic simulation (`tests/replication_sim.rs`)
//! drives them over many seeds.
//!
//! The model is Raft's, applied per partition, with Kafka's vocabulary:
//! - a replica's position is `(last epoch, end offset)`, where the last
//!   epoch may have been begun with no batch yet (see
//!   `strata_log::Partition::begin_epoch`, Raft's no-op entry without the
//!   offset it would take);
//! - the leader of epoch `E` begins `E` at its end offset when elected (the
//!   epoch start); a follower begins `E` once it holds everything up to that
//!   epoch start, so from then on its log is a prefix of the leader's;
//! - the high watermark moves to the offset a majority of replicas hold,
//!   counting only followers that fetched under the current epoch, and only
//!   once that offset has reached the epoch start (Raft's rule that a leader
//!   commits only entries of its own term: without it, a record a majority
//!   held could still be replaced, Raft's figure 8);
//! - a new leader is the replica with the largest position among a majority
//!   of the replica set, so it holds every record a majority held.

/// Where a replica's log ends, for comparing replicas at an election.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct LogPosition {
    /// The newest leader epoch in the log (-1: none yet).
    pub last_epoch: i32,
    /// One past the last offset.
    pub end_offset: u64,
}

/// How many replicas of `replicas` make a majority.
pub fn majority(replicas: usize) -> usize {
    replicas / 2 + 1
}

/// The high watermark a leader may expose: the largest offset that a
/// majority of the `replicas` hold (the leader's own end counts, as do the
/// followers' confirmed positions in `followers`), or `None` while that
/// offset is below `epoch_start`.
pub fn high_watermark(
    leader_end: u64,
    followers: impl IntoIterator<Item = u64>,
    replicas: usize,
    epoch_start: u64,
) -> Option<u64> {
    held_by(
        leader_end,
        followers,
        majority(replicas.max(1)),
        epoch_start,
    )
}

/// The largest offset below which at least `needed` replicas hold
/// everything (the leader's end counts, as do the followers' confirmed
/// positions), or `None` while fewer positions are known or that offset is
/// below `epoch_start`.
pub fn held_by(
    leader_end: u64,
    followers: impl IntoIterator<Item = u64>,
    needed: usize,
    epoch_start: u64,
) -> Option<u64> {
    let mut positions: Vec<u64> = std::iter::once(leader_end)
        .chain(followers.into_iter().map(|f| f.min(leader_end)))
        .collect();
    let needed = needed.max(1);
    if positions.len() < needed {
        return None;
    }
    positions.sort_unstable_by(|a, b| b.cmp(a));
    let held = *positions.get(needed - 1)?;
    (held >= epoch_start).then_some(held)
}

/// The replica to lead next, from the positions of those that answered:
/// the largest position, ties broken by the lowest node id; `None` unless a
/// majority of the `replicas` answered.
pub fn choose_leader(answers: &[(u64, LogPosition)], replicas: usize) -> Option<u64> {
    if answers.len() < majority(replicas.max(1)) {
        return None;
    }
    answers
        .iter()
        .max_by(|(a_node, a), (b_node, b)| a.cmp(b).then(b_node.cmp(a_node)))
        .map(|(node, _)| *node)
}

/// As [`choose_leader`], with ties broken for `preferred` (the target of a
/// leadership handoff): any replica holding the largest position is as
/// safe a leader as another.
pub fn choose_leader_preferring(
    answers: &[(u64, LogPosition)],
    replicas: usize,
    preferred: u64,
) -> Option<u64> {
    let chosen = choose_leader(answers, replicas)?;
    let best = answers.iter().find(|(n, _)| *n == chosen).map(|(_, p)| *p);
    let tied = answers
        .iter()
        .any(|(n, p)| *n == preferred && Some(*p) == best);
    Some(if tied { preferred } else { chosen })
}

/// What the leader's log looks like to a fetch decision.
pub trait Lineage {
    /// First offset held locally (below it, the bucket has the data).
    fn local_start(&self) -> u64;
    fn end_offset(&self) -> u64;
    /// The largest epoch at or below `epoch` and the offset where it ends
    /// (Kafka's OffsetsForLeaderEpoch).
    fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)>;
}

/// What a leader answers a follower fetching from `fetch_offset` whose log
/// ends with epoch `last_epoch` (-1: an empty log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchDecision {
    /// The follower's log is a prefix of the leader's: send data from `fetch_offset`.
    Serve,
    /// The logs part: in the leader's log, the largest epoch not past the
    /// follower's last one is `epoch` and ends at `end_offset` (Kafka's
    /// OffsetsForLeaderEpoch). The follower truncates to
    /// [`truncation_point`] and fetches again.
    Diverging { epoch: i32, end_offset: u64 },
    /// The follower is below what the leader keeps locally, or shares no
    /// epoch with it: it drops its local copy and starts again here (the
    /// data below is in the bucket).
    Reset(u64),
}

pub fn decide_fetch(leader: &impl Lineage, fetch_offset: u64, last_epoch: i32) -> FetchDecision {
    let (local_start, end) = (leader.local_start(), leader.end_offset());
    if last_epoch >= 0 {
        match leader.end_offset_for_epoch(last_epoch) {
            // The leader's log has no epoch this old: nothing to compare.
            None => return FetchDecision::Reset(local_start),
            Some((epoch, epoch_end)) if epoch != last_epoch || epoch_end < fetch_offset => {
                return if epoch_end.min(fetch_offset) < local_start {
                    FetchDecision::Reset(local_start)
                } else {
                    FetchDecision::Diverging {
                        epoch,
                        end_offset: epoch_end,
                    }
                };
            }
            Some(_) => {}
        }
    }
    if fetch_offset > end {
        return FetchDecision::Diverging {
            epoch: -1,
            end_offset: end,
        };
    }
    if fetch_offset < local_start {
        return FetchDecision::Reset(local_start);
    }
    FetchDecision::Serve
}

/// Where a follower whose log ends at `fetch_offset` truncates when told
/// [`FetchDecision::Diverging`] (Kafka's rule, KIP-279). If the follower has
/// the leader's `epoch`, both logs hold the same batches of it up to the
/// earlier of their two ends for it: cut there. If it does not, it cuts to
/// where its own largest epoch below ends (a batch boundary of its own log)
/// and asks again from there, with that epoch: each round the follower's
/// last epoch gets older, so it converges.
pub fn truncation_point(
    follower: &impl Lineage,
    fetch_offset: u64,
    epoch: i32,
    end_offset: u64,
) -> u64 {
    if epoch < 0 {
        return end_offset.min(fetch_offset);
    }
    match follower.end_offset_for_epoch(epoch) {
        Some((own_epoch, own_end)) if own_epoch == epoch => {
            end_offset.min(own_end).min(fetch_offset)
        }
        Some((_, own_end)) => own_end.min(fetch_offset),
        // The follower has no epoch that old: nothing of its log is shared.
        None => follower.local_start(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Log {
        local_start: u64,
        end: u64,
        /// (epoch, start offset), ascending.
        epochs: Vec<(i32, u64)>,
    }

    impl Lineage for Log {
        fn local_start(&self) -> u64 {
            self.local_start
        }
        fn end_offset(&self) -> u64 {
            self.end
        }
        fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
            let i = self.epochs.partition_point(|(e, _)| *e <= epoch);
            let (found, _) = *self.epochs.get(i.checked_sub(1)?)?;
            let end = self.epochs.get(i).map_or(self.end, |(_, s)| *s);
            Some((found, end))
        }
    }

    #[test]
    fn high_watermark_needs_a_majority_at_or_past_the_epoch_start() {
        assert_eq!(high_watermark(10, [], 1, 0), Some(10));
        assert_eq!(high_watermark(10, [], 3, 0), None, "the leader alone");
        assert_eq!(high_watermark(10, [4], 3, 0), Some(4));
        assert_eq!(high_watermark(10, [4, 7], 3, 0), Some(7));
        assert_eq!(high_watermark(10, [4, 7], 3, 8), None, "old entries only");
        assert_eq!(high_watermark(10, [12, 9], 3, 8), Some(10), "capped");
        assert_eq!(high_watermark(10, [3, 5, 7], 5, 0), Some(5));
    }

    #[test]
    fn held_by_counts_the_needed_replicas() {
        // Leader at 10, followers at 7 and 4.
        assert_eq!(held_by(10, [7, 4], 1, 0), Some(10));
        assert_eq!(held_by(10, [7, 4], 2, 0), Some(7));
        assert_eq!(held_by(10, [7, 4], 3, 0), Some(4));
        assert_eq!(
            held_by(10, [7, 4], 4, 0),
            None,
            "only three positions known"
        );
        assert_eq!(held_by(10, [7, 4], 3, 5), None, "below the epoch start");
        assert_eq!(
            held_by(10, [12], 2, 0),
            Some(10),
            "capped at the leader's end"
        );
    }

    #[test]
    fn a_handoff_target_wins_only_a_tie() {
        let at = |end_offset| LogPosition {
            last_epoch: 3,
            end_offset,
        };
        let answers = [(1, at(10)), (2, at(10)), (3, at(9))];
        assert_eq!(choose_leader_preferring(&answers, 3, 2), Some(2));
        assert_eq!(
            choose_leader_preferring(&answers, 3, 3),
            Some(1),
            "3 lacks offset 9"
        );
        assert_eq!(
            choose_leader_preferring(&answers[..1], 3, 1),
            None,
            "no majority"
        );
    }

    #[test]
    fn the_largest_position_of_a_majority_leads() {
        let p = |last_epoch, end_offset| LogPosition {
            last_epoch,
            end_offset,
        };
        assert_eq!(choose_leader(&[(2, p(3, 5))], 3), None);
        assert_eq!(choose_leader(&[(2, p(3, 5)), (3, p(4, 2))], 3), Some(3));
        assert_eq!(choose_leader(&[(2, p(4, 5)), (3, p(4, 2))], 3), Some(2));
        assert_eq!(choose_leader(&[(3, p(4, 5)), (2, p(4, 5))], 3), Some(2));
        assert_eq!(choose_leader(&[(1, p(-1, 0))], 1), Some(1));
    }

    #[test]
    fn fetch_decisions_follow_the_epoch_lineage() {
        let leader = Log {
            local_start: 10,
            end: 40,
            epochs: vec![(1, 0), (3, 20), (5, 30)],
        };
        let diverging = |epoch, end_offset| FetchDecision::Diverging { epoch, end_offset };
        assert_eq!(decide_fetch(&leader, 25, 3), FetchDecision::Serve);
        assert_eq!(decide_fetch(&leader, 40, 5), FetchDecision::Serve);
        // Epoch 3 ended at 30 on the leader: the follower's 30..35 diverge.
        assert_eq!(decide_fetch(&leader, 35, 3), diverging(3, 30));
        // Epoch 2 never led here: the leader's epoch 1 ends at 20.
        assert_eq!(decide_fetch(&leader, 26, 2), diverging(1, 20));
        assert_eq!(decide_fetch(&leader, 45, 5), diverging(5, 40));
        assert_eq!(decide_fetch(&leader, 5, 1), FetchDecision::Reset(10));
        assert_eq!(decide_fetch(&leader, 0, -1), FetchDecision::Reset(10));
        assert_eq!(decide_fetch(&leader, 12, -1), FetchDecision::Serve);
        assert_eq!(decide_fetch(&leader, 12, 0), FetchDecision::Reset(10));
    }

    #[test]
    fn followers_truncate_where_both_logs_still_agree() {
        let leader = Log {
            local_start: 0,
            end: 100,
            epochs: vec![(1, 0), (2, 45), (3, 89)],
        };
        // The follower led epoch 8 alone from 8 on (a stale leader's suffix):
        // the leader's largest epoch not past 8 is 3, ending at 100; the
        // follower's own log holds nothing of epochs 2..3, its epoch 1 ends
        // at 8: truncating to 11 (its end) would repeat forever.
        let follower = Log {
            local_start: 0,
            end: 11,
            epochs: vec![(1, 0), (8, 8)],
        };
        let FetchDecision::Diverging { epoch, end_offset } = decide_fetch(&leader, 11, 8) else {
            panic!("the logs diverge");
        };
        assert_eq!(truncation_point(&follower, 11, epoch, end_offset), 8);
        // After the cut the follower's last epoch is 1, which the leader ends at 45.
        assert_eq!(decide_fetch(&leader, 8, 1), FetchDecision::Serve);
        // Same epoch, follower ahead: the leader's end.
        let ahead = Log {
            local_start: 0,
            end: 120,
            epochs: vec![(1, 0), (2, 45), (3, 89)],
        };
        let FetchDecision::Diverging { epoch, end_offset } = decide_fetch(&leader, 120, 3) else {
            panic!("the follower is ahead");
        };
        assert_eq!(truncation_point(&ahead, 120, epoch, end_offset), 100);
        // A follower with no epoch as old as the leader's: start of its log.
        let stranger = Log {
            local_start: 5,
            end: 30,
            epochs: vec![(4, 5)],
        };
        assert_eq!(truncation_point(&stranger, 30, 3, 100), 5);
        // The follower lacks the leader's epoch 2 (which ends at 28 there):
        // it cuts only its own newer epochs (3 from 39), not into its epoch
        // 1 batches at 28, and compares again with epoch 1.
        let stale = Log {
            local_start: 0,
            end: 45,
            epochs: vec![(1, 0), (3, 39)],
        };
        assert_eq!(truncation_point(&stale, 45, 2, 28), 39);
    }
}
