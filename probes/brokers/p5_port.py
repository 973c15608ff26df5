"""Probe 5: start the broker on a port already bound (and listening) by another socket.
usage: p5_port.py nisshi|kafkv [extra broker args...]"""
import os, sys, time, socket
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import *
which = sys.argv[1]
extra = sys.argv[2:]
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(5)
port = s.getsockname()[1]
b = start(which, "p5", port=port, extra=extra, wait=False)
t0 = time.time()
while time.time() - t0 < 10 and b.poll() is None:
    time.sleep(0.1)
res = {"broker": which, "cmd": b.cmd, "exited": b.poll() is not None, "returncode": b.poll(),
       "exit_after_s": round(time.time() - t0, 2) if b.poll() is not None else None,
       "still_running_after_10s": b.poll() is None}
stop(b)
s.close()
res["stderr"] = open(b.data_dir + "/stderr.log").read()[-2000:]
emit(res, f"p5-{which}{'-' + '-'.join(extra).replace('--', '') if extra else ''}")
