//! Metadata behind a trait: tenants, topics and their configs, committed
//! group offsets. [`LocalMetadataStore`] keeps them in a file in the data
//! directory; the metadata Raft group implements the same trait later.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_api::{ApiError, ErrorCode};

use crate::config::TopicConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub tenant: String,
    pub name: String,
    /// Distinguishes a topic from an earlier one of the same name.
    pub id: u64,
    pub partitions: u32,
    pub config: TopicConfig,
    pub created_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupOffset {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    #[serde(default)]
    pub metadata: String,
}

/// One segment object in the bucket, as the partition's manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteSegmentRef {
    pub base_offset: u64,
    /// One past the last offset.
    pub end_offset: u64,
    /// The object's key in the store (without the store's URL).
    pub key: String,
    /// The object's size in bytes.
    pub size: u64,
    /// Bytes of record batches in it.
    pub batch_bytes: u64,
    pub record_count: u64,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    /// Wall-clock time of the segment's last append (for time retention).
    pub last_append_ms: Option<i64>,
    /// When the object was committed to the manifest.
    pub committed_ms: i64,
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    async fn tenants(&self) -> Result<Vec<String>, ApiError>;
    async fn create_tenant(&self, tenant: &str) -> Result<(), ApiError>;
    async fn topics(&self, tenant: &str) -> Result<Vec<TopicMeta>, ApiError>;
    async fn topic(&self, tenant: &str, name: &str) -> Result<Option<TopicMeta>, ApiError>;
    /// Fails with `topic_already_exists` if the name is taken.
    async fn create_topic(&self, topic: TopicMeta) -> Result<(), ApiError>;
    async fn update_topic(&self, topic: TopicMeta) -> Result<(), ApiError>;
    async fn delete_topic(&self, tenant: &str, name: &str) -> Result<(), ApiError>;
    async fn commit_offsets(
        &self,
        tenant: &str,
        group: &str,
        offsets: &[GroupOffset],
    ) -> Result<(), ApiError>;
    async fn fetch_offsets(
        &self,
        tenant: &str,
        group: &str,
    ) -> Result<Option<Vec<GroupOffset>>, ApiError>;
    /// The groups of `tenant` that have at least one committed offset, sorted.
    async fn groups(&self, tenant: &str) -> Result<Vec<String>, ApiError>;
    /// Forgets a group's committed offsets; `false` if it had none.
    async fn delete_group(&self, tenant: &str, group: &str) -> Result<bool, ApiError>;
    /// A partition's manifest (its segments in the bucket), in offset order.
    /// `partition` is the log partition key (`tenant/topic/id/partition`).
    async fn manifest(&self, partition: &str) -> Result<Vec<RemoteSegmentRef>, ApiError>;
    /// Up to `limit` manifest entries of a partition, from the one holding
    /// `offset` on (or from the first that ends past it): what a read needs,
    /// without copying a long manifest on every read.
    async fn manifest_from(
        &self,
        partition: &str,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<RemoteSegmentRef>, ApiError>;
    /// Every manifest, by log partition key.
    async fn manifests(&self) -> Result<BTreeMap<String, Vec<RemoteSegmentRef>>, ApiError>;
    /// Commits an uploaded segment to the manifest. It must continue the
    /// manifest exactly (start where the last one ends) unless the manifest
    /// is empty; re-committing the same key is a no-op.
    async fn commit_segment(
        &self,
        partition: &str,
        segment: RemoteSegmentRef,
    ) -> Result<(), ApiError>;
    /// Removes the segments that end at or below `offset` (retention);
    /// returns them, so their objects can be deleted next.
    async fn remove_segments_below(
        &self,
        partition: &str,
        offset: u64,
    ) -> Result<Vec<RemoteSegmentRef>, ApiError>;
    /// Forgets a partition's manifest (its topic was deleted); returns it.
    async fn drop_manifest(&self, partition: &str) -> Result<Vec<RemoteSegmentRef>, ApiError>;
}

/// The tenant every store has, so a fresh broker is usable at once.
pub(crate) const DEFAULT_TENANT: &str = "default";

/// Version of the file layout, checked at open so a future layout is not misread.
const FORMAT_VERSION: u32 = 1;

/// Everything the file holds. Maps are ordered so the file is stable and diffable.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    version: u32,
    tenants: BTreeSet<String>,
    /// tenant → topic name → topic.
    topics: BTreeMap<String, BTreeMap<String, TopicMeta>>,
    /// tenant → group → committed offsets, sorted by (topic, partition).
    groups: BTreeMap<String, BTreeMap<String, Vec<GroupOffset>>>,
    /// log partition key → its segments in the bucket, in offset order.
    #[serde(default)]
    manifests: BTreeMap<String, Vec<RemoteSegmentRef>>,
}

impl State {
    fn fresh() -> Self {
        let mut state = State {
            version: FORMAT_VERSION,
            ..State::default()
        };
        state.tenants.insert(DEFAULT_TENANT.to_string());
        state
    }
}

/// Metadata in `<data dir>/metadata.json`, rewritten atomically on every change.
pub struct LocalMetadataStore {
    path: PathBuf,
    /// Held across the file write so changes reach the disk in the order they apply.
    state: Mutex<State>,
}

impl LocalMetadataStore {
    /// Loads the file at `path`, or starts empty (with the `default` tenant) if there is none.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ApiError> {
        let path = path.as_ref().to_path_buf();
        let state = match std::fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let state = State::fresh();
                write_atomically(&path, &state)?;
                state
            }
            Err(e) => return Err(io_error(&path, "read", &e)),
        };
        Ok(LocalMetadataStore {
            path,
            state: Mutex::new(state),
        })
    }

    /// Applies `change` to a copy of the state, persists the copy, and only
    /// then makes it current: a failed write leaves memory and disk agreeing.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut State) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut state = self.state.lock();
        let mut next = state.clone();
        let out = change(&mut next)?;
        write_atomically(&self.path, &next)?;
        *state = next;
        Ok(out)
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<State, ApiError> {
    let mut state: State = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("metadata file {} is corrupt: {e}", path.display()),
        )
    })?;
    if state.version != FORMAT_VERSION {
        return Err(ApiError::new(
            ErrorCode::Internal,
            format!(
                "metadata file {} has format version {}, this broker reads version {FORMAT_VERSION}",
                path.display(),
                state.version
            ),
        ));
    }
    state.tenants.insert(DEFAULT_TENANT.to_string());
    Ok(state)
}

fn io_error(path: &Path, what: &str, e: &std::io::Error) -> ApiError {
    let code = if e.kind() == std::io::ErrorKind::StorageFull {
        // The client may retry once space is freed.
        ErrorCode::Unavailable
    } else {
        ErrorCode::Internal
    };
    ApiError::new(
        code,
        format!("cannot {what} metadata file {}: {e}", path.display()),
    )
}

/// Write a temporary file, fsync it, rename it over the old one, fsync the
/// directory: after a crash the file is either the old or the new version.
fn write_atomically(path: &Path, state: &State) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec_pretty(state)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("cannot encode metadata: {e}")))?;
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        Ok(())
    };
    write().map_err(|e| io_error(&tmp, "write", &e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error(path, "replace", &e))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(path, "sync the directory of", &e))?;
    Ok(())
}

fn tenant_not_found(tenant: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TenantNotFound,
        format!("tenant {tenant:?} does not exist"),
    )
    .with_details(serde_json::json!({ "tenant": tenant }))
}

fn topic_not_found(tenant: &str, name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::TopicNotFound,
        format!("topic {name:?} does not exist in tenant {tenant:?}"),
    )
    .with_details(serde_json::json!({ "tenant": tenant, "topic": name }))
}

#[async_trait]
impl MetadataStore for LocalMetadataStore {
    async fn tenants(&self) -> Result<Vec<String>, ApiError> {
        Ok(self.state.lock().tenants.iter().cloned().collect())
    }

    async fn create_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        if self.state.lock().tenants.contains(tenant) {
            return Ok(());
        }
        self.update(|s| {
            s.tenants.insert(tenant.to_string());
            Ok(())
        })
    }

    async fn topics(&self, tenant: &str) -> Result<Vec<TopicMeta>, ApiError> {
        let state = self.state.lock();
        if !state.tenants.contains(tenant) {
            return Err(tenant_not_found(tenant));
        }
        Ok(state
            .topics
            .get(tenant)
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn topic(&self, tenant: &str, name: &str) -> Result<Option<TopicMeta>, ApiError> {
        let state = self.state.lock();
        Ok(state.topics.get(tenant).and_then(|t| t.get(name)).cloned())
    }

    async fn create_topic(&self, topic: TopicMeta) -> Result<(), ApiError> {
        self.update(|s| {
            if !s.tenants.contains(&topic.tenant) {
                return Err(tenant_not_found(&topic.tenant));
            }
            let topics = s.topics.entry(topic.tenant.clone()).or_default();
            if topics.contains_key(&topic.name) {
                return Err(ApiError::new(
                    ErrorCode::TopicAlreadyExists,
                    format!(
                        "topic {:?} already exists in tenant {:?}",
                        topic.name, topic.tenant
                    ),
                )
                .with_details(serde_json::json!({ "tenant": topic.tenant, "topic": topic.name })));
            }
            topics.insert(topic.name.clone(), topic);
            Ok(())
        })
    }

    async fn update_topic(&self, topic: TopicMeta) -> Result<(), ApiError> {
        self.update(|s| {
            let slot = s
                .topics
                .get_mut(&topic.tenant)
                .and_then(|t| t.get_mut(&topic.name))
                .filter(|t| t.id == topic.id)
                .ok_or_else(|| topic_not_found(&topic.tenant, &topic.name))?;
            *slot = topic;
            Ok(())
        })
    }

    async fn delete_topic(&self, tenant: &str, name: &str) -> Result<(), ApiError> {
        self.update(|s| {
            s.topics
                .get_mut(tenant)
                .and_then(|t| t.remove(name))
                .ok_or_else(|| topic_not_found(tenant, name))?;
            // As Kafka: a deleted topic's committed offsets go with it, so a
            // new topic of the same name does not inherit them.
            if let Some(groups) = s.groups.get_mut(tenant) {
                for offsets in groups.values_mut() {
                    offsets.retain(|o| o.topic != name);
                }
            }
            Ok(())
        })
    }

    async fn commit_offsets(
        &self,
        tenant: &str,
        group: &str,
        offsets: &[GroupOffset],
    ) -> Result<(), ApiError> {
        self.update(|s| {
            if !s.tenants.contains(tenant) {
                return Err(tenant_not_found(tenant));
            }
            let stored = s
                .groups
                .entry(tenant.to_string())
                .or_default()
                .entry(group.to_string())
                .or_default();
            for offset in offsets {
                match stored.binary_search_by(|o| {
                    (o.topic.as_str(), o.partition).cmp(&(&offset.topic, offset.partition))
                }) {
                    Ok(i) => {
                        if let Some(slot) = stored.get_mut(i) {
                            *slot = offset.clone();
                        }
                    }
                    Err(i) => stored.insert(i, offset.clone()),
                }
            }
            Ok(())
        })
    }

    async fn fetch_offsets(
        &self,
        tenant: &str,
        group: &str,
    ) -> Result<Option<Vec<GroupOffset>>, ApiError> {
        let state = self.state.lock();
        Ok(state.groups.get(tenant).and_then(|g| g.get(group)).cloned())
    }

    async fn groups(&self, tenant: &str) -> Result<Vec<String>, ApiError> {
        let state = self.state.lock();
        if !state.tenants.contains(tenant) {
            return Err(tenant_not_found(tenant));
        }
        // A group whose every offset went with a deleted topic no longer exists.
        Ok(state
            .groups
            .get(tenant)
            .map(|groups| {
                groups
                    .iter()
                    .filter(|(_, offsets)| !offsets.is_empty())
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn delete_group(&self, tenant: &str, group: &str) -> Result<bool, ApiError> {
        let known = {
            let state = self.state.lock();
            state
                .groups
                .get(tenant)
                .is_some_and(|g| g.contains_key(group))
        };
        if !known {
            // Nothing to write.
            return Ok(false);
        }
        self.update(|s| {
            let removed = s.groups.get_mut(tenant).and_then(|g| g.remove(group));
            if s.groups.get(tenant).is_some_and(BTreeMap::is_empty) {
                s.groups.remove(tenant);
            }
            Ok(removed.is_some_and(|offsets| !offsets.is_empty()))
        })
    }

    async fn manifest(&self, partition: &str) -> Result<Vec<RemoteSegmentRef>, ApiError> {
        Ok(self
            .state
            .lock()
            .manifests
            .get(partition)
            .cloned()
            .unwrap_or_default())
    }

    async fn manifest_from(
        &self,
        partition: &str,
        offset: u64,
        limit: usize,
    ) -> Result<Vec<RemoteSegmentRef>, ApiError> {
        let state = self.state.lock();
        let Some(manifest) = state.manifests.get(partition) else {
            return Ok(Vec::new());
        };
        // Entries are contiguous and in offset order: search by end offset.
        let first = manifest.partition_point(|m| m.end_offset <= offset);
        Ok(manifest.iter().skip(first).take(limit).cloned().collect())
    }

    async fn manifests(&self) -> Result<BTreeMap<String, Vec<RemoteSegmentRef>>, ApiError> {
        Ok(self.state.lock().manifests.clone())
    }

    async fn commit_segment(
        &self,
        partition: &str,
        segment: RemoteSegmentRef,
    ) -> Result<(), ApiError> {
        self.update(|s| {
            let manifest = s.manifests.entry(partition.to_string()).or_default();
            if manifest.iter().any(|m| m.key == segment.key) {
                return Ok(());
            }
            if let Some(last) = manifest.last()
                && last.end_offset != segment.base_offset
            {
                return Err(ApiError::new(
                    ErrorCode::Internal,
                    format!(
                        "segment {}..{} does not continue the manifest of {partition}, which ends at {}",
                        segment.base_offset, segment.end_offset, last.end_offset
                    ),
                ));
            }
            manifest.push(segment);
            Ok(())
        })
    }

    async fn remove_segments_below(
        &self,
        partition: &str,
        offset: u64,
    ) -> Result<Vec<RemoteSegmentRef>, ApiError> {
        let any = self
            .state
            .lock()
            .manifests
            .get(partition)
            .is_some_and(|m| m.first().is_some_and(|f| f.end_offset <= offset));
        if !any {
            return Ok(Vec::new());
        }
        self.update(|s| {
            let Some(manifest) = s.manifests.get_mut(partition) else {
                return Ok(Vec::new());
            };
            let keep = manifest
                .iter()
                .position(|m| m.end_offset > offset)
                .unwrap_or(manifest.len());
            Ok(manifest.drain(..keep).collect())
        })
    }

    async fn drop_manifest(&self, partition: &str) -> Result<Vec<RemoteSegmentRef>, ApiError> {
        if !self.state.lock().manifests.contains_key(partition) {
            return Ok(Vec::new());
        }
        self.update(|s| Ok(s.manifests.remove(partition).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(tenant: &str, name: &str, id: u64) -> TopicMeta {
        TopicMeta {
            tenant: tenant.into(),
            name: name.into(),
            id,
            partitions: 3,
            config: TopicConfig::default(),
            created_ms: 1,
        }
    }

    fn offset(topic: &str, partition: u32, offset: u64, metadata: &str) -> GroupOffset {
        GroupOffset {
            topic: topic.into(),
            partition,
            offset,
            metadata: metadata.into(),
        }
    }

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.json");
        {
            let store = LocalMetadataStore::open(&path).unwrap();
            assert_eq!(store.tenants().await.unwrap(), vec!["default"]);
            store.create_tenant("acme").await.unwrap();
            store.create_tenant("acme").await.unwrap();
            store
                .create_topic(topic("acme", "orders", 7))
                .await
                .unwrap();
            let e = store
                .create_topic(topic("acme", "orders", 8))
                .await
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::TopicAlreadyExists);
            let e = store
                .create_topic(topic("nope", "orders", 8))
                .await
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::TenantNotFound);
            store
                .commit_offsets(
                    "acme",
                    "g",
                    &[offset("orders", 1, 5, "m1"), offset("orders", 0, 3, "")],
                )
                .await
                .unwrap();
            store
                .commit_offsets("acme", "g", &[offset("orders", 1, 9, "m2")])
                .await
                .unwrap();
        }
        let store = LocalMetadataStore::open(&path).unwrap();
        assert_eq!(store.tenants().await.unwrap(), vec!["acme", "default"]);
        assert_eq!(
            store.topic("acme", "orders").await.unwrap(),
            Some(topic("acme", "orders", 7))
        );
        assert_eq!(
            store.fetch_offsets("acme", "g").await.unwrap(),
            Some(vec![
                offset("orders", 0, 3, ""),
                offset("orders", 1, 9, "m2")
            ])
        );
        assert_eq!(store.fetch_offsets("acme", "other").await.unwrap(), None);

        store.delete_topic("acme", "orders").await.unwrap();
        assert_eq!(store.topic("acme", "orders").await.unwrap(), None);
        assert_eq!(
            store.fetch_offsets("acme", "g").await.unwrap(),
            Some(vec![])
        );
        let e = store.delete_topic("acme", "orders").await.unwrap_err();
        assert_eq!(e.code, ErrorCode::TopicNotFound);
    }

    #[tokio::test]
    async fn manifests_grow_contiguously_and_are_read_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMetadataStore::open(dir.path().join("m.json")).unwrap();
        let seg = |base: u64, end: u64| RemoteSegmentRef {
            base_offset: base,
            end_offset: end,
            key: format!("k{base}"),
            size: 10,
            batch_bytes: 8,
            record_count: end - base,
            first_timestamp: 0,
            max_timestamp: 0,
            last_append_ms: None,
            committed_ms: 0,
        };
        for (b, e) in [(0, 10), (10, 20), (20, 30)] {
            store.commit_segment("p", seg(b, e)).await.unwrap();
        }
        // Re-committing a key is a no-op; a gap is refused.
        store.commit_segment("p", seg(20, 30)).await.unwrap();
        assert!(store.commit_segment("p", seg(35, 40)).await.is_err());
        let keys = |v: Vec<RemoteSegmentRef>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
        assert_eq!(
            keys(store.manifest_from("p", 0, 2).await.unwrap()),
            ["k0", "k10"]
        );
        assert_eq!(
            keys(store.manifest_from("p", 19, 5).await.unwrap()),
            ["k10", "k20"]
        );
        assert_eq!(
            keys(store.manifest_from("p", 20, 5).await.unwrap()),
            ["k20"]
        );
        assert!(store.manifest_from("p", 30, 5).await.unwrap().is_empty());
        assert!(store.manifest_from("q", 0, 5).await.unwrap().is_empty());
        // Retention removes whole entries below an offset.
        assert_eq!(
            keys(store.remove_segments_below("p", 25).await.unwrap()),
            ["k0", "k10"]
        );
        assert_eq!(keys(store.manifest("p").await.unwrap()), ["k20"]);
    }

    #[tokio::test]
    async fn lists_and_deletes_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.json");
        let store = LocalMetadataStore::open(&path).unwrap();
        store.create_tenant("acme").await.unwrap();
        store.create_topic(topic("acme", "t", 1)).await.unwrap();
        store.create_topic(topic("acme", "u", 2)).await.unwrap();
        assert!(store.groups("acme").await.unwrap().is_empty());
        assert_eq!(
            store.groups("nope").await.unwrap_err().code,
            ErrorCode::TenantNotFound
        );
        for g in ["b", "a"] {
            store
                .commit_offsets("acme", g, &[offset("t", 0, 1, "")])
                .await
                .unwrap();
        }
        store
            .commit_offsets("acme", "only-u", &[offset("u", 0, 1, "")])
            .await
            .unwrap();
        store
            .commit_offsets("default", "other-tenant", &[])
            .await
            .unwrap();
        assert_eq!(
            store.groups("acme").await.unwrap(),
            vec!["a", "b", "only-u"]
        );
        // A group that lost all its offsets with its topic is gone.
        store.delete_topic("acme", "u").await.unwrap();
        assert_eq!(store.groups("acme").await.unwrap(), vec!["a", "b"]);
        assert!(!store.delete_group("acme", "only-u").await.unwrap());

        assert!(store.delete_group("acme", "a").await.unwrap());
        assert!(!store.delete_group("acme", "a").await.unwrap());
        assert!(!store.delete_group("acme", "never").await.unwrap());
        assert_eq!(store.fetch_offsets("acme", "a").await.unwrap(), None);
        drop(store);
        let store = LocalMetadataStore::open(&path).unwrap();
        assert_eq!(store.groups("acme").await.unwrap(), vec!["b"]);
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.json");
        std::fs::write(&path, b"{\"version\":1,\"tenants\":[").unwrap();
        let e = LocalMetadataStore::open(&path).err().unwrap();
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(e.message.contains("corrupt"), "{}", e.message);

        std::fs::write(
            &path,
            br#"{"version":99,"tenants":[],"topics":{},"groups":{}}"#,
        )
        .unwrap();
        let e = LocalMetadataStore::open(&path).err().unwrap();
        assert!(e.message.contains("version 99"), "{}", e.message);
    }
}
