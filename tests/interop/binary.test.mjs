// 3. Binary payloads both ways (attachments in events and in acks).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TEST_TIMEOUT_MS, ack, ackAll, once, useServer } from "./helpers.mjs";

const ctx = useServer();

/** Any binary value the client may hand back, as a Buffer. */
function bytes(value) {
  assert.ok(
    Buffer.isBuffer(value) || value instanceof ArrayBuffer || ArrayBuffer.isView(value),
    `expected binary, got ${typeof value}: ${JSON.stringify(value)?.slice(0, 100)}`,
  );
  return Buffer.isBuffer(value) ? value : Buffer.from(value instanceof ArrayBuffer ? value : value.buffer);
}

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

for (const transport of ["websocket", "polling"]) {
  describe(`binary over ${transport}`, () => {
    const connect = () => ctx.clients.connect("/", { transports: [transport] });

    test("a Buffer echoed through an ack comes back identical", { timeout: TEST_TIMEOUT_MS }, async () => {
      const socket = await connect();
      const reply = await ack(socket, "echo", ALL_BYTES);
      assert.ok(bytes(reply).equals(ALL_BYTES));
      // Empty and larger buffers too.
      assert.equal(bytes(await ack(socket, "echo", Buffer.alloc(0))).length, 0);
      const big = Buffer.alloc(4000, 0xab);
      assert.ok(bytes(await ack(socket, "echo", big)).equals(big));
    });

    test("binary-reverse acks the bytes reversed", { timeout: TEST_TIMEOUT_MS }, async () => {
      const socket = await connect();
      const input = Buffer.from([1, 2, 3, 250, 0, 255]);
      const reply = await ack(socket, "binary-reverse", input);
      assert.deepEqual([...bytes(reply)], [255, 0, 250, 3, 2, 1]);
    });

    test("mixed arguments: objects holding buffers, text and several attachments", { timeout: TEST_TIMEOUT_MS }, async () => {
      const socket = await connect();
      const a = Buffer.from("first attachment");
      const b = Buffer.from([0, 1, 2]);
      const c = Buffer.from([9, 8, 7, 6]);
      const reply = await ackAll(
        socket,
        "echo",
        { name: "file.bin", data: a, nested: [b, 1, { deep: c }] },
        "text",
        c,
      );
      assert.equal(reply.length, 3);
      const [obj, text, last] = reply;
      assert.equal(obj.name, "file.bin");
      assert.ok(bytes(obj.data).equals(a));
      assert.ok(bytes(obj.nested[0]).equals(b));
      assert.equal(obj.nested[1], 1);
      assert.ok(bytes(obj.nested[2].deep).equals(c));
      assert.equal(text, "text");
      assert.ok(bytes(last).equals(c));
    });

    test("the server emits binary events (echo without ack)", { timeout: TEST_TIMEOUT_MS }, async () => {
      const socket = await connect();
      const echoed = once(socket, "echo");
      socket.emit("echo", "label", ALL_BYTES, { inner: Buffer.from([42]) });
      const [label, data, obj] = await echoed;
      assert.equal(label, "label");
      assert.ok(bytes(data).equals(ALL_BYTES));
      assert.deepEqual([...bytes(obj.inner)], [42]);
    });
  });
}
