"""Probe 6b: 200,000 records over 100,000 keys into a compact topic (min.compaction.lag.ms=0);
metadata request every 200 ms; record count in SQLite every 1 s. usage: p6_bigcompact.py nisshi|kafkv [N]"""
import os, sys, time, threading, subprocess
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
which = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
b = start(which, "p6")
db = b.data_dir + "/broker.db"
res = {"broker": which, "cmd": b.cmd, "records": N, "keys": N // 2}
topic = "p6-big"
stop_flag = threading.Event()
meta = []   # (t, latency_ms or None)
counts = []  # (t, count)
T0 = time.time()
def rel(): return round(time.time() - T0, 2)
def meta_loop():
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    while not stop_flag.is_set():
        t = time.time()
        try:
            a.list_topics(topic, timeout=10); meta.append((rel(), round((time.time() - t) * 1000, 1)))
        except Exception as e:
            meta.append((rel(), None))
        time.sleep(max(0, 0.2 - (time.time() - t)))
def count_loop():
    while not stop_flag.is_set():
        try:
            out = subprocess.run(["sqlite3", "-cmd", ".timeout 5000", db, "select count(*) from record"],
                                 capture_output=True, text=True, timeout=20).stdout.strip()
            counts.append((rel(), int(out)))
        except Exception as e:
            counts.append((rel(), str(e)[:80]))
        stop_flag.wait(1)
try:
    create_topic(b.bootstrap, topic, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"})
    c0 = cpu_ticks(b.pid)
    threads = [threading.Thread(target=meta_loop), threading.Thread(target=count_loop)]
    for t in threads: t.start()
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 20, "queue.buffering.max.messages": 500000})
    acked = [0]
    def dr(e, m):
        if e is None: acked[0] += 1
    tp = time.time()
    for i in range(N):
        while True:
            try:
                p.produce(topic, key=f"k{i % (N // 2)}".encode(), value=f"v{i}".encode(), on_delivery=dr); break
            except BufferError:
                p.poll(0.1)
        if i % 1000 == 0: p.poll(0)
    p.flush(600)
    res["produce_s"] = round(time.time() - tp, 1); res["acked"] = acked[0]; res["produce_done_at"] = rel()
    # watch until the count reaches N/2 or 180 s
    tw = time.time()
    while time.time() - tw < 180:
        if counts and counts[-1][1] == N // 2 and counts[-1][0] > res["produce_done_at"]:
            break
        time.sleep(1)
    res["count_reached_keys_at"] = counts[-1][0] if counts and counts[-1][1] == N // 2 else None
    time.sleep(3)
finally:
    stop_flag.set()
    for t in threads: t.join(30)
    res["cpu_pct_avg"] = round(100.0 * (cpu_ticks(b.pid) - c0) / CLK_TCK / (time.time() - T0), 1) if b.poll() is None else None
    lat = [m[1] for m in meta if m[1] is not None]
    res["metadata_requests"] = len(meta); res["metadata_failures"] = len(meta) - len(lat)
    res["metadata_ms_p50"] = pct(lat, 50); res["metadata_ms_p99"] = pct(lat, 99); res["metadata_ms_max"] = max(lat) if lat else None
    res["metadata_slowest"] = sorted(meta, key=lambda m: -(m[1] or 1e9))[:5]
    res["counts"] = counts[::max(1, len(counts) // 30)] + counts[-2:]
    res["broker_alive_at_end"] = b.poll() is None
    stop(b)
    res["stderr_tail"] = open(b.data_dir + "/stderr.log").read()[-1500:]
emit(res, f"p6big-{which}")
