// 7. Namespace middleware: rejected connections get a connect_error with the
//    message and data the middleware gave; unknown namespaces are refused.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Manager } from "socket.io-client";
import { TEST_TIMEOUT_MS, ack, connectError, connected, useServer } from "./helpers.mjs";

const ctx = useServer();

function assertUnauthorized(err) {
  assert.ok(err instanceof Error, "connect_error carries an Error");
  assert.equal(err.message, "unauthorized");
  assert.deepEqual(err.data, { code: "invalid_token" });
}

for (const transport of ["websocket", "polling"]) {
  describe(`middleware over ${transport}`, () => {
    const opts = { transports: [transport] };

    test("/private without a token: connect_error unauthorized / invalid_token", { timeout: TEST_TIMEOUT_MS }, async () => {
      const clients = ctx.clients;
      const socket = clients.socket("/private", opts);
      assertUnauthorized(await connectError(socket));
      assert.equal(socket.connected, false);
      assert.equal(socket.id, undefined);
    });

    test("/private with a bad token: connect_error unauthorized / invalid_token", { timeout: TEST_TIMEOUT_MS }, async () => {
      const clients = ctx.clients;
      for (const auth of [{ token: "nope" }, { token: 42 }, { other: "let-me-in" }]) {
        const socket = clients.socket("/private", { ...opts, auth });
        assertUnauthorized(await connectError(socket));
      }
    });

    test("/private with the right token connects; retrying with a fixed token works", { timeout: TEST_TIMEOUT_MS }, async () => {
      const clients = ctx.clients;
      const ok = await clients.connect("/private", { ...opts, auth: { token: "let-me-in" } });
      assert.equal(await ack(ok, "echo", "inside"), "inside");

      // The usual client pattern: fix socket.auth after connect_error, connect again.
      const retry = clients.socket("/private", { ...opts, auth: { token: "wrong" } });
      assertUnauthorized(await connectError(retry));
      retry.auth = { token: "let-me-in" };
      retry.connect();
      await connected(retry);
      assert.equal(await ack(retry, "echo", "retried"), "retried");
    });

    test("an unknown namespace gets connect_error \"Invalid namespace\"", { timeout: TEST_TIMEOUT_MS }, async () => {
      const clients = ctx.clients;
      const socket = clients.socket("/does-not-exist", opts);
      const err = await connectError(socket);
      assert.equal(err.message, "Invalid namespace");
      assert.equal(socket.connected, false);
    });

    test("a rejected namespace does not affect the others on the same Manager", { timeout: TEST_TIMEOUT_MS }, async () => {
      const clients = ctx.clients;
      const manager = clients.trackManager(new Manager(ctx.url, { ...opts, reconnection: false }));
      const root = clients.track(manager.socket("/"));
      const denied = clients.track(manager.socket("/private"));
      const unknown = clients.track(manager.socket("/nope"));
      const [, deniedErr, unknownErr] = await Promise.all([
        connected(root),
        connectError(denied),
        connectError(unknown),
      ]);
      assertUnauthorized(deniedErr);
      assert.equal(unknownErr.message, "Invalid namespace");
      assert.equal(await ack(root, "echo", "fine"), "fine");
      const allowed = clients.track(manager.socket("/a"));
      await connected(allowed);
      assert.equal(await ack(allowed, "echo", "also fine"), "also fine");
      assert.ok(root.connected);
    });
  });
}
