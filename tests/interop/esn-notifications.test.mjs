// /notifications with the official socket.io-client: three users with two
// devices each (one connection per device), notifications created through
// the publish API, `list`, `read`, `read_all`, the mirror to the other
// devices, the unread count at connect, and every error.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startEsn, token } from "./esn.mjs";
import { Recorder, TEST_TIMEOUT_MS, ack } from "./helpers.mjs";

const USERS = ["ann", "ben", "cat"];
let esn;
/** user -> [device 1, device 2], each {socket, unread: Recorder, notifications: Recorder, reads: Recorder} */
const devices = {};

async function device(user) {
  const d = esn.device(user);
  const socket = d.manager.socket("/notifications", {
    auth: { token: token(user) },
  });
  const entry = {
    socket,
    unread: new Recorder(socket, "unread", (p) => p.count),
    notifications: new Recorder(socket, "notification", (p) => p),
    reads: new Recorder(socket, "notification:read", (p) => p),
    // Every count the device was told, in arrival order.
    counts: [],
  };
  socket.on("unread", (p) => entry.counts.push(p.count));
  socket.on("notification", (p) => entry.counts.push(p.unread));
  socket.connect();
  await entry.unread.waitFor(1);
  return entry;
}

/** The last unread count a device was told, by `unread` or `notification`. */
const lastCount = (entry) => entry.counts.at(-1);

before(async () => {
  esn = await startEsn();
  for (const user of USERS) {
    devices[user] = [];
    for (let i = 0; i < 2; i++) {
      devices[user].push(await device(user));
    }
  }
});

after(async () => {
  await esn?.stop();
});

const notify = (users, title, extra = {}) =>
  esn.api("POST", "/api/v1/notifications", { users, type: "test", title, ...extra });

test("every device is told its unread count once connected", { timeout: TEST_TIMEOUT_MS }, () => {
  for (const user of USERS) {
    for (const d of devices[user]) assert.deepEqual(d.unread.items, [0]);
  }
});

test("a notification reaches every device of its users, with the count, and nobody else", { timeout: TEST_TIMEOUT_MS }, async () => {
  const res = await notify(["ann", "ben"], "Welcome", { body: "Hello", data: { link: "/welcome" } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(res.body, { ok: true, stored: 2, delivered: 4 });
  for (const user of ["ann", "ben"]) {
    for (const d of devices[user]) {
      const [got] = await d.notifications.waitFor(1);
      assert.equal(got.unread, 1);
      assert.equal(got.notification.type, "test");
      assert.equal(got.notification.title, "Welcome");
      assert.equal(got.notification.body, "Hello");
      assert.deepEqual(got.notification.data, { link: "/welcome" });
      assert.equal(got.notification.read, false);
      assert.equal(typeof got.notification.id, "number");
      assert.ok(Math.abs(got.notification.created_at - Date.now()) < 60_000);
    }
  }
  // A publish with persist: stored and sent the same way.
  const pub = await esn.api("POST", "/api/v1/publish", {
    event: "mention",
    users: ["ann", "cat"],
    persist: true,
    title: "You were mentioned",
    data: { conversation: 1 },
  });
  assert.equal(pub.status, 200, JSON.stringify(pub.body));
  assert.equal(pub.body.stored, 2);
  for (const d of devices.cat) {
    const [got] = await d.notifications.waitFor(1);
    assert.equal(got.notification.type, "mention");
    assert.equal(got.unread, 1);
  }
  for (const d of devices.ann) {
    const items = await d.notifications.waitFor(2);
    assert.equal(items[1].unread, 2);
  }
  assert.equal(devices.ben[0].notifications.items.length, 1, "ben got only his");
});

test("list pages newest first with a stable cursor", { timeout: TEST_TIMEOUT_MS }, async () => {
  for (let i = 0; i < 5; i++) {
    const res = await notify(["cat"], `page ${i}`);
    assert.equal(res.status, 200);
  }
  const [phone] = devices.cat;
  await phone.notifications.waitFor(6);
  const first = await ack(phone.socket, "list", { limit: 4 });
  assert.equal(first.ok, true);
  assert.equal(first.has_more, true);
  assert.deepEqual(
    first.notifications.map((n) => n.title),
    ["page 4", "page 3", "page 2", "page 1"],
  );
  // A new one arrives between pages: the next page is unchanged.
  await notify(["cat"], "late");
  const rest = await ack(phone.socket, "list", { before: first.notifications.at(-1).id, limit: 4 });
  assert.equal(rest.has_more, false);
  assert.deepEqual(
    rest.notifications.map((n) => n.title),
    ["page 0", "You were mentioned"],
  );
  const everything = await ack(phone.socket, "list");
  assert.equal(everything.notifications.length, 7);
  assert.equal(everything.notifications[0].title, "late");
});

test("read marks only the user's own, once, and is mirrored to the other device", { timeout: TEST_TIMEOUT_MS }, async () => {
  const [annPhone, annLaptop] = devices.ann;
  const [benPhone] = devices.ben;
  const mine = (await ack(annPhone.socket, "list")).notifications;
  const bens = (await ack(benPhone.socket, "list")).notifications;
  assert.equal(mine.length, 2);
  const reply = await ack(annPhone.socket, "read", { ids: [mine[0].id, bens[0].id, 123456789] });
  assert.deepEqual(reply, { ok: true, ids: [mine[0].id] });
  const [mirrored] = await annLaptop.reads.waitFor(1);
  assert.deepEqual(mirrored, { ids: [mine[0].id] });
  for (const d of devices.ann) await d.unread.waitUntil((c) => c.at(-1) === 1, "count 1");
  assert.equal(annPhone.reads.items.length, 0, "the reading device has its ack");
  // Ben's notification is untouched.
  const again = (await ack(benPhone.socket, "list")).notifications;
  assert.equal(again[0].read, false);
  // Idempotent: nothing changes, nobody is told.
  assert.deepEqual(await ack(annLaptop.socket, "read", { ids: [mine[0].id] }), { ok: true, ids: [] });
  const listed = (await ack(annLaptop.socket, "list")).notifications;
  assert.deepEqual(
    listed.map((n) => n.read),
    [true, false],
  );
});

test("read_all marks everything read on every device", { timeout: TEST_TIMEOUT_MS }, async () => {
  const [catPhone, catLaptop] = devices.cat;
  const reply = await ack(catLaptop.socket, "read_all");
  assert.deepEqual(reply, { ok: true, marked: 7 });
  const [mirrored] = await catPhone.reads.waitFor(1);
  assert.deepEqual(mirrored, { all: true });
  // After the one at connect, a second `unread`: 0.
  for (const d of devices.cat) await d.unread.waitUntil((c) => c.length === 2 && c[1] === 0, "count 0");
  assert.deepEqual(await ack(catPhone.socket, "read_all", {}), { ok: true, marked: 0 });
  const listed = (await ack(catPhone.socket, "list", { limit: 100 })).notifications;
  assert.ok(listed.every((n) => n.read));
});

test("every device ends with the store's count", { timeout: TEST_TIMEOUT_MS }, async () => {
  // A `list` answered now comes after every change sent before it.
  for (const user of USERS) {
    for (const d of devices[user]) {
      await ack(d.socket, "list", { limit: 1 });
    }
  }
  const expected = { ann: 1, ben: 1, cat: 0 };
  for (const user of USERS) {
    for (const d of devices[user]) assert.equal(lastCount(d), expected[user], user);
  }
});

test("bad input gets clear errors", { timeout: TEST_TIMEOUT_MS }, async () => {
  const { socket } = devices.ben[1];
  const cases = [
    ["list", [{ limit: 0 }], "bad_request"],
    ["list", [{ limit: 101 }], "bad_request"],
    ["list", [{ before: "x" }], "bad_request"],
    ["list", [{ cursor: 5 }], "bad_request"],
    ["read", [], "bad_request"],
    ["read", [{ ids: [] }], "bad_request"],
    ["read", [{ ids: ["1"] }], "bad_request"],
    ["read", [{ ids: Array.from({ length: 101 }, (_, i) => i) }], "bad_request"],
    ["read_all", [{ all: true }], "bad_request"],
    ["archive", [{}], "unknown_event"],
  ];
  for (const [event, args, code] of cases) {
    const reply = await ack(socket, event, ...args);
    assert.equal(reply.ok, false, `${event} ${JSON.stringify(args)}`);
    assert.equal(reply.error.code, code, `${event} ${JSON.stringify(args)}`);
    assert.equal(typeof reply.error.message, "string");
  }
  // The publish API refuses bad notifications with JSON errors.
  for (const body of [
    { users: [], type: "t", title: "x" },
    { users: ["ann"], type: "t", title: "" },
    { users: ["ann"], type: "t", title: "x", data: { big: "x".repeat(5000) } },
    { users: ["ann"], type: "t" },
  ]) {
    const res = await esn.api("POST", "/api/v1/notifications", body);
    assert.equal(res.status, 422, JSON.stringify(body));
    assert.equal(res.body.ok, false);
  }
  const res = await esn.api("POST", "/api/v1/publish", { event: "e", rooms: ["r"], persist: true, title: "x" });
  assert.equal(res.status, 422);
});

test("a signed-out client is refused", { timeout: TEST_TIMEOUT_MS }, async () => {
  const d = esn.device("nobody");
  const socket = d.manager.socket("/notifications", { auth: {} });
  const refused = new Promise((resolve) => socket.once("connect_error", resolve));
  socket.connect();
  const err = await refused;
  assert.equal(err.message, "unauthorized");
  assert.equal(err.data.code, "missing_token");
  d.close();
});
