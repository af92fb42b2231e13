//! Tests of `cache.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use object_store::ObjectStoreExt;
use object_store::memory::InMemory;

use super::*;
use crate::remote::tests::{Counting, batches, build, put};
use crate::segment::SegmentObject;

/// A counting store (each GET taking `delay`) holding `objs`.
async fn store_with(
    objs: &[(&Path, &SegmentObject)],
    delay: Duration,
) -> (Arc<Counting>, Arc<dyn ObjectStore>) {
    let counting = Arc::new(Counting {
        inner: Arc::new(InMemory::new()),
        gets: AtomicUsize::new(0),
        delay,
    });
    let store: Arc<dyn ObjectStore> = counting.clone();
    for (k, obj) in objs {
        put(&store, k, obj).await;
    }
    (counting, store)
}

async fn cache(read_ahead_blocks: usize) -> Arc<BlockCache> {
    let config = BlockCacheConfig {
        memory_bytes: 64 << 20,
        read_ahead_blocks,
        ..BlockCacheConfig::default()
    };
    Arc::new(BlockCache::open(config).await.expect("open cache"))
}

async fn open(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    obj: &SegmentObject,
    cache: &Arc<BlockCache>,
) -> RemoteSegment {
    RemoteSegment::open(store.clone(), key.clone(), obj.len)
        .await
        .expect("open")
        .with_cache(cache.clone())
}

fn gets(c: &Counting) -> usize {
    c.gets.load(Ordering::SeqCst)
}

fn block_bytes(obj: &SegmentObject, i: usize) -> Bytes {
    let r = obj.index[i].range();
    let start = obj.trailer.batches_position;
    obj.to_bytes()
        .slice((start + r.start) as usize..(start + r.end) as usize)
}

/// Waits (bounded) until `c` has seen `n` GETs.
async fn wait_gets(c: &Counting, n: usize) {
    for _ in 0..200 {
        if gets(c) >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let anything more that would come arrive.
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_block_read_twice_is_fetched_once() {
    let obj = build(0, &batches(0, 40), 1_000);
    let key = Path::from("t/a.seg");
    let (counting, store) = store_with(&[(&key, &obj)], Duration::ZERO).await;
    let cache = cache(0).await;
    let seg = open(&store, &key, &obj, &cache).await;
    let opened = gets(&counting);
    let (hits, misses) = (HITS.get(), MISSES.get());
    assert_eq!(
        seg.read_block(2).await.expect("block"),
        block_bytes(&obj, 2)
    );
    assert_eq!(gets(&counting), opened + 1);
    assert!(MISSES.get() > misses);
    assert_eq!(
        seg.read_block(2).await.expect("block"),
        block_bytes(&obj, 2)
    );
    assert_eq!(gets(&counting), opened + 1, "the second read is a hit");
    assert!(HITS.get() > hits);
    // Whole reads go through the cache too.
    let (chunks, _) = seg
        .read_from(obj.index[2].first_offset, 1)
        .await
        .expect("read");
    assert!(!chunks.is_empty());
    assert_eq!(gets(&counting), opened + 1);
    // Another segment handle on the same object shares the cache.
    let again = open(&store, &key, &obj, &cache).await;
    let opened = gets(&counting);
    again.read_block(2).await.expect("block");
    assert_eq!(gets(&counting), opened);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_block_is_reported_and_never_cached() {
    let obj = build(0, &batches(0, 40), 1_000);
    let key = Path::from("t/bad.seg");
    let mut bytes = obj.to_bytes().to_vec();
    let victim = 1;
    let at = (obj.trailer.batches_position + obj.index[victim].position) as usize + 20;
    bytes[at] ^= 0x08;
    let (counting, store) = store_with(&[], Duration::from_millis(20)).await;
    store.put(&key, bytes.into()).await.expect("put");
    let cache = cache(0).await;
    let seg = open(&store, &key, &obj, &cache).await;
    let opened = gets(&counting);
    // Concurrent readers share the one failed GET and its error.
    let reads = futures::future::join_all((0..4).map(|_| seg.read_block(victim))).await;
    assert_eq!(gets(&counting), opened + 1);
    for r in reads {
        let e = r.unwrap_err();
        assert!(
            matches!(&e, TierError::Corrupt { detail, .. } if detail.contains("checksum mismatch")),
            "{e}"
        );
        assert!(!e.retryable());
    }
    // Not cached: the next read fetches (and fails) again.
    assert!(matches!(
        seg.read_block(victim).await,
        Err(TierError::Corrupt { .. })
    ));
    assert_eq!(gets(&counting), opened + 2);
    // Its neighbours are fine.
    assert_eq!(
        seg.read_block(0).await.expect("block 0"),
        block_bytes(&obj, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_block_share_one_get() {
    let obj = build(0, &batches(0, 40), 1_000);
    let key = Path::from("t/b.seg");
    let (counting, store) = store_with(&[(&key, &obj)], Duration::from_millis(100)).await;
    let cache = cache(0).await;
    let seg = Arc::new(open(&store, &key, &obj, &cache).await);
    let opened = gets(&counting);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let seg = seg.clone();
            tokio::spawn(async move { seg.read_block(3).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task").expect("block"), block_bytes(&obj, 3));
    }
    assert_eq!(gets(&counting), opened + 1, "16 readers, one GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_pair_of_blocks_reads_ahead() {
    let obj = build(0, &batches(0, 60), 1_000);
    assert!(obj.index.len() >= 10);
    let key = Path::from("t/c.seg");
    let (counting, store) = store_with(&[(&key, &obj)], Duration::ZERO).await;
    let cache = cache(3).await;
    let seg = open(&store, &key, &obj, &cache).await;
    let opened = gets(&counting);
    let ahead = READ_AHEAD_BLOCKS.get();

    // One block, then a distant one: no reader is sequential.
    seg.read_block(0).await.expect("block");
    seg.read_block(5).await.expect("block");
    wait_gets(&counting, opened + 2).await;
    assert_eq!(gets(&counting), opened + 2, "no read-ahead");

    // Block 5 then 6: blocks 7, 8 and 9 are fetched in the background.
    seg.read_block(6).await.expect("block");
    wait_gets(&counting, opened + 6).await;
    assert_eq!(gets(&counting), opened + 6, "three blocks ahead");
    assert!(READ_AHEAD_BLOCKS.get() >= ahead + 3);
    for i in 7..=9 {
        assert_eq!(
            seg.read_block(i).await.expect("block"),
            block_bytes(&obj, i)
        );
    }
    // Reading them moved the window along: 10, 11, 12 next.
    wait_gets(&counting, opened + 9).await;
    assert_eq!(gets(&counting), opened + 9);
    let got = gets(&counting);
    for i in 10..=12 {
        seg.read_block(i).await.expect("block");
    }
    // Let the read-ahead these reads started finish before the runtime is
    // torn down: foyer 0.22.6 can deadlock dropping a fetch still in flight
    // while its own runtime completes it (seen once in CI).
    wait_gets(&counting, got + 3).await;
    assert!(gets(&counting) <= got + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_ahead_continues_into_the_next_segment_object() {
    let first = build(0, &batches(0, 30), 1_000);
    let second = build(
        first.meta.end_offset,
        &batches(first.meta.end_offset, 30),
        1_000,
    );
    let (ka, kb) = (Path::from("t/0.seg"), Path::from("t/1.seg"));
    let (counting, store) = store_with(&[(&ka, &first), (&kb, &second)], Duration::ZERO).await;
    let cache = cache(4).await;
    let a = open(&store, &ka, &first, &cache).await;
    let b = Arc::new(open(&store, &kb, &second, &cache).await);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let next: NextSegment = {
        let (b, asked) = (b.clone(), asked.clone());
        Arc::new(move |offset| {
            asked.lock().push(offset);
            let b = (offset == b.meta().base_offset).then(|| b.clone());
            Box::pin(async move { b })
        })
    };
    let last = first.index.len() - 1;
    let opened = gets(&counting);
    // The last two blocks of the first object, sequentially.
    for i in [last - 1, last] {
        let offset = first.index[i].first_offset;
        a.read_from_with(offset, 1, Some(next.clone()))
            .await
            .expect("read");
    }
    // Four blocks ahead, all in the second object.
    wait_gets(&counting, opened + 2 + 4).await;
    assert_eq!(gets(&counting), opened + 6);
    assert_eq!(asked.lock().first(), Some(&first.meta.end_offset));
    for block in 0..5 {
        let key = BlockKey {
            object: kb.to_string(),
            block,
        };
        assert_eq!(cache.prefetcher.cache.contains(&key), block < 4, "{block}");
    }
}

/// Reads every block of `seg` once, then again; returns the GETs of
/// the second pass.
async fn two_passes(
    counting: &Counting,
    seg: &RemoteSegment,
    obj: &SegmentObject,
    cache: &BlockCache,
) -> usize {
    for i in 0..obj.index.len() {
        assert_eq!(seg.read_block(i).await.expect("block"), block_bytes(obj, i));
    }
    // Evicted blocks reach the disk tier in the background.
    let all_cached = || {
        (0..obj.index.len()).all(|i| {
            let f = seg.block_fetch(i).expect("block");
            cache.prefetcher.cache.contains(&f.cache_key())
        })
    };
    for _ in 0..30 {
        if !cache.is_hybrid() || all_cached() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = gets(counting);
    for i in 0..obj.index.len() {
        assert_eq!(seg.read_block(i).await.expect("block"), block_bytes(obj, i));
    }
    gets(counting) - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_tier_keeps_blocks_memory_evicted() {
    // About 3 MiB of blocks of up to 64 KiB: three times the memory tier.
    let obj = build(0, &batches(0, 4_000), 64 * 1024);
    assert!(obj.len > 3 * MIN_MEMORY_BYTES, "{}", obj.len);
    let key = Path::from("t/d.seg");
    let (counting, store) = store_with(&[(&key, &obj)], Duration::ZERO).await;

    // Memory only: the second pass goes back to the bucket.
    let memory = Arc::new(
        BlockCache::open(BlockCacheConfig {
            memory_bytes: MIN_MEMORY_BYTES,
            ..BlockCacheConfig::default()
        })
        .await
        .expect("open"),
    );
    assert!(!memory.is_hybrid());
    let seg = open(&store, &key, &obj, &memory).await;
    assert!(
        two_passes(&counting, &seg, &obj, &memory).await > 0,
        "memory evicted"
    );

    // With a disk tier: nothing is fetched twice.
    let dir = tempfile::tempdir().expect("tempdir");
    let hybrid = Arc::new(
        BlockCache::open(BlockCacheConfig {
            memory_bytes: MIN_MEMORY_BYTES,
            disk_bytes: 32 << 20,
            disk_dir: Some(dir.path().join("cache")),
            read_ahead_blocks: 0,
        })
        .await
        .expect("open"),
    );
    assert!(hybrid.is_hybrid());
    let seg = open(&store, &key, &obj, &hybrid).await;
    let hits = HITS.get();
    assert_eq!(
        two_passes(&counting, &seg, &obj, &hybrid).await,
        0,
        "served from disk"
    );
    assert!(HITS.get() >= hits + obj.index.len() as u64);
    assert!(
        dir.path()
            .join("cache")
            .read_dir()
            .expect("dir")
            .next()
            .is_some()
    );
}

#[test]
fn a_shared_store_error_keeps_its_class() {
    let timeout = crate::store::StoreError::Timeout {
        op: "get",
        location: "k ".into(),
        timeout: Duration::from_secs(1),
    }
    .into_object_store();
    let shared = Arc::new(TierError::Store(timeout));
    let e = unshare(&shared);
    assert!(e.retryable(), "{e}");
    assert!(e.to_string().contains("timed out"), "{e}");
    let denied = Arc::new(TierError::Store(object_store::Error::PermissionDenied {
        path: "k".into(),
        source: "403".into(),
    }));
    assert!(!unshare(&denied).retryable());
    let corrupt = Arc::new(TierError::corrupt("k", "bad"));
    assert_eq!(unshare(&corrupt).to_string(), corrupt.to_string());
}

#[test]
fn streams_tell_sequential_readers() {
    let mut s = Streams::default();
    assert!(!s.note("p", 0..10), "first read");
    assert!(!s.note("p", 0..10), "the same block again");
    assert!(s.note("p", 10..20), "the next block");
    assert!(!s.note("q", 20..30), "another partition");
    assert!(!s.note("p", 40..50), "a jump");
    assert!(s.note("p", 20..30), "the first reader moves on");
    assert!(s.note("p", 50..60), "so does the second");
    for i in 0..HEADS as u64 * 2 {
        s.note("p", 1000 + i * 10..1005 + i * 10);
    }
    assert!(!s.note("p", 60..70), "forgotten");
}
