#!/usr/bin/env python3
"""Replication benchmarks of issue 7, in one run on this machine:

1. Throughput, RF1 vs RF3 (acks=all), 16 partitions, 1 KiB records, one
   unthrottled librdkafka producer (`kcat -P`, which sends each partition to
   its leader): a single node (RF1) and a 3-node cluster (every partition on
   all three, every byte written three times to the same disk). Throughput
   is the brokers' own produced-records counters over the measured window.
   Goal: RF3 >= 0.8 x (RF1 / 3).
2. Produce latency at 50 % load: one partition, `strata bench produce` over
   gRPC to its leader, first unthrottled for the RF3 maximum, then `--rate`
   at half of it, latency from each record's scheduled send time; the same
   rate on the single node beside it.
3. Failover: SIGKILL the leader of a partition while an HTTP writer appends
   to it through the other nodes; the time to the first acknowledged append.
   Goal: under 3 s. Five kills (--kills N).

Usage: scripts/bench-replication.py [--dir DIR] [--duration S] [--warmup S]
Needs target/release/strata (cargo build --release -p strata) and kcat.
Everything runs on 127.0.0.1 with ephemeral ports and is stopped at the end.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime

PARTITIONS = 16
RECORD = 1024


def log(msg):
    print(f"[bench-replication {datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"null")


def node_output(data):
    """(env, stderr) for a node: quiet, or with STRATA_BENCH_LOG=FILTER its
    log at that filter appended to DATA.log, for looking into a slow case."""
    filt = os.environ.get("STRATA_BENCH_LOG")
    if not filt:
        return dict(os.environ, RUST_LOG="error"), subprocess.DEVNULL
    return dict(os.environ, RUST_LOG=filt), open(data.rstrip("/") + ".log", "a")


class Node:
    def __init__(self, strata, data, node_id=None, peer=None, bootstrap=None):
        self.api, self.kafka = free_port(), free_port()
        args = [strata, "server", "--listen", f"127.0.0.1:{self.api}",
                "--kafka-listen", f"127.0.0.1:{self.kafka}", "--data-dir", data]
        if node_id is not None:
            args += ["--node-id", str(node_id), "--peer-listen", peer, "--bootstrap", bootstrap]
        self.args = args
        self.proc = None
        self.start()

    def start(self):
        env, stderr = node_output(self.args[self.args.index("--data-dir") + 1])
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=stderr,
                                     env=env, text=True)
        for line in self.proc.stdout:
            if line.startswith("strata listening on"):
                return
        raise RuntimeError("a node did not start")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.api}"

    def cpu(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def produced(self):
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(float(m) for m in re.findall(
            r"^strata_broker_produced_records_total(?:\{[^}]*\})? (\S+)$", text, re.M))

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def create_topic(node, name, partitions=PARTITIONS):
    status, _ = http("POST", f"{node.url}/v1/tenants/default/topics",
                     {"name": name, "partitions": partitions}, timeout=30)
    assert status == 201, status


def kcat_throughput(nodes, topic, duration, warmup):
    """Unthrottled kcat producer; MB/s from the brokers' counters over the window."""
    create_topic(nodes[0], topic)
    time.sleep(1.5)
    brokers = ",".join(f"127.0.0.1:{n.kafka}" for n in nodes)
    producer = subprocess.Popen(
        ["kcat", "-P", "-b", brokers, "-t", topic, "-q", "-X", "acks=all",
         "-X", "linger.ms=5", "-X", "batch.size=1048576", "-X", "queue.buffering.max.kbytes=262144"],
        stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = (b"x" * (RECORD - 1)) + b"\n"
    chunk = line * 256
    start = time.monotonic()
    sampled = None
    try:
        while True:
            producer.stdin.write(chunk)
            now = time.monotonic()
            if sampled is None and now - start >= warmup:
                sampled = (now, sum(n.produced() for n in nodes), sum(n.cpu() for n in nodes))
            if now - start >= warmup + duration:
                break
        end = (time.monotonic(), sum(n.produced() for n in nodes), sum(n.cpu() for n in nodes))
    finally:
        producer.stdin.close()
        producer.kill()
        producer.wait()
    seconds = end[0] - sampled[0]
    records = end[1] - sampled[1]
    mb = records * RECORD / 1e6
    return {"mb_per_s": mb / seconds, "records_per_s": records / seconds,
            "cpu_s_per_gb": (end[2] - sampled[2]) / (mb / 1000) if mb else 0.0}


def bench_latency(strata, node, topic, rate, duration, warmup, partitions=PARTITIONS):
    rate_args = [] if rate is None else ["--rate", str(rate)]
    out = subprocess.run(
        [strata, "bench", "produce", "--server", node.url, "--topic", topic,
         "--partitions", str(partitions), "--record-size", str(RECORD),
         "--duration", f"{duration}s", "--warmup", f"{warmup}s", *rate_args,
         "--output", "json"], capture_output=True, text=True, timeout=duration + warmup + 120)
    if out.returncode != 0:
        raise RuntimeError(f"strata bench failed: {out.stderr[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def leader_of(node, topic, partition):
    _, status = http("GET", f"{node.url}/v1/cluster")
    for p in status["partitions"]:
        key = p["partition"]
        if key.startswith(f"default/{topic}/") and key.endswith(f"/{partition}"):
            return p["leader"]
    return None


def failover(nodes, topic):
    """SIGKILL partition 0's leader; time until an append through a survivor is acknowledged."""
    leader = leader_of(nodes[0], topic, 0)
    _, status = http("GET", f"{nodes[0].url}/v1/cluster")
    meta = status["raft"]["leader"]
    if meta == leader:
        log(f"  node {leader} also leads the metadata group (term {status['raft']['term']})")
    victim = nodes[leader - 1]
    survivors = [n for n in nodes if n is not victim]
    url = "/v1/tenants/default/topics/{}/partitions/0/records".format(topic)
    victim.kill()
    killed = time.monotonic()
    i = 0
    elected = None
    while time.monotonic() - killed < 30:
        node = survivors[i % len(survivors)]
        i += 1
        if elected is None:
            try:
                if leader_of(survivors[0], topic, 0) not in (None, leader):
                    elected = time.monotonic() - killed
                    log(f"  new leader recorded after {elected:.2f} s")
            except Exception:
                pass
        try:
            status, _ = http("POST", node.url + url, {"records": [{"value": f"f{i}"}]}, timeout=2)
            if status == 200:
                took = time.monotonic() - killed
                break
        except Exception:
            time.sleep(0.01)
    else:
        took = float("inf")
    victim.start()
    return leader, took


def wait_brokers(node, count):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _, s = http("GET", f"{node.url}/v1/cluster", timeout=2)
            if len(s["brokers"]) >= count and all(b["alive"] for b in s["brokers"]):
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError("the cluster did not form")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="target/bench-replication")
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--kills", type=int, default=5, help="leader kills for the failover measure")
    ap.add_argument("--failover-only", action="store_true",
                    help="skip the throughput and latency measures")
    a = ap.parse_args()
    strata = os.path.abspath("target/release/strata")
    os.makedirs(a.dir, exist_ok=True)
    root = os.path.abspath(tempfile.mkdtemp(dir=a.dir))
    bucket = os.path.join(root, "bucket")
    single, cluster = None, []
    try:
        if not a.failover_only:
            log("RF1: a single node")
            single = Node(strata, os.path.join(root, "single"))
            rf1 = kcat_throughput([single], "rf1", a.duration, a.warmup)
            log(f"RF1: {rf1['mb_per_s']:.1f} MB/s")

        log("RF3: a 3-node cluster")
        peers = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        boot = ",".join(f"{i + 1}={p}" for i, p in enumerate(peers))
        nodes = []
        procs = []
        for i in range(3):
            n = Node.__new__(Node)
            n.api, n.kafka = free_port(), free_port()
            n.args = [strata, "server", "--listen", f"127.0.0.1:{n.api}",
                      "--kafka-listen", f"127.0.0.1:{n.kafka}",
                      "--data-dir", os.path.join(root, f"node{i + 1}"),
                      "--node-id", str(i + 1), "--peer-listen", peers[i], "--bootstrap", boot,
                      "--object-store", f"file://{bucket}"]
            env, stderr = node_output(os.path.join(root, f"node{i + 1}"))
            n.proc = subprocess.Popen(n.args, stdout=subprocess.PIPE, stderr=stderr,
                                      env=env, text=True)
            procs.append(n)
        for n in procs:
            for line in n.proc.stdout:
                if line.startswith("strata listening on"):
                    break
            nodes.append(n)
        cluster = nodes
        wait_brokers(nodes[0], 3)
        if not a.failover_only:
            rf3 = kcat_throughput(nodes, "rf3", a.duration, a.warmup)
            log(f"RF3: {rf3['mb_per_s']:.1f} MB/s")

            # Latency on one partition, the client talking to its leader (no
            # forwarding), at 50 % of that partition's own maximum with RF3; the
            # same rate on the single node.
            create_topic(nodes[0], "lat3", partitions=1)
            time.sleep(2)
            lead = nodes[leader_of(nodes[0], "lat3", 0) - 1]
            top = bench_latency(strata, lead, "lat3", None, a.duration, a.warmup, partitions=1)
            rate = round(0.5 * top["records_per_s"])
            log(f"one partition, RF3 maximum {top['records_per_s']:.0f} records/s; latency at {rate}/s")
            rf3_lat = bench_latency(strata, lead, "lat3", rate, a.duration, a.warmup, partitions=1)
            single_lat = bench_latency(strata, single, "lat1", rate, a.duration, a.warmup, partitions=1)

        create_topic(nodes[0], "failover")
        time.sleep(2)
        kills = []
        for _ in range(a.kills):
            leader, took = failover(nodes, "failover")
            log(f"failover: killed node {leader}, first acknowledged append after {took:.2f} s")
            kills.append((leader, took))
            wait_brokers(nodes[0], 3)
            time.sleep(3)

        if not a.failover_only:
            ratio = rf3["mb_per_s"] / (rf1["mb_per_s"] / 3)
            print("| measure | single node (RF1) | 3 nodes (RF3, acks=all) |")
            print("|---|---|---|")
            print(f"| kcat W1 throughput | {rf1['mb_per_s']:.1f} MB/s | {rf3['mb_per_s']:.1f} MB/s |")
            print(f"| broker CPU (all brokers) | {rf1['cpu_s_per_gb']:.2f} CPU-s/GB | {rf3['cpu_s_per_gb']:.2f} CPU-s/GB |")
            for name, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms"), ("max", "max_ms")):
                print(f"| produce {name}, 1 partition at {rate} records/s (gRPC to the leader) | "
                      f"{single_lat.get(key, float('nan')):.2f} ms | {rf3_lat.get(key, float('nan')):.2f} ms |")
            print()
            verdict = "PASS" if ratio >= 0.8 else "FAIL"
            print(f"RF3 / (RF1 / 3) = {ratio:.2f} (goal >= 0.8: {verdict})")
        worst = max(t for _, t in kills)
        print("failover (SIGKILL of the leader to the first acknowledged append): "
              + ", ".join(f"{t:.2f} s (node {n})" for n, t in kills)
              + f" (goal < 3 s: {'PASS' if worst < 3 else 'FAIL'})")
    finally:
        for n in [single, *cluster]:
            if n is not None:
                n.stop()
        if os.environ.get("STRATA_BENCH_LOG"):
            log(f"node logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
