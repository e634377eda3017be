// A node frozen past the heartbeat timeout, then thawed, against the
// official socket.io-client: two Switchboard nodes of one cluster
// (cluster.toml, heartbeats every 200 ms, dead after 400 ms), clients of
// node A in a room, a client of node B broadcasting to it.
//
// A is stopped (SIGSTOP) until B stops counting it; B broadcasts; A is
// continued (SIGCONT). A finds it was taken for dead and closes its
// clients' connections as a transport (not a Socket.IO DISCONNECT): the
// client reconnects by itself, is recovered (the same socket id, its room)
// and has every event it missed exactly once, in order, over WebSocket and
// long-polling. (A polling client was given events 1–3 twice before A
// stopped delivering what Redis kept for it while it rejoins: queued on
// the connection being closed, they reached the client after its socket
// disconnected, were buffered by socket.io-client without moving its
// offset, and were replayed again on recovery.)
//
// Needs TEST_REDIS_URL and TEST_POSTGRES_URL; without them the file is
// skipped, except under CI, where it fails.

import assert from "node:assert/strict";
import { after, afterEach, before, test } from "node:test";
import { io } from "socket.io-client";
import { clusterSkip, startNodes } from "./cluster.mjs";
import { token } from "./esn.mjs";
import { Clients, Recorder, WAIT_MS, ack, connected, stopServer, withTimeout } from "./helpers.mjs";

const skip = clusterSkip();
const KEY = `sbfreeze-${process.pid}-${Date.now()}`;
const HEARTBEAT = { SWITCHBOARD_CLUSTER_HEARTBEAT_INTERVAL_MS: "200", SWITCHBOARD_CLUSTER_HEARTBEAT_TIMEOUT_MS: "400" };

let nodes = [];
let clients;

before(async () => {
  if (skip) return;
  nodes = await startNodes(2, { keyPrefix: KEY, env: HEARTBEAT });
  clients = new Clients(nodes[0].url);
});

afterEach(() => clients?.closeAll());

after(async () => {
  clients?.closeAll();
  // A node left stopped would never exit.
  for (const node of nodes) if (node.alive) process.kill(node.pid, "SIGCONT");
  for (const node of nodes) await stopServer(node);
});

/** A sample of a node's /metrics. */
async function metric(node, name) {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(" ")[1]);
}

/** Resolves once `check()` holds, asking every 20 ms. */
function until(check, what) {
  return withTimeout(
    (async () => {
      while (!(await check())) await new Promise((r) => setTimeout(r, 20));
    })(),
    WAIT_MS,
    what,
  );
}

/** Alice on `/secure` of `node` over `transport`, reconnecting by herself. */
async function alice(node, transport) {
  const socket = clients.track(
    io(`${node.url}/secure`, {
      forceNew: true,
      transports: [transport],
      auth: { token: token("alice") },
      reconnection: true,
      reconnectionDelay: 100,
      randomizationFactor: 0,
    }),
  );
  await connected(socket);
  return {
    transport,
    socket,
    id: socket.id,
    news: new Recorder(socket, "news", (n) => n),
    gone: new Recorder(socket, "disconnect", (reason) => reason),
    connects: new Recorder(socket, "connect"),
  };
}

test("a node frozen past the heartbeat timeout closes its clients when it wakes; they recover what they missed, once, in order", { skip, timeout: 30_000 }, async () => {
  const [a, b] = nodes;
  const members = [await alice(a, "websocket"), await alice(a, "polling")];
  for (const m of members) assert.deepEqual(await ack(m.socket, "join", "r"), { ok: true });
  const bob = await connected(
    clients.track(io(`${b.url}/secure`, { forceNew: true, reconnection: false, auth: { token: token("bob") } })),
  );
  const broadcast = async (n) =>
    assert.equal((await ack(bob, "broadcast", { event: "news", rooms: ["r"], data: n })).ok, true);
  await broadcast(0);
  for (const m of members) await m.news.waitFor(1);

  // A freezes until B stops counting it, and B goes on broadcasting.
  process.kill(a.pid, "SIGSTOP");
  await until(async () => (await metric(b, "switchboard_cluster_nodes")) === 1, "B dropping A");
  for (const n of [1, 2, 3]) await broadcast(n);

  // A wakes: its clients are closed as a transport, come back by
  // themselves and are recovered, with what they missed, once, in order.
  process.kill(a.pid, "SIGCONT");
  for (const m of members) {
    const [reason] = await m.gone.waitFor(1);
    assert.ok(["transport close", "transport error"].includes(reason), `${m.transport}: ${reason}`);
    await m.connects.waitFor(1);
    assert.equal(m.socket.recovered, true, m.transport);
    assert.equal(m.socket.id, m.id, m.transport);
    await m.news.waitFor(4);
  }
  await broadcast(4);
  for (const m of members) {
    await m.news.waitFor(5);
    assert.deepEqual(m.news.items, [0, 1, 2, 3, 4], m.transport);
  }
  assert.equal(await metric(a, "switchboard_cluster_rejoins_total"), 1);
  assert.equal(await metric(b, "switchboard_cluster_nodes"), 2);
});
