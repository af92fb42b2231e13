#!/usr/bin/env python3
"""W6 of ../shared/brief/targets.md: tiered storage with latency injected in
front of a real S3-compatible server, in one run, markdown report on stdout.

1. moto_server (pip `moto[server]`, installed by scripts/test.sh) on loopback,
   behind a TCP proxy that delays every chunk by LATENCY_MS (default 100 ms,
   each direction), so every object-store call pays a WAN-like round trip.
   Both run at `nice 19`: they stand in for a remote service, and on this
   2-core machine they would otherwise take CPU from the broker.
2. Produce p99 at a constant rate (`strata bench produce --rate`), once with
   offload running (4 MiB segments, uploads going on all the time) and once with
   offload held back (one pass an hour): the ratio of the two p99s.
3. Offload lag while producing unthrottled (W1 shape): the largest
   `strata_tier_offload_lag_bytes` / `_seconds` sampled every 0.5 s.
4. A cold catch-up read of READ_MIB (1024) MiB from offset 0 over the Kafka
   port (kcat, i.e. librdkafka), first while the data is on local disk, then
   after it was offloaded and released and the server restarted (nothing cached):
   the ratio of the two read throughputs.

Usage: scripts/bench-tier.py [--strata target/release/strata]   (build it first)
Environment: LATENCY_MS [100], RATE [20000] records/s, DURATION [20] s, READ_MIB [1024].
Only loopback is used; every process started here is stopped at the end.
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone

LATENCY_MS = float(os.environ.get("LATENCY_MS", "100"))
RATE = int(os.environ.get("RATE", "20000"))
DURATION = int(os.environ.get("DURATION", "20"))
READ_MIB = int(os.environ.get("READ_MIB", "1024"))
BUCKET = "strata-bench"


def log(msg):
    print(f"[bench-tier {datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------ latency proxy

def start_proxy(target_port, delay_s):
    """Runs `proxy` in a child process at the lowest CPU priority (like moto:
    both stand in for a remote service and must not take CPU from the broker
    on this shared machine); returns its port."""
    port = free_port()
    proc = Proc(["nice", "-n", "19", sys.executable, os.path.abspath(__file__), "--proxy",
                 str(port), str(target_port), str(delay_s)])
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return port, proc
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the latency proxy did not start")


def proxy(port, target_port, delay_s):
    """A TCP proxy on loopback delaying each chunk by `delay_s`, per direction,
    without limiting throughput (chunks are released in order at arrival + delay)."""
    loop = asyncio.new_event_loop()

    async def pipe(reader, writer):
        queue = asyncio.Queue()

        async def release():
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        releaser = loop.create_task(release())
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                await queue.put((loop.time() + delay_s, data))
        except (ConnectionError, OSError):
            pass
        await queue.put((0, None))
        await releaser

    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w),
                             return_exceptions=True)

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    loop.run_until_complete(main())


# ------------------------------------------------------------ processes

class Proc:
    def __init__(self, cmd, env=None, stdout=subprocess.DEVNULL):
        self.p = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.DEVNULL,
                                  start_new_session=True)

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


def start_moto():
    port = free_port()
    moto = Proc(["nice", "-n", "19", sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                 "-p", str(port)])
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            break
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/{BUCKET}", method="PUT")
    urllib.request.urlopen(req, timeout=10)
    return moto, port


class Server:
    def __init__(self, strata, data, s3_port, extra):
        self.env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                        AWS_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}",
                        AWS_ALLOW_HTTP="true", RUST_LOG="warn")
        self.strata, self.data, self.extra = strata, data, extra
        self.http = free_port()
        self.kafka = free_port()
        cmd = [strata, "server", "--listen", f"127.0.0.1:{self.http}",
               "--kafka-listen", f"127.0.0.1:{self.kafka}", "--data-dir", data,
               "--object-store", f"s3://{BUCKET}/w6", *extra]
        self.proc = Proc(cmd, env=self.env)
        self.url = f"http://127.0.0.1:{self.http}"
        for _ in range(600):
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1)
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self):
        self.proc.stop()

    def json(self, path, body=None, method=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")

    def metric(self, name):
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as r:
            total = 0.0
            for line in r.read().decode().splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    total += float(line.rsplit(" ", 1)[1])
            return total


def create_topic(server, name, partitions, config):
    server.json("/v1/tenants/default/topics",
                {"name": name, "partitions": partitions, "config": config}, "POST")


def bench_produce(server, topic, rate, duration):
    cmd = [server.strata, "bench", "produce", "--server", server.url, "--topic", topic,
           "--partitions", "16", "--record-size", "1024", "--producers", "1",
           "--duration", f"{duration}s", "--warmup", "3s", "--acks", "fsync", "--output", "json"]
    if rate:
        cmd += ["--rate", str(rate)]
    lag = {"bytes": 0.0, "seconds": 0.0}
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                lag["bytes"] = max(lag["bytes"], server.metric("strata_tier_offload_lag_bytes"))
                lag["seconds"] = max(lag["seconds"], server.metric("strata_tier_offload_lag_seconds"))
            except Exception:  # noqa: BLE001 - sampling only
                pass
            done.wait(0.5)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    log("run: " + " ".join(cmd))
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120, check=True).stdout
    done.set()
    t.join()
    report = json.loads(next(l for l in reversed(out.splitlines()) if l.startswith("{")))
    report["cmd"] = cmd
    report["max_lag"] = lag
    return report


def kcat_read(server, topic, expect_records):
    cmd = ["kcat", "-b", f"127.0.0.1:{server.kafka}", "-C", "-t", topic, "-o", "beginning",
           "-e", "-q", "-f", ".", "-X", "fetch.max.bytes=52428800",
           "-X", "max.partition.fetch.bytes=8388608"]
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, timeout=1800, check=True).stdout
    elapsed = time.monotonic() - start
    if len(out) != expect_records:
        raise RuntimeError(f"read {len(out)} records, expected {expect_records}")
    return elapsed, cmd


def wait_for(pred, what, timeout=1800):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.5)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--proxy":
        proxy(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--strata", default="target/release/strata")
    a = p.parse_args()
    strata = os.path.abspath(a.strata)
    for tool in ("kcat",):
        if not shutil.which(tool):
            sys.exit(f"error: {tool} is missing (scripts/test.sh installs it)")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    procs = []
    work = tempfile.mkdtemp(prefix="bench-tier-", dir=os.environ.get("BENCH_DIR", "target"))
    try:
        moto, moto_port = start_moto()
        procs.append(moto)
        proxy_port, proxy_proc = start_proxy(moto_port, LATENCY_MS / 1000)
        procs.append(proxy_proc)
        log(f"moto on {moto_port}, {LATENCY_MS:g} ms each way through the proxy on {proxy_port}")
        small = {"segment_bytes": 4 << 20, "local_retention_ms": 0, "local_retention_bytes": 0}

        results = {}
        for mode, extra in (("offload held back", ["--offload-interval", "1h"]),
                            ("offload running", ["--offload-interval", "200ms"])):
            data = os.path.join(work, mode.replace(" ", "-"))
            server = Server(strata, data, proxy_port, extra)
            procs.append(server)
            create_topic(server, "w6", 16, small)
            results[mode] = bench_produce(server, "w6", RATE, DURATION)
            log(f"  {mode}: p99 {results[mode]['p99_ms']:.2f} ms, max lag {results[mode]['max_lag']}")
            if mode == "offload running":
                create_topic(server, "w6-max", 16, small)
                results["w1"] = bench_produce(server, "w6-max", None, DURATION)
                log(f"  unthrottled: {results['w1']['mb_per_s']:.1f} MB/s, max lag {results['w1']['max_lag']}")
            server.stop()
            procs.remove(server)

        # Cold catch-up read.
        data = os.path.join(work, "read")
        server = Server(strata, data, proxy_port, ["--offload-interval", "1h"])
        procs.append(server)
        create_topic(server, "cold", 4, {"segment_bytes": 64 << 20, "segment_ms": 1000,
                                         "local_retention_ms": 0, "local_retention_bytes": 0})
        records = READ_MIB * 1024
        line = (b"y" * 1023) + b"\n"
        log(f"producing {READ_MIB} MiB with kcat")
        prod = subprocess.Popen(["kcat", "-b", f"127.0.0.1:{server.kafka}", "-P", "-t", "cold",
                                 "-X", "acks=all", "-X", "linger.ms=5", "-X", "batch.size=1000000"],
                                stdin=subprocess.PIPE)
        block = line * 1024
        for _ in range(records // 1024):
            prod.stdin.write(block)
        prod.stdin.close()
        prod.wait(timeout=600)
        local_s, read_cmd = kcat_read(server, "cold", records)
        log(f"  local read: {local_s:.2f} s")
        server.stop()
        procs.remove(server)
        # Offload everything (idle segments seal after 1 s), release it locally.
        server = Server(strata, data, proxy_port, ["--offload-interval", "200ms"])
        procs.append(server)

        def offloaded():
            d = server.json("/v1/tenants/default/topics/cold")
            return all(x["remote_end_offset"] == x["end_offset"] and x["local_bytes"] == 0
                       for x in d["partition_info"])
        log("waiting for the upload of everything")
        started = time.monotonic()
        wait_for(offloaded, "the offload")
        upload_s = time.monotonic() - started
        server.stop()
        procs.remove(server)
        server = Server(strata, data, proxy_port, ["--offload-interval", "1h"])
        procs.append(server)
        before = server.metric("strata_tier_read_bytes_total")
        remote_s, _ = kcat_read(server, "cold", records)
        from_bucket = server.metric("strata_tier_read_bytes_total") - before
        log(f"  cold read from the bucket: {remote_s:.2f} s ({from_bucket / 1e6:.0f} MB served from objects)")
        server.stop()
        procs.remove(server)
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(work, ignore_errors=True)

    held, running, w1 = results["offload held back"], results["offload running"], results["w1"]
    p99_ratio = running["p99_ms"] / held["p99_ms"] if held["p99_ms"] else None
    mib = READ_MIB * 1024 * 1024 / 1e6
    local_mb_s, remote_mb_s = mib / local_s, mib / remote_s
    read_ratio = remote_mb_s / local_mb_s
    out = [f"# W6 tiered storage ({when})", "",
           f"moto_server behind a loopback proxy adding {LATENCY_MS:g} ms each way to every "
           f"object-store call; release server; 16 partitions of 1 KiB records, 4 MiB segments "
           f"released from local disk as soon as they are in the bucket.", "",
           "| run | records/s | p50 ms | p99 ms | p99.9 ms | max offload lag | max lag age |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in (("constant rate, offload held back", held),
                    ("constant rate, offload running", running),
                    ("unthrottled (W1 shape), offload running", w1)):
        out.append(f"| {name} | {r['records_per_s']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                   f"{r['p999_ms']:.2f} | {r['max_lag']['bytes'] / 1e6:.1f} MB | {r['max_lag']['seconds']:.1f} s |")
    out += ["", "| catch-up read of the same data (kcat, from offset 0) | MB/s | seconds |",
            "|---|---:|---:|",
            f"| from local disk | {local_mb_s:.1f} | {local_s:.2f} |",
            f"| from the bucket, cold (after restart, nothing cached) | {remote_mb_s:.1f} | {remote_s:.2f} |",
            "", f"Uploading the {READ_MIB} MiB took {upload_s:.1f} s.", "",
            "| goal | measured | result |", "|---|---:|---|",
            f"| produce p99 with offload ≤ 1.2 × without | {p99_ratio:.2f} × | "
            f"{'**PASS**' if p99_ratio is not None and p99_ratio <= 1.2 else '**FAIL**'} |",
            f"| cold catch-up ≥ 50 % of the local read | {read_ratio * 100:.0f} % | "
            f"{'**PASS**' if read_ratio >= 0.5 else '**FAIL**'} |",
            f"| offload lag bounded under unthrottled load | max {w1['max_lag']['bytes'] / 1e6:.1f} MB, "
            f"{w1['max_lag']['seconds']:.1f} s | reported |", "",
            "```sh", " ".join(held["cmd"]), " ".join(read_cmd), "```"]
    print("\n".join(out))


if __name__ == "__main__":
    main()
