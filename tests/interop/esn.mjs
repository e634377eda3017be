// Helpers for the ESN component tests: a server on tests/interop/esn.toml,
// tokens for any user (HS256 with the secret of esn.toml), devices (one
// socket.io-client Manager per device, so a user's two devices are two
// connections, as two browser tabs are), and the publish API.
//
//   const esn = await startEsn();            // in before()
//   const phone = esn.device("alice");       // a device of alice
//   const chat = await phone.connect("/chat");
//   await esn.stop();                        // in after()

import { createHmac } from "node:crypto";
import { Manager } from "socket.io-client";
import { once } from "./helpers.mjs";
import { startServer } from "./server.mjs";

export const SECRET = "esn-interop-secret";
export const API_KEY = "esn-interop-key";

const b64url = (value) => Buffer.from(value).toString("base64url");

/** An HS256 token for `user`, valid `ttlSecs` (default an hour). */
export function token(user, ttlSecs = 3600) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const now = Math.floor(Date.now() / 1000);
  const claims = b64url(JSON.stringify({ sub: user, iat: now, exp: now + ttlSecs }));
  const signature = createHmac("sha256", SECRET).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

/** Starts a server on esn.toml; `options` as startServer's (env, args). */
export async function startEsn(options = {}) {
  const server = await startServer({ ...options, config: "tests/interop/esn.toml" });
  const managers = new Set();
  return {
    server,
    url: server.url,
    /** A new device of `user`: its own connection, shared by its namespaces. */
    device(user) {
      const manager = new Manager(server.url, { transports: ["websocket"], reconnection: false, forceNew: true });
      managers.add(manager);
      return {
        user,
        manager,
        /** Resolves with a connected socket of namespace `nsp`. */
        async connect(nsp) {
          const socket = manager.socket(nsp, { auth: { token: token(user) } });
          socket.connect();
          await once(socket, "connect");
          return socket;
        },
        close() {
          manager.engine?.close();
          managers.delete(manager);
        },
      };
    },
    /** Calls the publish API: resolves with {status, body}. */
    async api(method, path, body) {
      const res = await fetch(`${server.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, body: text ? JSON.parse(text) : null };
    },
    async stop() {
      for (const manager of managers) manager.engine?.close();
      managers.clear();
      await server.stop();
    },
  };
}
