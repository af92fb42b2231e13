//! `strata-api`: the contracts every Strata front end shares.
//!
//! - [`proto`]: the gRPC service and messages generated from
//!   `api/proto/strata/v1/strata.proto` (compiled without `protoc`).
//! - [`error`]: one error-code model; each code maps to an HTTP status, a
//!   gRPC code and a Kafka error code, so a failure reads the same through
//!   every door.

pub mod error;

pub use error::{ApiError, ErrorCode};

/// Generated gRPC types and service stubs for `strata.v1`.
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("strata.v1");

    /// The encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/strata_descriptor.bin"));
}
