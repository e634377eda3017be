// A measurement, not a test (bench/cluster.py's `kill` case runs it): the
// time from a cluster node's SIGKILL until each of its clients is recovered
// on another node, with the official socket.io-client.
//
//   node measure-kill.mjs --nodes ADDR,ADDR,ADDR --victim-pid PID [options]
//
// The nodes (host:port each, cluster mode, the benchmark handler of
// bench/bench.toml: every socket in room `all`, `pub` broadcast as `msg`)
// are started by the caller; this starts HAProxy in front of them
// (tests/lb/haproxy.sh, as lb.test.mjs and faults.test.mjs have it),
// connects --clients WebSocket clients through it (round robin: a third on
// each node) in --workers worker threads, and a publisher on the first node
// that sends `pub` with 1, 2, 3, … at --rate a second. After --lead-ms of
// that it kills the node --victim (1-based; the last by default) with
// SIGKILL, waits until every client of that node has reconnected through
// the proxy (the counting starts from the node's `switchboard_connections`
// just before), publishes --tail-ms more, and waits until every client has
// the last number. Prints one JSON line: for the killed node's clients the
// time from the kill until each was back with `socket.recovered === true`
// (p50, p99, max), how many came back not recovered or not at all, and for
// every client the numbers lost or received twice (both must be 0).
//
// The clients reconnect with --delay / --delay-max / --randomization
// (socket.io-client's reconnectionDelay, reconnectionDelayMax,
// randomizationFactor): the first attempt comes delay × (1 ± randomization)
// after the cut, which is most of the time measured. Also printed, to tell
// whether this process kept up: the CPU of this process (all threads), of
// HAProxy and of the --cpu-pids ones (name=pid,…) over the kill-to-last-back
// window, in % of a core, and each worker's event-loop delay (from the first
// event published to the end of that window) and how late it heard of the
// kill.

import { readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { parseArgs } from "node:util";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { io } from "socket.io-client";
import { connected, withTimeout } from "./helpers.mjs";
import { sessionsOf, startHaproxy } from "./lb.mjs";

/** Milliseconds on CLOCK_MONOTONIC: one clock for every thread. */
const now = () => Number(process.hrtime.bigint()) / 1e6;

/** Connections opened at once by a worker while it connects its clients. */
const CONNECTING_AT_ONCE = 100;
/** Bound on connecting every client. */
const CONNECT_MS = 120_000;
/** Bound on the killed node's clients being back. */
const BACK_MS = 30_000;
/** Bound on every client having the last number once the publisher is done. */
const DRAIN_MS = 30_000;

async function main() {
  const { values: o } = parseArgs({
    options: {
      nodes: { type: "string" },
      "victim-pid": { type: "string" },
      victim: { type: "string" },
      clients: { type: "string", default: "1000" },
      workers: { type: "string", default: "1" },
      rate: { type: "string", default: "10" },
      "lead-ms": { type: "string", default: "1000" },
      "tail-ms": { type: "string", default: "1000" },
      delay: { type: "string", default: "200" },
      "delay-max": { type: "string", default: "1000" },
      randomization: { type: "string", default: "0.5" },
      "cpu-pids": { type: "string", default: "" },
    },
  });
  if (!o.nodes || !o["victim-pid"]) {
    console.error("usage: node measure-kill.mjs --nodes ADDR,ADDR,ADDR --victim-pid PID [--victim N] [--clients N] …");
    process.exit(2);
  }
  const nodes = o.nodes.split(",").map((addr) => ({ url: `http://${addr}`, port: Number(addr.split(":").at(-1)) }));
  const victim = Number(o.victim ?? nodes.length) - 1;
  const total = Number(o.clients);
  const retry = {
    reconnectionDelay: Number(o.delay),
    reconnectionDelayMax: Number(o["delay-max"]),
    randomizationFactor: Number(o.randomization),
  };

  const lb = await startHaproxy(nodes);
  // Whose CPU is read over the window: these, HAProxy's and this process's.
  const pids = Object.fromEntries(o["cpu-pids"].split(",").filter(Boolean).map((x) => x.split("=")));
  pids.haproxy = lb.pid;
  pids.clients = process.pid;
  let clients;
  let publisher;
  try {
    const connectedAt = now();
    clients = await Clients.start(lb.url, total, Number(o.workers), retry);
    const connectSecs = (now() - connectedAt) / 1000;
    const perNode = await sessionsOf(nodes);
    publisher = await Publisher.start(nodes[0].url, Number(o.rate));
    clients.tell({ type: "publishing" });

    await delay(Number(o["lead-ms"]));
    const onVictim = (await sessionsOf(nodes))[victim];
    const cpu0 = cpuOf(pids);
    const killedAt = now();
    process.kill(Number(o["victim-pid"]), "SIGKILL");
    clients.tell({ type: "killed", at: killedAt });
    const sentAtKill = publisher.sent;
    await clients.back(onVictim, BACK_MS).catch((err) => console.error(`measure-kill: ${err.message}`));
    const windowMs = now() - killedAt;
    const sentInWindow = publisher.sent - sentAtKill;
    const cpu = cpuOf(pids);
    clients.tell({ type: "window" });

    await delay(Number(o["tail-ms"]));
    const { last, unacked } = await publisher.stop();
    const results = await clients.drain(last, DRAIN_MS);
    const members = results.flatMap((r) => r.members);
    const cut = members.filter((m) => m.gone.length > 0);
    const times = [];
    const afterAttempt = [];
    const attempts = {};
    let notRecovered = 0;
    let notBack = 0;
    for (const m of cut) {
      attempts[m.attemptAt.length] = (attempts[m.attemptAt.length] ?? 0) + 1;
      if (m.back.length === 0) notBack++;
      else if (!m.back[0].recovered) notRecovered++;
      else {
        times.push(m.back[0].at - killedAt);
        afterAttempt.push(m.back[0].at - m.attemptAt[0]);
      }
    }
    const out = {
      clients: total,
      workers: clients.workers.length,
      transports: ["websocket"],
      retry,
      rate: publisher.rate,
      connect_secs: round(connectSecs, 2),
      sessions_per_node: perNode,
      on_killed_node: onVictim,
      cut: cut.length,
      back: cut.length - notBack,
      recovered: times.length,
      not_recovered: notRecovered,
      not_back: notBack,
      recovered_ms: summary(times),
      // The part after the client's first attempt: the proxy, the node, Redis.
      after_attempt_ms: summary(afterAttempt),
      cut_ms_max: round(Math.max(...cut.map((m) => m.gone[0] - killedAt)), 1),
      attempts,
      window_ms: round(windowMs, 1),
      events: last,
      events_before_kill: sentAtKill,
      // Sent while the killed node's clients were away (they missed those).
      events_in_window: sentInWindow,
      unacked,
      lost: members.reduce((sum, m) => sum + m.lost, 0),
      duplicates: members.reduce((sum, m) => sum + m.duplicates, 0),
      clients_short: members.filter((m) => m.lost > 0 || m.duplicates > 0).length,
      cpu_pct_window: Object.fromEntries(
        Object.entries(cpu).map(([name, secs]) => [name, round(((secs - cpu0[name]) * 1e5) / windowMs, 1)]),
      ),
      event_loop_delay_ms: results.map((r) => r.eventLoopDelay),
    };
    console.log(JSON.stringify(out));
  } finally {
    publisher?.close();
    await clients?.terminate();
    await lb.stop();
  }
}

/**
 * The clients, in worker threads (so that the publisher's pace and the
 * kill's time are kept by a thread of their own); each worker says when
 * its clients are connected, when one is cut and when one is back.
 */
class Clients {
  static async start(url, total, workers, retry) {
    const clients = new Clients();
    const n = Math.max(1, Math.min(workers, total));
    const ready = [];
    for (let w = 0; w < n; w++) {
      const share = Math.floor(total / n) + (w < total % n ? 1 : 0);
      const worker = new Worker(new URL(import.meta.url), { workerData: { url, clients: share, retry } });
      /** The answers awaited from it, by type. */
      const pending = new Map();
      worker.on("message", (m) => {
        if (m.type === "gone") clients.gone++;
        else if (m.type === "back") {
          clients.backs++;
          clients.onBack();
        } else pending.get(m.type)?.resolve(m);
      });
      worker.on("error", (err) => {
        for (const p of pending.values()) p.reject(err);
      });
      const next = (type, ms, what) =>
        withTimeout(new Promise((resolve, reject) => pending.set(type, { resolve, reject })), ms, what);
      clients.workers.push({ worker, next });
      ready.push(next("ready", CONNECT_MS, `worker ${w + 1}'s ${share} clients connected`));
    }
    try {
      await Promise.all(ready);
    } catch (err) {
      await clients.terminate();
      throw err;
    }
    return clients;
  }

  constructor() {
    this.workers = [];
    /** Clients cut, and reconnections, so far. */
    this.gone = 0;
    this.backs = 0;
    this.onBack = () => {};
  }

  tell(msg) {
    for (const { worker } of this.workers) worker.postMessage(msg);
  }

  /** Resolves once `n` clients are back, rejects after `ms`. */
  back(n, ms) {
    const all = new Promise((resolve) => {
      this.onBack = () => this.backs >= n && resolve();
      this.onBack();
    });
    return withTimeout(all, ms, `${n} clients of the killed node back (${this.backs} so far, ${this.gone} cut)`);
  }

  /** Each client's account, once each has `last` (or after `ms`). */
  drain(last, ms) {
    return Promise.all(
      this.workers.map(({ worker, next }) => {
        const result = next("result", ms + 10_000, "a worker's result");
        worker.postMessage({ type: "drain", last, ms });
        return result;
      }),
    );
  }

  terminate() {
    return Promise.all(this.workers.map(({ worker }) => worker.terminate()));
  }
}

/**
 * A client of `url` sending `pub` with 1, 2, 3, … at `rate` a second (a
 * timer per event is the pace, not a wait for anything), each with an ack.
 */
class Publisher {
  static async start(url, rate) {
    const socket = io(url, { forceNew: true, reconnection: false, transports: ["websocket"] });
    await connected(socket);
    return new Publisher(socket, rate);
  }

  constructor(socket, rate) {
    this.socket = socket;
    this.rate = rate;
    this.sent = 0;
    this.publishing = true;
    this.acks = [];
    const t0 = now();
    this.done = (async () => {
      while (this.publishing) {
        this.sent++;
        this.acks.push(socket.timeout(10_000).emitWithAck("pub", this.sent));
        await delay(Math.max(0, t0 + (this.sent * 1000) / rate - now()));
      }
    })();
  }

  /** Stops; resolves with the last number sent and how many went unacked. */
  async stop() {
    this.publishing = false;
    await this.done;
    const replies = await Promise.allSettled(this.acks);
    return { last: this.sent, unacked: replies.filter((r) => r.status === "rejected").length };
  }

  close() {
    this.socket.close();
  }
}

/** CPU seconds (user and system) each of `pids` ({name: pid}) has used so far. */
function cpuOf(pids) {
  const ticks = 100; // USER_HZ: what /proc counts in on Linux
  return Object.fromEntries(
    Object.entries(pids).map(([name, pid]) => {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      return [name, (Number(fields[11]) + Number(fields[12])) / ticks];
    }),
  );
}

/** p50, p90, p99 and max of `xs` (ms, nearest rank), and how many. */
function summary(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q) => (s.length ? round(s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)], 1) : null);
  return { n: s.length, min: at(1e-9), p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) };
}

function round(x, digits) {
  return Number.isFinite(x) ? Number(x.toFixed(digits)) : null;
}

/**
 * A worker: `clients` clients through the proxy at `url`, each counting the
 * numbers of `msg` it gets (one publisher: they come in order, so a gap is
 * a loss and a number not above the last is a duplicate); says when one is
 * cut and when one is back.
 */
async function worker({ url, clients, retry }) {
  const members = [];
  /** Once draining: the last number, and a call for each client reaching it. */
  let drain = null;
  const open = async () => {
    const socket = io(url, { forceNew: true, transports: ["websocket"], reconnection: true, ...retry });
    const m = { socket, last: 0, lost: 0, duplicates: 0, gone: [], back: [], attemptAt: [] };
    socket.on("msg", (n) => {
      const before = m.last;
      if (n === m.last + 1) m.last = n;
      else if (n <= m.last) m.duplicates++;
      else {
        m.lost += n - m.last - 1;
        m.last = n;
      }
      if (drain && before < drain.last && m.last >= drain.last) drain.reached();
    });
    await connected(socket, CONNECT_MS);
    socket.on("disconnect", () => {
      m.gone.push(now());
      parentPort.postMessage({ type: "gone" });
    });
    socket.on("connect", () => {
      m.back.push({ at: now(), recovered: socket.recovered });
      parentPort.postMessage({ type: "back" });
    });
    socket.io.on("reconnect_attempt", () => m.attemptAt.push(now()));
    members.push(m);
  };
  for (let i = 0; i < clients; i += CONNECTING_AT_ONCE) {
    await Promise.all(Array.from({ length: Math.min(CONNECTING_AT_ONCE, clients - i) }, open));
  }
  parentPort.postMessage({ type: "ready" });

  // How far behind the clients' thread is, from the first event published
  // to the end of the window: the largest delay of its event loop, and how
  // late it heard of the kill (a thread that has fallen behind the stream
  // notices the cut late too).
  const eld = monitorEventLoopDelay({ resolution: 10 });
  let eventLoopDelay = null;
  let killHeardAfter = null;
  parentPort.on("message", async (msg) => {
    if (msg.type === "publishing") eld.enable();
    else if (msg.type === "killed") killHeardAfter = now() - msg.at;
    else if (msg.type === "window") {
      eld.disable();
      const ms = (ns) => (eld.count ? round(ns / 1e6, 1) : null);
      eventLoopDelay = { p99: ms(eld.percentile(99)), max: ms(eld.max), kill_heard_after: round(killHeardAfter, 1) };
    } else if (msg.type === "drain") {
      let short = members.filter((m) => m.last < msg.last).length;
      const done = new Promise((resolve) => {
        drain = { last: msg.last, reached: () => --short === 0 && resolve() };
        if (short === 0) resolve();
      });
      await withTimeout(done, msg.ms, `every client with ${msg.last}`).catch(() => {});
      // What never came: a loss too. (The main thread terminates this
      // worker next, which closes the clients.)
      for (const m of members) if (m.last < msg.last) m.lost += msg.last - m.last;
      parentPort.postMessage({
        type: "result",
        eventLoopDelay,
        members: members.map(({ lost, duplicates, gone, back, attemptAt }) => ({ lost, duplicates, gone, back, attemptAt })),
      });
    }
  });
}

// Last: the classes above are declared by now.
if (isMainThread) {
  await main();
} else {
  await worker(workerData);
}
