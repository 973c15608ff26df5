"""One group member (child process of p3_group.py): prints its assignment as JSON lines."""
import sys, time, json
from confluent_kafka import Consumer
bootstrap, topic, name = sys.argv[1:4]
def say(**kw):
    kw.update(t=time.time(), who=name); print(json.dumps(kw), flush=True)
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "p3-group", "session.timeout.ms": 6000,
              "heartbeat.interval.ms": 500, "auto.offset.reset": "earliest", "enable.auto.commit": False})
c.subscribe([topic], on_assign=lambda c, ps: say(ev="assign", parts=sorted(p.partition for p in ps)),
            on_revoke=lambda c, ps: say(ev="revoke", parts=sorted(p.partition for p in ps)))
last = None
while True:
    m = c.poll(0.2)
    if m is not None and m.error():
        say(ev="error", err=str(m.error()))
    a = sorted(p.partition for p in c.assignment())
    if a != last:
        say(ev="assignment", parts=a); last = a
