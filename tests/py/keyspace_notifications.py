"""Subscribes to kafkv's keyspace notifications with redis-py and prints them.

Usage: keyspace_notifications.py PORT PROTOCOL PREFIX COUNT

Prints "ready" once both subscriptions are confirmed, then one JSON line
[pattern, channel, data] per message until COUNT have arrived (exit 1 if
none arrives for 30 s). Run by tests/it/resp.rs.
"""

import json
import sys

import redis


def main() -> None:
    port, protocol, prefix, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    client = redis.Redis(port=int(port), protocol=protocol, decode_responses=True)
    pubsub = client.pubsub()
    pubsub.psubscribe(f"__keyspace@0__:{prefix}*")
    pubsub.subscribe("__keyevent@0__:del")
    confirmed = 0
    while confirmed < 2:
        message = pubsub.get_message(timeout=30)
        if message is None:
            sys.exit("no subscription confirmation within 30 s")
        if message["type"] in ("subscribe", "psubscribe"):
            confirmed += 1
    print("ready", flush=True)
    received = 0
    while received < count:
        message = pubsub.get_message(timeout=30)
        if message is None:
            sys.exit("no notification within 30 s")
        if message["type"] in ("message", "pmessage"):
            print(json.dumps([message["pattern"] or "", message["channel"], message["data"]]), flush=True)
            received += 1


if __name__ == "__main__":
    main()
