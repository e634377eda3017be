// Measures a notification for 10,000 users through the publish API: the
// time until stored (the API answers once the transaction committed and
// every device was queued its `notification`) and until delivered (the
// last connected device received it), with every user connected and with
// none. Not a test (run by hand; the figures are in the notifications
// report):
//
//   INTEROP_SERVER_BIN=../../target/release/switchboard node measure-notifications.mjs [USERS] [ROUNDS]
//
// One raw WebSocket per user (the `ws` package socket.io-client brings),
// speaking Engine.IO/Socket.IO itself: 10,000 official clients would cost
// the machine more than the server does.

import WebSocket from "ws";
import { startEsn, token } from "./esn.mjs";

const USERS = Number(process.argv[2] ?? 10_000);
const ROUNDS = Number(process.argv[3] ?? 3);

const esn = await startEsn({
  env: {
    SWITCHBOARD_SERVER_HANDSHAKES_PER_SEC_PER_ADDRESS: "0",
    SWITCHBOARD_SERVER_MAX_SESSIONS_PER_ADDRESS: "0",
    SWITCHBOARD_STORE_TIMEOUT_MS: "30000",
    // 10,000 users a round, round after round: more than the key's default
    // rate lets through (api.recipients_per_sec).
    SWITCHBOARD_API_RECIPIENTS_PER_SEC: "0",
  },
});
const wsUrl = `${esn.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`;

/** Connects `user` to /notifications; resolves once it has its `unread`. */
function connect(user, onNotification) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl);
    ws.on("error", reject);
    ws.on("message", (raw) => {
      const text = raw.toString();
      if (text === "2") return ws.send("3");
      if (text.startsWith("0{")) return ws.send(`40/notifications,${JSON.stringify({ token: token(user) })}`);
      if (text.startsWith('42/notifications,["unread"')) return resolve(ws);
      if (text.startsWith('42/notifications,["notification"')) onNotification(text);
    });
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

let received = 0;
let lastAt = 0;
let waiting = null;
const onNotification = () => {
  received++;
  lastAt = performance.now();
  if (received === USERS && waiting) waiting();
};

const connectedUsers = Array.from({ length: USERS }, (_, i) => `on${i}`);
const offlineUsers = Array.from({ length: USERS }, (_, i) => `off${i}`);
const t0 = performance.now();
const sockets = [];
for (let i = 0; i < USERS; i += 500) {
  sockets.push(...(await Promise.all(connectedUsers.slice(i, i + 500).map((u) => connect(u, onNotification)))));
}
console.log(`${USERS} devices connected in ${Math.round(performance.now() - t0)} ms`);

const stored = [];
const delivered = [];
const offline = [];
for (let round = 0; round < ROUNDS; round++) {
  received = 0;
  const all = new Promise((resolve) => (waiting = resolve));
  const start = performance.now();
  const res = await esn.api("POST", "/api/v1/notifications", {
    users: connectedUsers,
    type: "measure",
    title: `round ${round}`,
    body: "a notification for every user",
    data: { round },
  });
  const answered = performance.now();
  if (res.status !== 200 || res.body.stored !== USERS) throw new Error(JSON.stringify(res));
  await all;
  stored.push(answered - start);
  delivered.push(lastAt - start);

  const startOff = performance.now();
  const off = await esn.api("POST", "/api/v1/notifications", {
    users: offlineUsers,
    type: "measure",
    title: `round ${round}`,
  });
  if (off.status !== 200 || off.body.stored !== USERS) throw new Error(JSON.stringify(off));
  offline.push(performance.now() - startOff);
}
const ms = (xs) => `${xs.map((x) => Math.round(x)).join(", ")} ms (median ${Math.round(median(xs))})`;
console.log(`connected users: stored and sent (API answer): ${ms(stored)}`);
console.log(`connected users: delivered to the last device: ${ms(delivered)}`);
console.log(`users not connected: stored (API answer): ${ms(offline)}`);
for (const ws of sockets) ws.terminate();
await esn.stop();
