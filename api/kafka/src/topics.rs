//! Topic helpers shared by several APIs: ids, name checks, auto-creation.

use kafka_protocol::protocol::StrBytes;
use strata_api::ApiError;
use strata_broker::TopicMeta;
use uuid::Uuid;

use crate::context::Shared;

/// The Kafka topic id of a topic: stable for the topic's life, different for
/// a topic recreated under the same name (the broker's topic ids only grow),
/// and never the nil id (which Kafka reads as "no id").
pub(crate) fn topic_uuid(topic: &TopicMeta) -> Uuid {
    // FNV-1a of the tenant keeps tenants' ids apart; the low word is the id.
    let tenant_hash = topic.tenant.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Uuid::from_u64_pair(tenant_hash | 1, topic.id)
}

pub(crate) fn name(topic: &TopicMeta) -> StrBytes {
    StrBytes::from_string(topic.name.clone())
}

/// The topic, created with the broker's defaults if it is missing and
/// auto-creation is on (and allowed by the request).
pub(crate) async fn get_or_create(
    shared: &Shared,
    tenant: &str,
    name: &str,
    allow_create: bool,
) -> Result<TopicMeta, ApiError> {
    match shared.broker.topic_meta(tenant, name).await {
        Err(e)
            if e.code == strata_api::ErrorCode::TopicNotFound
                && allow_create
                && shared.config.auto_create_topics =>
        {
            let created = shared
                .broker
                .create_topic(
                    tenant,
                    name,
                    shared.config.default_partitions,
                    strata_broker::TopicConfigPatch::default(),
                )
                .await;
            match created {
                Ok(t) => Ok(t),
                // Someone else created it meanwhile.
                Err(e) if e.code == strata_api::ErrorCode::TopicAlreadyExists => {
                    shared.broker.topic_meta(tenant, name).await
                }
                Err(e) => Err(e),
            }
        }
        other => other,
    }
}
