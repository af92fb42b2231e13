//! Consumer groups as the broker knows them: by their committed offsets.
//! Membership (who is in a group now) belongs to a front end's coordinator.

use std::collections::HashMap;

use strata_api::{ApiError, ErrorCode};

use super::{Broker, Result, partition_not_found};
use crate::metadata::{GroupOffset, TopicMeta};
use crate::names::{validate_group, validate_tenant, validate_topic};

impl Broker {
    /// Stores a group's offsets (with their metadata strings). Every topic
    /// and partition must exist, as Kafka requires.
    pub async fn commit_offsets(
        &self,
        tenant: &str,
        group: &str,
        offsets: Vec<GroupOffset>,
    ) -> Result<()> {
        validate_tenant(tenant)?;
        validate_group(group)?;
        for o in &offsets {
            validate_topic(&o.topic)?;
        }
        self.check_tenant(tenant).await?;
        let mut topics: HashMap<&str, TopicMeta> = HashMap::new();
        for o in &offsets {
            if !topics.contains_key(o.topic.as_str()) {
                topics.insert(&o.topic, self.topic(tenant, &o.topic).await?);
            }
            if let Some(t) = topics.get(o.topic.as_str())
                && o.partition >= t.partitions
            {
                return Err(partition_not_found(t, o.partition));
            }
        }
        self.meta.commit_offsets(tenant, group, &offsets).await
    }

    /// A group's committed offsets; `group_not_found` if it never committed.
    pub async fn fetch_offsets(&self, tenant: &str, group: &str) -> Result<Vec<GroupOffset>> {
        validate_tenant(tenant)?;
        validate_group(group)?;
        self.meta.barrier().await?;
        self.check_tenant(tenant).await?;
        self.meta
            .fetch_offsets(tenant, group)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::GroupNotFound,
                    format!("group {group:?} has no committed offsets in tenant {tenant:?}"),
                )
                .with_details(serde_json::json!({ "tenant": tenant, "group": group }))
            })
    }

    /// The groups of `tenant` with at least one committed offset, sorted.
    pub async fn list_groups(&self, tenant: &str) -> Result<Vec<String>> {
        validate_tenant(tenant)?;
        self.meta.barrier().await?;
        self.check_tenant(tenant).await?;
        self.meta.groups(tenant).await
    }

    /// Forgets a group's committed offsets; `group_not_found` if it has none.
    pub async fn delete_group(&self, tenant: &str, group: &str) -> Result<()> {
        validate_tenant(tenant)?;
        validate_group(group)?;
        self.check_tenant(tenant).await?;
        if self.meta.delete_group(tenant, group).await? {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::GroupNotFound,
                format!("group {group:?} has no committed offsets in tenant {tenant:?}"),
            )
            .with_details(serde_json::json!({ "tenant": tenant, "group": group })))
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::broker::Broker;
    use crate::config::{BrokerConfig, TopicConfigPatch};
    use crate::metadata::GroupOffset;
    use strata_api::ErrorCode;

    fn offset(topic: &str, partition: u32, offset: u64) -> GroupOffset {
        GroupOffset {
            topic: topic.into(),
            partition,
            offset,
            metadata: String::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_are_listed_and_deleted_per_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let b = Broker::open(BrokerConfig::new(dir.path())).await.unwrap();
        b.create_tenant("acme").await.unwrap();
        for tenant in ["default", "acme"] {
            b.create_topic(tenant, "t", 2, TopicConfigPatch::default())
                .await
                .unwrap();
        }
        b.commit_offsets("default", "g1", vec![offset("t", 0, 5)])
            .await
            .unwrap();
        b.commit_offsets("default", "g2", vec![offset("t", 1, 7)])
            .await
            .unwrap();
        b.commit_offsets("acme", "g1", vec![offset("t", 1, 9)])
            .await
            .unwrap();
        assert_eq!(b.list_groups("default").await.unwrap(), vec!["g1", "g2"]);
        assert_eq!(b.list_groups("acme").await.unwrap(), vec!["g1"]);
        assert_eq!(
            b.list_groups("nope").await.unwrap_err().code,
            ErrorCode::TenantNotFound
        );

        b.delete_group("default", "g1").await.unwrap();
        assert_eq!(b.list_groups("default").await.unwrap(), vec!["g2"]);
        assert_eq!(
            b.fetch_offsets("default", "g1").await.unwrap_err().code,
            ErrorCode::GroupNotFound
        );
        // The other tenant's group of the same name is untouched.
        assert_eq!(
            b.fetch_offsets("acme", "g1").await.unwrap(),
            vec![offset("t", 1, 9)]
        );
        assert_eq!(
            b.delete_group("default", "g1").await.unwrap_err().code,
            ErrorCode::GroupNotFound
        );
        assert_eq!(
            b.delete_group("default", "a/b").await.unwrap_err().code,
            ErrorCode::InvalidName
        );
        b.shutdown().await;
    }
}
