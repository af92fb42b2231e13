//! DescribeCluster: every live broker with a Kafka listener (a single node:
//! this one), with its zone as its rack; this node answers as controller.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use crate::cluster;
use crate::context::{Session, Shared};
use crate::errors;

/// Endpoint types (v1+): this listener serves brokers' clients.
const ENDPOINT_BROKER: i8 = 1;
const ENDPOINT_CONTROLLER: i8 = 2;
/// "Not provided" for the authorized-operations field.
const OPERATIONS_UNKNOWN: i32 = i32::MIN;

pub(crate) fn handle(
    shared: &Shared,
    _session: &Session,
    request: DescribeClusterRequest,
    version: i16,
) -> DescribeClusterResponse {
    let config = &shared.config;
    // v0 has no endpoint type: it is always the brokers'.
    let asked = if version >= 1 {
        request.endpoint_type
    } else {
        ENDPOINT_BROKER
    };
    let refused = match asked {
        ENDPOINT_BROKER => None,
        ENDPOINT_CONTROLLER => Some((
            errors::MISMATCHED_ENDPOINT_TYPE,
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of \
             type CONTROLLER"
                .to_string(),
        )),
        other => Some((
            errors::UNSUPPORTED_ENDPOINT_TYPE,
            format!("Unsupported endpoint type {other}"),
        )),
    };
    if let Some((code, message)) = refused {
        return DescribeClusterResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(message)));
    }
    let brokers = cluster::brokers(shared)
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(b.id)
                .with_host(b.host)
                .with_port(b.port)
                .with_rack(b.rack)
        })
        .collect();
    DescribeClusterResponse::default()
        .with_error_code(errors::NONE)
        .with_error_message(None)
        .with_endpoint_type(ENDPOINT_BROKER)
        .with_cluster_id(StrBytes::from_string(config.cluster_id.clone()))
        .with_controller_id(cluster::this_node(shared))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(OPERATIONS_UNKNOWN)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{ApiKey, BrokerId, ResponseKind};

    use super::*;
    use crate::apis::topic_configs::testing::{encodes, fixture};

    #[tokio::test]
    async fn one_broker_cluster() {
        let f = fixture().await;
        for v in 0..=1 {
            let r = handle(&f.shared, &f.session, DescribeClusterRequest::default(), v);
            assert_eq!(r.error_code, 0);
            assert_eq!(&*r.cluster_id, "strata");
            // A single node's id is 1, as the broker's.
            assert_eq!(r.controller_id, BrokerId(1));
            assert_eq!(r.brokers.len(), 1);
            assert_eq!(r.brokers[0].broker_id, BrokerId(1));
            assert_eq!(r.brokers[0].rack, None);
            assert_eq!(
                (&*r.brokers[0].host, r.brokers[0].port),
                ("127.0.0.1", 9092)
            );
            assert_eq!(r.cluster_authorized_operations, i32::MIN);
            encodes(ApiKey::DescribeCluster, v, ResponseKind::DescribeCluster(r));
        }
        for (endpoint, code) in [(2, 114), (3, 115), (0, 115)] {
            let request = DescribeClusterRequest::default().with_endpoint_type(endpoint);
            let r = handle(&f.shared, &f.session, request.clone(), 1);
            assert_eq!(r.error_code, code);
            assert!(r.error_message.is_some());
            assert!(r.brokers.is_empty());
            encodes(ApiKey::DescribeCluster, 1, ResponseKind::DescribeCluster(r));
            // v0 has no endpoint type: always the brokers'.
            assert_eq!(handle(&f.shared, &f.session, request, 0).error_code, 0);
        }
    }
}
