// 2. Acknowledgements both ways: client→server (callback and emitWithAck)
//    and server→client (answered, and timing out).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TEST_TIMEOUT_MS, ack, ackAll, once, useServer } from "./helpers.mjs";

const ctx = useServer();

for (const transport of ["websocket", "polling"]) {
  describe(`acks over ${transport}`, () => {
    const connect = () => ctx.clients.connect("/", { transports: [transport] });

    test("client→server ack with a callback returns every argument", { timeout: TEST_TIMEOUT_MS }, async () => {
      const socket = await connect();
      const args = [1, "two", { three: [3, null, true] }, [], "é✓🚀"];
      assert.deepEqual(await ackAll(socket, "echo", ...args), args);
      // No arguments at all.
      assert.deepEqual(await ackAll(socket, "echo"), []);
    });

    test("client→server emitWithAck resolves with the reply", { timeout: TEST_TIMEOUT_MS }, async () => {
      const socket = await connect();
      assert.deepEqual(await socket.emitWithAck("echo", { n: 1 }), { n: 1 });
      assert.equal(await ack(socket, "echo", "timed variant"), "timed variant");
      // Concurrent acks are matched to their own requests.
      const replies = await Promise.all(
        Array.from({ length: 20 }, (_, i) => ack(socket, "echo", `req-${i}`)),
      );
      assert.deepEqual(
        replies,
        Array.from({ length: 20 }, (_, i) => `req-${i}`),
      );
    });

    test("an event the server does not handle gets an unknown_event ack", { timeout: TEST_TIMEOUT_MS }, async () => {
      const socket = await connect();
      const reply = await ack(socket, "no-such-event", 1);
      assert.equal(reply.ok, false);
      assert.equal(reply.error.code, "unknown_event");
    });

    test("server→client ack: the client's answer reaches the server", { timeout: TEST_TIMEOUT_MS }, async () => {
      const socket = await connect();
      let seen;
      socket.on("question", (data, cb) => {
        seen = data;
        assert.equal(typeof cb, "function", "the server asked for an ack");
        cb({ answer: data.n + 1 }, "second");
      });
      const reply = await ack(socket, "ask", {
        event: "question",
        data: { n: 41 },
        timeout_ms: 2000,
      });
      assert.deepEqual(seen, { n: 41 });
      assert.deepEqual(reply, { ok: true, response: [{ answer: 42 }, "second"] });
    });

    test("server→client ack: the server times out when the client never answers", { timeout: TEST_TIMEOUT_MS }, async () => {
      const socket = await connect();
      const asked = once(socket, "silent");
      const started = Date.now();
      const reply = await ack(socket, "ask", { event: "silent", data: "hi", timeout_ms: 200 });
      const elapsed = Date.now() - started;
      const [data, cb] = await asked;
      assert.equal(data, "hi");
      assert.equal(typeof cb, "function", "the server asked for an ack");
      assert.equal(reply.ok, false);
      assert.equal(reply.error.code, "timeout");
      assert.ok(elapsed >= 150, `timed out after ${elapsed} ms, expected ≈200 ms`);
      assert.ok(elapsed < 2000, `timed out after ${elapsed} ms, expected ≈200 ms`);
      // A late answer is ignored and the connection keeps working.
      cb("too late");
      assert.equal(await ack(socket, "echo", "after"), "after");
    });
  });
}
