// Engine.IO v3 clients (issue 19): the official socket.io-client 2.5.0 and
// 1.7.4 from npm against a server with `allow_eio3 = true` (eio3.toml), next
// to socket.io-client 4: one Manager with several namespaces, acks both
// ways, Buffers both ways, rooms, polling only, WebSocket only, the upgrade,
// reconnection after the server closes the transport, a token in the query,
// and a v2 (or v1) client and a v4 client in one room receiving the same
// broadcasts.
//
// 1.x is tested with ASCII text over polling: its engine.io-parser 1.3.2
// encodes strings inside polling payloads as UTF-8 once more (the bug fixed
// in engine.io-parser 2.0.0, #81), so non-ASCII text over polling is mangled
// by every server since engine.io 2, the reference included; the last test
// pins what a user sees.
//
// `EIO3_REFERENCE=1 node --test eio3.test.mjs` runs the same tests against
// the reference Node.js server (socket.io 4, `allowEIO3: true`,
// reference-eio3.mjs).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Recorder, TEST_TIMEOUT_MS, once } from "./helpers.mjs";
import { ack, ackAll, connected, io1, io2, io4, useEio3Server } from "./eio3.mjs";

const ctx = useEio3Server();
const t = { timeout: TEST_TIMEOUT_MS };

const CLIENTS = [
  // Text the client carries intact over both transports.
  { name: "2.x", io: io2, text: "héllo € ✓" },
  { name: "1.x", io: io1, text: "hello, 1.x" },
];

let marker = 0;

/**
 * Broadcasts `news` (`data`) to `rooms` of `sender`'s namespace, then a
 * marker to the whole namespace; resolves once every one of `members` holds
 * the marker: the news reached each before it (one connection's events
 * arrive in order), so `news.items` says who got it.
 */
async function broadcastAndMark(sender, rooms, data, members) {
  assert.equal((await ack(sender, "broadcast", { event: "news", data, rooms })).ok, true);
  const id = ++marker;
  await ack(sender, "broadcast", { event: "marker", data: id });
  await Promise.all(members.map((m) => m.markers.waitUntil((items) => items.includes(id), `marker ${id}`)));
}

/** Records `news` and `marker` on a socket. */
function watch(socket) {
  return { socket, news: new Recorder(socket, "news", (x) => x), markers: new Recorder(socket, "marker", (x) => x) };
}

for (const client of CLIENTS) {
  describe(`socket.io-client ${client.name}`, () => {
    for (const transport of ["polling", "websocket"]) {
      describe(`${transport} only`, () => {
        const connect = (nsp = "/", opts = {}) => ctx.clients.connect(client.io, nsp, { transports: [transport], ...opts });

        test("acks both ways, and the connection stays on its transport", t, async () => {
          const socket = await connect();
          const args = [1, "two", { three: [3, null, true] }, [], client.text];
          assert.deepEqual(await ackAll(socket, "echo", ...args), args);
          assert.deepEqual(await ackAll(socket, "echo"), []);
          // Concurrent acks are matched to their own requests.
          const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => ack(socket, "echo", `req-${i}`)));
          assert.deepEqual(replies, Array.from({ length: 10 }, (_, i) => `req-${i}`));

          // The server asks, the client answers.
          socket.on("question", (data, cb) => cb({ answer: data.n + 1 }, client.text));
          assert.deepEqual(await ack(socket, "ask", { event: "question", data: { n: 41 }, timeout_ms: 2000 }), {
            ok: true,
            response: [{ answer: 42 }, client.text],
          });
          // An event without an ack comes back as an event. The reference
          // (recovery on) appends its recovery offset, which a v2 client
          // cannot use; Switchboard keeps no recovery session for a v3
          // socket, so its own emits come without (a broadcast, encoded
          // once for everyone, carries it).
          const echoed = once(socket, "echo");
          socket.emit("echo", "no ack", 2);
          const got = await echoed;
          assert.deepEqual(got.slice(0, 2), ["no ack", 2]);
          assert.ok(got.length === 2 || (got.length === 3 && typeof got[2] === "string"), JSON.stringify(got));
          assert.equal(socket.io.engine.transport.name, transport);
        });

        test("Buffers both ways, in events and acks", t, async () => {
          const socket = await connect();
          const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff]);
          const [back, nested] = await ackAll(socket, "echo", bytes, { label: "x", data: Buffer.from("abc"), list: [Buffer.alloc(0), 7] });
          assert.ok(Buffer.isBuffer(back), `a Buffer comes back, not ${JSON.stringify(back)}`);
          assert.deepEqual([...back], [...bytes]);
          assert.equal(nested.label, "x");
          assert.deepEqual([...nested.data], [...Buffer.from("abc")]);
          assert.equal(nested.list[0].length, 0);
          assert.equal(nested.list[1], 7);
          const reversed = await ack(socket, "binary-reverse", Buffer.from([1, 2, 3, 4]));
          assert.deepEqual([...reversed], [4, 3, 2, 1]);
          // A server→client event with a Buffer (echo without an ack).
          const echoed = once(socket, "echo");
          socket.emit("echo", Buffer.from([9, 8, 7]));
          const [got] = await echoed;
          assert.deepEqual([...got], [9, 8, 7]);
        });

        test("rooms: a broadcast reaches the room's members once, and no one else", t, async () => {
          const [a, b, c] = [watch(await connect()), watch(await connect()), watch(await connect())];
          for (const m of [a, b]) assert.deepEqual(await ack(m.socket, "join", "r"), { ok: true });
          await broadcastAndMark(c.socket, ["r"], { text: client.text }, [a, b, c]);
          assert.deepEqual(a.news.items, [{ text: client.text }]);
          assert.deepEqual(b.news.items, [{ text: client.text }]);
          assert.deepEqual(c.news.items, []);
          // After leaving, nothing more.
          assert.deepEqual(await ack(b.socket, "leave", "r"), { ok: true });
          await broadcastAndMark(c.socket, ["r"], { n: 2 }, [a, b, c]);
          assert.equal(a.news.items.length, 2);
          assert.equal(b.news.items.length, 1);
        });

        test("a token in the query signs in to a namespace; a wrong one gets the refusal's data", t, async () => {
          const ok = await connect("/private", { query: { token: "let-me-in" } });
          assert.deepEqual(await ack(ok, "echo", "inside"), "inside");
          const refused = ctx.clients.socket(client.io, "/private", { transports: [transport], query: { token: "nope" } });
          const [err] = await once(refused, "error");
          assert.deepEqual(err, { code: "invalid_token" });
          assert.equal(refused.connected, false);
        });
      });
    }

    test("one Manager, three namespaces: one session, each socket in its own namespace", t, async () => {
      const manager = ctx.clients.manager(client.io, { transports: ["websocket"] });
      const sockets = ["/", "/a", "/b"].map((nsp) => watch(manager.socket(nsp)));
      for (const s of sockets) await connected(s.socket);
      const engine = manager.engine;
      for (const s of sockets) {
        assert.equal(s.socket.io, manager);
        assert.equal(await ack(s.socket, "echo", s.socket.nsp), s.socket.nsp);
      }
      // A broadcast in /a reaches the /a socket only (the marker of each
      // namespace comes after it on the one connection).
      const other = watch(await ctx.clients.connect(client.io, "/a", { transports: ["websocket"] }));
      await ack(other.socket, "broadcast", { event: "news", data: "for /a" });
      for (const s of sockets) {
        const id = ++marker;
        await ack(s.socket, "broadcast", { event: "marker", data: id });
        await s.markers.waitUntil((items) => items.includes(id), `marker ${id}`);
      }
      assert.deepEqual(sockets.map((s) => s.news.items), [[], ["for /a"], []]);
      assert.equal(manager.engine, engine, "still the one Engine.IO session");
    });

    test("the default transports upgrade from polling to WebSocket, in order", t, async () => {
      const socket = ctx.clients.socket(client.io, "/");
      const upgraded = once(socket.io.engine, "upgrade");
      await connected(socket);
      const echoes = new Recorder(socket, "echo", (n) => n);
      for (let i = 0; i < 20; i++) socket.emit("echo", i);
      const [ws] = await upgraded;
      assert.equal(ws.name, "websocket");
      for (let i = 20; i < 40; i++) socket.emit("echo", i);
      await echoes.waitFor(40);
      assert.deepEqual(echoes.items, Array.from({ length: 40 }, (_, i) => i));
      assert.equal(socket.io.engine.transport.name, "websocket");
    });

    for (const transport of ["polling", "websocket"]) {
      test(`reconnects by itself when the server closes the transport (${transport})`, t, async () => {
        const socket = await ctx.clients.connect(client.io, "/a", {
          transports: [transport],
          reconnection: true,
          reconnectionDelay: 100,
          reconnectionDelayMax: 200,
        });
        const gone = once(socket, "disconnect");
        const back = once(socket.io, "reconnect");
        socket.emit("close-connection");
        const [reason] = await gone;
        assert.equal(reason, "transport close");
        await back;
        await connected(socket);
        assert.equal(await ack(socket, "echo", "again"), "again");
      });
    }

    test(`a ${client.name} and a 4.x client in one room receive the same broadcasts, both ways`, t, async () => {
      const members = [
        watch(await ctx.clients.connect(client.io, "/", { transports: ["polling"] })),
        watch(await ctx.clients.connect(client.io, "/", { transports: ["websocket"] })),
        watch(await ctx.clients.connect(io4, "/", { transports: ["polling"] })),
        watch(await ctx.clients.connect(io4, "/", { transports: ["websocket"] })),
      ];
      const outsider = watch(await ctx.clients.connect(client.io, "/", { transports: ["websocket"] }));
      for (const m of members) assert.deepEqual(await ack(m.socket, "join", "mixed"), { ok: true });
      const all = [...members, outsider];
      // From the 4.x client, then from the old one.
      const data = [
        { from: "v4", text: client.text, list: [1, 2.5, null, true] },
        { from: client.name, text: client.text, nested: { deep: ["x"] } },
      ];
      await broadcastAndMark(members[3].socket, ["mixed"], data[0], all);
      await broadcastAndMark(members[0].socket, ["mixed"], data[1], all);
      for (const m of members) assert.deepEqual(m.news.items, data);
      assert.deepEqual(outsider.news.items, []);
    });
  });
}

test("1.x over polling: non-ASCII text is mangled both ways, as with the reference (engine.io-parser 1.x's double UTF-8)", t, async () => {
  const v1 = watch(await ctx.clients.connect(io1, "/", { transports: ["polling"] }));
  const v4 = watch(await ctx.clients.connect(io4, "/", { transports: ["websocket"] }));
  for (const m of [v1, v4]) assert.deepEqual(await ack(m.socket, "join", "utf8"), { ok: true });
  // 1.x → 4.x: the 1.x client sends the UTF-8 bytes of "é" as two characters.
  await broadcastAndMark(v1.socket, ["utf8"], "é", [v1, v4]);
  assert.deepEqual(v4.news.items, ["\u00c3\u00a9"]);
  // Its own echo comes back intact: the two mistakes cancel out.
  assert.equal(await ack(v1.socket, "echo", "é"), "é");
});
