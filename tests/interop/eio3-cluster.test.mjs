// Old clients across the cluster (issue 19): a socket.io-client 2.5.0 client
// on node A and a socket.io-client 4 client on node B (cluster.toml, with
// SWITCHBOARD_ENGINE_ALLOW_EIO3=true) share a room: a broadcast from either
// reaches the other through Redis, once; and a 2.x user signed in with
// `?token=` in /secure gets what is sent to their user's room from the
// other node. Needs TEST_REDIS_URL and TEST_POSTGRES_URL, as cluster.test.mjs.

import assert from "node:assert/strict";
import { test } from "node:test";
import { createAdapter } from "@socket.io/redis-adapter";
import { clusterSkip, useCluster } from "./cluster.mjs";
import { token } from "./esn.mjs";
import { Recorder, TEST_TIMEOUT_MS } from "./helpers.mjs";
import { OldClients, ack, connected, io2, io4 } from "./eio3.mjs";

const skip = clusterSkip();
const KEY = `sbinterop-eio3-${process.pid}-${Date.now()}`;

const cluster = useCluster({
  skip,
  keyPrefix: KEY,
  env: { SWITCHBOARD_ENGINE_ALLOW_EIO3: "true" },
  adapter: (pub, sub) => createAdapter(pub, sub, { key: KEY }),
});

let clients;
const t = { skip, timeout: TEST_TIMEOUT_MS };

/** A connected client of `io` on `node`, recording `news` and `marker`. */
async function member(io, node, nsp, opts) {
  clients ??= new OldClients(node.url);
  const socket = io(node.url + nsp, { forceNew: true, reconnection: false, ...opts });
  clients.managers.add(socket.io);
  await connected(socket);
  return { socket, news: new Recorder(socket, "news", (x) => x), markers: new Recorder(socket, "marker", (x) => x) };
}

let markerId = 0;

/** Has `sender` broadcast `news` to `rooms`, then a marker to `room`; awaits the marker at `members`. */
async function send(sender, rooms, data, members) {
  assert.equal((await ack(sender.socket, "broadcast", { event: "news", data, rooms })).ok, true);
  const id = ++markerId;
  assert.equal((await ack(sender.socket, "broadcast", { event: "marker", data: id, rooms })).ok, true);
  await Promise.all(members.map((m) => m.markers.waitUntil((xs) => xs.includes(id), `marker ${id}`)));
}

test("a 2.x client on node A and a 4.x client on node B share a room's broadcasts, both ways, once", t, async () => {
  try {
    const [a, b] = cluster.nodes;
    const oldPolling = await member(io2, a, "/", { transports: ["polling"] });
    const oldWs = await member(io2, a, "/", { transports: ["websocket"] });
    const neu = await member(io4, b, "/", { transports: ["websocket"] });
    const outsider = await member(io2, b, "/", { transports: ["websocket"] });
    for (const m of [oldPolling, oldWs, neu]) assert.deepEqual(await ack(m.socket, "join", "mixed"), { ok: true });
    const members = [oldPolling, oldWs, neu];

    const fromNew = { from: "B, 4.x", text: "héllo €", list: [1, null, true] };
    await send(neu, ["mixed"], fromNew, members);
    const fromOld = { from: "A, 2.x", text: "çà et là" };
    await send(oldWs, ["mixed"], fromOld, members);
    for (const m of members) assert.deepEqual(m.news.items, [fromNew, fromOld]);
    // The outsider on B, in the namespace but not the room: nothing (its
    // marker, to the whole namespace from A, comes after A's broadcasts).
    const id = ++markerId;
    await ack(oldWs.socket, "broadcast", { event: "marker", data: id });
    await outsider.markers.waitUntil((xs) => xs.includes(id), `marker ${id}`);
    assert.deepEqual(outsider.news.items, []);
  } finally {
    clients?.closeAll();
  }
});

test("a 2.x user signed in with ?token= on node A gets their user's room from node B", t, async () => {
  try {
    const [a, b] = cluster.nodes;
    const old = await member(io2, a, "/secure", { transports: ["websocket"], query: { token: token("olduser") } });
    const sender = await member(io4, b, "/secure", { transports: ["websocket"], auth: { token: token("sender") } });
    await send(sender, ["user:olduser"], { to: "olduser" }, [old]);
    assert.deepEqual(old.news.items, [{ to: "olduser" }]);
  } finally {
    clients?.closeAll();
  }
});
