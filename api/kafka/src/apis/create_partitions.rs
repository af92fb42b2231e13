//! CreatePartitions: grows topics of the session's tenant to a new total
//! partition count (never shrinks them).

use std::collections::HashMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::topic_configs::{self, Failure};
use crate::context::{Session, Shared};
use crate::errors;

pub(crate) async fn handle(
    shared: &Shared,
    session: &Session,
    request: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in &request.topics {
        *counts.entry(&**t.name).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for t in &request.topics {
        let result = if counts.get(&**t.name).copied().unwrap_or(0) > 1 {
            Err(Failure::invalid_request(
                "the topic appears more than once in the request",
            ))
        } else {
            grow(shared, session, t, request.validate_only).await
        };
        let (code, message) = topic_configs::outcome(&result);
        results.push(
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow(
    shared: &Shared,
    session: &Session,
    t: &CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), Failure> {
    let (tenant, name) = (session.tenant.as_str(), &**t.name);
    let count = u32::try_from(t.count)
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(|| {
            Failure::new(
                errors::INVALID_PARTITIONS,
                format!(
                    "the partition count is the topic's new total and must be positive, not {}",
                    t.count
                ),
            )
        })?;
    // Clients send null; an empty list says no more.
    if t.assignments.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(Failure::invalid_request(
            "manual replica assignments are not supported: Strata places partitions \
             itself; give only the new partition count",
        ));
    }
    if validate_only {
        shared
            .broker
            .validate_add_partitions(tenant, name, count)
            .await?;
    } else {
        shared.broker.add_partitions(tenant, name, count).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsAssignment;
    use kafka_protocol::messages::{ApiKey, ResponseKind, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use strata_broker::TopicConfigPatch;

    use super::*;
    use crate::apis::topic_configs::testing::{encodes, fixture};

    fn grow_to(name: &'static str, count: i32) -> CreatePartitionsTopic {
        CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(name)))
            .with_count(count)
            .with_assignments(None)
    }

    async fn run(
        f: &crate::apis::topic_configs::testing::Fixture,
        topics: Vec<CreatePartitionsTopic>,
        validate_only: bool,
    ) -> Vec<i16> {
        let request = CreatePartitionsRequest::default()
            .with_topics(topics)
            .with_validate_only(validate_only);
        let r = handle(&f.shared, &f.session, request, 3).await;
        for v in 0..=3 {
            encodes(
                ApiKey::CreatePartitions,
                v,
                ResponseKind::CreatePartitions(r.clone()),
            );
        }
        r.results.iter().map(|t| t.error_code).collect()
    }

    #[tokio::test]
    async fn grows_and_never_shrinks() {
        let f = fixture().await;
        let broker = &f.shared.broker;
        let d = TopicConfigPatch::default();
        broker.create_topic("default", "t", 1, d).await.unwrap();
        broker.create_topic("default", "u", 1, d).await.unwrap();
        let partitions = || async { broker.topic_meta("default", "t").await.unwrap().partitions };

        assert_eq!(run(&f, vec![grow_to("t", 3)], true).await, vec![0]);
        assert_eq!(partitions().await, 1);
        assert_eq!(
            run(&f, vec![grow_to("t", 3), grow_to("nope", 2)], false).await,
            vec![0, 3]
        );
        assert_eq!(partitions().await, 3);
        let assigned =
            grow_to("w", 4).with_assignments(Some(vec![CreatePartitionsAssignment::default()]));
        let codes = run(&f, vec![grow_to("t", 3), grow_to("u", -1), assigned], false).await;
        assert_eq!(codes, vec![37, 37, 42]);
        let codes = run(&f, vec![grow_to("t", 5), grow_to("t", 6)], false).await;
        assert_eq!(codes, vec![42, 42]);
        assert_eq!(run(&f, vec![grow_to("t", 2)], true).await, vec![37]);
        assert_eq!(partitions().await, 3);
    }
}
