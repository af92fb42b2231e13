//! The classic consumer-group protocol: this broker is every group's
//! coordinator (stub: to be implemented).

pub(crate) mod delete;
pub(crate) mod describe;
pub(crate) mod heartbeat;
pub(crate) mod join;
pub(crate) mod leave;
pub(crate) mod list;
pub(crate) mod offset_commit;
pub(crate) mod offset_fetch;
pub(crate) mod sync;

use crate::config::KafkaConfig;

/// Every group's membership state.
pub(crate) struct Coordinator {}

impl Coordinator {
    pub fn new(_config: &KafkaConfig) -> Coordinator {
        Coordinator {}
    }
}
