//! `strata-log`: the local write-ahead log of a Strata broker.
//!
//! One journal per broker holds every partition's recent record batches,
//! stored as Kafka RecordBatch v2 bytes. Appends from all partitions are
//! group-committed: one write and one `fdatasync` for everything queued,
//! and an append resolves only once its bytes are durable. Each partition
//! keeps a run index into the journal, its segments (the units tiering
//! uploads) and its leader-epoch lineage. See `README.md` beside this crate
//! for the on-disk format and the recovery procedure.
//!
//! ```no_run
//! # async fn demo() -> Result<(), strata_log::LogError> {
//! use bytes::Bytes;
//! use strata_log::{AppendOptions, Log, LogConfig, batch::{BatchBuilder, Compression}};
//!
//! let log = Log::open("/tmp/strata-data", LogConfig::default())?;
//! let orders = log.create_partition("default/orders/0", None).await?;
//! let mut builder = BatchBuilder::new(Compression::None);
//! builder.push(Some(Bytes::from("k")), Some(Bytes::from("v")), vec![], 1_700_000_000_000);
//! let appended = orders.append(builder.build()?.as_ref(), AppendOptions::default()).await?;
//! let read = orders.read(appended.base_offset, 1 << 20).await?;
//! assert_eq!(read.next_offset, appended.next_offset);
//! # Ok(()) }
//! ```

pub mod batch;
pub mod clock;
mod committer;
pub mod config;
mod error;
mod frame;
mod journal;
mod layout;
mod log;
mod metrics;
mod read;
mod recovery;
mod state;
mod syncer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Durability, LogConfig, SegmentConfig};
pub use error::{Location, LogError, Result};
pub use journal::Appended;
pub use log::{
    AppendOptions, JournalPosition, Log, MAX_PARTITION_KEY_LEN, OffloadOp, Partition,
    PartitionOffsets,
};
pub use read::{ReadBatches, SegmentReader};
pub use state::{EpochStart, SegmentInfo};
