#!/usr/bin/env python3
"""kafka-python (a pure-Python client) against Strata.

Scenarios:
  produce_consume  keyed records with headers; the keys' partitions agree with the HTTP
                   API's (both murmur2); consumed back (assign + seek) field by field
  commit_resume    a consumer group consumes part, commits, closes; a new consumer of the
                   group resumes at the committed offsets: no gap, no repeat
  admin            KafkaAdminClient: create_topics, list_topics, describe_configs,
                   alter_configs, delete_topics; errors for duplicates and missing topics
  cross_door       records produced here read back over HTTP (and, by the Rust test,
                   gRPC); records produced over HTTP consumed here, byte for byte

Usage: kafka_python_test.py --bootstrap HOST:PORT --http http://HOST:PORT [scenario ...]
"""

import time

import kafka.errors as Errors
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType

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

TIMEOUT_MS = 15000


def producer(ctx, **extra):
    conf = dict(bootstrap_servers=ctx.bootstrap, acks="all", linger_ms=5, request_timeout_ms=TIMEOUT_MS)
    conf.update(extra)
    return KafkaProducer(**conf)


def consumer(ctx, group=None, **extra):
    conf = dict(
        bootstrap_servers=ctx.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=TIMEOUT_MS + 5000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )
    conf.update(extra)
    return KafkaConsumer(**conf)


def send_all(p, items):
    """Sends (topic, partition, key, value, headers, timestamp) tuples; returns RecordMetadata in order."""
    futures = [
        p.send(topic, key=key, value=value, headers=headers or None, partition=part, timestamp_ms=ts)
        for (topic, part, key, value, headers, ts) in items
    ]
    p.flush(timeout=30)
    out = []
    for i, f in enumerate(futures):
        try:
            out.append(f.get(timeout=30))
        except Exception as e:
            raise Mismatch(f"record {i} was not delivered: {type(e).__name__}: {e}")
    return out


def poll_n(c, count, timeout, what):
    """Polls exactly `count` records (fails after `timeout` s)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        batch = c.poll(timeout_ms=500, max_records=count - len(out))
        for records in batch.values():
            out.extend(records)
    check(len(out) >= count, f"{what}: got {len(out)} of {count} records in {timeout}s")
    return out


def drain(c, seconds):
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for records in c.poll(timeout_ms=200).values():
            out.extend(records)
    return out


def as_record(r):
    return {
        "topic": r.topic,
        "partition": r.partition,
        "offset": r.offset,
        "key": r.key,
        "value": r.value,
        "headers": list(r.headers or []),
        "timestamp_ms": r.timestamp,
        "timestamp_type": r.timestamp_type,
    }


def produce_consume(ctx):
    topic = unique("kp-pc")
    ctx.http.create_topic(topic, 3)
    p = producer(ctx)
    items = [
        (topic, None, f"user-{i % 37}".encode(), f"event {i}".encode(), [("n", str(i).encode()), ("src", b"kafka-python")], None)
        for i in range(300)
    ]
    metas = send_all(p, items)
    p.close()

    # Kafka's default partitioner (murmur2) and the HTTP API's agree on each key.
    placed = {}
    for (_, _, key, _, _, _), m in zip(items, metas):
        check(placed.setdefault(key, m.partition) == m.partition, f"key {key!r} went to two partitions")
    probe = unique("kp-placement")
    ctx.http.create_topic(probe, 3)
    keys = sorted(placed)
    offsets = ctx.http.produce(probe, [{"key": k, "value": b"x"} for k in keys])
    http_parts = {k: o["partition"] for k, o in zip(keys, offsets)}
    check_eq(http_parts, placed, "partition of each key: HTTP (left) vs kafka-python's murmur2 (right)")

    c = consumer(ctx)
    tps = [TopicPartition(topic, part) for part in range(3)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    got = poll_n(c, 300, 60, "consuming what was produced")
    got += drain(c, 1.0)
    c.close()
    check_eq(len(got), 300, "records consumed")
    expected = {(m.partition, m.offset): item for item, m in zip(items, metas)}
    for r in got:
        item = expected.get((r.partition, r.offset))
        check(item is not None, f"consumed a record at {r.partition}/{r.offset} that was not produced")
        _, _, key, value, headers, _ = item
        check_eq((r.key, r.value, list(r.headers)), (key, value, headers), f"record at {r.partition}/{r.offset}")
        check_eq(r.timestamp_type, 0, f"timestamp type (CreateTime) at {r.partition}/{r.offset}")
    for part in range(3):
        offs = [r.offset for r in got if r.partition == part]
        check_eq(offs, list(range(len(offs))), f"offsets consumed from partition {part}, in order")


def commit_resume(ctx):
    topic, group = unique("kp-commit"), unique("kp-group")
    ctx.http.create_topic(topic, 3)
    p = producer(ctx)
    send_all(p, [(topic, part, None, f"{part}-{i}".encode(), None, None) for part in range(3) for i in range(30)])
    p.close()
    every = {(part, i) for part in range(3) for i in range(30)}

    first = consumer(ctx, group)
    first.subscribe([topic])
    part1 = poll_n(first, 40, 60, "first consumer of the group")
    committed = {}
    for r in part1:
        committed[r.partition] = max(committed.get(r.partition, 0), r.offset + 1)
    first.commit({TopicPartition(topic, part): OffsetAndMetadata(o, "", -1) for part, o in committed.items()})
    seen1 = {(r.partition, r.offset) for r in part1}
    check_eq(len(seen1), 40, "distinct records the first consumer read")
    for part, o in committed.items():
        check_eq({x for (q, x) in seen1 if q == part}, set(range(o)), f"records of partition {part} the first consumer read")
    fetched = {part: first.committed(TopicPartition(topic, part)) for part in range(3)}
    check_eq({k: v for k, v in fetched.items() if v is not None}, committed, "committed offsets as the consumer fetches them")
    check_eq(
        {part: o for (t, part), o in ctx.http.group_offsets(group).items() if t == topic},
        committed,
        "committed offsets as HTTP reports them",
    )
    first.close(autocommit=False)

    second = consumer(ctx, group)
    second.subscribe([topic])
    part2 = poll_n(second, 50, 60, "second consumer of the group")
    part2 += drain(second, 2.0)
    second.close(autocommit=False)
    seen2 = [(r.partition, r.offset) for r in part2]
    repeats = sorted(set(seen2) & seen1)
    check(not repeats, f"the second consumer re-read committed records: {repeats[:10]}")
    check_eq(len(seen2), len(set(seen2)), "records the second consumer read (no duplicates)")
    check_eq(set(seen2), every - seen1, "records the second consumer read (all the uncommitted ones)")


def topic_configs(admin, topic, config_filter="all"):
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter=config_filter)
    return {k: v.get("value") for k, v in res.get("topic", {}).get(topic, {}).items()}


def expect_error(fn, error, what):
    try:
        fn()
    except error:
        return
    except Exception as e:
        raise Mismatch(f"{what}: expected {error.__name__}, got {type(e).__name__}: {e}")
    raise Mismatch(f"{what}: succeeded, expected {error.__name__}")


def admin(ctx):
    topic = unique("kp-admin")
    admin = KafkaAdminClient(bootstrap_servers=ctx.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        admin.create_topics(
            {topic: {"num_partitions": 2, "replication_factor": 1, "configs": {"retention.ms": "3600000"}}},
            timeout_ms=10000,
        )
        wait_until(lambda: topic in admin.list_topics(), 10, f"{topic} in list_topics")
        http_topic = ctx.http.topic(topic)
        check(http_topic is not None, f"{topic} created with KafkaAdminClient does not exist over HTTP")
        check_eq(http_topic["partitions"], 2, "partitions over HTTP")
        check_eq(http_topic["config"]["retention_ms"], 3600000, "retention_ms over HTTP")
        described = admin.describe_topics([topic])
        check_eq(len(described[0]["partitions"]), 2, "partitions in describe_topics")

        check_eq(topic_configs(admin, topic).get("retention.ms"), "3600000", "describe_configs retention.ms")
        # Set at creation, so a topic override: the default 'modified' filter shows it.
        modified = topic_configs(admin, topic, "modified")
        check("retention.ms" in modified, f"describe_configs(config_filter='modified') omits retention.ms set at creation; it lists {sorted(modified)}")

        res = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})])
        check_eq(res.get("topic", {}).get(topic), "OK", "alter_configs result")
        check_eq(topic_configs(admin, topic).get("retention.ms"), "7200000", "retention.ms after alter_configs")
        check_eq(ctx.http.topic(topic)["config"]["retention_ms"], 7200000, "retention_ms over HTTP after alter_configs")

        expect_error(
            lambda: admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}}),
            Errors.TopicAlreadyExistsError,
            "creating an existing topic",
        )
        admin.delete_topics([topic], timeout_ms=10000)
        wait_until(lambda: topic not in admin.list_topics(), 10, f"{topic} to leave list_topics")
        check(ctx.http.topic(topic) is None, f"{topic} deleted with KafkaAdminClient still exists over HTTP")
        expect_error(lambda: admin.delete_topics([topic]), Errors.UnknownTopicOrPartitionError, "deleting a missing topic")
    finally:
        admin.close()


def cross_door(ctx):
    topic = unique("kp-xdoor")
    ctx.http.create_topic(topic, 2)
    records = sample_records(1, "kafka-python")
    p = producer(ctx)
    metas = send_all(p, [(topic, 1, r["key"], r["value"], r["headers"], r["timestamp_ms"]) for r in records])
    p.close()
    for r, m in zip(records, metas):
        r.update(topic=topic, partition=m.partition, offset=m.offset)
    check_eq([m.offset for m in metas], list(range(len(records))), "offsets of the produced records")
    check_http_matches(ctx.http, records, "kafka-python-produced records")
    emit_records("kafka-python", records)

    from_http = sample_records(0, "from-http")
    for r in from_http:
        r["partition"] = 0
    offsets = ctx.http.produce(topic, from_http)
    check_eq([(o["partition"], o["offset"]) for o in offsets], [(0, i) for i in range(len(from_http))], "HTTP produce offsets")
    c = consumer(ctx)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    got = [as_record(r) for r in poll_n(c, len(from_http), 30, "consuming the HTTP-produced records")]
    c.close()
    for g in got:
        check_eq(g["timestamp_type"], 0, f"timestamp type (CreateTime) of offset {g['offset']}")
    compare_records([dict(r, offset=i) for i, r in enumerate(from_http)], got, "HTTP-produced records consumed by kafka-python")


SCENARIOS = {
    "produce_consume": produce_consume,
    "commit_resume": commit_resume,
    "admin": admin,
    "cross_door": cross_door,
}

if __name__ == "__main__":
    main("kafka-python", SCENARIOS)
