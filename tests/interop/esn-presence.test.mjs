// /presence with the official socket.io-client: three users (alice, bob,
// carol), two devices each (two Managers, as two browser tabs). Online
// while any device is, a reload within the grace period without a flicker,
// a status for every device, offline only after the grace period, watch
// limits, errors, and the publish API reading the same state. Every
// presence has a `version`; a device that arrives while its user has others
// hears where the user stands.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { startEsn, token } from "./esn.mjs";
import { TEST_TIMEOUT_MS, ack, connected, Recorder } from "./helpers.mjs";

const GRACE_MS = 400;
const MAX_WATCH = 5;

let esn;

before(async () => {
  esn = await startEsn({
    env: {
      SWITCHBOARD_PRESENCE_GRACE_MS: String(GRACE_MS),
      SWITCHBOARD_PRESENCE_MAX_WATCH: String(MAX_WATCH),
      // A loaded machine's fsync can take seconds; a status write timing
      // out (answered `unavailable`, rightly) is not what this file tests.
      SWITCHBOARD_STORE_TIMEOUT_MS: "15000",
    },
  });
});

after(async () => {
  await esn?.stop();
});

/** A device of `user` with its /presence socket and a recorder of `presence`. */
async function device(user) {
  const dev = esn.device(user);
  const socket = dev.manager.socket("/presence", { auth: { token: token(user) } });
  // Recorded from the start: a device that arrives while its user has
  // others hears of it right after connecting.
  const events = new Recorder(socket, "presence", (p) => p);
  socket.connect();
  await connected(socket);
  return { dev, socket, events, close: () => dev.close() };
}

const sd = (p) => `${p.user}:${p.status}:${p.devices}`;
/** `p` without its `version`, which must be a safe integer. */
const unversioned = ({ version, ...p }) => {
  assert.ok(Number.isSafeInteger(version) && version >= 0, JSON.stringify({ version, ...p }));
  return p;
};
const of = (user, events) => events.items.filter((p) => p.user === user).map(sd);

describe("/presence", () => {
  test("three users with two devices each: online, devices, status, offline after the grace", { timeout: TEST_TIMEOUT_MS }, async () => {
    // Users of this test only (the server is shared by the file's tests).
    const [alice, bob, carol] = ["alice-1", "bob-1", "carol-1"];
    const carol1 = await device(carol);
    const snapshot = await ack(carol1.socket, "watch", { users: [alice, bob] });
    assert.equal(snapshot.ok, true);
    assert.equal(snapshot.watching, 2);
    assert.deepEqual(snapshot.presence.map(unversioned), [
      { user: alice, status: "offline", devices: 0, last_seen: null },
      { user: bob, status: "offline", devices: 0, last_seen: null },
    ]);

    const alice1 = await device(alice);
    const alice2 = await device(alice);
    const bob1 = await device(bob);
    const bob2 = await device(bob);
    await carol1.events.waitUntil((items) => items.length >= 4, "four arrivals");
    assert.deepEqual(of(alice, carol1.events), [`${alice}:online:1`, `${alice}:online:2`]);
    assert.deepEqual(of(bob, carol1.events), [`${bob}:online:1`, `${bob}:online:2`]);
    // A user's own devices hear of their other devices, the one that
    // arrived second of itself: the same presence, the same version.
    await alice1.events.waitFor(1);
    await alice2.events.waitFor(1);
    assert.equal(sd(alice1.events.items[0]), `${alice}:online:2`);
    assert.deepEqual(alice2.events.items[0], alice1.events.items[0]);

    // A second device of carol watching gets the same snapshot.
    const carol2 = await device(carol);
    const again = await ack(carol2.socket, "watch", { users: [alice, bob, carol] });
    assert.deepEqual(again.presence.map(sd), [`${alice}:online:2`, `${bob}:online:2`, `${carol}:online:2`]);
    assert.ok(again.presence.every((p) => p.last_seen > 0));

    // A status applies to every device of the user; bob, who does not
    // watch alice, is not told.
    const busy = await ack(alice1.socket, "status", { status: "busy" });
    assert.equal(busy.ok, true, JSON.stringify(busy));
    assert.equal(sd(busy.presence), `${alice}:busy:2`);
    await alice2.events.waitUntil((items) => items.some((p) => p.status === "busy"), "busy");
    await carol1.events.waitUntil((items) => of(alice, { items }).includes(`${alice}:busy:2`), "busy");
    await carol2.events.waitUntil((items) => of(alice, { items }).includes(`${alice}:busy:2`), "busy");
    assert.equal(alice1.events.items.filter((p) => p.status === "busy").length, 0, "the sender has the ack");
    assert.deepEqual(bob1.events.items.filter((p) => p.user === alice), []);

    // Bob leaves with both devices: offline only once the grace is over.
    const left = Date.now();
    bob1.close();
    bob2.close();
    await carol1.events.waitUntil((items) => of(bob, { items }).includes(`${bob}:offline:0`), "bob offline", 5_000);
    assert.ok(Date.now() - left >= GRACE_MS - 50, `offline after ${Date.now() - left} ms`);
    const offline = carol1.events.items.filter((p) => p.user === bob).at(-1);
    assert.ok(offline.last_seen >= left - 1000, "last_seen is when he left");

    const api = await esn.api("GET", `/api/v1/presence?user=${alice}&user=${bob}`);
    assert.equal(api.status, 200);
    assert.deepEqual(
      { ...api.body.presence[alice], last_seen: "*" },
      { online: true, status: "busy", devices: 2, sockets: 2, last_seen: "*" },
    );
    assert.deepEqual(api.body.presence[bob], {
      online: false,
      status: "offline",
      devices: 0,
      sockets: 0,
      last_seen: offline.last_seen,
    });
    for (const d of [alice1, alice2, carol1, carol2]) d.close();
  });

  test("a reload within the grace period shows the watchers no offline/online flicker", { timeout: TEST_TIMEOUT_MS }, async () => {
    const [alice, carol] = ["alice-2", "carol-2"];
    const carol1 = await device(carol);
    await ack(carol1.socket, "watch", { users: [alice] });
    const tab = await device(alice);
    const phone = await device(alice);
    await carol1.events.waitFor(2);

    // Both of alice's devices reload (close, then a new connection).
    tab.close();
    const tabAgain = await device(alice);
    phone.close();
    const phoneAgain = await device(alice);
    // Past every grace period of the old sockets: nothing to tell.
    await new Promise((resolve) => setTimeout(resolve, GRACE_MS + 300));
    assert.deepEqual(of(alice, carol1.events), [`${alice}:online:1`, `${alice}:online:2`]);
    const away = await ack(tabAgain.socket, "status", { status: "away" });
    assert.equal(away.ok, true, JSON.stringify(away));
    assert.equal(sd(away.presence), `${alice}:away:2`);
    await carol1.events.waitFor(3);
    assert.deepEqual(of(alice, carol1.events), [`${alice}:online:1`, `${alice}:online:2`, `${alice}:away:2`]);
    // Each tab that came back heard where alice stood, then the status.
    assert.equal(sd(tabAgain.events.items[0]), `${alice}:online:2`);
    await phoneAgain.events.waitUntil((items) => items.some((p) => p.status === "away"), "away");
    assert.deepEqual(phoneAgain.events.items.map(sd), [`${alice}:online:2`, `${alice}:away:2`]);
    for (const d of [carol1, tabAgain, phoneAgain]) d.close();
  });

  test("watch is bounded per socket, unwatch stops the events, bad input is refused clearly", { timeout: TEST_TIMEOUT_MS }, async () => {
    const bob = await device("bob-3");
    const users = (n, prefix = "u") => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
    let reply = await ack(bob.socket, "watch", { users: users(MAX_WATCH + 1) });
    assert.equal(reply.ok, false);
    assert.equal(reply.error.code, "too_many_watched");
    reply = await ack(bob.socket, "watch", { users: users(MAX_WATCH - 1) });
    assert.equal(reply.watching, MAX_WATCH - 1);
    reply = await ack(bob.socket, "watch", { users: ["x", "y"] });
    assert.equal(reply.error?.code, "too_many_watched", "the bound counts what is watched already");
    reply = await ack(bob.socket, "watch", { users: ["u0", "x"] });
    assert.equal(reply.watching, MAX_WATCH, "u0 was watched already");

    // Unwatched users are not heard of; watched ones are.
    reply = await ack(bob.socket, "unwatch", { users: ["u0"] });
    assert.deepEqual(reply, { ok: true, watching: MAX_WATCH - 1 });
    const u0 = await device("u0");
    const u1 = await device("u1");
    await bob.events.waitFor(1);
    assert.deepEqual(bob.events.items.map(sd), ["u1:online:1"]);

    for (const [event, payload] of [
      ["watch", { users: [] }],
      ["watch", { users: [""] }],
      ["watch", { users: ["x".repeat(300)] }],
      ["watch", { users: [42] }],
      ["watch", ["alice"]],
      ["watch", { users: ["a"], also: true }],
      ["unwatch", {}],
      ["status", { status: "offline" }],
      ["status", { status: "invisible" }],
      ["status", "away"],
    ]) {
      reply = await ack(bob.socket, event, payload);
      assert.equal(reply.ok, false, `${event} ${JSON.stringify(payload)}`);
      assert.equal(reply.error.code, "bad_request", `${event} ${JSON.stringify(payload)}`);
      assert.ok(reply.error.message.length > 0);
    }
    reply = await ack(bob.socket, "whois", {});
    assert.equal(reply.error.code, "unknown_event");
    for (const d of [bob, u0, u1]) d.close();
  });
});
