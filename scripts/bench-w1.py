#!/usr/bin/env python3
"""The measuring half of scripts/bench-w1.sh: fio, W1, W2 and the markdown report.

Started by bench-w1.sh with a running server (its URL and PID); this helper never
starts or stops the server. Progress goes to stderr, the report to stdout.
"""

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone

PARTITIONS = 16
RECORD_SIZE = 1024
TICKS = os.sysconf("SC_CLK_TCK")  # = `getconf CLK_TCK`

GOAL_DISK_RATIO = 0.35  # durable produce MB/s >= 35 % of fio's 256 KiB MB/s
GOAL_CPU_PER_GB = 1.5  # broker CPU-seconds per GB produced
GOAL_P99_MS = 5.0  # produce p99 at 50 % of W1's max rate


def log(msg):
    print(f"[bench-w1 {datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def env(name, default):
    return os.environ.get(name, default)


def seconds(text):
    """`20s`, `1500ms`, `1m`, `2` (seconds) -> float seconds."""
    t = text.strip()
    for suffix, scale in (("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * scale
    return float(t)


def sh(cmd):
    """The first line of a command's output, or '?'."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except Exception:  # noqa: BLE001 - informational only
        return "?"


# ---------------------------------------------------------------- sampling


def proc_cpu_s(pid):
    """utime + stime of a process (fields 14 and 15 of /proc/PID/stat), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # fields[0] is field 3 (state)
    return (int(fields[11]) + int(fields[12])) / TICKS


def metrics(server):
    """The server's Prometheus counters, summed over labels."""
    out = {}
    with urllib.request.urlopen(server + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                pass
    return out


def sample(server, server_pid, bench_pid):
    return {
        "t": time.monotonic(),
        "server_cpu": proc_cpu_s(server_pid),
        "bench_cpu": proc_cpu_s(bench_pid),
        "m": metrics(server),
    }


def window(a, b):
    """What the server did between two samples."""
    if a is None or b is None:
        return None
    dm = lambda k: b["m"].get(k, 0.0) - a["m"].get(k, 0.0)  # noqa: E731
    w = {
        "seconds": b["t"] - a["t"],
        "server_cpu_s": b["server_cpu"] - a["server_cpu"],
        "bench_cpu_s": (b["bench_cpu"] - a["bench_cpu"])
        if a["bench_cpu"] is not None and b["bench_cpu"] is not None
        else None,
        "produced_bytes": dm("strata_broker_produced_bytes_total"),
        "produced_records": dm("strata_broker_produced_records_total"),
        "read_bytes": dm("strata_broker_read_bytes_total"),
        "fsyncs": dm("strata_log_fsync_seconds_count"),
        "fsync_s": dm("strata_log_fsync_seconds_sum"),
        "commits": dm("strata_log_commit_bytes_count"),
        "commit_bytes": dm("strata_log_commit_bytes_sum"),
    }
    return w


# ---------------------------------------------------------------- runs


def fio(directory, runtime, fresh=False):
    """targets.md's fio command (a 512 MiB file written over and over), or with
    `fresh` the same writes of new data only (a file larger than the run can
    fill), which is what a log does: on thin-provisioned disks the two differ."""
    path = os.path.join(directory, "fio.test")
    shape = ["--size=16g", "--fallocate=none"] if fresh else ["--size=512m", "--time_based"]
    cmd = [
        "fio", "--name=w", f"--filename={path}", *shape, "--rw=write", "--bs=256k",
        "--ioengine=sync", "--fdatasync=1", f"--runtime={runtime}",
        "--output-format=terse,json", "--terse-version=3",
    ]
    log(f"fio: {runtime} s of 256 KiB writes + fdatasync in {directory} ({'fresh data' if fresh else 'overwrite'})")
    try:
        out = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=runtime + 120, check=True,
        ).stdout
    finally:
        try:
            os.remove(path)
        except OSError:
            pass
    terse = next(line for line in out.splitlines() if line.startswith("3;"))
    kib_s = float(terse.split(";")[47])  # field 48: write bandwidth, KiB/s
    result = {"cmd": cmd, "kib_s": kib_s, "mb_s": kib_s * 1024 / 1e6, "sync": None}
    try:
        doc = json.loads(out[out.index("{") :])
        job = doc["jobs"][0]
        lat = job["sync"]["lat_ns"]
        pct = lat.get("percentile", {})
        pick = lambda p: next(  # noqa: E731
            (v / 1e6 for k, v in pct.items() if abs(float(k) - p) < 1e-6), None
        )
        result["sync"] = {
            "n": lat.get("N"),
            "p50": pick(50.0), "p99": pick(99.0), "p999": pick(99.9),
            "max": lat["max"] / 1e6, "mean": lat["mean"] / 1e6,
        }
        result["iops"] = job["write"]["iops"]
    except (ValueError, KeyError, IndexError, StopIteration):
        pass
    return result


def bench(a, topic, duration, warmup, rate=None):
    """One `strata bench e2e` run, with the server sampled over its measured window."""
    cmd = [
        a.strata, "bench", "e2e", "--server", a.server, "--topic", topic,
        "--partitions", str(PARTITIONS), "--record-size", str(RECORD_SIZE),
        "--producers", "1", "--consumers", "1",
        "--duration", duration, "--warmup", warmup,
        "--acks", env("BENCH_ACKS", "fsync"), "--output", "json",
    ]
    if rate is not None:
        cmd += ["--rate", f"{rate:.0f}"]
    cmd += shlex.split(env("BENCH_EXTRA_ARGS", ""))
    d, w = seconds(duration), seconds(warmup)
    # Sample inside the bench's measured window, a margin off each end (the bench's
    # clock starts once it has connected and found or created the topic).
    margin = min(0.5, d / 10)
    log("run: " + shlex.join(cmd))
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    s0 = s1 = None
    try:
        def until(t):
            while time.monotonic() < t and proc.poll() is None:
                time.sleep(min(0.05, max(0.0, t - time.monotonic())))
            return proc.poll() is None

        if until(start + w + margin):
            s0 = sample(a.server, a.server_pid, proc.pid)
            if until(start + w + d - margin):
                s1 = sample(a.server, a.server_pid, proc.pid)
        # e2e drains for up to 10 s after the producers stop.
        out, err = proc.communicate(timeout=max(0.0, start + w + d + 60 - time.monotonic()))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if err.strip():
        sys.stderr.write(err)
    if proc.returncode != 0:
        raise RuntimeError(f"bench failed (exit {proc.returncode}): {shlex.join(cmd)}")
    report = json.loads(next(l for l in reversed(out.splitlines()) if l.startswith("{")))
    report["cmd"] = cmd
    report["window"] = window(s0, s1)
    report["wall_s"] = time.monotonic() - start
    log(
        f"  {report['records_per_s']:.0f} records/s, {report['mb_per_s']:.2f} MB/s, "
        f"p99 {fmt(report.get('p99_ms'))} ms, e2e p99 {fmt(report.get('e2e_p99_ms'))} ms, "
        f"errors {report['errors']}"
    )
    return report


# ---------------------------------------------------------------- report


def fmt(x, digits=2):
    if x is None:
        return "–"
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def verdict(ok):
    return "**PASS**" if ok else "**FAIL**"


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": sh(["nproc"]),
        "cpu": model,
        "kernel": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "load": sh(["cat", "/proc/loadavg"]),
        "mem": sh(["sh", "-c", "free -m | awk '/^Mem:/ {print $2\" MiB total, \"$7\" MiB available\"}'"]),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--strata", required=True)
    p.add_argument("--server", required=True)
    p.add_argument("--server-pid", required=True, type=int)
    p.add_argument("--dir", required=True)
    p.add_argument("--data-dir", required=True)
    a = p.parse_args()
    # SIGTERM (from bench-w1.sh's trap or timeout) unwinds, so a running bench is killed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.monotonic()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    m_before = machine()
    w1_d, w1_w = env("BENCH_DURATION", "20s"), env("BENCH_WARMUP", "5s")
    w2_d, w2_w = env("W2_DURATION", "15s"), env("W2_WARMUP", "3s")
    percents = [float(x) for x in env("W2_PERCENTS", "10 25 50 75").split()]

    disk = fio(a.dir, int(env("FIO_RUNTIME", "10")))
    log(f"  fio: {disk['mb_s']:.1f} MB/s")
    fresh_disk = fio(a.dir, int(env("FIO_RUNTIME", "10")), fresh=True)
    log(f"  fio (fresh data): {fresh_disk['mb_s']:.1f} MB/s")

    log("W1: unthrottled, 1 producer, 1 tailing consumer")
    w1 = bench(a, "w1", w1_d, w1_w)
    max_rate = w1["records_per_s"]

    w2 = []
    for pct in percents:
        rate = max_rate * pct / 100
        if rate < 1:
            log(f"W2 {pct:g} %: W1's max rate is too low, skipped")
            continue
        log(f"W2 {pct:g} % of {max_rate:.0f} records/s")
        r = bench(a, f"w2-{pct:g}pct", w2_d, w2_w, rate=rate)
        r["pct"] = pct
        r["target_rate"] = rate
        w2.append(r)

    # ------------------------------------------------------------ the report
    out = []
    emit = out.append
    win = w1["window"]
    ratio = w1["mb_per_s"] / disk["mb_s"] if disk["mb_s"] else None
    cpu_per_gb = (
        win["server_cpu_s"] / (win["produced_bytes"] / 1e9)
        if win and win["produced_bytes"] > 0
        else None
    )
    at50 = next((r for r in w2 if abs(r["pct"] - 50) < 1e-9), None)

    emit(f"# Strata W1/W2 benchmark ({when})")
    emit("")
    emit("One release `strata server` on 127.0.0.1, its data directory on the same disk as "
         "the fio file, the load generator (`strata bench e2e`) on the same machine. "
         "On a shared 2-core machine absolute numbers drift; the ratios below are from "
         "this one run.")
    emit("")
    emit("## Machine")
    emit("")
    emit("| | |")
    emit("|---|---|")
    emit(f"| CPUs (nproc) | {m_before['nproc']} |")
    emit(f"| CPU model | {m_before['cpu']} |")
    emit(f"| kernel | {m_before['kernel']} |")
    emit(f"| memory | {m_before['mem']} |")
    emit(f"| load average at start | {m_before['load']} |")
    emit(f"| disk under test | `{a.dir}` ({sh(['sh', '-c', f'df -hT {shlex.quote(a.dir)} | tail -n1'])}) |")
    emit(f"| rustc | {sh(['rustc', '-V'])} |")
    emit(f"| fio | {sh(['fio', '--version'])} |")
    emit(f"| strata | {sh([a.strata, '--version'])} (`{a.strata}`) |")
    emit("")

    emit("## Disk: durable write bandwidth (fio)")
    emit("")
    emit("| write size | MB/s | MiB/s | writes/s | fdatasync p50 ms | p99 ms | p99.9 ms | max ms |")
    emit("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, d in (("256 KiB, fdatasync after each (targets.md: 512 MiB file overwritten)", disk),
                     ("256 KiB, fdatasync after each, fresh data only", fresh_disk)):
        s = d["sync"] or {}
        emit(f"| {label} | {d['mb_s']:.1f} | {d['kib_s'] / 1024:.1f} | "
             f"{fmt(d.get('iops'), 0)} | {fmt(s.get('p50'), 3)} | {fmt(s.get('p99'), 3)} | "
             f"{fmt(s.get('p999'), 3)} | {fmt(s.get('max'), 3)} |")
    emit("")

    emit("## W1: max durable throughput")
    emit("")
    emit(f"16 partitions, 1 KiB records, 1 producer (1 append session, batches of 16 records, "
         f"window 32 requests), 1 tailing consumer (1 connection, a read session per "
         f"partition), unthrottled, `--acks {env('BENCH_ACKS', 'fsync')}`, "
         f"{w1_w} warm-up + {w1_d} measured."
         + (f" Extra flags (BENCH_EXTRA_ARGS, override the above): `{env('BENCH_EXTRA_ARGS', '')}`."
            if env("BENCH_EXTRA_ARGS", "").strip() else ""))
    emit("")
    emit("| records/s | MB/s | % of fio 256 KiB | produce p50 ms | p99 ms | p99.9 ms | max ms "
         "| e2e p50 ms | e2e p99 ms | errors |")
    emit("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    emit(f"| {w1['records_per_s']:.0f} | {w1['mb_per_s']:.2f} | "
         f"{fmt(ratio * 100 if ratio is not None else None, 1)} % | {fmt(w1['p50_ms'], 3)} | "
         f"{fmt(w1['p99_ms'], 3)} | {fmt(w1['p999_ms'], 3)} | {fmt(w1['max_ms'], 3)} | "
         f"{fmt(w1.get('e2e_p50_ms'), 3)} | {fmt(w1.get('e2e_p99_ms'), 3)} | {w1['errors']} |")
    emit("")
    if win:
        gb = win["produced_bytes"] / 1e9
        emit(f"Broker cost over a {win['seconds']:.1f} s window inside the measured time "
             f"(server counters and `/proc/{a.server_pid}/stat` sampled together):")
        emit("")
        emit("| | |")
        emit("|---|---:|")
        emit(f"| broker CPU-seconds (utime+stime) | {win['server_cpu_s']:.2f} "
             f"({win['server_cpu_s'] / win['seconds']:.2f} cores) |")
        emit(f"| bytes produced (server counter) | {win['produced_bytes'] / 1e6:.1f} MB "
             f"({win['produced_bytes'] / 1e6 / win['seconds']:.2f} MB/s) |")
        emit(f"| bytes read by the consumer (server counter) | {win['read_bytes'] / 1e6:.1f} MB |")
        emit(f"| **broker CPU-seconds per GB produced** | **{fmt(cpu_per_gb, 2)}** |")
        if win["fsyncs"] > 0:
            emit(f"| journal fdatasyncs | {win['fsyncs']:.0f} "
                 f"({win['fsyncs'] / win['seconds']:.0f}/s, mean "
                 f"{win['fsync_s'] / win['fsyncs'] * 1e3:.2f} ms) |")
            emit(f"| journal bytes per fdatasync | {win['commit_bytes'] / win['fsyncs'] / 1024:.0f} KiB |")
        if win["commits"] > 0:
            emit(f"| journal bytes per commit (write) | {win['commit_bytes'] / win['commits'] / 1024:.0f} KiB |")
        emit(f"| load generator CPU-seconds | {fmt(win['bench_cpu_s'], 2)} |")
        emit("")
        emit("The broker's CPU covers everything it did in the window: taking in the "
             "produce stream, the journal writes and fdatasyncs, and serving the tailing "
             "consumer (W1 includes one). It is divided by the bytes of records the broker "
             "itself counted as produced in the same window (`strata_broker_produced_bytes_total`: "
             "keys, values and headers; the e2e bench adds an 8-byte timestamp header per "
             "record), so the warm-up, the consumer's drain and the bench's start-up are "
             "not counted. GB = 10^9 bytes; MB = 10^6 bytes.")
        if gb <= 0:
            emit("")
            emit("Nothing was produced in the window: no CPU per GB.")
    else:
        emit("The bench ended before its measured window could be sampled: no CPU figures.")
    emit("")

    emit("## W2: latency under load")
    emit("")
    emit(f"W1's shape at a constant rate (latency from each request's due time, so no "
         f"coordinated omission), {w2_w} warm-up + {w2_d} measured each. Max rate from W1: "
         f"{max_rate:.0f} records/s.")
    emit("")
    emit("| % of max | target records/s | achieved records/s | MB/s | produce p50 ms | p99 ms "
         "| p99.9 ms | max ms | e2e p50 ms | e2e p99 ms | e2e p99.9 ms | e2e max ms "
         "| broker cores | errors |")
    emit("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in w2:
        rw = r["window"]
        cores = rw["server_cpu_s"] / rw["seconds"] if rw else None
        emit(f"| {r['pct']:g} % | {r['target_rate']:.0f} | {r['records_per_s']:.0f} | "
             f"{r['mb_per_s']:.2f} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} | "
             f"{fmt(r['p999_ms'], 3)} | {fmt(r['max_ms'], 3)} | {fmt(r.get('e2e_p50_ms'), 3)} | "
             f"{fmt(r.get('e2e_p99_ms'), 3)} | {fmt(r.get('e2e_p999_ms'), 3)} | "
             f"{fmt(r.get('e2e_max_ms'), 3)} | {fmt(cores, 2)} | {r['errors']} |")
    emit("")

    emit("## Goals")
    emit("")
    emit("| goal | measured | result |")
    emit("|---|---:|---|")
    emit(f"| durable produce throughput ≥ {GOAL_DISK_RATIO:.0%} of fio's 256 KiB bandwidth | "
         f"{w1['mb_per_s']:.2f} / {disk['mb_s']:.1f} MB/s = {fmt(ratio * 100 if ratio is not None else None, 1)} % | "
         f"{verdict(ratio is not None and ratio >= GOAL_DISK_RATIO)} |")
    fresh_ratio = w1["mb_per_s"] / fresh_disk["mb_s"] if fresh_disk["mb_s"] else None
    emit(f"| (for reference: against fio on fresh data) | "
         f"{w1['mb_per_s']:.2f} / {fresh_disk['mb_s']:.1f} MB/s = "
         f"{fmt(fresh_ratio * 100 if fresh_ratio is not None else None, 1)} % | |")
    emit(f"| broker CPU ≤ {GOAL_CPU_PER_GB} CPU-seconds per GB produced | "
         f"{fmt(cpu_per_gb, 2)} CPU-s/GB | "
         f"{verdict(cpu_per_gb is not None and cpu_per_gb <= GOAL_CPU_PER_GB)} |")
    p99_50 = at50["p99_ms"] if at50 else None
    emit(f"| produce p99 ≤ {GOAL_P99_MS:g} ms at 50 % of the max rate | "
         f"{fmt(p99_50, 3)} ms | "
         f"{verdict(p99_50 is not None and p99_50 <= GOAL_P99_MS) if at50 else 'not run'} |")
    emit("")
    problems = []
    for r in [w1] + w2:
        name = "W1" if r is w1 else f"W2 {r['pct']:g} %"
        if r["errors"]:
            problems.append(f"{name}: {r['errors']} errors")
        if r.get("consumed") is not None and r["records"] and r["consumed"] < r["records"]:
            problems.append(f"{name}: consumer saw {r['consumed']} of {r['records']} measured records")
        if r is not w1 and r["records_per_s"] < 0.95 * r["target_rate"]:
            problems.append(f"{name}: achieved {r['records_per_s']:.0f} of {r['target_rate']:.0f} records/s")
    if problems:
        emit("Warnings: " + "; ".join(problems) + ".")
        emit("")
    emit(f"Load average at the end: {sh(['cat', '/proc/loadavg'])}. "
         f"Measuring took {time.monotonic() - started:.0f} s.")
    emit("")

    emit("## Commands")
    emit("")
    emit("```sh")
    emit("cargo build --release -p strata")
    emit(shlex.join(disk["cmd"]) + " </dev/null   # field 48 of the terse line: write KiB/s; sync latencies from the JSON")
    emit(shlex.join([a.strata, "server", "--listen", "127.0.0.1:0", "--data-dir", a.data_dir])
         + f"   # listened on {a.server}")
    emit(shlex.join(w1["cmd"]))
    for r in w2:
        emit(shlex.join(r["cmd"]))
    emit("```")
    emit("")
    emit("Broker CPU: utime+stime (fields 14, 15 of `/proc/PID/stat`, in `getconf CLK_TCK` "
         f"= {TICKS} ticks/s) and the server's `/metrics` counters, sampled "
         "0.5 s after the warm-up ends and 0.5 s before the measured time ends.")
    print("\n".join(out))


if __name__ == "__main__":
    main()
