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
import { after, before, test } from "node:test";
import { io } from "socket.io-client";
import { clusterSkip, startNodes } from "./cluster.mjs";
import { Clients, Recorder, ack, connected, once, stopServer } from "./helpers.mjs";
import { haproxySkip, startHaproxy } from "./lb.mjs";

const skip = clusterSkip() || haproxySkip();
const KEY = `sblb-${process.pid}-${Date.now()}`;
// Short ping cycles: a long-polling client sends and receives many
// requests during the test, each of which must reach its node.
const PING_INTERVAL_MS = 300;

let nodes = [];
let lb;
let clients;

before(async () => {
  if (skip) return;
  nodes = await startNodes(3, {
    keyPrefix: KEY,
    env: {
      SWITCHBOARD_ENGINE_PING_INTERVAL_MS: String(PING_INTERVAL_MS),
      // HAProxy adds X-Forwarded-For: per-address admission counts clients.
      SWITCHBOARD_SERVER_TRUSTED_PROXIES: "127.0.0.1",
    },
  });
  lb = await startHaproxy(nodes);
  clients = new Clients(lb.url);
});

after(async () => {
  clients?.closeAll();
  if (lb) {
    const status = await lb.stop();
    assert.equal(status.code ?? 0, 0, `haproxy exit ${JSON.stringify(status)}\n${lb.output()}`);
  }
  for (const node of nodes) await stopServer(node);
});

/** A node's figure `name` from its /metrics (a line `name value`). */
async function metric(node, name) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} not in /metrics of ${node.url}`);
  return Number(line.slice(name.length + 1));
}

/** Engine.IO sessions open on each node. */
function sessions() {
  return Promise.all(nodes.map((node) => metric(node, "switchboard_connections")));
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
async function member(name, kind) {
  const before = await sessions();
  const socket = clients.track(
    io(`${lb.url}/`, { forceNew: true, reconnection: false, ...KINDS[kind] }),
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
  // The publisher, on the first node directly, not in the room.
  const publisher = await clients.connect("/", { transports: ["websocket"] });
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

  let id = 0;
  for (let round = 1; round <= 3; round++) {
    // Several ping cycles of every polling session between rounds.
    await pingCycles(members, 2);
    id++;
    assert.equal((await ack(publisher, "broadcast", { event: "news", data: { id }, rooms: ["lb"] })).ok, true);
    assert.equal((await ack(publisher, "broadcast", { event: "marker", data: id })).ok, true);
    // One publisher, in order on every node: the marker comes after the news.
    for (const m of members) {
      await m.markers.waitUntil((items) => items.includes(id), `marker ${id} for ${m.name}`);
      assert.equal(m.news.items.filter((n) => n === id).length, 1, `${m.name} (node ${m.node}) got news ${id} once`);
    }
  }

  // Nobody left or moved: same sessions, on the same nodes, same transports.
  for (const m of members) {
    assert.deepEqual(m.gone.items, [], m.name);
    assert.equal(m.socket.io.engine.id, m.engineId, m.name);
    const transport = m.kind === "polling" ? "polling" : "websocket";
    assert.equal(m.socket.io.engine.transport.name, transport, m.name);
  }
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
