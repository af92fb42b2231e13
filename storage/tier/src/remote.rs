//! Reading a segment object from the object store.
//!
//! [`RemoteSegment::open`] makes at most three requests, whatever the
//! object's size: a ranged GET of the last 32 bytes (the trailer; the
//! response also tells the object's actual size, which must be the size the
//! caller expects), then the header and the index, one ranged GET each,
//! concurrently (one GET for both when they are adjacent, i.e. the segment
//! has no batches). Both are checked against their CRCs and against each
//! other before the segment is usable.
//!
//! After that, every read is one ranged GET per index block
//! ([`RemoteSegment::read_block`]); a block is checked against its CRC and
//! its index entry before a byte of it is returned. Corruption is reported
//! as [`TierError::Corrupt`] (with the key and what is wrong where), never
//! served. With a [`BlockCache`] ([`RemoteSegment::with_cache`]) blocks are
//! read through it, and sequential readers get read-ahead (see
//! [`crate::cache`]).

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use strata_log::batch;

use crate::cache::{BUCKET_READ_BYTES, BlockCache, BlockFetch, NextSegment};
use crate::error::{FormatError, Region, TierError};
use crate::segment::{
    IndexEntry, MIN_HEADER_LEN, SegmentMeta, TRAILER_LEN, Trailer, block_for_offset, check_index,
    decode_header, decode_index,
};

/// Blocks fetched at once by one [`RemoteSegment::read_from`].
const BLOCK_FETCH_CONCURRENCY: usize = 8;

/// An opened segment object: its header and index, checked, in memory.
#[derive(Debug, Clone)]
pub struct RemoteSegment {
    store: Arc<dyn ObjectStore>,
    key: Path,
    size: u64,
    trailer: Trailer,
    meta: SegmentMeta,
    index: Vec<IndexEntry>,
    /// The partition, for read-ahead: `tenant/topic id/partition`.
    stream: String,
    cache: Option<Arc<BlockCache>>,
}

/// Whole batches read from a block: the bytes from the batch holding the
/// requested offset, and where they end.
struct Selected {
    bytes: Option<Bytes>,
    /// One past the last offset taken (the requested offset if none).
    next_offset: u64,
    /// Whether every batch from the first taken to the block's end was taken.
    complete: bool,
}

impl RemoteSegment {
    /// Opens the segment object at `key`, which must be `size` bytes (the
    /// size recorded when it was uploaded): fetches and checks the trailer,
    /// header and index.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        key: Path,
        size: u64,
    ) -> Result<RemoteSegment, TierError> {
        let corrupt = |e: FormatError| TierError::corrupt(&key, e);
        let smallest = (MIN_HEADER_LEN + 4 + TRAILER_LEN) as u64;
        if size < smallest {
            return Err(corrupt(FormatError::Truncated {
                region: Region::Object,
                needed: smallest,
                available: size,
            }));
        }
        let suffix = GetOptions::new().with_range(Some(GetRange::Suffix(TRAILER_LEN as u64)));
        let got = store.get_opts(&key, suffix).await?;
        let actual = got.meta.size;
        let tail = got.bytes().await?;
        BUCKET_READ_BYTES.inc_by(tail.len() as u64);
        FormatError::check_len(Region::Object, size, actual).map_err(corrupt)?;
        let tail: &[u8; TRAILER_LEN] = tail.as_ref().try_into().map_err(|_| {
            corrupt(FormatError::Truncated {
                region: Region::Trailer,
                needed: TRAILER_LEN as u64,
                available: tail.len() as u64,
            })
        })?;
        let trailer = Trailer::decode(tail).map_err(corrupt)?;
        trailer.check_object_len(size).map_err(corrupt)?;

        let (header_range, index_range) = (trailer.header_range(), trailer.index_range());
        let (header, index) = if header_range.end == index_range.start {
            let both = fetch(
                &store,
                &key,
                header_range.start..index_range.end,
                Region::Object,
            )
            .await?;
            let at = usize::try_from(header_range.end).unwrap_or(usize::MAX);
            (
                both.slice(..at.min(both.len())),
                both.slice(at.min(both.len())..),
            )
        } else {
            futures::try_join!(
                fetch(&store, &key, header_range, Region::Header),
                fetch(&store, &key, index_range, Region::Index),
            )?
        };
        let meta = decode_header(&header).map_err(corrupt)?;
        let index = decode_index(&index, trailer.index_entries).map_err(corrupt)?;
        let batches = trailer.batches_range();
        check_index(&index, &meta, batches.end - batches.start).map_err(corrupt)?;
        let stream = format!("{}/{}/{}", meta.tenant, meta.topic_id, meta.partition);
        Ok(RemoteSegment {
            store,
            key,
            size,
            trailer,
            meta,
            index,
            stream,
            cache: None,
        })
    }

    /// Reads blocks through `cache` from now on.
    pub fn with_cache(mut self, cache: Arc<BlockCache>) -> RemoteSegment {
        self.cache = Some(cache);
        self
    }

    /// The object's key.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// The object's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What the header says.
    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// The index: one entry per block.
    pub fn index(&self) -> &[IndexEntry] {
        &self.index
    }

    /// The trailer (positions of the object's regions).
    pub fn trailer(&self) -> &Trailer {
        &self.trailer
    }

    /// Byte range of block `i` in the object, `None` past the last block.
    pub fn block_range(&self, i: usize) -> Option<Range<u64>> {
        let r = self.index.get(i)?.range();
        let start = self.trailer.batches_position;
        Some(start + r.start..start + r.end)
    }

    /// Offsets of block `i`: from its first to the next block's first (the
    /// segment's end for the last).
    pub fn block_offsets(&self, i: usize) -> Option<Range<u64>> {
        let start = self.index.get(i)?.first_offset;
        let end = self
            .index
            .get(i + 1)
            .map_or(self.meta.end_offset, |e| e.first_offset);
        Some(start..end)
    }

    /// The partition this segment belongs to, as read-ahead names it.
    pub(crate) fn stream(&self) -> &str {
        &self.stream
    }

    pub(crate) fn block_fetch(&self, i: usize) -> Option<BlockFetch> {
        Some(BlockFetch {
            store: self.store.clone(),
            key: self.key.clone(),
            block: i,
            entry: *self.index.get(i)?,
            range: self.block_range(i)?,
        })
    }

    /// Reads block `i` (one ranged GET, or the block cache) and checks it
    /// against its CRC and index entry; corruption is [`TierError::Corrupt`].
    pub async fn read_block(&self, i: usize) -> Result<Bytes, TierError> {
        self.read_block_with(i, None).await
    }

    async fn read_block_with(
        &self,
        i: usize,
        next: Option<NextSegment>,
    ) -> Result<Bytes, TierError> {
        let Some(f) = self.block_fetch(i) else {
            return Err(TierError::NoSuchBlock {
                key: self.key.to_string(),
                block: i,
                blocks: self.index.len(),
            });
        };
        match &self.cache {
            Some(cache) => {
                cache.read_ahead(self, i, next.as_ref());
                cache.get(&f).await
            }
            None => f.fetch().await,
        }
    }

    /// Whole batches from the one holding `offset`: from the block holding
    /// it, then following blocks that fit whole in `max_bytes`. At least one
    /// batch is returned; past the first, batches are returned only while
    /// the total stays within `max_bytes`. Returns the batches (each `Bytes`
    /// one or more consecutive batches) and the offset to read next.
    pub async fn read_from(
        &self,
        offset: u64,
        max_bytes: usize,
    ) -> Result<(Vec<Bytes>, u64), TierError> {
        self.read_from_with(offset, max_bytes, None).await
    }

    /// As [`RemoteSegment::read_from`]; a sequential reader's read-ahead
    /// continues into the following segment objects through `next`.
    pub async fn read_from_with(
        &self,
        offset: u64,
        max_bytes: usize,
        next: Option<NextSegment>,
    ) -> Result<(Vec<Bytes>, u64), TierError> {
        let out_of_range = || TierError::OffsetOutOfRange {
            key: self.key.to_string(),
            offset,
            start: self.meta.base_offset,
            end: self.meta.end_offset,
        };
        if offset < self.meta.base_offset || offset >= self.meta.end_offset {
            return Err(out_of_range());
        }
        let first = block_for_offset(&self.index, offset).ok_or_else(out_of_range)?;
        let block = self.read_block_with(first, next.clone()).await?;
        let mut total = 0usize;
        let sel = self.select(first, &block, offset, max_bytes, &mut total)?;
        let mut out: Vec<Bytes> = sel.bytes.into_iter().collect();
        let mut next_offset = sel.next_offset;
        if !sel.complete {
            return Ok((out, next_offset));
        }
        // Following blocks that fit whole, fetched concurrently.
        let mut planned = total;
        let more: Vec<usize> = (first + 1..self.index.len())
            .take_while(|&i| {
                let len = self.index.get(i).map_or(usize::MAX, |e| e.len as usize);
                planned = planned.saturating_add(len);
                planned <= max_bytes
            })
            .collect();
        // Owned indices: a closure over `&usize` would make this future
        // `Send` only for one lifetime, which callers that spawn it cannot use.
        let fetches: Vec<_> = more
            .iter()
            .map(|&i| self.read_block_with(i, next.clone()))
            .collect();
        let blocks: Vec<Bytes> = futures::stream::iter(fetches)
            .buffered(BLOCK_FETCH_CONCURRENCY)
            .try_collect()
            .await?;
        for (&i, block) in more.iter().zip(&blocks) {
            let sel = self.select(i, block, next_offset, max_bytes, &mut total)?;
            out.extend(sel.bytes);
            next_offset = sel.next_offset;
            if !sel.complete {
                break;
            }
        }
        Ok((out, next_offset))
    }

    /// Selects the batches of block `i` from the one holding `offset`,
    /// within `max_bytes` (at least one batch overall, counted by `total`);
    /// when the whole rest of the block is taken, checks that the block ends
    /// where the next begins.
    fn select(
        &self,
        i: usize,
        block: &Bytes,
        offset: u64,
        max_bytes: usize,
        total: &mut usize,
    ) -> Result<Selected, TierError> {
        let mut taken: Option<Range<usize>> = None;
        let mut next_offset = offset;
        let mut end = None;
        for item in batch::batches(block) {
            // verify_block walked these headers already.
            let (h, range) = item.map_err(|e| self.corrupt_block(i, e.to_string()))?;
            let next = u64::try_from(h.next_offset()).unwrap_or(0);
            end = Some(next);
            if next <= offset {
                continue;
            }
            if *total > 0 && total.saturating_add(range.len()) > max_bytes {
                let bytes = taken.map(|t| block.slice(t));
                return Ok(Selected {
                    bytes,
                    next_offset,
                    complete: false,
                });
            }
            *total += range.len();
            next_offset = next;
            taken = Some(taken.map_or(range.clone(), |t| t.start..range.end));
        }
        let expected = self
            .index
            .get(i + 1)
            .map_or(self.meta.end_offset, |e| e.first_offset);
        if end != Some(expected) {
            let detail = format!("block {i} ends at offset {end:?}, the next starts at {expected}");
            return Err(self.corrupt_block(i, detail));
        }
        Ok(Selected {
            bytes: taken.map(|t| block.slice(t)),
            next_offset,
            complete: true,
        })
    }

    fn corrupt_block(&self, i: usize, detail: String) -> TierError {
        let region = self
            .index
            .get(i)
            .map_or(Region::Batches, IndexEntry::region);
        TierError::corrupt(&self.key, FormatError::Inconsistent { region, detail })
    }
}

/// One ranged GET that must return exactly `range`.
pub(crate) async fn fetch(
    store: &Arc<dyn ObjectStore>,
    key: &Path,
    range: Range<u64>,
    region: Region,
) -> Result<Bytes, TierError> {
    let expected = range.end - range.start;
    let bytes = store.get_range(key, range).await?;
    BUCKET_READ_BYTES.inc_by(bytes.len() as u64);
    FormatError::check_len(region, expected, bytes.len() as u64)
        .map_err(|e| TierError::corrupt(key, e))?;
    Ok(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::segment::{EpochStart, SegmentBuilder, SegmentFields, SegmentObject};
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions,
        PutOptions, PutPayload, PutResult,
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    use strata_log::batch::{BatchBuilder, BatchHeader, Compression, set_base_offset};

    type OsResult<T> = object_store::Result<T>;

    /// Counts GET requests (and may make each take `delay`).
    #[derive(Debug)]
    pub(crate) struct Counting {
        pub inner: Arc<dyn ObjectStore>,
        pub gets: AtomicUsize,
        pub delay: std::time::Duration,
    }

    impl std::fmt::Display for Counting {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Counting({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Counting {
        async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> OsResult<PutResult> {
            self.inner.put_opts(l, p, o).await
        }
        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> OsResult<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(l, o).await
        }
        async fn get_opts(&self, l: &Path, o: GetOptions) -> OsResult<GetResult> {
            self.gets.fetch_add(1, Ordering::Relaxed);
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            self.inner.get_opts(l, o).await
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, OsResult<Path>>,
        ) -> BoxStream<'static, OsResult<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, OsResult<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> OsResult<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, o: CopyOptions) -> OsResult<()> {
            self.inner.copy_opts(from, to, o).await
        }
    }

    /// `n` batches from offset `base`, of 1 to 4 records with values of
    /// varied sizes, timestamps increasing.
    pub(crate) fn batches(base: u64, n: usize) -> Vec<Bytes> {
        let mut next = base;
        (0..n)
            .map(|i| {
                let mut b = BatchBuilder::new(Compression::None);
                let records = 1 + i % 4;
                for r in 0..records {
                    let value = Bytes::from(vec![b'x'; (i * 37 + r * 101) % 700]);
                    b.push(None, Some(value), vec![], 1_000 + (i * 10 + r) as i64);
                }
                let mut buf = b.build().expect("batch").to_vec();
                set_base_offset(&mut buf, next as i64).expect("base");
                next += records as u64;
                Bytes::from(buf)
            })
            .collect()
    }

    pub(crate) fn build(base: u64, batches: &[Bytes], block_size: usize) -> SegmentObject {
        let mut b = SegmentBuilder::with_block_size(base, block_size);
        for chunk in batches.chunks(3) {
            b.push_bytes(Bytes::from(chunk.concat())).expect("push");
        }
        b.finish(SegmentFields {
            tenant: "acme".into(),
            topic: "orders".into(),
            topic_id: 9,
            partition: 1,
            epochs: vec![EpochStart {
                epoch: 3,
                start_offset: base,
            }],
        })
        .expect("finish")
    }

    pub(crate) async fn put(store: &Arc<dyn ObjectStore>, key: &Path, obj: &SegmentObject) {
        let payload: PutPayload = obj.parts.iter().cloned().collect();
        store.put(key, payload).await.expect("put");
    }

    fn stores() -> Vec<(Arc<dyn ObjectStore>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("tempdir");
        let local =
            object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
        vec![
            (
                Arc::new(InMemory::new()),
                tempfile::tempdir().expect("tempdir"),
            ),
            (Arc::new(local), dir),
        ]
    }

    fn headers(chunks: &[Bytes]) -> Vec<(BatchHeader, usize)> {
        chunks
            .iter()
            .flat_map(|c| {
                batch::batches(c)
                    .map(|b| b.expect("whole batches"))
                    .map(|(h, r)| (h, r.len()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn read_from_every_offset_returns_the_batches_covering_it() {
        let batches = batches(1_000, 60);
        let obj = build(1_000, &batches, 2_000);
        assert!(obj.index.len() > 5, "several blocks");
        let key = Path::from("seg/a.seg");
        for (store, _dir) in stores() {
            put(&store, &key, &obj).await;
            let seg = RemoteSegment::open(store.clone(), key.clone(), obj.len)
                .await
                .expect("open");
            assert_eq!(seg.meta(), &obj.meta);
            assert_eq!(seg.index(), &obj.index[..]);
            assert_eq!(seg.size(), obj.len);
            for offset in obj.meta.base_offset..obj.meta.end_offset {
                for max_bytes in [0, 1, 1_500, 5_000, usize::MAX] {
                    let (chunks, next) = seg.read_from(offset, max_bytes).await.expect("read");
                    let hs = headers(&chunks);
                    let (first, _) = hs.first().expect("at least one batch");
                    assert!(first.base_offset as u64 <= offset, "{offset}");
                    assert!(offset < first.next_offset() as u64, "{offset}");
                    for w in hs.windows(2) {
                        assert_eq!(w[0].0.next_offset(), w[1].0.base_offset);
                    }
                    assert_eq!(hs.last().map(|(h, _)| h.next_offset() as u64), Some(next));
                    let total: usize = hs.iter().map(|(_, len)| len).sum();
                    assert!(hs.len() == 1 || total <= max_bytes, "{offset} {max_bytes}");
                    if max_bytes == usize::MAX {
                        assert_eq!(next, obj.meta.end_offset);
                    }
                }
            }
            for offset in [0, 999, obj.meta.end_offset, u64::MAX] {
                let e = seg.read_from(offset, 1 << 20).await.unwrap_err();
                assert!(
                    matches!(e, TierError::OffsetOutOfRange { offset: o, start: 1_000, .. } if o == offset),
                    "{e}"
                );
            }
            assert!(matches!(
                seg.read_block(obj.index.len()).await,
                Err(TierError::NoSuchBlock { .. })
            ));
        }
    }

    #[tokio::test]
    async fn reads_concatenate_to_the_whole_segment() {
        let batches = batches(0, 40);
        let obj = build(0, &batches, 1_000);
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let key = Path::from("k.seg");
        put(&store, &key, &obj).await;
        let seg = RemoteSegment::open(store, key, obj.len)
            .await
            .expect("open");
        let mut all = Vec::new();
        let mut offset = 0;
        while offset < obj.meta.end_offset {
            let (chunks, next) = seg.read_from(offset, 2_500).await.expect("read");
            assert!(next > offset);
            all.extend(chunks.iter().flat_map(|c| c.to_vec()));
            offset = next;
        }
        assert_eq!(all, batches.concat());
    }

    #[tokio::test]
    async fn open_and_reads_make_the_documented_requests() {
        let obj = build(0, &batches(0, 30), 1_000);
        let counting = Arc::new(Counting {
            inner: Arc::new(InMemory::new()),
            gets: AtomicUsize::new(0),
            delay: std::time::Duration::ZERO,
        });
        let store: Arc<dyn ObjectStore> = counting.clone();
        let key = Path::from("k.seg");
        put(&store, &key, &obj).await;
        let seg = RemoteSegment::open(store.clone(), key.clone(), obj.len)
            .await
            .expect("open");
        assert_eq!(
            counting.gets.load(Ordering::Relaxed),
            3,
            "trailer, header, index"
        );
        seg.read_block(2).await.expect("block");
        assert_eq!(counting.gets.load(Ordering::Relaxed), 4);
        let two = (obj.index[0].len + obj.index[1].len) as usize;
        seg.read_from(0, two).await.expect("read");
        assert_eq!(counting.gets.load(Ordering::Relaxed), 6, "two whole blocks");

        // No batches: header and index are adjacent, one GET for both.
        let empty = build(5, &[], 1_000);
        put(&store, &key, &empty).await;
        counting.gets.store(0, Ordering::Relaxed);
        let seg = RemoteSegment::open(store, key, empty.len)
            .await
            .expect("open");
        assert_eq!(counting.gets.load(Ordering::Relaxed), 2);
        assert_eq!((seg.meta().base_offset, seg.meta().end_offset), (5, 5));
        assert!(seg.index().is_empty());
        assert!(matches!(
            seg.read_from(5, 100).await,
            Err(TierError::OffsetOutOfRange { .. })
        ));
    }

    #[tokio::test]
    async fn a_flipped_byte_in_the_batches_is_reported_corrupt_by_its_block() {
        let obj = build(0, &batches(0, 30), 1_000);
        let bytes = obj.to_bytes();
        let victim = 2;
        let block = seg_block_range(&obj, victim);
        let at = block.start as usize + 30;
        let mut flipped = bytes.to_vec();
        flipped[at] ^= 0x10;
        let key = Path::from("t/k.seg");
        for (store, _dir) in stores() {
            store.put(&key, flipped.clone().into()).await.expect("put");
            let seg = RemoteSegment::open(store.clone(), key.clone(), obj.len)
                .await
                .expect("header and index intact");
            for i in 0..obj.index.len() {
                let read = seg.read_block(i).await;
                if i == victim {
                    let e = read.unwrap_err();
                    let TierError::Corrupt { key: k, detail } = &e else {
                        panic!("{e:?}");
                    };
                    assert_eq!(k, "t/k.seg");
                    assert!(detail.contains("checksum mismatch"), "{detail}");
                    let e0 = obj.index[victim];
                    let place = format!("block at batches byte {}", e0.position);
                    assert!(detail.contains(&place), "{detail}");
                    assert!(!e.retryable());
                } else {
                    assert_eq!(
                        read.expect("intact block"),
                        bytes.slice(
                            seg_block_range(&obj, i).start as usize
                                ..seg_block_range(&obj, i).end as usize
                        )
                    );
                }
            }
            let covered = obj.index[victim].first_offset;
            assert!(matches!(
                seg.read_from(covered, 1 << 20).await,
                Err(TierError::Corrupt { .. })
            ));
            seg.read_from(0, 1).await.expect("block 0 is intact");
        }
    }

    fn seg_block_range(obj: &SegmentObject, i: usize) -> Range<u64> {
        let r = obj.index[i].range();
        let start = obj.trailer.batches_position;
        start + r.start..start + r.end
    }

    #[tokio::test]
    async fn a_truncated_object_fails_to_open_precisely() {
        let obj = build(0, &batches(0, 10), 1_000);
        let bytes = obj.to_bytes();
        let key = Path::from("k.seg");
        for (store, _dir) in stores() {
            let short = bytes.slice(..bytes.len() - 10);
            store.put(&key, short.clone().into()).await.expect("put");
            // The size the manifest recorded: the object is shorter.
            let e = RemoteSegment::open(store.clone(), key.clone(), obj.len)
                .await
                .unwrap_err();
            let want = format!(
                "corrupt segment object k.seg: segment object truncated: needs {} bytes, only {} available",
                obj.len,
                obj.len - 10
            );
            assert_eq!(e.to_string(), want);
            // Opened at its own (wrong) size: its last bytes are no trailer.
            let e = RemoteSegment::open(store.clone(), key.clone(), short.len() as u64)
                .await
                .unwrap_err();
            assert!(
                matches!(&e, TierError::Corrupt { detail, .. } if detail.contains("bad segment trailer magic")),
                "{e}"
            );
            // Shorter than a trailer.
            store
                .put(&key, bytes.slice(..10).into())
                .await
                .expect("put");
            let e = RemoteSegment::open(store.clone(), key.clone(), obj.len)
                .await
                .unwrap_err();
            assert!(
                matches!(&e, TierError::Corrupt { detail, .. } if detail.contains("truncated: needs")),
                "{e}"
            );
            // Empty.
            store.put(&key, Bytes::new().into()).await.expect("put");
            let e = RemoteSegment::open(store.clone(), key.clone(), obj.len)
                .await
                .unwrap_err();
            assert!(
                matches!(&e, TierError::Corrupt { detail, .. } if detail.contains("truncated: needs")),
                "{e}"
            );
            // A size no segment object can have.
            let e = RemoteSegment::open(store.clone(), key.clone(), 20)
                .await
                .unwrap_err();
            assert!(matches!(&e, TierError::Corrupt { .. }), "{e}");
            // Longer than recorded.
            let long = [&bytes[..], b"extra"].concat();
            store.put(&key, long.into()).await.expect("put");
            let e = RemoteSegment::open(store.clone(), key.clone(), obj.len)
                .await
                .unwrap_err();
            assert!(
                matches!(&e, TierError::Corrupt { detail, .. } if detail.contains("length mismatch")),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn damaged_header_or_index_fails_to_open() {
        let obj = build(0, &batches(0, 10), 1_000);
        let bytes = obj.to_bytes();
        let key = Path::from("k.seg");
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        for (at, what) in [
            (20, "segment header checksum mismatch"),
            (
                obj.trailer.index_position as usize + 3,
                "segment index checksum mismatch",
            ),
            (bytes.len() - 20, "segment trailer checksum mismatch"),
        ] {
            let mut damaged = bytes.to_vec();
            damaged[at] ^= 1;
            store.put(&key, damaged.into()).await.expect("put");
            let e = RemoteSegment::open(store.clone(), key.clone(), obj.len)
                .await
                .unwrap_err();
            assert!(
                matches!(&e, TierError::Corrupt { detail, .. } if detail.contains(what)),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn a_missing_object_is_not_found() {
        for (store, _dir) in stores() {
            let e = RemoteSegment::open(store, Path::from("nope.seg"), 1_000)
                .await
                .unwrap_err();
            assert!(matches!(&e, TierError::NotFound { .. }), "{e:?}");
            assert!(!e.retryable());
        }
    }
}
