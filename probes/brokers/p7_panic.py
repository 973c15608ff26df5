"""Extra probe: DeleteRecords hits todo!() in nisshi-storage lite.rs; does the broker keep serving?
usage: p7_panic.py nisshi|kafkv"""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient
which = sys.argv[1]
b = start(which, "p7")
res = {"broker": which}
try:
    create_topic(b.bootstrap, "p7", 1)
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
    for i in range(5):
        p.produce("p7", value=b"x")
    p.flush(10)
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    try:
        fs = a.delete_records([TopicPartition("p7", 0, 2)], request_timeout=5)
        res["delete_records"] = {str(k): str(v.result(10)) for k, v in fs.items()}
    except Exception as e:
        res["delete_records"] = f"error: {e}"
    time.sleep(1)
    for name, conf in (("same_process_producer", None), ("new_producer", {"bootstrap.servers": b.bootstrap, "acks": "all", "message.timeout.ms": 10000})):
        q = p if conf is None else Producer(conf)
        got = []
        t = time.time()
        q.produce("p7", value=b"after", on_delivery=lambda e, m: got.append((round(time.time() - t, 2), str(e) if e else None)))
        q.flush(15)
        res[name + "_after"] = got or "no report in 15 s"
    try:
        md = a.list_topics(timeout=5); res["metadata_after"] = sorted(md.topics)
    except Exception as e:
        res["metadata_after"] = f"error: {e}"
finally:
    res["broker_alive_at_end"] = b.poll() is None
    stop(b)
    err = open(b.data_dir + "/stderr.log").read()
    res["stderr_panic_lines"] = [l[:300] for l in err.splitlines() if "panicked" in l][:5]
emit(res, f"p7-{which}")
