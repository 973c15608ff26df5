"""Probe 2: min.compaction.lag.ms / delete.retention.ms on a compacted topic.
usage: p2_compact.py nisshi|kafkv   (leaves the broker's data dir in runs/ for probe 6)"""
import os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_BEGINNING, KafkaError

which = sys.argv[1]
b = start(which, "p2")
res = {"broker": which, "cmd": b.cmd, "data_dir": b.data_dir}
H = 3600 * 1000
topic = "p2-compact"
try:
    create_topic(b.bootstrap, topic, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "3600000",
                                          "delete.retention.ms": "7200000"})
    now = int(time.time() * 1000)
    plan = [("old", "old-1", now - 3 * H), ("old", "old-2", now - 3 * H + 1000),
            ("young", "young-1", now), ("young", "young-2", now + 1),
            ("gone", "gone-value", now - 5 * H), ("gone", None, now - 5 * H + 1000),
            ("deleted", "deleted-value", now - 3 * H), ("deleted", None, now - 90 * 60 * 1000)]
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
    acked = []
    for k, v, ts in plan:
        p.produce(topic, key=k.encode(), value=None if v is None else v.encode(), timestamp=ts,
                  on_delivery=lambda e, m: acked.append((m.offset(), e)))
        p.flush(10)  # one record per batch
    res["produced"] = [{"offset": o, "key": k, "value": v, "ts_age_min": round((now - ts) / 60000, 1),
                        "err": str(e) if e else None} for (o, e), (k, v, ts) in zip(acked, plan)]

    def read_all():
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"p2-{time.time()}", "enable.auto.commit": False,
                      "enable.partition.eof": True, "fetch.wait.max.ms": 100})
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out = []
        t0 = time.time()
        while time.time() - t0 < 15:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    break
                out.append({"error": str(m.error())}); continue
            out.append({"offset": m.offset(), "key": m.key().decode() if m.key() else None,
                        "value": m.value().decode() if m.value() is not None else None})
        c.close()
        return out
    for wait in (5, 10):
        time.sleep(wait)
        res[f"remaining_after_{'5' if wait == 5 else '15'}s"] = read_all()
finally:
    res["broker_alive_at_end"] = b.poll() is None
    stop(b)
    res["stderr_tail"] = open(b.data_dir + "/stderr.log").read()[-1500:]
emit(res, f"p2-{which}")
