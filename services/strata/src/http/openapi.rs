//! `/v1/openapi.json`: the OpenAPI 3 document of the whole HTTP API.

use std::sync::LazyLock;

use axum::Json;
use utoipa::OpenApi;

use super::{cluster, groups, ops, records, tenants, topics};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Strata HTTP API",
        description = "Topics, records and consumer groups under `/v1/tenants/{tenant}`. \
            Every error is `{\"error\":{\"code\",\"message\",\"details\"?}}`. Keys, values and \
            header values are UTF-8 strings unless `encoding` is `base64`; reading bytes that \
            are not UTF-8 with `encoding=utf8` fails with 400 `bad_request`."
    ),
    paths(
        ops::healthz,
        ops::metrics,
        document,
        tenants::list,
        tenants::create,
        topics::create,
        topics::list,
        topics::describe,
        topics::alter,
        topics::delete,
        records::produce,
        records::append,
        records::read,
        records::partition,
        groups::commit,
        groups::fetch,
        cluster::status,
        cluster::remove_node,
    ),
    tags(
        (name = "tenants", description = "Tenants own topics and groups"),
        (name = "topics", description = "Topics and their configuration"),
        (name = "records", description = "Produce, append and read records; tail with SSE"),
        (name = "groups", description = "Consumer-group offsets"),
        (name = "cluster", description = "Nodes, the metadata group, liveness"),
        (name = "ops", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "ops",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object))
)]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(DOCUMENT.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let routes = super::super::routes();
        assert_eq!(routes.len(), 18);
        for (method, path, _) in routes {
            let op = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
            assert!(
                op.is_object(),
                "{method} {path} is not in the OpenAPI document"
            );
        }
        // And nothing documented is missing from the router.
        let methods = [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ];
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| methods.contains(&k.as_str()))
            {
                documented.insert((m.to_ascii_uppercase(), path.clone()));
            }
        }
        let routed: std::collections::BTreeSet<_> = super::super::routes()
            .into_iter()
            .map(|(m, p, _)| (m.as_str().to_owned(), p.to_owned()))
            .collect();
        assert_eq!(documented, routed);
    }

    #[test]
    fn request_and_response_schemas_are_present() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "ProduceRequest",
            "ProduceResponse",
            "AppendRequest",
            "AppendResponse",
            "ReadResponse",
            "RecordIn",
            "RecordOut",
            "Topic",
            "CreateTopicRequest",
            "GroupOffsets",
            "ErrorBody",
            "TopicConfigIn",
            "TopicConfigOut",
            "PartitionInfo",
            "PartitionDetails",
        ] {
            assert!(schemas.contains_key(name), "schema {name} missing");
        }
    }

    /// The property names of schema `name`, sorted.
    fn properties(doc: &serde_json::Value, name: &str) -> Vec<String> {
        let schema = &doc["components"]["schemas"][name];
        let mut names: Vec<String> = schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name} has no properties: {schema}"))
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The documented fields are the ones the handlers send and accept.
    #[test]
    fn topic_schemas_match_their_json() {
        use super::super::topics::{PartitionDetails, TopicConfigOut};
        use strata_broker::{PartitionDescription, TopicConfig};

        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let keys = |v: serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let config = serde_json::to_value(TopicConfigOut::from(TopicConfig::default())).unwrap();
        assert_eq!(properties(&doc, "TopicConfigOut"), keys(config.clone()));
        assert_eq!(properties(&doc, "TopicConfigIn"), keys(config));
        for field in ["local_retention_ms", "local_retention_bytes"] {
            assert!(
                properties(&doc, "TopicConfigIn").iter().any(|p| p == field),
                "{field}"
            );
        }
        let partition = PartitionDetails::from(PartitionDescription {
            partition: 0,
            start_offset: 0,
            end_offset: 0,
            local_start_offset: 0,
            local_bytes: 0,
            remote_start_offset: 0,
            remote_end_offset: 0,
            remote_bytes: 0,
            remote_segments: 0,
            offload_lag_bytes: 0,
            offload_lag_ms: 0,
        });
        let partition = serde_json::to_value(partition).unwrap();
        assert_eq!(properties(&doc, "PartitionDetails"), keys(partition));
        let topic = &doc["components"]["schemas"]["Topic"]["properties"]["partition_info"];
        assert!(
            topic
                .to_string()
                .contains("#/components/schemas/PartitionDetails"),
            "{topic}"
        );
    }
}
