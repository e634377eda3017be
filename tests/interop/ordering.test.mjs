// 9. Events from one client reach an asynchronous handler in the order they
//    were emitted (the `seq` handler waits up to 1 ms before recording).

import assert from "node:assert/strict";
import { test } from "node:test";
import { TEST_TIMEOUT_MS, ack, range, useServer } from "./helpers.mjs";

const N = 1000;

const ctx = useServer();

for (const transport of ["websocket", "polling"]) {
  test(`over ${transport}: ${N} seq events reach the async handler in order`, { timeout: TEST_TIMEOUT_MS }, async () => {
    const clients = ctx.clients;
    const socket = await clients.connect("/", { transports: [transport] });
    for (const n of range(N)) socket.emit("seq", n);
    const seen = await ack(socket, "seq-result");
    assert.equal(seen.length, N, `the handler saw ${seen.length} of ${N} events`);
    assert.deepEqual(seen, range(N));
  });
}

test("seq logs are per socket: two namespaces on one connection, interleaved", { timeout: TEST_TIMEOUT_MS }, async () => {
  const clients = ctx.clients;
  const root = await clients.connect("/", { transports: ["websocket"] });
  const a = clients.track(root.io.socket("/a"));
  await ack(a, "echo", "ready");
  for (const n of range(300)) {
    root.emit("seq", n);
    a.emit("seq", 1000 + n);
  }
  const [seenRoot, seenA] = await Promise.all([ack(root, "seq-result"), ack(a, "seq-result")]);
  assert.deepEqual(seenRoot, range(300));
  assert.deepEqual(seenA, range(300).map((n) => 1000 + n));
});
