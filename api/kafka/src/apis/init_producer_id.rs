//! InitProducerId: ids for idempotent producers. Transactions are not
//! supported: a transactional id is refused.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::context::{Session, Shared};
use crate::errors;

pub(crate) async fn handle(
    shared: &Shared,
    _session: &Session,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    if request.transactional_id.is_some() {
        return InitProducerIdResponse::default()
            .with_error_code(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
    }
    // KIP-360: a producer that knows its id asks for a bumped epoch after an
    // error it cannot otherwise recover from; the new epoch restarts its sequences.
    let (id, epoch) = match (request.producer_id.0, request.producer_epoch) {
        (id, epoch) if id >= 0 && (0..i16::MAX).contains(&epoch) => (id, epoch + 1),
        // Ids come from the metadata group: unique across the cluster.
        _ => match shared.broker.allocate_producer_id().await {
            Ok(id) => (id, 0),
            Err(e) => {
                return InitProducerIdResponse::default()
                    .with_error_code(errors::code(&e))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
            }
        },
    };
    InitProducerIdResponse::default()
        .with_producer_id(ProducerId(id))
        .with_producer_epoch(epoch)
}
