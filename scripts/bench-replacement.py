#!/usr/bin/env python3
"""Broker replacement of issue 7: a broker holding a partition's whole history
(mostly in the bucket) is replaced, at two history sizes, in one run.

For each size: a 3-node cluster on loopback shares one bucket (a local
directory); a topic of 4 partitions, replication factor 3, 64 MiB segments
and 64 MiB of local retention per partition, takes SIZE of 1 KiB records
from an unthrottled librdkafka producer (`kcat -P`, acks=all); once the
bucket holds all sealed segments, node 3 is killed (SIGKILL), removed from
the cluster (`DELETE /v1/cluster/nodes/3`), and an empty node 4 joins. The
measure is the time from node 4's start to node 4 being an in-sync replica
of every partition, as the metadata leader's status says, and the bytes it
copied (its data directory). Goal: a time that does not grow with the
history size.

Usage: scripts/bench-replacement.py [--sizes-gib 1,10] [--dir DIR]
Needs target/release/strata (cargo build --release -p strata) and kcat.
Everything runs on 127.0.0.1 with ephemeral ports and is stopped at the end.
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import tempfile
import time

_spec = importlib.util.spec_from_file_location(
    "bench_replication", os.path.join(os.path.dirname(__file__), "bench-replication.py"))
br = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(br)

PARTITIONS = 4
SEGMENT = 64 * 1024 * 1024
TOPIC = "history"


def log(msg):
    br.log(msg)


def spawn_node(strata, root, bucket, node_id, peers, join=None):
    """Starts a node's process; `wait_listening` waits for it (a founding node
    listens only once the founders form a quorum, so all are spawned first)."""
    n = br.Node.__new__(br.Node)
    n.api, n.kafka = br.free_port(), br.free_port()
    n.node_id = node_id
    n.data = os.path.join(root, f"node{node_id}")
    n.args = [strata, "server", "--listen", f"127.0.0.1:{n.api}",
              "--kafka-listen", f"127.0.0.1:{n.kafka}", "--data-dir", n.data,
              "--node-id", str(node_id), "--peer-listen", peers[node_id],
              "--object-store", f"file://{bucket}"]
    if join is None:
        n.args += ["--bootstrap", ",".join(f"{i}={peers[i]}" for i in sorted(peers) if i <= 3)]
    else:
        n.args += ["--join", join]
    n.proc = subprocess.Popen(n.args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              env=dict(os.environ, RUST_LOG="error"), text=True)
    return n


def wait_listening(n):
    for line in n.proc.stdout:
        if line.startswith("strata listening on"):
            return n
    raise RuntimeError(f"node {n.node_id} did not start")


def du(path):
    """Bytes allocated on disk (journal files are preallocated sparsely)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def describe(node):
    _, d = br.http("GET", f"{node.url}/v1/tenants/default/topics/{TOPIC}", timeout=30)
    return d["partition_info"]


def produce(nodes, size):
    """Unthrottled kcat until the topic's end offsets sum to `size` bytes of records."""
    brokers = ",".join(f"127.0.0.1:{n.kafka}" for n in nodes)
    producer = subprocess.Popen(
        ["kcat", "-P", "-b", brokers, "-t", TOPIC, "-q", "-X", "acks=all",
         "-X", "linger.ms=5", "-X", "batch.size=1048576",
         "-X", "queue.buffering.max.kbytes=262144",
         # Each record to a random partition, so the partitions fill evenly.
         "-X", "sticky.partitioning.linger.ms=0"],
        stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = (b"x" * (br.RECORD - 1)) + b"\n"
    chunk = line * 1024
    target = size // br.RECORD
    started = time.monotonic()
    written = 0
    try:
        while written < target:
            producer.stdin.write(chunk)
            written += 1024
        producer.stdin.close()
        producer.wait(timeout=600)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if sum(p["end_offset"] for p in describe(nodes[0])) >= target:
            break
        time.sleep(1)
    took = time.monotonic() - started
    log(f"  produced {size / 2**30:.2f} GiB in {took:.0f} s")


def wait_offloaded(node, segment, deadline_s=900):
    """Until nothing waits for upload and each partition keeps only its tail
    locally (the active segment and at most one sealed one)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        parts = describe(node)
        lag = sum(p["offload_lag_bytes"] for p in parts)
        if lag == 0 and all(p["local_bytes"] <= 2 * segment for p in parts):
            return parts
        time.sleep(2)
    raise RuntimeError("the bucket did not catch up")


def in_sync_everywhere(node, node_id):
    _, status = br.http("GET", f"{node.url}/v1/cluster", timeout=10)
    mine = [p for p in status["partitions"] if p["partition"].startswith(f"default/{TOPIC}/")]
    return len(mine) == PARTITIONS and all(node_id in p.get("isr", []) for p in mine)


def one_size(strata, root, size, segment):
    bucket = os.path.join(root, "bucket")
    peers = {i: f"127.0.0.1:{br.free_port()}" for i in (1, 2, 3, 4)}
    nodes = []
    try:
        founders = [spawn_node(strata, root, bucket, i, peers) for i in (1, 2, 3)]
        nodes.extend(founders)
        for n in founders:
            wait_listening(n)
        br.wait_brokers(nodes[0], 3)
        log("  cluster of 3 up")
        status, _ = br.http("POST", f"{nodes[0].url}/v1/tenants/default/topics", {
            "name": TOPIC, "partitions": PARTITIONS, "replication_factor": 3,
            "config": {"segment_bytes": segment, "local_retention_bytes": segment,
                       "retention_ms": -1, "retention_bytes": -1}}, timeout=30)
        assert status == 201, status
        time.sleep(2)
        produce(nodes, size)
        parts = wait_offloaded(nodes[0], segment)
        remote = sum(p["remote_bytes"] for p in parts)
        local = sum(p["local_bytes"] for p in parts)
        log(f"  bucket {remote / 2**30:.2f} GiB, leader's local tail {local / 2**20:.0f} MiB")

        victim = nodes[2]
        victim.kill()
        status, _ = br.http("DELETE", f"{nodes[0].url}/v1/cluster/nodes/3", timeout=30)
        assert status in (200, 204), status
        started = time.monotonic()
        new = spawn_node(strata, root, bucket, 4, peers, join=peers[1])
        nodes.append(new)
        wait_listening(new)
        deadline = started + 300
        while time.monotonic() < deadline and not in_sync_everywhere(nodes[0], 4):
            time.sleep(0.1)
        took = time.monotonic() - started
        if not in_sync_everywhere(nodes[0], 4):
            took = float("inf")
        copied = du(os.path.join(new.data))
        log(f"  node 4 in sync on all {PARTITIONS} partitions after {took:.1f} s, "
            f"data directory {copied / 2**20:.0f} MiB")
        return {"history_gib": size / 2**30, "remote_gib": remote / 2**30, "seconds": took,
                "copied_mib": copied / 2**20}
    finally:
        for n in nodes:
            n.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="target/bench-replacement")
    ap.add_argument("--sizes-gib", default="1,10")
    ap.add_argument("--segment-mib", type=int, default=SEGMENT // 2**20,
                    help="segment size, also the local retention per partition")
    a = ap.parse_args()
    strata = os.path.abspath("target/release/strata")
    os.makedirs(a.dir, exist_ok=True)
    results = []
    for gib in (float(s) for s in a.sizes_gib.split(",")):
        root = os.path.abspath(tempfile.mkdtemp(dir=a.dir))
        try:
            log(f"history of {gib:g} GiB")
            results.append(one_size(strata, root, int(gib * 2**30), a.segment_mib * 2**20))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print("| history | in the bucket | node 4 in sync on every partition after | node 4 data directory |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['history_gib']:g} GiB | {r['remote_gib']:.2f} GiB | {r['seconds']:.1f} s | "
              f"{r['copied_mib']:.0f} MiB |")
    if len(results) >= 2:
        ratio = results[-1]["seconds"] / results[0]["seconds"]
        print(f"\ntime ratio, largest / smallest history: {ratio:.2f} "
              f"(history ratio {results[-1]['history_gib'] / results[0]['history_gib']:.0f})")


if __name__ == "__main__":
    main()
