// JSONP polling in a real browser (issue 19): socket.io-client 2.5.0
// (Engine.IO v3) and 3.1.3 (v4), the last releases whose engine.io-client
// still has the JSONP transport, each from npm's own bundle, in Chromium
// with `forceJSONP`: every GET a <script> calling `___eio[j]`, every POST
// a hidden form into an iframe. A 2.x user and a 3.x user chat through
// `/chat` with text that a form mangles if nothing escapes it (newlines,
// a backslash before an n, a line separator, emoji), and each sends
// binary to `/` and gets it back.
//
// The page is served by Playwright on the hub's origin (the hub does not
// know it), so that the form's POST is same-origin, as on a site that
// serves its page and its hub together.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import { WAIT_MS, launchBrowser, startHub } from "./harness.mjs";

const require = createRequire(import.meta.url);
const BUNDLES = {
  "2.x": readFileSync(require.resolve("socket.io-client-v2/dist/socket.io.js"), "utf8"),
  "3.x": readFileSync(require.resolve("socket.io-client-v3/dist/socket.io.js"), "utf8"),
};
const PAGE = `<!doctype html><meta charset="utf-8"><title>jsonp</title><body><script src="/__jsonp/client.js"></script>`;

/** Text a form would change if the client and the server did not escape it. */
const TRICKY = "line one\nline two, a literal \\n, a \\\\n, é ✓ 😀 \u2028 end";

let hub;
let browser;

before(async () => {
  hub = await startHub({ config: "[engine]\nallow_eio3 = true\n" });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await hub?.dispose();
});

async function tokenFor(user) {
  const res = await fetch(`${hub.url}/dev/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user }),
  });
  assert.equal(res.status, 200);
  return (await res.json()).token;
}

/**
 * A page running `version`'s bundle, recording every request it makes to
 * /socket.io/.
 */
async function clientPage(version) {
  const context = await browser.newContext();
  context.setDefaultTimeout(WAIT_MS);
  const page = await context.newPage();
  const requests = [];
  page.on("request", (request) => {
    if (new URL(request.url()).pathname.startsWith("/socket.io/")) {
      requests.push({
        method: request.method(),
        type: request.resourceType(),
        url: request.url(),
        contentType: request.headers()["content-type"] ?? "",
      });
    }
  });
  await page.route(`${hub.url}/__jsonp/**`, (route) => {
    const isScript = route.request().url().endsWith("/client.js");
    return route.fulfill({
      status: 200,
      contentType: isScript ? "text/javascript; charset=utf-8" : "text/html; charset=utf-8",
      body: isScript ? BUNDLES[version] : PAGE,
    });
  });
  await page.goto(`${hub.url}/__jsonp/index.html`);
  await page.waitForFunction(() => typeof window.io === "function");
  return { page, requests, close: () => context.close() };
}

/**
 * Connects the page to `/chat` as the token's user by JSONP only (the 2.x
 * client sends the token in the namespace's query, 3.x in `auth`), and to
 * `/` on the same Manager; records `message` events in `window.received`.
 */
async function connect(page, token) {
  await page.evaluate(async (token) => {
    const opts = { transports: ["polling"], forceJSONP: true, query: { token }, auth: { token } };
    const chat = window.io("/chat", opts);
    const root = window.io("/", { transports: ["polling"], forceJSONP: true });
    window.received = [];
    chat.on("message", (m) => window.received.push(m));
    const ready = (socket) =>
      new Promise((resolve, reject) => {
        if (socket.connected) return resolve();
        socket.on("connect", resolve);
        socket.on("connect_error", (err) => reject(new Error(`connect_error: ${err?.message ?? err}`)));
        socket.on("error", (err) => reject(new Error(`error: ${JSON.stringify(err)}`)));
      });
    await Promise.all([ready(chat), ready(root)]);
    window.chat = chat;
    window.root = root;
  }, token);
}

/** Sends a chat message to `to`; resolves with the ack. */
function sendTo(page, to, text, clientId) {
  return page.evaluate(
    ([to, text, clientId]) =>
      new Promise((resolve) => window.chat.emit("message", { to, client_id: clientId, text }, resolve)),
    [to, text, clientId],
  );
}

async function receivedTexts(page) {
  return page.evaluate(() => window.received.map((m) => m.text));
}

/** Every request to the engine was JSONP: scripts and form posts, with `j`. */
function assertAllJsonp(requests, who) {
  assert.ok(requests.length >= 4, `${who}: ${requests.length} engine requests`);
  for (const r of requests) {
    assert.match(r.url, /[?&]j=\d+/, `${who}: ${r.method} ${r.url}`);
    if (r.method === "GET") {
      assert.equal(r.type, "script", `${who}: ${r.url}`);
    } else {
      assert.equal(r.method, "POST", `${who}: ${r.url}`);
      assert.equal(r.type, "document", `${who}: a form's POST, ${r.url}`);
      assert.match(r.contentType, /^application\/x-www-form-urlencoded/, who);
    }
  }
}

test("socket.io-client 2.x and 3.x chat over JSONP polling, binary included", { timeout: 120_000 }, async () => {
  const alice = await clientPage("2.x");
  const bob = await clientPage("3.x");
  try {
    await connect(alice.page, await tokenFor("alice"));
    await connect(bob.page, await tokenFor("bob"));
    assert.match(alice.requests[0].url, /[?&]EIO=3(&|$)/);
    assert.match(bob.requests[0].url, /[?&]EIO=4(&|$)/);

    // alice (2.x) → bob (3.x), then back with the tricky text.
    const ack = await sendTo(alice.page, "bob", "hello from 2.x", "a1");
    assert.equal(ack.ok, true, JSON.stringify(ack));
    await bob.page.waitForFunction(() => window.received.some((m) => m.text === "hello from 2.x"));
    const reply = await sendTo(bob.page, "alice", TRICKY, "b1");
    assert.equal(reply.ok, true, JSON.stringify(reply));
    await alice.page.waitForFunction((text) => window.received.some((m) => m.text === text), TRICKY);
    // Each side also sees its own message, exactly as the other does.
    await bob.page.waitForFunction((text) => window.received.some((m) => m.text === text), TRICKY);
    assert.deepEqual(await receivedTexts(alice.page), ["hello from 2.x", TRICKY]);
    assert.deepEqual(await receivedTexts(bob.page), ["hello from 2.x", TRICKY]);

    // Binary both ways on `/`: base64 text in a script and in a form. An
    // ArrayBuffer: 2.x's has-binary2 does not see a typed array as binary
    // (it would send `{"0":1,…}` as JSON), whatever the transport.
    for (const client of [alice, bob]) {
      const back = await client.page.evaluate(
        () =>
          new Promise((resolve) =>
            window.root.emit("message-with-ack", new Uint8Array([1, 2, 3, 250]).buffer, "tag", async (data, tag) => {
              // 2.x hands an ArrayBuffer, 3.x a Blob (its default binaryType in a browser).
              const buffer = data instanceof Blob ? await data.arrayBuffer() : data;
              resolve({ kind: data?.constructor?.name, bytes: Array.from(new Uint8Array(buffer)), tag });
            }),
          ),
      );
      assert.deepEqual(back.bytes, [1, 2, 3, 250], JSON.stringify(back));
      assert.equal(back.tag, "tag");
    }

    assertAllJsonp(alice.requests, "2.x");
    assertAllJsonp(bob.requests, "3.x");
    // The page's callbacks are the ones the scripts called.
    for (const client of [alice, bob]) {
      assert.equal(await client.page.evaluate(() => Array.isArray(window.___eio) && window.___eio.length > 0), true);
    }
  } finally {
    await alice.close();
    await bob.close();
  }
});
