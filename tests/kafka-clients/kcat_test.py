#!/usr/bin/env python3
"""kcat (librdkafka's command-line client) against Strata.

Scenarios:
  produce_consume     keys and headers in, the same out (-K: -H k=v; -f '%k %s %h %o')
  compression         each codec (gzip, snappy, lz4, zstd), read back over Kafka and HTTP,
                      including from an offset in the middle of a compressed batch
  metadata            kcat -L lists the broker and each topic with its partitions
  cross_door_produce  what kcat produces reads back over HTTP with the same key, value,
                      headers, timestamp and offset (printed for the Rust test's gRPC check)
  cross_door_consume  binary records produced over HTTP are consumed by kcat byte for byte

Usage: kcat_test.py --bootstrap HOST:PORT --http http://HOST:PORT [scenario ...]
"""

import json
import os
import subprocess
import tempfile

from strata_common import (
    ALL_BYTES,
    Mismatch,
    check,
    check_eq,
    check_http_matches,
    compare_records,
    emit_records,
    main,
    now_ms,
    unique,
)

KCAT = os.environ.get("KCAT", "kcat")


def kcat(ctx, args, stdin=None, timeout=30):
    """Runs kcat against the broker; returns stdout (bytes). Fails on a non-zero exit or a hang."""
    cmd = [KCAT, "-b", ctx.bootstrap, "-X", "socket.timeout.ms=10000"] + args
    try:
        out = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise Mismatch(
            f"`{' '.join(cmd)}` did not finish within {timeout}s; stderr: {(e.stderr or b'')[-2000:]!r}"
        )
    if out.returncode != 0:
        raise Mismatch(
            f"`{' '.join(cmd)}` exited with {out.returncode}; stderr: {out.stderr[-2000:].decode(errors='replace')}"
        )
    return out.stdout


def consume_lines(ctx, topic, fmt, extra=()):
    """Consumes the topic from the beginning to its end (-e); one output line per record."""
    out = kcat(ctx, ["-C", "-q", "-e", "-t", topic, "-f", fmt + "\\n", *extra])
    return out.decode().splitlines()


def produce_lines(ctx, topic, lines, extra=()):
    kcat(ctx, ["-P", "-t", topic, *extra], stdin=("\n".join(lines) + "\n").encode())


def produce_consume(ctx):
    topic = unique("kcat-keys")
    ctx.http.create_topic(topic, 2)
    produce_lines(ctx, topic, ["k1:v1", "k2:value two", "k1:v3"], ["-p", "0", "-K:", "-H", "a=1", "-H", "b=two"])
    produce_lines(ctx, topic, ["other:x"], ["-p", "1", "-K:", "-H", "only=p1"])

    got = consume_lines(ctx, topic, "%k %s %h %o", ["-p", "0"])
    check_eq(got, ["k1 v1 a=1,b=two 0", "k2 value two a=1,b=two 1", "k1 v3 a=1,b=two 2"], "kcat -C -p 0 output")
    got = consume_lines(ctx, topic, "%p %k %s %h %o")
    check_eq(sorted(got), ["0 k1 v1 a=1,b=two 0", "0 k1 v3 a=1,b=two 2", "0 k2 value two a=1,b=two 1", "1 other x only=p1 0"], "kcat -C (all partitions) output")
    # From an offset, and a bounded count.
    got = consume_lines(ctx, topic, "%k %o", ["-p", "0", "-o", "1", "-c", "1"])
    check_eq(got, ["k2 1"], "kcat -C -o 1 -c 1 output")


CODECS = ["gzip", "snappy", "lz4", "zstd"]


def compression(ctx):
    for codec in CODECS:
        topic = unique(f"kcat-{codec}")
        ctx.http.create_topic(topic, 1)
        lines = [f"key{i % 7}:record {i:05d} {codec} " + "abcdefgh" * 20 for i in range(200)]
        # linger so the records travel in a few large (compressed) batches
        produce_lines(ctx, topic, lines, ["-p", "0", "-K:", "-X", f"compression.codec={codec}", "-X", "linger.ms=50"])
        expected = [f"{line.split(':', 1)[0]} {line.split(':', 1)[1]} {i}" for i, line in enumerate(lines)]
        got = consume_lines(ctx, topic, "%k %s %o")
        if got != expected:
            raise Mismatch(f"{codec}: kcat read back {len(got)} records that differ from the 200 produced; first lines: {got[:3]}")
        # Start in the middle of a batch.
        got = consume_lines(ctx, topic, "%k %s %o", ["-o", "137", "-c", "5"])
        check_eq(got, expected[137:142], f"{codec}: kcat -o 137 -c 5")
        # HTTP sees the same records.
        stored = ctx.http.read_all(topic, 0)
        check_eq(len(stored), 200, f"{codec}: records readable over HTTP")
        for i, r in enumerate(stored):
            key, value = lines[i].split(":", 1)
            if (r["offset"], r["key"], r["value"]) != (i, key.encode(), value.encode()):
                raise Mismatch(f"{codec}: HTTP record {i} is offset={r['offset']} key={r['key']!r} value={r['value'][:40]!r}..., expected key {key!r} value {value[:40]!r}...")
        mid = ctx.http.read(topic, 0, offset=137, max_records=5)
        check_eq([r["offset"] for r in mid["records"]], list(range(137, 142)), f"{codec}: HTTP read from offset 137")


def metadata(ctx):
    one, four = unique("kcat-meta1"), unique("kcat-meta4")
    ctx.http.create_topic(one, 1)
    ctx.http.create_topic(four, 4)
    md = json.loads(kcat(ctx, ["-L", "-J"]))
    brokers = md.get("brokers", [])
    check_eq(len(brokers), 1, f"number of brokers in {brokers}")
    check_eq(brokers[0]["name"], ctx.bootstrap, "the advertised broker address")
    broker_id = brokers[0]["id"]
    topics = {t["topic"]: t for t in md.get("topics", [])}
    for name, count in [(one, 1), (four, 4)]:
        check(name in topics, f"kcat -L does not list topic {name}; it lists {sorted(topics)}")
        t = topics[name]
        check("error" not in t, f"topic {name} has an error: {t.get('error')}")
        parts = sorted(p["partition"] for p in t["partitions"])
        check_eq(parts, list(range(count)), f"partitions of {name}")
        for p in t["partitions"]:
            check("error" not in p, f"{name}/{p['partition']} has an error: {p.get('error')}")
            check_eq(p["leader"], broker_id, f"leader of {name}/{p['partition']}")
            check_eq([r["id"] for r in p["replicas"]], [broker_id], f"replicas of {name}/{p['partition']}")
            check_eq([r["id"] for r in p["isrs"]], [broker_id], f"in-sync replicas of {name}/{p['partition']}")
    # One topic only.
    md = json.loads(kcat(ctx, ["-L", "-J", "-t", four]))
    check_eq([t["topic"] for t in md["topics"]], [four], "kcat -L -t TOPIC topics")
    check_eq(len(md["topics"][0]["partitions"]), 4, f"kcat -L -t {four} partitions")


def cross_door_produce(ctx):
    topic = unique("kcat-xdoor")
    ctx.http.create_topic(topic, 2)
    before = now_ms()
    produce_lines(ctx, topic, ["alpha:first", "beta:second"], ["-p", "1", "-K:", "-H", "h1=v1", "-H", "h2=v2"])
    # A binary value: a file is one message.
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(ALL_BYTES * 4)
        f.flush()
        kcat(ctx, ["-P", "-t", topic, "-p", "1", "-k", "binary-key", "-H", "bin=yes", f.name])
    after = now_ms()

    # The timestamps librdkafka gave the records, as kcat reads them back.
    lines = consume_lines(ctx, topic, "%o %T", ["-p", "1"])
    check_eq(len(lines), 3, "records kcat reads back")
    ts = {int(o): int(t) for o, t in (line.split() for line in lines)}
    for o, t in ts.items():
        check(before - 1000 <= t <= after + 1000, f"timestamp {t} of offset {o} is not the produce time ({before}..{after})")

    expected = [
        {"key": b"alpha", "value": b"first", "headers": [("h1", b"v1"), ("h2", b"v2")]},
        {"key": b"beta", "value": b"second", "headers": [("h1", b"v1"), ("h2", b"v2")]},
        {"key": b"binary-key", "value": ALL_BYTES * 4, "headers": [("bin", b"yes")]},
    ]
    for i, r in enumerate(expected):
        r.update(topic=topic, partition=1, offset=i, timestamp_ms=ts[i])
    check_http_matches(ctx.http, expected, "kcat-produced records")
    check_eq(ctx.http.end_offset(topic, 0), 0, "end offset of the partition kcat did not write")
    emit_records("kcat", expected)


def cross_door_consume(ctx):
    topic = unique("kcat-fromhttp")
    ctx.http.create_topic(topic, 2)
    ts = now_ms() - 3_600_000
    records = [
        {"key": b"line\nbreak", "value": ALL_BYTES, "headers": [("h", b"1"), ("h", b"2")], "timestamp_ms": ts},
        {"key": None, "value": b"no key", "headers": [], "timestamp_ms": ts + 1},
        {"key": b"empty", "value": b"", "headers": [("e", b"")], "timestamp_ms": ts + 2},
        {"key": b"tombstone", "value": None, "headers": [], "timestamp_ms": ts + 3},
        {"key": b"\xff\x00", "value": os.urandom(5000), "headers": [("big", b"yes")], "timestamp_ms": ts + 4},
    ]
    for r in records:
        r["partition"] = 1
    offsets = ctx.http.produce(topic, records)
    check_eq([(o["partition"], o["offset"]) for o in offsets], [(1, i) for i in range(len(records))], "HTTP produce offsets")

    # Length-framed output so binary keys and values survive: a text line, then the raw bytes.
    out = kcat(ctx, ["-C", "-q", "-e", "-t", topic, "-p", "1", "-f", "%o %T %K %S %h\\n%k%s\\n"])
    got = []
    pos = 0
    while pos < len(out):
        nl = out.index(b"\n", pos)
        fields = out[pos:nl].decode().split(" ", 4)
        offset, ts_, klen, vlen, hdrs = int(fields[0]), int(fields[1]), int(fields[2]), int(fields[3]), fields[4]
        pos = nl + 1
        key = None if klen < 0 else out[pos : pos + klen]
        pos += max(klen, 0)
        value = None if vlen < 0 else out[pos : pos + vlen]
        pos += max(vlen, 0)
        check_eq(out[pos : pos + 1], b"\n", f"kcat framing after offset {offset}")
        pos += 1
        headers = [] if not hdrs else [tuple(h.split("=", 1)) for h in hdrs.split(",")]
        got.append({"offset": offset, "timestamp_ms": ts_, "key": key, "value": value, "headers": [(k, v.encode()) for k, v in headers]})
    expected = [dict(r, offset=i) for i, r in enumerate(records)]
    compare_records(expected, got, "HTTP-produced records consumed by kcat")


SCENARIOS = {
    "produce_consume": produce_consume,
    "compression": compression,
    "metadata": metadata,
    "cross_door_produce": cross_door_produce,
    "cross_door_consume": cross_door_consume,
}

if __name__ == "__main__":
    main("kcat", SCENARIOS)
