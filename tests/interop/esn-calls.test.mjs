// /calls with the official socket.io-client: three users with two devices
// each (alice calls, bob and carol answer), through every event — invite,
// ringing on every device, the first answer winning, signals relayed in
// order to one device with the polite flag, decline, hangup, the ring
// timeout's missed-call notification, a disconnect leaving — and the
// errors.

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { ack, Recorder, TEST_TIMEOUT_MS } from "./helpers.mjs";
import { startEsn } from "./esn.mjs";

const TURN_SECRET = "interop-turn-secret";

let esn; // ring timeout 30 s: nothing times out during a test
let quick; // ring timeout 400 ms

before(async () => {
  [esn, quick] = await Promise.all([
    startEsn({
      env: {
        SWITCHBOARD_CALLS_STUN_URLS: "stun:127.0.0.1:3478",
        SWITCHBOARD_CALLS_TURN_URLS: "turn:127.0.0.1:3478?transport=udp",
        SWITCHBOARD_CALLS_TURN_SECRET: TURN_SECRET,
        SWITCHBOARD_CALLS_TURN_TTL_SECS: "600",
      },
    }),
    startEsn({ env: { SWITCHBOARD_CALLS_RING_TIMEOUT_MS: "400" } }),
  ]);
});

after(async () => {
  await Promise.all([esn?.stop(), quick?.stop()]);
});

const EVENTS = [
  "call:ringing",
  "call:outgoing",
  "call:accepted",
  "call:answered_elsewhere",
  "call:declined",
  "call:left",
  "call:ended",
  "call:unanswered",
  "signal",
];

/** A device on /calls with a Recorder for every server event. */
async function device(server, user) {
  const d = server.device(user);
  const socket = await d.connect("/calls");
  const seen = {};
  for (const event of EVENTS) seen[event] = new Recorder(socket, event, (payload) => payload);
  return { user, d, socket, id: socket.id, seen };
}

/** Three users with two devices each: a fresh set per test. */
async function people(server) {
  const [alice1, alice2, bob1, bob2, carol1, carol2] = await Promise.all(
    ["alice", "alice", "bob", "bob", "carol", "carol"].map((u) => device(server, u)),
  );
  return { alice1, alice2, bob1, bob2, carol1, carol2 };
}

/** After a round trip on its socket: the events `device` got so far. */
async function settled(device, event) {
  await ack(device.socket, "nothing");
  return device.seen[event].items;
}

async function invite(p, users = ["bob", "carol"], kind = "video") {
  const reply = await ack(p.alice1.socket, "call:invite", { users, kind });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  return reply.call;
}

function close(p) {
  for (const device of Object.values(p)) device.d.close();
}

describe("calls", { timeout: TEST_TIMEOUT_MS }, () => {
  test("an invitation rings every device of each invitee; the first answer wins", async () => {
    const p = await people(esn);
    const reply = await ack(p.alice1.socket, "call:invite", { users: ["bob", "carol"], kind: "video" });
    assert.equal(reply.ok, true);
    assert.deepEqual(reply.invitees, ["bob", "carol"]);
    assert.equal(reply.ring_timeout_ms, 30000);
    const call = reply.call;
    for (const d of [p.bob1, p.bob2, p.carol1, p.carol2]) {
      const [ringing] = await d.seen["call:ringing"].waitFor(1);
      assert.equal(ringing.call, call);
      assert.equal(ringing.from, "alice");
      assert.equal(ringing.kind, "video");
      assert.deepEqual(ringing.invitees, ["bob", "carol"]);
    }
    const [outgoing] = await p.alice2.seen["call:outgoing"].waitFor(1);
    assert.deepEqual(
      { call: outgoing.call, device: outgoing.device, kind: outgoing.kind },
      { call, device: p.alice1.id, kind: "video" },
    );
    assert.equal((await settled(p.alice1, "call:outgoing")).length, 0, "the calling device has its ack");

    // Bob answers on his second device: it is polite towards alice's.
    const accepted = await ack(p.bob2.socket, "call:accept", { call });
    assert.deepEqual(accepted, {
      ok: true,
      call,
      kind: "video",
      participants: [{ user: "alice", device: p.alice1.id, polite: true }],
    });
    const [toAlice] = await p.alice1.seen["call:accepted"].waitFor(1);
    assert.deepEqual(toAlice, { call, user: "bob", device: p.bob2.id, polite: false });
    const [elsewhere] = await p.bob1.seen["call:answered_elsewhere"].waitFor(1);
    assert.deepEqual(elsewhere, { call, device: p.bob2.id });
    const late = await ack(p.bob1.socket, "call:accept", { call });
    assert.equal(late.error.code, "already_answered");

    // Carol joins the mesh: polite towards both, who are told.
    const third = await ack(p.carol1.socket, "call:accept", { call });
    assert.deepEqual(
      third.participants,
      [
        { user: "alice", device: p.alice1.id, polite: true },
        { user: "bob", device: p.bob2.id, polite: true },
      ],
    );
    for (const d of [p.alice1, p.bob2]) {
      const items = await d.seen["call:accepted"].waitUntil((xs) => xs.some((x) => x.user === "carol"));
      assert.deepEqual(items.at(-1), { call, user: "carol", device: p.carol1.id, polite: false });
    }
    await p.carol2.seen["call:answered_elsewhere"].waitFor(1);
    // Nobody else heard of the answers.
    assert.equal((await settled(p.alice2, "call:accepted")).length, 0);
    assert.equal((await settled(p.bob1, "call:accepted")).length, 0);
    close(p);
  });

  test("signals reach the named participant device in order, with the polite flag, and nobody else", async () => {
    const p = await people(esn);
    const call = await invite(p, ["bob"]);
    await ack(p.bob1.socket, "call:accept", { call });
    await p.alice1.seen["call:accepted"].waitFor(1);

    // Glare: both offer at once; each learns its side from the server.
    const [a, b] = await Promise.all([
      ack(p.alice1.socket, "signal", { call, to: p.bob1.id, data: { type: "offer", sdp: "alice" } }),
      ack(p.bob1.socket, "signal", { call, to: p.alice1.id, data: { type: "offer", sdp: "bob" } }),
    ]);
    assert.deepEqual([a, b], [{ ok: true }, { ok: true }]);
    const [atBob] = await p.bob1.seen.signal.waitFor(1);
    assert.deepEqual(atBob, {
      call,
      from: p.alice1.id,
      user: "alice",
      data: { type: "offer", sdp: "alice" },
      polite: true,
    });
    const [atAlice] = await p.alice1.seen.signal.waitFor(1);
    assert.equal(atAlice.polite, false);
    assert.equal(atAlice.from, p.bob1.id);

    // 50 candidates sent without waiting arrive in order.
    const sent = Array.from({ length: 50 }, (_, i) => ({ candidate: `candidate:${i}`, sdpMLineIndex: 0 }));
    const acks = await Promise.all(sent.map((data) => ack(p.alice1.socket, "signal", { call, to: p.bob1.id, data })));
    assert.ok(acks.every((r) => r.ok));
    const got = await p.bob1.seen.signal.waitFor(51);
    assert.deepEqual(got.slice(1).map((s) => s.data), sent);

    // Not participants: bob's other device, carol; nor to them.
    const fromOutsider = await ack(p.bob2.socket, "signal", { call, to: p.alice1.id, data: {} });
    assert.equal(fromOutsider.error.code, "forbidden");
    const fromStranger = await ack(p.carol1.socket, "signal", { call, to: p.bob1.id, data: {} });
    assert.equal(fromStranger.error.code, "forbidden");
    const toOutsider = await ack(p.alice1.socket, "signal", { call, to: p.bob2.id, data: {} });
    assert.equal(toOutsider.error.code, "forbidden");
    const noCall = await ack(p.alice1.socket, "signal", { call: "nope", to: p.bob1.id, data: {} });
    assert.equal(noCall.error.code, "not_found");
    const noData = await ack(p.alice1.socket, "signal", { call, to: p.bob1.id });
    assert.equal(noData.error.code, "bad_request");
    for (const d of [p.bob2, p.alice2, p.carol1, p.carol2]) {
      assert.equal((await settled(d, "signal")).length, 0, `${d.user} got no signal`);
    }
    close(p);
  });

  test("declines stop the decliner's devices; the call ends when fewer than two remain", async () => {
    const p = await people(esn);
    const call = await invite(p);
    const declined = await ack(p.carol2.socket, "call:decline", { call });
    assert.deepEqual(declined, { ok: true, call, ended: null });
    for (const d of [p.alice1, p.alice2, p.bob1, p.bob2, p.carol1]) {
      const [news] = await d.seen["call:declined"].waitFor(1);
      assert.deepEqual(news, { call, user: "carol" });
    }
    const again = await ack(p.carol1.socket, "call:decline", { call });
    assert.equal(again.error.code, "not_ringing");
    await ack(p.bob1.socket, "call:accept", { call });
    const notIn = await ack(p.bob2.socket, "call:hangup", { call });
    assert.equal(notIn.error.code, "forbidden");
    const hangup = await ack(p.bob1.socket, "call:hangup", { call });
    assert.deepEqual(hangup, { ok: true, call, ended: "hangup" });
    for (const d of [p.alice1, p.alice2, p.bob2, p.carol1, p.carol2]) {
      const [ended] = await d.seen["call:ended"].waitFor(1);
      assert.deepEqual(ended, { call, reason: "hangup" });
    }
    const gone = await ack(p.alice1.socket, "call:hangup", { call });
    assert.equal(gone.error.code, "not_found");

    // Every invitee declining ends a ringing call.
    const second = await invite(p, ["bob"], "audio");
    await ack(p.bob2.socket, "call:decline", { call: second });
    const ends = await p.alice1.seen["call:ended"].waitUntil((xs) => xs.some((x) => x.call === second));
    assert.deepEqual(ends.at(-1), { call: second, reason: "declined" });
    close(p);
  });

  test("a caller who hangs up while ringing cancels; a device that disconnects leaves", async () => {
    const p = await people(esn);
    const call = await invite(p, ["bob", "carol"]);
    await ack(p.bob1.socket, "call:accept", { call });
    await ack(p.carol1.socket, "call:accept", { call });
    p.carol1.d.close();
    for (const d of [p.alice1, p.alice2, p.bob1, p.bob2, p.carol2]) {
      const [left] = await d.seen["call:left"].waitFor(1);
      assert.deepEqual(left, { call, user: "carol", device: p.carol1.id, reason: "disconnected" });
    }
    p.bob1.d.close();
    for (const d of [p.alice1, p.alice2, p.bob2, p.carol2]) {
      const [ended] = await d.seen["call:ended"].waitFor(1);
      assert.deepEqual(ended, { call, reason: "disconnected" });
    }

    const q = await people(esn);
    const ringing = await invite(q, ["bob"]);
    await q.bob1.seen["call:ringing"].waitFor(1);
    const cancel = await ack(q.alice1.socket, "call:hangup", { call: ringing });
    assert.deepEqual(cancel, { ok: true, call: ringing, ended: "cancelled" });
    for (const d of [q.alice2, q.bob1, q.bob2]) {
      const [ended] = await d.seen["call:ended"].waitFor(1);
      assert.deepEqual(ended, { call: ringing, reason: "cancelled" });
    }
    close(p);
    close(q);
  });

  test("an unanswered call ends at the ring timeout with a missed-call notification", async () => {
    const p = await people(quick);
    const inbox = await Promise.all([p.bob1, p.bob2].map((d) => d.d.connect("/notifications")));
    const notes = inbox.map((s) => new Recorder(s, "notification", (x) => x));
    const aliceInbox = new Recorder(await p.alice1.d.connect("/notifications"), "notification", (x) => x);
    const call = await invite(p, ["bob"], "audio");
    for (const d of [p.alice1, p.alice2, p.bob1, p.bob2]) {
      const [ended] = await d.seen["call:ended"].waitFor(1);
      assert.deepEqual(ended, { call, reason: "no_answer" });
    }
    for (const n of notes) {
      const [{ notification, unread }] = await n.waitFor(1);
      assert.equal(unread, 1);
      assert.equal(notification.type, "call:missed");
      assert.equal(notification.read, false);
      assert.deepEqual(notification.data, {
        call,
        from: "alice",
        kind: "audio",
        created_at: notification.data.created_at,
      });
    }
    const late = await ack(p.bob1.socket, "call:accept", { call });
    assert.equal(late.error.code, "not_found");
    await ack(p.alice1.socket, "ice_servers");
    assert.equal(aliceInbox.items.length, 0, "the caller missed nothing");

    // Answered by one, missed by the other: the call goes on.
    const both = await invite(p, ["bob", "carol"]);
    await ack(p.bob1.socket, "call:accept", { call: both });
    const [unanswered] = await p.alice1.seen["call:unanswered"].waitFor(1);
    assert.deepEqual(unanswered, { call: both, users: ["carol"] });
    const signal = await ack(p.alice1.socket, "signal", { call: both, to: p.bob1.id, data: { ping: 1 } });
    assert.equal(signal.ok, true, "alice and bob talk on");
    close(p);
  });

  test("ice_servers returns STUN and TURN URLs with TURN REST API credentials", async () => {
    const p = await people(esn);
    const before = Math.floor(Date.now() / 1000);
    const reply = await ack(p.bob1.socket, "ice_servers");
    assert.equal(reply.ok, true);
    assert.equal(reply.ttl_secs, 600);
    const [stun, turn] = reply.ice_servers;
    assert.deepEqual(stun, { urls: ["stun:127.0.0.1:3478"] });
    assert.deepEqual(turn.urls, ["turn:127.0.0.1:3478?transport=udp"]);
    const [expiry, user] = turn.username.split(":");
    assert.equal(user, "bob");
    assert.ok(Number(expiry) >= before + 600 && Number(expiry) <= before + 602, turn.username);
    assert.equal(reply.expires_at, Number(expiry));
    const expected = createHmac("sha1", TURN_SECRET).update(turn.username).digest("base64");
    assert.equal(turn.credential, expected);
    close(p);
  });

  test("bad invitations and unknown events get clear errors", async () => {
    const p = await people(esn);
    const cases = [
      [{ users: [], kind: "audio" }, "bad_request"],
      [{ users: ["bob"], kind: "smoke-signal" }, "bad_request"],
      [{ users: ["alice"], kind: "audio" }, "bad_request"],
      [{ users: ["bob"] }, "bad_request"],
      [{ users: Array.from({ length: 8 }, (_, i) => `user${i}`), kind: "audio" }, "too_many_participants"],
    ];
    for (const [args, code] of cases) {
      const reply = await ack(p.alice1.socket, "call:invite", args);
      assert.equal(reply.error?.code, code, JSON.stringify(args));
    }
    const unknown = await ack(p.alice1.socket, "call:transfer", {});
    assert.equal(unknown.error.code, "unknown_event");
    const stranger = await ack(p.carol1.socket, "call:accept", { call: "0".repeat(32) });
    assert.equal(stranger.error.code, "not_found");
    close(p);
  });
});
