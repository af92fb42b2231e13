//! FindCoordinator: this broker coordinates every group (and would every
//! transaction, which it does not support).

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::context::{Session, Shared};
use crate::errors;

/// Key type of a consumer group (1 is a transactional id, 2 a share group).
const GROUP_KEY: i8 = 0;

pub(crate) fn handle(
    shared: &Shared,
    _session: &Session,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let config = &shared.config;
    let (host, port) = (
        StrBytes::from_string(config.advertised_host.clone()),
        i32::from(config.advertised_port),
    );
    let error = if request.key_type == GROUP_KEY {
        errors::NONE
    } else {
        errors::COORDINATOR_NOT_AVAILABLE
    };
    let message = (error != errors::NONE)
        .then(|| StrBytes::from_static_str("only consumer groups have a coordinator here"));
    if version >= 4 {
        // v4+: one answer per key, in `coordinator_keys`.
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(config.node_id))
                    .with_host(host.clone())
                    .with_port(port)
                    .with_error_code(error)
                    .with_error_message(message.clone())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_error_message(message)
        .with_node_id(BrokerId(config.node_id))
        .with_host(host)
        .with_port(port)
}
