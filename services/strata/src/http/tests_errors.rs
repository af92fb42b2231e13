//! Bad input: every case gets its status and code in the JSON error model,
//! never a 500 or a plain-text body, and changes nothing.

use std::time::Duration;

use serde_json::{Value, json};

use super::tests::{MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, TestServer, code, start};

const JSON: Option<&str> = Some("application/json");

/// Method, path, content type, body, expected status, expected code.
type Case = (
    &'static str,
    String,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

/// What the server holds, to check that rejected requests changed nothing.
async fn snapshot(s: &TestServer) -> Value {
    let (_, topics) = s.get("/v1/tenants/default/topics").await;
    let (_, t) = s.get("/v1/tenants/default/topics/t").await;
    let (_, tenants) = s.get("/v1/tenants").await;
    let (_, groups) = s.get("/v1/tenants/default/groups/g/offsets").await;
    json!({ "topics": topics, "t": t["partition_info"], "tenants": tenants, "groups": groups })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_table() {
    let s = start().await;
    s.create_topic("t", 2).await;
    s.produce(
        "t",
        json!({ "records": [{ "value": "a", "partition": 0 }, { "value": "b", "partition": 0 }] }),
    )
    .await;
    let before = snapshot(&s).await;

    let topics = "/v1/tenants/default/topics";
    let produce = "/v1/tenants/default/topics/t/records";
    let append = "/v1/tenants/default/topics/t/partitions/0/records";
    let read = "/v1/tenants/default/topics/t/partitions/0/records";
    let big_value = "x".repeat(MAX_MESSAGE_BYTES as usize + 100);
    let huge_body = format!(
        r#"{{"records":[{{"value":"{}"}}]}}"#,
        "y".repeat(MAX_REQUEST_BYTES as usize + 10)
    );
    let not_utf8 = b"{\"records\":[{\"value\":\"\xff\xfe\"}]}".to_vec();

    // (method, path, content type, body, status, code)
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        // Malformed JSON, wrong types, missing and unknown fields.
        ("POST", topics.into(), JSON, br#"{"name":"#.to_vec(), 400, "bad_request"),
        ("POST", topics.into(), JSON, br#"{"name":5}"#.to_vec(), 400, "bad_request"),
        ("POST", topics.into(), JSON, br#"{"partitions":1}"#.to_vec(), 400, "bad_request"),
        ("POST", topics.into(), JSON, br#"{"name":"x","colour":"red"}"#.to_vec(), 400, "bad_request"),
        ("POST", topics.into(), JSON, br#"{"name":"x","partitions":-1}"#.to_vec(), 400, "bad_request"),
        ("POST", topics.into(), JSON, br#"{"name":"x","config":{"retention":1}}"#.to_vec(), 400, "bad_request"),
        ("POST", topics.into(), JSON, br#"{"name":"x","config":{"retention_ms":"1"}}"#.to_vec(), 400, "bad_request"),
        ("POST", topics.into(), JSON, b"".to_vec(), 400, "bad_request"),
        ("POST", topics.into(), JSON, b"[]".to_vec(), 400, "bad_request"),
        // Invalid names, partitions and configs.
        ("POST", topics.into(), JSON, br#"{"name":"bad name!"}"#.to_vec(), 400, "invalid_name"),
        ("POST", topics.into(), JSON, br#"{"name":""}"#.to_vec(), 400, "invalid_name"),
        ("POST", topics.into(), JSON, br#"{"name":"x","partitions":0}"#.to_vec(), 400, "invalid_partitions"),
        ("POST", topics.into(), JSON, br#"{"name":"x","config":{"segment_ms":0}}"#.to_vec(), 400, "invalid_config"),
        ("PATCH", format!("{topics}/t"), JSON, br#"{"config":{"retention_bytes":-7}}"#.to_vec(), 400, "invalid_config"),
        ("PATCH", format!("{topics}/t"), JSON, br#"{"config":{"nope":1}}"#.to_vec(), 400, "bad_request"),
        ("PATCH", format!("{topics}/t"), JSON, br#"{}"#.to_vec(), 400, "bad_request"),
        ("PUT", "/v1/tenants/UPPER".into(), None, vec![], 400, "invalid_name"),
        ("PUT", "/v1/tenants/default/groups/g/offsets".into(), JSON, br#"{"offsets":[{"topic":"t","partition":0}]}"#.to_vec(), 400, "bad_request"),
        ("PUT", "/v1/tenants/default/groups/bad%0Agroup/offsets".into(), JSON, br#"{"offsets":[{"topic":"t","partition":0,"offset":0}]}"#.to_vec(), 400, "invalid_name"),
        // Unknown tenant, topic, partition, group.
        ("POST", "/v1/tenants/nobody/topics".into(), JSON, br#"{"name":"x"}"#.to_vec(), 404, "tenant_not_found"),
        ("GET", "/v1/tenants/nobody/topics".into(), None, vec![], 404, "tenant_not_found"),
        ("GET", format!("{topics}/missing"), None, vec![], 404, "topic_not_found"),
        ("PATCH", format!("{topics}/missing"), JSON, br#"{"config":{}}"#.to_vec(), 404, "topic_not_found"),
        ("POST", format!("{topics}/missing/records"), JSON, br#"{"records":[{"value":"v"}]}"#.to_vec(), 404, "topic_not_found"),
        ("POST", produce.into(), JSON, br#"{"records":[{"value":"v","partition":9}]}"#.to_vec(), 404, "partition_not_found"),
        ("POST", format!("{topics}/t/partitions/9/records"), JSON, br#"{"records":[{"value":"v"}]}"#.to_vec(), 404, "partition_not_found"),
        ("GET", format!("{topics}/t/partitions/9/records"), None, vec![], 404, "partition_not_found"),
        ("GET", format!("{topics}/t/partitions/9"), None, vec![], 404, "partition_not_found"),
        ("GET", "/v1/tenants/default/groups/nogroup/offsets".into(), None, vec![], 404, "group_not_found"),
        ("PUT", "/v1/tenants/default/groups/g/offsets".into(), JSON, br#"{"offsets":[{"topic":"missing","partition":0,"offset":0}]}"#.to_vec(), 404, "topic_not_found"),
        // Bad path and query parameters.
        ("GET", format!("{topics}/t/partitions/abc/records"), None, vec![], 400, "bad_request"),
        ("GET", format!("{topics}/t/partitions/-1/records"), None, vec![], 400, "bad_request"),
        ("GET", format!("{read}?offset=abc"), None, vec![], 400, "bad_request"),
        ("GET", format!("{read}?offset=-1"), None, vec![], 400, "bad_request"),
        ("GET", format!("{read}?offset="), None, vec![], 400, "bad_request"),
        ("GET", format!("{read}?offset=0&tail=1"), None, vec![], 400, "bad_request"),
        ("GET", format!("{read}?ofset=1"), None, vec![], 400, "bad_request"),
        ("GET", format!("{read}?encoding=hex"), None, vec![], 400, "bad_request"),
        ("GET", format!("{read}?wait_ms=soon"), None, vec![], 400, "bad_request"),
        ("GET", "/v1/tenants/%FF/topics".into(), None, vec![], 400, "bad_request"),
        // Offsets outside the partition.
        ("GET", format!("{read}?offset=3"), None, vec![], 416, "offset_out_of_range"),
        ("GET", format!("{read}?offset=18446744073709551615"), None, vec![], 416, "offset_out_of_range"),
        // Records: bad encodings and shapes; non-UTF-8 where UTF-8 is required.
        ("POST", produce.into(), JSON, br#"{"records":[{"value":"%%%"}],"encoding":"base64"}"#.to_vec(), 400, "bad_request"),
        ("POST", produce.into(), JSON, br#"{"records":[{"value":"v"}],"encoding":"hex"}"#.to_vec(), 400, "bad_request"),
        ("POST", produce.into(), JSON, br#"{"records":[{"value":"v"}],"acks":"maybe"}"#.to_vec(), 400, "bad_request"),
        ("POST", produce.into(), JSON, br#"{"records":[{"value":5}]}"#.to_vec(), 400, "bad_request"),
        ("POST", produce.into(), JSON, br#"{"records":[{"value":"v","headers":{"h":1}}]}"#.to_vec(), 400, "bad_request"),
        ("POST", produce.into(), JSON, br#"{"records":[{"value":"v","headers":"h"}]}"#.to_vec(), 400, "bad_request"),
        ("POST", produce.into(), JSON, br#"{"records":{"value":"v"}}"#.to_vec(), 400, "bad_request"),
        ("POST", produce.into(), JSON, br#"{"records":[{"value":"v","extra":1}]}"#.to_vec(), 400, "bad_request"),
        ("POST", produce.into(), JSON, not_utf8.clone(), 400, "bad_request"),
        ("POST", append.into(), JSON, br#"{"records":[{"value":"v","partition":1}]}"#.to_vec(), 400, "bad_request"),
        ("POST", append.into(), JSON, br#"{"records":[{"value":"v"}],"expected_offset":-2}"#.to_vec(), 400, "bad_request"),
        ("POST", append.into(), JSON, br#"{"records":[{"value":"v"}],"expected_offset":0}"#.to_vec(), 412, "offset_mismatch"),
        // Too large: one record, the whole request.
        ("POST", produce.into(), JSON, format!(r#"{{"records":[{{"value":"{big_value}"}}]}}"#).into_bytes(), 413, "record_too_large"),
        ("POST", append.into(), JSON, format!(r#"{{"records":[{{"value":"{big_value}"}}]}}"#).into_bytes(), 413, "record_too_large"),
        ("POST", produce.into(), JSON, huge_body.into_bytes(), 413, "request_too_large"),
        // Media types.
        ("POST", produce.into(), Some("text/plain"), br#"{"records":[{"value":"v"}]}"#.to_vec(), 415, "unsupported_media_type"),
        ("POST", produce.into(), None, br#"{"records":[{"value":"v"}]}"#.to_vec(), 415, "unsupported_media_type"),
        ("POST", topics.into(), Some("application/x-www-form-urlencoded"), b"name=x".to_vec(), 415, "unsupported_media_type"),
        // Unknown routes and methods.
        ("GET", "/v1/nothing".into(), None, vec![], 404, "bad_request"),
        ("GET", "/v1/tenants/default/topics/t/partitions/0/records/extra".into(), None, vec![], 404, "bad_request"),
        ("DELETE", "/v1/tenants".into(), None, vec![], 405, "bad_request"),
        ("POST", format!("{topics}/t"), JSON, b"{}".to_vec(), 405, "bad_request"),
    ];

    let mut failures = Vec::new();
    for (method, path, content_type, body, status, want) in cases {
        let (got_status, v) = s.raw(method, &path, content_type, body).await;
        let got = v["error"]["code"].as_str().unwrap_or("<not an error body>");
        let message = v["error"]["message"].as_str().unwrap_or("");
        if got_status != status || got != want || message.is_empty() {
            failures.push(format!(
                "{method} {path}: want {status} {want}, got {got_status} {v}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        snapshot(&s).await,
        before,
        "a rejected request changed something"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_reads_report_the_valid_range() {
    let s = start().await;
    s.create_topic("r", 1).await;
    s.produce(
        "r",
        json!({ "records": [{ "value": "a" }, { "value": "b" }] }),
    )
    .await;
    let (st, v) = s
        .get("/v1/tenants/default/topics/r/partitions/0/records?offset=7")
        .await;
    assert_eq!((st, code(&v)), (416, "offset_out_of_range"));
    assert_eq!(v["error"]["details"]["start_offset"], 0);
    assert_eq!(v["error"]["details"]["end_offset"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_below_the_start_offset_after_retention_are_416() {
    let s = start().await;
    let (st, v) = s
        .send(
            "POST",
            "/v1/tenants/default/topics",
            Some(json!({ "name": "short", "config": { "retention_ms": 1, "segment_ms": 1, "segment_bytes": 1024 } })),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let path = "/v1/tenants/default/topics/short/partitions/0/records";
    let filler = "z".repeat(800);
    // Several small segments; retention deletes every sealed one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let start_offset = loop {
        s.produce(
            "short",
            json!({ "records": [{ "value": filler, "partition": 0 }] }),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (_, p) = s.get("/v1/tenants/default/topics/short/partitions/0").await;
        let start = p["start_offset"].as_u64().unwrap();
        if start > 0 {
            break start;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention never advanced the start offset"
        );
    };
    let (st, v) = s.get(&format!("{path}?offset=0")).await;
    assert_eq!((st, code(&v)), (416, "offset_out_of_range"), "{v}");
    assert!(v["error"]["details"]["start_offset"].as_u64().unwrap() >= start_offset);
    // No start given: from the start offset, which works.
    let (st, v) = s.get(path).await;
    assert_eq!(st, 200, "{v}");
    assert!(v["records"][0]["offset"].as_u64().unwrap() >= start_offset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_last_event_id_is_400() {
    let s = start().await;
    s.create_topic("e", 1).await;
    let resp = s
        .http
        .get(s.url("/v1/tenants/default/topics/e/partitions/0/records"))
        .header("accept", "text/event-stream")
        .header("last-event-id", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(code(&v), "bad_request");
}
