// /chat with the official socket.io-client: three users (alice, bob, carol)
// with two devices each, through every event of the namespace and its
// errors. Timers are short here (typing expires after 600 ms, one relay per
// 300 ms) so that the expiry can be awaited.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startEsn } from "./esn.mjs";
import { ack, Recorder, TEST_TIMEOUT_MS } from "./helpers.mjs";

const USERS = ["alice", "bob", "carol"];
const EVENTS = [
  "message",
  "message:updated",
  "message:deleted",
  "typing",
  "read",
  "conversation:joined",
  "conversation:member_added",
  "conversation:member_left",
  "conversation:member_removed",
];
const TTL_MS = 600;

let esn;
/** chat[user][i]: device i's /chat socket; rec[user][i][event]: its Recorder. */
const chat = {};
const rec = {};
const bell = {};

async function connectDevice(user) {
  const device = esn.device(user);
  const socket = await device.connect("/chat");
  const notifications = await device.connect("/notifications");
  const recorders = {};
  for (const event of EVENTS) recorders[event] = new Recorder(socket, event, (x) => x);
  recorders.notification = new Recorder(notifications, "notification", (x) => x);
  return { device, socket, recorders };
}

before(async () => {
  esn = await startEsn({
    env: {
      SWITCHBOARD_CHAT_TYPING_TTL_MS: String(TTL_MS),
      SWITCHBOARD_CHAT_TYPING_RELAY_MS: "300",
      SWITCHBOARD_CHAT_TYPING_SWEEP_MS: "50",
      SWITCHBOARD_CHAT_MAX_MEMBERS: "4",
    },
  });
  for (const user of USERS) {
    chat[user] = [];
    rec[user] = [];
    bell[user] = [];
    for (let i = 0; i < 2; i++) {
      const { socket, recorders } = await connectDevice(user);
      chat[user].push(socket);
      rec[user].push(recorders);
    }
  }
});

after(async () => {
  await esn?.stop();
});

const all = (users) => users.flatMap((u) => [0, 1].map((i) => [u, i]));

/** Waits until device (user, i) got `event` matching `pred`; returns it. */
async function got(user, i, event, pred) {
  const items = await rec[user][i][event].waitUntil((xs) => xs.some(pred), `${user}/${i} ${event}`);
  return items.find(pred);
}

const inConv = (id) => (x) => x.conversation === id;

let next = 0;
const clientId = () => `c${++next}`;

async function send(user, i, conversation, text, extra = {}) {
  const reply = await ack(chat[user][i], "message", { conversation, client_id: clientId(), text, ...extra });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  return reply;
}

async function group(by, name, members) {
  const reply = await ack(chat[by][0], "conversation:create", { name, members });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  return reply.conversation;
}

/**
 * Makes sure everything the server sent `user` before now has arrived: a
 * message in their own direct conversation with a helper user, awaited on
 * both devices (events reach a device in the order they were sent).
 */
async function flush(user) {
  const reply = await ack(chat[user][0], "message", { to: `flush-${user}`, client_id: clientId(), text: "flush" });
  assert.equal(reply.ok, true);
  for (const i of [0, 1]) await got(user, i, "message", (m) => m.id === reply.id);
}

test("a group: every device of every member gets each message once, in seq order; others nothing", { timeout: TEST_TIMEOUT_MS }, async () => {
  const conv = await group("alice", "team", ["bob"]);
  assert.equal(conv.kind, "group");
  assert.equal(conv.name, "team");
  assert.deepEqual(conv.members, ["alice", "bob"]);
  assert.equal(conv.unread, 0);
  for (const [u, i] of all(["alice", "bob"])) {
    await got(u, i, "conversation:joined", (x) => x.conversation.id === conv.id);
  }

  const acks = [];
  const ids = [];
  for (let n = 0; n < 3; n++) {
    const id = clientId();
    ids.push(id);
    const reply = await ack(chat.alice[0], "message", { conversation: conv.id, client_id: id, text: `hello ${n}` });
    assert.equal(reply.ok, true);
    assert.equal(typeof reply.id, "number");
    assert.equal(typeof reply.ts, "number");
    acks.push(reply);
  }
  assert.deepEqual(acks.map((a) => a.seq), [1, 2, 3]);

  // A retry after a lost ack: the same ack, nothing stored or sent twice.
  const retry = await ack(chat.alice[1], "message", { conversation: conv.id, client_id: ids[1], text: "hello 1" });
  assert.deepEqual(
    { id: retry.id, seq: retry.seq, ts: retry.ts, duplicate: retry.duplicate },
    { id: acks[1].id, seq: 2, ts: acks[1].ts, duplicate: true },
  );
  const last = await send("bob", 1, conv.id, "and a fourth");
  assert.equal(last.seq, 4);

  for (const [u, i] of all(["alice", "bob"])) {
    await got(u, i, "message", (m) => m.id === last.id);
    const mine = rec[u][i].message.items.filter(inConv(conv.id));
    assert.deepEqual(mine.map((m) => m.seq), [1, 2, 3, 4], `${u}/${i}`);
    assert.equal(mine[0].sender, "alice");
    assert.equal(mine[0].text, "hello 0");
    assert.equal(mine[0].client_id, ids[0]);
  }
  await flush("carol");
  for (const i of [0, 1]) {
    assert.equal(rec.carol[i].message.items.filter(inConv(conv.id)).length, 0);
    assert.equal(rec.carol[i]["conversation:joined"].items.filter((x) => x.conversation.id === conv.id).length, 0);
  }
});

test("direct: one conversation per pair, even when both create it at once; `to` uses it", { timeout: TEST_TIMEOUT_MS }, async () => {
  const [a, b] = await Promise.all([
    ack(chat.bob[0], "conversation:create", { direct: "carol" }),
    ack(chat.carol[0], "conversation:create", { direct: "bob" }),
  ]);
  assert.equal(a.ok, true);
  assert.equal(b.ok, true);
  assert.equal(a.conversation.id, b.conversation.id);
  assert.equal([a.created, b.created].filter(Boolean).length, 1);
  assert.equal(a.conversation.kind, "direct");
  assert.deepEqual(a.conversation.members, ["bob", "carol"]);
  const id = a.conversation.id;
  for (const [u, i] of all(["bob", "carol"])) {
    await got(u, i, "conversation:joined", (x) => x.conversation.id === id);
  }
  const sent = await ack(chat.carol[1], "message", { to: "bob", client_id: clientId(), text: "hi bob" });
  assert.equal(sent.ok, true);
  assert.equal(sent.conversation, id);
  for (const [u, i] of all(["bob", "carol"])) {
    await got(u, i, "message", (m) => m.id === sent.id && m.conversation === id);
  }
  const self = await ack(chat.bob[0], "message", { to: "bob", client_id: clientId(), text: "me" });
  assert.equal(self.error.code, "bad_request");
});

test("add_member and leave: a newcomer gets what follows, who left gets nothing more at once", { timeout: TEST_TIMEOUT_MS }, async () => {
  const conv = await group("alice", "g2", ["bob"]);
  await send("alice", 0, conv.id, "before carol");
  const added = await ack(chat.bob[1], "conversation:add_member", { conversation: conv.id, users: ["carol"] });
  assert.equal(added.ok, true, JSON.stringify(added));
  assert.deepEqual(added.added, ["carol"]);
  assert.deepEqual(added.members, ["alice", "bob", "carol"]);
  for (const i of [0, 1]) {
    const joined = await got("carol", i, "conversation:joined", (x) => x.conversation.id === conv.id);
    assert.equal(joined.conversation.unread, 0, "a newcomer starts with nothing unread");
    assert.deepEqual(joined.conversation.members, ["alice", "bob", "carol"]);
  }
  for (const [u, i] of all(["alice", "bob"])) {
    const m = await got(u, i, "conversation:member_added", inConv(conv.id));
    assert.deepEqual(m, { conversation: conv.id, users: ["carol"], by: "bob" });
  }
  const welcome = await send("alice", 0, conv.id, "welcome @carol");
  for (const i of [0, 1]) await got("carol", i, "message", (m) => m.id === welcome.id);
  // History from before she joined is readable to a member.
  const page = await ack(chat.carol[0], "history", { conversation: conv.id, after: 0 });
  assert.deepEqual(page.messages.map((m) => m.text), ["before carol", "welcome @carol"]);

  const left = await ack(chat.carol[0], "conversation:leave", { conversation: conv.id });
  assert.equal(left.ok, true);
  for (const [u, i] of all(["alice", "bob", "carol"])) {
    const m = await got(u, i, "conversation:member_left", inConv(conv.id));
    assert.deepEqual(m, { conversation: conv.id, user: "carol" });
  }
  const after = await send("alice", 1, conv.id, "carol is gone");
  for (const [u, i] of all(["alice", "bob"])) await got(u, i, "message", (m) => m.id === after.id);
  await flush("carol");
  for (const i of [0, 1]) {
    assert.equal(rec.carol[i].message.items.filter((m) => m.id === after.id).length, 0);
  }

  // A non-member: forbidden for everything.
  const c = chat.carol[1];
  const refusals = await Promise.all([
    ack(c, "message", { conversation: conv.id, client_id: clientId(), text: "let me in" }),
    ack(c, "history", { conversation: conv.id }),
    ack(c, "typing", { conversation: conv.id, typing: true }),
    ack(c, "read", { conversation: conv.id, seq: 1 }),
    ack(c, "message:edit", { conversation: conv.id, seq: 1, text: "x" }),
    ack(c, "message:delete", { conversation: conv.id, seq: 1 }),
    ack(c, "conversation:add_member", { conversation: conv.id, users: ["carol"] }),
    ack(c, "conversation:leave", { conversation: conv.id }),
  ]);
  for (const reply of refusals) {
    assert.equal(reply.ok, false);
    assert.equal(reply.error.code, "forbidden", JSON.stringify(reply));
  }

  // At most 4 members here (SWITCHBOARD_CHAT_MAX_MEMBERS).
  const full = await ack(chat.alice[0], "conversation:add_member", { conversation: conv.id, users: ["dave", "erin", "frank"] });
  assert.equal(full.error.code, "too_many_members");
  const big = await ack(chat.alice[0], "conversation:create", { name: "big", members: ["bob", "carol", "dave", "erin"] });
  assert.equal(big.error.code, "too_many_members");
  const fits = await ack(chat.alice[0], "conversation:add_member", { conversation: conv.id, users: ["dave", "erin"] });
  assert.deepEqual(fits.added, ["dave", "erin"]);
  // A direct conversation is not left, nor grown.
  const direct = await ack(chat.alice[0], "conversation:create", { direct: "bob" });
  const stay = await ack(chat.alice[0], "conversation:leave", { conversation: direct.conversation.id });
  assert.equal(stay.error.code, "bad_request");
});

test("edit and delete: by the sender only; history shows the new text and a tombstone, seq kept", { timeout: TEST_TIMEOUT_MS }, async () => {
  const conv = await group("bob", "edits", ["alice"]);
  const first = await send("bob", 0, conv.id, "tyop");
  const second = await send("bob", 0, conv.id, "regret");
  const notMine = await ack(chat.alice[0], "message:edit", { conversation: conv.id, seq: first.seq, text: "hijack" });
  assert.equal(notMine.error.code, "forbidden");
  const edited = await ack(chat.bob[1], "message:edit", { conversation: conv.id, seq: first.seq, text: "typo" });
  assert.equal(edited.ok, true);
  assert.equal(edited.message.text, "typo");
  const deleted = await ack(chat.bob[0], "message:delete", { conversation: conv.id, seq: second.seq });
  assert.equal(deleted.ok, true);
  for (const [u, i] of all(["alice", "bob"])) {
    const up = await got(u, i, "message:updated", (m) => m.id === first.id);
    assert.equal(up.text, "typo");
    assert.equal(typeof up.edited_at, "number");
    const del = await got(u, i, "message:deleted", (m) => m.id === second.id);
    assert.equal(del.deleted, true);
    assert.equal(del.text, null);
    assert.equal(del.seq, second.seq);
  }
  const page = await ack(chat.alice[1], "history", { conversation: conv.id, after: 0 });
  assert.deepEqual(
    page.messages.map((m) => [m.seq, m.text, m.deleted]),
    [[1, "typo", false], [2, null, true]],
  );
  const again = await ack(chat.bob[0], "message:edit", { conversation: conv.id, seq: second.seq, text: "undo" });
  assert.equal(again.error.code, "not_found");
  const missing = await ack(chat.bob[0], "message:delete", { conversation: conv.id, seq: 99 });
  assert.equal(missing.error.code, "not_found");
});

test("a mention of a member notifies every device of theirs and counts in conversations", { timeout: TEST_TIMEOUT_MS }, async () => {
  const conv = await group("carol", "mentions", ["alice", "bob"]);
  const sent = await send("carol", 0, conv.id, "@bob can you look? (not you, bobby)");
  for (const i of [0, 1]) {
    const n = await rec.bob[i].notification.waitUntil(
      (xs) => xs.some((x) => x.notification.data.conversation === conv.id),
      "the mention",
    );
    const it = n.find((x) => x.notification.data.conversation === conv.id);
    assert.equal(it.notification.type, "chat:mention");
    assert.equal(it.notification.data.seq, sent.seq);
    assert.equal(it.notification.data.sender, "carol");
  }
  const list = await ack(chat.bob[1], "conversations", {});
  const mine = list.conversations.find((c) => c.id === conv.id);
  assert.equal(mine.mentions, 1);
  assert.equal(mine.unread, 1);
  assert.equal(mine.last_message.text, sent.text ?? "@bob can you look? (not you, bobby)");
  const alices = (await ack(chat.alice[0], "conversations", {})).conversations.find((c) => c.id === conv.id);
  assert.equal(alices.mentions, 0);
  assert.equal(list.conversations[0].id, conv.id, "the latest activity first");
});

test("history: pages by seq before or after, in order, with has_more", { timeout: TEST_TIMEOUT_MS }, async () => {
  const conv = await group("alice", "history", ["carol"]);
  for (let n = 1; n <= 7; n++) await send(n % 2 ? "alice" : "carol", 0, conv.id, `m${n}`);
  const latest = await ack(chat.carol[1], "history", { conversation: conv.id, limit: 3 });
  assert.deepEqual(latest.messages.map((m) => m.seq), [5, 6, 7]);
  assert.equal(latest.has_more, true);
  const older = await ack(chat.carol[1], "history", { conversation: conv.id, before: 5, limit: 3 });
  assert.deepEqual(older.messages.map((m) => m.seq), [2, 3, 4]);
  // A client that reconnects asks for what follows its last seq.
  const missed = await ack(chat.carol[1], "history", { conversation: conv.id, after: 4 });
  assert.deepEqual(missed.messages.map((m) => m.text), ["m5", "m6", "m7"]);
  assert.equal(missed.has_more, false);
  const tooMany = await ack(chat.carol[1], "history", { conversation: conv.id, limit: 101 });
  assert.equal(tooMany.error.code, "bad_request");
  const both = await ack(chat.carol[1], "history", { conversation: conv.id, before: 3, after: 1 });
  assert.equal(both.error.code, "bad_request");
});

test("read: monotonic, a receipt to the members, the reader's other device drops its unread", { timeout: TEST_TIMEOUT_MS }, async () => {
  const conv = await group("alice", "reads", ["bob", "carol"]);
  for (let n = 0; n < 5; n++) await send("alice", 0, conv.id, `r${n}`);
  const read = await ack(chat.bob[0], "read", { conversation: conv.id, seq: 3 });
  assert.deepEqual({ ...read }, { ok: true, seq: 3, unread: 2, mentions: 0 });
  for (const [u, i] of all(["alice", "carol"])) {
    const receipt = await got(u, i, "read", (x) => x.conversation === conv.id && x.user === "bob");
    assert.deepEqual(receipt, { conversation: conv.id, user: "bob", seq: 3 });
  }
  const own = await got("bob", 1, "read", inConv(conv.id));
  assert.deepEqual(own, { conversation: conv.id, user: "bob", seq: 3, unread: 2, mentions: 0 });

  const lower = await ack(chat.bob[1], "read", { conversation: conv.id, seq: 1 });
  assert.equal(lower.seq, 3, "a lower seq changes nothing");
  const beyond = await ack(chat.bob[1], "read", { conversation: conv.id, seq: 1000 });
  assert.deepEqual({ seq: beyond.seq, unread: beyond.unread }, { seq: 5, unread: 0 });
  const receipts = await rec.alice[0].read.waitUntil(
    (xs) => xs.some((x) => x.conversation === conv.id && x.seq === 5),
    "the second receipt",
  );
  assert.deepEqual(
    receipts.filter((x) => x.conversation === conv.id && x.user === "bob").map((x) => x.seq),
    [3, 5],
    "the lower read sent no receipt",
  );
  for (const i of [0, 1]) {
    const list = await ack(chat.bob[i], "conversations", {});
    const c = list.conversations.find((x) => x.id === conv.id);
    assert.deepEqual({ unread: c.unread, last_read_seq: c.last_read_seq }, { unread: 0, last_read_seq: 5 });
  }
  const carols = (await ack(chat.carol[0], "conversations", {})).conversations.find((x) => x.id === conv.id);
  assert.equal(carols.unread, 5);
});

test("typing: relayed to the others at most once per interval, expired, cleared on disconnect", { timeout: TEST_TIMEOUT_MS }, async () => {
  const conv = await group("alice", "typing", ["bob"]);
  const on = await ack(chat.alice[0], "typing", { conversation: conv.id, typing: true });
  assert.deepEqual({ ...on }, { ok: true, relayed: true });
  for (const i of [0, 1]) {
    const t = await got("bob", i, "typing", inConv(conv.id));
    assert.deepEqual(t, { conversation: conv.id, user: "alice", typing: true });
  }
  const renewal = await ack(chat.alice[1], "typing", { conversation: conv.id, typing: true });
  assert.equal(renewal.relayed, false, "a renewal is not relayed again");
  // Not renewed: the server stops it after the TTL.
  const started = Date.now();
  await got("bob", 0, "typing", (x) => x.conversation === conv.id && x.typing === false);
  assert.ok(Date.now() - started >= TTL_MS / 2, "expired too early");
  assert.equal(rec.alice[0].typing.items.filter(inConv(conv.id)).length, 0, "the typist is not told");

  // A device that disconnects while typing: the others see it stop.
  const extra = await connectDevice("alice");
  await new Promise((r) => setTimeout(r, 350)); // past the relay interval
  const again = await ack(extra.socket, "typing", { conversation: conv.id, typing: true });
  assert.equal(again.relayed, true);
  await rec.bob[1].typing.waitUntil((xs) => xs.filter(inConv(conv.id)).length >= 3, "the second start");
  extra.device.close();
  await rec.bob[1].typing.waitUntil((xs) => xs.filter(inConv(conv.id)).length >= 4, "the stop on disconnect");
  const seen = rec.bob[1].typing.items.filter(inConv(conv.id)).map((x) => x.typing);
  assert.deepEqual(seen, [true, false, true, false]);

  // An explicit stop is relayed.
  await new Promise((r) => setTimeout(r, 350));
  await ack(chat.bob[0], "typing", { conversation: conv.id, typing: true });
  const stop = await ack(chat.bob[0], "typing", { conversation: conv.id, typing: false });
  assert.equal(stop.relayed, true);
  await got("alice", 1, "typing", (x) => x.user === "bob" && x.typing === false);
});

test("clear errors: empty or oversize text, unknown conversation, bad payloads", { timeout: TEST_TIMEOUT_MS }, async () => {
  const conv = await group("carol", "errors", ["bob"]);
  const s = chat.carol[0];
  const cases = [
    [{ conversation: conv.id, client_id: clientId(), text: "" }, "bad_request"],
    [{ conversation: conv.id, client_id: clientId(), text: "   " }, "bad_request"],
    [{ conversation: conv.id, client_id: clientId(), text: "x".repeat(4001) }, "payload_too_large"],
    [{ conversation: 987654, client_id: clientId(), text: "hi" }, "not_found"],
    [{ conversation: conv.id, to: "bob", client_id: clientId(), text: "hi" }, "bad_request"],
    [{ conversation: conv.id, text: "no client id" }, "bad_request"],
    [{ conversation: conv.id, client_id: "", text: "empty id" }, "bad_request"],
    [{ conversation: conv.id, client_id: clientId(), text: "hi", colour: "red" }, "bad_request"],
    [{ conversation: conv.id, client_id: clientId(), text: "hi", reply_to: 5 }, "bad_request"],
    ["not an object", "bad_request"],
  ];
  for (const [payload, code] of cases) {
    const reply = await ack(s, "message", payload);
    assert.equal(reply.ok, false, JSON.stringify(payload).slice(0, 80));
    assert.equal(reply.error.code, code, JSON.stringify(reply));
    assert.equal(typeof reply.error.message, "string");
  }
  const longest = await ack(s, "message", { conversation: conv.id, client_id: clientId(), text: "é".repeat(4000) });
  assert.equal(longest.ok, true, "4,000 characters (not bytes) fit");
  const reply = await ack(s, "message", { conversation: conv.id, client_id: clientId(), text: "re", reply_to: longest.seq });
  assert.equal(reply.ok, true);
  const history = await ack(s, "history", { conversation: 987654 });
  assert.equal(history.error.code, "not_found");
  const noName = await ack(s, "conversation:create", { members: ["bob"] });
  assert.equal(noName.error.code, "bad_request");
  const unknown = await ack(s, "nope", {});
  assert.equal(unknown.error.code, "unknown_event");
});

test("a user over the message rate is refused, whichever device sends", { timeout: TEST_TIMEOUT_MS }, async () => {
  const slow = await startEsn({ env: { SWITCHBOARD_CHAT_MESSAGES_PER_SEC: "0.5", SWITCHBOARD_CHAT_MESSAGE_BURST: "4" } });
  try {
    const phone = await slow.device("alice").connect("/chat");
    const laptop = await slow.device("alice").connect("/chat");
    const created = await ack(phone, "conversation:create", { direct: "bob" });
    const id = created.conversation.id;
    const replies = [];
    for (const socket of [phone, laptop, phone, laptop]) {
      replies.push(await ack(socket, "message", { conversation: id, client_id: clientId(), text: "spam" }));
    }
    assert.deepEqual(replies.map((r) => r.ok), [true, true, true, false]);
    assert.equal(replies[3].error.code, "rate_limited");
  } finally {
    await slow.stop();
  }
});

test("remove_member: the owner removes; the removed user's devices get what preceded it, then nothing", { timeout: TEST_TIMEOUT_MS }, async () => {
  const conv = await group("alice", "removal", ["bob", "carol"]);
  assert.equal(conv.owner, "alice");
  assert.equal(conv.member_count, 3);
  for (const i of [0, 1]) await got("carol", i, "conversation:joined", (x) => x.conversation.id === conv.id);
  const notOwner = await ack(chat.bob[0], "conversation:remove_member", { conversation: conv.id, user: "carol" });
  assert.equal(notOwner.error.code, "forbidden");

  // Messages in flight on both sides of the removal.
  const sends = [];
  for (let n = 0; n < 20; n++) {
    sends.push(ack(chat.alice[n % 2], "message", { conversation: conv.id, client_id: clientId(), text: `m${n}` }));
  }
  const removed = await ack(chat.alice[0], "conversation:remove_member", { conversation: conv.id, user: "carol" });
  for (let n = 20; n < 40; n++) {
    sends.push(ack(chat.alice[n % 2], "message", { conversation: conv.id, client_id: clientId(), text: `m${n}` }));
  }
  assert.deepEqual(removed, { ok: true, conversation: conv.id, user: "carol" });
  const acks = await Promise.all(sends);
  assert.ok(acks.every((a) => a.ok));
  // Committed after the removal was acked: carol must not get these.
  const later = [];
  for (let n = 0; n < 5; n++) later.push(await send("alice", n % 2, conv.id, `after ${n}`));
  const typing = await ack(chat.alice[0], "typing", { conversation: conv.id, typing: true });
  assert.equal(typing.relayed, true);

  for (const [u, i] of all(["alice", "bob", "carol"])) {
    const m = await got(u, i, "conversation:member_removed", inConv(conv.id));
    assert.deepEqual(m, { conversation: conv.id, user: "carol", by: "alice" });
  }
  await got("bob", 0, "typing", inConv(conv.id));
  await flush("carol");
  for (const i of [0, 1]) {
    // Everything carol got of the conversation, in arrival order: messages
    // 1..k with no gap, then the removal, then nothing (no message, no typing).
    const seqs = rec.carol[i].message.items.filter(inConv(conv.id)).map((m) => m.seq);
    assert.deepEqual(seqs, seqs.map((_, k) => k + 1), `carol/${i}: in order, no gap`);
    const removedAt = rec.carol[i]["conversation:member_removed"].items.findIndex(inConv(conv.id));
    assert.ok(removedAt >= 0);
    assert.equal(rec.carol[i].typing.items.filter(inConv(conv.id)).length, 0, `carol/${i}: no typing after`);
    for (const sent of later) assert.ok(!seqs.includes(sent.seq), `carol/${i} got seq ${sent.seq}`);
  }
  const history = await ack(chat.carol[1], "history", { conversation: conv.id });
  assert.equal(history.error.code, "forbidden");
  const members = await ack(chat.bob[1], "conversation:members", { conversation: conv.id });
  // Read marks: a send moves the sender's (alice's last send is the newest); bob read nothing.
  assert.deepEqual(members, {
    ok: true,
    conversation: conv.id,
    members: ["alice", "bob"],
    member_count: 2,
    reads: { alice: later.at(-1).seq, bob: 0 },
  });
});
