//! Benchmarks of Strata side by side with the systems our users would pick
//! instead: one workload definition for all of them, drivers per system,
//! a constant-rate runner without coordinated omission, and the report.

pub mod driver;
pub mod goals;
pub mod machine;
/// The schedule, due-time values and histograms, shared with `strata bench`.
pub use strata_loadgen as measure;
#[cfg(feature = "plots")]
pub mod plot;
pub mod procstat;
pub mod report;
pub mod results;
pub mod runner;
pub mod suite;
pub mod systems;
pub mod workload;
