//! AlterConfigs and IncrementalAlterConfigs: topic configs of the session's
//! tenant. AlterConfigs replaces a topic's configs (what it does not name
//! goes back to the broker's default); IncrementalAlterConfigs changes the
//! configs it names. Broker settings are static: altering them is refused.

use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, alter_configs_response, incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;
use strata_broker::TopicConfigPatch;

use super::topic_configs::{self, Failure, RESOURCE_BROKER, RESOURCE_TOPIC};
use crate::context::{Session, Shared};
use crate::errors;

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: AlterConfigsRequest,
    _version: i16,
) -> AlterConfigsResponse {
    let defaults = shared.broker.config().default_topic;
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let patch = || {
            topic_configs::replace_patch(
                &defaults,
                r.configs.iter().map(|c| (&*c.name, c.value.as_deref())),
            )
        };
        let result = alter(
            shared,
            session,
            r.resource_type,
            &r.resource_name,
            patch,
            request.validate_only,
        )
        .await;
        let (code, message) = topic_configs::outcome(&result);
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub(crate) async fn handle_incremental(
    shared: &Shared,
    session: &Session,
    request: IncrementalAlterConfigsRequest,
    _version: i16,
) -> IncrementalAlterConfigsResponse {
    let defaults = shared.broker.config().default_topic;
    let mut responses = Vec::with_capacity(request.resources.len());
    for r in request.resources {
        let patch = || {
            topic_configs::incremental_patch(
                &defaults,
                r.configs
                    .iter()
                    .map(|c| (&*c.name, c.config_operation, c.value.as_deref())),
            )
        };
        let result = alter(
            shared,
            session,
            r.resource_type,
            &r.resource_name,
            patch,
            request.validate_only,
        )
        .await;
        let (code, message) = topic_configs::outcome(&result);
        responses.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// Alters one resource with the patch `patch` builds (built only for a topic).
async fn alter(
    shared: &Shared,
    session: &Session,
    resource_type: i8,
    resource_name: &StrBytes,
    patch: impl FnOnce() -> Result<TopicConfigPatch, Failure>,
    validate_only: bool,
) -> Result<(), Failure> {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return Err(Failure::new(
                errors::POLICY_VIOLATION,
                "broker settings are static in Strata: change them in the server's \
                 configuration and restart it",
            ));
        }
        other => {
            return Err(Failure::invalid_request(format!(
                "resource type {other} has no alterable configs here: Strata alters topic \
                 configs (resource type 2)"
            )));
        }
    }
    let (tenant, name) = (session.tenant.as_str(), &**resource_name);
    // The topic first: an unknown topic is reported before its configs are judged.
    let topic = shared.broker.topic_meta(tenant, name).await?;
    let patch = patch()?;
    if validate_only {
        let config = topic_configs::patched(topic.config, &patch);
        shared.broker.validate_topic_config(&config)?;
    } else {
        shared.broker.alter_topic(tenant, name, patch).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{
        ApiKey, ResponseKind, alter_configs_request, incremental_alter_configs_request,
    };
    use strata_broker::{TopicConfig, TopicConfigPatch};

    use super::*;
    use crate::apis::topic_configs::testing::{Fixture, encodes, fixture};

    fn legacy(
        kind: i8,
        name: &'static str,
        configs: &[(&'static str, Option<&'static str>)],
    ) -> alter_configs_request::AlterConfigsResource {
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(name.into())
            .with_configs(
                configs
                    .iter()
                    .map(|&(n, v)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(n.into())
                            .with_value(v.map(StrBytes::from_static_str))
                    })
                    .collect(),
            )
    }

    fn incremental(
        kind: i8,
        name: &'static str,
        ops: &[(&'static str, i8, Option<&'static str>)],
    ) -> incremental_alter_configs_request::AlterConfigsResource {
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(name.into())
            .with_configs(
                ops.iter()
                    .map(|&(n, op, v)| {
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(n.into())
                            .with_config_operation(op)
                            .with_value(v.map(StrBytes::from_static_str))
                    })
                    .collect(),
            )
    }

    async fn config(f: &Fixture) -> TopicConfig {
        f.shared
            .broker
            .topic_meta("default", "t")
            .await
            .unwrap()
            .config
    }

    #[tokio::test]
    async fn alter_configs_replaces_the_topic_config() {
        let f = fixture().await;
        let defaults = f.shared.broker.config().default_topic;
        let patch = TopicConfigPatch {
            retention_ms: Some(1234),
            segment_ms: Some(5678),
            ..TopicConfigPatch::default()
        };
        f.shared
            .broker
            .create_topic("default", "t", 1, patch)
            .await
            .unwrap();
        let run = |resources, validate_only| {
            let request = AlterConfigsRequest::default()
                .with_resources(resources)
                .with_validate_only(validate_only);
            handle(&f.shared, &f.session, request, 2)
        };

        let r = run(
            vec![legacy(2, "t", &[("retention.bytes", Some("1000000"))])],
            true,
        )
        .await;
        assert_eq!(r.responses[0].error_code, 0);
        assert_eq!(config(&f).await.retention_ms, 1234);

        let r = run(
            vec![
                legacy(
                    2,
                    "t",
                    &[
                        ("retention.bytes", Some("1000000")),
                        ("cleanup.policy", Some("delete")),
                    ],
                ),
                legacy(2, "missing", &[]),
                legacy(4, "0", &[("num.partitions", Some("3"))]),
                legacy(8, "0", &[]),
            ],
            false,
        )
        .await;
        let codes: Vec<i16> = r.responses.iter().map(|x| x.error_code).collect();
        assert_eq!(codes, vec![0, 3, 44, 42]);
        assert_eq!(r.responses[0].error_message, None);
        for v in 0..=2 {
            encodes(
                ApiKey::AlterConfigs,
                v,
                ResponseKind::AlterConfigs(r.clone()),
            );
        }
        assert_eq!(
            config(&f).await,
            TopicConfig {
                retention_bytes: 1_000_000,
                ..defaults
            }
        );

        let r = run(
            vec![legacy(2, "t", &[("segment.bytes", Some("10"))])],
            false,
        )
        .await;
        assert_eq!(r.responses[0].error_code, 40);
        let message = r.responses[0].error_message.as_deref().unwrap_or("");
        assert!(message.contains("segment.bytes is 10"), "{message}");
        let r = run(vec![legacy(2, "t", &[("segment.bytes", Some("10"))])], true).await;
        assert_eq!(r.responses[0].error_code, 40);
        assert_eq!(config(&f).await.retention_bytes, 1_000_000);
    }

    #[tokio::test]
    async fn incremental_alter_configs_changes_what_it_names() {
        let f = fixture().await;
        let defaults = f.shared.broker.config().default_topic;
        let patch = TopicConfigPatch {
            retention_ms: Some(1234),
            segment_ms: Some(5678),
            ..TopicConfigPatch::default()
        };
        f.shared
            .broker
            .create_topic("default", "t", 1, patch)
            .await
            .unwrap();
        let run = |resources, validate_only| {
            let request = IncrementalAlterConfigsRequest::default()
                .with_resources(resources)
                .with_validate_only(validate_only);
            handle_incremental(&f.shared, &f.session, request, 1)
        };
        let change = incremental(
            2,
            "t",
            &[
                ("retention.ms", 1, None),
                ("max.message.bytes", 0, Some("2048")),
                ("local.retention.bytes", 0, Some("1073741824")),
            ],
        );

        let r = run(vec![change.clone()], true).await;
        assert_eq!(r.responses[0].error_code, 0);
        assert_eq!(config(&f).await.retention_ms, 1234);

        let r = run(
            vec![
                change,
                incremental(2, "t", &[("retention.ms", 2, Some("5"))]),
                incremental(2, "t", &[("cleanup.policy", 2, Some("compact"))]),
                incremental(2, "t", &[("retention.ms", 9, Some("5"))]),
                incremental(4, "0", &[("num.partitions", 0, Some("3"))]),
            ],
            false,
        )
        .await;
        let codes: Vec<i16> = r.responses.iter().map(|x| x.error_code).collect();
        assert_eq!(codes, vec![0, 40, 40, 42, 44]);
        for v in 0..=1 {
            encodes(
                ApiKey::IncrementalAlterConfigs,
                v,
                ResponseKind::IncrementalAlterConfigs(r.clone()),
            );
        }
        assert_eq!(
            config(&f).await,
            TopicConfig {
                segment_ms: 5678,
                max_message_bytes: 2048,
                local_retention_bytes: 1 << 30,
                ..defaults
            }
        );
    }
}
