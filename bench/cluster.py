#!/usr/bin/env python3
"""The cluster figures, run by bench/cluster.sh (which starts Redis and
PostgreSQL and exports TEST_REDIS_URL and TEST_POSTGRES_URL).

Server set-ups, alternating within each repetition, a fresh set of
processes for every run:

  alone        one node, no Redis (bench/bench.toml as `make bench` runs it)
  one          one node in cluster mode (Redis, PostgreSQL)
  three        three nodes in cluster mode on the same Redis
  one-norec,   the same with connection state recovery off
  three-norec  (socketio.recovery_window_ms = 0): the bus alone, no log in
               Redis (fan-out cases only)

Cases:

  fanout-1k, fanout-10k   `loadgen fanout`, window 64, 100-byte payload: the
                          same subscribers on one node or spread over three,
                          the publisher on node 1 (two thirds of the copies
                          cross the bus); deliveries/s and p99
  fanout-10k-rate         10,000 subscribers at 2 messages/s: the latency at a
                          fixed load, same-node and cross-node apart
  conns-19k               19,000 idle connections per node, one `loadgen
                          conns` per node (a process may open 20,000 files):
                          memory per connection, and for `three` the 57,000
                          held at once (the nodes' `switchboard_connections`
                          summed while they hold); Redis's used_memory before and after (the
                          sessions recovery keeps there, per connection)
  kill-1k                 1,000 official socket.io-client clients (WebSocket,
                          one worker thread of one Node process; 300 with
                          --quick, N with --kill-clients N) through HAProxy
                          to the three nodes, all in room `all`, a publisher
                          on node 1 sending numbered events at 10/s; node 3
                          killed with SIGKILL: for its clients the time from
                          the kill until each is back with `socket.recovered`
                          (p50, p99, max), those back not recovered or not
                          back, and for every client the numbers lost or
                          received twice (all must be 0: a run with any
                          fails the bench). `three` only
                          (tests/interop/measure-kill.mjs). Not more clients
                          by default: the official client spends 1.4-2.6 ms of
                          CPU per reconnection, three times what the two
                          surviving nodes spend together, and would become
                          what is measured (docs/BENCHMARKS.md). Skipped,
                          saying why, without HAProxy, Node.js or
                          tests/interop/node_modules

Around every run: Redis's INFO (CPU, bytes in and out), each node's
`switchboard_cluster_*` counters and its CPU. Every run is one JSON line in
--out; the medians are printed as a table and written beside it as
cluster-report.md.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The fan-out cases run every set-up; `conns` the first three (recovery
# changes nothing an idle connection holds on the node).
SETUPS = ["alone", "one", "three", "one-norec", "three-norec"]
CONNS_SETUPS = ["alone", "one", "three"]
# Killing a node needs nodes to go to: three.
SETUPS_OF = {"conns": CONNS_SETUPS, "kill": ["three"]}
MEASURE_KILL = os.path.join(ROOT, "tests/interop/measure-kill.mjs")


def log(msg):
    print(f"bench-cluster: {msg}", file=sys.stderr, flush=True)


def parse_args():
    p = argparse.ArgumentParser(description="Switchboard cluster benchmark")
    p.add_argument("--quick", action="store_true", help="small sizes, 1 run")
    p.add_argument("--reps", type=int, help="runs per set-up and case (3; 1 with --quick)")
    p.add_argument("--only", default="", help="cases: fanout, rate, conns, kill, or case ids")
    p.add_argument("--kill-clients", type=int,
                   help="clients in the kill case (1,000; 300 with --quick), a third on the node killed")
    p.add_argument("--out", help="JSON lines file (default target/bench-cluster/cluster-results.jsonl)")
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/switchboard"))
    p.add_argument("--loadgen", default=os.path.join(ROOT, "target/release/loadgen"))
    p.add_argument("--from", dest="from_file",
                   help="run nothing: print the report of earlier runs' JSON lines "
                        "(several files, comma-separated: several sittings)")
    a = p.parse_args()
    if a.reps is None:
        a.reps = 1 if a.quick else 3
    if a.out is None:
        a.out = os.path.join(ROOT, "target/bench-cluster/cluster-results.jsonl")
    return a


# How the kill case's clients reconnect (socket.io-client's
# reconnectionDelay, reconnectionDelayMax, randomizationFactor): quickly, as
# faults.test.mjs has them. The first attempt comes 100-300 ms after the cut:
# most of the time to recovered.
KILL_RETRY = {"delay": 200, "delay_max": 1000, "randomization": 0.5}


def cases(quick, kill_clients=None):
    """(id, kind, params) of every case, full or quick sizes."""
    n = kill_clients or (300 if quick else 1000)
    kill = (f"kill-{n // 1000}k" if n % 1000 == 0 else f"kill-{n}", "kill",
            {"clients": n, "workers": 1, "rate": 10, "lead_ms": 500 if quick else 1000,
             "tail_ms": 500 if quick else 1000, **KILL_RETRY})
    if quick:
        return [
            ("fanout-1k", "fanout", {"subscribers": 1000, "window": 64, "duration": 3}),
            ("fanout-1k-rate", "rate", {"subscribers": 1000, "rate": 20, "duration": 3}),
            ("conns-2k", "conns", {"connections": 2000, "hold": 3, "ramp": 1000}),
            kill,
        ]
    return [
        ("fanout-1k", "fanout", {"subscribers": 1000, "window": 64, "duration": 8}),
        # At least 6 runs: on two cores shared by four processes its single
        # runs scatter from 0.72x to 1.23x of each other (BENCHMARKS.md).
        ("fanout-10k", "fanout", {"subscribers": 10000, "window": 64, "duration": 8,
                                  "min_reps": 6}),
        ("fanout-10k-rate", "rate", {"subscribers": 10000, "rate": 2, "duration": 10}),
        ("conns-19k", "conns", {"connections": 19000, "hold": 10, "ramp": 1000}),
        kill,
    ]


def kill_skip():
    """Why the kill case cannot run here, or None."""
    if not shutil.which("haproxy"):
        return "HAProxy not found (apt-get install haproxy)"
    if not shutil.which("node"):
        return "Node.js not found"
    if not os.path.isdir(os.path.join(ROOT, "tests/interop/node_modules/socket.io-client")):
        return "no socket.io-client in tests/interop/node_modules (cd tests/interop && npm ci)"
    return None


# --- Redis, metrics, processes -------------------------------------------


def redis_info(url, section="default"):
    out = subprocess.run(["redis-cli", "-u", url, "INFO", section], capture_output=True, text=True,
                         check=True, timeout=10).stdout
    info = {}
    for line in out.splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            info[k] = v.strip()
    return info


def redis_counters(url):
    i = redis_info(url)
    # Calls and microseconds by command: what Redis spends its time on.
    cmds = {}
    for k, v in redis_info(url, "commandstats").items():
        f = dict(x.split("=", 1) for x in v.split(","))
        cmds[k.removeprefix("cmdstat_")] = (int(f["calls"]), int(f["usec"]))
    return {
        "cmds": cmds,
        "cpu_s": float(i["used_cpu_sys"]) + float(i["used_cpu_user"]),
        "net_in": int(i["total_net_input_bytes"]),
        "net_out": int(i["total_net_output_bytes"]),
        "commands": int(i["total_commands_processed"]),
        "pid": int(i["process_id"]),
    }


METRIC = re.compile(r"^(switchboard_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+)$")


def metrics(addr):
    """The node's switchboard_cluster_* series and switchboard_connections."""
    body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    m = {}
    for line in body.splitlines():
        g = METRIC.match(line)
        if g and (g.group(1).startswith("switchboard_cluster_")
                  or g.group(1) == "switchboard_connections"):
            m[g.group(1) + (g.group(2) or "")] = float(g.group(3))
    return m


def cpu_secs(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


class Node:
    def __init__(self, bin_path, env, logpath):
        self.log = open(logpath, "w")
        self.proc = subprocess.Popen(
            [bin_path, "serve", "--config", os.path.join(ROOT, "bench/bench.toml"),
             "--listen", "127.0.0.1:0"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.logpath = logpath
        self.addr = None

    def wait_listening(self):
        for _ in range(300):
            with open(self.logpath) as f:
                for line in f:
                    if line.startswith("listening on "):
                        self.addr = line.split()[-1]
                        return
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited at start: {open(self.logpath).read()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("node did not listen within 30 s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def start_setup(a, setup, workdir, run_id):
    """Starts the nodes of `setup`, ready (and, in a cluster, seeing each other)."""
    n = 3 if setup.startswith("three") else 1
    nodes = []
    for i in range(n):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        data = os.path.join(workdir, f"{run_id}-node{i + 1}")
        os.makedirs(data, exist_ok=True)
        env["SWITCHBOARD_DATA_DIR"] = data
        if setup != "alone":
            env["SWITCHBOARD_CLUSTER_REDIS_URL"] = os.environ["TEST_REDIS_URL"]
            env["SWITCHBOARD_STORE_URL"] = a.store_url
            # A channel prefix of its own: nothing of an earlier run is heard.
            env["SWITCHBOARD_CLUSTER_KEY_PREFIX"] = f"bench-{run_id}"
        if setup.endswith("-norec"):
            env["SWITCHBOARD_SOCKETIO_RECOVERY_WINDOW_MS"] = "0"
        node = Node(a.bin, env, os.path.join(workdir, f"{run_id}-node{i + 1}.log"))
        nodes.append(node)
        # One after the other: the first one runs the migrations.
        node.wait_listening()
    deadline = time.monotonic() + 30
    while True:
        try:
            ready = all(urllib.request.urlopen(f"http://{x.addr}/readyz", timeout=2).status == 200
                        for x in nodes)
            if ready and (setup == "alone" or all(
                    metrics(x.addr).get("switchboard_cluster_nodes") == n for x in nodes)):
                return nodes
        except OSError:
            pass
        if time.monotonic() > deadline:
            for x in nodes:
                x.stop()
            raise RuntimeError(f"{setup}: nodes not ready (or not seeing each other) within 30 s")
        time.sleep(0.2)


def counter_delta(before, after, prefix):
    return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix))


def bus_deltas(nodes, before, after):
    """The nodes' bus counters over the run, summed."""
    d = {}
    for name, prefix in [
        ("published", "switchboard_cluster_published_total"),
        ("received_delivered", 'switchboard_cluster_received_total{outcome="delivered"}'),
        ("received_own", 'switchboard_cluster_received_total{outcome="own"}'),
        ("received_unknown_room", 'switchboard_cluster_received_total{outcome="unknown_room"}'),
        ("received_malformed", 'switchboard_cluster_received_total{outcome="malformed"}'),
        ("received_too_large", 'switchboard_cluster_received_total{outcome="too_large"}'),
        ("publish_dropped", "switchboard_cluster_publish_dropped_total"),
        ("reconnects", "switchboard_cluster_reconnects_total"),
    ]:
        d[name] = int(sum(counter_delta(b, x, prefix) for b, x in zip(before, after)))
    return d


# --- cases ----------------------------------------------------------------


def fanout_run(a, setup, case, params, nodes, workdir, run_id):
    redis_url = os.environ["TEST_REDIS_URL"]
    urls = ",".join(f"ws://{x.addr}" for x in nodes)
    r0 = redis_counters(redis_url)
    other_pids = [x.proc.pid for x in nodes[1:]] + [r0["pid"]]
    cmd = [a.loadgen, "fanout", "--url", urls, "--pid", str(nodes[0].proc.pid),
           "--subscribers", str(params["subscribers"]), "--payload", "100",
           "--duration-secs", str(params["duration"]), "--warmup-secs", "1",
           "--cpu-pids", ",".join(map(str, other_pids)), "--json-only",
           "--label", f"{setup}"]
    if "window" in params:
        cmd += ["--window", str(params["window"])]
    else:
        cmd += ["--rate", str(params["rate"])]
    c0 = [cpu_secs(x.proc.pid) for x in nodes]
    t0 = time.monotonic()
    errpath = os.path.join(workdir, f"{run_id}-loadgen.log")
    with open(errpath, "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        # Redis and the bus counters are read once every subscriber and the
        # publisher are connected: what the sessions' set-up costs Redis
        # (recovery's session hashes) stays out of the per-broadcast figures.
        want = params["subscribers"] + 1
        while proc.poll() is None:
            m0 = [metrics(x.addr) for x in nodes]
            if sum(m.get("switchboard_connections", 0) for m in m0) >= want:
                break
            time.sleep(0.05)
        r0 = redis_counters(redis_url)
        stdout, _ = proc.communicate()
    wall = time.monotonic() - t0
    lines = [x for x in stdout.splitlines() if x.startswith("{")]
    if not lines:
        raise RuntimeError(f"loadgen printed no JSON line (exit {proc.returncode}); see {errpath}")
    out = json.loads(lines[-1])
    m1 = [metrics(x.addr) for x in nodes]
    c1 = [cpu_secs(x.proc.pid) for x in nodes]
    r1 = redis_counters(redis_url)
    lm = out.get("metrics", {})
    cpu_window = lm.get("cpu_of_pids", {})
    node_pct = [lm.get("cpu", {}).get("server_cpu_pct")] + [
        cpu_window.get(str(x.proc.pid)) for x in nodes[1:]]
    return {
        "loadgen": out,
        "wall_secs": round(wall, 2),
        "node_cpu_pct_window": node_pct,
        "redis_cpu_pct_window": cpu_window.get(str(r0["pid"])),
        "node_cpu_secs_run": [round(b - x, 3) for x, b in zip(c0, c1)],
        "redis": {
            "cpu_secs": round(r1["cpu_s"] - r0["cpu_s"], 4),
            "net_in_bytes": r1["net_in"] - r0["net_in"],
            "net_out_bytes": r1["net_out"] - r0["net_out"],
            "commands": r1["commands"] - r0["commands"],
            "by_command": {
                k: {"calls": c - r0["cmds"].get(k, (0, 0))[0], "usec": u - r0["cmds"].get(k, (0, 0))[1]}
                for k, (c, u) in r1["cmds"].items()
                if c - r0["cmds"].get(k, (0, 0))[0] > 0
            },
        },
        "bus": bus_deltas(nodes, m0, m1) if setup != "alone" else None,
    }


def conns_run(a, setup, case, params, nodes, workdir, run_id):
    """One `loadgen conns` per node, all at once; the nodes' connections are
    summed every half second meanwhile (the most held at once)."""
    redis_url = os.environ["TEST_REDIS_URL"]
    mem0 = int(redis_info(redis_url)["used_memory"])
    procs = []
    for i, x in enumerate(nodes):
        cmd = [a.loadgen, "conns", "--url", f"ws://{x.addr}", "--pid", str(x.proc.pid),
               "--connections", str(params["connections"]), "--hold-secs", str(params["hold"]),
               "--ramp-per-sec", str(params["ramp"]), "--json-only", "--label", f"{setup}-node{i + 1}"]
        err = open(os.path.join(workdir, f"{run_id}-loadgen{i + 1}.log"), "w")
        procs.append((subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True), err))
    most = 0
    while any(p.poll() is None for p, _ in procs):
        try:
            held = sum(metrics(x.addr).get("switchboard_connections", 0) for x in nodes)
            most = max(most, int(held))
        except OSError:
            pass
        time.sleep(0.5)
    outs = []
    for p, err in procs:
        stdout = p.stdout.read()
        err.close()
        lines = [x for x in stdout.splitlines() if x.startswith("{")]
        outs.append(json.loads(lines[-1]) if lines else {"error": f"no JSON line (exit {p.returncode})"})
    rss = [proc_kb(x.proc.pid, "VmRSS") for x in nodes]
    # The sessions outlive their connections by the recovery window: still
    # there now.
    mem1 = int(redis_info(redis_url)["used_memory"])
    return {"loadgen": outs, "most_held_at_once": most, "node_rss_kb_after": rss,
            "redis_used_memory_delta": mem1 - mem0}


def kill_run(a, setup, case, params, nodes, workdir, run_id):
    """measure-kill.mjs: HAProxy in front of the nodes, the official
    clients through it, the last node killed with SIGKILL by the script (so
    that the kill and the clients' times are on one clock)."""
    victim = nodes[-1]
    # Whose CPU is read over the kill-to-last-back window, beside HAProxy's
    # and the clients': who was busy.
    busy = [f"node{i + 1}={x.proc.pid}" for i, x in enumerate(nodes[:-1])]
    busy.append(f"redis={redis_counters(os.environ['TEST_REDIS_URL'])['pid']}")
    cmd = ["node", MEASURE_KILL, "--nodes", ",".join(x.addr for x in nodes),
           "--victim-pid", str(victim.proc.pid), "--cpu-pids", ",".join(busy)]
    for k, v in params.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    errpath = os.path.join(workdir, f"{run_id}-measure-kill.log")
    with open(errpath, "w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=600)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"measure-kill.mjs exit {proc.returncode}, no result; see {errpath}")
    out = json.loads(lines[-1])
    status = victim.proc.wait(timeout=10)
    if status != -signal.SIGKILL:
        raise RuntimeError(f"node 3 exited with {status}, not killed by SIGKILL")
    return {"kill": out}


def kill_faults(row):
    """What a kill run must not have: clients back not recovered or not
    back, numbers lost or received twice (a description, or None)."""
    k = row.get("kill")
    if not k:
        return None
    bad = [f"{k[x]} {x}" for x in ("not_recovered", "not_back", "lost", "duplicates", "unacked") if k[x]]
    if k["cut"] != k["on_killed_node"]:
        bad.append(f"{k['cut']} clients cut for {k['on_killed_node']} on the killed node")
    return ", ".join(bad) or None


def proc_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


# --- summary --------------------------------------------------------------


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "ms":
        return f"{v / 1000:.1f} ms"
    if unit == "x":
        return f"{v:.2f}×"
    if isinstance(v, float) and v < 100:
        return f"{v:.2f}"
    return f"{v:,.0f}"


def summarize(rows, kinds):
    """Markdown tables of the medians (and ratios) of `rows`."""
    out = []
    by = {}
    for r in rows:
        if r.get("error"):
            continue
        by.setdefault((r["case"], r["setup"]), []).append(r)
    case_ids = []
    for r in rows:
        if r["case"] not in case_ids:
            case_ids.append(r["case"])
    fan = [c for c in case_ids if kinds.get(c) in ("fanout", "rate")]
    if fan:
        out += table(by, fan, ["deliveries/s", "p50", "p99", "p99 same node", "p99 cross-node", "lost",
                               "Redis CPU, % of a core", "Redis CPU µs/broadcast",
                               "Redis bytes in / out per broadcast", "nodes' CPU µs/delivery", "drops"],
                     fanout_cells)
        out.append("Ratios of the medians; in brackets, the median of the ratios within each "
                   "repetition (the set-ups of one repetition run one after the other, so a "
                   "slow period of the machine hits them alike).")
        out.append("")
        out.append("| case | three / one, deliveries/s | one / alone | three / alone "
                   "| three / one, p99 | recovery off: three / one | three / alone |")
        out.append("| --- | --- | --- | --- | --- | --- | --- |")
        for c in fan:
            d = {s: med([r["loadgen"]["metrics"].get("deliveries_per_sec") for r in by.get((c, s), [])])
                 for s in SETUPS}
            p = {s: med([r["loadgen"]["metrics"]["latency_us"]["p99"] for r in by.get((c, s), [])])
                 for s in SETUPS}
            def both(x, y, p=d, key="deliveries_per_sec"):
                return f"{fmt(ratio(p[x], p[y]), 'x')} ({fmt(rep_ratio(by, c, x, y, key), 'x')})"
            out.append(f"| {c} | {both('three', 'one')} | {both('one', 'alone')} "
                       f"| {both('three', 'alone')} | {both('three', 'one', p, 'p99')} "
                       f"| {both('three-norec', 'one-norec')} | {both('three-norec', 'alone')} |")
        out.append("")
    con = [c for c in case_ids if kinds.get(c) == "conns"]
    if con:
        out += table(by, con, ["connections held (per node)", "most held at once, all nodes",
                               "bytes per connection, per node (median of runs)",
                               "Redis bytes per connection", "failures", "disconnects"],
                     conns_cells)
    out += kill_table([c for c in case_ids if kinds.get(c) == "kill"], by)
    return "\n".join(out)


def table(by, case_ids, columns, cells):
    """A Markdown table, a row per case of `case_ids` and set-up that has runs in `by`:
    the case, the set-up, the runs, then `columns`, which `cells(setup, runs)` fills."""
    columns = ["case", "set-up", "runs", *columns]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join(["---"] * len(columns)) + " |"]
    for c in case_ids:
        for s in SETUPS:
            rs = by.get((c, s), [])
            if rs:
                lines.append("| " + " | ".join([c, s, str(len(rs)), *cells(s, rs)]) + " |")
    return lines + [""]


def fanout_cells(s, rs):
    """A fan-out case's medians over the runs `rs` of set-up `s`."""
    ms = [r["loadgen"]["metrics"] for r in rs]
    dps = med([m.get("deliveries_per_sec") for m in ms])
    p50 = med([m["latency_us"]["p50"] for m in ms])
    p99 = med([m["latency_us"]["p99"] for m in ms])
    same = med([m.get("latency_us_publisher_url", {}).get("p99") for m in ms])
    cross = med([m.get("latency_us_other_urls", {}).get("p99") for m in ms])
    lost = sum(m.get("lost", 0) for m in ms)
    rcpu = med([per_broadcast(r["redis"]["cpu_secs"] * 1e6, r) for r in rs])
    rpct = med([r.get("redis_cpu_pct_window") for r in rs])
    rin = med([per_broadcast(r["redis"]["net_in_bytes"], r) for r in rs])
    rout = med([per_broadcast(r["redis"]["net_out_bytes"], r) for r in rs])
    ncpu = med([node_us_per_delivery(r) for r in rs])
    drops = sum((r["bus"] or {}).get("publish_dropped", 0)
                + (r["bus"] or {}).get("received_malformed", 0) for r in rs)
    alone = s == "alone"
    return [fmt(dps), fmt(p50, "ms"), fmt(p99, "ms"), fmt(same, "ms"), fmt(cross, "ms"), str(lost),
            "-" if alone else fmt(rpct), "-" if alone else fmt(rcpu),
            "-" if alone else f"{fmt(rin)} / {fmt(rout)}", fmt(ncpu), "-" if alone else str(drops)]


def conns_cells(s, rs):
    """A connections case's medians over the runs `rs` of set-up `s`."""
    n = len(rs[0]["loadgen"])
    held = [med([r["loadgen"][i].get("metrics", {}).get("connections_ok") for r in rs])
            for i in range(n)]
    per = [med([r["loadgen"][i].get("metrics", {}).get("bytes_per_connection") for r in rs])
           for i in range(n)]
    most = med([r["most_held_at_once"] for r in rs])
    conns = [sum(o.get("metrics", {}).get("connections_ok") or 0 for o in r["loadgen"])
             for r in rs]
    rmem = med([r["redis_used_memory_delta"] / c if c else None
                for r, c in zip(rs, conns)])
    fails = sum(o.get("metrics", {}).get("failures", 0) for r in rs for o in r["loadgen"])
    disc = sum(o.get("metrics", {}).get("disconnects", 0) for r in rs for o in r["loadgen"])
    return [" / ".join(fmt(h) for h in held), fmt(most), " / ".join(fmt(p) for p in per),
            "-" if s == "alone" else fmt(rmem), str(fails), str(disc)]


def kill_table(case_ids, by):
    """The kill case's lines: medians of the times, sums of what must be 0."""
    if not case_ids:
        return []
    out = ["| case | runs | clients | on the killed node | SIGKILL → recovered p50 | p99 | max "
           "| after the first attempt, p50 | not recovered | not back | lost | duplicates "
           "| reconnection delay | events/s | CPU in the window, % of a core: clients / HAProxy / "
           "nodes / Redis | client event-loop delay, max |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in case_ids:
        rs = [r["kill"] for s in SETUPS_OF["kill"] for r in by.get((c, s), [])]
        if not rs:
            continue
        t = [k["recovered_ms"] for k in rs]
        total = {x: sum(k[x] for k in rs) for x in ("not_recovered", "not_back", "lost", "duplicates")}
        retry = rs[0]["retry"]
        cpu = [k["cpu_pct_window"] for k in rs]
        nodes = med([sum(v for n, v in x.items() if n.startswith("node")) for x in cpu])
        # A thread that never turned in the window has no delay sampled, but
        # heard of the kill late.
        eld = med([max(max(w.get("max") or 0, w.get("kill_heard_after") or 0)
                       for w in k["event_loop_delay_ms"]) for k in rs])
        out.append(f"| {c} | {len(rs)} | {fmt(rs[0]['clients'])} | {fmt(med([k['on_killed_node'] for k in rs]))} "
                   f"| {fmt_ms(med([x['p50'] for x in t]))} | {fmt_ms(med([x['p99'] for x in t]))} "
                   f"| {fmt_ms(med([x['max'] for x in t]))} "
                   f"| {fmt_ms(med([k['after_attempt_ms']['p50'] for k in rs]))} "
                   f"| {total['not_recovered']} | {total['not_back']} | {total['lost']} | {total['duplicates']} "
                   f"| {retry['reconnectionDelay']} ms ± {retry['randomizationFactor'] * 100:.0f} %, "
                   f"max {retry['reconnectionDelayMax']} ms | {rs[0]['rate']} "
                   f"| {' / '.join(fmt(med([x.get(n) for x in cpu])) for n in ('clients', 'haproxy'))} "
                   f"/ {fmt(nodes)} / {fmt(med([x.get('redis') for x in cpu]))} | {fmt_ms(eld)} |")
    out.append("")
    return out


def fmt_ms(v):
    return "-" if v is None else f"{v:,.0f} ms"


def rep_ratio(by, case, x, y, key):
    """The median over repetitions of x's figure / y's in the same one."""
    def fig(r):
        m = r["loadgen"]["metrics"]
        return m["latency_us"]["p99"] if key == "p99" else m.get(key)
    xs = {(r.get("sitting", 0), r["rep"]): fig(r) for r in by.get((case, x), [])}
    ys = {(r.get("sitting", 0), r["rep"]): fig(r) for r in by.get((case, y), [])}
    return med([ratio(xs[k], ys[k]) for k in xs if k in ys])


def ratio(a, b):
    return a / b if a is not None and b else None


def broadcasts(r):
    """Broadcasts of the run: what the nodes published on the bus."""
    bus = r.get("bus") or {}
    return bus.get("published") or r["loadgen"]["metrics"].get("published")


def per_broadcast(v, r):
    b = broadcasts(r)
    return v / b if b else None


def node_us_per_delivery(r):
    """The nodes' CPU in the measured window per delivery, in µs."""
    m = r["loadgen"]["metrics"]
    pct = [x for x in r["node_cpu_pct_window"] if x is not None]
    dps = m.get("deliveries_per_sec")
    if not pct or not dps:
        return None
    return sum(pct) / 100 / dps * 1e6


# --- main -----------------------------------------------------------------


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = open("/proc/loadavg").read().split()[:3]
    return {"cpu": cpu, "cores": os.cpu_count(), "loadavg_at_start": load}


def report_from(paths):
    rows, metas = [], []
    for sitting, path in enumerate(paths.split(",")):
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                if r.get("scenario") == "cluster-meta":
                    metas.append(r)
                else:
                    r["sitting"] = sitting
                    rows.append(r)
    kinds = {r["case"]: r["scenario"].removeprefix("cluster-") for r in rows}
    for m in metas:
        print(f"Cluster benchmark, {m.get('date')}, commit {m.get('commit')}, {m.get('cpu')} "
              f"({m.get('cores')} cores), {m.get('reps')} run(s) per set-up and case; load average "
              f"at start {' '.join(m.get('loadavg_at_start', []))}.")
    print("Medians.\n")
    print(summarize(rows, kinds))


def main():
    a = parse_args()
    if a.from_file:
        report_from(a.from_file)
        return
    for path in (a.bin, a.loadgen):
        if not os.access(path, os.X_OK):
            sys.exit(f"bench-cluster: {path} not built (make bench-build)")
    # The cluster's store: a database of its own on the throwaway server.
    pg = os.environ["TEST_POSTGRES_URL"]
    subprocess.run(["psql", "-q", pg, "-c", "CREATE DATABASE switchboard_bench"],
                   check=True, capture_output=True)
    a.store_url = pg.rsplit("/", 1)[0] + "/switchboard_bench"
    all_cases = cases(a.quick, a.kill_clients)
    kinds = {c: k for c, k, _ in all_cases}
    only = [x for x in a.only.split(",") if x]
    selected = [c for c in all_cases if not only or c[0] in only or c[1] in only]
    kill_skipped = kill_skip() if any(k == "kill" for _, k, _ in selected) else None
    if kill_skipped:
        log(f"the kill case is skipped: {kill_skipped}")
        selected = [c for c in selected if c[1] != "kill"]
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    logdir = os.path.join(ROOT, "target/bench-cluster/logs")
    os.makedirs(logdir, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="sb-bench-cluster.")
    started = datetime.now(timezone.utc)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    meta = {"date": started.strftime("%Y-%m-%d %H:%M UTC"), "commit": commit, **machine(),
            "reps": a.reps, "quick": a.quick}
    log(f"{meta}")
    rows = []
    with open(a.out, "w") as out:
        out.write(json.dumps({"scenario": "cluster-meta", **meta}) + "\n")
        n = 0
        reps = max([a.reps] + [p.get("min_reps", 0) for _, _, p in selected])
        for rep in range(1, reps + 1):
            for case, kind, params in selected:
                if rep > max(a.reps, params.get("min_reps", 0)):
                    continue
                for setup in SETUPS_OF.get(kind, SETUPS):
                    n += 1
                    run_id = f"{case}-{setup}-{rep}"
                    row = {"scenario": f"cluster-{kind}", "case": case, "setup": setup, "rep": rep,
                           "params": params}
                    nodes = []
                    try:
                        # An empty Redis for every run: the sessions of the
                        # runs before would expire during this one (and
                        # skew its Redis memory and CPU).
                        subprocess.run(["redis-cli", "-u", os.environ["TEST_REDIS_URL"], "FLUSHALL"],
                                       check=True, capture_output=True, timeout=30)
                        nodes = start_setup(a, setup, logdir, run_id)
                        if kind == "conns":
                            row.update(conns_run(a, setup, case, params, nodes, logdir, run_id))
                        elif kind == "kill":
                            row.update(kill_run(a, setup, case, params, nodes, logdir, run_id))
                        else:
                            row.update(fanout_run(a, setup, case, params, nodes, logdir, run_id))
                    except Exception as e:  # one failed run is reported, the rest go on
                        row["error"] = f"{type(e).__name__}: {e}"
                    finally:
                        for x in nodes:
                            x.stop()
                    row["machine_loadavg"] = open("/proc/loadavg").read().split()[:3]
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                    rows.append(row)
                    log(f"{run_id}: {brief(row)}")
    table = summarize(rows, kinds)
    mins = (datetime.now(timezone.utc) - started).total_seconds() / 60
    head = (f"Cluster benchmark, {meta['date']}, commit {commit}, {meta['cpu']} "
            f"({meta['cores']} cores), {a.reps} run(s) per set-up and case"
            + "".join(f" ({c}: {p['min_reps']})" for c, _, p in selected
                      if p.get("min_reps", 0) > a.reps)
            + ", alternating "
            f"alone / one / three; load average at start {' '.join(meta['loadavg_at_start'])}; "
            f"{mins:.1f} min. Medians."
            + (f" The kill case was skipped: {kill_skipped}." if kill_skipped else "") + "\n")
    report = os.path.join(os.path.dirname(os.path.abspath(a.out)), "cluster-report.md")
    with open(report, "w") as f:
        f.write(head + "\n" + table + "\n")
    print(head)
    print(table)
    log(f"runs in {a.out}, report in {report}, logs in {logdir}")
    failed = [r for r in rows if r.get("error")]
    if failed:
        log(f"{len(failed)} run(s) failed")
    faulty = [r for r in rows if kill_faults(r)]
    for r in faulty:
        log(f"{r['case']} run {r['rep']}: {kill_faults(r)} (must be 0)")
    if failed or faulty:
        sys.exit(1)


def brief(row):
    if row.get("error"):
        return "ERROR " + row["error"]
    if "kill" in row:
        k = row["kill"]
        t = k["recovered_ms"]
        return (f"{k['on_killed_node']} clients on the killed node, SIGKILL → recovered p50 {t['p50']} ms, "
                f"p99 {t['p99']} ms, max {t['max']} ms; {k['not_recovered']} not recovered, "
                f"{k['not_back']} not back, {k['lost']} lost, {k['duplicates']} duplicates; "
                f"after the first attempt p50 {k['after_attempt_ms']['p50']} ms; CPU in the window, % of a "
                f"core: {k['cpu_pct_window']}; client event-loop delay {k['event_loop_delay_ms']}")
    lg = row["loadgen"]
    if isinstance(lg, list):
        return " ".join(f"{o.get('metrics', {}).get('connections_ok')} conns "
                        f"{o.get('metrics', {}).get('bytes_per_connection')} B/conn" for o in lg) + \
            f", most at once {row['most_held_at_once']}"
    m = lg.get("metrics", {})
    lat = m.get("latency_us", {})
    return (f"{m.get('deliveries_per_sec')} deliveries/s, p99 {lat.get('p99')} µs, lost {m.get('lost')}, "
            f"cross-node p99 {m.get('latency_us_other_urls', {}).get('p99')}, bus {row.get('bus')}, "
            f"redis {row['redis']}")


if __name__ == "__main__":
    main()
