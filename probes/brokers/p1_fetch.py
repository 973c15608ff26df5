"""Probe 1: idle fetch CPU with fetch.wait.max.ms=10 (and 500), and produce-ack -> consume latency.
usage: p1_fetch.py nisshi|kafkv"""
import os, sys, time, threading, random
GAP = float(os.environ.get("P1_GAP_MAX_S", "0.2"))  # random pause before each produce; 0 = lock-step
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from confluent_kafka import Consumer, Producer, TopicPartition, OFFSET_END

which = sys.argv[1]
b = start(which, "p1")
res = {"gap_max_s": GAP, "broker": which, "cmd": b.cmd, "startup_s": round(b.startup_s, 2)}
try:
    res["cpu_pct_no_clients_10s"] = round(cpu_percent(b.pid, 10), 2)
    for wait_ms in [int(x) for x in os.environ.get("P1_WAITS", "10,500").split(",")]:
        topic = f"p1-{wait_ms}"
        create_topic(b.bootstrap, topic, 1)
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": f"p1g{wait_ms}", "enable.auto.commit": False,
                      "fetch.wait.max.ms": wait_ms, "auto.offset.reset": "earliest"})
        c.assign([TopicPartition(topic, 0, 0)])
        recv = {}
        stop_flag = threading.Event()
        errors = []

        def loop():
            while not stop_flag.is_set():
                m = c.poll(0.1)
                if m is None:
                    continue
                if m.error():
                    errors.append(str(m.error())); continue
                recv[int(m.value())] = time.monotonic()
        th = threading.Thread(target=loop); th.start()
        time.sleep(2)  # let the consumer connect and start fetching
        res[f"cpu_pct_idle_20s_wait{wait_ms}"] = round(cpu_percent(b.pid, 20), 2)
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0})
        acks = {}
        def dr(err, msg):
            if err is None:
                acks[int(msg.value())] = time.monotonic()
        lat = []
        t_start = time.monotonic()
        c0 = cpu_ticks(b.pid)
        for i in range(100):
            if GAP > 0:
                time.sleep(random.uniform(0, GAP))
            p.produce(topic, value=str(i).encode(), on_delivery=dr)
            p.flush(10)
            t0 = time.monotonic()
            while i not in recv and time.monotonic() - t0 < 5:
                time.sleep(0.0005)
            if i in recv and i in acks:
                lat.append((recv[i] - acks[i]) * 1000)
        dur = time.monotonic() - t_start
        res[f"cpu_pct_during_100_produces_wait{wait_ms}"] = round(100.0 * (cpu_ticks(b.pid) - c0) / CLK_TCK / dur, 2)
        stop_flag.set(); th.join(); c.close()
        res[f"wait{wait_ms}"] = {
            "acked": len(acks), "received": len(recv), "latency_samples": len(lat),
            "ack_to_recv_ms_p50": round(pct(lat, 50), 2) if lat else None,
            "ack_to_recv_ms_p99": round(pct(lat, 99), 2) if lat else None,
            "ack_to_recv_ms_max": round(max(lat), 2) if lat else None,
            "ack_to_recv_ms_min": round(min(lat), 2) if lat else None,
            "consumer_errors": errors[:5], "loop_s": round(dur, 2),
        }
finally:
    res["broker_alive_at_end"] = b.poll() is None
    stop(b)
    res["stderr_tail"] = open(b.data_dir + "/stderr.log").read()[-1500:]
emit(res, f"p1-{which}-gap{GAP}" + ("-waits" + os.environ["P1_WAITS"].replace(",", "_") if "P1_WAITS" in os.environ else ""))
