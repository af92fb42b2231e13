//! The HTTP API end to end: a real broker over a temporary directory, the
//! router on a real socket, reqwest as the client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use serde_json::{Value, json};
use strata_broker::{Broker, BrokerConfig};
use tokio_util::sync::CancellationToken;

use super::router;
use crate::state::AppState;

pub(super) const MAX_REQUEST_BYTES: u64 = 64 * 1024;
pub(super) const MAX_MESSAGE_BYTES: i64 = 4096;

pub(super) struct TestServer {
    pub base: String,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    _broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub(super) async fn start() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.max_request_bytes = MAX_REQUEST_BYTES;
    config.max_record_bytes = MAX_MESSAGE_BYTES as u64;
    config.default_topic.max_message_bytes = MAX_MESSAGE_BYTES;
    config.retention_interval = Duration::from_millis(100);
    let broker = Broker::open(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let state = AppState {
        meta: None,
        broker: broker.clone(),
        shutdown: shutdown.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(listener, router(state))
            .with_graceful_shutdown(token.cancelled_owned())
            .await
    });
    TestServer {
        base: format!("http://{addr}"),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        shutdown,
        _broker: broker,
        _dir: dir,
    }
}

/// The body as JSON (`Null` when empty); panics if a non-empty body is not JSON.
async fn body_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let bytes = r.bytes().await.unwrap();
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "status {status}: body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, v)
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        body_json(req.send().await.unwrap()).await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, self.url(path)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        body_json(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send("GET", path, None).await
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) -> Value {
        let (s, v) = self
            .send(
                "POST",
                "/v1/tenants/default/topics",
                Some(json!({ "name": name, "partitions": partitions })),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v
    }

    pub async fn produce(&self, topic: &str, body: Value) -> Value {
        let (s, v) = self
            .send(
                "POST",
                &format!("/v1/tenants/default/topics/{topic}/records"),
                Some(body),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

/// The error code of an error body.
pub(super) fn code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"))
}

fn values(read: &Value) -> Vec<Value> {
    read["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["value"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_created_idempotently_and_listed() {
    let s = start().await;
    let (st, v) = s.get("/v1/tenants").await;
    assert_eq!(st, 200);
    assert!(v["tenants"].as_array().unwrap().contains(&json!("default")));
    let (st, v) = s.send("PUT", "/v1/tenants/acme", None).await;
    assert_eq!((st, &v), (201, &json!({ "name": "acme" })));
    let (st, _) = s.send("PUT", "/v1/tenants/acme", None).await;
    assert_eq!(st, 200);
    let (_, v) = s.get("/v1/tenants").await;
    assert!(v["tenants"].as_array().unwrap().contains(&json!("acme")));
    let (st, v) = s
        .send(
            "POST",
            "/v1/tenants/acme/topics",
            Some(json!({ "name": "t" })),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["tenant"], "acme");
    assert_eq!(v["partitions"], 1);
    let (st, v) = s.send("PUT", "/v1/tenants/Not_Valid", None).await;
    assert_eq!((st, code(&v)), (400, "invalid_name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_crud() {
    let s = start().await;
    let (st, v) = s
        .send(
            "POST",
            "/v1/tenants/default/topics",
            Some(json!({ "name": "orders", "partitions": 3, "config": { "retention_ms": 60000, "local_retention_ms": -2 } })),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["name"], "orders");
    assert_eq!(v["partitions"], 3);
    assert_eq!(v["config"]["retention_ms"], 60000);
    assert_eq!(v["config"]["max_message_bytes"], MAX_MESSAGE_BYTES);
    assert_eq!(v["config"]["local_retention_ms"], -2);
    assert_eq!(v["config"]["local_retention_bytes"], -1, "the default");

    let (st, v) = s
        .send(
            "POST",
            "/v1/tenants/default/topics",
            Some(json!({ "name": "orders" })),
        )
        .await;
    assert_eq!((st, code(&v)), (409, "topic_already_exists"));

    let (st, v) = s.get("/v1/tenants/default/topics").await;
    assert_eq!(st, 200);
    let names: Vec<_> = v["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("orders")]);

    let (st, v) = s.get("/v1/tenants/default/topics/orders").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["config"]["local_retention_ms"], -2);
    let parts = v["partition_info"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        parts[2],
        json!({
            "partition": 2, "start_offset": 0, "end_offset": 0,
            "local_start_offset": 0, "local_bytes": 0,
            "remote_start_offset": 0, "remote_end_offset": 0, "remote_bytes": 0, "remote_segments": 0,
            "offload_lag_bytes": 0, "offload_lag_ms": 0,
        })
    );
    // Produced records are on local disk; nothing is in the bucket yet.
    s.produce(
        "orders",
        json!({ "records": [{ "value": "a", "partition": 1 }, { "value": "b", "partition": 1 }] }),
    )
    .await;
    let (_, v) = s.get("/v1/tenants/default/topics/orders").await;
    let p = &v["partition_info"][1];
    assert_eq!(
        (&p["start_offset"], &p["end_offset"]),
        (&json!(0), &json!(2))
    );
    assert_eq!(p["local_start_offset"], 0);
    assert!(p["local_bytes"].as_u64().unwrap() > 0, "{p}");
    assert_eq!(
        (&p["remote_segments"], &p["remote_bytes"]),
        (&json!(0), &json!(0))
    );
    // The partition route keeps its three fields.
    let (st, v) = s
        .get("/v1/tenants/default/topics/orders/partitions/1")
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({ "partition": 1, "start_offset": 0, "end_offset": 2 })
    );

    let (st, v) = s
        .send(
            "PATCH",
            "/v1/tenants/default/topics/orders",
            Some(json!({ "config": { "retention_ms": -1, "segment_ms": 1000, "local_retention_bytes": 1048576 } })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["config"]["retention_ms"], -1);
    assert_eq!(v["config"]["segment_ms"], 1000);
    assert_eq!(v["config"]["local_retention_bytes"], 1_048_576);
    assert_eq!(v["config"]["local_retention_ms"], -2, "unchanged");
    let (_, v) = s.get("/v1/tenants/default/topics/orders").await;
    assert_eq!(v["config"]["retention_ms"], -1);
    assert_eq!(v["config"]["local_retention_bytes"], 1_048_576);
    let (st, v) = s
        .send(
            "PATCH",
            "/v1/tenants/default/topics/orders",
            Some(json!({ "config": { "local_retention_ms": -3 } })),
        )
        .await;
    assert_eq!((st, code(&v)), (400, "invalid_config"), "{v}");
    assert_eq!(v["error"]["details"]["field"], "local_retention_ms");
    let (_, v) = s.get("/v1/tenants/default/topics/orders").await;
    assert_eq!(
        v["config"]["local_retention_ms"], -2,
        "unchanged by the bad patch"
    );

    let (st, v) = s
        .send("DELETE", "/v1/tenants/default/topics/orders", None)
        .await;
    assert_eq!((st, v), (204, Value::Null));
    let (st, v) = s.get("/v1/tenants/default/topics/orders").await;
    assert_eq!((st, code(&v)), (404, "topic_not_found"));
    let (st, v) = s
        .send("DELETE", "/v1/tenants/default/topics/orders", None)
        .await;
    assert_eq!((st, code(&v)), (404, "topic_not_found"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_read_back_utf8() {
    let s = start().await;
    s.create_topic("events", 2).await;
    let v = s
        .produce(
            "events",
            json!({ "records": [
                { "key": "k1", "value": "hello", "headers": { "a": "1", "b": "2" }, "partition": 1 },
                { "value": "wörld", "headers": [{ "key": "x", "value": "y" }, { "key": "x", "value": "z" }], "partition": 1, "timestamp_ms": 1234 },
                { "key": null, "value": null, "partition": 1 },
            ], "acks": "write" }),
        )
        .await;
    assert_eq!(
        v,
        json!({ "offsets": [
            { "partition": 1, "offset": 0 }, { "partition": 1, "offset": 1 }, { "partition": 1, "offset": 2 },
        ] })
    );
    let (st, v) = s
        .get("/v1/tenants/default/topics/events/partitions/1/records?offset=0")
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["next_offset"], 3);
    assert_eq!(v["high_watermark"], 3);
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[0]["key"], "k1");
    assert_eq!(recs[0]["value"], "hello");
    assert_eq!(
        recs[0]["headers"],
        json!([{ "key": "a", "value": "1" }, { "key": "b", "value": "2" }])
    );
    assert_eq!(recs[1]["key"], Value::Null);
    assert_eq!(recs[1]["value"], "wörld");
    assert_eq!(recs[1]["timestamp_ms"], 1234);
    assert_eq!(
        recs[1]["headers"],
        json!([{ "key": "x", "value": "y" }, { "key": "x", "value": "z" }])
    );
    assert_eq!(
        (recs[2]["key"].clone(), recs[2]["value"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(recs[2]["offset"], 2);

    // Keyed records without a partition go to the key's partition, consistently.
    let a = s
        .produce(
            "events",
            json!({ "records": [{ "key": "same", "value": "1" }] }),
        )
        .await;
    let b = s
        .produce(
            "events",
            json!({ "records": [{ "key": "same", "value": "2" }] }),
        )
        .await;
    assert_eq!(a["offsets"][0]["partition"], b["offsets"][0]["partition"]);

    let (_, v) = s
        .get("/v1/tenants/default/topics/events/partitions/1")
        .await;
    assert_eq!(v["partition"], 1);
    assert!(v["end_offset"].as_u64().unwrap() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base64_round_trips_bytes_and_utf8_reads_of_bytes_fail_cleanly() {
    let s = start().await;
    s.create_topic("bin", 1).await;
    let key = [0u8, 159, 146, 150];
    let value = [0xffu8, 0xfe, 0x00, 0x41];
    s.produce(
        "bin",
        json!({ "encoding": "base64", "records": [{
            "key": BASE64.encode(key), "value": BASE64.encode(value),
            "headers": { "h": BASE64.encode([0xc3u8, 0x28]) },
        }] }),
    )
    .await;
    let path = "/v1/tenants/default/topics/bin/partitions/0/records";
    let (st, v) = s.get(&format!("{path}?encoding=base64")).await;
    assert_eq!(st, 200, "{v}");
    let r = &v["records"][0];
    assert_eq!(BASE64.decode(r["key"].as_str().unwrap()).unwrap(), key);
    assert_eq!(BASE64.decode(r["value"].as_str().unwrap()).unwrap(), value);
    assert_eq!(r["headers"][0]["key"], "h");
    assert_eq!(
        BASE64
            .decode(r["headers"][0]["value"].as_str().unwrap())
            .unwrap(),
        [0xc3, 0x28]
    );

    let (st, v) = s.get(path).await;
    assert_eq!((st, code(&v)), (400, "bad_request"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("encoding=base64"),
        "{v}"
    );
    assert_eq!(v["error"]["details"]["offset"], 0);

    // UTF-8 data reads fine as base64 too.
    s.produce("bin", json!({ "records": [{ "value": "plain" }] }))
        .await;
    let (_, v) = s.get(&format!("{path}?offset=1&encoding=base64")).await;
    assert_eq!(v["records"][0]["value"], BASE64.encode("plain"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_append_is_atomic_and_checks_the_end_offset() {
    let s = start().await;
    s.create_topic("ledger", 2).await;
    let path = "/v1/tenants/default/topics/ledger/partitions/1/records";
    let body = json!({ "expected_offset": 0, "records": [{ "value": "a" }, { "value": "b" }] });
    let (st, v) = s.send("POST", path, Some(body.clone())).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v,
        json!({ "partition": 1, "base_offset": 0, "next_offset": 2, "offsets": [0, 1] })
    );
    // Same expectation again: the partition now ends at 2.
    let (st, v) = s.send("POST", path, Some(body)).await;
    assert_eq!((st, code(&v)), (412, "offset_mismatch"));
    assert_eq!(v["error"]["details"]["end_offset"], 2);
    let (_, v) = s
        .get("/v1/tenants/default/topics/ledger/partitions/1")
        .await;
    assert_eq!(v["end_offset"], 2);
    // Without an expectation it appends at the end.
    let (st, v) = s
        .send(
            "POST",
            path,
            Some(json!({ "records": [{ "value": "c", "partition": 1 }] })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["offsets"], json!([2]));
    let (_, v) = s.get(&format!("{path}?offset=0")).await;
    assert_eq!(values(&v), vec![json!("a"), json!("b"), json!("c")]);
    let (_, v) = s
        .get("/v1/tenants/default/topics/ledger/partitions/0/records")
        .await;
    assert_eq!(v["records"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_by_offset_timestamp_and_tail_with_limits() {
    let s = start().await;
    s.create_topic("ts", 1).await;
    let records: Vec<Value> = (0..5)
        .map(|i| json!({ "value": format!("v{i}"), "timestamp_ms": 1000 * (i + 1) }))
        .collect();
    s.produce("ts", json!({ "records": records })).await;
    let path = "/v1/tenants/default/topics/ts/partitions/0/records";

    let (_, v) = s.get(path).await;
    assert_eq!(values(&v).len(), 5);
    assert_eq!(v["start_offset"], 0);
    let (_, v) = s.get(&format!("{path}?timestamp_ms=2500")).await;
    assert_eq!(v["records"][0]["offset"], 2);
    assert_eq!(v["records"][0]["timestamp_ms"], 3000);
    let (_, v) = s.get(&format!("{path}?tail=2")).await;
    assert_eq!(values(&v), vec![json!("v3"), json!("v4")]);
    let (_, v) = s.get(&format!("{path}?offset=1&max_records=2")).await;
    assert_eq!(values(&v), vec![json!("v1"), json!("v2")]);
    assert_eq!(v["next_offset"], 3);
    let (_, v) = s.get(&format!("{path}?timestamp_ms=99999")).await;
    assert_eq!(v["records"], json!([]));
    assert_eq!(v["next_offset"], 5);
    // At the end: nothing, no error.
    let (st, v) = s.get(&format!("{path}?offset=5")).await;
    assert_eq!(st, 200);
    assert_eq!(
        (v["records"].clone(), v["high_watermark"].clone()),
        (json!([]), json!(5))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_on_produce_and_times_out_when_idle() {
    let s = start().await;
    s.create_topic("lp", 1).await;
    let path = "/v1/tenants/default/topics/lp/partitions/0/records";

    let started = Instant::now();
    let (st, v) = s.get(&format!("{path}?offset=0&wait_ms=300")).await;
    assert_eq!(st, 200);
    assert_eq!(v["records"], json!([]));
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    let url = s.url(&format!("{path}?offset=0&wait_ms=10000"));
    let http = s.http.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        http.get(url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.produce("lp", json!({ "records": [{ "value": "late" }] }))
        .await;
    let v = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(values(&v), vec![json!("late")]);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Reads SSE bytes into `buf` until `done(buf)` or the timeout; false on timeout or end.
async fn read_events(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    done: impl Fn(&str) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done(buf) {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            _ => return false,
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_tail_receives_records_produced_after_connecting() {
    let s = start().await;
    s.create_topic("live", 1).await;
    s.produce("live", json!({ "records": [{ "value": "before" }] }))
        .await;
    let resp = s
        .http
        .get(s.url("/v1/tenants/default/topics/live/partitions/0/records"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "{:?}",
        resp.headers()
    );
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    assert!(
        read_events(&mut stream, &mut buf, |b| b.contains("event: heartbeat")).await,
        "{buf}"
    );
    assert!(buf.contains(r#""next_offset":1"#), "{buf}");

    s.produce(
        "live",
        json!({ "records": [{ "value": "after-1" }, { "value": "after-2" }] }),
    )
    .await;
    assert!(
        read_events(&mut stream, &mut buf, |b| b.contains("after-2")).await,
        "{buf}"
    );
    assert!(buf.contains("event: records"), "{buf}");
    assert!(buf.contains("after-1"), "{buf}");
    assert!(
        !buf.contains("before"),
        "a tail without a start begins at the end: {buf}"
    );
    assert!(buf.contains("id: 3"), "{buf}");

    // Shutdown ends the stream.
    s.shutdown.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_from_an_offset_or_last_event_id() {
    let s = start().await;
    s.create_topic("replay", 1).await;
    s.produce(
        "replay",
        json!({ "records": [{ "value": "r0" }, { "value": "r1" }, { "value": "r2" }] }),
    )
    .await;
    let url = s.url("/v1/tenants/default/topics/replay/partitions/0/records");
    let resp = s
        .http
        .get(format!("{url}?offset=0&max_records=2"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    assert!(
        read_events(&mut stream, &mut buf, |b| b.contains("r2")).await,
        "{buf}"
    );
    assert!(
        buf.contains("r0") && buf.contains("id: 2") && buf.contains("id: 3"),
        "{buf}"
    );
    drop(stream);

    let resp = s
        .http
        .get(url.clone())
        .header("accept", "text/event-stream")
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    assert!(
        read_events(&mut stream, &mut buf, |b| b.contains("r2")).await,
        "{buf}"
    );
    assert!(!buf.contains("r1"), "{buf}");

    // A bad start is an HTTP error, not a stream.
    let resp = s
        .http
        .get(format!("{url}?offset=99"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let (st, v) = body_json(resp).await;
    assert_eq!((st, code(&v)), (416, "offset_out_of_range"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_sends_heartbeats_while_idle() {
    let s = start().await;
    s.create_topic("quiet", 1).await;
    let resp = s
        .http
        .get(s.url("/v1/tenants/default/topics/quiet/partitions/0/records"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let started = Instant::now();
    // One heartbeat on connect, the next after about HEARTBEAT of silence.
    assert!(
        read_events(&mut stream, &mut buf, |b| b
            .matches("event: heartbeat")
            .count()
            >= 2)
        .await,
        "{buf}"
    );
    assert!(started.elapsed() >= super::stream::HEARTBEAT - Duration::from_millis(500));
    assert!(buf.contains(r#""high_watermark":0"#), "{buf}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_offsets_commit_and_fetch() {
    let s = start().await;
    s.create_topic("g", 2).await;
    let path = "/v1/tenants/default/groups/workers/offsets";
    let (st, v) = s.get(path).await;
    assert_eq!((st, code(&v)), (404, "group_not_found"));
    let offsets = json!({ "offsets": [
        { "topic": "g", "partition": 0, "offset": 0, "metadata": "m" },
        { "topic": "g", "partition": 1, "offset": 0 },
    ] });
    let (st, v) = s.send("PUT", path, Some(offsets)).await;
    assert_eq!((st, v), (204, Value::Null));
    let (st, v) = s.get(path).await;
    assert_eq!(st, 200, "{v}");
    let got = v["offsets"].as_array().unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.contains(&json!({ "topic": "g", "partition": 0, "offset": 0, "metadata": "m" })));
    assert!(got.contains(&json!({ "topic": "g", "partition": 1, "offset": 0, "metadata": "" })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_openapi() {
    let s = start().await;
    let (st, v) = s.get("/healthz").await;
    assert_eq!((st, v), (200, json!({ "status": "ok" })));
    let _ = s.get("/v1/tenants/default/topics/nope").await;
    s.http
        .post(s.url("/v1/tenants/default/topics"))
        .json(&json!({"name": "gauged", "partitions": 2}))
        .send()
        .await
        .unwrap();
    s.http
        .post(s.url("/v1/tenants/default/topics/gauged/partitions/1/records"))
        .json(&json!({"records": [{"value": "a"}, {"value": "b"}]}))
        .send()
        .await
        .unwrap();
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("strata_http_requests_total"), "{text}");
    assert!(
        text.contains(r#"route="/v1/tenants/{tenant}/topics/{topic}""#),
        "{text}"
    );
    assert!(text.contains(r#"status="404""#), "{text}");
    assert!(
        text.contains(
            r#"strata_partition_end_offset{partition="1",tenant="default",topic="gauged"} 2"#
        ),
        "{text}"
    );
    assert!(text.contains("strata_log_fsync_seconds"), "{text}");
    let (st, v) = s.get("/v1/openapi.json").await;
    assert_eq!(st, 200);
    assert!(
        v["paths"]["/v1/tenants/{tenant}/topics/{topic}/partitions/{partition}/records"]["get"]
            .is_object()
    );
}
