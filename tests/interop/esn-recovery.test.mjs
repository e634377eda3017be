// Connection state recovery in the ESN namespaces (esn.toml): a device whose
// connection dropped comes back recovered in /chat, gets the messages sent
// to it meanwhile once and in order, and /chat still knows its user; a token
// that expired meanwhile is refused (recovery revives no credentials), and
// the session is still there for the same user's fresh token.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Manager } from "socket.io-client";
import { startEsn, token } from "./esn.mjs";
import { Recorder, TEST_TIMEOUT_MS, ack, connectError, connected, once } from "./helpers.mjs";

let esn;

before(async () => {
  esn = await startEsn();
});

after(async () => {
  await esn?.stop();
});

let next = 0;
const clientId = () => `r${++next}`;

/** A device of `user` whose connection the test cuts and restores by hand. */
function device(user, ttlSecs) {
  const manager = new Manager(esn.url, { transports: ["websocket"], reconnection: false, forceNew: true });
  const socket = (nsp) => manager.socket(nsp, { auth: { token: token(user, ttlSecs) } });
  return { manager, socket };
}

/** Sends a direct message from `socket` to `to`; returns the ack. */
async function message(socket, to, text) {
  const reply = await ack(socket, "message", { to, client_id: clientId(), text });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  return reply;
}

async function cut(manager, sockets) {
  const gone = sockets.map((s) => once(s, "disconnect"));
  manager.engine.close();
  await Promise.all(gone);
}

test("/chat: recovered, the missed messages once and in order, and the user still known", { timeout: TEST_TIMEOUT_MS }, async () => {
  const alice = device("alice");
  const chat = alice.socket("/chat");
  const bell = alice.socket("/notifications");
  chat.connect();
  bell.connect();
  await Promise.all([connected(chat), connected(bell)]);
  const messages = new Recorder(chat, "message", (m) => m);
  const bob = device("bob");
  const bobChat = bob.socket("/chat");
  bobChat.connect();
  await connected(bobChat);
  const bobMessages = new Recorder(bobChat, "message", (m) => m);

  const first = await message(bobChat, "alice", "before");
  await messages.waitUntil((xs) => xs.some((m) => m.id === first.id), "the first message");
  const id = chat.id;

  await cut(alice.manager, [chat, bell]);
  const missed = [];
  for (const n of [1, 2, 3]) missed.push(await message(bobChat, "alice", `while away ${n}`));

  chat.connect();
  bell.connect();
  await Promise.all([connected(chat), connected(bell)]);
  assert.equal(chat.recovered, true);
  assert.equal(chat.id, id);
  await messages.waitUntil((xs) => xs.some((m) => m.id === missed[2].id), "the missed messages");

  // /chat still knows who alice is: her message reaches bob from her.
  const reply = await message(chat, "bob", "back");
  const got = await bobMessages.waitUntil((xs) => xs.some((m) => m.id === reply.id), "alice's message");
  assert.equal(got.find((m) => m.id === reply.id).sender, "alice");
  // /notifications answers too.
  const list = await ack(bell, "list", {});
  assert.equal(list.ok, true, JSON.stringify(list));

  const fromBob = messages.items.filter((m) => m.sender === "bob").map((m) => m.text);
  assert.deepEqual(fromBob, ["before", "while away 1", "while away 2", "while away 3"]);
  alice.manager.engine?.close();
  bob.manager.engine?.close();
});

test("an expired token is not revived; another user gets nothing; the user's fresh token recovers", { timeout: TEST_TIMEOUT_MS }, async () => {
  const carol = device("carol", 2);
  const chat = carol.socket("/chat");
  chat.connect();
  await connected(chat);
  const messages = new Recorder(chat, "message", (m) => m);
  const dave = device("dave");
  const daveChat = dave.socket("/chat");
  daveChat.connect();
  await connected(daveChat);
  const first = await message(daveChat, "carol", "before");
  await messages.waitUntil((xs) => xs.some((m) => m.id === first.id), "the first message");
  const id = chat.id;
  // What the client will present (kept privately by socket.io-client).
  const presented = { pid: chat._pid, offset: chat._lastOffset };
  assert.equal(typeof presented.pid, "string");
  assert.equal(typeof presented.offset, "string");

  await cut(carol.manager, [chat]);
  const missed = await message(daveChat, "carol", "while away");
  // Past the token's exp (2 s, in whole seconds; esn.toml has no leeway).
  await new Promise((resolve) => setTimeout(resolve, 3500));
  const refused = connectError(chat);
  chat.connect();
  const err = await refused;
  assert.equal(err.message, "unauthorized");
  assert.equal(err.data.code, "token_expired");

  // Another user's valid token with carol's pid and offset: a socket of
  // their own, not carol's session.
  const mallory = device("mallory");
  const thief = mallory.manager.socket("/chat", { auth: { token: token("mallory"), ...presented } });
  thief.connect();
  await connected(thief);
  assert.equal(thief.recovered, false);
  assert.notEqual(thief.id, id);

  // Carol with a fresh token: her session was left for her.
  chat.auth = { token: token("carol") };
  chat.connect();
  await connected(chat);
  assert.equal(chat.recovered, true);
  assert.equal(chat.id, id);
  await messages.waitUntil((xs) => xs.some((m) => m.id === missed.id), "the missed message");
  assert.deepEqual(
    messages.items.map((m) => m.text),
    ["before", "while away"],
  );
  for (const d of [carol, dave, mallory]) d.manager.engine?.close();
});
