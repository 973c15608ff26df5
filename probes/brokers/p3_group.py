"""Probe 3: group eviction after SIGKILL of one of two members. usage: p3_group.py nisshi|kafkv"""
import os, sys, time, json, subprocess, threading, signal
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
which = sys.argv[1]
b = start(which, "p3")
res = {"broker": which, "cmd": b.cmd}
topic = "p3-topic"
PY = sys.executable
events = []
state = {}
def reader(proc, name):
    for line in proc.stdout:
        try:
            e = json.loads(line)
        except Exception:
            continue
        events.append(e)
        if e["ev"] == "assignment":
            state[name] = e["parts"]
procs = {}
try:
    create_topic(b.bootstrap, topic, 4)
    for n in ("A", "B"):
        procs[n] = subprocess.Popen([PY, os.path.join(os.path.dirname(os.path.abspath(__file__)), "p3_member.py"), b.bootstrap, topic, n],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=reader, args=(procs[n], n), daemon=True).start()
    t0 = time.time()
    while time.time() - t0 < 60:
        if len(state.get("A", [])) == 2 and len(state.get("B", [])) == 2:
            break
        time.sleep(0.1)
    res["both_have_2_after_s"] = round(time.time() - t0, 2) if len(state.get("A", [])) == 2 and len(state.get("B", [])) == 2 else None
    res["before_kill"] = dict(state)
    procs["B"].send_signal(signal.SIGKILL)
    tk = time.time()
    got_all = None
    samples = []
    while time.time() - tk < 25:
        a = state.get("A")
        samples.append((round(time.time() - tk, 1), a))
        if got_all is None and a is not None and len(a) == 4:
            got_all = round(time.time() - tk, 2)
        time.sleep(0.1)
    res["survivor_got_all_4_after_kill_s"] = got_all
    res["survivor_final"] = state.get("A")
    res["survivor_events_after_kill"] = [dict(e, t=round(e["t"] - tk, 2)) for e in events if e["who"] == "A" and e["t"] >= tk]
finally:
    for p in procs.values():
        if p.poll() is None:
            p.kill()
    res["broker_alive_at_end"] = b.poll() is None
    stop(b)
    res["stderr_tail"] = open(b.data_dir + "/stderr.log").read()[-1500:]
emit(res, f"p3-{which}")
