//! The orphan collector: objects under the store's prefix that no manifest
//! names, older than the grace period, are deleted. They are uploads whose
//! manifest commit never happened (a crash in between) or whose manifest
//! entry went (retention, a deleted topic) before the object did.

use std::collections::HashSet;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use tracing::{info, warn};

use super::Tier;
use crate::metadata::MetadataStore;
use crate::metrics;

pub(crate) async fn collect_orphans(meta: &dyn MetadataStore, tier: &Tier) {
    let named: HashSet<String> = match meta.manifests().await {
        Ok(m) => m.into_values().flatten().map(|s| s.key).collect(),
        Err(e) => {
            warn!(error = %e, "orphan collection: cannot read the manifests");
            return;
        }
    };
    let store = tier.handle.store();
    let root = tier.handle.path("tenants");
    let listed: Vec<object_store::ObjectMeta> = match store.list(Some(&root)).try_collect().await {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "orphan collection: cannot list the bucket");
            return;
        }
    };
    let grace = chrono_free_cutoff(tier.config.orphan_grace);
    for object in listed {
        let key = object.location.to_string();
        if named.contains(&key) || strata_tier::keys::parse_segment_key(&object.location).is_none()
        {
            continue;
        }
        if object.last_modified.timestamp_millis() > grace {
            continue;
        }
        match store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                metrics::ORPHANS_DELETED.inc();
                info!(key, "deleted an orphaned segment object");
            }
            Err(e) => warn!(key, error = %e, "cannot delete an orphaned segment object"),
        }
    }
}

/// Wall-clock milliseconds `grace` ago.
fn chrono_free_cutoff(grace: std::time::Duration) -> i64 {
    crate::broker::now_ms().saturating_sub(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX))
}
