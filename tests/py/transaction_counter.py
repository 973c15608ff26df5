"""Increments one key from several threads with redis-py's transaction()
(WATCH, GET, MULTI, SET, EXEC, retried on a WatchError), and prints the
final value and how many transactions were retried.

usage: transaction_counter.py PORT KEY WORKERS INCREMENTS
"""

import sys
import threading

import redis

port, key, workers, increments = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
retries = 0
lock = threading.Lock()


def worker():
    global retries
    client = redis.Redis(port=int(port), socket_timeout=60)
    for _ in range(increments):
        attempts = 0

        def increment(pipe):
            nonlocal attempts
            attempts += 1
            value = int(pipe.get(key) or 0)
            pipe.multi()
            pipe.set(key, value + 1)

        client.transaction(increment, key)
        with lock:
            retries += attempts - 1


threads = [threading.Thread(target=worker) for _ in range(workers)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(int(redis.Redis(port=int(port)).get(key)), retries)
