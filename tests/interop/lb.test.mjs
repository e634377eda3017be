// Three Switchboard nodes behind HAProxy (Debian's, configured by
// tests/lb/haproxy.cfg), as a deployment has them: official
// socket.io-client clients connect to the proxy only.
//
// - New clients are spread over the nodes (round robin): WebSocket-only
//   clients, long-polling-only clients and clients that start on polling
//   and upgrade (the upgrade's request passes through to the same node).
// - Long-polling is sticky (the proxy's cookie, kept by the client with
//   `withCredentials: true`): every request of a polling session reaches
//   the node that holds it, through many ping cycles; without that the
//   session would be unknown to the node a request lands on, and the
//   client disconnected.
// - A broadcast from a client of one node reaches every client of every
//   node, once, round after round; nobody is disconnected, nothing is
//   dropped on the bus.
// - A node that is not ready (its store unreachable: its connection to
//   PostgreSQL goes through a plug the test pulls) is taken out by
//   HAProxy's health check of /readyz: new clients go to the others, while
//   the clients it holds, long-polling ones included, stay and still get
//   broadcasts; plugged in again, it takes new clients again.
// - A rolling restart: a node stopped with SIGTERM closes its sessions,
//   whose clients reconnect through the proxy to the other nodes (the
//   polling one's cookie names the stopped node: the proxy sends it
//   elsewhere) and are recovered there (connection state recovery from
//   Redis: same socket, rooms, the event emitted while they were away,
//   once); started again on its address, the node is checked ready and
//   takes new clients.
//
// Needs TEST_REDIS_URL and TEST_POSTGRES_URL (`make interop` runs under
// tests/redis/with-redis.sh and tests/postgres/with-postgres.sh) and
// HAProxy (installed with apt-get when missing, as root); skipped without
// them, failing under CI.
//
// Which node a client is on is read from the nodes' /metrics
// (`switchboard_connections`): the clients connect one at a time, and the
// node whose count went up holds the new one.

import assert from "node:assert/strict";
import { after, afterEach, before, test } from "node:test";
import { io } from "socket.io-client";
import { CLUSTER_CONFIG, clusterEnv, clusterSkip, createDatabase } from "./cluster.mjs";
import { Clients, Recorder, ack, connected, once, stopServer } from "./helpers.mjs";
import { Plug, haproxySkip, sessionsOf, startHaproxy, stopAll, until, untilServer } from "./lb.mjs";
import { startServer } from "./server.mjs";

const skip = clusterSkip() || haproxySkip();
const KEY = `sblb-${process.pid}-${Date.now()}`;
// Short ping cycles: a long-polling client sends and receives many
// requests during the test, each of which must reach its node.
const PING_INTERVAL_MS = 300;

let nodes = [];
let lb;
let clients;
/** The third node's connection to PostgreSQL. */
let plug;
/** The nodes' environment (a restarted node gets it again). */
let env;

before(async () => {
  if (skip) return;
  const store = createDatabase();
  env = {
    ...clusterEnv(store, KEY),
    SWITCHBOARD_ENGINE_PING_INTERVAL_MS: String(PING_INTERVAL_MS),
    // HAProxy adds X-Forwarded-For: per-address admission counts clients.
    SWITCHBOARD_SERVER_TRUSTED_PROXIES: "127.0.0.1",
  };
  // One after the other: the first migrates the shared database.
  for (let i = 0; i < 2; i++) nodes.push(await startServer({ config: CLUSTER_CONFIG, env }));
  const url = new URL(store);
  plug = await new Plug(url.host).plugIn();
  url.port = String(plug.port);
  nodes.push(await startServer({ config: CLUSTER_CONFIG, env: { ...env, SWITCHBOARD_STORE_URL: url.href } }));
  lb = await startHaproxy(nodes);
  clients = new Clients(lb.url);
});

afterEach(() => clients?.closeAll());

after(async () => {
  clients?.closeAll();
  await stopAll(lb, [...nodes.map((node) => () => stopServer(node)), async () => plug?.unplug()]);
});

/** Engine.IO sessions open on each node. */
function sessions() {
  return sessionsOf(nodes);
}

const KINDS = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"], withCredentials: true },
  upgrade: { withCredentials: true },
};

/**
 * A client of `kind` through the proxy, connected (and upgraded, for
 * `upgrade`); its node is the one whose session count went up.
 */
async function member(name, kind, opts = {}) {
  const before = await sessions();
  const socket = clients.track(
    io(`${lb.url}/`, { forceNew: true, reconnection: false, ...KINDS[kind], ...opts }),
  );
  const engine = socket.io.engine;
  const upgraded = kind === "upgrade" ? once(engine, "upgrade") : null;
  let pings = 0;
  engine.on("ping", () => pings++);
  await connected(socket);
  await upgraded;
  const now = await sessions();
  const grew = now.map((n, i) => n - before[i]);
  const node = grew.indexOf(1);
  assert.ok(node >= 0 && grew.filter((d) => d !== 0).length === 1, `${name}: sessions ${before} -> ${now}`);
  const m = {
    name,
    kind,
    node,
    socket,
    engineId: engine.id,
    get pings() {
      return pings;
    },
    news: new Recorder(socket, "news", (data) => data.id),
    markers: new Recorder(socket, "marker", (n) => n),
    gone: new Recorder(socket, "disconnect", (reason) => reason),
  };
  assert.deepEqual(await ack(socket, "join", "lb"), { ok: true });
  return m;
}

/** A client of `kind` on node `i` (new clients go round the nodes up). */
async function memberOn(i, kind, opts = {}) {
  for (let tries = 1; tries <= nodes.length; tries++) {
    const m = await member(`${kind}@${i}.${tries}`, kind, opts);
    if (m.node === i) return m;
  }
  assert.fail(`no new ${kind} client reached node ${i}`);
}

/**
 * A client of the first node itself (not through the proxy), once the
 * sessions of earlier tests are gone from every node (counting who goes
 * where needs a quiet start).
 */
async function publisher() {
  await until(async () => (await sessions()).every((n) => n === 0), 5_000, "no session left");
  const socket = clients.track(io(nodes[0].url, { forceNew: true, reconnection: false, transports: ["websocket"] }));
  return connected(socket);
}

let lastId = 0;

/**
 * `publisher` broadcasts news to the room, then a marker to the
 * namespace; each member must hold the news once when its marker comes
 * (one publisher, in order on every node).
 */
async function round(from, members) {
  const id = ++lastId;
  assert.equal((await ack(from, "broadcast", { event: "news", data: { id }, rooms: ["lb"] })).ok, true);
  assert.equal((await ack(from, "broadcast", { event: "marker", data: id })).ok, true);
  for (const m of members) {
    await m.markers.waitUntil((items) => items.includes(id), `marker ${id} for ${m.name}`);
    assert.equal(m.news.items.filter((n) => n === id).length, 1, `${m.name} (node ${m.node}) got news ${id} once`);
  }
}

/** Neither left nor moved: the same session, on its transport. */
function stayed(m) {
  assert.deepEqual(m.gone.items, [], m.name);
  assert.equal(m.socket.io.engine.id, m.engineId, m.name);
  const transport = m.kind === "polling" ? "polling" : "websocket";
  assert.equal(m.socket.io.engine.transport.name, transport, m.name);
}

/** Waits until every polling member has seen `n` more pings. */
async function pingCycles(members, n) {
  const polling = members.filter((m) => m.kind === "polling");
  const targets = polling.map((m) => m.pings + n);
  await Promise.all(
    polling.map(async (m, i) => {
      while (m.pings < targets[i]) await once(m.socket.io.engine, "ping");
    }),
  );
}

test("clients spread over three nodes behind HAProxy all get a broadcast from another node, polling stays sticky", { skip, timeout: 60_000 }, async () => {
  const from = await publisher();
  // Interleaved: round robin gives each node one of each kind.
  const members = [];
  for (const kind of ["websocket", "polling", "upgrade"]) {
    for (let i = 1; i <= 3; i++) members.push(await member(`${kind}${i}`, kind));
  }
  const placed = await sessions();

  // Spread: every node holds a WebSocket-only, a polling and an upgraded client.
  for (const kind of Object.keys(KINDS)) {
    const on = members.filter((m) => m.kind === kind).map((m) => m.node).sort();
    assert.deepEqual(on, [0, 1, 2], `${kind} clients by node`);
  }

  for (let n = 1; n <= 3; n++) {
    // Several ping cycles of every polling session between rounds.
    await pingCycles(members, 2);
    await round(from, members);
  }

  // Nobody left or moved: same sessions, on the same nodes, same transports.
  members.forEach(stayed);
  assert.deepEqual(await sessions(), placed);
  for (const m of members.filter((m) => m.kind === "polling")) assert.ok(m.pings >= 6, `${m.name}: ${m.pings} pings`);

  // The bus lost nothing and never reconnected; the other nodes delivered.
  for (const [i, node] of nodes.entries()) {
    const text = await (await fetch(`${node.url}/metrics`)).text();
    const bad = text
      .split("\n")
      .filter((l) => /^switchboard_cluster_(publish_dropped|reconnects)_total\{/.test(l) && !l.endsWith(" 0"));
    assert.deepEqual(bad, [], `node ${i}`);
    if (i > 0) {
      const delivered = /^switchboard_cluster_received_total\{outcome="delivered"\} (\d+)$/m.exec(text);
      assert.ok(Number(delivered?.[1]) >= 6, `node ${i} delivered ${delivered?.[1]}`);
    }
  }
});

test("a node that is not ready gets no new clients and keeps its own, long-polling ones included", { skip, timeout: 60_000 }, async () => {
  const from = await publisher();
  const own = [await memberOn(2, "polling"), await memberOn(2, "websocket")];

  // Its store goes: /readyz 503, and HAProxy's checks take it out.
  await plug.unplug();
  await untilServer(lb.url, "n3", "DOWN");
  // What it holds stays: the polling session's requests still reach it
  // (the cookie) through several ping cycles, and broadcasts arrive.
  await pingCycles(own, 3);
  await round(from, own);
  own.forEach(stayed);
  // New clients, of either transport, go to the other nodes.
  for (let i = 0; i < 4; i++) {
    const m = await member(`new${i}`, i % 2 ? "polling" : "websocket");
    assert.notEqual(m.node, 2, m.name);
  }

  // Back: checked ready again, it takes new clients again.
  await plug.plugIn();
  await untilServer(lb.url, "n3", "UP");
  await memberOn(2, "websocket");
  own.forEach(stayed);
});

test("a rolling restart: a node's clients reconnect through the proxy to the others, recovered, and it comes back on its address", { skip, timeout: 60_000 }, async () => {
  const from = await publisher();
  // Clients that reconnect by themselves, as applications' do, after
  // exactly 500 ms here: an event emitted in that gap is one they missed.
  const retry = { reconnection: true, reconnectionDelay: 500, randomizationFactor: 0 };
  const moving = [await memberOn(1, "polling", retry), await memberOn(1, "websocket", retry)];
  const ids = moving.map((m) => m.socket.id);
  for (const m of moving) m.connects = new Recorder(m.socket, "connect");
  // Each has received an event (an offset to present when it comes back).
  await round(from, moving);

  const { port } = nodes[1];
  const stopped = nodes[1].stop();
  for (const m of moving) {
    // Closed by the server as a transport (not a Socket.IO DISCONNECT,
    // after which a client would not come back by itself): a waiting poll
    // or the WebSocket is told so; a poller between two polls finds the
    // node gone.
    const [reason] = await m.gone.waitFor(1);
    assert.ok(["transport close", "transport error"].includes(reason), `${m.name}: ${reason}`);
  }
  const missed = ++lastId;
  assert.equal((await ack(from, "broadcast", { event: "news", data: { id: missed }, rooms: ["lb"] })).ok, true);
  assert.deepEqual(await stopped, { code: 0, signal: null });
  await untilServer(lb.url, "n2", "DOWN");
  for (const [i, m] of moving.entries()) {
    await m.connects.waitFor(1, 10_000);
    // Recovered on another node (the sessions and events are in Redis):
    // the same socket, in its rooms, with the event it missed, once.
    assert.equal(m.socket.recovered, true, m.name);
    assert.equal(m.socket.id, ids[i], m.name);
    await m.news.waitUntil((items) => items.includes(missed), `the missed news for ${m.name}`);
  }
  await round(from, moving);
  for (const m of moving) assert.equal(m.news.items.filter((n) => n === missed).length, 1, m.name);

  // The new version on the same address: ready, up, and given new clients.
  nodes[1] = await startServer({ config: CLUSTER_CONFIG, env, args: ["--listen", `127.0.0.1:${port}`] });
  await untilServer(lb.url, "n2", "UP");
  await memberOn(1, "websocket");
  await round(from, moving);
});
