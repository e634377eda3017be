// 10. Reconnection: after the server closes the connection the client
//     reconnects by itself; after the server disconnects the socket from the
//     namespace it does not.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Manager } from "socket.io-client";
import { Recorder, TEST_TIMEOUT_MS, ack, connected, once, useServer } from "./helpers.mjs";

// Fast, deterministic reconnection delays so the tests stay quick.
const RECONNECT = {
  reconnection: true,
  reconnectionDelay: 50,
  reconnectionDelayMax: 100,
  randomizationFactor: 0,
};

const ctx = useServer();

for (const transport of ["websocket", "polling"]) {
  describe(`reconnection over ${transport}`, () => {
    const opts = { transports: [transport], ...RECONNECT };

    test("close-connection: 'transport close', then an automatic reconnection", { timeout: TEST_TIMEOUT_MS }, async () => {
      const clients = ctx.clients;
      const socket = await clients.connect("/", opts);
      const firstId = socket.id;
      const firstSid = socket.io.engine.id;
      const connects = new Recorder(socket, "connect");
      const disconnects = new Recorder(socket, "disconnect", (reason) => reason);
      const reconnected = once(socket.io, "reconnect");

      socket.emit("close-connection");
      await disconnects.waitFor(1);
      assert.deepEqual(disconnects.items, ["transport close"]);
      assert.equal(socket.active, true, "the socket will reconnect by itself");

      await connects.waitFor(1);
      const [attempts] = await reconnected;
      assert.ok(attempts >= 1);
      assert.ok(socket.connected);
      assert.notEqual(socket.id, firstId, "a new socket id after reconnecting");
      assert.notEqual(socket.io.engine.id, firstSid, "a new Engine.IO session");
      assert.notEqual(socket.id, socket.io.engine.id);
      assert.ok(!socket.recovered, "no connection state recovery");
      assert.equal(await ack(socket, "echo", "back again"), "back again");
      assert.deepEqual(disconnects.items, ["transport close"], "one disconnect only");
    });

    test("close-connection reconnects every namespace of the Manager", { timeout: TEST_TIMEOUT_MS }, async () => {
      const clients = ctx.clients;
      const manager = clients.trackManager(new Manager(ctx.url, opts));
      const sockets = ["/", "/a", "/b"].map((nsp) => clients.track(manager.socket(nsp)));
      await Promise.all(sockets.map((s) => connected(s)));
      const oldIds = sockets.map((s) => s.id);
      const reasons = sockets.map((s) => once(s, "disconnect"));
      const reconnects = sockets.map((s) => reasons[sockets.indexOf(s)].then(() => once(s, "connect")));

      sockets[1].emit("close-connection"); // asked through /a: the whole connection goes
      for (const [i, r] of (await Promise.all(reasons)).entries()) {
        assert.equal(r[0], "transport close", `${sockets[i].nsp}`);
      }
      await Promise.all(reconnects);
      for (const [i, socket] of sockets.entries()) {
        assert.ok(socket.connected, socket.nsp);
        assert.notEqual(socket.id, oldIds[i]);
        assert.equal(await ack(socket, "echo", socket.nsp), socket.nsp);
      }
    });

    test("leave-namespace: 'io server disconnect' and no automatic reconnection", { timeout: TEST_TIMEOUT_MS }, async () => {
      const clients = ctx.clients;
      const manager = clients.trackManager(new Manager(ctx.url, opts));
      const socket = clients.track(manager.socket("/"));
      const other = clients.track(manager.socket("/a"));
      await Promise.all([connected(socket), connected(other)]);
      const sid = manager.engine.id;
      const connects = new Recorder(socket, "connect");
      const reconnectAttempts = new Recorder(manager, "reconnect_attempt");

      const gone = once(socket, "disconnect");
      socket.emit("leave-namespace");
      const [reason] = await gone;
      assert.equal(reason, "io server disconnect");
      assert.equal(socket.connected, false);
      assert.equal(socket.active, false, "the client does not plan to reconnect");

      // The connection itself stays up: /a keeps working on the same session.
      assert.equal(await ack(other, "echo", "still up"), "still up");
      assert.equal(manager.engine.id, sid);
      // Several reconnection delays later, still no reconnection.
      await new Promise((resolve) => setTimeout(resolve, 4 * RECONNECT.reconnectionDelayMax));
      assert.deepEqual(connects.items, []);
      assert.deepEqual(reconnectAttempts.items, []);
      assert.equal(socket.connected, false);

      // It reconnects when asked to, with a new id.
      socket.connect();
      await connected(socket);
      assert.equal(await ack(socket, "echo", "manual"), "manual");
    });
  });
}
