//! DeleteTopics: deletes topics of the session's tenant by name (v1-6) or
//! by topic id (v6).

use std::collections::HashMap;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use strata_broker::TopicMeta;
use uuid::Uuid;

use super::topic_configs::Failure;
use crate::context::{Session, Shared};
use crate::errors;
use crate::topics::topic_uuid;

/// One topic to delete, as the request names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Wanted {
    Name(TopicName),
    Id(Uuid),
    /// v6: both a name and an id, or neither.
    Bad(Option<TopicName>, Uuid),
}

fn wanted(request: DeleteTopicsRequest, version: i16) -> Vec<Wanted> {
    if version < 6 {
        return request.topic_names.into_iter().map(Wanted::Name).collect();
    }
    request
        .topics
        .into_iter()
        .map(|t| match (t.name, t.topic_id) {
            (Some(name), id) if id.is_nil() => Wanted::Name(name),
            (None, id) if !id.is_nil() => Wanted::Id(id),
            (name, id) => Wanted::Bad(name, id),
        })
        .collect()
}

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let wanted = wanted(request, version);
    let mut counts: HashMap<&Wanted, usize> = HashMap::new();
    for w in &wanted {
        *counts.entry(w).or_default() += 1;
    }
    // Topics by id, listed once, only if some are named by id.
    let mut listed: Option<Vec<TopicMeta>> = None;
    let mut responses = Vec::with_capacity(wanted.len());
    for w in &wanted {
        let result = match w {
            _ if counts.get(w).copied().unwrap_or(0) > 1 => {
                let (name, id) = match w {
                    Wanted::Name(n) => (Some(n.clone()), Uuid::nil()),
                    Wanted::Id(id) => (None, *id),
                    Wanted::Bad(n, id) => (n.clone(), *id),
                };
                failed(
                    name,
                    id,
                    Failure::invalid_request("the topic appears more than once in the request"),
                )
            }
            Wanted::Name(name) => delete(shared, session, name, Uuid::nil()).await,
            Wanted::Bad(name, id) => failed(
                name.clone(),
                *id,
                Failure::invalid_request(
                    "give a topic's name or its topic id, not both or neither",
                ),
            ),
            Wanted::Id(id) => {
                if listed.is_none() {
                    match shared.broker.list_topics(&session.tenant).await {
                        Ok(list) => listed = Some(list),
                        Err(e) => {
                            responses.push(failed(None, *id, e.into()));
                            continue;
                        }
                    }
                }
                match listed.iter().flatten().find(|t| topic_uuid(t) == *id) {
                    Some(t) => {
                        let name = TopicName(StrBytes::from_string(t.name.clone()));
                        delete(shared, session, &name, *id).await
                    }
                    None => failed(None, *id, unknown_id(*id)),
                }
            }
        };
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Deletes one topic by name. `id`: the topic id the request gave, if any;
/// the response carries the deleted topic's id either way.
async fn delete(
    shared: &Shared,
    session: &Session,
    name: &TopicName,
    id: Uuid,
) -> DeletableTopicResult {
    let tenant = session.tenant.as_str();
    let result: Result<TopicMeta, Failure> = async {
        let topic = shared.broker.topic_meta(tenant, name).await?;
        if !id.is_nil() && topic_uuid(&topic) != id {
            // Recreated since it was looked up: not the topic asked for.
            return Err(unknown_id(id));
        }
        shared.broker.delete_topic(tenant, name).await?;
        Ok(topic)
    }
    .await;
    match result {
        Ok(topic) => DeletableTopicResult::default()
            .with_name(Some(name.clone()))
            .with_topic_id(topic_uuid(&topic))
            .with_error_code(errors::NONE)
            .with_error_message(None),
        Err(f) => failed(Some(name.clone()), id, f),
    }
}

fn unknown_id(id: Uuid) -> Failure {
    Failure::new(errors::UNKNOWN_TOPIC_ID, format!("no topic has id {id}"))
}

fn failed(name: Option<TopicName>, id: Uuid, f: Failure) -> DeletableTopicResult {
    DeletableTopicResult::default()
        .with_name(name)
        .with_topic_id(id)
        .with_error_code(f.code)
        .with_error_message(f.message())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
    use kafka_protocol::messages::{ApiKey, ResponseKind};
    use strata_broker::TopicConfigPatch;

    use super::*;
    use crate::apis::topic_configs::testing::{encodes, fixture};

    fn name(s: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(s))
    }

    #[tokio::test]
    async fn deletes_by_name_and_by_id() {
        let f = fixture().await;
        let (shared, session) = (&f.shared, &f.session);
        let broker = &shared.broker;
        let d = TopicConfigPatch::default();
        for t in ["a", "b", "c"] {
            broker.create_topic("default", t, 1, d).await.unwrap();
        }
        let b_id = topic_uuid(&broker.topic_meta("default", "b").await.unwrap());

        let by_name =
            DeleteTopicsRequest::default().with_topic_names(vec![name("a"), name("nope")]);
        let r = handle(shared, session, by_name, 5).await;
        let codes: Vec<i16> = r.responses.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![0, 3]);
        for v in 1..=6 {
            encodes(
                ApiKey::DeleteTopics,
                v,
                ResponseKind::DeleteTopics(r.clone()),
            );
        }

        let unknown = Uuid::from_u64_pair(1, 2);
        let v6 = DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_topic_id(b_id),
            DeleteTopicState::default().with_topic_id(unknown),
            DeleteTopicState::default()
                .with_name(Some(name("c")))
                .with_topic_id(unknown),
            DeleteTopicState::default(),
            DeleteTopicState::default().with_name(Some(name("c"))),
            DeleteTopicState::default().with_name(Some(name("c"))),
        ]);
        let r = handle(shared, session, v6, 6).await;
        let codes: Vec<i16> = r.responses.iter().map(|t| t.error_code).collect();
        assert_eq!(codes, vec![0, 100, 42, 42, 42, 42]);
        assert_eq!(r.responses[0].name, Some(name("b")));
        assert_eq!(r.responses[0].topic_id, b_id);
        assert_eq!(r.responses[1].topic_id, unknown);
        encodes(ApiKey::DeleteTopics, 6, ResponseKind::DeleteTopics(r));

        let left: Vec<String> = broker
            .list_topics("default")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(left, vec!["c"]);
    }
}
