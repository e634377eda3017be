// Old clients in the hub's /chat (issue 19): socket.io-client 2.5.0 and
// 1.7.4 sign in with a token in the query (`?token=`, how 2.x apps
// authenticate: v3 has no CONNECT payload) and chat with a socket.io-client
// 4 user who signs in with `auth`, each seeing the other's messages
// (docs/EVENTS.md, /chat). The server: eio3-esn.toml (esn.toml's components,
// `allow_eio3 = true`).

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { token } from "./esn.mjs";
import { Recorder, TEST_TIMEOUT_MS, once } from "./helpers.mjs";
import { ack, connected, io1, io2, io4, useEio3Server } from "./eio3.mjs";

const ctx = useEio3Server({ config: "tests/interop/eio3-esn.toml" });
const t = { timeout: TEST_TIMEOUT_MS };

let n = 0;
const clientId = () => `c${++n}`;

for (const [name, io, text] of [
  ["2.x", io2, "bonjour, ça va ? €"],
  ["1.x", io1, "hello from 1.x"],
]) {
  describe(`socket.io-client ${name} in /chat`, () => {
    for (const transport of ["polling", "websocket"]) {
      test(`signs in with ?token= and chats with a 4.x user (${transport})`, t, async () => {
        const old = `old-${name}-${transport}`;
        const neu = `new-${name}-${transport}`;
        const oldChat = await ctx.clients.connect(io, "/chat", { transports: [transport], query: { token: token(old) } });
        const newChat = await ctx.clients.connect(io4, "/chat", { transports: ["websocket"], auth: { token: token(neu) } });
        const oldGot = new Recorder(oldChat, "message", (m) => m);
        const newGot = new Recorder(newChat, "message", (m) => m);

        // Old → new: a direct conversation, created by the first message.
        const sent = await ack(oldChat, "message", { to: neu, client_id: clientId(), text });
        assert.equal(sent.ok, true, JSON.stringify(sent));
        const [atNew] = await newGot.waitUntil((xs) => xs.some((m) => m.id === sent.id), "the old client's message");
        assert.equal(atNew.sender, old, "the token in the query signed the old client in as its user");
        assert.equal(atNew.text, text);
        assert.equal(atNew.conversation, sent.conversation);
        // The sender's own device gets it too.
        await oldGot.waitUntil((xs) => xs.some((m) => m.id === sent.id), "its own message");

        // New → old, in the same conversation.
        const reply = await newChat.timeout(5000).emitWithAck("message", { conversation: sent.conversation, client_id: clientId(), text: `re: ${text}` });
        assert.equal(reply.ok, true, JSON.stringify(reply));
        const atOld = (await oldGot.waitUntil((xs) => xs.some((m) => m.id === reply.id), "the 4.x user's reply")).find((m) => m.id === reply.id);
        assert.equal(atOld.sender, neu);
        assert.equal(atOld.text, `re: ${text}`);
        assert.equal(atOld.seq, 2);

        // The old client reads the history.
        const history = await ack(oldChat, "history", { conversation: sent.conversation });
        assert.deepEqual(history.messages.map((m) => [m.seq, m.sender, m.text]), [
          [1, old, text],
          [2, neu, `re: ${text}`],
        ]);
      });
    }

    test("a bad token in the query is refused with the hub's refusal, in an `error` event", t, async () => {
      const socket = ctx.clients.socket(io, "/chat", { transports: ["websocket"], query: { token: "not-a-token" } });
      const [err] = await once(socket, "error");
      assert.equal(typeof err.code, "string", JSON.stringify(err));
      assert.equal(typeof err.message, "string", JSON.stringify(err));
      assert.equal(socket.connected, false);
      // Without any token: refused too.
      const anonymous = ctx.clients.socket(io, "/chat", { transports: ["websocket"] });
      const [err2] = await once(anonymous, "error");
      assert.equal(typeof err2.code, "string", JSON.stringify(err2));
    });
  });
}

test("a 2.x client's Manager: /chat, /notifications and / on one connection, with the token in the Manager's query", t, async () => {
  const manager = ctx.clients.manager(io2, { transports: ["websocket"], query: { token: token("multi") } });
  const chat = manager.socket("/chat");
  const notifications = manager.socket("/notifications");
  const root = manager.socket("/");
  for (const s of [chat, notifications, root]) await connected(s);
  const sent = await ack(chat, "message", { to: "someone", client_id: clientId(), text: "hi" });
  assert.equal(sent.ok, true, JSON.stringify(sent));
  assert.equal(await ack(root, "echo", "root"), "root");
});

test("a 2.x user in /presence and /calls: a 4.x user sees their status, calls them, and signals reach both ways", t, async () => {
  const oldUser = "old-presence";
  const newUser = "new-presence";
  const manager = ctx.clients.manager(io2, { transports: ["polling"], query: { token: token(oldUser) } });
  const oldPresence = manager.socket("/presence");
  const oldCalls = manager.socket("/calls");
  for (const s of [oldPresence, oldCalls]) await connected(s);
  const newPresence = await ctx.clients.connect(io4, "/presence", { transports: ["websocket"], auth: { token: token(newUser) } });
  const newCalls = await ctx.clients.connect(io4, "/calls", { transports: ["websocket"], auth: { token: token(newUser) } });

  // The 4.x user watches the 2.x user: online, then busy when they say so.
  const watched = await newPresence.timeout(5000).emitWithAck("watch", { users: [oldUser] });
  assert.equal(watched.ok, true, JSON.stringify(watched));
  assert.equal(watched.presence[0].status, "online");
  const seen = new Recorder(newPresence, "presence", (p) => p);
  const set = await ack(oldPresence, "status", { status: "busy" });
  assert.equal(set.ok, true, JSON.stringify(set));
  await seen.waitUntil((xs) => xs.some((p) => p.user === oldUser && p.status === "busy"), "the 2.x user's busy status");

  // The 4.x user calls; the 2.x client rings, accepts, and they signal each other.
  const ringing = once(oldCalls, "call:ringing");
  const invited = await newCalls.timeout(5000).emitWithAck("call:invite", { users: [oldUser], kind: "audio" });
  assert.equal(invited.ok, true, JSON.stringify(invited));
  const [ring] = await ringing;
  assert.equal(ring.call, invited.call);
  assert.equal(ring.from, newUser);
  const accepted = once(newCalls, "call:accepted");
  const answer = await ack(oldCalls, "call:accept", { call: invited.call });
  assert.equal(answer.ok, true, JSON.stringify(answer));
  const [joined] = await accepted;
  assert.equal(joined.user, oldUser);
  const newDevice = answer.participants[0].device;

  const atNew = once(newCalls, "signal");
  assert.equal((await ack(oldCalls, "signal", { call: invited.call, to: newDevice, data: { type: "offer", sdp: "v=0 from 2.x" } })).ok, true);
  const [offer] = await atNew;
  assert.deepEqual([offer.user, offer.data], [oldUser, { type: "offer", sdp: "v=0 from 2.x" }]);
  const atOld = once(oldCalls, "signal");
  assert.equal((await newCalls.timeout(5000).emitWithAck("signal", { call: invited.call, to: joined.device, data: { type: "answer", sdp: "v=0 from 4.x" } })).ok, true);
  const [reply] = await atOld;
  assert.deepEqual([reply.user, reply.data], [newUser, { type: "answer", sdp: "v=0 from 4.x" }]);
});
