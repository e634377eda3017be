// A measurement, not a test: /chat's write path under load, with the
// official client. USERS users, one device each, in USERS/2 direct
// conversations; each user sends messages with acks, either keeping WINDOW
// in flight (closed loop: the most the server stores) or at RATE messages
// per second in all (open loop: the ack latency at that rate). Reports
// messages stored (acked) per second, deliveries per second (message events
// received by the members' devices) and ack p50/p99.
//
//   cd tests/interop && node chat-throughput.mjs                 # closed loop
//   RATE=5000 node chat-throughput.mjs                           # open loop
//   STORE_URL=postgres://… node chat-throughput.mjs              # PostgreSQL
//
// Environment: USERS (20), WINDOW (32), RATE (0 = closed loop), SECS (10),
// INTEROP_SERVER_BIN as for the tests.

import { startEsn } from "./esn.mjs";
import { ack } from "./helpers.mjs";

const USERS = Number(process.env.USERS ?? 20);
const WINDOW = Number(process.env.WINDOW ?? 32);
const RATE = Number(process.env.RATE ?? 0);
const SECS = Number(process.env.SECS ?? 10);

const env = { SWITCHBOARD_LIMITS_EVENTS_PER_SEC: "0", SWITCHBOARD_CHAT_MESSAGES_PER_SEC: "0" };
if (process.env.STORE_URL) env.SWITCHBOARD_STORE_URL = process.env.STORE_URL;
const esn = await startEsn({ env });

const sockets = [];
for (let u = 0; u < USERS; u++) sockets.push(await esn.device(`user${u}`).connect("/chat"));
const conversations = [];
for (let u = 0; u < USERS; u += 2) {
  const reply = await ack(sockets[u], "conversation:create", { direct: `user${u + 1}` });
  conversations[u] = conversations[u + 1] = reply.conversation.id;
}
let deliveries = 0;
for (const s of sockets) s.on("message", () => deliveries++);

const latencies = [];
let acked = 0;
let failed = 0;
let measuring = false;
let running = true;
let next = 0;

function sendOne(u) {
  const started = performance.now();
  return new Promise((resolve) => {
    sockets[u].emit(
      "message",
      { conversation: conversations[u], client_id: `m${next++}`, text: "hello, this is a message of fifty characters" },
      (reply) => {
        if (measuring) {
          if (reply.ok) {
            acked++;
            latencies.push(performance.now() - started);
          } else failed++;
        }
        resolve();
      },
    );
  });
}

async function closedLoop(u) {
  while (running) await sendOne(u);
}

const warmup = 1000;
let timer;
if (RATE > 0) {
  // Open loop: every millisecond-ish tick sends what the rate owes.
  const begun = performance.now();
  let sent = 0;
  timer = setInterval(() => {
    const owed = Math.floor(((performance.now() - begun) / 1000) * RATE) - sent;
    for (let i = 0; i < owed; i++) sendOne((sent + i) % USERS);
    sent += Math.max(owed, 0);
  }, 1);
} else {
  for (let u = 0; u < USERS; u++) for (let w = 0; w < WINDOW; w++) closedLoop(u);
}
await new Promise((r) => setTimeout(r, warmup));
measuring = true;
const d0 = deliveries;
const t0 = performance.now();
await new Promise((r) => setTimeout(r, SECS * 1000));
measuring = false;
const secs = (performance.now() - t0) / 1000;
const delivered = deliveries - d0;
running = false;
clearInterval(timer);

latencies.sort((a, b) => a - b);
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : NaN);
console.log(
  JSON.stringify({
    store: process.env.STORE_URL ? "postgres" : "sqlite",
    mode: RATE > 0 ? `open loop ${RATE}/s` : `closed loop, ${WINDOW} in flight per user`,
    users: USERS,
    stored_per_sec: Math.round(acked / secs),
    delivered_per_sec: Math.round(delivered / secs),
    failed,
    ack_p50_ms: Number(pct(0.5).toFixed(2)),
    ack_p99_ms: Number(pct(0.99).toFixed(2)),
  }),
);
await new Promise((r) => setTimeout(r, 500));
await esn.stop();
process.exit(0);
