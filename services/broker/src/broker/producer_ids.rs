//! Idempotent-producer ids, unique across the cluster: reserved from the
//! metadata store in blocks, handed out one by one.

use super::{Broker, Result};

/// Ids reserved per round trip to the metadata store.
const BLOCK: u32 = 1000;

impl Broker {
    /// A producer id no other producer of the cluster has had.
    pub async fn allocate_producer_id(&self) -> Result<i64> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let first = self.meta.allocate_producer_ids(BLOCK).await?;
            *ids = (first, first + i64::from(BLOCK));
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }
}
