// 1. One Manager multiplexes several namespaces over ONE Engine.IO session
//    and ONE WebSocket.

import assert from "node:assert/strict";
import { test } from "node:test";
import { NodeWebSocket, NodeXHR } from "engine.io-client";
import { Manager } from "socket.io-client";
import { TEST_TIMEOUT_MS, WAIT_MS, ack, connected, withTimeout, useServer } from "./helpers.mjs";

const ctx = useServer();

/** The client's own WebSocket transport, counting the WebSockets it opens. */
function countingWebSocket() {
  const counter = { created: 0 };
  class CountingWS extends NodeWebSocket {
    createSocket(...args) {
      counter.created += 1;
      return super.createSocket(...args);
    }
  }
  return { CountingWS, counter };
}

test("one Manager, three namespaces: one Engine.IO session, one WebSocket", { timeout: TEST_TIMEOUT_MS }, async () => {
  const clients = ctx.clients;
  const { CountingWS, counter } = countingWebSocket();
  // The default transports (polling, then upgrade to websocket), with the
  // WebSocket transport wrapped to count the sockets it creates.
  const manager = clients.trackManager(
    new Manager(ctx.url, { transports: [NodeXHR, CountingWS], reconnection: false }),
  );
  let opens = 0;
  manager.on("open", () => opens++);
  let upgrades = 0;
  const upgraded = new Promise((resolve) => {
    manager.engine.on("upgrade", (transport) => {
      upgrades++;
      resolve(transport.name);
    });
  });

  const sockets = ["/", "/a", "/b"].map((nsp) => clients.track(manager.socket(nsp)));
  await Promise.all(sockets.map((s) => connected(s)));
  assert.equal(await withTimeout(upgraded, WAIT_MS, "the upgrade"), "websocket");

  // Every namespace answers, over the same connection.
  for (const [i, socket] of sockets.entries()) {
    assert.deepEqual(await ack(socket, "echo", `hello ${socket.nsp}`, i), `hello ${socket.nsp}`);
  }

  const engineId = manager.engine.id;
  assert.ok(engineId, "the engine has a session id");
  for (const socket of sockets) {
    assert.equal(socket.io, manager, `${socket.nsp} uses the shared Manager`);
    assert.equal(socket.io.engine, manager.engine, `${socket.nsp} uses the shared engine`);
    assert.equal(socket.io.engine.id, engineId);
    assert.equal(socket.io.engine.transport.name, "websocket");
  }
  assert.equal(manager.engine.transport.name, "websocket");
  assert.equal(opens, 1, "the Manager opened one Engine.IO session");
  assert.equal(upgrades, 1, "the session upgraded once");
  assert.equal(counter.created, 1, "the client opened exactly one WebSocket");

  // Socket ids: one per namespace, none equal to the Engine.IO session id.
  const ids = sockets.map((s) => s.id);
  for (const id of ids) {
    assert.equal(typeof id, "string");
    assert.ok(id.length > 0);
    assert.notEqual(id, engineId, "a socket id must never be the Engine.IO sid");
  }
  assert.equal(new Set(ids).size, 3, `socket ids differ per namespace: ${ids}`);

  // Disconnecting one namespace leaves the others (and the session) alive.
  sockets[1].disconnect();
  assert.equal(await ack(sockets[0], "echo", "still here"), "still here");
  assert.equal(await ack(sockets[2], "echo", "me too"), "me too");
  assert.equal(manager.engine.id, engineId);
  assert.equal(counter.created, 1);
});

test("a websocket-only Manager also shares one session across namespaces", { timeout: TEST_TIMEOUT_MS }, async () => {
  const clients = ctx.clients;
  const { CountingWS, counter } = countingWebSocket();
  const manager = clients.trackManager(
    new Manager(ctx.url, { transports: [CountingWS], reconnection: false }),
  );
  let opens = 0;
  manager.on("open", () => opens++);
  const sockets = ["/", "/a", "/b"].map((nsp) => clients.track(manager.socket(nsp)));
  await Promise.all(sockets.map((s) => connected(s)));
  const replies = await Promise.all(sockets.map((s) => ack(s, "echo", s.nsp)));
  assert.deepEqual(replies, ["/", "/a", "/b"]);
  assert.equal(opens, 1);
  assert.equal(counter.created, 1);
  const ids = sockets.map((s) => s.id);
  assert.equal(new Set([...ids, manager.engine.id]).size, 4, "sid and socket ids all distinct");
});
