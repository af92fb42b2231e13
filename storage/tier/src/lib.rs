//! `strata-tier`: tiered storage. Sealed partition segments become
//! self-describing objects in S3-compatible object storage (or a local
//! directory); reads below a partition's local tail are served from them.
//! See `docs/tiered-storage.md` for the object format, the key layout and
//! the offload sequence.

pub mod cache;
pub mod error;
pub mod keys;
pub mod remote;
pub mod resilient;
pub mod segment;
pub mod store;
