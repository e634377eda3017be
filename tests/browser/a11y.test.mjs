// Accessibility of each main screen, checked with axe-core in Chromium: the
// sign-in form, a conversation open, the notifications panel open, an
// incoming call, a call in progress. No serious or critical violation is
// allowed. Each screen is also saved as a screenshot in
// target/browser-screenshots/ (for the README and for people to look at).

import assert from "node:assert/strict";
import { describe } from "node:test";
import { checkScreen, newContext, openConversation, openDirect, send, setupFile, watchPerson } from "./harness.mjs";

const env = setupFile();

describe("accessibility and screenshots", () => {
  let alice, bob;

  env.test("sign-in screen", async () => {
    const context = await newContext(env.browser, env.hub);
    const page = await context.newPage();
    env.sockets.watch(page, "sign-in page");
    await page.goto("/");
    await page.locator("form#signin").waitFor();
    await checkScreen(page, "sign-in");
    // The form works from the keyboard alone: its field is labelled and
    // focusable, Enter submits.
    await page.getByLabel("Your name").focus();
    await page.keyboard.type("carol");
    await page.keyboard.press("Enter");
    await page.locator('#app[data-connection="connected"]').waitFor({ state: "attached" });
    await page.locator("#me", { hasText: "carol" }).waitFor();
  });

  env.test("a conversation open", async () => {
    alice = (await env.device("alice")).page;
    bob = (await env.device("bob")).page;
    await watchPerson(alice, "carol");
    const direct = await openDirect(alice, "bob");
    await send(alice, "Hi bob, is the quarterly report ready?");
    await bob.locator(`li.conversation[data-id="${direct}"]`).waitFor();
    await openConversation(bob, direct);
    await send(bob, "Almost: the figures are in, I am writing the summary.");
    await send(alice, "Great, thanks! Shall we go through it on a call?");
    await alice.locator("#messages li.message", { hasText: "Almost" }).waitFor();
    await checkScreen(alice, "conversation");
  });

  env.test("keyboard: Tab reaches the composer, every stop shows its focus, Enter sends", async (t) => {
    await alice.locator("#me").click(); // start from the page, not from a field
    const stops = [];
    for (let i = 0; i < 60; i++) {
      await alice.keyboard.press("Tab");
      const stop = await alice.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return null;
        const style = getComputedStyle(el);
        const outlined = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
        return {
          what: `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}${el.className ? `.${String(el.className).split(" ").join(".")}` : ""}`,
          id: el.id,
          shown: outlined || style.boxShadow !== "none",
        };
      });
      if (!stop) continue;
      stops.push(stop);
      if (stop.id === "composer-text") break;
    }
    t.diagnostic(`Tab stops: ${stops.map((s) => s.what).join(", ")}`);
    assert.ok(stops.some((s) => s.id === "composer-text"), "Tab reaches the composer");
    const unmarked = stops.filter((s) => !s.shown).map((s) => s.what);
    assert.deepEqual(unmarked, [], "every element Tab stops at shows a focus ring");
    await alice.keyboard.type("Sent from the keyboard");
    await alice.keyboard.press("Enter");
    await bob.locator("#messages li.message", { hasText: "Sent from the keyboard" }).waitFor();
  });

  env.test("the notifications panel open", async () => {
    for (const [type, title, body] of [
      ["invoice:paid", "Invoice paid", "Invoice 42 was paid by ACME"],
      ["review", "Review requested", "bob asked you to review the quarterly report"],
    ]) {
      const res = await env.hub.api("POST", "/api/v1/notifications", { users: ["alice"], type, title, body });
      assert.equal(res.status, 200);
    }
    await alice.locator("#bell-count", { hasText: /^2$/ }).waitFor();
    await alice.locator("#bell").click();
    await alice.locator("#notifications-panel").waitFor();
    await alice.locator("li.notification", { hasText: "Review requested" }).waitFor();
    await checkScreen(alice, "notifications");
    await alice.locator("#bell").click();
    await alice.locator("#notifications-panel").waitFor({ state: "hidden" });
  });

  env.test("an incoming call, then a call in progress", async () => {
    const row = await watchPerson(alice, "bob");
    await row.locator(".person-call").click();
    await bob.locator("#incoming-call").waitFor();
    // Both screens are checked (and saved) before either's failure is told.
    const incoming = await checkScreen(bob, "incoming-call").catch((err) => err);

    await bob.locator("#call-accept").click();
    for (const page of [alice, bob]) {
      await page.waitForFunction(() => {
        const states = window.__switchboard.peerStates();
        return states.length > 0 && states.every((s) => s === "connected");
      }, null, { timeout: 30_000 });
      await page.waitForFunction(() => document.querySelector("#call-tiles .call-tile.remote video")?.videoWidth > 0);
    }
    const inCall = await checkScreen(alice, "call").catch((err) => err);
    await alice.locator("#call-hangup").click();
    await bob.locator('#call:is([data-state="idle"], [data-state="ended"])').waitFor({ state: "attached" });
    const failures = [incoming, inCall].filter(Boolean);
    if (failures.length) throw new Error(failures.map((err) => err.message).join("\n"));
  });
});
