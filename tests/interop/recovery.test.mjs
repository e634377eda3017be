// 11. Connection state recovery with the official client: a client whose
//     connection dropped comes back with `socket.recovered`, its socket id
//     and its rooms, and receives exactly the events it missed, in order,
//     once; after the window, or past the byte bound, it starts afresh; with
//     recovery off, no pid and no offset argument.
//
// Each suite runs its own server (the window and bounds differ). The cut is
// the client's own (`socket.io.engine.close()`, reconnection off) so that
// the broadcasts under test certainly happen while it is away, and the
// client comes back when the test says (`socket.connect()`, which sends the
// pid and last offset in its CONNECT).

import assert from "node:assert/strict";
import { after, afterEach, before, describe, test } from "node:test";
import {
  Clients,
  Recorder,
  TEST_TIMEOUT_MS,
  ack,
  connected,
  once,
  range,
  stopServer,
} from "./helpers.mjs";
import { startServer } from "./server.mjs";

/** A suite with its own server, started with `env`; `body(ctx)` declares its tests. */
function suite(name, env, body) {
  describe(name, () => {
    const ctx = {};
    before(async () => {
      ctx.server = await startServer({ env });
      ctx.url = ctx.server.url;
    });
    after(async () => {
      await stopServer(ctx.server);
    });
    afterEach(() => {
      ctx.clients?.closeAll();
      ctx.clients = undefined;
    });
    Object.defineProperty(ctx, "fresh", {
      get() {
        ctx.clients ??= new Clients(ctx.url);
        return ctx.clients;
      },
    });
    body(ctx);
  });
}

/** A connected client in room `room`, recording `news` (data and all arguments). */
async function member(ctx, transport, room = "r") {
  const socket = await ctx.fresh.connect("/", { transports: [transport] });
  assert.deepEqual(await ack(socket, "join", room), { ok: true });
  const news = new Recorder(socket, "news", (...args) => args);
  return { socket, news };
}

/** Broadcasts `news` with `data` to `room` (acked once recorded and queued). */
async function broadcast(sender, room, data) {
  const reply = await ack(sender, "broadcast", { event: "news", rooms: [room], data });
  assert.equal(reply.ok, true, JSON.stringify(reply));
}

/** Cuts the client's connection and waits until its socket saw it. */
async function cut(socket) {
  const gone = once(socket, "disconnect");
  socket.io.engine.close();
  await gone;
}

/** Reconnects a client whose connection was cut; resolves once connected. */
async function comeBack(socket) {
  const back = connected(socket);
  socket.connect();
  await back;
}

/** The `n`s of the recorded news, in arrival order. */
const ns = (recorder) => recorder.items.map(([data]) => data.n);

suite("recovery on (default window)", {}, (ctx) => {
  for (const transport of ["websocket", "polling"]) {
    test(`${transport}: same id, same rooms, exactly the missed events in order once`, { timeout: TEST_TIMEOUT_MS }, async () => {
      const a = await member(ctx, transport);
      const sender = await ctx.fresh.connect("/", { transports: ["websocket"] });
      await broadcast(sender, "r", { n: 0 });
      await a.news.waitFor(1);
      // Each recoverable event carries its offset as a last, string argument.
      const [, offset] = a.news.items[0];
      assert.equal(typeof offset, "string");
      const id = a.socket.id;

      await cut(a.socket);
      const N = 5;
      for (const n of range(N)) await broadcast(sender, "r", { n: n + 1 });
      await broadcast(sender, "elsewhere", { n: 99 });
      assert.deepEqual(ns(a.news), [0], "nothing while away");

      await comeBack(a.socket);
      assert.equal(a.socket.recovered, true);
      assert.equal(a.socket.id, id, "the same socket id");
      await a.news.waitFor(1 + N);
      assert.deepEqual(await ack(a.socket, "rooms"), ["r"]);
      // Live again: the next one arrives once, after the replay.
      await broadcast(sender, "r", { n: 6 });
      await a.news.waitFor(2 + N);
      // A round trip: anything duplicated would have arrived by now.
      await ack(a.socket, "echo", "sync");
      assert.deepEqual(ns(a.news), [0, 1, 2, 3, 4, 5, 6]);
      const offsets = a.news.items.map(([, o]) => BigInt(o));
      assert.ok(offsets.every((o, i) => i === 0 || o > offsets[i - 1]), `offsets grow: ${offsets}`);
    });
  }

  test("a server-closed connection reconnects by itself and is recovered", { timeout: TEST_TIMEOUT_MS }, async () => {
    const socket = await ctx.fresh.connect("/", {
      transports: ["websocket"],
      reconnection: true,
      reconnectionDelay: 50,
      reconnectionDelayMax: 100,
      randomizationFactor: 0,
    });
    assert.deepEqual(await ack(socket, "join", "r"), { ok: true });
    const echoes = new Recorder(socket, "echo", (...args) => args);
    socket.emit("echo", "an event to have an offset");
    await echoes.waitFor(1);
    const id = socket.id;
    const back = once(socket.io, "reconnect");
    socket.emit("close-connection");
    await back;
    if (!socket.connected) await connected(socket);
    assert.equal(socket.recovered, true);
    assert.equal(socket.id, id);
    assert.deepEqual(await ack(socket, "rooms"), ["r"]);
  });

  test("a client that never received an event is not recovered (no offset to present)", { timeout: TEST_TIMEOUT_MS }, async () => {
    const socket = await ctx.fresh.connect("/", { transports: ["websocket"] });
    const id = socket.id;
    await cut(socket);
    await comeBack(socket);
    assert.equal(socket.recovered, false);
    assert.notEqual(socket.id, id);
  });

  test("another client presenting the pid gets nothing while the session is taken", { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await member(ctx, "websocket");
    const sender = await ctx.fresh.connect("/", { transports: ["websocket"] });
    await broadcast(sender, "r", { n: 0 });
    await a.news.waitFor(1);
    // The pid is private; a connected socket's session is not to be taken.
    const pid = a.socket._pid;
    const offset = a.news.items[0][1];
    const thief = await ctx.fresh.connect("/", { transports: ["websocket"], auth: { pid, offset } });
    assert.equal(thief.recovered, false);
    assert.notEqual(thief.id, a.socket.id);
    assert.ok(a.socket.connected);
    await broadcast(sender, "r", { n: 1 });
    await a.news.waitFor(2);
    assert.deepEqual(ns(a.news), [0, 1]);
  });
});

suite("recovery with a 300 ms window", { SWITCHBOARD_SOCKETIO_RECOVERY_WINDOW_MS: "300" }, (ctx) => {
  test("after the window: not recovered, a new id, in no room", { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await member(ctx, "websocket");
    const sender = await ctx.fresh.connect("/", { transports: ["websocket"] });
    await broadcast(sender, "r", { n: 0 });
    await a.news.waitFor(1);
    const id = a.socket.id;
    await cut(a.socket);
    await broadcast(sender, "r", { n: 1 });
    await new Promise((resolve) => setTimeout(resolve, 600));
    await comeBack(a.socket);
    assert.equal(a.socket.recovered, false);
    assert.notEqual(a.socket.id, id);
    assert.deepEqual(await ack(a.socket, "rooms"), []);
    await ack(a.socket, "echo", "sync");
    assert.deepEqual(ns(a.news), [0], "no partial replay");
  });
});

suite("recovery with room for a few events only", { SWITCHBOARD_SOCKETIO_RECOVERY_MAX_BYTES: "2000" }, (ctx) => {
  test("more missed than is kept: not recovered, and none of them replayed", { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await member(ctx, "websocket");
    const sender = await ctx.fresh.connect("/", { transports: ["websocket"] });
    await broadcast(sender, "r", { n: 0 });
    await a.news.waitFor(1);
    await cut(a.socket);
    // Each event is a few hundred bytes kept: 20 of them pass 2000.
    for (const n of range(20)) await broadcast(sender, "r", { n: n + 1, pad: "x".repeat(100) });
    await comeBack(a.socket);
    assert.equal(a.socket.recovered, false);
    await ack(a.socket, "echo", "sync");
    assert.deepEqual(ns(a.news), [0]);
  });

  test("fewer missed than is kept: recovered with all of them", { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await member(ctx, "websocket");
    const sender = await ctx.fresh.connect("/", { transports: ["websocket"] });
    await broadcast(sender, "r", { n: 0 });
    await a.news.waitFor(1);
    await cut(a.socket);
    await broadcast(sender, "r", { n: 1 });
    await broadcast(sender, "r", { n: 2 });
    await comeBack(a.socket);
    assert.equal(a.socket.recovered, true);
    await a.news.waitFor(3);
    await ack(a.socket, "echo", "sync");
    assert.deepEqual(ns(a.news), [0, 1, 2]);
  });
});

suite("recovery off", { SWITCHBOARD_SOCKETIO_RECOVERY_WINDOW_MS: "0" }, (ctx) => {
  test("no pid, no offset argument, never recovered", { timeout: TEST_TIMEOUT_MS }, async () => {
    const a = await member(ctx, "websocket");
    const sender = await ctx.fresh.connect("/", { transports: ["websocket"] });
    await broadcast(sender, "r", { n: 0 });
    await a.news.waitFor(1);
    assert.deepEqual(a.news.items[0], [{ n: 0 }], "the data alone");
    assert.equal(a.socket._pid, undefined);
    const id = a.socket.id;
    await cut(a.socket);
    await broadcast(sender, "r", { n: 1 });
    await comeBack(a.socket);
    // Without a pid the client's flag stays unset (`pid && …`).
    assert.ok(!a.socket.recovered);
    assert.notEqual(a.socket.id, id);
    await ack(a.socket, "echo", "sync");
    assert.deepEqual(ns(a.news), [0]);
  });
});
