//! Bad input end to end against the real `strata server` binary.
//!
//! Every malformed, invalid or impossible request gets its documented status
//! and error code in the one error model (never a 500, never a dropped
//! connection), the server stays up, and nothing it holds changes: after
//! each case the test compares the tenants, every topic (with its config),
//! every partition's start and end offsets and the group offsets with what
//! they were before. HTTP first, then gRPC on the same port, then garbage
//! bytes on the raw socket.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use common::Server;
use serde_json::{Value, json};
use strata_api::proto::{self, read_request::Start, strata_client::StrataClient};
use strata_api::{ApiError, ErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

/// Small limits, so oversized records and requests are cheap to send.
const LIMITS: [&str; 4] = ["--max-record-bytes", "1024", "--max-request-bytes", "4096"];
const MAX_RECORD: u64 = 1024;

/// Groups whose committed offsets are part of the snapshot: `g` has offsets,
/// `g2` never committed and must stay that way.
const GROUPS: [&str; 2] = ["g", "g2"];

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// Starts a server over a fresh directory (kept alive by the caller).
fn start(extra: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), extra);
    (dir, server)
}

async fn request(
    c: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = c.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{path}: status {status}, body is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, v)
}

/// A request that must succeed with `status`; returns its body.
async fn ok(
    c: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let (st, v) = request(c, base, method, path, body).await;
    assert_eq!(st, status, "{method} {path}: {v}");
    v
}

/// `(start_offset, end_offset)` of a partition.
async fn offsets(c: &reqwest::Client, base: &str, topic: &str, partition: u32) -> (u64, u64) {
    let path = format!("/v1/tenants/default/topics/{topic}/partitions/{partition}");
    let v = ok(c, base, "GET", &path, None, 200).await;
    let get = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{path}: {v}"));
    (get("start_offset"), get("end_offset"))
}

/// Everything the server holds that a request could change: tenants, each
/// tenant's topics (with config), each partition's offsets, group offsets.
async fn snapshot(c: &reqwest::Client, base: &str) -> Value {
    let mut out = serde_json::Map::new();
    let tenants = ok(c, base, "GET", "/v1/tenants", None, 200).await;
    for tenant in tenants["tenants"].as_array().expect("tenants") {
        let tenant = tenant.as_str().expect("tenant name");
        let path = format!("/v1/tenants/{tenant}/topics");
        let topics = ok(c, base, "GET", &path, None, 200).await;
        for topic in topics["topics"].as_array().expect("topics") {
            let name = topic["name"].as_str().expect("topic name");
            let d = ok(c, base, "GET", &format!("{path}/{name}"), None, 200).await;
            out.insert(format!("{tenant}/{name}"), d["partition_info"].clone());
        }
        out.insert(format!("{tenant}/topics"), topics);
    }
    out.insert("tenants".into(), tenants);
    for group in GROUPS {
        let path = format!("/v1/tenants/default/groups/{group}/offsets");
        let (st, v) = request(c, base, "GET", &path, None).await;
        out.insert(format!("group {group}"), json!({ "status": st, "body": v }));
    }
    Value::Object(out)
}

/// Panics unless the server process runs and `/healthz` answers 200 ok.
async fn assert_up(server: &mut Server, c: &reqwest::Client, after: &str) {
    if let Ok(Some(status)) = server.child.try_wait() {
        panic!("the server exited ({status}) after {after}");
    }
    let resp = c
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/healthz failed after {after}: {e}"));
    let status = resp.status().as_u16();
    let body: Value = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("/healthz is not JSON after {after}: {e}"));
    assert_eq!(
        (status, &body),
        (200, &json!({ "status": "ok" })),
        "/healthz after {after}"
    );
}

enum Body {
    Empty,
    Bytes(Vec<u8>),
    /// Sent with `Transfer-Encoding: chunked` (no `Content-Length`).
    Chunked(Vec<u8>),
}

/// One bad request and the error it must get.
struct Case {
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Body,
    status: u16,
    code: &'static str,
    /// Fields `error.details` must have, with these values.
    details: Option<Value>,
}

/// A request without a body.
fn get(method: &'static str, path: impl Into<String>, status: u16, code: &'static str) -> Case {
    Case {
        method,
        path: path.into(),
        headers: Vec::new(),
        body: Body::Empty,
        status,
        code,
        details: None,
    }
}

/// A request with a JSON content type and this body.
fn json_case(
    method: &'static str,
    path: impl Into<String>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    raw(method, path, Some("application/json"), body, status, code)
}

/// A request with this content type (or none) and body.
fn raw(
    method: &'static str,
    path: impl Into<String>,
    content_type: Option<&str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    let mut c = get(method, path, status, code);
    if let Some(ct) = content_type {
        c.headers.push(("content-type", ct.to_string()));
    }
    c.body = Body::Bytes(body.into());
    c
}

impl Case {
    fn header(mut self, name: &'static str, value: &str) -> Case {
        self.headers.push((name, value.to_string()));
        self
    }

    fn details(mut self, details: Value) -> Case {
        self.details = Some(details);
        self
    }

    fn chunked(mut self) -> Case {
        if let Body::Bytes(b) = std::mem::replace(&mut self.body, Body::Empty) {
            self.body = Body::Chunked(b);
        }
        self
    }

    /// How the case is named in failures.
    fn label(&self) -> String {
        let cut = |s: &str, n: usize| -> String {
            if s.chars().count() > n {
                format!("{}...", s.chars().take(n).collect::<String>())
            } else {
                s.to_string()
            }
        };
        let mut label = format!("{} {}", self.method, cut(&self.path, 100));
        for (k, v) in &self.headers {
            label.push_str(&format!(" [{k}: {v}]"));
        }
        match &self.body {
            Body::Empty => {}
            Body::Bytes(b) => {
                label.push_str(&format!(" body {:?}", cut(&String::from_utf8_lossy(b), 80)))
            }
            Body::Chunked(b) => label.push_str(&format!(" chunked body of {} bytes", b.len())),
        }
        label
    }

    /// Sends the request; `Err` describes how the answer differs from the expected one.
    async fn check(&self, c: &reqwest::Client, base: &str) -> Result<(), String> {
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).expect("method");
        let mut req = c.request(method, format!("{base}{}", self.path));
        for (k, v) in &self.headers {
            req = req.header(*k, v.as_str());
        }
        req = match &self.body {
            Body::Empty => req,
            Body::Bytes(b) => req.body(b.clone()),
            Body::Chunked(b) => {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                    b.chunks(512).map(|c| Ok(c.to_vec())).collect();
                req.body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
            }
        };
        let resp = req
            .send()
            .await
            .map_err(|e| format!("no response: {e:?}"))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("status {status}, body failed: {e:?}"))?;
        let text = String::from_utf8_lossy(&bytes);
        let got = || format!("got {status} {content_type:?} {text}");
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|_| format!("want {} {}, {} (not JSON)", self.status, self.code, got()))?;
        let mut problems = Vec::new();
        let code = v["error"]["code"].as_str();
        if status != self.status || code != Some(self.code) {
            problems.push(format!("want {} {}", self.status, self.code));
        }
        if v["error"]["message"]
            .as_str()
            .is_none_or(|m| m.trim().is_empty())
        {
            problems.push("no error.message".to_string());
        }
        let keys_ok = v.as_object().is_some_and(|o| o.len() == 1)
            && v["error"].as_object().is_some_and(|e| {
                e.keys()
                    .all(|k| ["code", "message", "details"].contains(&k.as_str()))
            });
        if !keys_ok {
            problems.push("the body is not {\"error\":{code,message,details?}}".to_string());
        }
        if !content_type.starts_with("application/json") {
            problems.push("the content type is not application/json".to_string());
        }
        if let Some(want) = self.details.as_ref().and_then(Value::as_object) {
            for (k, w) in want {
                if v["error"]["details"][k] != *w {
                    problems.push(format!("want details.{k} = {w}"));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{}; {}", problems.join("; "), got()))
        }
    }
}

/// Runs each case, then checks the server is up and nothing changed.
async fn run_cases(server: &mut Server, c: &reqwest::Client, cases: Vec<Case>) -> Vec<String> {
    let base = server.url();
    let mut before = snapshot(c, &base).await;
    let mut failures = Vec::new();
    for case in cases {
        let label = case.label();
        if let Err(e) = case.check(c, &base).await {
            failures.push(format!("{label}\n    {e}"));
        }
        assert_up(server, c, &label).await;
        let after = snapshot(c, &base).await;
        if after != before {
            failures.push(format!(
                "{label}\n    changed the server's data:\n    before {before}\n    after  {after}"
            ));
            before = after;
        }
    }
    failures
}

/// Creates a topic over HTTP.
async fn create_topic(c: &reqwest::Client, base: &str, body: Value) {
    ok(
        c,
        base,
        "POST",
        "/v1/tenants/default/topics",
        Some(body),
        201,
    )
    .await;
}

/// Appends to one partition over HTTP; returns the response.
async fn append(
    c: &reqwest::Client,
    base: &str,
    topic: &str,
    partition: u32,
    body: Value,
) -> Value {
    let path = format!("/v1/tenants/default/topics/{topic}/partitions/{partition}/records");
    ok(c, base, "POST", &path, Some(body), 200).await
}

/// Fills `short` (tiny segments, retention_bytes 1) until retention has moved
/// its start offset, then waits for it to settle; returns `(start, end)`.
async fn retain_some(c: &reqwest::Client, base: &str) -> (u64, u64) {
    let filler = "z".repeat(800);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        append(
            c,
            base,
            "short",
            0,
            json!({ "records": [{ "value": filler }] }),
        )
        .await;
        if offsets(c, base, "short", 0).await.0 > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never moved the start offset of short/0: {:?}",
            offsets(c, base, "short", 0).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stable for several retention passes (every 100 ms) before the snapshot.
    let mut last = offsets(c, base, "short", 0).await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = offsets(c, base, "short", 0).await;
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_millis(700) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "short/0 offsets never settled: {now:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bad_input_gets_its_error_and_changes_nothing() {
    let mut flags = LIMITS.to_vec();
    flags.extend(["--retention-interval", "100ms"]);
    let (_dir, mut server) = start(&flags);
    let base = server.url();
    let c = client();

    // What the cases must not change.
    ok(&c, &base, "PUT", "/v1/tenants/acme", None, 201).await;
    create_topic(&c, &base, json!({ "name": "t", "partitions": 3 })).await;
    append(
        &c,
        &base,
        "t",
        0,
        json!({ "records": [{ "value": "a" }, { "value": "b" }] }),
    )
    .await;
    append(
        &c,
        &base,
        "t",
        1,
        json!({ "records": [{ "key": "k", "value": "c" }] }),
    )
    .await;
    let commit =
        json!({ "offsets": [{ "topic": "t", "partition": 0, "offset": 1, "metadata": "m" }] });
    ok(
        &c,
        &base,
        "PUT",
        "/v1/tenants/default/groups/g/offsets",
        Some(commit),
        204,
    )
    .await;
    // Not UTF-8: a value (offset 0), a key (1), a header value (2).
    create_topic(&c, &base, json!({ "name": "bin" })).await;
    let not_utf8 = json!({ "encoding": "base64", "records": [
        { "value": BASE64.encode([0xff, 0xfe]) },
        { "key": BASE64.encode([0x80]), "value": BASE64.encode("ok") },
        { "value": BASE64.encode("ok"), "headers": [{ "key": "h", "value": BASE64.encode([0xc3, 0x28]) }] },
    ] });
    append(&c, &base, "bin", 0, not_utf8).await;
    let v = ok(
        &c,
        &base,
        "GET",
        "/v1/tenants/default/topics/bin/partitions/0/records?encoding=base64",
        None,
        200,
    )
    .await;
    assert_eq!(v["records"][0]["value"], "//4=", "{v}");
    // Offsets below the start: retention deletes short's sealed segments.
    create_topic(
        &c,
        &base,
        json!({ "name": "short", "config": { "segment_bytes": 1024, "retention_bytes": 1 } }),
    )
    .await;
    let (short_start, short_end) = retain_some(&c, &base).await;
    assert_eq!(offsets(&c, &base, "t", 0).await, (0, 2));
    assert_eq!(offsets(&c, &base, "t", 2).await, (0, 0));

    let topics = "/v1/tenants/default/topics";
    let t = "/v1/tenants/default/topics/t";
    let produce = "/v1/tenants/default/topics/t/records";
    let append0 = "/v1/tenants/default/topics/t/partitions/0/records";
    let read0 = "/v1/tenants/default/topics/t/partitions/0/records";
    let bin = "/v1/tenants/default/topics/bin/partitions/0/records";
    let short = "/v1/tenants/default/topics/short/partitions/0/records";
    let commit_g2 = "/v1/tenants/default/groups/g2/offsets";
    let commit_g = "/v1/tenants/default/groups/g/offsets";
    let sse = "text/event-stream";
    let big = "x".repeat(1500);
    let half = "h".repeat(600);
    let too_long_topic = "a".repeat(250);
    let too_long_tenant = "a".repeat(64);
    let too_long_group = "g".repeat(256);
    let huge = format!(r#"{{"records":[{{"value":"{}"}}]}}"#, "y".repeat(5000));
    let many = json!({ "records": vec![json!({ "value": "v".repeat(900) }); 5] }).to_string();
    let deep = "[".repeat(3000);
    let mut bad_utf8 = br#"{"records":[{"value":""#.to_vec();
    bad_utf8.extend([0xff, 0xfe]);
    bad_utf8.extend(br#""}]}"#);
    let past = json!({ "offset": 3, "start_offset": 0, "end_offset": 2 });
    let below = json!({ "offset": 0, "start_offset": short_start, "end_offset": short_end });
    let too_large = |index: u64, size: u64| json!({ "index": index, "record_bytes": size, "max_message_bytes": MAX_RECORD });

    #[rustfmt::skip]
    let cases = vec![
        // Malformed JSON.
        json_case("POST", topics, r#"{"name":"#, 400, "bad_request"),
        json_case("POST", topics, "", 400, "bad_request"),
        json_case("POST", topics, "null", 400, "bad_request"),
        json_case("POST", topics, "[]", 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x"} trailing"#, 400, "bad_request"),
        json_case("POST", topics, r#"{'name':'x'}"#, 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x","name":"y"}"#, 400, "bad_request"),
        json_case("POST", produce, deep.clone(), 400, "bad_request"),
        json_case("POST", produce, bad_utf8.clone(), 400, "bad_request"),
        // Wrong types.
        json_case("POST", topics, r#"{"name":5}"#, 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x","partitions":"2"}"#, 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x","partitions":-1}"#, 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x","partitions":1.5}"#, 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x","partitions":4294967296}"#, 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x","config":[]}"#, 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x","config":{"retention_ms":"1"}}"#, 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x","config":{"retention_ms":1.5}}"#, 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x","config":{"retention_ms":9223372036854775808}}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":{"value":"v"}}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":5}]}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"key":["k"],"value":"v"}]}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"v","partition":"0"}]}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"v","partition":4294967296}]}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"v","timestamp_ms":"now"}]}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"v","headers":{"h":1}}]}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"v","headers":"h"}]}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"v","headers":[{"key":"h"}]}]}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"v"}],"acks":"maybe"}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"v"}],"encoding":"hex"}"#, 400, "bad_request"),
        json_case("POST", append0, r#"{"records":[{"value":"v"}],"expected_offset":-2}"#, 400, "bad_request"),
        json_case("POST", append0, r#"{"records":[{"value":"v"}],"expected_offset":"2"}"#, 400, "bad_request"),
        json_case("PUT", commit_g2, r#"{"offsets":[{"topic":"t","partition":0,"offset":-1}]}"#, 400, "bad_request"),
        json_case("PUT", commit_g2, r#"{"offsets":{"topic":"t","partition":0,"offset":1}}"#, 400, "bad_request"),
        // Missing required fields.
        json_case("POST", topics, r#"{"partitions":1}"#, 400, "bad_request"),
        json_case("POST", topics, "{}", 400, "bad_request"),
        json_case("PATCH", t, "{}", 400, "bad_request"),
        json_case("POST", produce, "{}", 400, "bad_request"),
        json_case("POST", append0, r#"{"expected_offset":2}"#, 400, "bad_request"),
        json_case("PUT", commit_g2, "{}", 400, "bad_request"),
        json_case("PUT", commit_g2, r#"{"offsets":[{"topic":"t","partition":0}]}"#, 400, "bad_request"),
        json_case("PUT", commit_g2, r#"{"offsets":[{"partition":0,"offset":1}]}"#, 400, "bad_request"),
        // Unknown fields.
        json_case("POST", topics, r#"{"name":"x","colour":"red"}"#, 400, "bad_request"),
        json_case("POST", topics, r#"{"name":"x","config":{"retention":1}}"#, 400, "bad_request"),
        json_case("PATCH", t, r#"{"config":{"nope":1}}"#, 400, "bad_request"),
        json_case("PATCH", t, r#"{"config":{},"partitions":5}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"v"}],"extra":1}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"v","extra":1}]}"#, 400, "bad_request"),
        json_case("POST", append0, r#"{"records":[{"value":"v"}],"expected":2}"#, 400, "bad_request"),
        json_case("PUT", commit_g2, r#"{"offsets":[{"topic":"t","partition":0,"offset":1,"extra":1}]}"#, 400, "bad_request"),
        // Unknown tenant, topic, partition, group.
        get("GET", "/v1/tenants/nobody/topics", 404, "tenant_not_found"),
        json_case("POST", "/v1/tenants/nobody/topics", r#"{"name":"x"}"#, 404, "tenant_not_found"),
        get("GET", "/v1/tenants/nobody/topics/t", 404, "tenant_not_found"),
        json_case("POST", "/v1/tenants/nobody/topics/t/records", r#"{"records":[{"value":"v"}]}"#, 404, "tenant_not_found"),
        get("GET", "/v1/tenants/nobody/groups/g/offsets", 404, "tenant_not_found"),
        json_case("PUT", "/v1/tenants/nobody/groups/g/offsets", r#"{"offsets":[]}"#, 404, "tenant_not_found"),
        get("GET", format!("{topics}/missing"), 404, "topic_not_found"),
        get("GET", "/v1/tenants/acme/topics/t", 404, "topic_not_found"),
        json_case("PATCH", format!("{topics}/missing"), r#"{"config":{}}"#, 404, "topic_not_found"),
        get("DELETE", format!("{topics}/missing"), 404, "topic_not_found"),
        get("DELETE", "/v1/tenants/acme/topics/t", 404, "topic_not_found"),
        json_case("POST", format!("{topics}/missing/records"), r#"{"records":[{"value":"v"}]}"#, 404, "topic_not_found"),
        json_case("POST", "/v1/tenants/acme/topics/t/records", r#"{"records":[{"value":"v"}]}"#, 404, "topic_not_found"),
        json_case("POST", format!("{topics}/missing/partitions/0/records"), r#"{"records":[{"value":"v"}]}"#, 404, "topic_not_found"),
        get("GET", format!("{topics}/missing/partitions/0/records"), 404, "topic_not_found"),
        get("GET", format!("{topics}/missing/partitions/0/records"), 404, "topic_not_found").header("accept", sse),
        get("GET", format!("{topics}/missing/partitions/0"), 404, "topic_not_found"),
        json_case("PUT", commit_g2, r#"{"offsets":[{"topic":"missing","partition":0,"offset":0}]}"#, 404, "topic_not_found"),
        json_case("POST", produce, r#"{"records":[{"value":"v","partition":3}]}"#, 404, "partition_not_found"),
        json_case("POST", produce, r#"{"records":[{"value":"a","partition":0},{"value":"b","partition":9}]}"#, 404, "partition_not_found"),
        json_case("POST", format!("{t}/partitions/3/records"), r#"{"records":[{"value":"v"}]}"#, 404, "partition_not_found"),
        get("GET", format!("{t}/partitions/3/records"), 404, "partition_not_found"),
        get("GET", format!("{t}/partitions/4294967295/records"), 404, "partition_not_found"),
        get("GET", format!("{t}/partitions/3"), 404, "partition_not_found"),
        json_case("PUT", commit_g2, r#"{"offsets":[{"topic":"t","partition":0,"offset":1},{"topic":"t","partition":3,"offset":0}]}"#, 404, "partition_not_found"),
        json_case("PUT", commit_g, r#"{"offsets":[{"topic":"t","partition":0,"offset":2},{"topic":"t","partition":3,"offset":0}]}"#, 404, "partition_not_found"),
        get("GET", "/v1/tenants/default/groups/nogroup/offsets", 404, "group_not_found"),
        get("GET", "/v1/tenants/acme/groups/g/offsets", 404, "group_not_found"),
        // Invalid tenant, topic and group names.
        get("PUT", "/v1/tenants/UPPER", 400, "invalid_name"),
        get("PUT", "/v1/tenants/-lead", 400, "invalid_name"),
        get("PUT", "/v1/tenants/under_score", 400, "invalid_name"),
        get("PUT", format!("/v1/tenants/{too_long_tenant}"), 400, "invalid_name"),
        get("GET", "/v1/tenants/UPPER/topics", 400, "invalid_name"),
        json_case("POST", "/v1/tenants/Bad/topics", r#"{"name":"x"}"#, 400, "invalid_name"),
        json_case("POST", topics, r#"{"name":"bad name!"}"#, 400, "invalid_name"),
        json_case("POST", topics, r#"{"name":""}"#, 400, "invalid_name"),
        json_case("POST", topics, r#"{"name":"."}"#, 400, "invalid_name"),
        json_case("POST", topics, r#"{"name":".."}"#, 400, "invalid_name"),
        json_case("POST", topics, r#"{"name":"a/b"}"#, 400, "invalid_name"),
        json_case("POST", topics, r#"{"name":"тема"}"#, 400, "invalid_name"),
        json_case("POST", topics, r#"{"name":"nul\u0000"}"#, 400, "invalid_name"),
        json_case("POST", topics, format!(r#"{{"name":"{too_long_topic}"}}"#), 400, "invalid_name"),
        get("GET", format!("{topics}/bad%20name"), 400, "invalid_name"),
        json_case("POST", format!("{topics}/bad%20name/records"), r#"{"records":[{"value":"v"}]}"#, 400, "invalid_name"),
        json_case("PUT", "/v1/tenants/default/groups/bad%0Agroup/offsets", r#"{"offsets":[{"topic":"t","partition":0,"offset":0}]}"#, 400, "invalid_name"),
        json_case("PUT", "/v1/tenants/default/groups/a%2Fb/offsets", r#"{"offsets":[{"topic":"t","partition":0,"offset":0}]}"#, 400, "invalid_name"),
        json_case("PUT", format!("/v1/tenants/default/groups/{too_long_group}/offsets"), r#"{"offsets":[{"topic":"t","partition":0,"offset":0}]}"#, 400, "invalid_name"),
        get("GET", "/v1/tenants/default/groups/bad%0Agroup/offsets", 400, "invalid_name"),
        json_case("PUT", commit_g2, r#"{"offsets":[{"topic":"bad name","partition":0,"offset":0}]}"#, 400, "invalid_name"),
        // Partition counts.
        json_case("POST", topics, r#"{"name":"x","partitions":0}"#, 400, "invalid_partitions"),
        json_case("POST", topics, r#"{"name":"x","partitions":10001}"#, 400, "invalid_partitions")
            .details(json!({ "partitions": 10001, "max_partitions": 10000 })),
        json_case("POST", topics, r#"{"name":"t","partitions":5}"#, 409, "topic_already_exists"),
        // Config values out of range.
        json_case("POST", topics, r#"{"name":"x","config":{"segment_ms":0}}"#, 400, "invalid_config")
            .details(json!({ "field": "segment_ms", "value": 0 })),
        json_case("POST", topics, r#"{"name":"x","config":{"segment_bytes":1023}}"#, 400, "invalid_config"),
        json_case("POST", topics, r#"{"name":"x","config":{"retention_ms":-2}}"#, 400, "invalid_config"),
        json_case("POST", topics, r#"{"name":"x","config":{"retention_bytes":-2}}"#, 400, "invalid_config"),
        json_case("POST", topics, r#"{"name":"x","config":{"max_message_bytes":0}}"#, 400, "invalid_config"),
        json_case("POST", topics, r#"{"name":"x","config":{"max_message_bytes":4097}}"#, 400, "invalid_config"),
        json_case("PATCH", t, r#"{"config":{"retention_bytes":-7}}"#, 400, "invalid_config"),
        json_case("PATCH", t, r#"{"config":{"segment_bytes":1}}"#, 400, "invalid_config"),
        json_case("PATCH", t, r#"{"config":{"retention_ms":5,"segment_ms":0}}"#, 400, "invalid_config"),
        json_case("POST", topics, r#"{"name":"x","config":{"local_retention_ms":-3}}"#, 400, "invalid_config")
            .details(json!({ "field": "local_retention_ms", "value": -3 })),
        json_case("PATCH", t, r#"{"config":{"local_retention_bytes":-3}}"#, 400, "invalid_config")
            .details(json!({ "field": "local_retention_bytes", "value": -3 })),
        // Bad path and query parameters.
        get("GET", format!("{t}/partitions/abc/records"), 400, "bad_request"),
        get("GET", format!("{t}/partitions/-1/records"), 400, "bad_request"),
        get("GET", format!("{t}/partitions/4294967296"), 400, "bad_request"),
        get("GET", "/v1/tenants/%FF/topics", 400, "bad_request"),
        get("GET", format!("{read0}?offset=abc"), 400, "bad_request"),
        get("GET", format!("{read0}?offset=-1"), 400, "bad_request"),
        get("GET", format!("{read0}?offset="), 400, "bad_request"),
        get("GET", format!("{read0}?offset=18446744073709551616"), 400, "bad_request"),
        get("GET", format!("{read0}?offset=0&tail=1"), 400, "bad_request"),
        get("GET", format!("{read0}?offset=0&timestamp_ms=1"), 400, "bad_request"),
        get("GET", format!("{read0}?offset=0&offset=1"), 400, "bad_request"),
        get("GET", format!("{read0}?offset=0&tail=1"), 400, "bad_request").header("accept", sse),
        get("GET", format!("{read0}?ofset=1"), 400, "bad_request"),
        get("GET", format!("{read0}?timestamp_ms=yesterday"), 400, "bad_request"),
        get("GET", format!("{read0}?tail=-1"), 400, "bad_request"),
        get("GET", format!("{read0}?max_records=-1"), 400, "bad_request"),
        get("GET", format!("{read0}?max_bytes=lots"), 400, "bad_request"),
        get("GET", format!("{read0}?wait_ms=soon"), 400, "bad_request"),
        get("GET", format!("{read0}?encoding=hex"), 400, "bad_request"),
        get("GET", read0, 400, "bad_request").header("accept", sse).header("last-event-id", "yesterday"),
        // Offsets past the end and below the start.
        get("GET", format!("{read0}?offset=3"), 416, "offset_out_of_range").details(past.clone()),
        get("GET", format!("{read0}?offset=3&wait_ms=100"), 416, "offset_out_of_range").details(past.clone()),
        get("GET", format!("{read0}?offset=3"), 416, "offset_out_of_range").header("accept", sse).details(past.clone()),
        get("GET", format!("{read0}?offset=18446744073709551615"), 416, "offset_out_of_range")
            .details(json!({ "start_offset": 0, "end_offset": 2 })),
        get("GET", format!("{t}/partitions/2/records?offset=1"), 416, "offset_out_of_range")
            .details(json!({ "offset": 1, "start_offset": 0, "end_offset": 0 })),
        get("GET", format!("{short}?offset=0"), 416, "offset_out_of_range").details(below.clone()),
        get("GET", format!("{short}?offset={}", short_start - 1), 416, "offset_out_of_range")
            .details(json!({ "start_offset": short_start, "end_offset": short_end })),
        get("GET", format!("{short}?offset=0"), 416, "offset_out_of_range").header("accept", sse).details(below.clone()),
        get("GET", format!("{short}?offset={}", short_end + 1), 416, "offset_out_of_range")
            .details(json!({ "start_offset": short_start, "end_offset": short_end })),
        // Conditional appends at the wrong offset.
        json_case("POST", append0, r#"{"records":[{"value":"v"}],"expected_offset":0}"#, 412, "offset_mismatch")
            .details(json!({ "expected_offset": 0, "end_offset": 2 })),
        json_case("POST", append0, r#"{"records":[{"value":"v"}],"expected_offset":7}"#, 412, "offset_mismatch")
            .details(json!({ "expected_offset": 7, "end_offset": 2 })),
        json_case("POST", format!("{t}/partitions/2/records"), r#"{"records":[{"value":"v"},{"value":"w"}],"expected_offset":1}"#, 412, "offset_mismatch")
            .details(json!({ "end_offset": 0 })),
        json_case("POST", append0, r#"{"records":[{"value":"v","partition":1}]}"#, 400, "bad_request"),
        json_case("POST", append0, r#"{"records":[]}"#, 400, "bad_request"),
        // Not UTF-8 where UTF-8 is required; not base64 where base64 is.
        get("GET", bin, 400, "bad_request").details(json!({ "offset": 0, "field": "value" })),
        get("GET", format!("{bin}?offset=1"), 400, "bad_request").details(json!({ "offset": 1, "field": "key" })),
        get("GET", format!("{bin}?offset=2&encoding=utf8"), 400, "bad_request")
            .details(json!({ "offset": 2, "field": "header value" })),
        get("GET", format!("{bin}?offset=0"), 400, "bad_request").header("accept", sse),
        json_case("POST", produce, r#"{"records":[{"value":"%%%"}],"encoding":"base64"}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"b2s"}],"encoding":"base64"}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"key":"not base64!","value":"b2s="}],"encoding":"base64"}"#, 400, "bad_request"),
        json_case("POST", produce, r#"{"records":[{"value":"b2s=","headers":{"h":"***"}}],"encoding":"base64"}"#, 400, "bad_request"),
        json_case("POST", append0, r#"{"records":[{"value":"b2s="},{"value":"b2s=!"}],"encoding":"base64"}"#, 400, "bad_request"),
        // Too large: one record (the topic's max_message_bytes), the whole request (max_request_bytes).
        json_case("POST", produce, format!(r#"{{"records":[{{"value":"{big}"}}]}}"#), 413, "record_too_large")
            .details(too_large(0, 1500)),
        json_case("POST", append0, format!(r#"{{"records":[{{"value":"a"}},{{"value":"{big}"}}]}}"#), 413, "record_too_large")
            .details(too_large(1, 1500)),
        json_case("POST", produce, format!(r#"{{"records":[{{"key":"{half}","value":"{half}","partition":0}}]}}"#), 413, "record_too_large")
            .details(too_large(0, 1200)),
        json_case("POST", produce, format!(r#"{{"records":[{{"value":"v","headers":{{"h":"{big}"}}}}]}}"#), 413, "record_too_large"),
        json_case("POST", produce, format!(r#"{{"records":[{{"value":"{}"}}],"encoding":"base64"}}"#, BASE64.encode([7u8; 1100])), 413, "record_too_large")
            .details(too_large(0, 1100)),
        json_case("POST", produce, huge.clone(), 413, "request_too_large"),
        json_case("POST", produce, many.clone(), 413, "request_too_large"),
        json_case("POST", append0, huge.clone(), 413, "request_too_large"),
        json_case("POST", produce, huge.clone(), 413, "request_too_large").chunked(),
        json_case("POST", topics, format!(r#"{{"name":"{}"}}"#, "n".repeat(5000)), 413, "request_too_large"),
        json_case("PUT", commit_g2, huge.clone(), 413, "request_too_large"),
        // Not JSON.
        raw("POST", produce, Some("text/plain"), r#"{"records":[{"value":"v"}]}"#, 415, "unsupported_media_type"),
        raw("POST", produce, None, r#"{"records":[{"value":"v"}]}"#, 415, "unsupported_media_type"),
        raw("POST", produce, Some("application/xml"), "<records/>", 415, "unsupported_media_type"),
        raw("POST", append0, Some("text/plain"), r#"{"records":[{"value":"v"}]}"#, 415, "unsupported_media_type"),
        raw("POST", topics, Some("application/x-www-form-urlencoded"), "name=x", 415, "unsupported_media_type"),
        raw("PATCH", t, Some("text/plain"), r#"{"config":{}}"#, 415, "unsupported_media_type"),
        raw("PUT", commit_g2, Some("multipart/form-data; boundary=x"), "--x--", 415, "unsupported_media_type"),
        // Unknown routes.
        get("GET", "/", 404, "bad_request"),
        get("GET", "/v1/nothing", 404, "bad_request"),
        get("POST", "/v2/tenants", 404, "bad_request"),
        get("GET", "/v1/tenants/default/groups/g", 404, "bad_request"),
        get("GET", format!("{read0}/extra"), 404, "bad_request"),
        // Wrong methods.
        get("DELETE", "/v1/tenants", 405, "bad_request"),
        get("DELETE", "/v1/tenants/default", 405, "bad_request"),
        get("PUT", "/healthz", 405, "bad_request"),
        json_case("POST", t, "{}", 405, "bad_request"),
        get("GET", produce, 405, "bad_request"),
        get("DELETE", read0, 405, "bad_request"),
        get("PATCH", commit_g, 405, "bad_request"),
    ];

    let count = cases.len();
    let failures = run_cases(&mut server, &c, cases).await;
    assert!(
        failures.is_empty(),
        "{} of {count} bad-input cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One gRPC call of the table.
enum Call {
    CreateTenant(proto::CreateTenantRequest),
    CreateTopic(proto::CreateTopicRequest),
    AlterTopic(proto::AlterTopicRequest),
    DescribeTopic(proto::DescribeTopicRequest),
    DeleteTopic(proto::DeleteTopicRequest),
    ListTopics(proto::ListTopicsRequest),
    Append(proto::AppendRequest),
    Read(proto::ReadRequest),
    ReadSession(proto::ReadRequest),
    CheckTail(proto::CheckTailRequest),
    Commit(proto::CommitOffsetsRequest),
    Fetch(proto::FetchOffsetsRequest),
}

async fn call(client: &mut StrataClient<Channel>, call: Call) -> Result<(), tonic::Status> {
    match call {
        Call::CreateTenant(r) => client.create_tenant(r).await.map(drop),
        Call::CreateTopic(r) => client.create_topic(r).await.map(drop),
        Call::AlterTopic(r) => client.alter_topic(r).await.map(drop),
        Call::DescribeTopic(r) => client.describe_topic(r).await.map(drop),
        Call::DeleteTopic(r) => client.delete_topic(r).await.map(drop),
        Call::ListTopics(r) => client.list_topics(r).await.map(drop),
        Call::Append(r) => client.append(r).await.map(drop),
        Call::Read(r) => client.read(r).await.map(drop),
        Call::ReadSession(r) => {
            // A failed streaming call may end the stream before any message
            // instead of failing the call itself: both are the error.
            let mut stream = client.read_session(r).await?.into_inner();
            match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
                Ok(first) => first.map(drop),
                Err(_) => Ok(()),
            }
        }
        Call::CheckTail(r) => client.check_tail(r).await.map(drop),
        Call::Commit(r) => client.commit_offsets(r).await.map(drop),
        Call::Fetch(r) => client.fetch_offsets(r).await.map(drop),
    }
}

fn records(values: &[&[u8]]) -> Vec<proto::Record> {
    values
        .iter()
        .map(|v| proto::Record {
            value: Some(Bytes::copy_from_slice(v)),
            ..Default::default()
        })
        .collect()
}

fn append_req(topic: &str, partition: Option<u32>, values: &[&[u8]]) -> proto::AppendRequest {
    proto::AppendRequest {
        topic: topic.into(),
        partition,
        records: records(values),
        ..Default::default()
    }
}

fn read_req(topic: &str, partition: u32, offset: u64) -> proto::ReadRequest {
    proto::ReadRequest {
        topic: topic.into(),
        partition,
        start: Some(Start::Offset(offset)),
        ..Default::default()
    }
}

fn create_req(name: &str, partitions: u32) -> proto::CreateTopicRequest {
    proto::CreateTopicRequest {
        name: name.into(),
        partitions,
        ..Default::default()
    }
}

fn commit_req(group: &str, offsets: &[(&str, u32, u64)]) -> proto::CommitOffsetsRequest {
    proto::CommitOffsetsRequest {
        tenant: String::new(),
        group: group.into(),
        offsets: offsets
            .iter()
            .map(|&(topic, partition, offset)| proto::GroupOffset {
                topic: topic.into(),
                partition,
                offset,
                metadata: String::new(),
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_bad_input_gets_its_status_and_changes_nothing() {
    let (_dir, mut server) = start(&LIMITS);
    let base = server.url();
    let c = client();
    let channel = Channel::from_shared(base.clone())
        .expect("uri")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("grpc connect");
    let mut grpc = StrataClient::new(channel);

    grpc.create_topic(create_req("t", 2))
        .await
        .expect("create t");
    grpc.append(append_req("t", Some(0), &[b"a", b"b"]))
        .await
        .expect("append");
    grpc.commit_offsets(commit_req("g", &[("t", 0, 1)]))
        .await
        .expect("commit");

    let big = vec![b'x'; 1500];
    let kb = vec![b'k'; 1000];
    #[rustfmt::skip]
    let cases: Vec<(&str, Call, tonic::Code, ErrorCode, Option<&str>)> = vec![
        ("CreateTopic bad name", Call::CreateTopic(create_req("bad name!", 1)), tonic::Code::InvalidArgument, ErrorCode::InvalidName, None),
        ("CreateTopic empty name", Call::CreateTopic(create_req("", 1)), tonic::Code::InvalidArgument, ErrorCode::InvalidName, None),
        ("CreateTopic 0 partitions", Call::CreateTopic(create_req("x", 0)), tonic::Code::InvalidArgument, ErrorCode::InvalidPartitions, None),
        ("CreateTopic 10001 partitions", Call::CreateTopic(create_req("x", 10_001)), tonic::Code::InvalidArgument, ErrorCode::InvalidPartitions, None),
        ("CreateTopic segment_ms 0", Call::CreateTopic(proto::CreateTopicRequest {
            config: Some(proto::TopicConfig { segment_ms: Some(0), ..Default::default() }),
            ..create_req("x", 1)
        }), tonic::Code::InvalidArgument, ErrorCode::InvalidConfig, None),
        ("CreateTopic in a missing tenant", Call::CreateTopic(proto::CreateTopicRequest {
            tenant: "nobody".into(),
            ..create_req("x", 1)
        }), tonic::Code::NotFound, ErrorCode::TenantNotFound, None),
        ("CreateTopic that exists", Call::CreateTopic(create_req("t", 5)), tonic::Code::AlreadyExists, ErrorCode::TopicAlreadyExists, None),
        ("CreateTenant bad name", Call::CreateTenant(proto::CreateTenantRequest { tenant: "UPPER".into() }), tonic::Code::InvalidArgument, ErrorCode::InvalidName, None),
        ("AlterTopic retention_bytes -7", Call::AlterTopic(proto::AlterTopicRequest {
            tenant: String::new(),
            topic: "t".into(),
            config: Some(proto::TopicConfig { retention_ms: Some(5), retention_bytes: Some(-7), ..Default::default() }),
        }), tonic::Code::InvalidArgument, ErrorCode::InvalidConfig, None),
        ("AlterTopic local_retention_ms -3", Call::AlterTopic(proto::AlterTopicRequest {
            tenant: String::new(),
            topic: "t".into(),
            config: Some(proto::TopicConfig { local_retention_ms: Some(-3), ..Default::default() }),
        }), tonic::Code::InvalidArgument, ErrorCode::InvalidConfig, None),
        ("AlterTopic missing", Call::AlterTopic(proto::AlterTopicRequest {
            tenant: String::new(),
            topic: "missing".into(),
            config: None,
        }), tonic::Code::NotFound, ErrorCode::TopicNotFound, None),
        ("DescribeTopic bad name", Call::DescribeTopic(proto::DescribeTopicRequest { tenant: String::new(), topic: "bad name".into() }), tonic::Code::InvalidArgument, ErrorCode::InvalidName, None),
        ("DeleteTopic missing", Call::DeleteTopic(proto::DeleteTopicRequest { tenant: String::new(), topic: "missing".into() }), tonic::Code::NotFound, ErrorCode::TopicNotFound, None),
        ("ListTopics missing tenant", Call::ListTopics(proto::ListTopicsRequest { tenant: "nobody".into() }), tonic::Code::NotFound, ErrorCode::TenantNotFound, None),
        ("Append to a missing topic", Call::Append(append_req("missing", None, &[b"v"])), tonic::Code::NotFound, ErrorCode::TopicNotFound, None),
        ("Append to a missing partition", Call::Append(append_req("t", Some(9), &[b"v"])), tonic::Code::NotFound, ErrorCode::PartitionNotFound, None),
        ("Append a record to a missing partition", Call::Append(proto::AppendRequest {
            records: vec![
                proto::Record { value: Some(Bytes::from_static(b"a")), partition: Some(0), ..Default::default() },
                proto::Record { value: Some(Bytes::from_static(b"b")), partition: Some(9), ..Default::default() },
            ],
            ..append_req("t", None, &[])
        }), tonic::Code::NotFound, ErrorCode::PartitionNotFound, None),
        ("Append expected_offset without partition", Call::Append(proto::AppendRequest {
            expected_offset: Some(2),
            ..append_req("t", None, &[b"v"])
        }), tonic::Code::InvalidArgument, ErrorCode::BadRequest, None),
        ("Append expected_offset mismatch", Call::Append(proto::AppendRequest {
            expected_offset: Some(0),
            ..append_req("t", Some(0), &[b"v"])
        }), tonic::Code::FailedPrecondition, ErrorCode::OffsetMismatch, Some("\"end_offset\":2")),
        ("Append oversized record", Call::Append(append_req("t", Some(0), &[b"ok", &big])), tonic::Code::ResourceExhausted, ErrorCode::RecordTooLarge, None),
        ("Append oversized request", Call::Append(append_req("t", Some(0), &[&kb, &kb, &kb, &kb, &kb])), tonic::Code::ResourceExhausted, ErrorCode::RequestTooLarge, None),
        ("Append unknown acks", Call::Append(proto::AppendRequest {
            acks: 7,
            ..append_req("t", Some(0), &[b"v"])
        }), tonic::Code::InvalidArgument, ErrorCode::BadRequest, None),
        ("Append no records to a partition", Call::Append(append_req("t", Some(0), &[])), tonic::Code::InvalidArgument, ErrorCode::BadRequest, None),
        ("Read past the end", Call::Read(read_req("t", 0, 3)), tonic::Code::OutOfRange, ErrorCode::OffsetOutOfRange, Some("\"end_offset\":2")),
        ("Read at u64::MAX", Call::Read(read_req("t", 0, u64::MAX)), tonic::Code::OutOfRange, ErrorCode::OffsetOutOfRange, None),
        ("Read a missing partition", Call::Read(read_req("t", 9, 0)), tonic::Code::NotFound, ErrorCode::PartitionNotFound, None),
        ("Read a missing topic", Call::Read(read_req("missing", 0, 0)), tonic::Code::NotFound, ErrorCode::TopicNotFound, None),
        ("Read in a bad tenant", Call::Read(proto::ReadRequest { tenant: "UPPER".into(), ..read_req("t", 0, 0) }), tonic::Code::InvalidArgument, ErrorCode::InvalidName, None),
        ("ReadSession past the end", Call::ReadSession(read_req("t", 0, 3)), tonic::Code::OutOfRange, ErrorCode::OffsetOutOfRange, None),
        ("ReadSession a missing topic", Call::ReadSession(read_req("missing", 0, 0)), tonic::Code::NotFound, ErrorCode::TopicNotFound, None),
        ("CheckTail a missing partition", Call::CheckTail(proto::CheckTailRequest { tenant: String::new(), topic: "t".into(), partition: 9 }), tonic::Code::NotFound, ErrorCode::PartitionNotFound, None),
        ("CommitOffsets bad group", Call::Commit(commit_req("bad\ngroup", &[("t", 0, 0)])), tonic::Code::InvalidArgument, ErrorCode::InvalidName, None),
        ("CommitOffsets missing topic", Call::Commit(commit_req("g2", &[("missing", 0, 0)])), tonic::Code::NotFound, ErrorCode::TopicNotFound, None),
        ("CommitOffsets missing partition", Call::Commit(commit_req("g", &[("t", 0, 2), ("t", 9, 0)])), tonic::Code::NotFound, ErrorCode::PartitionNotFound, None),
        ("FetchOffsets unknown group", Call::Fetch(proto::FetchOffsetsRequest { tenant: String::new(), group: "nogroup".into() }), tonic::Code::NotFound, ErrorCode::GroupNotFound, None),
    ];

    let count = cases.len();
    let mut before = snapshot(&c, &base).await;
    let mut failures = Vec::new();
    for (name, request, want_status, want_code, message_has) in cases {
        match call(&mut grpc, request).await {
            Ok(()) => failures.push(format!("{name}: want {want_status:?}/{want_code}, got OK")),
            Err(status) => {
                let e = ApiError::from_status(&status);
                let message_ok = !status.message().trim().is_empty()
                    && !e.message.trim().is_empty()
                    && message_has.is_none_or(|m| status.message().contains(m));
                if status.code() != want_status || e.code != want_code || !message_ok {
                    failures.push(format!(
                        "{name}: want {want_status:?}/{want_code}{}, got {:?}/{} {:?}",
                        message_has.map_or(String::new(), |m| format!(" with {m} in the message")),
                        status.code(),
                        e.code,
                        status.message()
                    ));
                }
            }
        }
        assert_up(&mut server, &c, name).await;
        let after = snapshot(&c, &base).await;
        if after != before {
            failures.push(format!(
                "{name} changed the server's data:\n    before {before}\n    after  {after}"
            ));
            before = after;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} gRPC bad-input cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The connection still serves.
    let tail = grpc
        .check_tail(proto::CheckTailRequest {
            tenant: String::new(),
            topic: "t".into(),
            partition: 0,
        })
        .await
        .expect("check tail")
        .into_inner();
    assert_eq!((tail.start_offset, tail.next_offset), (0, 2));
}

/// A gRPC codec that sends and receives raw message bytes, to put malformed
/// protobuf on the wire.
#[derive(Default, Clone)]
struct RawCodec;

struct RawEncoder;

struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let mut out = vec![0; bytes::Buf::remaining(src)];
        bytes::Buf::copy_to_slice(src, &mut out);
        Ok(Some(out))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

/// A protobuf length-delimited field: tag, varint length, bytes.
fn pb_bytes(field: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![(field << 3) | 2];
    let mut n = value.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(value);
    out
}

/// Sends raw message bytes to a unary method.
async fn raw_unary(channel: &Channel, method: &str, message: Vec<u8>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path = format!("/strata.v1.Strata/{method}")
        .parse()
        .expect("method path");
    grpc.unary(tonic::Request::new(message), path, RawCodec)
        .await
        .map(drop)
}

async fn grpc_channel(base: &str) -> Channel {
    Channel::from_shared(base.to_string())
        .expect("uri")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("grpc connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_malformed_and_oversized_messages_fail_cleanly() {
    let (_dir, mut server) = start(&LIMITS);
    let base = server.url();
    let c = client();
    create_topic(&c, &base, json!({ "name": "t" })).await;
    append(&c, &base, "t", 0, json!({ "records": [{ "value": "a" }] })).await;
    let channel = grpc_channel(&base).await;
    let before = snapshot(&c, &base).await;
    let mut failures = Vec::new();

    // Not protobuf, or a string field that is not UTF-8: bad input, so
    // INVALID_ARGUMENT with bad_request like every other front end, and the
    // server stays up.
    let mut not_utf8 = pb_bytes(2, &[0xff, 0xfe]);
    not_utf8.extend([0x18, 0x01]);
    let mut not_utf8_topic = pb_bytes(2, &[0xc3, 0x28]);
    not_utf8_topic.extend(pb_bytes(3, &pb_bytes(2, b"v")));
    let malformed: [(&str, &str, Vec<u8>); 4] = [
        ("CreateTopic with a non-UTF-8 name", "CreateTopic", not_utf8),
        ("Append to a non-UTF-8 topic", "Append", not_utf8_topic),
        ("Append of an invalid varint", "Append", vec![0xff; 20]),
        (
            "Append of a truncated field",
            "Append",
            vec![0x12, 0x40, b't'],
        ),
    ];
    for (name, method, message) in malformed {
        match raw_unary(&channel, method, message).await {
            Ok(()) => failures.push(format!("{name}: succeeded")),
            Err(status) => {
                let code = status.code();
                let strata = strata_api::ApiError::from_status(&status).code;
                if code != tonic::Code::InvalidArgument
                    || strata != strata_api::ErrorCode::BadRequest
                    || status.message().trim().is_empty()
                {
                    failures.push(format!(
                        "{name}: got {code:?} ({strata}) {:?}",
                        status.message()
                    ));
                }
            }
        }
        assert_up(&mut server, &c, name).await;
    }

    // Larger than the decoder takes (max_request_bytes + 1 MiB of framing
    // slack): RESOURCE_EXHAUSTED with request_too_large, as the error table
    // (and gRPC's own status-code guide) says.
    let name = "Append of a message over the decoding limit";
    let mut huge = pb_bytes(2, b"t");
    huge.extend(pb_bytes(3, &pb_bytes(2, &vec![b'x'; 4096 + (1 << 20)])));
    match raw_unary(&channel, "Append", huge).await {
        Ok(()) => failures.push(format!("{name}: succeeded")),
        Err(status) => {
            let e = ApiError::from_status(&status);
            if status.code() != tonic::Code::ResourceExhausted
                || e.code != ErrorCode::RequestTooLarge
            {
                failures.push(format!(
                    "{name}: want ResourceExhausted/request_too_large, got {:?}/{} {:?}",
                    status.code(),
                    e.code,
                    status.message()
                ));
            }
        }
    }
    assert_up(&mut server, &c, name).await;

    assert_eq!(
        snapshot(&c, &base).await,
        before,
        "malformed gRPC messages changed the server's data"
    );
    // The same channel still serves.
    let tail = StrataClient::new(channel)
        .check_tail(proto::CheckTailRequest {
            tenant: String::new(),
            topic: "t".into(),
            partition: 0,
        })
        .await
        .expect("check tail after malformed messages")
        .into_inner();
    assert_eq!((tail.start_offset, tail.next_offset), (0, 1));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// xorshift, for reproducible garbage.
fn garbage(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Whether `r` holds a whole HTTP/1 response (head and `Content-Length` body).
fn whole_response(r: &[u8]) -> bool {
    let Some(end) = r.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&r[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    r.starts_with(b"HTTP/1.1 ") && r.len() >= end + 4 + len
}

/// Writes `bytes` (ignoring write errors: the server may hang up first),
/// half-closes unless `keep_open`, and returns what the server sent back:
/// one whole HTTP/1 response, or everything until it hangs up, within 3 s.
async fn exchange(addr: &str, bytes: &[u8], keep_open: bool) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(bytes)).await;
    if !keep_open {
        let _ = s.shutdown().await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut out = Vec::new();
    let mut buf = vec![0; 16 * 1024];
    while !whole_response(&out) {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    out
}

/// The HTTP/1 status the server answered with, if it answered HTTP/1.
fn http1_status(response: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(response.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.parse().ok()
}

/// What a raw exchange must get back.
enum Want {
    /// A 4xx, or no HTTP/1 answer at all (a hang-up, HTTP/2 frames).
    RejectedOrClosed,
    /// This status with this code in the JSON error model.
    Error(u16, &'static str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_socket_leaves_the_server_healthy() {
    let (_dir, mut server) = start(&LIMITS);
    let base = server.url();
    let addr = server.addr.clone();
    let c = client();
    create_topic(&c, &base, json!({ "name": "t" })).await;
    append(&c, &base, "t", 0, json!({ "records": [{ "value": "a" }] })).await;
    let before = snapshot(&c, &base).await;

    // Connections that send half a request and wait must not block others.
    let mut idle = Vec::new();
    for i in 0..16 {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        let partial: &[u8] = if i % 2 == 0 {
            b"GET /healthz HT"
        } else {
            b"PRI * HTTP/2.0\r\n"
        };
        s.write_all(partial).await.expect("write");
        idle.push(s);
    }
    assert_up(&mut server, &c, "16 half-open connections").await;

    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut h2_bad_frame = preface.to_vec();
    // A SETTINGS frame claiming 16 MiB of payload, then junk.
    h2_bad_frame.extend([0xff, 0xff, 0xff, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]);
    h2_bad_frame.extend(garbage(1000, 7));
    let mut h2_bad_headers = preface.to_vec();
    h2_bad_headers.extend([0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]);
    // HEADERS on stream 1 whose HPACK block is junk.
    h2_bad_headers.extend([0x00, 0x00, 0x10, 0x01, 0x05, 0x00, 0x00, 0x00, 0x01]);
    h2_bad_headers.extend(garbage(16, 11));
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..500)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let produce = "POST /v1/tenants/default/topics/t/records HTTP/1.1\r\nHost: x\r\n\
                   Content-Type: application/json\r\n";
    let lying_length = format!(
        "{produce}Content-Length: 99999999999\r\n\r\n{{\"records\":[{{\"value\":\"{}",
        "v".repeat(5000)
    );
    let short_body = format!("{produce}Content-Length: 100\r\n\r\n{{\"records\":[");
    let bad_chunks = format!("{produce}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n");
    let unterminated_chunks = format!(
        "{produce}Transfer-Encoding: chunked\r\n\r\n1400\r\n{}",
        "w".repeat(5000)
    );
    use Want::{Error, RejectedOrClosed};
    let cases: Vec<(&str, Vec<u8>, bool, Want)> = vec![
        (
            "64 KiB of random bytes",
            garbage(64 * 1024, 0x9e37_79b9_7f4a_7c15),
            false,
            RejectedOrClosed,
        ),
        ("NUL bytes", vec![0; 4096], false, RejectedOrClosed),
        (
            "random bytes on a held connection",
            garbage(4096, 3),
            true,
            RejectedOrClosed,
        ),
        (
            "a truncated HTTP/2 preface",
            preface[..10].to_vec(),
            false,
            RejectedOrClosed,
        ),
        (
            "the HTTP/2 preface alone",
            preface.to_vec(),
            false,
            RejectedOrClosed,
        ),
        (
            "the HTTP/2 preface and a 16 MiB SETTINGS frame",
            h2_bad_frame,
            false,
            RejectedOrClosed,
        ),
        (
            "the HTTP/2 preface and junk HPACK",
            h2_bad_headers,
            false,
            RejectedOrClosed,
        ),
        (
            "an invalid request line",
            b"GARBAGE\r\n\r\n".to_vec(),
            false,
            RejectedOrClosed,
        ),
        (
            "an HTTP/9 request",
            b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
            false,
            RejectedOrClosed,
        ),
        (
            "a header with a NUL",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n".to_vec(),
            false,
            RejectedOrClosed,
        ),
        (
            "a 1 MiB header",
            huge_header.into_bytes(),
            false,
            RejectedOrClosed,
        ),
        (
            "500 headers",
            many_headers.into_bytes(),
            false,
            RejectedOrClosed,
        ),
        (
            "a 99999999999-byte Content-Length",
            lying_length.into_bytes(),
            true,
            Error(413, "request_too_large"),
        ),
        (
            "an oversized body in an unfinished chunk",
            unterminated_chunks.into_bytes(),
            true,
            Error(413, "request_too_large"),
        ),
        (
            "a body shorter than its Content-Length",
            short_body.into_bytes(),
            false,
            Error(400, "bad_request"),
        ),
        (
            "a bad chunk size",
            bad_chunks.into_bytes(),
            false,
            Error(400, "bad_request"),
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes, keep_open, want) in cases {
        let response = exchange(&addr, &bytes, keep_open).await;
        let status = http1_status(&response);
        let shown = String::from_utf8_lossy(&response[..response.len().min(300)]).into_owned();
        match want {
            RejectedOrClosed => {
                if status.is_some_and(|s| !(400..500).contains(&s)) {
                    failures.push(format!("{name}: want a 4xx or a hang-up, got {shown:?}"));
                }
            }
            Error(want_status, want_code) => {
                let body = response
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .and_then(|i| serde_json::from_slice::<Value>(&response[i + 4..]).ok())
                    .unwrap_or(Value::Null);
                if status != Some(want_status) || body["error"]["code"] != want_code {
                    failures.push(format!(
                        "{name}: want {want_status} {want_code}, got {shown:?}"
                    ));
                }
            }
        }
        assert_up(&mut server, &c, name).await;
    }
    drop(idle);
    assert_up(&mut server, &c, "the raw garbage").await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        snapshot(&c, &base).await,
        before,
        "raw garbage changed the server's data"
    );
    // And it still does real work.
    append(&c, &base, "t", 0, json!({ "records": [{ "value": "b" }] })).await;
    assert_eq!(offsets(&c, &base, "t", 0).await, (0, 2));
}
