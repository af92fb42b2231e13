//! End-to-end tests of the `strata` command-line client: each test starts a
//! real `strata server` over its own data directory and runs the real binary
//! against it, checking exact stdout, stderr and exit status.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{BIN, Server};
use serde_json::{Value, json};

/// Starts a server over a fresh temporary directory (kept alive by the caller).
fn start() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), &[]);
    (dir, server)
}

/// Runs a command that must succeed; returns its stdout.
fn ok(server: &Server, args: &[&str], stdin: Option<&str>) -> String {
    let (success, stdout, stderr) = common::cli(server, args, stdin);
    assert!(
        success,
        "strata {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "strata {args:?}: {stderr}");
    stdout
}

/// Runs a command that succeeds and prints nothing on stderr; returns stdout.
fn ok_quiet(server: &Server, args: &[&str]) -> String {
    let (success, stdout, stderr) = common::cli(server, args, None);
    assert!(
        success && stderr.is_empty(),
        "strata {args:?}: success={success}\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

/// Runs a command that must fail cleanly; returns its stderr after checking
/// that stdout is empty, that it did not panic and that the error has `prefix`.
fn fails(server: &Server, args: &[&str], stdin: Option<&str>, prefix: &str) -> String {
    let (success, stdout, stderr) = common::cli(server, args, stdin);
    assert!(
        !success,
        "strata {args:?} succeeded\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stdout, "", "strata {args:?} printed on stdout");
    assert!(!stderr.contains("panicked"), "strata {args:?}: {stderr}");
    assert!(
        stderr.starts_with(prefix),
        "strata {args:?}: stderr should start with {prefix:?}, got {stderr:?}"
    );
    assert_eq!(
        stderr.lines().count(),
        1,
        "strata {args:?}: one error line, got {stderr:?}"
    );
    stderr
}

/// The single JSON document a command printed.
fn json_of(stdout: &str) -> Value {
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout:?}");
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout:?}"))
}

/// One JSON object per line.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

fn lines(stdout: &str) -> Vec<&str> {
    stdout.lines().collect()
}

/// Each line of `text` split into whitespace-separated cells.
fn cells(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

/// Produces `input` with `--key k`; checks that every record landed on one
/// partition at consecutive offsets from `first`, and returns that partition.
fn produce_keyed(server: &Server, topic: &str, input: &str, first: u64) -> u64 {
    let (success, stdout, stderr) =
        common::cli(server, &["produce", topic, "--key", "k"], Some(input));
    assert!(success, "produce failed: {stdout} {stderr}");
    let n = input.lines().count();
    assert_eq!(stderr, format!("produced {n} records to {topic}\n"));
    let acks: Vec<(u64, u64)> = stdout
        .lines()
        .map(|l| {
            let (p, o) = l
                .split_once('/')
                .unwrap_or_else(|| panic!("not partition/offset: {l:?}"));
            (p.parse().expect("partition"), o.parse().expect("offset"))
        })
        .collect();
    assert_eq!(acks.len(), n, "one ack per line: {stdout:?}");
    let partition = acks[0].0;
    let expected: Vec<(u64, u64)> = (0..n as u64).map(|i| (partition, first + i)).collect();
    assert_eq!(acks, expected, "same key → same partition, in order");
    partition
}

/// Kills the child when dropped, so a failing test leaves no process behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits at most `limit` for the child to exit (killing it otherwise);
/// returns (exit code, stdout, stderr). Outputs here are far below a pipe's buffer.
fn wait_bounded(mut child: Child, limit: Duration) -> (Option<i32>, String, String) {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the strata process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tenants_are_created_listed_and_isolate_topics() {
    let (_dir, server) = start();

    assert_eq!(ok_quiet(&server, &["tenant", "list"]), "default\n");
    assert_eq!(
        json_of(&ok_quiet(&server, &["tenant", "list", "--output", "json"])),
        json!({"tenants": ["default"]})
    );

    assert_eq!(
        ok_quiet(&server, &["tenant", "create", "acme"]),
        "created tenant acme\n"
    );
    // Creating again is not an error.
    assert_eq!(
        ok_quiet(&server, &["tenant", "create", "acme"]),
        "tenant acme already exists\n"
    );
    assert_eq!(
        json_of(&ok_quiet(
            &server,
            &["tenant", "create", "acme", "--output", "json"]
        )),
        json!({"tenant": "acme", "created": false})
    );
    assert_eq!(
        json_of(&ok_quiet(
            &server,
            &["tenant", "--output", "json", "create", "beta"]
        )),
        json!({"tenant": "beta", "created": true})
    );

    let mut listed = lines(&ok_quiet(&server, &["tenant", "list"]))
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    listed.sort();
    assert_eq!(listed, ["acme", "beta", "default"]);
    let listed = json_of(&ok_quiet(&server, &["tenant", "list", "--output", "json"]));
    let mut names: Vec<&str> = listed["tenants"]
        .as_array()
        .expect("tenants array")
        .iter()
        .map(|t| t.as_str().expect("tenant name"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["acme", "beta", "default"]);

    // A topic in tenant acme (the option after the subcommand or at the end).
    let created = json_of(&ok_quiet(
        &server,
        &[
            "topic",
            "--tenant",
            "acme",
            "create",
            "inventory",
            "-p",
            "2",
            "--output",
            "json",
        ],
    ));
    assert_eq!(created["tenant"], json!("acme"));
    assert_eq!(created["name"], json!("inventory"));
    assert_eq!(created["partitions"], json!(2));
    let human = ok_quiet(&server, &["topic", "create", "audit", "--tenant", "acme"]);
    assert_eq!(
        lines(&human)[..3],
        [
            "topic:      audit",
            "tenant:     acme",
            "partitions: 1 (replication factor 1)"
        ]
    );

    let acme = json_of(&ok_quiet(
        &server,
        &["topic", "list", "--tenant", "acme", "--output", "json"],
    ));
    let mut acme_topics: Vec<(&str, &str)> = acme
        .as_array()
        .expect("topic array")
        .iter()
        .map(|t| {
            (
                t["tenant"].as_str().expect("tenant"),
                t["name"].as_str().expect("name"),
            )
        })
        .collect();
    acme_topics.sort_unstable();
    assert_eq!(acme_topics, [("acme", "audit"), ("acme", "inventory")]);

    // Tenant default sees none of them.
    assert_eq!(
        json_of(&ok_quiet(&server, &["topic", "list", "--output", "json"])),
        json!([])
    );
    assert_eq!(
        ok_quiet(&server, &["topic", "list"]),
        "NAME  PARTITIONS  CONFIG\n"
    );
    fails(
        &server,
        &["topic", "describe", "inventory"],
        None,
        "error: topic_not_found: ",
    );
    fails(
        &server,
        &["produce", "inventory"],
        Some("x\n"),
        "error: topic_not_found: ",
    );
    // Same name, other tenant: a different topic.
    ok_quiet(&server, &["topic", "create", "inventory"]);
    ok(
        &server,
        &["produce", "inventory", "--tenant", "acme"],
        Some("in-acme\n"),
    );
    assert_eq!(ok_quiet(&server, &["consume", "inventory"]), "");
    assert_eq!(
        ok_quiet(&server, &["consume", "inventory", "--tenant", "acme"]),
        "in-acme\n"
    );

    // A missing tenant is an error of its own.
    fails(
        &server,
        &["topic", "list", "--tenant", "nope"],
        None,
        "error: tenant_not_found: ",
    );
    fails(
        &server,
        &["tenant", "create", "Bad!"],
        None,
        "error: invalid_name: ",
    );
}

#[test]
fn topic_create_list_describe_alter_delete() {
    let (_dir, server) = start();

    let created = ok_quiet(
        &server,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention_ms=3600000",
            "--config",
            "local.retention.ms=-2",
        ],
    );
    let created = lines(&created);
    assert_eq!(
        created[..3],
        [
            "topic:      orders",
            "tenant:     default",
            "partitions: 3 (replication factor 1)"
        ]
    );
    assert!(
        created[3].starts_with("config:     retention_ms=3600000 "),
        "{created:?}"
    );
    assert_eq!(
        created.len(),
        4,
        "no partition table on create: {created:?}"
    );

    // Human list: a header and one row.
    let listed = ok_quiet(&server, &["topic", "list"]);
    let rows = cells(&listed);
    assert_eq!(rows.len(), 2, "{listed:?}");
    assert_eq!(rows[0], ["NAME", "PARTITIONS", "CONFIG"]);
    assert_eq!(rows[1][..3], ["orders", "3", "retention_ms=3600000"]);

    let listed = json_of(&ok_quiet(&server, &["topic", "list", "--output", "json"]));
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], json!("orders"));
    assert_eq!(listed[0]["tenant"], json!("default"));
    assert_eq!(listed[0]["partitions"], json!(3));
    assert_eq!(listed[0]["config"]["retention_ms"], json!(3_600_000));

    let described = json_of(&ok_quiet(
        &server,
        &["topic", "describe", "orders", "--output", "json"],
    ));
    assert_eq!(described["name"], json!("orders"));
    assert_eq!(described["partitions"], json!(3));
    assert_eq!(described["config"]["retention_ms"], json!(3_600_000));
    assert_eq!(described["config"]["local_retention_ms"], json!(-2));
    assert_eq!(described["config"]["local_retention_bytes"], json!(-1));
    let empty = |partition: u32| {
        json!({
            "partition": partition, "start_offset": 0, "end_offset": 0,
            "local_start_offset": 0, "local_bytes": 0,
            "remote_start_offset": 0, "remote_end_offset": 0,
            "remote_bytes": 0, "remote_segments": 0,
            "offload_lag_bytes": 0, "offload_lag_ms": 0,
        })
    };
    assert_eq!(
        described["partition_info"],
        json!([empty(0), empty(1), empty(2)])
    );
    let human = ok_quiet(&server, &["topic", "describe", "orders"]);
    assert!(
        lines(&human)[3].contains(" local_retention_ms=-2 local_retention_bytes=-1"),
        "{human:?}"
    );
    let row = |p: &'static str| vec![p, "0", "0", "0..0", "0", "0..0", "0", "0", "0", "0.0"];
    assert_eq!(
        cells(&human)[4..],
        [
            vec![
                "PARTITION",
                "START_OFFSET",
                "END_OFFSET",
                "LOCAL_OFFSETS",
                "LOCAL_BYTES",
                "REMOTE_OFFSETS",
                "REMOTE_BYTES",
                "REMOTE_SEGMENTS",
                "OFFLOAD_LAG_BYTES",
                "OFFLOAD_LAG_SECS",
            ],
            row("0"),
            row("1"),
            row("2"),
        ]
    );

    fails(
        &server,
        &["topic", "create", "orders", "-p", "3"],
        None,
        "error: topic_already_exists: ",
    );

    // Alter changes only what it names.
    let altered = json_of(&ok_quiet(
        &server,
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "retention_ms=7200000,local_retention_bytes=1GiB",
            "--output",
            "json",
        ],
    ));
    assert_eq!(altered["config"]["retention_ms"], json!(7_200_000));
    assert_eq!(
        altered["config"]["local_retention_bytes"],
        json!(1u64 << 30)
    );
    assert_eq!(altered["config"]["local_retention_ms"], json!(-2));
    let after = json_of(&ok_quiet(
        &server,
        &["topic", "describe", "orders", "--output", "json"],
    ));
    let mut expected = described.clone();
    expected["config"]["retention_ms"] = json!(7_200_000);
    expected["config"]["local_retention_bytes"] = json!(1u64 << 30);
    assert_eq!(after, expected);
    let human = ok_quiet(&server, &["topic", "describe", "orders"]);
    assert!(
        lines(&human)[3].starts_with("config:     retention_ms=7200000 "),
        "{human:?}"
    );
    fails(
        &server,
        &["topic", "alter", "orders", "--config", "colour=blue"],
        None,
        "error: invalid_config: ",
    );
    // The server's range check, under the CLI's name for the field.
    fails(
        &server,
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "local.retention.ms=-3",
        ],
        None,
        "error: invalid_config: invalid topic config: local_retention_ms is -3",
    );

    assert_eq!(
        ok_quiet(&server, &["topic", "delete", "orders"]),
        "deleted topic orders\n"
    );
    let stderr = fails(
        &server,
        &["topic", "describe", "orders"],
        None,
        "error: topic_not_found: ",
    );
    assert!(stderr.contains("orders"), "{stderr}");
    assert_eq!(
        json_of(&ok_quiet(&server, &["topic", "list", "--output", "json"])),
        json!([])
    );
    fails(
        &server,
        &["topic", "delete", "orders"],
        None,
        "error: topic_not_found: ",
    );
}

#[test]
fn produce_then_consume_in_order() {
    let (_dir, server) = start();
    ok_quiet(&server, &["topic", "create", "events", "-p", "3"]);

    let partition = produce_keyed(&server, "events", "one\ntwo\nthree\nfour\nfive\n", 0);
    assert!(partition < 3, "partition {partition}");

    // JSON acks continue the same partition's offsets.
    let (success, stdout, stderr) = common::cli(
        &server,
        &["produce", "events", "--key", "k", "--output", "json"],
        Some("six\nseven\n"),
    );
    assert!(success, "{stderr}");
    assert_eq!(stderr, "", "no summary on stderr with JSON output");
    assert_eq!(
        json_lines(&stdout),
        [
            json!({"partition": partition, "offset": 5}),
            json!({"partition": partition, "offset": 6}),
        ]
    );

    let all = ["one", "two", "three", "four", "five", "six", "seven"];
    assert_eq!(
        lines(&ok_quiet(
            &server,
            &["consume", "events", "--from-beginning"]
        )),
        all
    );
    // Without a group, a consumer starts at the beginning too.
    assert_eq!(lines(&ok_quiet(&server, &["consume", "events"])), all);

    let records = json_lines(&ok_quiet(
        &server,
        &["consume", "events", "--from-beginning", "--output", "json"],
    ));
    assert_eq!(records.len(), all.len());
    for (i, (r, value)) in records.iter().zip(all).enumerate() {
        assert_eq!(r["partition"], json!(partition), "{r}");
        assert_eq!(r["offset"], json!(i), "{r}");
        assert_eq!(r["value"], json!(value), "{r}");
        assert_eq!(r["key"], json!("k"), "{r}");
        assert_eq!(r["headers"], json!([]), "{r}");
        assert!(r["timestamp_ms"].as_u64().is_some_and(|t| t > 0), "{r}");
    }

    assert_eq!(
        ok_quiet(
            &server,
            &[
                "consume",
                "events",
                "--from-beginning",
                "--max-records",
                "2"
            ]
        ),
        "one\ntwo\n"
    );
    let p = partition.to_string();
    assert_eq!(
        ok_quiet(
            &server,
            &["consume", "events", "-p", &p, "--offset", "3", "-n", "2"]
        ),
        "four\nfive\n"
    );

    // The other partitions are empty.
    let described = json_of(&ok_quiet(
        &server,
        &["topic", "describe", "events", "--output", "json"],
    ));
    let ends: Vec<u64> = described["partition_info"]
        .as_array()
        .expect("partition_info")
        .iter()
        .map(|i| i["end_offset"].as_u64().expect("end_offset"))
        .collect();
    let expected: Vec<u64> = (0..3).map(|i| if i == partition { 7 } else { 0 }).collect();
    assert_eq!(ends, expected);
}

#[test]
fn consumer_group_commits_and_resumes() {
    let (_dir, server) = start();
    ok_quiet(&server, &["topic", "create", "jobs", "-p", "2"]);
    let partition = produce_keyed(&server, "jobs", "a\nb\nc\nd\ne\n", 0);

    assert_eq!(
        ok_quiet(
            &server,
            &["consume", "jobs", "--group", "g1", "--max-records", "2"]
        ),
        "a\nb\n"
    );
    assert_eq!(
        json_of(&ok_quiet(
            &server,
            &["group", "offsets", "g1", "--output", "json"]
        )),
        json!({"group": "g1", "offsets": [
            {"topic": "jobs", "partition": partition, "offset": 2, "metadata": ""}
        ]})
    );
    assert_eq!(
        cells(&ok_quiet(&server, &["group", "offsets", "g1"])),
        [
            vec!["TOPIC", "PARTITION", "OFFSET", "METADATA"],
            vec!["jobs", &partition.to_string(), "2"],
        ]
    );

    // The group continues after what it committed.
    assert_eq!(
        ok_quiet(&server, &["consume", "jobs", "--group", "g1"]),
        "c\nd\ne\n"
    );
    let offsets = json_of(&ok_quiet(
        &server,
        &[
            "group", "offsets", "g1", "--topic", "jobs", "--output", "json",
        ],
    ));
    assert_eq!(offsets["offsets"][0]["offset"], json!(5), "{offsets}");
    assert_eq!(ok_quiet(&server, &["consume", "jobs", "--group", "g1"]), "");

    // New records only.
    assert_eq!(produce_keyed(&server, "jobs", "f\n", 5), partition);
    assert_eq!(
        ok_quiet(&server, &["consume", "jobs", "--group", "g1"]),
        "f\n"
    );
    // Another group starts from the beginning; --from-beginning ignores the commits.
    assert_eq!(
        ok_quiet(&server, &["consume", "jobs", "-g", "g2", "-n", "1"]),
        "a\n"
    );
    assert_eq!(
        ok_quiet(
            &server,
            &["consume", "jobs", "--group", "g1", "--from-beginning"]
        ),
        "a\nb\nc\nd\ne\nf\n"
    );
    let g2 = json_of(&ok_quiet(
        &server,
        &["group", "offsets", "g2", "--output", "json"],
    ));
    assert_eq!(g2["offsets"][0]["offset"], json!(1), "{g2}");
}

#[test]
fn consume_follow_prints_new_records() {
    let (_dir, server) = start();
    ok_quiet(&server, &["topic", "create", "live"]);

    let mut child = Command::new(BIN)
        .args(["consume", "live", "--follow"])
        .env("STRATA_SERVER", server.url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn consumer");
    let stdout = child.stdout.take().expect("stdout");
    let mut consumer = KillOnDrop(child);
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next_lines = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                rx.recv_timeout(Duration::from_secs(15))
                    .expect("the follower printed a line within 15 s")
            })
            .collect()
    };

    produce_keyed(&server, "live", "first\nsecond\n", 0);
    assert_eq!(next_lines(2), ["first", "second"]);
    // It is tailing now: these arrive after it reached the end.
    produce_keyed(&server, "live", "third\n", 2);
    assert_eq!(next_lines(1), ["third"]);
    produce_keyed(&server, "live", "fourth\nfifth\n", 3);
    assert_eq!(next_lines(2), ["fourth", "fifth"]);

    // Still running: --follow does not stop at the end.
    assert!(
        consumer.0.try_wait().expect("try_wait").is_none(),
        "the follower exited"
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "nothing more to print"
    );
    consumer.0.kill().expect("kill the follower");
    consumer.0.wait().expect("wait for the follower");
    reader.join().expect("reader thread");
    assert!(rx.try_recv().is_err(), "no records after the last produce");
}

#[test]
fn consume_follow_stops_at_max_records() {
    let (_dir, server) = start();
    ok_quiet(&server, &["topic", "create", "live"]);
    let child = Command::new(BIN)
        .args(["consume", "live", "--follow", "--max-records", "3"])
        .env("STRATA_SERVER", server.url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn consumer");
    produce_keyed(&server, "live", "a\nb\n", 0);
    produce_keyed(&server, "live", "c\nd\n", 2);
    let (code, stdout, stderr) = wait_bounded(child, Duration::from_secs(20));
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (Some(0), "a\nb\nc\n", "")
    );
}

#[test]
fn errors_are_reported_with_their_code() {
    let (_dir, server) = start();

    let stderr = fails(
        &server,
        &["produce", "missing"],
        Some("a\nb\n"),
        "error: topic_not_found: ",
    );
    assert!(stderr.contains("\"missing\""), "{stderr}");
    fails(
        &server,
        &["consume", "missing"],
        None,
        "error: topic_not_found: ",
    );
    fails(
        &server,
        &["topic", "alter", "missing", "-c", "retention_ms=1"],
        None,
        "error: topic_not_found: ",
    );

    for args in [
        &["topic", "create", "bad name!"][..],
        &["topic", "describe", "bad/name"],
        &["consume", "bad name!"],
    ] {
        let stderr = fails(&server, args, None, "error: invalid_name: ");
        assert!(stderr.contains("invalid topic name"), "{stderr}");
    }
    fails(
        &server,
        &["produce", "bad name!"],
        Some("a\n"),
        "error: invalid_name: ",
    );

    ok_quiet(&server, &["topic", "create", "small", "-p", "2"]);
    fails(
        &server,
        &["consume", "small", "-p", "5"],
        None,
        "error: partition_not_found: ",
    );
    fails(
        &server,
        &["topic", "create", "x", "-c", "retention_ms=soon"],
        None,
        "error: invalid_config: ",
    );
    // The failed commands created nothing: only "small" exists.
    assert_eq!(
        json_of(&ok_quiet(&server, &["topic", "list", "--output", "json"]))
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn unreachable_server_is_a_clean_error() {
    let cases: [(&[&str], Option<&str>); 6] = [
        (&["topic", "list"], None),
        (&["tenant", "list"], None),
        (&["produce", "orders"], Some("a\nb\n")),
        (&["consume", "orders", "--follow"], None),
        (&["group", "offsets", "g1"], None),
        (
            &["bench", "produce", "--duration", "1s", "--warmup", "0s"],
            None,
        ),
    ];
    for (args, stdin) in cases {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--server", "http://127.0.0.1:1"])
            // The flag wins over the environment.
            .env("STRATA_SERVER", "http://127.0.0.1:2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn strata");
        {
            use std::io::Write;
            let mut input = child.stdin.take().expect("stdin");
            input
                .write_all(stdin.unwrap_or("").as_bytes())
                .expect("write stdin");
        }
        let (code, stdout, stderr) = wait_bounded(child, Duration::from_secs(20));
        assert_eq!(code, Some(1), "{args:?}: exit code; stderr {stderr:?}");
        assert_eq!(stdout, "", "{args:?}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: unavailable: cannot connect to http://127.0.0.1:1"),
            "{args:?}: {stderr:?}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr:?}");
    }
}

/// Checks the fields every bench report has; returns (records, bytes).
fn check_report(report: &Value, mode: &str) -> (u64, u64) {
    assert_eq!(report["mode"], json!(mode), "{report}");
    assert_eq!(report["errors"], json!(0), "{report}");
    let records = report["records"].as_u64().expect("records");
    let bytes = report["bytes"].as_u64().expect("bytes");
    assert_eq!(bytes, records * 1024, "1 KiB records by default: {report}");
    let duration = report["duration_s"].as_f64().expect("duration_s");
    assert!(duration > 0.0, "{report}");
    let rps = report["records_per_s"].as_f64().expect("records_per_s");
    let mbps = report["mb_per_s"].as_f64().expect("mb_per_s");
    assert!(rps >= 0.0 && mbps >= 0.0, "{report}");
    // duration_s is rounded to ms: the rates only match it on longer runs.
    if duration >= 1.0 {
        let close = |a: f64, b: f64| (a - b).abs() <= 0.01 * b.abs().max(1.0);
        assert!(close(rps, records as f64 / duration), "{report}");
        assert!(close(mbps, bytes as f64 / 1e6 / duration), "{report}");
    }
    for field in ["p50_ms", "p99_ms"] {
        assert!(report.get(field).is_some(), "{field} missing: {report}");
    }
    (records, bytes)
}

fn end_offsets(server: &Server, topic: &str) -> Vec<u64> {
    let described = json_of(&ok_quiet(
        server,
        &["topic", "describe", topic, "--output", "json"],
    ));
    described["partition_info"]
        .as_array()
        .expect("partition_info")
        .iter()
        .map(|i| i["end_offset"].as_u64().expect("end_offset"))
        .collect()
}

fn bench(server: &Server, args: &[&str]) -> Value {
    json_of(&ok_quiet(server, args))
}

#[test]
fn bench_produce_and_consume_report_json() {
    let (_dir, server) = start();

    // At a fixed rate.
    let report = bench(
        &server,
        &[
            "bench",
            "produce",
            "--duration",
            "2s",
            "--warmup",
            "0s",
            "--output",
            "json",
            "--partitions",
            "2",
            "--rate",
            "200",
        ],
    );
    let (records, _) = check_report(&report, "produce");
    assert_eq!(report["duration_s"], json!(2.0), "{report}");
    assert!(
        (360..=440).contains(&records),
        "200 records/s for 2 s: {report}"
    );
    let rps = report["records_per_s"].as_f64().expect("records_per_s");
    assert!(rps > 0.0 && (rps - 200.0).abs() <= 20.0, "{report}");
    assert!(report["mb_per_s"].as_f64().is_some_and(|m| m > 0.0));
    let p50 = report["p50_ms"].as_f64().expect("p50_ms");
    let p99 = report["p99_ms"].as_f64().expect("p99_ms");
    assert!(p50 > 0.0 && p99 >= p50, "{report}");

    // The default topic was created with the asked partitions and holds the records.
    let ends = end_offsets(&server, "bench");
    assert_eq!(ends.len(), 2);
    let stored: u64 = ends.iter().sum();
    assert!(stored >= records, "{stored} stored, {records} reported");

    // Reading it back.
    let report = bench(
        &server,
        &["bench", "consume", "--duration", "1s", "--output", "json"],
    );
    let (consumed, _) = check_report(&report, "consume");
    assert_eq!(consumed, stored, "{report}");
    assert!(report["records_per_s"].as_f64().is_some_and(|r| r > 0.0));
    assert_eq!(
        report["p50_ms"],
        Value::Null,
        "no produce latency: {report}"
    );

    // Flat out, into a topic of its own.
    let report = bench(
        &server,
        &[
            "bench",
            "produce",
            "--topic",
            "flat",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--output",
            "json",
            "--partitions",
            "2",
        ],
    );
    let (records, _) = check_report(&report, "produce");
    assert!(records > 0, "{report}");
    assert!(report["records_per_s"].as_f64().is_some_and(|r| r > 0.0));
    let p50 = report["p50_ms"].as_f64().expect("p50_ms");
    let p99 = report["p99_ms"].as_f64().expect("p99_ms");
    assert!(p50 > 0.0 && p99 >= p50, "{report}");
    let ends = end_offsets(&server, "flat");
    assert_eq!(ends.len(), 2);
    assert!(ends.iter().sum::<u64>() >= records);
}
