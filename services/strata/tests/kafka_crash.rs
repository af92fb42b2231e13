//! SIGKILL under a Kafka producer: an idempotent librdkafka producer
//! (confluent-kafka, acks=all) keeps producing while the real server is killed
//! and restarted three times on the same data directory and ports. Afterwards
//! every acknowledged record is in the log at the offset it was acknowledged
//! with, exactly once (the producer's retries across each restart are
//! recognized as duplicates), and each partition holds its records in the
//! order they were produced.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Server;

const PARTITIONS: u32 = 3;
const COUNT: u32 = 3000;
const RATE: u32 = 400;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start(data: &Path, http: u16, kafka: u16) -> Server {
    let kafka_listen = format!("127.0.0.1:{kafka}");
    Server::start_on(
        &format!("127.0.0.1:{http}"),
        data,
        &["--kafka-listen", &kafka_listen],
    )
}

/// Every record of a partition over HTTP: `(offset, value)`.
fn read_partition(server: &Server, topic: &str, partition: u32) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        let url = format!(
            "{}/v1/tenants/default/topics/{topic}/partitions/{partition}/records?offset={offset}&max_records=1000",
            server.url()
        );
        let body = Command::new("curl")
            .args(["-sS", "--fail", &url])
            .output()
            .expect("curl");
        assert!(body.status.success(), "read failed: {url}");
        let doc: serde_json::Value = serde_json::from_slice(&body.stdout).expect("json");
        let records = doc["records"].as_array().expect("records");
        if records.is_empty() {
            return out;
        }
        for r in records {
            let o = r["offset"].as_u64().expect("offset");
            out.push((o, r["value"].as_str().expect("value").to_owned()));
            offset = o + 1;
        }
    }
}

#[test]
fn acknowledged_kafka_records_survive_sigkill_once_and_in_order() {
    if !common::confluent_kafka("this test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (http, kafka) = (free_port(), free_port());
    let mut server = start(dir.path(), http, kafka);
    let (ok, _, err) = common::cli(
        &server,
        &[
            "topic",
            "create",
            "crash",
            "--partitions",
            &PARTITIONS.to_string(),
        ],
        None,
    );
    assert!(ok, "{err}");

    let program =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kafka-clients/crash_producer.py");
    let mut producer = Command::new("python3")
        .arg(program)
        .args([
            &format!("127.0.0.1:{kafka}"),
            "crash",
            &PARTITIONS.to_string(),
            &COUNT.to_string(),
            &RATE.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the producer");
    let stdout = producer.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    // Kill and restart three times while the producer runs (COUNT / RATE ≈ 7.5 s).
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        server.kill9();
        std::thread::sleep(Duration::from_millis(300));
        server = start(dir.path(), http, kafka);
    }

    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = producer.try_wait().expect("producer status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = producer.kill();
            panic!("the producer did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines: Vec<String> = rx.try_iter().collect();
    assert!(
        status.success(),
        "producer failed: {:?}",
        lines.iter().rev().take(5).collect::<Vec<_>>()
    );

    let mut acked: BTreeMap<(u32, u64), String> = BTreeMap::new();
    let mut acked_somewhere: Vec<(u32, String)> = Vec::new();
    let mut failed = 0;
    for line in &lines {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["ACK", p, o, v] => {
                let p: u32 = p.parse().expect("an ACK line's partition");
                let o: i64 = o.parse().expect("an ACK line's offset");
                // librdkafka acknowledges a batch whose response was lost
                // once a later batch of the same producer succeeds (an
                // implicit ack, reported with offset -1).
                let Ok(o) = u64::try_from(o) else {
                    acked_somewhere.push((p, v.to_string()));
                    continue;
                };
                let previous = acked.insert((p, o), v.to_string());
                assert!(
                    previous.is_none(),
                    "two acknowledgements for one offset: {line}"
                );
            }
            ["FAIL", ..] => failed += 1,
            _ => panic!("unexpected producer output: {line}"),
        }
    }
    let acknowledged = (acked.len() + acked_somewhere.len()) as u32;
    assert!(
        acknowledged + failed == COUNT,
        "{acknowledged} acked + {failed} failed != {COUNT}"
    );
    assert!(
        acknowledged > COUNT / 2,
        "only {acknowledged} of {COUNT} acknowledged"
    );

    let mut seen = HashSet::new();
    for p in 0..PARTITIONS {
        let log = read_partition(&server, "crash", p);
        let mut last_index = None;
        for (offset, value) in &log {
            assert!(
                seen.insert(value.clone()),
                "{value} is in the log twice (partition {p}, offset {offset})"
            );
            let index: u32 = value
                .trim_start_matches("crash-")
                .parse()
                .expect("a produced value");
            assert_eq!(index % PARTITIONS, p, "{value} in the wrong partition");
            if let Some(last) = last_index {
                assert!(index > last, "partition {p}: {value} after crash-{last}");
            }
            last_index = Some(index);
        }
        let at: BTreeMap<u64, &String> = log.iter().map(|(o, v)| (*o, v)).collect();
        for ((partition, offset), value) in acked.range((p, 0)..(p + 1, 0)) {
            assert_eq!(
                at.get(offset).map(|v| v.as_str()),
                Some(value.as_str()),
                "acknowledged {value} at partition {partition} offset {offset} is missing or different"
            );
        }
        for (_, value) in acked_somewhere
            .iter()
            .filter(|(partition, _)| *partition == p)
        {
            assert!(
                log.iter().any(|(_, v)| v == value),
                "{value}, acknowledged (without an offset) in partition {p}, is missing"
            );
        }
    }
    drop(server);
}
