// 8. A message over maxPayload (10000 bytes in interop.toml) closes the
//    connection of the client that sent it, and only that one.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Recorder, TEST_TIMEOUT_MS, ack, once, range, useServer } from "./helpers.mjs";

const MAX_PAYLOAD = 10_000;

const ctx = useServer();

for (const transport of ["websocket", "polling"]) {
  test(`over ${transport}: a 20 KB message disconnects its sender only`, { timeout: TEST_TIMEOUT_MS }, async () => {
    const clients = ctx.clients;
    const opts = { transports: [transport] };
    const x = await clients.connect("/", opts);
    const y = await clients.connect("/", opts);
    // Y is also watched over a second namespace on its own connection.
    const yA = clients.track(y.io.socket("/a"));
    await once(yA, "connect");
    const yDisconnects = new Recorder(y, "disconnect");

    // Under the limit: fine.
    const under = "u".repeat(MAX_PAYLOAD / 2);
    assert.equal(await ack(x, "echo", under), under);

    const xGone = once(x, "disconnect");
    x.emit("echo", "x".repeat(20_000));
    const [reason] = await xGone;
    assert.ok(
      reason === "transport close" || reason === "transport error",
      `X's disconnect reason: ${reason}`,
    );
    assert.equal(x.connected, false);

    // Y, connected all along, keeps working on both namespaces.
    assert.ok(y.connected);
    assert.equal(await ack(y, "echo", "y still works"), "y still works");
    assert.equal(await ack(yA, "echo", "so does /a"), "so does /a");
    const news = new Recorder(y, "news");
    await ack(y, "broadcast", { event: "news", data: 1 });
    await news.waitFor(1);
    assert.deepEqual(yDisconnects.items, []);

    // A fresh client connects as usual afterwards.
    const z = await clients.connect("/", opts);
    assert.equal(await ack(z, "echo", "z"), "z");
  });
}

test("polling: many small messages adding up to more than maxPayload are fine", { timeout: TEST_TIMEOUT_MS }, async () => {
  // The client splits its POSTs by the maxPayload announced in the handshake.
  const clients = ctx.clients;
  const socket = await clients.connect("/", { transports: ["polling"] });
  const chunk = "p".repeat(900);
  const replies = await Promise.all(range(30).map((i) => ack(socket, "echo", i, chunk)));
  assert.deepEqual(replies, range(30));
  assert.ok(socket.connected);
});
