#!/usr/bin/env python3
"""confluent-kafka (librdkafka) against Strata.

Scenarios:
  idempotent_producer  enable.idempotence with acks=all: every record delivered once,
                       offsets increasing in produce order, nothing duplicated
  group_leave          3 members over 6 partitions; one leaves (close()): the other two
                       take its partitions; every record consumed
  group_kill           3 members, one a subprocess killed with SIGKILL: after the session
                       timeout the other two take its partitions; every record consumed
  commit_resume        consume part, commit, close; a new consumer of the group resumes
                       at the committed offsets: no gap, no repeat (offsets also over HTTP)
  admin                AdminClient: create, list, describe configs, alter configs
                       (incremental and legacy), delete topics; errors for duplicates
  cross_door           records produced here read back over HTTP (and, by the Rust test,
                       gRPC); records produced over HTTP consumed here, byte for byte

Usage: confluent_test.py --bootstrap HOST:PORT --http http://HOST:PORT [scenario ...]
       confluent_test.py member BOOTSTRAP TOPIC GROUP   (the killable group member)
"""

import os
import subprocess
import sys
import threading
import time

from confluent_kafka import (
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from strata_common import (
    Mismatch,
    check,
    check_eq,
    check_http_matches,
    compare_records,
    emit_records,
    main,
    sample_records,
    unique,
    wait_until,
)

SESSION_TIMEOUT_MS = 6000


def consumer_config(ctx_bootstrap, group, **extra):
    conf = {
        "bootstrap.servers": ctx_bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
        "socket.timeout.ms": 10000,
    }
    conf.update(extra)
    return conf


def produce_all(producer, items, timeout=30):
    """Produces (topic, partition, key, value, headers, timestamp) tuples; returns the
    delivered messages' (partition, offset) in produce order. Fails on any delivery error."""
    results = [None] * len(items)

    def report(i):
        def cb(err, msg):
            results[i] = (err, msg.partition() if err is None else None, msg.offset() if err is None else None)

        return cb

    for i, (topic, partition, key, value, headers, ts) in enumerate(items):
        kwargs = {"key": key, "value": value, "headers": headers or None, "on_delivery": report(i)}
        if partition is not None:
            kwargs["partition"] = partition
        if ts is not None:
            kwargs["timestamp"] = ts
        for _ in range(1000):
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(timeout)
    check(left == 0, f"{left} records still undelivered after {timeout}s")
    errors = [(i, r[0]) for i, r in enumerate(results) if r is None or r[0] is not None]
    check(not errors, f"{len(errors)} records failed delivery, first: {errors[:3]}")
    return [(r[1], r[2]) for r in results]


def kafka_record(msg):
    ts_type, ts = msg.timestamp()
    return {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": msg.key(),
        "value": msg.value(),
        "headers": list(msg.headers() or []),
        "timestamp_ms": ts,
        "timestamp_type": ts_type,
    }


# --- idempotent producer ------------------------------------------------------


def idempotent_producer(ctx):
    topic = unique("ck-idem")
    ctx.http.create_topic(topic, 3)
    n = 3000
    producer = Producer(
        {
            "bootstrap.servers": ctx.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.num.messages": 200,
        }
    )
    items = [(topic, None, f"key-{i % 50}".encode(), f"value-{i}".encode(), None, None) for i in range(n)]
    delivered = produce_all(producer, items)
    per_part = {}
    for i, (p, o) in enumerate(delivered):
        per_part.setdefault(p, []).append((o, i))
    check_eq(sorted(per_part), [0, 1, 2], "partitions the keys went to")
    for p, pairs in per_part.items():
        offsets = [o for o, _ in pairs]
        # In produce order the offsets are exactly 0, 1, 2, ...: increasing, no gap, no duplicate.
        check_eq(offsets, list(range(len(offsets))), f"offsets of partition {p} in produce order")
        check_eq(ctx.http.end_offset(topic, p), len(offsets), f"HTTP end offset of partition {p}")
        stored = ctx.http.read_all(topic, p)
        want = [f"value-{i}".encode() for _, i in pairs]
        check_eq([r["value"] for r in stored], want, f"values of partition {p} over HTTP")


# --- consumer groups ----------------------------------------------------------


class Member(threading.Thread):
    """A group member polling in its own thread; tracks its assignment and records."""

    def __init__(self, bootstrap, topic, group, name):
        super().__init__(name=name, daemon=True)
        self.label = name
        self.topic = topic
        self.lock = threading.Lock()
        self.assigned = set()
        self.records = []  # (partition, offset, value)
        self.errors = []
        self.stop = threading.Event()
        self.closed = threading.Event()
        self.consumer = Consumer(consumer_config(bootstrap, group, **{"client.id": name}))

    def on_assign(self, consumer, partitions):
        with self.lock:
            self.assigned = {p.partition for p in partitions}

    def on_revoke(self, consumer, partitions):
        with self.lock:
            self.assigned -= {p.partition for p in partitions}

    def run(self):
        c = self.consumer
        try:
            c.subscribe([self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke, on_lost=self.on_revoke)
            while not self.stop.is_set():
                msg = c.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    with self.lock:
                        self.errors.append(str(msg.error()))
                    continue
                with self.lock:
                    self.records.append((msg.partition(), msg.offset(), msg.value()))
        except Exception as e:  # reported by the scenario
            with self.lock:
                self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            try:
                c.close()  # commits (auto commit) and leaves the group
            except Exception as e:
                with self.lock:
                    self.errors.append(f"close: {e}")
            self.closed.set()

    def leave(self, timeout=30):
        self.stop.set()
        self.join(timeout)
        check(self.closed.is_set(), f"{self.label}: close() did not return within {timeout}s")

    def snapshot(self):
        with self.lock:
            return set(self.assigned), list(self.records), list(self.errors)


class ProcessMember:
    """A group member in a subprocess (this program's `member` mode), so it can be SIGKILLed."""

    def __init__(self, bootstrap, topic, group):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "member", bootstrap, topic, group],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lock = threading.Lock()
        self.assigned = set()
        self.lines = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            with self.lock:
                self.lines.append(line)
                if line.startswith("ASSIGNED"):
                    parts = line.split(" ", 1)
                    self.assigned = {int(p) for p in parts[1].split(",")} if len(parts) > 1 and parts[1] else set()

    def snapshot(self):
        with self.lock:
            return set(self.assigned), list(self.lines[-10:])

    def kill(self):
        self.proc.kill()  # SIGKILL: no LeaveGroup, no commit
        self.proc.wait(10)


def member_main(bootstrap, topic, group):
    """The subprocess member: never commits, prints its assignments."""
    c = Consumer(consumer_config(bootstrap, group, **{"client.id": "killed-member", "enable.auto.commit": False}))

    def on_assign(consumer, partitions):
        print("ASSIGNED " + ",".join(str(p.partition) for p in partitions), flush=True)

    def on_revoke(consumer, partitions):
        print("ASSIGNED ", flush=True)

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    parent = os.getppid()
    deadline = time.monotonic() + 300  # never outlive the test
    while time.monotonic() < deadline and os.getppid() == parent:
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            print(f"RECORD {msg.partition()} {msg.offset()}", flush=True)


def produce_batch(ctx, topic, tag, per_partition=100, partitions=6):
    producer = Producer({"bootstrap.servers": ctx.bootstrap, "linger.ms": 5})
    items = [
        (topic, p, f"k{p}".encode(), f"{tag}-{p}-{i}".encode(), None, None)
        for p in range(partitions)
        for i in range(per_partition)
    ]
    produce_all(producer, items)
    return {v for (_, _, _, v, _, _) in items}


def create_topic_admin(ctx, topic, partitions):
    admin = AdminClient({"bootstrap.servers": ctx.bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)], operation_timeout=10)
    futures[topic].result(timeout=20)
    wait_until(
        lambda: topic in admin.list_topics(timeout=10).topics,
        10,
        f"{topic} to appear in metadata",
    )
    return admin


def wait_for_assignment(members, sizes, timeout, extra=None):
    """Waits until the live members' assignments have the given sizes and cover all 6 partitions once."""

    def state():
        out = {}
        for m in members:
            assigned = m.snapshot()[0]
            out[m.label if hasattr(m, "label") else "subprocess"] = sorted(assigned)
        return out

    def done():
        s = state()
        parts = [p for ps in s.values() for p in ps]
        return sorted(len(ps) for ps in s.values()) == sorted(sizes) and sorted(parts) == list(range(6))

    def describe():
        msg = f"assignment sizes {sizes} covering partitions 0..5; the members have {state()}"
        errors = [e for m in members if isinstance(m, Member) for e in m.snapshot()[2]]
        if errors:
            msg += f"; consumer errors: {errors[-5:]}"
        if extra:
            msg += extra()
        return msg

    wait_until(done, timeout, describe, interval=0.2)


def consumed_values(members):
    return {v for m in members for (_, _, v) in m.snapshot()[1]}


def wait_consumed(members, values, timeout, what):
    def describe():
        got = consumed_values(members)
        missing = values - got
        return f"{what}: {len(missing)} of {len(values)} records never consumed, e.g. {sorted(missing)[:5]}"

    wait_until(lambda: values <= consumed_values(members), timeout, describe, interval=0.2)


def group_leave(ctx):
    topic, group = unique("ck-leave"), unique("ck-group")
    create_topic_admin(ctx, topic, 6)
    members = [Member(ctx.bootstrap, topic, group, f"member-{i}") for i in range(3)]
    try:
        for m in members:
            m.start()
        wait_for_assignment(members, [2, 2, 2], 60)
        batch1 = produce_batch(ctx, topic, "before")
        wait_consumed(members, batch1, 60, "3 members")

        leaving = members.pop()
        leaving.leave()
        check(not leaving.snapshot()[2], f"the leaving member's errors: {leaving.snapshot()[2]}")
        # A LeaveGroup is immediate: well within the session timeout.
        started = time.monotonic()
        wait_for_assignment(members, [3, 3], 30)
        print(f"  rebalanced after close() in {time.monotonic() - started:.1f}s", flush=True)

        batch2 = produce_batch(ctx, topic, "after")
        wait_consumed(members, batch2, 60, "2 members after one left")
        every = consumed_values(members + [leaving])
        check(batch1 <= every, "records of the first batch were lost")
    finally:
        for m in members:
            m.leave()


def group_kill(ctx):
    topic, group = unique("ck-kill"), unique("ck-group")
    create_topic_admin(ctx, topic, 6)
    members = [Member(ctx.bootstrap, topic, group, f"member-{i}") for i in range(2)]
    victim = ProcessMember(ctx.bootstrap, topic, group)
    try:
        for m in members:
            m.start()
        wait_for_assignment(
            members + [victim],
            [2, 2, 2],
            60,
            extra=lambda: f"; the subprocess member printed {victim.snapshot()[1]}",
        )
        victim_parts = victim.snapshot()[0]
        batch1 = produce_batch(ctx, topic, "before")
        time.sleep(1)  # let the victim take some records (it never commits them)
        victim.kill()
        killed_at = time.monotonic()

        # No LeaveGroup: the coordinator notices after session.timeout.ms.
        wait_for_assignment(members, [3, 3], SESSION_TIMEOUT_MS / 1000 + 25)
        took = time.monotonic() - killed_at
        print(f"  partitions {sorted(victim_parts)} reassigned {took:.1f}s after SIGKILL", flush=True)
        # The victim committed nothing, so the survivors read its partitions from the start.
        wait_consumed(members, batch1, 60, "the 2 survivors (first batch, including the killed member's partitions)")
        batch2 = produce_batch(ctx, topic, "after")
        wait_consumed(members, batch2, 60, "the 2 survivors (second batch)")
    finally:
        if victim.proc.poll() is None:
            victim.kill()
        for m in members:
            m.leave()


# --- committed offsets ----------------------------------------------------------


def poll_records(consumer, count, timeout, what):
    """Polls until `count` records arrived (fails after `timeout` s); returns them."""
    out, errors = [], []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            errors.append(str(msg.error()))
            continue
        out.append(msg)
    check(len(out) >= count, f"{what}: got {len(out)} of {count} records in {timeout}s; errors: {errors[-5:]}")
    return out


def drain(consumer, seconds):
    """Whatever records arrive within `seconds`."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        msg = consumer.poll(0.2)
        if msg is not None and not msg.error():
            out.append(msg)
    return out


def commit_resume(ctx):
    topic, group = unique("ck-commit"), unique("ck-group")
    ctx.http.create_topic(topic, 3)
    produce_all(
        Producer({"bootstrap.servers": ctx.bootstrap}),
        [(topic, p, None, f"{p}-{i}".encode(), None, None) for p in range(3) for i in range(30)],
    )
    all_records = {(p, i) for p in range(3) for i in range(30)}

    first = Consumer(consumer_config(ctx.bootstrap, group, **{"enable.auto.commit": False, "max.poll.interval.ms": 60000}))
    first.subscribe([topic])
    part1 = poll_records(first, 40, 60, "first consumer")[:40]
    # Only the 40 returned records are committed; the next positions per partition:
    # Kafka semantics: the committed offset is the next record to read.
    committed = {}
    for m in part1:
        committed[m.partition()] = max(committed.get(m.partition(), 0), m.offset() + 1)
    result = first.commit(
        offsets=[TopicPartition(topic, p, o) for p, o in committed.items()], asynchronous=False
    )
    for tp in result:
        check(tp.error is None, f"commit of partition {tp.partition} failed: {tp.error}")
    seen1 = {(m.partition(), m.offset()) for m in part1}
    check_eq(len(seen1), 40, "distinct records the first consumer read")
    for p, o in committed.items():
        check_eq({x for (q, x) in seen1 if q == p}, set(range(o)), f"records of partition {p} the first consumer read")

    got = first.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)
    check_eq({tp.partition: tp.offset for tp in got if tp.offset >= 0}, committed, "committed offsets as the consumer fetches them")
    check_eq(
        {p: o for (t, p), o in ctx.http.group_offsets(group).items() if t == topic},
        committed,
        "committed offsets as HTTP reports them",
    )
    first.close()

    second = Consumer(consumer_config(ctx.bootstrap, group, **{"enable.auto.commit": False}))
    second.subscribe([topic])
    part2 = poll_records(second, 90 - 40, 60, "second consumer")
    extra = drain(second, 2.0)  # nothing more may come
    second.close()
    seen2 = [(m.partition(), m.offset()) for m in part2 + extra]
    repeats = sorted(set(seen2) & seen1)
    check(not repeats, f"the second consumer re-read committed records: {repeats[:10]}")
    dups = len(seen2) - len(set(seen2))
    check(dups == 0, f"the second consumer read {dups} records twice")
    check_eq(set(seen2), all_records - seen1, "records the second consumer read (all the uncommitted ones)")
    for p in range(3):
        offsets = [o for (q, o) in seen2 if q == p]
        check_eq(offsets[:1], [committed.get(p, 0)] if committed.get(p, 0) < 30 else [], f"first offset the second consumer read from partition {p}")


# --- admin --------------------------------------------------------------------


def describe_topic_config(admin, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    futures = admin.describe_configs([res], request_timeout=15)
    return {k: v.value for k, v in list(futures.values())[0].result(timeout=20).items()}


def expect_error(future, code, what):
    try:
        future.result(timeout=20)
    except KafkaException as e:
        err = e.args[0]
        check_eq(err.code(), code, f"{what}: error code (message {err.str()!r})")
        return
    raise Mismatch(f"{what}: succeeded, expected error {KafkaError(code).name()}")


def admin(ctx):
    topic = unique("ck-admin")
    admin = AdminClient({"bootstrap.servers": ctx.bootstrap})
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"})],
        operation_timeout=10,
    )
    fs[topic].result(timeout=20)
    md = wait_until(lambda: (m := admin.list_topics(timeout=10)).topics.get(topic) and m, 10, f"{topic} in list_topics")
    check_eq(sorted(md.topics[topic].partitions), [0, 1, 2], "partitions in list_topics")
    check(md.topics[topic].error is None, f"list_topics reports an error for {topic}: {md.topics[topic].error}")
    http_topic = ctx.http.topic(topic)
    check(http_topic is not None, f"{topic} created with AdminClient does not exist over HTTP")
    check_eq(http_topic["partitions"], 3, "partitions over HTTP")
    check_eq(http_topic["config"]["retention_ms"], 3600000, "retention_ms over HTTP")

    configs = describe_topic_config(admin, topic)
    check_eq(configs.get("retention.ms"), "3600000", "describe_configs retention.ms")
    check("cleanup.policy" in configs or "max.message.bytes" in configs, f"describe_configs lists few configs: {sorted(configs)}")

    res = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET)],
    )
    list(admin.incremental_alter_configs([res]).values())[0].result(timeout=20)
    check_eq(describe_topic_config(admin, topic).get("retention.ms"), "7200000", "retention.ms after incremental_alter_configs")
    check_eq(ctx.http.topic(topic)["config"]["retention_ms"], 7200000, "retention_ms over HTTP after incremental_alter_configs")

    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.ms": "10800000"})
    list(admin.alter_configs([res]).values())[0].result(timeout=20)
    check_eq(describe_topic_config(admin, topic).get("retention.ms"), "10800000", "retention.ms after alter_configs")

    fs = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], operation_timeout=10)
    expect_error(fs[topic], KafkaError.TOPIC_ALREADY_EXISTS, "creating an existing topic")

    admin.delete_topics([topic], operation_timeout=10)[topic].result(timeout=20)
    wait_until(lambda: topic not in admin.list_topics(timeout=10).topics, 10, f"{topic} to leave list_topics")
    check(ctx.http.topic(topic) is None, f"{topic} deleted with AdminClient still exists over HTTP")
    expect_error(
        admin.delete_topics([topic], operation_timeout=10)[topic],
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        "deleting a missing topic",
    )


# --- cross-door -----------------------------------------------------------------


def cross_door(ctx):
    topic = unique("ck-xdoor")
    ctx.http.create_topic(topic, 2)
    producer = Producer({"bootstrap.servers": ctx.bootstrap, "linger.ms": 5})
    records = sample_records(1, "confluent")
    delivered = produce_all(
        producer,
        [(topic, 1, r["key"], r["value"], r["headers"], r["timestamp_ms"]) for r in records],
    )
    for r, (p, o) in zip(records, delivered):
        r.update(topic=topic, partition=p, offset=o)
    check_eq([o for _, o in delivered], list(range(len(records))), "offsets of the produced records")
    check_http_matches(ctx.http, records, "confluent-kafka-produced records")
    emit_records("confluent-kafka", records)

    # The other way: produced over HTTP, consumed here.
    from_http = sample_records(0, "from-http")
    for r in from_http:
        r["partition"] = 0
    offsets = ctx.http.produce(topic, from_http)
    check_eq([(o["partition"], o["offset"]) for o in offsets], [(0, i) for i in range(len(from_http))], "HTTP produce offsets")
    consumer = Consumer({"bootstrap.servers": ctx.bootstrap, "group.id": unique("ck-unused"), "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    msgs = poll_records(consumer, len(from_http), 30, "consuming the HTTP-produced records")
    consumer.close()
    got = [kafka_record(m) for m in msgs]
    for g in got:
        check_eq(g["timestamp_type"], TIMESTAMP_CREATE_TIME, f"timestamp type of offset {g['offset']}")
    expected = [dict(r, offset=i) for i, r in enumerate(from_http)]
    compare_records(expected, got, "HTTP-produced records consumed by confluent-kafka")


SCENARIOS = {
    "idempotent_producer": idempotent_producer,
    "group_leave": group_leave,
    "group_kill": group_kill,
    "commit_resume": commit_resume,
    "admin": admin,
    "cross_door": cross_door,
}

if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "member":
        member_main(*sys.argv[2:])
    else:
        main("confluent-kafka", SCENARIOS)
