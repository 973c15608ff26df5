"""Reads partition 0 of a topic from the beginning to its end offset with
confluent-kafka (librdkafka as PyPI ships it), printing one JSON line per
record delivered: offset, key, and headers. Every record the client hands
over is printed, duplicates included: that is what the caller checks.

Usage: read_partition.py <bootstrap servers> <topic>
"""

import json
import sys

from confluent_kafka import Consumer, TopicPartition


def main() -> None:
    brokers, topic = sys.argv[1], sys.argv[2]
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"{topic}-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # Small fetches make many requests start inside compaction gaps.
            "max.partition.fetch.bytes": 1024,
        }
    )
    _, end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    consumer.assign([TopicPartition(topic, 0, 0)])
    position = 0
    while position < end:
        message = consumer.poll(30)
        if message is None:
            sys.exit("no record within 30 s")
        if message.error():
            if message.error().code() == message.error()._PARTITION_EOF:
                break
            sys.exit(str(message.error()))
        headers = [
            [name, value.decode() if value is not None else None]
            for name, value in (message.headers() or [])
        ]
        print(
            json.dumps(
                {
                    "offset": message.offset(),
                    "key": message.key().decode(),
                    "headers": headers,
                }
            ),
            flush=True,
        )
        position = message.offset() + 1
    consumer.close()


if __name__ == "__main__":
    main()
