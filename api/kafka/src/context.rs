//! State shared by every connection, and the state of one connection.

use std::sync::Arc;

use strata_broker::Broker;

use crate::config::KafkaConfig;
use crate::group::Coordinator;
use crate::producers::Producers;

/// What every connection of the listener shares.
pub(crate) struct Shared {
    pub broker: Arc<Broker>,
    pub config: KafkaConfig,
    /// The consumer-group coordinator, for the groups this node coordinates.
    pub groups: Coordinator,
    /// Idempotent producers: ids handed out and per-partition sequence state.
    pub producers: Producers,
}

/// Where a connection stands in SASL authentication.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Sasl {
    /// No handshake yet (or none needed).
    #[default]
    None,
    /// SaslHandshake chose PLAIN; SaslAuthenticate comes next.
    HandshakePlain,
    /// Authenticated as this user.
    Authenticated(String),
}

/// The state of one client connection.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// Every topic and group named on this connection belongs to this tenant.
    pub tenant: String,
    pub sasl: Sasl,
}

impl Session {
    pub fn new(config: &KafkaConfig) -> Session {
        Session {
            tenant: config.default_tenant.clone(),
            sasl: Sasl::None,
        }
    }
}
