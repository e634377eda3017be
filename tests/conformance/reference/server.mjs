// Reference server for the official protocol test suites.
//
// One Node.js process, one HTTP server on port 3000 (override with PORT),
// serving both suites at once:
//
//   /socket.io/  Socket.IO server configured exactly as the "Test suite"
//                section of socket.io-protocol/Readme.md says.
//   /engine.io/  raw Engine.IO echo server configured exactly as the
//                "Test suite" section of engine.io-protocol/README.md says.
//
// Usage (from the repo root, after `npm ci` in this directory):
//   node tests/conformance/reference/server.mjs
// or through the harness:
//   SERVER="node tests/conformance/reference/server.mjs" \
//     tests/conformance/run.sh   (see tests/conformance/run.sh)

import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { Server as SocketIOServer } from "socket.io";
import { Server as EngineIOServer } from "engine.io";

const PORT = Number(process.env.PORT || 3000);

// Same fallback as socket.io's own `new Server(port)`: 404 for anything that
// neither the Socket.IO nor the Engine.IO server intercepts.
const httpServer = createServer((req, res) => {
  res.writeHead(404);
  res.end();
});

// Two engines share this HTTP server. By default each engine arms a timer that
// ends any upgrade request outside its own path which has not been answered
// within 1s; disable that so neither can interfere with the other, and reject
// stray upgrades ourselves (see the "upgrade" listener below).
const SHARED = { destroyUpgrade: false };

// ---------------------------------------------------------------- Socket.IO
// socket.io-protocol/Readme.md, "Test suite"
const io = new SocketIOServer(httpServer, {
  ...SHARED,
  pingInterval: 300,
  pingTimeout: 200,
  maxPayload: 1000000,
  connectTimeout: 1000,
  cors: {
    origin: "*",
  },
});

io.on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);

  socket.on("message", (...args) => {
    socket.emit.apply(socket, ["message-back", ...args]);
  });

  socket.on("message-with-ack", (...args) => {
    const ack = args.pop();
    ack(...args);
  });
});

io.of("/custom").on("connection", (socket) => {
  socket.emit("auth", socket.handshake.auth);
});

// ---------------------------------------------------------------- Engine.IO
// engine.io-protocol/README.md, "Test suite" (there: `listen(3000, {...})`,
// whose path defaults to /engine.io/).
const engine = new EngineIOServer({
  pingInterval: 300,
  pingTimeout: 200,
  maxPayload: 1e6,
  cors: {
    origin: "*",
  },
});
engine.attach(httpServer, { ...SHARED, path: "/engine.io/" });

engine.on("connection", (socket) => {
  socket.on("data", (...args) => {
    socket.send(...args);
  });
});

// ---------------------------------------------------------------- plumbing
httpServer.on("upgrade", (req, socket) => {
  const url = req.url || "";
  if (url.startsWith("/socket.io/") || url.startsWith("/engine.io/")) return;
  socket.on("error", () => {});
  socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
});

httpServer.on("error", (err) => {
  console.error(`reference server: ${err.message}`);
  process.exit(1);
});

// No host argument: listen on the unspecified address, which on a dual-stack
// machine accepts both ::1 and 127.0.0.1 ("localhost" may resolve to either).
httpServer.listen(PORT, () => {
  console.log(
    `reference server (socket.io ${pkgVersion("socket.io")}, engine.io ${pkgVersion(
      "engine.io"
    )}) listening on port ${PORT}: /socket.io/ and /engine.io/`
  );
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    io.close();
    engine.close();
    httpServer.close();
    process.exit(0);
  });
}

// Installed version of a dependency, for the startup banner only. Read the
// file directly: engine.io's "exports" map does not expose package.json.
function pkgVersion(name) {
  try {
    const file = new URL(`./node_modules/${name}/package.json`, import.meta.url);
    return JSON.parse(readFileSync(file, "utf8")).version;
  } catch {
    return "?";
  }
}
