// Signing in: by name in development mode (every other file does that), a
// name that is no user id (refused by the page itself: the hub takes every
// name its pattern allows), the token a host application gives in the URL
// fragment (production), and a reload that keeps the user signed in.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { newContext, setupFile, waitConnection } from "./harness.mjs";

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
});
