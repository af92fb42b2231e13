//! strata-bench's drivers against the real `strata server`: Strata over gRPC,
//! over HTTP and over its Kafka listener through librdkafka. Each driver's
//! acknowledged records come back from its consumer once each, in order, in
//! both durability classes; and a very short constant-rate workload runs
//! through the benchmark runner with every request acknowledged and every
//! measured record delivered end to end.

mod common;

use std::time::Duration;

use common::Server;
use strata_bench::driver::{self, Durability, System, Target, conformance};
use strata_bench::runner::{self, Plan};
use strata_bench::workload::{CaseRate, Workload};

/// Bounds one whole check: prepare, produce and read back.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A tiny W1/W2 shape: 4 partitions, 1 KiB records, 1 producer and 1
/// consumer, 500 records/s for 2 s after a 1 s warm-up.
const SHORT: &str = r#"
name = "short"
description = "a very short constant-rate check of a driver"
partitions = [4]
record_size = 1024
producers = 1
consumers = 1
batch_records = 10
duration = "2s"
warmup = "1s"
rate = 500
"#;

fn target(server: &Server, system: System, durability: Durability) -> Target {
    let address = match system {
        System::Kafka => server.kafka_addr.clone().expect("kafka listener address"),
        _ => server.addr.clone(),
    };
    Target {
        system,
        address,
        durability,
    }
}

/// Runs `check` on a fresh runtime, bounded by [`TIMEOUT`], and shuts the
/// runtime down before the caller drops the server so no client lingers.
fn block_on<F>(what: &str, check: F)
where
    F: Future<Output = Result<(), String>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The timer is made inside the runtime, which it needs.
    let outcome = runtime.block_on(async { tokio::time::timeout(TIMEOUT, check).await });
    runtime.shutdown_timeout(Duration::from_secs(10));
    match outcome {
        Err(_) => panic!("{what}: not done in {TIMEOUT:?}"),
        Ok(Err(e)) => panic!("{what}: {e}"),
        Ok(Ok(())) => {}
    }
}

fn round_trip(system: System, durability: Durability) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let target = target(&server, system, durability);
    block_on(&format!("{system:?} {durability:?} round trip"), async {
        let driver = driver::open(&target)
            .await
            .map_err(|e| format!("open: {e}"))?;
        conformance::round_trip(&*driver, "bench-round-trip", 4, 20, 10).await
    });
    drop(server);
}

fn short_run(system: System, durability: Durability) {
    let workload = Workload::parse(SHORT, "short.toml").unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    let target = target(&server, system, durability);
    let pid = server.child.id();
    block_on(&format!("{system:?} {durability:?} short run"), async {
        let driver = driver::open(&target)
            .await
            .map_err(|e| format!("open: {e}"))?;
        let case = workload.cases().remove(0);
        let CaseRate::Fixed(rate) = case.rate else {
            return Err(format!(
                "the short workload is fixed-rate, not {:?}",
                case.rate
            ));
        };
        let plan = Plan {
            workload: &workload,
            case: &case,
            rate: Some(rate),
            load: None,
            durability,
            topic: "bench-short".into(),
            pids: vec![pid],
            quiet: vec![pid],
        };
        let r = runner::run(&*driver, &plan)
            .await
            .map_err(|e| format!("run: {e}"))?;
        // 500 records/s for 2 s, in requests of 10: about 1000 records.
        if !(800..=1200).contains(&r.records) {
            return Err(format!(
                "{} records acknowledged, not about 1000",
                r.records
            ));
        }
        if r.errors != 0 {
            return Err(format!("{} requests failed", r.errors));
        }
        if r.consumed != r.records {
            return Err(format!(
                "{} consumed of {} acknowledged",
                r.consumed, r.records
            ));
        }
        if r.bytes != r.records * 1024 {
            return Err(format!("{} bytes for {} records", r.bytes, r.records));
        }
        let (Some(produce), Some(e2e)) = (r.produce, r.e2e) else {
            return Err("no produce or end-to-end latencies".into());
        };
        if produce.samples != r.records || e2e.samples != r.consumed {
            return Err(format!(
                "{} produce latencies for {} records, {} end-to-end for {} consumed",
                produce.samples, r.records, e2e.samples, r.consumed
            ));
        }
        if r.cpu_s.is_none_or(|s| s <= 0.0) || r.peak_rss_bytes.is_none_or(|b| b == 0) {
            return Err(format!(
                "no CPU ({:?}) or memory ({:?}) of the server",
                r.cpu_s, r.peak_rss_bytes
            ));
        }
        Ok(())
    });
    drop(server);
}

#[test]
fn grpc_driver_round_trip_fsync() {
    round_trip(System::StrataGrpc, Durability::Fsync);
}

#[test]
fn grpc_driver_round_trip_memory() {
    round_trip(System::StrataGrpc, Durability::Memory);
}

#[test]
fn http_driver_round_trip_fsync() {
    round_trip(System::StrataHttp, Durability::Fsync);
}

#[test]
fn http_driver_round_trip_memory() {
    round_trip(System::StrataHttp, Durability::Memory);
}

#[test]
fn kafka_driver_round_trip_fsync() {
    round_trip(System::Kafka, Durability::Fsync);
}

#[test]
fn kafka_driver_round_trip_memory() {
    round_trip(System::Kafka, Durability::Memory);
}

#[test]
fn grpc_driver_short_workload() {
    short_run(System::StrataGrpc, Durability::Fsync);
}

#[test]
fn http_driver_short_workload() {
    short_run(System::StrataHttp, Durability::Memory);
}

#[test]
fn kafka_driver_short_workload() {
    short_run(System::Kafka, Durability::Fsync);
}
