//! CreateTopics: creates topics in the session's tenant with Kafka's rules
//! for defaults (-1), replication (one copy, on the partition's leader), configs
//! and `validate_only`.

use std::collections::HashMap;

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use strata_broker::{TopicConfig, TopicMeta};

use super::topic_configs::{self, Failure};
use crate::context::{Session, Shared};
use crate::errors;
use crate::topics::topic_uuid;

/// What a topic was (or would be) created as.
struct Created {
    partitions: u32,
    replication_factor: u32,
    config: TopicConfig,
    /// `None` for `validate_only`: nothing was created.
    topic: Option<TopicMeta>,
}

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: CreateTopicsRequest,
    _version: i16,
) -> CreateTopicsResponse {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &request.topics {
        *counts.entry(&**t.name).or_default() += 1;
    }
    let defaults = shared.broker.config().default_topic;
    let mut results = Vec::with_capacity(request.topics.len());
    for t in &request.topics {
        let created = if counts.get(&**t.name).copied().unwrap_or(0) > 1 {
            Err(Failure::invalid_request(format!(
                "topic {:?} appears more than once in the request",
                &**t.name
            )))
        } else {
            create(shared, session, t, request.validate_only).await
        };
        let (code, message) = topic_configs::outcome(&created);
        let mut result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_error_code(code)
            .with_error_message(message);
        if let Ok(c) = created {
            let configs = topic_configs::describe(&c.config, &defaults)
                .into_iter()
                .map(|e| {
                    CreatableTopicConfigs::default()
                        .with_name(e.def.name.into())
                        .with_value(Some(e.value.into()))
                        .with_read_only(false)
                        .with_config_source(e.source)
                        .with_is_sensitive(false)
                })
                .collect();
            result = result
                .with_topic_id(c.topic.as_ref().map(topic_uuid).unwrap_or_default())
                .with_num_partitions(i32::try_from(c.partitions).unwrap_or(i32::MAX))
                .with_replication_factor(i16::try_from(c.replication_factor).unwrap_or(i16::MAX))
                .with_configs(Some(configs));
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Partitions asked for: -1 is the broker's default.
fn partitions(shared: &Shared, asked: i32) -> Result<u32, Failure> {
    if asked == -1 {
        return Ok(shared.config.default_partitions);
    }
    u32::try_from(asked).ok().filter(|&n| n > 0).ok_or_else(|| {
        Failure::new(
            errors::INVALID_PARTITIONS,
            format!(
                "Number of partitions was set to an invalid non-positive value: {asked} \
                     (-1 uses the broker's default)"
            ),
        )
    })
}

/// Replication asked for: -1 is the broker's default (`None`); whether the
/// cluster has enough brokers for it is the broker's to say.
fn check_replication(asked: i16) -> Result<Option<u32>, Failure> {
    match asked {
        -1 => Ok(None),
        n if n < 1 => Err(Failure::new(
            errors::INVALID_REPLICATION_FACTOR,
            "Replication factor must be larger than 0, or -1 to use the default value.",
        )),
        n => Ok(u32::try_from(n).ok()),
    }
}

async fn create(
    shared: &Shared,
    session: &Session,
    t: &CreatableTopic,
    validate_only: bool,
) -> Result<Created, Failure> {
    let (tenant, name) = (session.tenant.as_str(), &**t.name);
    // Name, then existence (tools create-if-missing and expect "exists"
    // whatever else the request says), then the rest, as Kafka.
    strata_broker::validate_topic(name)?;
    match shared.broker.topic_meta(tenant, name).await {
        Ok(_) => {
            return Err(Failure::new(
                errors::TOPIC_ALREADY_EXISTS,
                format!("Topic '{name}' already exists."),
            ));
        }
        Err(e) if e.code == strata_api::ErrorCode::TopicNotFound => {}
        Err(e) => return Err(e.into()),
    }
    if !t.assignments.is_empty() {
        return Err(Failure::invalid_request(
            "manual replica assignments are not supported: Strata places partitions \
             itself; give num_partitions and replication_factor instead",
        ));
    }
    let partitions = partitions(shared, t.num_partitions)?;
    let replication_factor = check_replication(t.replication_factor)?;
    let defaults = shared.broker.config().default_topic;
    let patch = topic_configs::create_patch(
        &defaults,
        t.configs.iter().map(|c| (&*c.name, c.value.as_deref())),
    )?;
    if validate_only {
        let (config, replication_factor) = shared
            .broker
            .validate_new_topic_with(tenant, name, partitions, replication_factor, patch)
            .await?;
        return Ok(Created {
            partitions,
            replication_factor,
            config,
            topic: None,
        });
    }
    let topic = shared
        .broker
        .create_topic_with(tenant, name, partitions, replication_factor, patch)
        .await?;
    Ok(Created {
        partitions: topic.partitions,
        replication_factor: topic.replication_factor,
        config: topic.config,
        topic: Some(topic),
    })
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::create_topics_request::{
        CreatableReplicaAssignment, CreatableTopicConfig,
    };
    use kafka_protocol::messages::{ApiKey, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;

    use super::*;
    use crate::apis::topic_configs::testing::{encodes, fixture};

    fn topic(name: &'static str, partitions: i32, rf: i16) -> CreatableTopic {
        CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
    }

    fn config(
        t: CreatableTopic,
        name: &'static str,
        value: Option<&'static str>,
    ) -> CreatableTopic {
        let mut configs = t.configs.clone();
        configs.push(
            CreatableTopicConfig::default()
                .with_name(name.into())
                .with_value(value.map(StrBytes::from_static_str)),
        );
        t.with_configs(configs)
    }

    fn request(topics: Vec<CreatableTopic>, validate_only: bool) -> CreateTopicsRequest {
        CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(1000)
            .with_validate_only(validate_only)
    }

    fn codes(r: &CreateTopicsResponse) -> Vec<i16> {
        r.topics.iter().map(|t| t.error_code).collect()
    }

    #[tokio::test]
    async fn creates_topics_as_kafka_does() {
        let f = fixture().await;
        let (shared, session) = (&f.shared, &f.session);
        let created = handle(
            shared,
            session,
            request(
                vec![
                    config(topic("a", -1, -1), "retention.ms", Some("60000")),
                    config(
                        config(topic("b", 3, 1), "cleanup.policy", Some("delete")),
                        "local.retention.ms",
                        Some("-2"),
                    ),
                ],
                false,
            ),
            7,
        )
        .await;
        assert_eq!(codes(&created), vec![0, 0]);
        let a = &created.topics[0];
        assert_eq!(a.error_message, None);
        assert_eq!((a.num_partitions, a.replication_factor), (2, 1));
        let meta = shared.broker.topic_meta("default", "a").await.unwrap();
        assert_eq!(a.topic_id, topic_uuid(&meta));
        assert_eq!(meta.config.retention_ms, 60_000);
        let configs = a.configs.as_ref().unwrap();
        let retention = configs.iter().find(|c| &*c.name == "retention.ms").unwrap();
        assert_eq!(retention.value.as_deref(), Some("60000"));
        assert_eq!(retention.config_source, topic_configs::SOURCE_DYNAMIC_TOPIC);
        assert!(configs.iter().any(|c| &*c.name == "segment.bytes"));
        assert_eq!(created.topics[1].num_partitions, 3);
        let b = shared.broker.topic_meta("default", "b").await.unwrap();
        assert_eq!(b.config.local_retention_ms, -2);
        assert_eq!(
            b.config.effective_local_retention_ms(),
            b.config.retention_ms
        );
        let local = created.topics[1].configs.as_ref().unwrap();
        let local = local
            .iter()
            .find(|c| &*c.name == "local.retention.ms")
            .unwrap();
        assert_eq!(local.value.as_deref(), Some("-2"));
        for v in 2..=7 {
            encodes(
                ApiKey::CreateTopics,
                v,
                ResponseKind::CreateTopics(created.clone()),
            );
        }

        let assigned = topic("x", -1, -1).with_assignments(vec![
            CreatableReplicaAssignment::default().with_partition_index(0),
        ]);
        let failed = handle(
            shared,
            session,
            request(
                vec![
                    topic("a", 1, 1),
                    topic("bad/name", 1, 1),
                    topic("c", 1, 3),
                    topic("c2", 1, 0),
                    topic("d", 0, 1),
                    topic("e", -5, 1),
                    assigned,
                    config(topic("f", 1, 1), "cleanup.policy", Some("compact")),
                    config(topic("g", 1, 1), "flush.ms", Some("1")),
                    config(topic("h", 1, 1), "segment.bytes", Some("1")),
                    config(topic("i", 1, 1), "retention.ms", None),
                    topic("j", 1, 1),
                    topic("j", 1, 1),
                    config(topic("k", 1, 1), "local.retention.bytes", Some("-3")),
                ],
                false,
            ),
            5,
        )
        .await;
        assert_eq!(
            codes(&failed),
            vec![36, 17, 38, 38, 37, 37, 42, 40, 40, 40, 40, 42, 42, 40]
        );
        let message = |i: usize| failed.topics[i].error_message.as_deref().unwrap_or("");
        assert!(
            message(2).contains("larger than the 1 live broker"),
            "{}",
            message(2)
        );
        assert!(message(7).contains("compaction is not supported"));
        assert!(message(9).contains("segment.bytes is 1"), "{}", message(9));
        assert!(
            message(13).contains("local.retention.bytes is -3"),
            "{}",
            message(13)
        );
        for v in 2..=7 {
            encodes(
                ApiKey::CreateTopics,
                v,
                ResponseKind::CreateTopics(failed.clone()),
            );
        }
        let names: Vec<String> = shared
            .broker
            .list_topics("default")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, vec!["a", "b"]);
    }

    #[tokio::test]
    async fn validate_only_creates_nothing() {
        let f = fixture().await;
        let (shared, session) = (&f.shared, &f.session);
        let t = config(topic("v", 4, -1), "max.message.bytes", Some("1000"));
        let checked = handle(shared, session, request(vec![t], true), 7).await;
        assert_eq!(codes(&checked), vec![0]);
        let v = &checked.topics[0];
        assert_eq!(v.num_partitions, 4);
        assert!(v.topic_id.is_nil());
        let max = v
            .configs
            .iter()
            .flatten()
            .find(|c| &*c.name == "max.message.bytes");
        assert_eq!(max.and_then(|c| c.value.as_deref()), Some("1000"));
        assert!(
            shared
                .broker
                .list_topics("default")
                .await
                .unwrap()
                .is_empty()
        );

        let bad = config(topic("v", 4, -1), "segment.ms", Some("0"));
        let checked = handle(shared, session, request(vec![bad], true), 7).await;
        assert_eq!(codes(&checked), vec![40]);
    }

    #[test]
    fn replication_factors() {
        assert_eq!(check_replication(-1).unwrap(), None);
        assert_eq!(check_replication(1).unwrap(), Some(1));
        assert_eq!(check_replication(3).unwrap(), Some(3));
        for bad in [0, -2, i16::MIN] {
            let f = check_replication(bad).unwrap_err();
            assert_eq!(f.code, errors::INVALID_REPLICATION_FACTOR);
        }
    }
}
