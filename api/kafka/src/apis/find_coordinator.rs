//! FindCoordinator: a consumer group's coordinator is the node the broker
//! names for it (every node names the same one, by the group's hash; a
//! single node coordinates every group). Transactions are not supported:
//! a transactional id gets COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{self, KafkaBroker};
use crate::context::{Session, Shared};
use crate::errors;

/// Key type of a consumer group (1 is a transactional id, 2 a share group).
const GROUP_KEY: i8 = 0;

/// What one key is answered with.
struct Answer {
    broker: KafkaBroker,
    error: i16,
    message: Option<StrBytes>,
}

pub(crate) fn handle(
    shared: &Shared,
    _session: &Session,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let brokers = cluster::brokers(shared);
    let answer = |key: &str| answer(shared, &brokers, request.key_type, key);
    if version >= 4 {
        // v4+: one answer per key, in `coordinator_keys`.
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let a = answer(key);
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(a.broker.id)
                    .with_host(a.broker.host)
                    .with_port(a.broker.port)
                    .with_error_code(a.error)
                    .with_error_message(a.message)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    // v0 has no key type: always a group.
    let a = answer(&request.key);
    FindCoordinatorResponse::default()
        .with_error_code(a.error)
        .with_error_message(a.message)
        .with_node_id(a.broker.id)
        .with_host(a.broker.host)
        .with_port(a.broker.port)
}

/// The coordinator of `key`: a group's is the node the broker names, at
/// its advertised Kafka address (this node if the broker lists no nodes,
/// or none with that id and a Kafka listener).
fn answer(shared: &Shared, brokers: &[KafkaBroker], key_type: i8, key: &str) -> Answer {
    let me = cluster::this_node(shared);
    let this_one = || {
        cluster::find(brokers, me)
            .cloned()
            .unwrap_or_else(|| cluster::this_broker(shared))
    };
    if key_type != GROUP_KEY {
        return Answer {
            broker: this_one(),
            error: errors::COORDINATOR_NOT_AVAILABLE,
            message: Some(StrBytes::from_static_str(
                "only consumer groups have a coordinator here",
            )),
        };
    }
    let node = cluster::broker_id(shared.broker.group_coordinator(key));
    let broker = match cluster::find(brokers, node) {
        Some(b) => b.clone(),
        None => {
            if node != me {
                tracing::warn!(
                    group = key,
                    coordinator = node.0,
                    "a group's coordinator has no advertised Kafka address; answering with this node"
                );
            }
            this_one()
        }
    };
    Answer {
        broker,
        error: errors::NONE,
        message: None,
    }
}
