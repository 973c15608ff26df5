"""Shared helpers: start a broker binary on a free port + fresh data dir, CPU accounting."""
import os, socket, subprocess, sys, time, json, tempfile

# The two broker binaries: `kafkv` (kafkv broker) and the nisshi runner
# (nisshi-runner/, built by hand; see README.md).
BROKERS = {
    "nisshi": os.environ.get("PROBE_NISSHI_BIN", "nisshi-runner/target/debug/nisshi-probe-broker"),
    "kafkv": os.environ.get("PROBE_KAFKV_BIN", "../../target/release/kafkv"),
}
# Where each run's data dir, logs and JSON result go.
RUNS = os.environ.get("PROBE_RUNS", "/tmp/kafkv-broker-probes")
os.makedirs(RUNS, exist_ok=True)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cmdline(which, port, data_dir, extra=()):
    if which == "kafkv":
        return [BROKERS["kafkv"], "broker", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir,
                "--maintenance-interval", "1s", *extra]
    return [BROKERS["nisshi"], "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir,
            "--maintenance-interval", "1s", *extra]


def start(which, tag, port=None, extra=(), wait=True):
    port = port or free_port()
    data_dir = tempfile.mkdtemp(prefix=f"{which}-{tag}-", dir=RUNS)
    log = open(os.path.join(data_dir, "stderr.log"), "w")
    out = open(os.path.join(data_dir, "stdout.log"), "w")
    cmd = cmdline(which, port, data_dir, extra)
    p = subprocess.Popen(cmd, stdout=out, stderr=log, cwd=RUNS)
    p.port, p.data_dir, p.which, p.cmd = port, data_dir, which, cmd
    p.bootstrap = f"127.0.0.1:{port}"
    if wait:
        t0 = time.time()
        while time.time() - t0 < 60:
            if p.poll() is not None:
                raise RuntimeError(f"{which} exited rc={p.returncode}: {open(log.name).read()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("broker did not listen in 60s")
        p.startup_s = time.time() - t0
    return p


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime=14, stime=15 -> index 11, 12
    return int(fields[11]) + int(fields[12])


def cpu_percent(pid, seconds, during=None):
    """% of one core used by pid over `seconds` wall time."""
    t0, c0 = time.monotonic(), cpu_ticks(pid)
    if during:
        during(seconds)
    else:
        time.sleep(seconds)
    t1, c1 = time.monotonic(), cpu_ticks(pid)
    return 100.0 * (c1 - c0) / CLK_TCK / (t1 - t0)


def create_topic(bootstrap, name, partitions=1, config=None):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})],
                         request_timeout=15)
    for t, f in fs.items():
        f.result(20)
    # wait for metadata to show it
    t0 = time.time()
    while time.time() - t0 < 15:
        md = a.list_topics(name, timeout=5)
        tm = md.topics.get(name)
        if tm and not tm.error and len(tm.partitions) == partitions:
            return
        time.sleep(0.2)


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(q / 100.0 * (len(xs) - 1)))))
    return xs[k]


def emit(result, name):
    path = os.path.join(RUNS, f"{name}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2, default=str)
    print(json.dumps(result, indent=2, default=str))
