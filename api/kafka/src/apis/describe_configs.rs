//! DescribeConfigs: a topic's configs under Kafka's names, and this
//! broker's (static, read-only) settings.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::topic_configs::{
    self, Failure, RESOURCE_BROKER, RESOURCE_TOPIC, SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC,
    SOURCE_STATIC_BROKER, TYPE_BOOLEAN, TYPE_INT, TYPE_LIST, TYPE_LONG,
};
use crate::context::{Session, Shared};

/// What the request asks to see of each config.
#[derive(Debug, Clone, Copy)]
struct Detail {
    synonyms: bool,
    documentation: bool,
}

/// One config as described, before it is put in the response.
struct Described {
    name: &'static str,
    value: String,
    source: i8,
    read_only: bool,
    config_type: i8,
    doc: &'static str,
    /// `(name, value, source)`, most specific first.
    synonyms: Vec<(&'static str, String, i8)>,
}

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: DescribeConfigsRequest,
    _version: i16,
) -> DescribeConfigsResponse {
    let detail = Detail {
        synonyms: request.include_synonyms,
        documentation: request.include_documentation,
    };
    let mut results = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let described = match resource.resource_type {
            RESOURCE_TOPIC => topic(shared, session, &resource.resource_name).await,
            RESOURCE_BROKER => broker(shared, &resource.resource_name),
            other => Err(Failure::invalid_request(format!(
                "resource type {other} has no configs here: Strata describes topics (2) and brokers (4)"
            ))),
        };
        let (code, message) = topic_configs::outcome(&described);
        let configs = described
            .map(|all| {
                all.into_iter()
                    .filter(|d| wanted(&resource, d.name))
                    .map(|d| entry(d, detail))
                    .collect()
            })
            .unwrap_or_default();
        results.push(
            DescribeConfigsResult::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_configs(configs),
        );
    }
    DescribeConfigsResponse::default().with_results(results)
}

/// Whether the request's key filter keeps config `name` (none or an empty
/// list keeps every config, as Kafka).
fn wanted(resource: &DescribeConfigsResource, name: &str) -> bool {
    match &resource.configuration_keys {
        Some(keys) if !keys.is_empty() => keys.iter().any(|k| &**k == name),
        _ => true,
    }
}

fn entry(d: Described, detail: Detail) -> DescribeConfigsResourceResult {
    let synonyms = if detail.synonyms {
        d.synonyms
            .into_iter()
            .map(|(name, value, source)| {
                DescribeConfigsSynonym::default()
                    .with_name(name.into())
                    .with_value(Some(value.into()))
                    .with_source(source)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(d.name.into())
        .with_value(Some(d.value.into()))
        .with_read_only(d.read_only)
        .with_config_source(d.source)
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(d.config_type)
        .with_documentation(
            detail
                .documentation
                .then(|| StrBytes::from_static_str(d.doc)),
        )
}

async fn topic(shared: &Shared, session: &Session, name: &str) -> Result<Vec<Described>, Failure> {
    let topic = shared.broker.topic_meta(&session.tenant, name).await?;
    let defaults = shared.broker.config().default_topic;
    Ok(topic_configs::describe(&topic.config, &defaults)
        .into_iter()
        .map(|e| {
            let mut synonyms = Vec::with_capacity(2);
            if e.source == SOURCE_DYNAMIC_TOPIC {
                synonyms.push((e.def.name, e.value.clone(), SOURCE_DYNAMIC_TOPIC));
            }
            synonyms.push((e.def.broker_name, e.default, SOURCE_DEFAULT));
            Described {
                name: e.def.name,
                value: e.value,
                source: e.source,
                read_only: false,
                config_type: e.def.config_type,
                doc: e.def.doc,
                synonyms,
            }
        })
        .collect())
}

/// This broker's settings: static, so read-only. The resource name is this
/// broker's id, or empty for the cluster's defaults (the same here).
fn broker(shared: &Shared, name: &str) -> Result<Vec<Described>, Failure> {
    let config = &shared.config;
    let id = crate::cluster::this_node(shared).0;
    if !name.is_empty() && name.parse::<i32>().ok() != Some(id) {
        return Err(Failure::invalid_request(format!(
            "Unexpected broker id, expected {id} or empty string, but received {name}"
        )));
    }
    let topic = shared.broker.config().default_topic;
    let ms = |d: std::time::Duration| d.as_millis().to_string();
    let settings: [(&'static str, String, i8, &'static str); 17] = [
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            TYPE_BOOLEAN,
            "Whether Metadata and Produce create a missing topic.",
        ),
        ("broker.id", id.to_string(), TYPE_INT, "This broker's id."),
        (
            "default.replication.factor",
            "1".into(),
            TYPE_INT,
            "Each partition has one copy, on this broker.",
        ),
        (
            "group.initial.rebalance.delay.ms",
            ms(config.group_initial_rebalance_delay),
            TYPE_INT,
            "How long a new group's first join waits for more members.",
        ),
        (
            "group.max.session.timeout.ms",
            ms(config.group_max_session_timeout),
            TYPE_INT,
            "Longest session timeout a group member may ask for.",
        ),
        (
            "group.min.session.timeout.ms",
            ms(config.group_min_session_timeout),
            TYPE_INT,
            "Shortest session timeout a group member may ask for.",
        ),
        (
            "log.cleanup.policy",
            "delete".into(),
            TYPE_LIST,
            "Old data is deleted by retention; topics are never compacted.",
        ),
        (
            "log.local.retention.bytes",
            topic.local_retention_bytes.to_string(),
            TYPE_LONG,
            "Default local.retention.bytes of topics.",
        ),
        (
            "log.local.retention.ms",
            topic.local_retention_ms.to_string(),
            TYPE_LONG,
            "Default local.retention.ms of topics.",
        ),
        (
            "log.retention.bytes",
            topic.retention_bytes.to_string(),
            TYPE_LONG,
            "Default retention.bytes of topics.",
        ),
        (
            "log.retention.ms",
            topic.retention_ms.to_string(),
            TYPE_LONG,
            "Default retention.ms of topics.",
        ),
        (
            "log.roll.ms",
            topic.segment_ms.to_string(),
            TYPE_LONG,
            "Default segment.ms of topics.",
        ),
        (
            "log.segment.bytes",
            topic.segment_bytes.to_string(),
            TYPE_INT,
            "Default segment.bytes of topics.",
        ),
        (
            "message.max.bytes",
            topic.max_message_bytes.to_string(),
            TYPE_INT,
            "Default max.message.bytes of topics.",
        ),
        (
            "min.insync.replicas",
            topic.min_insync_replicas.to_string(),
            TYPE_INT,
            "Default min.insync.replicas of topics.",
        ),
        (
            "num.partitions",
            config.default_partitions.to_string(),
            TYPE_INT,
            "Partitions of a topic created without a count.",
        ),
        (
            "socket.request.max.bytes",
            config.max_frame_bytes.to_string(),
            TYPE_INT,
            "Largest request accepted.",
        ),
    ];
    Ok(settings
        .into_iter()
        .map(|(name, value, config_type, doc)| Described {
            name,
            synonyms: vec![(name, value.clone(), SOURCE_STATIC_BROKER)],
            value,
            source: SOURCE_STATIC_BROKER,
            read_only: true,
            config_type,
            doc,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{ApiKey, ResponseKind};
    use strata_broker::TopicConfigPatch;

    use super::*;
    use crate::apis::topic_configs::testing::{encodes, fixture};

    fn resource(
        kind: i8,
        name: &'static str,
        keys: Option<Vec<&'static str>>,
    ) -> DescribeConfigsResource {
        DescribeConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(name.into())
            .with_configuration_keys(
                keys.map(|k| k.into_iter().map(StrBytes::from_static_str).collect()),
            )
    }

    #[tokio::test]
    async fn describes_topics_and_the_broker() {
        let f = fixture().await;
        let patch = TopicConfigPatch {
            retention_ms: Some(1234),
            local_retention_ms: Some(-2),
            ..TopicConfigPatch::default()
        };
        f.shared
            .broker
            .create_topic("default", "t", 1, patch)
            .await
            .unwrap();
        let request = DescribeConfigsRequest::default()
            .with_include_synonyms(true)
            .with_include_documentation(true)
            .with_resources(vec![
                resource(2, "t", None),
                resource(2, "t", Some(vec!["retention.ms", "cleanup.policy", "nope"])),
                resource(2, "missing", None),
                resource(
                    4,
                    "1",
                    Some(vec!["num.partitions", "log.local.retention.ms"]),
                ),
                resource(4, "", None),
                resource(4, "7", None),
                resource(3, "group", None),
            ]);
        let r = handle(&f.shared, &f.session, request, 4).await;
        let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
        assert_eq!(codes, vec![0, 0, 3, 0, 0, 42, 42]);
        for v in 1..=4 {
            encodes(
                ApiKey::DescribeConfigs,
                v,
                ResponseKind::DescribeConfigs(r.clone()),
            );
        }

        let all = &r.results[0].configs;
        assert_eq!(all.len(), topic_configs::DEFS.len());
        let retention = all.iter().find(|c| &*c.name == "retention.ms").unwrap();
        assert_eq!(retention.value.as_deref(), Some("1234"));
        assert_eq!(retention.config_source, SOURCE_DYNAMIC_TOPIC);
        assert_eq!(retention.config_type, TYPE_LONG);
        assert!(!retention.read_only);
        assert_eq!(retention.synonyms.len(), 2);
        assert_eq!(&*retention.synonyms[1].name, "log.retention.ms");
        assert!(retention.documentation.is_some());
        let segment = all.iter().find(|c| &*c.name == "segment.bytes").unwrap();
        assert_eq!(segment.config_source, SOURCE_DEFAULT);
        let local = all
            .iter()
            .find(|c| &*c.name == "local.retention.ms")
            .unwrap();
        assert_eq!(local.value.as_deref(), Some("-2"));
        assert_eq!(local.config_source, SOURCE_DYNAMIC_TOPIC);
        assert_eq!(local.config_type, TYPE_LONG);
        assert_eq!(&*local.synonyms[1].name, "log.local.retention.ms");
        assert_eq!(local.synonyms[1].value.as_deref(), Some("600000"));
        let local = all
            .iter()
            .find(|c| &*c.name == "local.retention.bytes")
            .unwrap();
        assert_eq!(
            (local.value.as_deref(), local.config_source),
            (Some("-1"), SOURCE_DEFAULT)
        );

        let filtered: Vec<&str> = r.results[1].configs.iter().map(|c| &*c.name).collect();
        assert_eq!(filtered, vec!["cleanup.policy", "retention.ms"]);

        let broker = &r.results[3].configs;
        assert_eq!(broker.len(), 2);
        assert_eq!(&*broker[0].name, "log.local.retention.ms");
        assert_eq!(broker[0].value.as_deref(), Some("600000"));
        assert_eq!(&*broker[1].name, "num.partitions");
        assert_eq!(broker[1].value.as_deref(), Some("2"));
        assert!(broker[1].read_only);
        assert_eq!(broker[1].config_source, SOURCE_STATIC_BROKER);
        assert!(!r.results[4].configs.is_empty());

        // Without synonyms and documentation, neither is sent.
        let plain = DescribeConfigsRequest::default().with_resources(vec![resource(2, "t", None)]);
        let r = handle(&f.shared, &f.session, plain, 1).await;
        assert!(
            r.results[0]
                .configs
                .iter()
                .all(|c| c.synonyms.is_empty() && c.documentation.is_none())
        );
        encodes(ApiKey::DescribeConfigs, 1, ResponseKind::DescribeConfigs(r));
    }
}
