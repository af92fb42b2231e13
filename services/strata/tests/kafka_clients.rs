//! Real Kafka clients against the real `strata server`: kcat, confluent-kafka
//! (librdkafka), kafka-python and kafkajs.
//!
//! Each test starts its own server (a fresh data directory, ephemeral HTTP
//! and Kafka ports) and runs one scenario of one client program from
//! `tests/kafka-clients/` against it; the program checks what the client sees
//! against Kafka's behaviour and against the HTTP API, and exits non-zero
//! with a message naming the mismatch. The cross-door scenarios also print the
//! records a client produced (`STRATA-RESULT` lines); this file reads them
//! back over gRPC and compares them field by field.
//!
//! The clients are installed by `scripts/test.sh`. A missing one fails the
//! test when `CI=true`; otherwise the test is skipped with a loud message.
//! See `tests/kafka-clients/README.md` to run a program by hand.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{BoundedOutput, Server, run_bounded};
use serde_json::Value;
use strata_api::proto::{self, read_request::Start, strata_client::StrataClient};
use tonic::transport::Channel;

/// Marks the lines of a program's output that carry produced records.
const RESULT_PREFIX: &str = "STRATA-RESULT ";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/kafka-clients")
}

/// A client program and what it needs installed.
#[derive(Clone, Copy, Debug)]
enum Client {
    Kcat,
    Confluent,
    KafkaPython,
    Kafkajs,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Kcat => "kcat",
            Client::Confluent => "confluent-kafka",
            Client::KafkaPython => "kafka-python",
            Client::Kafkajs => "kafkajs",
        }
    }

    /// The interpreter and program file.
    fn command(self) -> (&'static str, &'static str) {
        match self {
            Client::Kcat => ("python3", "kcat_test.py"),
            Client::Confluent => ("python3", "confluent_test.py"),
            Client::KafkaPython => ("python3", "kafka_python_test.py"),
            Client::Kafkajs => ("node", "kafkajs_test.js"),
        }
    }

    /// Why the client cannot run here, if it cannot.
    fn missing(self) -> Option<String> {
        let probe = |program: &str, args: &[&str]| {
            let out = run_bounded(
                Command::new(program).args(args).current_dir(clients_dir()),
                Duration::from_secs(60),
            );
            (!out.success()).then(|| {
                format!(
                    "`{program} {}` failed: {}",
                    args.join(" "),
                    out.stderr.trim().lines().last().unwrap_or("(no output)")
                )
            })
        };
        let which = |program: &str| {
            let found = std::env::var_os("PATH").is_some_and(|path| {
                std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
            });
            (!found).then(|| format!("`{program}` is not on PATH"))
        };
        match self {
            Client::Kcat => which("python3")
                .or_else(|| which("kcat"))
                .or_else(|| probe("kcat", &["-V"])),
            Client::Confluent => {
                which("python3").or_else(|| probe("python3", &["-c", "import confluent_kafka"]))
            }
            Client::KafkaPython => {
                which("python3").or_else(|| probe("python3", &["-c", "import kafka"]))
            }
            Client::Kafkajs => which("node").or_else(|| {
                let module = clients_dir().join("node_modules/kafkajs/package.json");
                (!module.is_file()).then(|| format!("{} is missing", module.display()))
            }),
        }
    }
}

/// Whether the test can run; with `CI=true` a missing client is a failure.
fn require(client: Client, scenario: &str) -> bool {
    let Some(why) = client.missing() else {
        return true;
    };
    let hint = "scripts/test.sh installs it (see tests/kafka-clients/README.md)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{} is not installed: {why}; {hint}", client.name());
    }
    // Straight to stderr, past the test harness's capture, so the skip is seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
         !!! SKIPPED {} {scenario}: {} is not installed: {why}\n\
         !!! {hint}; with CI=true this is a failure\n\
         !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
        client.name(),
        client.name()
    );
    false
}

/// Starts a server for one test: its own data directory and ephemeral ports.
/// Topics are created explicitly (a misspelt name fails instead of creating
/// one), and a group's first join does not wait for more members.
fn start_server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "--kafka-group-initial-rebalance-delay",
        "0s",
        "--kafka-auto-create-topics",
        "false",
    ];
    let server = Server::start(dir.path(), &args);
    (dir, server)
}

/// Runs one scenario of a client program against `server`; panics with the
/// program's output unless it passes within `timeout`. Returns its stdout.
fn run_scenario(client: Client, scenario: &str, server: &Server, timeout: Duration) -> String {
    let kafka = server
        .kafka_addr
        .clone()
        .expect("the server has a Kafka listener");
    let (interpreter, program) = client.command();
    let out = run_bounded(
        Command::new(interpreter)
            .arg(program)
            .args(["--bootstrap", &kafka, "--http", &server.url(), scenario])
            .current_dir(clients_dir())
            .env("STRATA_KAFKA_BOOTSTRAP", &kafka)
            .env("STRATA_HTTP_URL", server.url())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        timeout,
    );
    if !out.success() {
        panic!("{}", failure_report(client, scenario, &out, timeout));
    }
    // Shown with --nocapture (or when a later check of the test fails).
    for line in out.stdout.lines().filter(|l| !l.starts_with(RESULT_PREFIX)) {
        println!("{line}");
    }
    out.stdout
}

fn failure_report(
    client: Client,
    scenario: &str,
    out: &BoundedOutput,
    timeout: Duration,
) -> String {
    let stdout: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with(RESULT_PREFIX))
        .collect();
    let fails: Vec<&str> = stdout
        .iter()
        .copied()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    let how = match out.status {
        None => format!("was killed after {timeout:?} (it hung)"),
        Some(s) => format!("exited with {s} after {:.1?}", out.elapsed),
    };
    let tail = |s: &str, n: usize| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    format!(
        "{} {scenario} {how}\n{}\n--- its output ---\n{}\n--- its stderr (last 60 lines) ---\n{}",
        client.name(),
        if fails.is_empty() {
            "(no FAIL line)".to_string()
        } else {
            fails.join("\n")
        },
        tail(&stdout.join("\n"), 120),
        tail(&out.stderr, 60),
    )
}

/// One scenario of one client against a fresh server.
fn client_test(client: Client, scenario: &str, timeout: Duration) {
    if !require(client, scenario) {
        return;
    }
    let (_dir, server) = start_server();
    run_scenario(client, scenario, &server, timeout);
}

/// A cross-door scenario: the program checks HTTP both ways; the records it
/// produced are read back here over gRPC.
fn cross_door_test(client: Client, scenario: &str) {
    if !require(client, scenario) {
        return;
    }
    let (_dir, server) = start_server();
    let stdout = run_scenario(client, scenario, &server, Duration::from_secs(120));
    let produced: Vec<Expected> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix(RESULT_PREFIX))
        .flat_map(|json| {
            let v: Value = serde_json::from_str(json).expect("a STRATA-RESULT line is JSON");
            v["records"]
                .as_array()
                .expect("records")
                .iter()
                .map(Expected::from_json)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        !produced.is_empty(),
        "{} {scenario} printed no produced records to check over gRPC",
        client.name()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(check_over_grpc(&server.url(), client, &produced));
}

/// A record a client produced, as the program reported it.
#[derive(Debug)]
struct Expected {
    topic: String,
    partition: u32,
    offset: u64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp_ms: i64,
}

impl Expected {
    fn from_json(v: &Value) -> Expected {
        let bytes = |v: &Value| {
            v.as_str()
                .map(|s| BASE64.decode(s).expect("base64 in a STRATA-RESULT line"))
        };
        Expected {
            topic: v["topic"].as_str().expect("topic").to_string(),
            partition: v["partition"].as_u64().expect("partition") as u32,
            offset: v["offset"].as_u64().expect("offset"),
            key: bytes(&v["key"]),
            value: bytes(&v["value"]),
            headers: v["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|h| {
                    (
                        h[0].as_str().expect("header key").to_string(),
                        bytes(&h[1]).expect("header value"),
                    )
                })
                .collect(),
            timestamp_ms: v["timestamp_ms"].as_i64().expect("timestamp_ms"),
        }
    }
}

/// Bytes for a failure message: escaped text, cut after 40 bytes.
fn show(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "null".into(),
        Some(b) if b.len() > 40 => {
            format!("b\"{}\"... ({} bytes)", b[..40].escape_ascii(), b.len())
        }
        Some(b) => format!("b\"{}\"", b.escape_ascii()),
    }
}

impl Expected {
    /// `(field, self's, other's)` for each field that differs.
    fn differences(&self, other: &Expected) -> Vec<(&'static str, String, String)> {
        let mut out = Vec::new();
        if self.offset != other.offset {
            out.push(("offset", self.offset.to_string(), other.offset.to_string()));
        }
        if self.key != other.key {
            out.push(("key", show(self.key.as_deref()), show(other.key.as_deref())));
        }
        if self.value != other.value {
            let (a, b) = (self.value.as_deref(), other.value.as_deref());
            out.push(("value", show(a), show(b)));
        }
        if self.headers != other.headers {
            let h = |hs: &[(String, Vec<u8>)]| {
                let items: Vec<String> = hs
                    .iter()
                    .map(|(k, v)| format!("{k:?}={}", show(Some(v))))
                    .collect();
                format!("[{}]", items.join(", "))
            };
            out.push(("headers", h(&self.headers), h(&other.headers)));
        }
        if self.timestamp_ms != other.timestamp_ms {
            let (a, b) = (self.timestamp_ms, other.timestamp_ms);
            out.push(("timestamp_ms", a.to_string(), b.to_string()));
        }
        out
    }
}

async fn check_over_grpc(base: &str, client: Client, produced: &[Expected]) {
    let channel = Channel::from_shared(base.to_string())
        .expect("uri")
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("grpc connect");
    let mut grpc = StrataClient::new(channel);
    let mut failures = Vec::new();
    for want in produced {
        let resp = grpc
            .read(proto::ReadRequest {
                tenant: "default".into(),
                topic: want.topic.clone(),
                partition: want.partition,
                start: Some(Start::Offset(want.offset)),
                max_records: 1,
                max_bytes: 0,
                wait_ms: 0,
            })
            .await
            .unwrap_or_else(|s| {
                panic!(
                    "gRPC Read of {}/{} at {}: {s}",
                    want.topic, want.partition, want.offset
                )
            })
            .into_inner();
        let Some(r) = resp.records.first() else {
            failures.push(format!(
                "{}/{} offset {}: gRPC Read returned no record",
                want.topic, want.partition, want.offset
            ));
            continue;
        };
        let got = Expected {
            topic: want.topic.clone(),
            partition: want.partition,
            offset: r.offset,
            key: r.key.as_ref().map(|b| b.to_vec()),
            value: r.value.as_ref().map(|b| b.to_vec()),
            headers: r
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.to_vec()))
                .collect(),
            timestamp_ms: r.timestamp_ms,
        };
        for (field, got, produced) in got.differences(want) {
            failures.push(format!(
                "{}/{} offset {}: {field} read over gRPC is {got}, but {produced} was produced",
                want.topic, want.partition, want.offset
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "records produced with {} differ when read over gRPC:\n{}",
        client.name(),
        failures.join("\n")
    );
}

const SHORT: Duration = Duration::from_secs(120);
/// Group scenarios wait for rebalances and, once, a session timeout.
const GROUPS: Duration = Duration::from_secs(240);

// --- kcat -----------------------------------------------------------------------

#[test]
fn kcat_produce_and_consume_keys_and_headers() {
    client_test(Client::Kcat, "produce_consume", SHORT);
}

#[test]
fn kcat_every_compression_codec() {
    client_test(Client::Kcat, "compression", SHORT);
}

#[test]
fn kcat_metadata_lists_broker_and_topics() {
    client_test(Client::Kcat, "metadata", SHORT);
}

#[test]
fn kcat_records_read_back_over_http_and_grpc() {
    cross_door_test(Client::Kcat, "cross_door_produce");
}

#[test]
fn kcat_consumes_http_records_byte_for_byte() {
    client_test(Client::Kcat, "cross_door_consume", SHORT);
}

// --- confluent-kafka (librdkafka) -------------------------------------------------

#[test]
fn confluent_idempotent_producer_acks_all() {
    client_test(Client::Confluent, "idempotent_producer", SHORT);
}

#[test]
fn confluent_group_rebalances_when_a_member_leaves() {
    client_test(Client::Confluent, "group_leave", GROUPS);
}

#[test]
fn confluent_group_rebalances_when_a_member_is_killed() {
    client_test(Client::Confluent, "group_kill", GROUPS);
}

#[test]
fn confluent_committed_offsets_resume_without_gap_or_repeat() {
    client_test(Client::Confluent, "commit_resume", SHORT);
}

#[test]
fn confluent_admin_create_describe_alter_delete() {
    client_test(Client::Confluent, "admin", SHORT);
}

#[test]
fn confluent_cross_door_http_and_grpc() {
    cross_door_test(Client::Confluent, "cross_door");
}

// --- kafka-python ------------------------------------------------------------------

#[test]
fn kafka_python_produce_and_consume() {
    client_test(Client::KafkaPython, "produce_consume", SHORT);
}

#[test]
fn kafka_python_group_commit_and_resume() {
    client_test(Client::KafkaPython, "commit_resume", SHORT);
}

#[test]
fn kafka_python_admin() {
    client_test(Client::KafkaPython, "admin", SHORT);
}

#[test]
fn kafka_python_cross_door_http_and_grpc() {
    cross_door_test(Client::KafkaPython, "cross_door");
}

// --- kafkajs -----------------------------------------------------------------------

#[test]
fn kafkajs_produce_and_consumer_group() {
    client_test(Client::Kafkajs, "produce_group", GROUPS);
}

#[test]
fn kafkajs_cross_door_http_and_grpc() {
    cross_door_test(Client::Kafkajs, "cross_door");
}
