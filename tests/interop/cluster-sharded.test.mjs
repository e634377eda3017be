// Sharded pub/sub against the real npm packages: two Switchboard nodes with
// `cluster.pubsub = "sharded"` (dynamic subscription mode) and a Node
// socket.io 4 node with @socket.io/redis-adapter 8's createShardedAdapter
// (its default, dynamic mode) on one Redis 7, official socket.io-client
// clients on each.
//
// - Broadcasts cross both ways, to the namespace and to a room (on the
//   room's own channel, which every node that has the room holds).
// - The Node node's fetchSockets() counts the Switchboard nodes' sockets
//   (its server count is PUBSUB SHARDNUMSUB of the namespace's channel);
//   its socketsJoin, broadcast with acks and disconnectSockets reach
//   Switchboard's clients.
// - What Switchboard publishes is the sharded adapter's JSON, on the
//   channel the Node adapter would pick.
//
// Needs TEST_REDIS_URL (Redis 7) and TEST_POSTGRES_URL, as cluster.test.mjs.
//
// "Did not receive" is checked without sleeping: the sender of the emit
// under test then emits a marker to the namespace; one connection's
// messages reach each subscriber in order, so a client holding the marker
// holds everything the emit meant for it.

import assert from "node:assert/strict";
import { test } from "node:test";
import { createShardedAdapter } from "@socket.io/redis-adapter";
import { clusterSkip, join, round, useCluster } from "./cluster.mjs";
import { TEST_TIMEOUT_MS, WAIT_MS, ack, withTimeout } from "./helpers.mjs";

const skip = clusterSkip();

// A prefix of this run's own: nothing else on the test Redis hears it.
const KEY = `sbsharded-${process.pid}-${Date.now()}`;

const cluster = useCluster({
  skip,
  keyPrefix: KEY,
  // Recovery is off in sharded mode (the node says so at start); said
  // here so that it does not warn.
  env: { SWITCHBOARD_CLUSTER_PUBSUB: "sharded", SWITCHBOARD_SOCKETIO_RECOVERY_WINDOW_MS: "0" },
  adapter: (pub, sub) => createShardedAdapter(pub, sub, { channelPrefix: KEY }),
  // Three nodes on the namespace's channel before anything is asked.
  setup: () => untilSubscribers(`${KEY}#/#`, 3),
});

/** Waits until `n` connections hold the shard channel `channel`. */
async function untilSubscribers(channel, n) {
  await withTimeout(
    (async () => {
      for (;;) {
        const [, count] = await cluster.redis.sendCommand(["PUBSUB", "SHARDNUMSUB", channel]);
        if (Number(count) === n) return;
        await new Promise((r) => setTimeout(r, 10));
      }
    })(),
    WAIT_MS,
    `${n} subscribers of ${channel}`,
  );
}

/** A client of `url` (see cluster.mjs), closed after each test. */
const member = (name, url) => cluster.member(name, url);

/** Has Switchboard client `m` broadcast `event` `data` (the test kit). */
async function broadcast(m, spec) {
  const reply = await ack(m.socket, "broadcast", spec);
  assert.equal(reply.ok, true, JSON.stringify(reply));
}

const nodeMarker = (id) => cluster.nodeIo.emit("marker", id);
const markerOf = (m) => (id) => broadcast(m, { event: "marker", data: id });

test("Switchboard and Node nodes deliver each other's broadcasts over sharded pub/sub", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = cluster.nodes;
  const a1 = await member("a1", a.url);
  const b1 = await member("b1", b.url);
  const n1 = await member("n1", cluster.nodeUrl);
  const n2 = await member("n2", cluster.nodeUrl);
  for (const m of [a1, b1, n1]) await join(m, "nodes");
  // Dynamic mode: each node holds the room's channel once it has the room.
  await untilSubscribers(`${KEY}#/#nodes#`, 3);
  const all = [a1, b1, n1, n2];

  // From Switchboard: to the room (its channel), the sender left out; to
  // the namespace.
  let got = await round(all, markerOf(b1), (id) => broadcast(b1, { event: "news", data: { id }, rooms: ["nodes"], others: true }));
  assert.deepEqual(got, { a1: 1, n1: 1 });
  got = await round(all, markerOf(a1), (id) => broadcast(a1, { event: "news", data: { id } }));
  assert.deepEqual(got, { a1: 1, b1: 1, n1: 1, n2: 1 });

  // From the Node node: the room, all but the room, the namespace.
  got = await round(all, nodeMarker, (id) => cluster.nodeIo.to("nodes").emit("news", { id }));
  assert.deepEqual(got, { a1: 1, b1: 1, n1: 1 });
  got = await round(all, nodeMarker, (id) => cluster.nodeIo.except("nodes").emit("news", { id }));
  assert.deepEqual(got, { n2: 1 });
  got = await round(all, nodeMarker, (id) => cluster.nodeIo.emit("news", { id }));
  assert.deepEqual(got, { a1: 1, b1: 1, n1: 1, n2: 1 });
  // A Switchboard socket by its id (the namespace's channel: it looks
  // like a socket id).
  got = await round(all, nodeMarker, (id) => cluster.nodeIo.to(b1.socket.id).emit("news", { id }));
  assert.deepEqual(got, { b1: 1 });
});

test("a Node node's fetchSockets() counts the Switchboard nodes' sockets; its socketsJoin, acks and disconnectSockets reach them", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = cluster.nodes;
  const a1 = await member("a1", a.url);
  const b1 = await member("b1", b.url);
  const b2 = await member("b2", b.url);
  const n1 = await member("n1", cluster.nodeUrl);
  for (const m of [a1, b1, n1]) await join(m, "f1");

  const sockets = await cluster.nodeIo.in("f1").fetchSockets();
  assert.deepEqual(sockets.map((s) => s.id).sort(), [a1, b1, n1].map((m) => m.socket.id).sort());
  const remote = sockets.find((s) => s.id === b1.socket.id);
  assert.deepEqual([...remote.rooms], [b1.socket.id, "f1"]);
  assert.equal(remote.handshake.query.EIO, "4");
  assert.equal((await cluster.nodeIo.fetchSockets()).length, 4);

  // socketsJoin: the Switchboard nodes take the new room's channel too.
  cluster.nodeIo.in("f1").socketsJoin("f9");
  await untilSubscribers(`${KEY}#/#f9#`, 3);
  const all = [a1, b1, b2, n1];
  const got = await round(all, nodeMarker, (id) => cluster.nodeIo.to("f9").emit("news", { id }));
  assert.deepEqual(got, { a1: 1, b1: 1, n1: 1 });

  // A broadcast with acks: every client's ack comes back to the Node node.
  const acks = await cluster.nodeIo.to("f1").timeout(WAIT_MS).emitWithAck("ask", 7);
  assert.deepEqual(acks.map((a) => a.from).sort(), ["a1", "b1", "n1"]);

  cluster.nodeIo.in("f1").except(a1.socket.id).disconnectSockets();
  for (const m of [b1, n1]) assert.deepEqual(await m.gone.waitFor(1), ["io server disconnect"], m.name);
  assert.equal(a1.socket.connected, true);
  // b1 was B's last socket in f1 and f9: B lets their channels go.
  await untilSubscribers(`${KEY}#/#f9#`, 1);
});

test("what Switchboard publishes is the sharded adapter's JSON, on the channel it would pick", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const listener = cluster.redis.duplicate();
  await listener.connect();
  try {
    const heard = [];
    const hear = (message, channel) => heard.push({ message: message.toString(), channel: channel.toString() });
    await listener.sSubscribe([`${KEY}#/#`, `${KEY}#/#r1#`], hear, true);
    const a1 = await member("a1", cluster.nodes[0].url);
    await join(a1, "r1");
    const data = { a: "é", b: [1, 1.5, null, true] };
    for (const spec of [{ rooms: ["r1"], others: true }, { rooms: ["r1", "r2"], except: ["x"] }, { volatile: true }]) {
      heard.length = 0;
      await broadcast(a1, { event: "news", data, ...spec });
      while (heard.length === 0) await new Promise((r) => setTimeout(r, 10));
      const { message, channel } = heard[0];
      const parsed = JSON.parse(message);
      assert.match(parsed.uid, /^[0-9a-f]{16}$/);
      const rooms = spec.rooms ?? [];
      const except = [...(spec.others ? [a1.socket.id] : []), ...(spec.except ?? [])];
      const flags = spec.volatile ? { volatile: true } : {};
      // ClusterAdapter's broadcast: {type: 3, data: {packet, opts}, uid, nsp}.
      const expected = { type: 3, data: { packet: { type: 2, data: ["news", data] }, opts: { rooms, except, flags } }, uid: parsed.uid, nsp: "/" };
      assert.equal(message, JSON.stringify(expected));
      assert.equal(channel, rooms.length === 1 ? `${KEY}#/#${rooms[0]}#` : `${KEY}#/#`);
    }
  } finally {
    await listener.quit();
  }
});
