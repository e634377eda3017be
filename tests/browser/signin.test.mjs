// Signing in: by name in development mode (every other file does that), a
// name that is no user id (refused by the page itself: the hub takes every
// name its pattern allows), the token a host application gives in the URL
// fragment (production), a reload that keeps the user signed in, and a token
// the hub refuses: production signs out, dev mode mints a new one, backing
// off while it cannot.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { eventually, newContext, setupFile, signIn, waitConnection } from "./harness.mjs";

const env = setupFile();

describe("sign-in", () => {
  env.test("a name that is no user id: the form says why, without asking the hub, and stays", async () => {
    const context = await newContext(env.browser, env.hub);
    const page = await context.newPage();
    env.sockets.watch(page, "refused sign-in");
    await page.goto("/", { waitUntil: "networkidle" });
    const mints = [];
    page.on("request", (request) => {
      if (new URL(request.url()).pathname === "/dev/token") mints.push(request.postData());
    });
    await page.getByLabel("Your name").fill("not a name!");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: /\S/ }).waitFor();
    assert.deepEqual(mints, [], "the page refused the name itself");
    assert.equal(await page.locator("form#signin").isVisible(), true);
    assert.equal(await page.locator("#app").isVisible(), false);
    await page.close();
  });

  env.test("a token in the URL fragment (production) signs in and leaves the address bar", async () => {
    const res = await fetch(`${env.hub.url}/dev/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: "dana" }),
    });
    assert.equal(res.status, 200);
    const { token } = await res.json();
    const context = await newContext(env.browser, env.hub);
    const page = await context.newPage();
    env.sockets.watch(page, "dana (token in the fragment)");
    await page.goto(`/#token=${token}`);
    await waitConnection(page, "connected");
    await page.locator("#me", { hasText: "dana" }).waitFor();
    assert.equal(await page.locator("form#signin").isVisible(), false, "no sign-in form");
    assert.doesNotMatch(page.url(), /token/, "the token left the address bar");
    assert.equal(await page.evaluate(() => window.__switchboard.user), "dana");
  });

  env.test("a reload keeps the user signed in, on one WebSocket", async () => {
    const { page } = await env.device("erin");
    await page.reload();
    await waitConnection(page, "connected");
    await page.locator("#me", { hasText: "erin" }).waitFor();
    assert.equal(await page.locator("form#signin").isVisible(), false);
  });

  env.test("production: a token the hub refuses signs the page out, and it stops trying", async () => {
    const res = await fetch(`${env.hub.url}/dev/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user: "gus" }),
    });
    const { token } = await res.json();
    // Another signature: a token not signed by this hub.
    const [head, body, sig] = token.split(".");
    const forged = `${head}.${body}.${sig.startsWith("A") ? "B" : "A"}${sig.slice(1)}`;
    const context = await newContext(env.browser, env.hub);
    const page = await context.newPage();
    const connects = [];
    page.on("websocket", (ws) => ws.on("framesent", (f) => String(f.payload).startsWith("40/chat,") && connects.push(Date.now())));
    await page.goto(`/#token=${forged}`);
    await page.locator("#connection-status", { hasText: /Signed out/ }).waitFor();
    const tries = connects.length;
    assert.ok(tries >= 1);
    assert.equal(await page.evaluate(() => sessionStorage.getItem("switchboard.session")), null, "the session is forgotten");
    // Past the first retry's delay: no new attempt with the refused token.
    await page.waitForTimeout(2500);
    assert.equal(connects.length, tries, "no retry after the sign-out");
    await page.close();
  });

  env.test("dev mode: a refused token while no new one can be minted is retried less and less often, then a fresh one connects", async () => {
    const context = await newContext(env.browser, env.hub);
    const page = await signIn(context, "hana");
    // The hub refuses the token the page holds (as after a restart with
    // another development secret), and /dev/token fails for now.
    let mintFails = true;
    await page.route("**/dev/token", (route) =>
      mintFails ? route.fulfill({ status: 503, contentType: "application/json", body: '{"error":{"code":"unavailable","message":"down"}}' }) : route.continue(),
    );
    await page.evaluate(() => {
      const s = JSON.parse(sessionStorage.getItem("switchboard.session"));
      sessionStorage.setItem("switchboard.session", JSON.stringify({ ...s, token: `${s.token}x` }));
    });
    const connects = [];
    page.on("websocket", (ws) => ws.on("framesent", (f) => String(f.payload).startsWith("40/chat,") && connects.push(Date.now())));
    await page.reload();
    // Four attempts: the waits between them grow (1 s, 2 s, 4 s; a fixed 1 s retry is what this rules out).
    await eventually(() => assert.ok(connects.length >= 4, `${connects.length} attempts so far`), { timeout: 20_000, interval: 200 });
    const gaps = connects.slice(1, 4).map((t, i) => t - connects[i]);
    assert.ok(gaps[2] >= 3000 && gaps[2] > gaps[0], `the waits grow: ${gaps.join(", ")} ms`);
    assert.equal(await page.locator("#app").getAttribute("data-connection"), "connecting");
    // /dev/token is back: the next retry mints a new token and the page connects.
    mintFails = false;
    await waitConnection(page, "connected", 40_000);
    await page.locator("#me", { hasText: "hana" }).waitFor();
    await page.close();
  });
});
