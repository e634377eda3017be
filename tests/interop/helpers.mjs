// Client-side helpers shared by the interop tests. Every wait is bounded so
// that a broken server fails a test instead of hanging it.

import assert from "node:assert/strict";
import { after, afterEach, before } from "node:test";
import { io } from "socket.io-client";
import { startServer } from "./server.mjs";

/** The bound on any single wait (an event, an ack). */
export const WAIT_MS = 5_000;

/** Per-test bound given to node:test (a test is a handful of waits). */
export const TEST_TIMEOUT_MS = 20_000;

/** Rejects if `promise` does not settle within `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Resolves with the arguments of the next `event` on a socket.io-client
 * emitter (Socket, Manager or engine Socket), or rejects after `ms`.
 */
export function once(emitter, event, ms = WAIT_MS) {
  let listener;
  const p = new Promise((resolve) => {
    listener = (...args) => resolve(args);
    emitter.once(event, listener);
  });
  return withTimeout(p, ms, `"${event}"`).catch((err) => {
    emitter.off(event, listener);
    throw err;
  });
}

/** Resolves with the ack arguments' first value (emitWithAck), bounded. */
export function ack(socket, event, ...args) {
  return socket.timeout(WAIT_MS).emitWithAck(event, ...args);
}

/** Resolves with all the ack arguments (plain emit with a callback), bounded. */
export function ackAll(socket, event, ...args) {
  return withTimeout(
    new Promise((resolve) => socket.emit(event, ...args, (...reply) => resolve(reply))),
    WAIT_MS,
    `the ack of "${event}"`,
  );
}

/** Records every `event` a socket receives; `waitFor(n)` awaits the n-th. */
export class Recorder {
  constructor(socket, event, map = (...args) => args) {
    this.items = [];
    this.waiters = [];
    socket.on(event, (...args) => {
      this.items.push(map(...args));
      this.waiters = this.waiters.filter((w) => !w());
    });
    this.event = event;
  }

  /** Resolves once `predicate(items)` holds (checked on every arrival). */
  waitUntil(predicate, what = "a condition", ms = WAIT_MS) {
    if (predicate(this.items)) return Promise.resolve(this.items);
    let check;
    const p = new Promise((resolve) => {
      check = () => {
        if (!predicate(this.items)) return false;
        resolve(this.items);
        return true;
      };
      this.waiters.push(check);
    });
    return withTimeout(p, ms, `${what} on "${this.event}" (got ${this.items.length})`).catch(
      (err) => {
        this.waiters = this.waiters.filter((w) => w !== check);
        throw err;
      },
    );
  }

  waitFor(count, ms = WAIT_MS) {
    return this.waitUntil((items) => items.length >= count, `${count} events`, ms);
  }
}

/**
 * Creates clients and closes all of them in `closeAll()` (call it in
 * afterEach), so that no socket or reconnection timer outlives its test.
 */
export class Clients {
  constructor(url) {
    this.url = url;
    this.managers = new Set();
    this.sockets = new Set();
  }

  /**
   * A new Socket.IO client on its own Manager (forceNew). Reconnection is off
   * unless asked for, so a dead server cannot leave a client retrying.
   */
  socket(nsp = "/", opts = {}) {
    const socket = io(this.url + nsp, { forceNew: true, reconnection: false, ...opts });
    this.track(socket);
    return socket;
  }

  /** Like socket(), resolving once connected (rejecting on connect_error). */
  async connect(nsp = "/", opts = {}) {
    const socket = this.socket(nsp, opts);
    await connected(socket);
    return socket;
  }

  track(socket) {
    this.sockets.add(socket);
    this.managers.add(socket.io);
    return socket;
  }

  trackManager(manager) {
    this.managers.add(manager);
    return manager;
  }

  closeAll() {
    for (const socket of this.sockets) socket.disconnect();
    for (const manager of this.managers) {
      manager.reconnection(false);
      // Manager#_close() stops reconnection and closes the Engine.IO session.
      if (typeof manager._close === "function") manager._close();
      else manager.engine?.close();
    }
    this.sockets.clear();
    this.managers.clear();
  }
}

/** Resolves once `socket` is connected; rejects with the connect_error. */
export function connected(socket, ms = WAIT_MS) {
  if (socket.connected) return Promise.resolve(socket);
  let onConnect, onError;
  const p = new Promise((resolve, reject) => {
    onConnect = () => resolve(socket);
    onError = (err) => reject(err);
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
  return withTimeout(p, ms, `the connection of ${socket.nsp}`).finally(() => {
    socket.off("connect", onConnect);
    socket.off("connect_error", onError);
  });
}

/** Resolves with the connect_error of `socket`; rejects if it connects. */
export function connectError(socket, ms = WAIT_MS) {
  let onConnect, onError;
  const p = new Promise((resolve, reject) => {
    onConnect = () => reject(new Error(`${socket.nsp} connected; expected a connect_error`));
    onError = (err) => resolve(err);
    socket.once("connect", onConnect);
    socket.once("connect_error", onError);
  });
  return withTimeout(p, ms, `the connect_error of ${socket.nsp}`).finally(() => {
    socket.off("connect", onConnect);
    socket.off("connect_error", onError);
  });
}

/** 0, 1, …, n-1 */
export function range(n) {
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * Stops the file's server (the `after` hook): fails if it died during the
 * tests or does not exit cleanly (status 0) on SIGTERM.
 */
export async function stopServer(server) {
  if (!server) return;
  const aliveBefore = server.alive;
  const status = await server.stop();
  assert.ok(aliveBefore, `the server died during the tests (${JSON.stringify(status)})\n${server.output()}`);
  assert.deepEqual(status, { code: 0, signal: null }, `server exit status\n${server.output()}`);
}

/**
 * The per-file setup every test file shares: call it once at the top level.
 * It registers the hooks that start the file's server (`before`), stop it and
 * check its exit (`after`, see stopServer) and close the test's clients
 * (`afterEach`), and returns a context:
 *
 *   const ctx = useServer();
 *   test("…", async () => {
 *     const socket = await ctx.clients.connect("/");
 *   });
 *
 * - `ctx.server`: the running server (`startServer()`), set in `before`.
 * - `ctx.url`: its base URL.
 * - `ctx.clients`: the current test's Clients, made on first use; `afterEach`
 *   closes everything it created and the next test gets a new one.
 *
 * @param {Parameters<typeof startServer>[0]} [options] passed to startServer.
 */
export function useServer(options) {
  let server;
  let clients;
  before(async () => {
    server = await startServer(options);
  });
  after(async () => {
    await stopServer(server);
  });
  afterEach(() => {
    clients?.closeAll();
    clients = undefined;
  });
  return {
    get server() {
      return server;
    },
    get url() {
      return server.url;
    },
    get clients() {
      clients ??= new Clients(server.url);
      return clients;
    },
  };
}
