// The reference peer for the benchmarks: socket.io@4 from the npm registry with
// the same behaviour as bench/server.sh. Start with: PORT=N node bench/peers/node/server.js
const { createServer } = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.env.PORT || 3200);
const httpServer = createServer();
// allowEIO3: socket.io 2.x clients too (loadgen --eio3-share), as bench.toml's allow_eio3.
const io = new Server(httpServer, { maxHttpBufferSize: 1e6, allowEIO3: true });

io.on("connection", (socket) => {
  socket.join("all");
  socket.on("pub", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    io.to("all").emit("msg", ...args);
    if (ack) ack();
  });
  socket.on("echo", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
    if (ack) ack(...args);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`listening on 127.0.0.1:${port}`);
});
process.on("SIGTERM", () => process.exit(0));
