// Cluster mode against the real npm packages: two Switchboard nodes
// (cluster.toml) and a Node socket.io 4 node with @socket.io/redis-adapter
// 8 on one Redis, official socket.io-client clients on each, and a Node
// service emitting with @socket.io/redis-emitter 5.
//
// - What the emitter publishes (to a namespace, a room, a user's room, with
//   `except`, volatile, with Buffers) reaches exactly the matching clients
//   of every node, once each.
// - A broadcast from a Switchboard node reaches the Node node's clients
//   (its adapter decodes our messages) and the other way round.
// - What Switchboard publishes is byte for byte what notepack.io writes for
//   the same value, with the shape the Node adapter publishes.
// - The emitter's socketsJoin, socketsLeave and disconnectSockets reach the
//   sockets of every node; the Node node's requests (fetchSockets,
//   allRooms, socketsJoin, disconnectSockets, a broadcast with acks) are
//   answered by the Switchboard nodes as by another Node node; and the
//   Node node answers a Switchboard node's (the publish API's presence
//   counts its sockets).
//
// Needs TEST_REDIS_URL and TEST_POSTGRES_URL (`make interop` runs the tests
// under tests/redis/with-redis.sh and tests/postgres/with-postgres.sh);
// without them the file is skipped, except under CI, where it fails.
//
// "Did not receive" is checked without sleeping: after the emit under test
// the emitter emits a marker to the namespace; Redis delivers one
// publisher's messages in order, so a client holding the marker holds
// everything the emit meant for it.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Emitter } from "@socket.io/redis-emitter";
import { createAdapter } from "@socket.io/redis-adapter";
import msgpack from "notepack.io";
import { CLUSTER_CONFIG, clusterSkip, join, round, useCluster } from "./cluster.mjs";
import { token } from "./esn.mjs";
import { TEST_TIMEOUT_MS, WAIT_MS, ack, stopServer } from "./helpers.mjs";
import { startServer } from "./server.mjs";

const skip = clusterSkip();

// A prefix of this run's own: nothing else on the test Redis hears it.
const KEY = `sbinterop-${process.pid}-${Date.now()}`;
// The publish API's key on the Switchboard nodes.
const API_KEY = "interop-cluster-key";

// Recovery off on the two Switchboard nodes: the byte-for-byte test
// compares their bus messages with what the Node adapter publishes, [uid,
// packet, opts]; with recovery on a recoverable broadcast carries its
// offset as a fourth element, which a Node node ignores (the test with
// recovery on, below). The Node node has the Redis adapter.
let emitter;
const cluster = useCluster({
  skip,
  keyPrefix: KEY,
  env: { SWITCHBOARD_SOCKETIO_RECOVERY_WINDOW_MS: "0", SWITCHBOARD_API_KEYS: API_KEY },
  adapter: (pub, sub) => createAdapter(pub, sub, { key: KEY }),
  async setup({ nodeIo, connectRedis }) {
    // The Node node on the bus for /secure too, with no client of its
    // own: its requests ask the Switchboard nodes.
    nodeIo.of("/secure");
    emitter = new Emitter(await connectRedis(), { key: KEY });
  },
});
/** A client of `url` in `nsp` (see cluster.mjs), closed after each test. */
const member = cluster.member;

test("what the emitter publishes reaches the matching clients of every node, once", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = cluster.nodes;
  const a1 = await member("a1", a.url);
  const a2 = await member("a2", a.url);
  const b1 = await member("b1", b.url);
  const b2 = await member("b2", b.url);
  const n1 = await member("n1", cluster.nodeUrl);
  const n2 = await member("n2", cluster.nodeUrl);
  for (const m of [a1, b1, n1]) await join(m, "r1");
  await join(b2, "r2");
  const all = [a1, a2, b1, b2, n1, n2];

  let sent;
  let got = await round(all, emitter, (id) => emitter.emit("news", { id: (sent = id) }, "two", 3));
  assert.deepEqual(got, { a1: 1, a2: 1, b1: 1, b2: 1, n1: 1, n2: 1 });
  assert.deepEqual(a2.news.items.at(-1), [{ id: sent }, "two", 3]);

  got = await round(all, emitter, (id) => emitter.to("r1").emit("news", { id }));
  assert.deepEqual(got, { a1: 1, b1: 1, n1: 1 });

  got = await round(all, emitter, (id) => emitter.to(["r1", "r2"]).emit("news", { id }));
  assert.deepEqual(got, { a1: 1, b1: 1, b2: 1, n1: 1 });

  got = await round(all, emitter, (id) => emitter.except("r1").emit("news", { id }));
  assert.deepEqual(got, { a2: 1, b2: 1, n2: 1 });

  got = await round(all, emitter, (id) => emitter.to("r1").except("r2").except(b1.socket.id).emit("news", { id }));
  assert.deepEqual(got, { a1: 1, n1: 1 });

  // A socket id is a room: one client of a Switchboard node, alone.
  got = await round(all, emitter, (id) => emitter.to(a2.socket.id).emit("news", { id }));
  assert.deepEqual(got, { a2: 1 });

  got = await round(all, emitter, (id) => emitter.volatile.to("r2").emit("news", { id }));
  assert.deepEqual(got, { b2: 1 });
});

test("a user's room reaches that user's devices on every node", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = cluster.nodes;
  const auth = (user) => ({ auth: { token: token(user) } });
  const aliceA = await member("alice@a", a.url, "/secure", auth("alice"));
  const aliceB = await member("alice@b", b.url, "/secure", auth("alice"));
  const bobB = await member("bob@b", b.url, "/secure", auth("bob"));
  const secure = emitter.of("/secure");
  const all = [aliceA, aliceB, bobB];

  let got = await round(all, secure, (id) => secure.to("user:alice").emit("news", { id }));
  assert.deepEqual(got, { "alice@a": 1, "alice@b": 1 });

  got = await round(all, secure, (id) => secure.except("user:alice").emit("news", { id }));
  assert.deepEqual(got, { "bob@b": 1 });

  // The default namespace's emitter does not reach /secure.
  got = await round(all, secure, (id) => emitter.to("user:alice").emit("news", { id }));
  assert.deepEqual(got, {});
});

test("Buffers from the emitter arrive as binary, nested ones too", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const b1 = await member("b1", cluster.nodes[1].url);
  const n1 = await member("n1", cluster.nodeUrl);
  emitter.emit("bin", Buffer.from([1, 2, 3]), { name: "f", data: Buffer.from([4, 5]) }, [Buffer.alloc(0)]);
  for (const m of [b1, n1]) {
    const [[first, second, third]] = await m.bin.waitFor(1);
    assert.deepEqual([...first], [1, 2, 3], m.name);
    assert.equal(second.name, "f");
    assert.deepEqual([...second.data], [4, 5], m.name);
    assert.equal(third[0].byteLength, 0);
  }
});

test("Switchboard and Node nodes deliver each other's broadcasts", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = cluster.nodes;
  const a1 = await member("a1", a.url);
  const b1 = await member("b1", b.url);
  const n1 = await member("n1", cluster.nodeUrl);
  const n2 = await member("n2", cluster.nodeUrl);
  for (const m of [a1, b1, n1]) await join(m, "nodes");
  const all = [a1, b1, n1, n2];

  // From Switchboard (the test kit's broadcast), the sender left out.
  let got = await round(all, emitter, async (id) => {
    const reply = await ack(b1.socket, "broadcast", { event: "news", data: { id }, rooms: ["nodes"], others: true });
    assert.equal(reply.ok, true);
  });
  assert.deepEqual(got, { a1: 1, n1: 1 });

  // From the Node node.
  got = await round(all, emitter, (id) => cluster.nodeIo.to("nodes").emit("news", { id }));
  assert.deepEqual(got, { a1: 1, b1: 1, n1: 1 });
  got = await round(all, emitter, (id) => cluster.nodeIo.except("nodes").emit("news", { id }));
  assert.deepEqual(got, { n2: 1 });
});

test("with recovery on, a Node node's clients get a Switchboard broadcast's arguments as emitted, and Switchboard's the offset after them", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  // A third Switchboard node of this cluster, with recovery on (the
  // default): its recoverable broadcasts go through the recovery log and
  // carry their offset beside the packet, which a Node node ignores.
  const c = await startServer({
    config: CLUSTER_CONFIG,
    env: { ...cluster.nodes[0].env, SWITCHBOARD_SOCKETIO_RECOVERY_WINDOW_MS: "120000" },
  });
  try {
    const c1 = await member("c1", c.url);
    const c2 = await member("c2", c.url);
    const n1 = await member("n1", cluster.nodeUrl);
    for (const m of [c1, c2, n1]) await join(m, "rec");
    // The marker from the same node, so that it follows the news.
    const fromC = (event, data) => async () => {
      const reply = await ack(c1.socket, "broadcast", { event, data, rooms: ["rec"], others: true });
      assert.equal(reply.ok, true);
    };
    const got = await round([c2, n1], (id) => fromC("marker", id)(), (id) => fromC("news", { id })());
    assert.deepEqual(got, { c2: 1, n1: 1 });
    const [news] = n1.news.items.filter(([data]) => data?.id !== undefined).slice(-1);
    assert.deepEqual(news, [{ id: news[0].id }], "the Node node's client got more than was emitted");
    const [mine] = c2.news.items.slice(-1);
    assert.equal(mine.length, 2, `Switchboard's client gets the offset last: ${JSON.stringify(mine)}`);
    assert.match(mine[1], /^\d{19}$/);
  } finally {
    await stopServer(c);
  }
});

test("what Switchboard publishes is notepack's bytes in the Node adapter's shape", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const listener = cluster.redis.duplicate();
  await listener.connect();
  try {
    const heard = [];
    await listener.pSubscribe(`${KEY}#/#*`, (message, channel) => heard.push({ message, channel: channel.toString() }), true);
    const a1 = await member("a1", cluster.nodes[0].url);
    await join(a1, "r1");
    // The test kit re-serializes `data` with its keys sorted: given here in
    // that order, which is also JavaScript's (integer-like keys first).
    const data = { 1: { nested: [] }, 2: [1.5, -7, 300, 70000, 5000000000, null, true], a: "é".repeat(40), b: 1 };
    for (const spec of [
      { rooms: ["r1"], others: true },
      { rooms: ["r1", "r2"], except: ["x"] },
      { volatile: true },
    ]) {
      heard.length = 0;
      const reply = await ack(a1.socket, "broadcast", { event: "news", data, ...spec });
      assert.equal(reply.ok, true);
      while (heard.length === 0) await new Promise((r) => setTimeout(r, 10));
      const { message, channel } = heard[0];
      const [uid, packet, opts] = msgpack.decode(message);
      assert.match(uid, /^[A-Za-z0-9_-]{6}$/);
      const rooms = spec.rooms ?? [];
      const except = [...(spec.others ? [a1.socket.id] : []), ...(spec.except ?? [])];
      const flags = spec.volatile ? { volatile: true } : {};
      // The Node adapter's broadcast(): [uid, {type, data, nsp}, {rooms, except, flags}].
      const expected = [uid, { type: 2, data: ["news", data], nsp: "/" }, { rooms, except, flags }];
      assert.deepEqual([uid, packet, opts], expected);
      assert.ok(Buffer.from(message).equals(msgpack.encode(expected)), `bytes differ for ${JSON.stringify(spec)}`);
      assert.equal(channel, rooms.length === 1 ? `${KEY}#/#${rooms[0]}#` : `${KEY}#/#`);
    }
  } finally {
    await listener.quit();
  }
});

test("the emitter's socketsJoin, socketsLeave and disconnectSockets reach the sockets of every node", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = cluster.nodes;
  const a1 = await member("a1", a.url);
  const b1 = await member("b1", b.url);
  const b2 = await member("b2", b.url);
  const n1 = await member("n1", cluster.nodeUrl);
  for (const m of [a1, b1, n1]) await join(m, "e1");
  const all = [a1, b1, b2, n1];

  // One emitter connection: its request and its broadcast arrive in order.
  let got = await round(all, emitter, (id) => {
    emitter.in("e1").socketsJoin(["e5", "e6"]);
    emitter.to("e5").emit("news", { id });
  });
  assert.deepEqual(got, { a1: 1, b1: 1, n1: 1 });

  got = await round(all, emitter, (id) => {
    emitter.in("e5").except(b1.socket.id).socketsLeave("e5");
    emitter.to("e5").emit("news", { id });
  });
  assert.deepEqual(got, { b1: 1 });
  got = await round(all, emitter, (id) => emitter.to("e6").emit("news", { id }));
  assert.deepEqual(got, { a1: 1, b1: 1, n1: 1 });

  emitter.in("e1").except(a1.socket.id).disconnectSockets();
  for (const m of [b1, n1]) assert.deepEqual(await m.gone.waitFor(1), ["io server disconnect"], m.name);
  got = await round([a1, b2], emitter, (id) => emitter.emit("news", { id }));
  assert.deepEqual(got, { a1: 1, b2: 1 });
  assert.equal(a1.socket.connected, true);

  // close: the whole connection goes.
  emitter.in(b2.socket.id).disconnectSockets(true);
  assert.deepEqual(await b2.gone.waitFor(1), ["io server disconnect"]);
});

test("a Node node's fetchSockets() and allRooms() count the Switchboard nodes' sockets", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = cluster.nodes;
  const a1 = await member("a1", a.url);
  const b1 = await member("b1", b.url);
  const b2 = await member("b2", b.url);
  const n1 = await member("n1", cluster.nodeUrl);
  for (const m of [a1, b1, n1]) await join(m, "f1");
  await join(b2, "f2");

  const sockets = await cluster.nodeIo.in("f1").fetchSockets();
  assert.deepEqual(sockets.map((s) => s.id).sort(), [a1, b1, n1].map((m) => m.socket.id).sort());
  const remote = sockets.find((s) => s.id === b1.socket.id);
  assert.deepEqual([...remote.rooms], [b1.socket.id, "f1"]);
  assert.equal(remote.handshake.query.EIO, "4");

  const both = await cluster.nodeIo.in(["f1", "f2"]).fetchSockets();
  assert.equal(both.length, 4);
  const rooms = await cluster.nodeIo.of("/").adapter.allRooms();
  for (const room of ["f1", "f2", a1.socket.id, b2.socket.id, n1.socket.id]) assert.ok(rooms.has(room), room);

  // A signed-in user's sockets on both Switchboard nodes, with their user.
  const auth = { auth: { token: token("alice") } };
  const aliceA = await member("alice@a", a.url, "/secure", auth);
  const aliceB = await member("alice@b", b.url, "/secure", auth);
  const alice = await cluster.nodeIo.of("/secure").in("user:alice").fetchSockets();
  assert.deepEqual(alice.map((s) => s.id).sort(), [aliceA.socket.id, aliceB.socket.id].sort());
  assert.deepEqual(alice[0].data, { user: "alice" });

  // A RemoteSocket's methods go through the bus too.
  remote.join("f7");
  assert.deepEqual((await cluster.nodeIo.in("f7").fetchSockets()).map((s) => s.id), [b1.socket.id]);
});

test("a Switchboard node's presence API counts a user's sockets on the Node node too", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = cluster.nodes;
  // Dora: one socket on each Switchboard node, one on the Node node in her
  // room (as a Node app would put her there); erin: none.
  const auth = { auth: { token: token("dora") } };
  await member("dora@a", a.url, "/secure", auth);
  await member("dora@b", b.url, "/secure", auth);
  await join(await member("dora@node", cluster.nodeUrl), "user:dora");

  const res = await fetch(`${a.url}/api/v1/presence?user=dora&user=erin`, {
    headers: { authorization: `Bearer ${API_KEY}` },
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  const sockets = Object.fromEntries(Object.entries(body.presence).map(([user, p]) => [user, p.sockets]));
  assert.deepEqual(sockets, { dora: 3, erin: 0 }, JSON.stringify(body));
  // Every node answered, the Node node included (one that did not would
  // be counted in `incomplete`, after cluster.request_timeout_ms).
  assert.equal(body.incomplete, undefined, JSON.stringify(body));
});

test("a Node node's socketsJoin, disconnectSockets and broadcast with acks reach Switchboard's clients", { skip, timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = cluster.nodes;
  const a1 = await member("a1", a.url);
  const b1 = await member("b1", b.url);
  const b2 = await member("b2", b.url);
  const n1 = await member("n1", cluster.nodeUrl);
  for (const m of [a1, b1, n1]) await join(m, "j1");

  // Requests from one Node connection are served in order: the join is
  // done on the Switchboard nodes once the fetch that follows it is
  // answered. (The Node node joins its own socket when its request comes
  // back from Redis, after its fetch has counted its local sockets.)
  cluster.nodeIo.in("j1").socketsJoin("j8");
  const joined = await cluster.nodeIo.in("j8").fetchSockets();
  const switchboards = joined.map((s) => s.id).filter((id) => id !== n1.socket.id);
  assert.deepEqual(switchboards.sort(), [a1, b1].map((m) => m.socket.id).sort());

  // Every client's ack, from every node (the count of each comes first).
  const acks = await cluster.nodeIo.to("j8").timeout(WAIT_MS).emitWithAck("ask", 7);
  assert.deepEqual(acks.sort((x, y) => x.from.localeCompare(y.from)), [
    { from: "a1", n: 7 },
    { from: "b1", n: 7 },
    { from: "n1", n: 7 },
  ]);

  cluster.nodeIo.in("j8").except(n1.socket.id).disconnectSockets();
  for (const m of [a1, b1]) assert.deepEqual(await m.gone.waitFor(1), ["io server disconnect"], m.name);
  const left = await cluster.nodeIo.in("j8").fetchSockets();
  assert.deepEqual(left.map((s) => s.id), [n1.socket.id]);
  assert.equal(b2.socket.connected, true);
});
