#!/usr/bin/env python3
"""W1 over the Kafka protocol next to W1 over gRPC, in one run (issue: the Kafka
path reaches >= 80 % of the gRPC path's throughput, and serving fetches costs no
record re-encoding: broker CPU per GB for both).

Started by scripts/bench-kafka.sh (which runs bench-w1.sh's server set-up with
this helper) with a running server. The Kafka load is librdkafka's, through kcat:
one producer (`kcat -P`, acks=all, fed 1 KiB lines from a pipe as fast as it takes
them) and one tailing consumer (`kcat -C` on all 16 partitions from the start).
The gRPC load is `strata bench e2e` with the same shape. Throughput for both is
the broker's own produced-records counter over the same kind of window, times
the record size; CPU is the broker process's utime+stime over that window.
"""

import argparse
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone

_spec = importlib.util.spec_from_file_location(
    "bench_w1", os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench-w1.py")
)
w1 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(w1)

PARTITIONS = w1.PARTITIONS
RECORD_SIZE = w1.RECORD_SIZE
GOAL_RATIO = 0.80


def log(msg):
    print(f"[bench-kafka {datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def create_topic(server, name):
    body = f'{{"name":"{name}","partitions":{PARTITIONS}}}'.encode()
    req = urllib.request.Request(
        f"{server}/v1/tenants/default/topics", data=body,
        headers={"content-type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 201, r.status


def kafka_w1(a, topic, duration, warmup):
    """Unthrottled kcat producer + tailing kcat consumer; the broker sampled
    over the measured window. Returns the window and the producer/consumer counts."""
    create_topic(a.server, topic)
    common = ["-b", a.kafka, "-t", topic, "-q"]
    consumer_cmd = ["kcat", "-C", *common, "-o", "beginning", "-f", ".",
                    "-X", "fetch.wait.max.ms=100", "-X", "fetch.min.bytes=1"]
    producer_cmd = ["kcat", "-P", *common,
                    "-X", "acks=all", "-X", "enable.idempotence=false",
                    "-X", "linger.ms=5", "-X", "batch.size=1000000",
                    "-X", "queue.buffering.max.kbytes=262144", "-X", "compression.codec=none"]
    log("run: " + shlex.join(consumer_cmd))
    consumer = subprocess.Popen(consumer_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    consumed = [0]

    def count():
        while True:
            chunk = consumer.stdout.read1(1 << 16)
            if not chunk:
                return
            consumed[0] += len(chunk)

    counter = threading.Thread(target=count, daemon=True)
    counter.start()
    log("run: " + shlex.join(producer_cmd) + "  (stdin: 1 KiB lines)")
    producer = subprocess.Popen(producer_cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    line = (b"x" * (RECORD_SIZE - 1)) + b"\n"
    block = line * 1024
    produced_lines = 0
    d, w = w1.seconds(duration), w1.seconds(warmup)
    margin = min(0.5, d / 10)
    start = time.monotonic()
    s0 = s1 = None
    try:
        while True:
            now = time.monotonic()
            if s0 is None and now >= start + w + margin:
                s0 = w1.sample(a.server, a.server_pid, producer.pid)
                c0 = consumed[0]
            if s1 is None and now >= start + w + d - margin:
                s1 = w1.sample(a.server, a.server_pid, producer.pid)
                c1 = consumed[0]
            if now >= start + w + d:
                break
            producer.stdin.write(block)
            produced_lines += 1024
        producer.stdin.close()
        producer.wait(timeout=120)
        # The consumer catches up with everything acknowledged (its output is
        # block-buffered: up to a buffer's worth is still inside it), then stops
        # on SIGTERM, which makes kcat flush its output and exit.
        deadline = time.monotonic() + 60
        while consumed[0] + 8192 < produced_lines and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)
        consumer.terminate()
        consumer.wait(timeout=10)
        counter.join(timeout=10)
    finally:
        for p in (producer, consumer):
            if p.poll() is None:
                p.kill()
            p.wait()
    err = producer.stderr.read().decode(errors="replace").strip()
    if producer.returncode not in (0, None) or err:
        log(f"producer exit {producer.returncode}: {err[-2000:]}")
    window = w1.window(s0, s1)
    consumer_rate = (c1 - c0) / window["seconds"] if window else None
    log(f"  produced {produced_lines} lines, consumed {consumed[0]}")
    return {
        "producer_cmd": producer_cmd, "consumer_cmd": consumer_cmd,
        "window": window, "fed": produced_lines, "consumed": consumed[0],
        "consumer_records_per_s": consumer_rate, "producer_exit": producer.returncode,
    }


def summary(window):
    """records/s, MB/s, CPU-s per GB (records x record size), broker cores."""
    if not window or window["seconds"] <= 0:
        return None
    rps = window["produced_records"] / window["seconds"]
    gb = window["produced_records"] * RECORD_SIZE / 1e9
    return {
        "records_per_s": rps,
        "mb_per_s": rps * RECORD_SIZE / 1e6,
        "cpu_per_gb": window["server_cpu_s"] / gb if gb > 0 else None,
        "cores": window["server_cpu_s"] / window["seconds"],
        "read_mb_per_s": window["read_bytes"] / 1e6 / window["seconds"],
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--strata", required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--server-pid", required=True, type=int)
    p.add_argument("--kafka", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--data-dir", required=True)
    a = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = w1.machine()
    d, w = w1.env("BENCH_DURATION", "20s"), w1.env("BENCH_WARMUP", "5s")

    log("W1 over gRPC (strata bench e2e)")
    grpc = w1.bench(a, "kw1-grpc", d, w)
    log("W1 over Kafka (kcat = librdkafka)")
    kafka = kafka_w1(a, "kw1-kafka", d, w)
    g, k = summary(grpc["window"]), summary(kafka["window"])
    ratio = k["mb_per_s"] / g["mb_per_s"] if g and k and g["mb_per_s"] else None

    out = []
    emit = out.append
    emit(f"# Strata W1 over Kafka vs gRPC ({when})")
    emit("")
    emit(f"One release `strata server` on 127.0.0.1 ({machine['nproc']} CPUs, {machine['cpu']}; "
         f"load at start {machine['load']}); both loads on the same machine, one after the "
         f"other in this run. W1: {PARTITIONS} partitions, {RECORD_SIZE}-byte records, 1 producer "
         f"with durable acks, 1 tailing consumer, unthrottled; {w} warm-up + {d} measured.")
    emit("")
    emit("| path | load generator | records/s | MB/s | consumer read MB/s | broker cores "
         "| broker CPU-s per GB produced |")
    emit("|---|---|---:|---:|---:|---:|---:|")
    for name, tool, s in (("gRPC", "`strata bench e2e` (acks=fsync)", g),
                          ("Kafka", "kcat/librdkafka (acks=all)", k)):
        if s is None:
            emit(f"| {name} | {tool} | – | – | – | – | – |")
            continue
        emit(f"| {name} | {tool} | {s['records_per_s']:.0f} | {s['mb_per_s']:.1f} | "
             f"{s['read_mb_per_s']:.1f} | {s['cores']:.2f} | {w1.fmt(s['cpu_per_gb'])} |")
    emit("")
    emit(f"| goal | measured | result |")
    emit("|---|---:|---|")
    emit(f"| Kafka path ≥ {GOAL_RATIO:.0%} of the gRPC path's throughput | "
         f"{w1.fmt(ratio * 100 if ratio else None, 1)} % | "
         f"{w1.verdict(ratio is not None and ratio >= GOAL_RATIO)} |")
    emit("")
    emit(f"Kafka run: {kafka['fed']} records fed to the producer, {kafka['consumed']} consumed "
         f"by the tailing consumer (producer exit {kafka['producer_exit']}). MB/s is the broker's "
         f"`strata_broker_produced_records_total` over the window times {RECORD_SIZE} bytes "
         "for both paths (the byte counters differ by design: the Kafka path counts stored "
         "batch bytes, the record APIs count keys, values and headers).")
    emit("")
    emit("```sh")
    emit(shlex.join(grpc["cmd"]))
    emit(shlex.join(kafka["consumer_cmd"]))
    emit(shlex.join(kafka["producer_cmd"]) + "   # stdin: 1 KiB lines, as fast as it reads them")
    emit("```")
    print("\n".join(out))


if __name__ == "__main__":
    main()
