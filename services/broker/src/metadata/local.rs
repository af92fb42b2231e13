//! [`LocalMetadataStore`]: the metadata in one file of the data directory,
//! rewritten atomically on every change. Used where no metadata group runs
//! (broker unit tests, tools) and as the source of an upgrade into one.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_api::{ApiError, ErrorCode};

use super::{ChangeOutcome, MetadataBackend, MetadataChange, MetadataState};

/// Version of the file layout, checked at open so a future layout is not misread.
const FORMAT_VERSION: u32 = 1;

/// The file: a version and the state.
#[derive(Serialize, Deserialize)]
struct MetadataFile {
    version: u32,
    #[serde(flatten)]
    state: MetadataState,
}

/// Metadata in `<data dir>/metadata.json`, rewritten atomically on every change.
pub struct LocalMetadataStore {
    path: PathBuf,
    /// Held across the file write so changes reach the disk in the order they apply.
    state: Mutex<MetadataState>,
}

impl LocalMetadataStore {
    /// Loads the file at `path`, or starts empty (with the `default` tenant) if there is none.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ApiError> {
        let path = path.as_ref().to_path_buf();
        let state = match Self::load(&path)? {
            Some(state) => state,
            None => {
                let state = MetadataState::default();
                write_atomically(&path, &state)?;
                state
            }
        };
        Ok(LocalMetadataStore {
            path,
            state: Mutex::new(state),
        })
    }

    /// Writes `state` as a metadata file at `path` (atomically), e.g. to
    /// seed a new metadata group with it.
    pub fn save(path: &Path, state: &MetadataState) -> Result<(), ApiError> {
        write_atomically(path, state)
    }

    /// The state in the file at `path`, if there is one.
    pub fn load(path: &Path) -> Result<Option<MetadataState>, ApiError> {
        match std::fs::read(path) {
            Ok(bytes) => parse(path, &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(path, "read", &e)),
        }
    }
}

#[async_trait]
impl MetadataBackend for LocalMetadataStore {
    fn read<T>(&self, read: impl FnOnce(&MetadataState) -> T) -> T {
        read(&self.state.lock())
    }

    /// Applies `change` to a copy of the state, persists the copy, and only
    /// then makes it current: a failed write leaves memory and disk agreeing.
    async fn change(&self, change: MetadataChange) -> Result<ChangeOutcome, ApiError> {
        let mut state = self.state.lock();
        let mut next = state.clone();
        let out = next.apply(&change)?;
        write_atomically(&self.path, &next)?;
        *state = next;
        Ok(out)
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<MetadataState, ApiError> {
    let file: MetadataFile = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::Internal,
            format!("metadata file {} is corrupt: {e}", path.display()),
        )
    })?;
    if file.version != FORMAT_VERSION {
        return Err(ApiError::new(
            ErrorCode::Internal,
            format!(
                "metadata file {} has format version {}, this broker reads version {FORMAT_VERSION}",
                path.display(),
                file.version
            ),
        ));
    }
    let mut state = file.state;
    state.normalize();
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
fn write_atomically(path: &Path, state: &MetadataState) -> Result<(), ApiError> {
    let file = MetadataFile {
        version: FORMAT_VERSION,
        state: state.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&file)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TopicConfig;
    use crate::metadata::{GroupOffset, MetadataStore, RemoteSegmentRef, TopicMeta};

    fn topic(tenant: &str, name: &str, id: u64) -> TopicMeta {
        TopicMeta {
            tenant: tenant.into(),
            name: name.into(),
            id,
            partitions: 3,
            replication_factor: 1,
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
