"""redis-py's default pipeline() (MULTI/EXEC around its commands) against kafkv.

usage: transaction_pipeline.py PORT PROTOCOL PREFIX

Prints one JSON line: the pipeline's results, then what GET reads after it.
A pipeline whose queue Redis refuses (an unknown command queued) must raise
and must write nothing: the second line is its error and a read of its key.
"""

import json
import sys

import redis

port, protocol, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
r = redis.Redis(port=port, protocol=protocol, decode_responses=True)

with r.pipeline() as pipe:  # transaction=True is redis-py's default
    pipe.set(prefix + "a", "1").set(prefix + "b", "2").get(prefix + "a").mget(prefix + "a", prefix + "b")
    results = pipe.execute()
print(json.dumps([results, r.get(prefix + "b")]), flush=True)

with r.pipeline() as pipe:
    pipe.set(prefix + "never", "x")
    pipe.execute_command("NOSUCHCOMMAND")
    try:
        pipe.execute()
        error = None
    except redis.exceptions.ResponseError as e:
        error = str(e)
print(json.dumps([error, r.get(prefix + "never")]), flush=True)
