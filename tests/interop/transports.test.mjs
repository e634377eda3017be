// 4. A polling-only client works and stays on polling.
// 5. The default client upgrades polling→WebSocket without losing or
//    reordering messages sent around the upgrade.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  Recorder,
  TEST_TIMEOUT_MS,
  WAIT_MS,
  ack,
  connected,
  once,
  range,
  withTimeout,
  useServer,
} from "./helpers.mjs";

const ctx = useServer();

test("a polling-only client connects, echoes, receives broadcasts and stays on polling", { timeout: TEST_TIMEOUT_MS }, async () => {
  const clients = ctx.clients;
  const polling = clients.socket("/", { transports: ["polling"] });
  const upgrades = [];
  polling.io.engine.on("upgrading", (t) => upgrades.push(`upgrading ${t.name}`));
  polling.io.engine.on("upgrade", (t) => upgrades.push(`upgrade ${t.name}`));
  await connected(polling);
  assert.equal(polling.io.engine.transport.name, "polling");

  // Client→server with ack, and server→client event.
  assert.deepEqual(await ack(polling, "echo", { via: "polling" }), { via: "polling" });
  const echoed = once(polling, "echo");
  polling.emit("echo", "no ack");
  // Recovery is on by default: the event's offset comes last.
  const [text, offset] = await echoed;
  assert.equal(text, "no ack");
  assert.equal(typeof offset, "string");

  // A broadcast from a WebSocket client reaches the polling client.
  const news = new Recorder(polling, "news");
  const other = await clients.connect("/", { transports: ["websocket"] });
  const reply = await ack(other, "broadcast", { event: "news", data: { n: 1 }, others: true });
  assert.equal(reply.ok, true);
  assert.deepEqual((await news.waitFor(1)).map(([d]) => d), [{ n: 1 }]);

  // Several broadcasts in a row all arrive, in order.
  for (const n of [2, 3, 4, 5]) {
    await ack(other, "broadcast", { event: "news", data: { n } });
  }
  const items = await news.waitFor(5);
  assert.deepEqual(items.map(([d]) => d.n), [1, 2, 3, 4, 5]);

  assert.equal(polling.io.engine.transport.name, "polling");
  assert.deepEqual(upgrades, [], "a polling-only client never upgrades");
  assert.ok(polling.connected);
});

test("the default client upgrades to WebSocket and keeps message order across the upgrade", { timeout: TEST_TIMEOUT_MS }, async () => {
  const clients = ctx.clients;
  const socket = clients.socket("/");
  const engine = socket.io.engine;
  const echoes = new Recorder(socket, "echo", (n) => n);
  const timeline = [];
  let n = 0;
  // Emits `count` echo events (numbered in emission order) and notes the
  // transport the engine was on at that moment.
  const send = (label, count) => {
    timeline.push(`${label}: ${n}..${n + count - 1} (${engine.transport?.name ?? "none"})`);
    for (let i = 0; i < count; i++) socket.emit("echo", n++);
  };

  let openedOn;
  socket.io.on("open", () => {
    openedOn = engine.transport.name;
    send("engine open", 10);
  });
  socket.on("connect", () => send("socket connect", 10));
  const upgraded = new Promise((resolve) => {
    engine.on("upgrading", (t) => {
      timeline.push(`upgrading to ${t.name}`);
      send("upgrading", 10); // while the probe completes and polling pauses
    });
    engine.on("upgrade", (t) => {
      timeline.push(`upgraded to ${t.name}`);
      send("upgraded", 5); // right after the switch
      resolve(t.name);
    });
  });
  send("before open", 10); // buffered before the connection exists

  await connected(socket);
  assert.equal(await withTimeout(upgraded, WAIT_MS, "the upgrade"), "websocket");
  assert.equal(openedOn, "polling", "the client starts on polling");
  assert.equal(engine.transport.name, "websocket");
  send("after upgrade", 5);
  assert.equal(n, 50);

  const received = await echoes.waitFor(50);
  assert.deepEqual(received, range(50), `all 50 events echoed, in order; ${timeline.join("; ")}`);

  // And acks still work after the upgrade.
  assert.equal(await ack(socket, "echo", "after upgrade"), "after upgrade");
  assert.equal(echoes.items.length, 50, "no duplicates");
  assert.equal(socket.io.engine.transport.name, "websocket");
});

test("polling→WebSocket upgrade under a steady stream of acked events", { timeout: TEST_TIMEOUT_MS }, async () => {
  const clients = ctx.clients;
  const socket = clients.socket("/");
  const engine = socket.io.engine;
  const upgraded = once(engine, "upgrade");
  // One acked echo per millisecond from the start until 20 more after the
  // upgrade: whatever the timing, some go over polling, some while the
  // upgrade is in flight, some over WebSocket.
  const acks = [];
  const transports = [];
  const deadline = Date.now() + WAIT_MS;
  let onWebSocket = 0;
  let i = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const name = engine.transport?.name;
      transports.push(name);
      if (name === "websocket") onWebSocket++;
      acks.push(ack(socket, "echo", i++));
      if (onWebSocket < 20 && Date.now() < deadline) setTimeout(tick, 1);
      else resolve();
    };
    tick();
  });
  const [t] = await upgraded;
  assert.equal(t.name, "websocket");
  const replies = await Promise.all(acks);
  assert.deepEqual(replies, range(i), "every ack answered with its own value");
  assert.equal(transports[0], "polling");
  assert.ok(transports.filter((name) => name === "polling").length >= 1);
  assert.equal(onWebSocket, 20, `upgraded after ${transports.indexOf("websocket")} of ${i} events`);
  assert.equal(engine.transport.name, "websocket");
});
