// 6. Rooms, except and "others" in broadcasts.
//
// "Did not receive" is checked without sleeping: after each broadcast under
// test, a marker is broadcast to the whole namespace. A connection delivers
// in order, so once a client has the marker it already has every message of
// the broadcast under test that was meant for it.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Recorder, TEST_TIMEOUT_MS, ack, once, useServer } from "./helpers.mjs";

const ctx = useServer();

let roundId = 0;

/**
 * Broadcasts `spec` from `sender`, then a marker to everyone; returns which
 * of `named` ({A: socket, …}) received the broadcast (and how many times)
 * and the count the server reported.
 */
async function round(named, sender, spec) {
  const id = ++roundId;
  const reply = await ack(sender, "broadcast", { event: "news", ...spec, data: { id } });
  assert.equal(reply.ok, true, `broadcast failed: ${JSON.stringify(reply)}`);
  const marker = await ack(sender, "broadcast", { event: "marker", data: id });
  assert.equal(marker.ok, true);
  const got = {};
  await Promise.all(
    Object.entries(named).map(async ([name, { markers, news }]) => {
      await markers.waitUntil((items) => items.includes(id), `marker ${id} for ${name}`);
      const times = news.items.filter((d) => d.id === id).length;
      if (times) got[name] = times;
    }),
  );
  return { got, count: reply.count };
}

async function client(name) {
  const socket = await ctx.clients.connect("/", { transports: ["websocket"] });
  return {
    name,
    socket,
    news: new Recorder(socket, "news", (d) => d),
    markers: new Recorder(socket, "marker", (d) => d),
  };
}

async function join(c, room) {
  assert.deepEqual(await ack(c.socket, "join", room), { ok: true });
}

test("broadcasts reach exactly the sockets in the rooms, once each", { timeout: TEST_TIMEOUT_MS }, async () => {
  const A = await client("A");
  const B = await client("B");
  const C = await client("C");
  const all = { A, B, C };
  await join(A, "r1");
  await join(B, "r1");
  await join(B, "r2"); // B is in both rooms
  await join(C, "r2");

  const bRooms = await ack(B.socket, "rooms");
  assert.ok(Array.isArray(bRooms));
  assert.ok(bRooms.includes("r1") && bRooms.includes("r2"), `B's rooms: ${bRooms}`);
  assert.ok(!(await ack(A.socket, "rooms")).includes("r2"));

  // One room: its members only (the sender C is not a member).
  let r = await round(all, C.socket, { rooms: ["r1"] });
  assert.deepEqual(r.got, { A: 1, B: 1 });
  assert.equal(r.count, 2);

  // Two rooms: the union, B (in both) only once.
  r = await round(all, C.socket, { rooms: ["r1", "r2"] });
  assert.deepEqual(r.got, { A: 1, B: 1, C: 1 });
  assert.equal(r.count, 3);

  // No room: the whole namespace.
  r = await round(all, A.socket, {});
  assert.deepEqual(r.got, { A: 1, B: 1, C: 1 });

  // Except: r1 members not in r2 (B is in r2 too).
  r = await round(all, C.socket, { rooms: ["r1"], except: ["r2"] });
  assert.deepEqual(r.got, { A: 1 });
  assert.equal(r.count, 1);

  // Except with no rooms: everyone not in r2.
  r = await round(all, C.socket, { except: ["r2"] });
  assert.deepEqual(r.got, { A: 1 });

  // others: everyone but the sender.
  r = await round(all, A.socket, { others: true });
  assert.deepEqual(r.got, { B: 1, C: 1 });
  assert.equal(r.count, 2);

  // others within a room the sender is in.
  r = await round(all, B.socket, { rooms: ["r1"], others: true });
  assert.deepEqual(r.got, { A: 1 });

  // A leaves r1: no longer receives r1 broadcasts.
  assert.deepEqual(await ack(A.socket, "leave", "r1"), { ok: true });
  assert.ok(!(await ack(A.socket, "rooms")).includes("r1"));
  r = await round(all, C.socket, { rooms: ["r1"] });
  assert.deepEqual(r.got, { B: 1 });
  assert.equal(r.count, 1);
});

test("a disconnected socket leaves its rooms; rooms are per namespace", { timeout: TEST_TIMEOUT_MS }, async () => {
  const clients = ctx.clients;
  const A = await client("A");
  const B = await client("B");
  await join(A, "shared");
  await join(B, "shared");

  // A socket on /a joining a room of the same name does not get "/" broadcasts.
  const other = await clients.connect("/a", { transports: ["websocket"] });
  const otherNews = new Recorder(other, "news", (d) => d);
  assert.deepEqual(await ack(other, "join", "shared"), { ok: true });

  // B disconnects from "/" but keeps the connection through "/b": once "/b"
  // answers, the server has processed B's earlier DISCONNECT packet.
  const Bb = clients.track(B.socket.io.socket("/b"));
  assert.equal(await ack(Bb, "echo", 1), 1);
  B.socket.disconnect();
  assert.equal(await ack(Bb, "echo", 2), 2);
  let r = await round({ A }, A.socket, { rooms: ["shared"] });
  assert.deepEqual(r.got, { A: 1 });
  assert.equal(r.count, 1, "the socket that disconnected left the room");

  // Same after a server-side disconnect (leave-namespace).
  const C = await client("C");
  await join(C, "shared");
  r = await round({ A, C }, A.socket, { rooms: ["shared"] });
  assert.equal(r.count, 2);
  const gone = once(C.socket, "disconnect");
  C.socket.emit("leave-namespace");
  await gone;
  r = await round({ A }, A.socket, { rooms: ["shared"] });
  assert.equal(r.count, 1, "the socket the server disconnected left the room");

  // /a's own broadcast reaches its member; nothing from "/" leaked before.
  const reply = await ack(other, "broadcast", { event: "news", rooms: ["shared"], data: { id: "a" } });
  assert.equal(reply.count, 1);
  const items = await otherNews.waitFor(1);
  assert.deepEqual(items, [{ id: "a" }]);
});
