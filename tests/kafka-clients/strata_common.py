"""Shared by the Python client programs: arguments, Strata's HTTP API, the
records used for the cross-door checks, comparisons and the scenario runner.

Standard library only, so it works before any Kafka client is installed.
"""

import argparse
import base64
import json
import os
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid

TENANT = "default"
# Lines starting with this carry JSON the Rust test reads (records to check
# over gRPC); everything else on stdout is for people.
RESULT_PREFIX = "STRATA-RESULT "


class Mismatch(Exception):
    """A check failed: Strata did not behave as Kafka does."""


def check(cond, message):
    if not cond:
        raise Mismatch(message)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Mismatch(f"{what}: expected {expected!r}, got {actual!r}")


def unique(prefix):
    """A topic or group name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def wait_until(predicate, timeout, what, interval=0.1):
    """Polls `predicate` until it returns a truthy value (returned), or fails after
    `timeout` s. `what` names what is awaited; a callable is called at the failure,
    so the message can tell the state things were left in."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = what() if callable(what) else what
            raise Mismatch(f"timed out after {timeout}s waiting for {detail}")
        time.sleep(interval)


def now_ms():
    return int(time.time() * 1000)


def b64(data):
    return None if data is None else base64.b64encode(bytes(data)).decode("ascii")


def unb64(text):
    return None if text is None else base64.b64decode(text)


# --- Strata's HTTP API -------------------------------------------------------


class Http:
    """The few HTTP routes the programs use (docs/http-api.md)."""

    def __init__(self, base):
        self.base = base.rstrip("/")

    def request(self, method, path, body=None, ok=(200, 201, 204)):
        """Returns (status, parsed JSON or None); fails unless the status is in `ok`."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        parsed = json.loads(raw) if raw else None
        if ok is not None and status not in ok:
            raise Mismatch(f"HTTP {method} {path}: status {status}, body {raw[:500]!r}")
        return status, parsed

    def topic_path(self, topic):
        return f"/v1/tenants/{TENANT}/topics/{urllib.parse.quote(topic, safe='')}"

    def create_topic(self, topic, partitions, config=None):
        body = {"name": topic, "partitions": partitions}
        if config:
            body["config"] = config
        return self.request("POST", f"/v1/tenants/{TENANT}/topics", body, ok=(201,))[1]

    def topic(self, topic):
        """The topic as HTTP describes it, or None if it does not exist."""
        status, body = self.request("GET", self.topic_path(topic), ok=(200, 404))
        return body if status == 200 else None

    def produce(self, topic, records):
        """Produces `records` (dicts of bytes, see `http_body_record`); returns their offsets."""
        body = {"encoding": "base64", "records": [http_body_record(r) for r in records]}
        _, resp = self.request("POST", self.topic_path(topic) + "/records", body)
        return resp["offsets"]

    def read(self, topic, partition, offset=0, max_records=1000):
        """One read from `offset` with base64 encoding: the raw JSON response."""
        q = urllib.parse.urlencode(
            {"offset": offset, "max_records": max_records, "encoding": "base64"}
        )
        path = f"{self.topic_path(topic)}/partitions/{partition}/records?{q}"
        return self.request("GET", path)[1]

    def read_all(self, topic, partition):
        """Every record of the partition, as record dicts (bytes decoded)."""
        out, offset = [], 0
        for _ in range(10_000):
            resp = self.read(topic, partition, offset)
            for r in resp["records"]:
                out.append(
                    {
                        "topic": topic,
                        "partition": partition,
                        "offset": r["offset"],
                        "key": unb64(r["key"]),
                        "value": unb64(r["value"]),
                        "headers": [(h["key"], unb64(h["value"])) for h in r["headers"]],
                        "timestamp_ms": r["timestamp_ms"],
                    }
                )
            offset = resp["next_offset"]
            if offset >= resp["high_watermark"] or not resp["records"]:
                return out
        raise Mismatch(f"HTTP read of {topic}/{partition} did not reach the end")

    def end_offset(self, topic, partition):
        path = f"{self.topic_path(topic)}/partitions/{partition}"
        return self.request("GET", path)[1]["end_offset"]

    def group_offsets(self, group):
        """{(topic, partition): offset} committed by `group`, as HTTP reports them."""
        path = f"/v1/tenants/{TENANT}/groups/{urllib.parse.quote(group, safe='')}/offsets"
        status, body = self.request("GET", path, ok=(200, 404))
        if status == 404:
            return {}
        return {(o["topic"], o["partition"]): o["offset"] for o in body["offsets"]}


def http_body_record(r):
    """A record dict (bytes) as the base64 JSON of an HTTP produce request."""
    out = {
        "key": b64(r.get("key")),
        "value": b64(r.get("value")),
        "headers": [{"key": k, "value": b64(v)} for k, v in r.get("headers", [])],
    }
    if r.get("timestamp_ms") is not None:
        out["timestamp_ms"] = r["timestamp_ms"]
    if r.get("partition") is not None:
        out["partition"] = r["partition"]
    return out


# --- records for the cross-door checks ----------------------------------------

ALL_BYTES = bytes(range(256))


def sample_records(partition, tag, timestamp_base=None):
    """Records exercising what a Kafka record can hold: binary keys and values
    (every byte value, invalid UTF-8), an empty value, a null value (tombstone),
    a null key, repeated and binary header values, explicit timestamps.

    Each is a dict: key, value (bytes or None), headers [(str, bytes)],
    timestamp_ms, partition."""
    ts = now_ms() - 60_000 if timestamp_base is None else timestamp_base
    t = tag.encode()
    return [
        {
            "key": b"key-" + t,
            "value": b"plain text value " + t,
            "headers": [("source", t), ("kind", b"text")],
            "timestamp_ms": ts,
        },
        {
            "key": b"\x00\xff\xfe" + t,
            "value": ALL_BYTES + t,
            "headers": [("bin", b"\x00\x01\xff\x80"), ("dup", b"1"), ("dup", b"2")],
            "timestamp_ms": ts + 1,
        },
        {"key": b"empty-" + t, "value": b"", "headers": [], "timestamp_ms": ts + 2},
        {"key": b"tombstone-" + t, "value": None, "headers": [("x", b"")], "timestamp_ms": ts + 3},
        {"key": None, "value": b"no key " + t + b"\xc3\x28", "headers": [], "timestamp_ms": ts + 4},
        {
            "key": b"k",
            "value": os.urandom(3000),
            "headers": [("unicode-\u00e9", "\u2603".encode())],
            "timestamp_ms": ts + 5,
        },
    ]


def describe(r):
    def short(b):
        if b is None:
            return None
        return b if len(b) <= 24 else b[:24] + b"...(%d bytes)" % len(b)

    return (
        f"offset={r.get('offset')} key={short(r.get('key'))!r} value={short(r.get('value'))!r} "
        f"headers={[(k, short(v)) for k, v in r.get('headers', [])]!r} ts={r.get('timestamp_ms')}"
    )


def compare_records(expected, actual, who, timestamps=True, offsets=True):
    """Fails unless `actual` holds exactly `expected` (same order), field by field."""
    if len(actual) != len(expected):
        raise Mismatch(
            f"{who}: expected {len(expected)} records, got {len(actual)}:\n"
            + "\n".join("  got " + describe(r) for r in actual[:20])
        )
    for i, (e, a) in enumerate(zip(expected, actual)):
        fields = ["key", "value", "headers"]
        if timestamps:
            fields.append("timestamp_ms")
        if offsets:
            fields.append("offset")
        for f in fields:
            ev, av = e.get(f), a.get(f)
            if f == "headers":
                ev, av = [(k, bytes(v)) for k, v in ev or []], [(k, bytes(v)) for k, v in av or []]
            if ev != av:
                raise Mismatch(
                    f"{who}: record {i} differs in {f}:\n  expected {describe(e)}\n  got      {describe(a)}"
                )


def check_http_matches(http, records, who):
    """Reads each partition of the records over HTTP and compares them, offset by offset."""
    by_part = {}
    for r in records:
        by_part.setdefault((r["topic"], r["partition"]), []).append(r)
    for (topic, partition), recs in sorted(by_part.items()):
        stored = {r["offset"]: r for r in http.read_all(topic, partition)}
        got = [stored.get(r["offset"], {"offset": r["offset"], "missing": True}) for r in recs]
        for g in got:
            check(not g.get("missing"), f"{who}: offset {g['offset']} of {topic}/{partition} is not readable over HTTP")
        compare_records(recs, got, f"{who} ({topic}/{partition} over HTTP)")


def emit_records(label, records):
    """Prints the records for the Rust test to read back over gRPC."""
    payload = {
        "label": label,
        "records": [
            {
                "topic": r["topic"],
                "partition": r["partition"],
                "offset": r["offset"],
                "key": b64(r["key"]),
                "value": b64(r["value"]),
                "headers": [[k, b64(v)] for k, v in r["headers"]],
                "timestamp_ms": r["timestamp_ms"],
            }
            for r in records
        ],
    }
    print(RESULT_PREFIX + json.dumps(payload), flush=True)


# --- the runner -------------------------------------------------------------


class Context:
    def __init__(self, bootstrap, http_url, program):
        self.bootstrap = bootstrap
        self.http_url = http_url
        self.http = Http(http_url)
        self.program = program


def main(program, scenarios, argv=None):
    """Runs the scenarios named on the command line (all by default); exits 1 on any failure.

    A program can also be started with a hidden first argument naming a helper
    mode (see `helpers`); those are handled by the program itself before this."""
    parser = argparse.ArgumentParser(
        prog=program,
        description=f"Kafka client compatibility checks against Strata ({program}).",
    )
    parser.add_argument(
        "--bootstrap",
        default=os.environ.get("STRATA_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        help="Kafka bootstrap host:port (env STRATA_KAFKA_BOOTSTRAP)",
    )
    parser.add_argument(
        "--http",
        default=os.environ.get("STRATA_HTTP_URL", "http://127.0.0.1:7070"),
        help="Strata HTTP base URL (env STRATA_HTTP_URL)",
    )
    parser.add_argument("scenario", nargs="*", help=f"scenarios to run (default all): {', '.join(scenarios)}")
    args = parser.parse_args(argv)
    names = args.scenario or list(scenarios)
    unknown = [n for n in names if n not in scenarios]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {list(scenarios)}")

    ctx = Context(args.bootstrap, args.http, program)
    failed = []
    for name in names:
        started = time.monotonic()
        print(f"--- {program} {name}: running against kafka {args.bootstrap}, http {args.http}", flush=True)
        try:
            scenarios[name](ctx)
        except Mismatch as e:
            failed.append(name)
            print(f"FAIL {program} {name}: {e}", flush=True)
        except Exception as e:  # a client error is a failure too, with its trace
            failed.append(name)
            print(f"FAIL {program} {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            print(f"PASS {program} {name} ({time.monotonic() - started:.1f}s)", flush=True)
    if failed:
        print(f"{program}: FAILED scenarios: {' '.join(failed)}", flush=True)
        sys.exit(1)
    print(f"{program}: all scenarios ok ({' '.join(names)})", flush=True)
