// HAProxy in front of Switchboard nodes, for the load-balancer tests:
// tests/lb/haproxy.sh (Debian's haproxy with tests/lb/haproxy.cfg) on a
// free loopback port, and what its statistics say.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { connect, createServer } from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { REPO_ROOT } from "./server.mjs";

const SCRIPT = path.join(REPO_ROOT, "tests/lb/haproxy.sh");
const START_TIMEOUT_MS = 10_000;

/**
 * Whether HAProxy is there, installing it when missing and allowed (as
 * root, with apt-get): the `skip` option of a test that needs it. Under CI
 * a missing HAProxy fails instead.
 */
export function haproxySkip() {
  try {
    execFileSync(SCRIPT, ["--install"], { stdio: ["ignore", "ignore", "inherit"] });
    execFileSync("haproxy", ["-v"], { stdio: "ignore" });
    return false;
  } catch {
    if (process.env.CI) throw new Error("CI must run the load-balancer tests: HAProxy is missing and cannot be installed");
    return "HAProxy not installed";
  }
}

/** A TCP port nothing listens on now (the kernel's pick, released). */
export async function freePort() {
  const server = createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The rows of HAProxy's statistics (`/lb/stats;csv`), as objects. */
export async function lbStats(url) {
  const res = await fetch(`${url}/lb/stats;csv`, { signal: AbortSignal.timeout(2_000) });
  if (!res.ok) throw new Error(`HAProxy statistics: ${res.status}`);
  const [header, ...lines] = (await res.text()).trim().split("\n");
  const names = header.replace(/^# /, "").split(",");
  return lines.map((line) => Object.fromEntries(line.split(",").map((v, i) => [names[i], v])));
}

/** The status of each of the backend's servers: {n1: "UP", …}. */
export async function serverStatus(url) {
  const rows = await lbStats(url);
  return Object.fromEntries(
    rows.filter((r) => r.pxname === "nodes" && r.svname !== "BACKEND").map((r) => [r.svname, r.status]),
  );
}

/** A node's figure `name` from its /metrics (a line `name value`). */
export async function metric(node, name) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} not in /metrics of ${node.url}`);
  return Number(line.slice(name.length + 1));
}

/**
 * Engine.IO sessions open on each of `nodes` (`switchboard_connections`;
 * 0 for a node that is no longer running).
 */
export function sessionsOf(nodes) {
  return Promise.all(nodes.map((node) => (node.alive === false ? 0 : metric(node, "switchboard_connections"))));
}

/**
 * Resolves once `check()` resolves true (asked every 50 ms: HAProxy's
 * checks and statistics have no events to await); rejects after `ms`.
 */
export async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Waits until HAProxy at `url` says its server `name` is `status` (UP, DOWN). */
export function untilServer(url, name, status, ms = 10_000) {
  return until(async () => (await serverStatus(url))[name] === status, ms, `${name} ${status}`);
}

/**
 * Starts HAProxy in front of `nodes` (each with a `port`) and resolves once
 * its statistics say every node is UP (its health checks of /readyz
 * passed): `{url, port, pid, stop(), output()}`.
 */
export async function startHaproxy(nodes) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(SCRIPT, [`127.0.0.1:${port}`, ...nodes.map((n) => `127.0.0.1:${n.port}`)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  const log = [];
  createInterface({ input: child.stderr }).on("line", (line) => {
    log.push(line);
    if (log.length > 200) log.shift();
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const output = () => log.join("\n");
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    return exited;
  };
  process.on("exit", () => child.kill("SIGKILL"));

  const allUp = async () => {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`haproxy exited: ${JSON.stringify(await exited)}`);
    }
    const status = await serverStatus(url).catch(() => ({}));
    return Object.keys(status).length === nodes.length && Object.values(status).every((s) => s === "UP");
  };
  try {
    await until(allUp, START_TIMEOUT_MS, "HAProxy and every node UP");
  } catch (err) {
    await stop();
    err.message += `\n--- haproxy output ---\n${output()}`;
    throw err;
  }
  return { url, port, pid: child.pid, stop, output };
}

/**
 * The `after` hook of a load-balancer test file: stops HAProxy (`lb`, when
 * it started; it must exit cleanly), then runs each of `steps` (stopping
 * the nodes and whatever else was started), whatever fails — a process
 * left running would keep the test file from ever ending. Throws the first
 * failure once everything ran.
 */
export async function stopAll(lb, steps) {
  const failures = [];
  const check = (step) => step().catch((err) => failures.push(err));
  if (lb) {
    await check(async () => {
      const status = await lb.stop();
      assert.equal(status.code ?? 0, 0, `haproxy exit ${JSON.stringify(status)}\n${lb.output()}`);
    });
  }
  for (const step of steps) await check(step);
  if (failures.length) throw failures[0];
}

/**
 * A TCP forwarder on a loopback port to `target` (host:port) that can be
 * unplugged (its connections cut, its port closed: new ones refused), as
 * when what is behind it goes away, and plugged in again on the same port.
 */
export class Plug {
  constructor(target) {
    const [host, port] = target.split(":");
    this.sockets = new Set();
    this.server = createServer((client) => {
      const upstream = connect(Number(port), host);
      for (const [a, b] of [
        [client, upstream],
        [upstream, client],
      ]) {
        this.sockets.add(a);
        a.pipe(b);
        a.on("error", () => b.destroy());
        a.on("close", () => {
          this.sockets.delete(a);
          b.destroy();
        });
      }
    });
  }

  /** Listens on a free port (the first time) or on the same one again. */
  async plugIn() {
    await new Promise((resolve) => this.server.listen(this.port ?? 0, "127.0.0.1", resolve));
    this.port = this.server.address().port;
    return this;
  }

  /** Cuts every connection and closes the port. */
  async unplug() {
    const closed = new Promise((resolve) => this.server.close(resolve));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}
