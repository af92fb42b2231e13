"""Replication factors and min.insync.replicas through a Kafka admin client
(confluent-kafka) against a cluster of at least three brokers: run by
services/strata/tests/cluster.rs.

    python3 replication_admin.py --bootstrap HOST:PORT --brokers 3

Exits 0 when Strata answered as Kafka would, 1 with the mismatch otherwise.
"""

import argparse
import sys

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from strata_common import check, check_eq, unique


def create(admin, topic):
    """Creates `topic`; returns None or the KafkaError it failed with."""
    try:
        admin.create_topics([topic], request_timeout=30)[topic.topic].result(30)
        return None
    except KafkaException as e:
        return e.args[0]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--brokers", type=int, required=True)
    args = parser.parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})

    name = unique("rf")
    error = create(
        admin,
        NewTopic(
            name,
            num_partitions=2,
            replication_factor=args.brokers,
            config={"min.insync.replicas": "2"},
        ),
    )
    check(error is None, f"creating {name} with {args.brokers} replicas failed: {error}")
    meta = admin.list_topics(name, timeout=30).topics[name]
    check_eq(sorted(meta.partitions), [0, 1], "partitions")
    for p in meta.partitions.values():
        check_eq(len(p.replicas), args.brokers, f"replicas of partition {p.id}")
        check_eq(len(set(p.replicas)), args.brokers, f"distinct replicas of partition {p.id}")
        check(p.leader in p.replicas, f"leader {p.leader} not among {p.replicas}")
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    configs = admin.describe_configs([resource])[resource].result(30)
    check_eq(configs["min.insync.replicas"].value, "2", "min.insync.replicas")

    error = create(admin, NewTopic(unique("rf"), 1, replication_factor=args.brokers + 1))
    check(error is not None, "more replicas than brokers was accepted")
    check_eq(error.code(), KafkaError.INVALID_REPLICATION_FACTOR, "error for too many replicas")

    error = create(
        admin,
        NewTopic(
            unique("rf"),
            1,
            replication_factor=2,
            config={"min.insync.replicas": "3"},
        ),
    )
    check(error is not None, "min.insync.replicas above the replication factor was accepted")
    check_eq(error.code(), KafkaError.INVALID_CONFIG, "error for min.insync.replicas 3 of 2")
    print("replication admin: ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the test prints whatever went wrong
        print(f"MISMATCH: {e}", file=sys.stderr)
        sys.exit(1)
