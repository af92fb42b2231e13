//! Pure decisions of tiering: what leaves local disk, and the whole log
//! (bucket + local disk) as retention sees it.

use strata_log::SegmentInfo;

use crate::config::TopicConfig;
use crate::metadata::RemoteSegmentRef;

/// The offset below which local copies may go: the end of the last of the
/// oldest offloaded segments that are older than `local_retention_ms` or
/// that the partition can drop while still holding `local_retention_bytes`
/// locally. Only a prefix of offloaded, sealed segments is ever chosen;
/// `None` when nothing goes.
pub(crate) fn release_point(
    segments: &[SegmentInfo],
    local_start: u64,
    config: &TopicConfig,
    now_ms: i64,
) -> Option<u64> {
    let local: Vec<&SegmentInfo> = segments
        .iter()
        .filter(|s| s.end_offset > local_start)
        .collect();
    let releasable: Vec<&&SegmentInfo> = local
        .iter()
        .take_while(|s| s.sealed && s.offloaded)
        .collect();

    let by_time = match config.effective_local_retention_ms() {
        ms if ms >= 0 => {
            let cutoff = now_ms.saturating_sub(ms);
            releasable
                .iter()
                .take_while(|s| s.last_append_ms.is_none_or(|t| t < cutoff))
                .count()
        }
        _ => 0,
    };
    let by_size = match config.effective_local_retention_bytes() {
        limit if limit >= 0 => {
            let limit = limit.unsigned_abs();
            let mut total: u64 = local.iter().map(|s| s.bytes).sum();
            let mut n = 0;
            for s in &releasable {
                if total <= limit {
                    break;
                }
                total = total.saturating_sub(s.bytes);
                n += 1;
            }
            n
        }
        _ => 0,
    };
    let n = by_time.max(by_size);
    let last = releasable.get(n.checked_sub(1)?)?;
    Some(last.end_offset)
}

/// The partition's segments across both tiers, in offset order, as
/// retention plans over them: the bucket's segments below the local copy,
/// then the local ones. Bucket segments count as sealed and offloaded.
pub(crate) fn whole_log(
    manifest: &[RemoteSegmentRef],
    local: &[SegmentInfo],
    local_start: u64,
) -> Vec<SegmentInfo> {
    let mut out: Vec<SegmentInfo> = manifest
        .iter()
        .filter(|m| m.base_offset < local_start)
        .map(|m| SegmentInfo {
            base_offset: m.base_offset,
            end_offset: m.end_offset,
            bytes: m.batch_bytes,
            first_append_ms: None,
            last_append_ms: m.last_append_ms,
            max_timestamp: m.max_timestamp,
            sealed: true,
            offloaded: true,
        })
        .collect();
    out.extend(local.iter().filter(|s| s.end_offset > local_start).cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: u64, end: u64, bytes: u64, last_append: i64, offloaded: bool) -> SegmentInfo {
        SegmentInfo {
            base_offset: base,
            end_offset: end,
            bytes,
            first_append_ms: Some(last_append - 10),
            last_append_ms: Some(last_append),
            max_timestamp: last_append,
            sealed: true,
            offloaded,
        }
    }

    fn config(local_ms: i64, local_bytes: i64) -> TopicConfig {
        TopicConfig {
            local_retention_ms: local_ms,
            local_retention_bytes: local_bytes,
            ..TopicConfig::default()
        }
    }

    fn segments() -> Vec<SegmentInfo> {
        let mut active = seg(30, 35, 500, 400, false);
        active.sealed = false;
        vec![
            seg(0, 10, 1000, 100, true),
            seg(10, 20, 1000, 200, true),
            seg(20, 30, 1000, 300, false),
            active,
        ]
    }

    #[test]
    fn only_offloaded_prefixes_go() {
        // Everything is old, but segment 20..30 is not in the bucket yet.
        assert_eq!(
            release_point(&segments(), 0, &config(0, -1), 10_000),
            Some(20)
        );
        // Nothing offloaded at the front: nothing goes.
        let mut s = segments();
        s[0].offloaded = false;
        assert_eq!(release_point(&s, 0, &config(0, 0), 10_000), None);
    }

    #[test]
    fn by_time_and_by_size() {
        // Cutoff 250: the segments appended at 100 and 200 go.
        assert_eq!(
            release_point(&segments(), 0, &config(750, -1), 1_000),
            Some(20)
        );
        assert_eq!(
            release_point(&segments(), 0, &config(850, -1), 1_000),
            Some(10)
        );
        assert_eq!(
            release_point(&segments(), 0, &config(5_000, -1), 1_000),
            None
        );
        // 3500 local bytes, limit 2600: dropping the first leaves 2500.
        assert_eq!(
            release_point(&segments(), 0, &config(-1, 2600), 1_000),
            Some(10)
        );
        assert_eq!(
            release_point(&segments(), 0, &config(-1, 0), 1_000),
            Some(20)
        );
        assert_eq!(
            release_point(&segments(), 0, &config(-1, 10_000), 1_000),
            None
        );
    }

    #[test]
    fn already_released_segments_are_skipped() {
        assert_eq!(
            release_point(&segments(), 10, &config(0, -1), 10_000),
            Some(20)
        );
        assert_eq!(release_point(&segments(), 20, &config(0, -1), 10_000), None);
    }

    #[test]
    fn minus_two_follows_retention() {
        let c = TopicConfig {
            retention_ms: 750,
            local_retention_ms: -2,
            local_retention_bytes: -1,
            ..TopicConfig::default()
        };
        assert_eq!(release_point(&segments(), 0, &c, 1_000), Some(20));
    }

    #[test]
    fn whole_log_joins_the_tiers() {
        let remote = |base, end| RemoteSegmentRef {
            base_offset: base,
            end_offset: end,
            key: format!("k{base}"),
            size: 1100,
            batch_bytes: 1000,
            record_count: end - base,
            first_timestamp: 0,
            max_timestamp: 50,
            last_append_ms: Some(50),
            committed_ms: 60,
        };
        let manifest = vec![remote(0, 10), remote(10, 20)];
        // Local copies start at 10: the bucket supplies 0..10, local disk the rest.
        let whole = whole_log(&manifest, &segments(), 10);
        let ranges: Vec<(u64, u64)> = whole
            .iter()
            .map(|s| (s.base_offset, s.end_offset))
            .collect();
        assert_eq!(ranges, [(0, 10), (10, 20), (20, 30), (30, 35)]);
        assert!(whole[0].offloaded && whole[0].sealed);
    }
}
