#!/usr/bin/env python3
"""An idempotent librdkafka producer (confluent-kafka, acks=all) that keeps
going while the broker is killed and restarted under it.

Produces COUNT records, values `crash-<i>`, round-robin over PARTITIONS
partitions (explicit partition), at most RATE per second, and prints one line
per delivery report: `ACK <partition> <offset> <value>` or `FAIL <value>
<error>`. The offset is -1 for a record librdkafka acknowledged
implicitly (its own response was lost, a later batch of the producer's
succeeded): the caller then checks only that it is in its partition. On
SIGTERM it stops producing and flushes what it sent (a caller whose faults
are over ends the run that way; COUNT is then an upper bound). Exits 0
once every record sent has a delivery report; the caller (the Rust crash
test) checks the log against the ACK lines.

Usage: crash_producer.py BOOTSTRAP TOPIC PARTITIONS COUNT RATE
"""

import signal
import sys
import time

from confluent_kafka import Producer


def main():
    bootstrap, topic, partitions, count, rate = sys.argv[1:6]
    partitions, count, rate = int(partitions), int(count), float(rate)
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 2,
        # Long enough to ride out a broker restart; librdkafka retries meanwhile.
        "message.timeout.ms": 90000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 500,
        # On stderr, so a test that finds a duplicate can tell a plain retry
        # from a resend under a bumped producer epoch: librdkafka's
        # idempotence log, and every error it reports.
        "debug": "eos",
        "error_cb": lambda err: print(f"ERROR {err}", file=sys.stderr, flush=True),
    })

    def report(err, msg):
        value = msg.value().decode()
        if err is None:
            print(f"ACK {msg.partition()} {msg.offset()} {value}", flush=True)
        else:
            print(f"FAIL {value} {err}", flush=True)

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))

    start = time.monotonic()
    for i in range(count):
        if stopping:
            break
        due = start + i / rate
        while time.monotonic() < due:
            producer.poll(min(0.01, max(0.0, due - time.monotonic())))
        while True:
            try:
                producer.produce(topic, value=f"crash-{i}".encode(), partition=i % partitions,
                                 on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        print(f"UNFLUSHED {remaining}", flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
