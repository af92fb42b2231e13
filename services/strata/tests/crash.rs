//! SIGKILL the server while producers run over HTTP and gRPC, restart it,
//! and check that every acknowledged record is there exactly once, in order,
//! at its acknowledged offset, through both APIs.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::Server;
use parking_lot::Mutex;
use serde_json::{Value, json};
use strata_api::proto::{self, strata_client::StrataClient};

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 4;
const ROUNDS: usize = 3;

/// Acknowledged records: partition → (offset, value).
type Acked = Arc<Mutex<BTreeMap<u32, Vec<(u64, String)>>>>;

fn seed() -> u64 {
    std::env::var("STRATA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// xorshift: enough randomness for kill timings, replayable from the seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn http_producer(
    url: String,
    partition: u32,
    tag: String,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let values: Vec<String> = (0..3).map(|i| format!("{tag}-{:06}", seq + i)).collect();
        let body =
            json!({"records": values.iter().map(|v| json!({"value": v})).collect::<Vec<_>>()});
        let sent = client
            .post(format!(
                "{url}/v1/tenants/default/topics/{TOPIC}/partitions/{partition}/records"
            ))
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        let Ok(resp) = sent else { return };
        if !resp.status().is_success() {
            return;
        }
        let Ok(reply) = resp.json::<Value>().await else {
            return;
        };
        let base = reply["base_offset"]
            .as_u64()
            .expect("base_offset in append reply");
        let mut map = acked.lock();
        let list = map.entry(partition).or_default();
        for (i, v) in values.into_iter().enumerate() {
            list.push((base + i as u64, v));
        }
        seq += 3;
    }
}

async fn grpc_producer(
    url: String,
    partition: u32,
    tag: String,
    acked: Acked,
    stop: Arc<AtomicBool>,
) {
    let Ok(mut client) = StrataClient::connect(url).await else {
        return;
    };
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let values: Vec<String> = (0..2).map(|i| format!("{tag}-{:06}", seq + i)).collect();
        let request = proto::AppendRequest {
            tenant: "default".into(),
            topic: TOPIC.into(),
            records: values
                .iter()
                .map(|v| proto::Record {
                    value: Some(v.clone().into_bytes().into()),
                    ..Default::default()
                })
                .collect(),
            partition: Some(partition),
            ..Default::default()
        };
        let Ok(reply) = client.append(request).await else {
            return;
        };
        let offsets = reply.into_inner().offsets;
        assert_eq!(offsets.len(), values.len(), "one offset per record");
        let mut map = acked.lock();
        let list = map.entry(partition).or_default();
        for (o, v) in offsets.into_iter().zip(values) {
            assert_eq!(o.partition, partition);
            list.push((o.offset, v));
        }
        seq += 2;
    }
}

/// Every record of a partition over HTTP, in offset order.
async fn read_http(url: &str, partition: u32) -> Vec<(u64, String)> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        let reply: Value = client
            .get(format!(
                "{url}/v1/tenants/default/topics/{TOPIC}/partitions/{partition}/records?offset={offset}&max_records=1000"
            ))
            .send()
            .await
            .expect("read over HTTP")
            .json()
            .await
            .expect("read reply is JSON");
        for r in reply["records"].as_array().expect("records") {
            out.push((
                r["offset"].as_u64().unwrap(),
                r["value"].as_str().unwrap().to_string(),
            ));
        }
        offset = reply["next_offset"].as_u64().unwrap();
        if offset >= reply["high_watermark"].as_u64().unwrap() {
            return out;
        }
    }
}

/// Every record of a partition over gRPC, in offset order.
async fn read_grpc(url: &str, partition: u32) -> Vec<(u64, String)> {
    let mut client = StrataClient::connect(url.to_string())
        .await
        .expect("connect gRPC");
    let mut out = Vec::new();
    let mut offset = 0u64;
    loop {
        let reply = client
            .read(proto::ReadRequest {
                tenant: "default".into(),
                topic: TOPIC.into(),
                partition,
                start: Some(proto::read_request::Start::Offset(offset)),
                max_records: 1000,
                ..Default::default()
            })
            .await
            .expect("read over gRPC")
            .into_inner();
        for r in reply.records {
            out.push((
                r.offset,
                String::from_utf8(r.value.unwrap_or_default().to_vec()).unwrap(),
            ));
        }
        offset = reply.next_offset;
        if offset >= reply.high_watermark {
            return out;
        }
    }
}

/// Checks the log against everything acknowledged so far.
async fn verify(url: &str, acked: &Acked) {
    let expected = acked.lock().clone();
    for partition in 0..PARTITIONS {
        let http = read_http(url, partition).await;
        let grpc = read_grpc(url, partition).await;
        assert_eq!(http, grpc, "partition {partition}: HTTP and gRPC disagree");
        for (i, (offset, _)) in http.iter().enumerate() {
            assert_eq!(
                *offset, i as u64,
                "partition {partition}: offsets must be contiguous from 0"
            );
        }
        let mut seen = HashSet::new();
        for (_, v) in &http {
            assert!(
                seen.insert(v.clone()),
                "partition {partition}: record {v} appears twice"
            );
        }
        for (offset, value) in expected.get(&partition).into_iter().flatten() {
            let found = http.get(*offset as usize).map(|(_, v)| v.as_str());
            assert_eq!(
                found,
                Some(value.as_str()),
                "partition {partition}: acknowledged offset {offset} lost or changed"
            );
        }
        // Each producer's records appear in the order it sent them.
        let mut last: BTreeMap<&str, &str> = BTreeMap::new();
        for (_, v) in &http {
            let (tag, seq) = v.rsplit_once('-').unwrap();
            if let Some(prev) = last.insert(tag, seq) {
                assert!(
                    prev < seq,
                    "partition {partition}: {tag} out of order ({prev} then {seq})"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_producing_keeps_every_acknowledged_record() {
    let mut rng = seed();
    eprintln!("crash test seed {rng} (replay with STRATA_CRASH_SEED={rng})");
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    for round in 0..ROUNDS {
        let server = Server::start(dir.path(), &[]);
        let url = server.url();
        if round == 0 {
            let resp = reqwest::Client::new()
                .post(format!("{url}/v1/tenants/default/topics"))
                .json(&json!({"name": TOPIC, "partitions": PARTITIONS}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201, "create topic");
        }
        verify(&url, &acked).await;
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..PARTITIONS {
            let tag = format!("r{round}h{t}");
            tasks.push(tokio::spawn(http_producer(
                url.clone(),
                t,
                tag,
                acked.clone(),
                stop.clone(),
            )));
            let tag = format!("r{round}g{t}");
            tasks.push(tokio::spawn(grpc_producer(
                url.clone(),
                t,
                tag,
                acked.clone(),
                stop.clone(),
            )));
        }
        let delay = 300 + next(&mut rng) % 700;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let before = acked.lock().values().map(Vec::len).sum::<usize>();
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
        assert!(
            before > 0,
            "round {round}: nothing was acknowledged before the kill"
        );
    }
    let server = Server::start(dir.path(), &[]);
    verify(&server.url(), &acked).await;
    assert!(server.terminate(), "server exits cleanly on SIGTERM");
}
