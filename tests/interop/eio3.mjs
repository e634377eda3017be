// What the Engine.IO v3 interop tests share: the old official clients
// (socket.io-client 2.5.0 and 1.7.4, the npm aliases socket.io-client-v2 and
// socket.io-client-v1), a server that accepts them (eio3.toml, or with
// EIO3_REFERENCE=1 the reference Node.js server of reference-eio3.mjs), and
// bounded waits on their events, whose names differ from 4.x's: a refused
// namespace is `error` (with the refusal's data), not `connect_error`.

import { afterEach } from "node:test";
import io2 from "socket.io-client-v2";
import io1 from "socket.io-client-v1";
import { io as io4 } from "socket.io-client";
import { useServer, withTimeout, WAIT_MS } from "./helpers.mjs";

export { io1, io2, io4 };

/** Whether the tests run against the reference Node.js server. */
export const REFERENCE = Boolean(process.env.EIO3_REFERENCE);

/**
 * startServer's options for the server of the eio3 tests: Switchboard on
 * `config` (default eio3.toml), or the reference (EIO3_REFERENCE).
 */
function eio3Options(options = {}) {
  return REFERENCE
    ? // Recovery on, as Switchboard's default: events carry their offset last.
      { ...options, command: ["node", "tests/interop/reference-eio3.mjs"], env: { REFERENCE_RECOVERY: "1" } }
    : { config: "tests/interop/eio3.toml", ...options };
}

/** Resolves once an old client's socket is connected; rejects on `error` / `connect_error`. */
export function connected(socket, ms = WAIT_MS) {
  if (socket.connected) return Promise.resolve(socket);
  const listeners = {};
  const p = new Promise((resolve, reject) => {
    listeners.connect = () => resolve(socket);
    listeners.error = (err) => reject(new Error(`${socket.nsp}: error ${JSON.stringify(err)}`));
    listeners.connect_error = (err) => reject(new Error(`${socket.nsp}: connect_error ${err?.message ?? err}`));
    for (const [event, f] of Object.entries(listeners)) socket.once(event, f);
  });
  return withTimeout(p, ms, `the connection of ${socket.nsp}`).finally(() => {
    for (const [event, f] of Object.entries(listeners)) socket.off(event, f);
  });
}

/** Resolves with the arguments of the ack of `event` (a plain callback: 1.x/2.x have no emitWithAck). */
export function ackAll(socket, event, ...args) {
  return withTimeout(
    new Promise((resolve) => socket.emit(event, ...args, (...reply) => resolve(reply))),
    WAIT_MS,
    `the ack of "${event}"`,
  );
}

/** The first argument of the ack of `event`. */
export async function ack(socket, event, ...args) {
  return (await ackAll(socket, event, ...args))[0];
}

/**
 * Creates old and new clients and closes them all in `closeAll()` (after
 * each test), reconnection timers included.
 */
export class OldClients {
  constructor(url) {
    this.url = url;
    this.managers = new Set();
  }

  /** A socket of a new Manager of client `io` (io1, io2 or io4); reconnection off unless asked for. */
  socket(io, nsp = "/", opts = {}) {
    const socket = io(this.url + nsp, { forceNew: true, reconnection: false, ...opts });
    this.managers.add(socket.io);
    return socket;
  }

  /** Like socket(), resolving once connected. */
  async connect(io, nsp = "/", opts = {}) {
    const socket = this.socket(io, nsp, opts);
    await connected(socket);
    return socket;
  }

  /** A Manager of client `io` on the server (its sockets: `manager.socket(nsp, opts)`). */
  manager(io, opts = {}) {
    const Manager = io.Manager;
    const manager = new Manager(this.url, { reconnection: false, ...opts });
    this.managers.add(manager);
    return manager;
  }

  closeAll() {
    for (const manager of this.managers) {
      manager.reconnection(false);
      for (const socket of Object.values(manager.nsps ?? {})) socket.close?.();
      if (typeof manager._close === "function") manager._close();
      else manager.close?.();
      manager.engine?.close();
    }
    this.managers.clear();
  }
}

/**
 * The per-file setup: helpers.mjs's useServer on the server of
 * eio3Options, whose `clients` are OldClients (closed after each test).
 * Returns `{server, url, clients}`.
 */
export function useEio3Server(options) {
  const ctx = useServer(eio3Options(options));
  let clients;
  afterEach(() => {
    clients?.closeAll();
    clients = undefined;
  });
  return {
    get server() {
      return ctx.server;
    },
    get url() {
      return ctx.url;
    },
    get clients() {
      clients ??= new OldClients(ctx.url);
      return clients;
    },
  };
}
