// The reference Node.js server (socket.io 4 with `allowEIO3: true`) with the
// part of Switchboard's test kit (switchboard/src/handlers/testkit.rs) that
// the Engine.IO v3 tests use: `echo`, `join`, `leave`, `rooms`, `broadcast`,
// `ask`, `binary-reverse`, `close-connection`, on `/`, `/a`, `/b` and
// `/private` (admits `token: "let-me-in"` only, refusing with `unauthorized`
// and data `{code: "invalid_token"}`).
//
// It lets eio3.test.mjs run against the reference (`EIO3_REFERENCE=1 node
// --test eio3.test.mjs`): what the old clients do with the reference is what
// they must do with Switchboard. It prints `listening on 127.0.0.1:PORT`, as
// the Switchboard binary does, and exits on SIGTERM.

import { createServer } from "node:http";
import { Server } from "socket.io";

const http = createServer();
// REFERENCE_RECOVERY=1: connection state recovery on, as it is by default in
// Switchboard (every event then carries its offset as a last argument).
const io = new Server(http, {
  allowEIO3: true,
  maxHttpBufferSize: 10000,
  ...(process.env.REFERENCE_RECOVERY ? { connectionStateRecovery: {} } : {}),
});

function testkit(nsp) {
  if (nsp.name.includes("private")) {
    nsp.use((socket, next) => {
      if (socket.handshake.auth?.token === "let-me-in") return next();
      const err = new Error("unauthorized");
      err.data = { code: "invalid_token" };
      next(err);
    });
  }
  nsp.on("connection", (socket) => {
    socket.on("echo", (...args) => {
      const reply = typeof args.at(-1) === "function" ? args.pop() : null;
      if (reply) reply(...args);
      else socket.emit("echo", ...args);
    });
    socket.on("join", (room, reply) => {
      socket.join(room);
      reply?.({ ok: true });
    });
    socket.on("leave", (room, reply) => {
      socket.leave(room);
      reply?.({ ok: true });
    });
    socket.on("rooms", (reply) => reply([...socket.rooms]));
    socket.on("broadcast", (b, reply) => {
      let op = b.rooms?.length ? nsp.to(b.rooms) : nsp;
      if (b.except?.length) op = op.except(b.except);
      if (b.others) op = op.except(socket.id);
      op.emit(b.event, b.data);
      reply?.({ ok: true });
    });
    socket.on("ask", (a, reply) => {
      socket.timeout(a.timeout_ms).emit(a.event, a.data, (err, ...response) => {
        reply(err ? { ok: false, error: { code: "timeout", message: String(err) } } : { ok: true, response });
      });
    });
    socket.on("binary-reverse", (data, reply) => reply(Buffer.from(data).reverse()));
    socket.on("close-connection", () => socket.conn.close());
  });
}
for (const name of ["/", "/a", "/b", "/private"]) testkit(io.of(name));

http.listen(0, "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${http.address().port}`);
});
process.on("SIGTERM", () => {
  io.close();
  http.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
});
