"""Probe 4: idempotent producer across a 4 s SIGSTOP of the broker. usage: p4_idem.py nisshi|kafkv"""
import os, sys, time, signal
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
from confluent_kafka import Producer
which = sys.argv[1]
b = start(which, "p4")
res = {"broker": which, "cmd": b.cmd}
topic = "p4-topic"
CONF = {"enable.idempotence": True, "acks": "all", "message.timeout.ms": 1500, "request.timeout.ms": 1000}
log = []  # (t, kind, detail)
T0 = time.time()
def rel(): return round(time.time() - T0, 3)
def mk(tag):
    return Producer(dict(CONF, **{"bootstrap.servers": b.bootstrap,
                                   "error_cb": lambda e: log.append((rel(), f"{tag}:error_cb", str(e)))}))
try:
    create_topic(b.bootstrap, topic, 1)
    p = mk("p1")
    acks, fails = [], []
    def dr(err, msg):
        if err is None:
            acks.append(rel())
        else:
            fails.append((rel(), str(err)))
    n = 0
    stopped_at = cont_at = None
    deadline = None
    while True:
        p.produce(topic, value=f"m{n}".encode(), on_delivery=dr); n += 1
        p.poll(0.05)
        if stopped_at is None and len(acks) >= 20:
            os.kill(b.pid, signal.SIGSTOP); stopped_at = rel(); log.append((stopped_at, "SIGSTOP", ""))
            t = time.time()
            while time.time() - t < 4:
                try:
                    p.produce(topic, value=f"m{n}".encode(), on_delivery=dr); n += 1
                except BufferError:
                    pass
                p.poll(0.05)
            os.kill(b.pid, signal.SIGCONT); cont_at = rel(); log.append((cont_at, "SIGCONT", ""))
            acks_at_cont = len(acks)
            deadline = time.time() + 60
        if deadline:
            post = [a for a in acks if a > cont_at]
            # stop 10 s after acks resumed, or at the 60 s deadline
            if time.time() > deadline or (post and rel() - post[0] > 10):
                break
    after = [a for a in acks if cont_at and a > cont_at]
    res.update(produced=n, acks_total=len(acks), acks_before_stop=len([a for a in acks if a <= stopped_at]),
               failures_total=len(fails), first_failures=fails[:3], last_failures=fails[-3:],
               stopped_at=stopped_at, cont_at=cont_at,
               acks_after_cont=len(after), first_ack_after_cont_s=round(after[0] - cont_at, 2) if after else None,
               watched_after_cont_s=round(rel() - cont_at, 1),
               failures_after_cont_plus_2s=len([f for f in fails if f[0] > cont_at + 2]),
               last_ack_s=acks[-1] if acks else None)
    # brand-new idempotent producer
    q = mk("p2")
    got = []
    t = time.time()
    q.produce(topic, value=b"fresh", on_delivery=lambda e, m: got.append((round(time.time() - t, 2), str(e) if e else None)))
    q.flush(20)
    res["new_idempotent_producer"] = got or "no delivery report within 20 s"
    # brand-new plain producer too
    r = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "message.timeout.ms": 5000})
    got2 = []
    t = time.time()
    r.produce(topic, value=b"plain", on_delivery=lambda e, m: got2.append((round(time.time() - t, 2), str(e) if e else None)))
    r.flush(20)
    res["new_plain_producer"] = got2 or "no delivery report within 20 s"
    res["client_log"] = log[:15] + ((["..."] + log[-5:]) if len(log) > 15 else [])
finally:
    try:
        os.kill(b.pid, signal.SIGCONT)
    except Exception:
        pass
    res["broker_alive_at_end"] = b.poll() is None
    stop(b)
    err = open(b.data_dir + "/stderr.log").read()
    res["stderr_bytes"] = len(err)
    res["stderr_panic_lines"] = [l[:400] for l in err.splitlines() if "panic" in l.lower()][:10]
    res["stderr_tail"] = err[-3000:]
emit(res, f"p4-{which}")
