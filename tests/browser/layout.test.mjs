// The page's frame at a desktop's 1280x800 and a phone's 390x844: a fresh
// load logs no error and requests nothing that fails; on a phone the list
// and a conversation are two screens with a back control, the top bar fits,
// nothing scrolls sideways and the composer stays in sight when the
// keyboard takes half the height; every conversation has its address (back,
// forward, reload); "Add a person" and "New group" are dialogs, Ctrl+K a
// command palette; a call fills a phone's screen; others'
// presence is unknown while the page is disconnected; desktop notifications
// while the tab is hidden; axe at both sizes. With UPDATE_SCREENSHOTS=1 the
// README's screenshots (docs/screenshots/) are written again.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { describe } from "node:test";
import {
  DESKTOP,
  PHONE,
  REPO_ROOT,
  checkScreen,
  newContext,
  openConversation,
  openDirect,
  send,
  setupFile,
  showList,
  signIn,
  waitConnection,
  watchPerson,
} from "./harness.mjs";

const env = setupFile();
const SIZES = [
  ["desktop", DESKTOP],
  ["phone", PHONE],
];
const DOCS_SCREENSHOTS = path.join(REPO_ROOT, "docs/screenshots");

/** Axe on the page's screen, and the README's copy of it when UPDATE_SCREENSHOTS=1. */
async function screen(page, name, { docs = false } = {}) {
  await checkScreen(page, name);
  if (docs && process.env.UPDATE_SCREENSHOTS === "1") {
    mkdirSync(DOCS_SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: path.join(DOCS_SCREENSHOTS, `${name}.png`) });
  }
}

/** Records what a person with the console open would see go wrong: errors, failed requests, answers >= 400. */
function problems(page) {
  const seen = [];
  page.on("console", (msg) => {
    if (msg.type() === "error") seen.push(`console error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => seen.push(`page error: ${err.message}`));
  page.on("requestfailed", (req) => {
    // A page that goes away ends its WebSocket: not a failure anyone sees.
    if (!/ERR_ABORTED/.test(req.failure()?.errorText ?? "")) seen.push(`failed: ${req.url()} (${req.failure()?.errorText})`);
  });
  page.on("response", (res) => {
    if (res.status() >= 400) seen.push(`${res.status()}: ${res.url()}`);
  });
  return seen;
}

/** Whether the element's box lies inside the viewport. */
async function inViewport(locator) {
  return locator.evaluate((node) => {
    const r = node.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.left >= 0 && r.top >= 0 && r.right <= innerWidth && r.bottom <= innerHeight;
  });
}

async function noSidewaysScroll(page, where) {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.scrollingElement.scrollWidth, width: innerWidth }));
  assert.ok(scroll <= width, `${where}: the page scrolls sideways (${scroll} px wide in a ${width} px viewport)`);
}

for (const [size, viewport] of SIZES) {
  describe(`the frame on a ${size}`, () => {
    env.test(`${size}: a fresh sign-in page and the app log no error and no failed request`, async () => {
      const context = await newContext(env.browser, env.hub, { viewport });
      const page = await context.newPage();
      env.sockets.watch(page, `fresh ${size}`);
      const seen = problems(page);
      await page.goto("/");
      await page.locator("form#signin").waitFor();
      await screen(page, `sign-in-${size}`, { docs: size === "desktop" });
      await page.getByLabel("Your name").fill(`fresh-${size}`);
      await page.getByRole("button", { name: "Sign in" }).click();
      await waitConnection(page, "connected");
      await page.reload();
      await waitConnection(page, "connected");
      await page.locator("#conversations-empty").waitFor();
      assert.deepEqual(seen, [], "no error on a fresh load, signed out or in");
    });

    env.test(`${size}: the top bar fits and nothing scrolls sideways`, async () => {
      const { page } = await env.device(`ivy-${size}`, { viewport });
      await watchPerson(page, "someone-with-a-rather-long-user-id");
      await noSidewaysScroll(page, "the list");
      for (const name of ["Sign out", /^Notifications/]) {
        const button = page.getByRole("button", { name });
        assert.ok(await inViewport(button), `${name} is wholly on screen`);
      }
      assert.ok(await inViewport(page.locator("#status-select")), "the status is on screen");
      // On a phone the list fills the screen (no conversation beside it).
      const sidebar = await page.locator(".sidebar").boundingBox();
      if (size === "phone") {
        assert.ok(sidebar.width >= PHONE.width - 1, `the list is ${sidebar.width} px wide`);
        assert.equal(await page.locator("#conversation").isVisible(), false, "no conversation beside the list");
      } else {
        assert.ok(await page.locator("#conversation").isVisible(), "two panes on a desktop");
      }
      await page.context().close();
    });
  });
}

describe("navigation", () => {
  let alice, bob;
  let first, second;

  env.test("phone: list, then a conversation with a back control; the composer stays above the keyboard", async () => {
    alice = (await env.device("alice", { viewport: PHONE })).page;
    bob = (await env.device("bob", { viewport: DESKTOP })).page;
    await watchPerson(alice, "carol");

    first = await openDirect(alice, "bob");
    await send(alice, "Hi bob, is the quarterly report ready?");
    await bob.locator(`li.conversation[data-id="${first}"]`).waitFor();
    await openConversation(bob, first);
    await send(bob, "Almost: the figures are in, I am writing the summary.");
    await alice.locator("#messages li.message", { hasText: "Almost" }).waitFor();
    assert.equal(await alice.evaluate(() => location.hash), `#/c/${first}`, "the conversation has its address");

    // The conversation fills the screen; the list is behind the back control.
    assert.equal(await alice.locator(".sidebar").isVisible(), false, "the list is not beside it");
    assert.ok(await inViewport(alice.getByRole("button", { name: "Back to conversations" })), "a back control");
    const composer = alice.locator("#composer-text");
    assert.ok(await inViewport(composer), "the composer is on screen");
    await noSidewaysScroll(alice, "a conversation");
    await screen(alice, "conversation-phone", { docs: true });

    // The on-screen keyboard takes the lower half: the page shrinks with
    // what is visible, and the composer is still in sight.
    await alice.setViewportSize({ width: PHONE.width, height: 420 });
    await alice.waitForFunction(() => document.querySelector("#app").getBoundingClientRect().height <= innerHeight);
    assert.ok(await inViewport(composer), "the composer is above the keyboard");
    assert.ok(await inViewport(alice.locator("#send, #composer button[type=submit]").first()), "so is Send");
    await alice.setViewportSize(PHONE);

    await alice.getByRole("button", { name: "Back to conversations" }).click();
    await alice.locator(".sidebar").waitFor();
    assert.equal(await alice.locator("#conversation").isVisible(), false, "back shows the list alone");
    assert.equal(await alice.evaluate(() => location.hash), "", "the list's address");
    await screen(alice, "list-phone", { docs: true });
  });

  env.test("phone: the browser's back and forward move between the list and conversations", async () => {
    await alice.goForward();
    await alice.locator(`#conversation[data-id="${first}"]`).waitFor();
    assert.ok(await alice.locator("#conversation").isVisible(), "forward: the conversation again");
    await alice.goBack();
    await alice.locator(".sidebar").waitFor();
    assert.equal(await alice.locator("#conversation").isVisible(), false, "back: the list");
  });

  env.test("dialogs: Add a person and New group open on a button, Escape closes, focus returns", async () => {
    for (const [page, size] of [
      [bob, "desktop"],
      [alice, "phone"],
    ]) {
      await showList(page);
      for (const [opener, field, dialog] of [
        ["Add a person", "Their user id", "#watch-dialog"],
        ["New group", "Group name", "#group-dialog"],
      ]) {
        assert.equal(await page.locator(dialog).isVisible(), false, `${opener}: no form on screen until asked for`);
        await page.getByRole("button", { name: opener }).click();
        await page.getByRole("dialog", { name: opener }).waitFor();
        assert.equal(await page.evaluate(() => document.activeElement?.id), await page.getByLabel(field).getAttribute("id"), "focus in its first field");
        if (opener === "New group") await screen(page, `dialog-${size}`);
        await page.keyboard.press("Escape");
        await page.locator(dialog).waitFor({ state: "hidden" });
        assert.equal(await page.evaluate(() => document.activeElement?.textContent?.trim()), opener, "focus back on the button");
      }
    }
    // A group made in the dialog (Enter in the last field) opens, the dialog closed.
    await bob.getByRole("button", { name: "New group" }).click();
    await bob.getByLabel("Group name").fill("Quarterly");
    await bob.getByLabel("Members (comma-separated ids)").fill("alice");
    await bob.getByLabel("Members (comma-separated ids)").press("Enter");
    await bob.locator("#group-dialog").waitFor({ state: "hidden" });
    second = await bob.locator("#conversation").getAttribute("data-id");
    await bob.locator(`#conversation[data-id="${second}"]`).waitFor();
    assert.notEqual(second, first);
    assert.equal(await bob.evaluate(() => document.activeElement?.id), "composer-text", "focus in the new group's composer");
  });

  env.test("desktop: back and forward move between conversations; a reload returns to the same one, focus in the composer", async () => {
    await bob.locator(`li.conversation[data-id="${first}"]`).waitFor();
    await openConversation(bob, first);
    await openConversation(bob, second);
    assert.equal(await bob.evaluate(() => location.hash), `#/c/${second}`);
    await bob.goBack();
    await bob.locator(`#conversation[data-id="${first}"]`).waitFor();
    await bob.locator("#messages li.message", { hasText: "Almost" }).waitFor();
    await bob.mouse.move(0, 0); // no hover highlight in the picture
    await screen(bob, "conversation-desktop", { docs: true });
    await bob.goForward();
    await bob.locator(`#conversation[data-id="${second}"]`).waitFor();

    await bob.reload();
    await bob.locator(`#conversation[data-id="${second}"]`).waitFor();
    await bob.waitForFunction(() => document.activeElement?.id === "composer-text");
    // And the history is still there: back from it reaches the first.
    await bob.goBack();
    await bob.locator(`#conversation[data-id="${first}"]`).waitFor();
  });

  env.test("phone: a reload returns to the conversation, and back from it to the list", async () => {
    await openConversation(alice, first);
    await alice.reload();
    await alice.locator(`#conversation[data-id="${first}"]`).waitFor();
    assert.ok(await alice.locator("#conversation").isVisible(), "the conversation, not the list");
    await alice.waitForFunction(() => document.activeElement?.id === "composer-text");
    await alice.getByRole("button", { name: "Back to conversations" }).click();
    await alice.locator(".sidebar").waitFor();
  });

  env.test("the command palette: Ctrl+K, a few letters and Enter open a conversation or run a command; Escape closes", async () => {
    const palette = bob.getByRole("dialog", { name: /^Go to a conversation/ });
    await bob.locator("#composer-text").focus();
    await bob.keyboard.press("Control+k");
    await palette.waitFor();
    assert.equal(await bob.evaluate(() => document.activeElement?.id), "palette-input", "focus in the palette");
    await screen(bob, "palette-desktop");
    await bob.keyboard.type("quar");
    await bob.locator('#palette-list li[aria-selected="true"]', { hasText: "Quarterly" }).waitFor();
    await bob.keyboard.press("Enter");
    await palette.waitFor({ state: "hidden" });
    await bob.locator(`#conversation[data-id="${second}"]`).waitFor();
    assert.equal(await bob.evaluate(() => location.hash), `#/c/${second}`, "opened as a click would: its address");

    // A command, chosen with the arrows.
    await bob.keyboard.press("Control+k");
    await palette.waitFor();
    await bob.keyboard.type("a");
    const items = await bob.locator("#palette-list li").allTextContents();
    const target = items.findIndex((text) => text.startsWith("Add a person"));
    assert.ok(target >= 0, `"Add a person" is among ${JSON.stringify(items)}`);
    for (let i = 0; i < target; i++) await bob.keyboard.press("ArrowDown");
    await bob.keyboard.press("Enter");
    await bob.getByRole("dialog", { name: "Add a person" }).waitFor();
    await bob.keyboard.press("Escape");
    await bob.locator("#watch-dialog").waitFor({ state: "hidden" });

    // Escape closes it, focus back where it was.
    await bob.locator("#composer-text").focus();
    await bob.keyboard.press("Control+k");
    await palette.waitFor();
    await bob.keyboard.press("Escape");
    await palette.waitFor({ state: "hidden" });
    assert.equal(await bob.evaluate(() => document.activeElement?.id), "composer-text");
  });

  env.test("the notifications panel at both sizes", async () => {
    const res = await env.hub.api("POST", "/api/v1/notifications", {
      users: ["alice", "bob"],
      type: "review",
      title: "Review requested",
      body: "carol asked you to review the quarterly report",
    });
    assert.equal(res.status, 200);
    for (const [page, size] of [
      [bob, "desktop"],
      [alice, "phone"],
    ]) {
      await page.locator("#bell").click();
      await page.locator("li.notification", { hasText: "Review requested" }).waitFor();
      assert.ok(await inViewport(page.locator("#notifications-panel")), `${size}: the panel is on screen`);
      await noSidewaysScroll(page, `${size}: the notifications panel`);
      await screen(page, `notifications-${size}`);
      await page.keyboard.press("Escape");
      await page.locator("#notifications-panel").waitFor({ state: "hidden" });
    }
  });
});

describe("a call on a phone", () => {
  env.test("an incoming call fills the phone's screen", async () => {
    const { page: kim, context } = await env.device("kim", { viewport: PHONE });
    const { page: lee } = await env.device("lee");
    const row = await watchPerson(lee, "kim");
    await row.locator(".person-call").click();
    await kim.locator("#incoming-call").waitFor();
    const card = await kim.locator("#call .call-card").boundingBox();
    assert.deepEqual(
      [card.x, card.y, card.width, card.height].map(Math.round),
      [0, 0, PHONE.width, PHONE.height],
      "the call card covers the whole screen",
    );
    await kim.locator("#call-decline").click();
    await lee.locator('#call:is([data-state="idle"], [data-state="ended"])').waitFor({ state: "attached" });
    await context.close();
  });
});

describe("presence while disconnected", () => {
  env.test("others show as unknown while the page is cut off, and fresh after it reconnects", async () => {
    const dana = (await env.device("dana")).page;
    const { page: erin, context: erinContext } = await env.device("erin");
    const row = await watchPerson(dana, "erin");
    await row.locator(".person-status", { hasText: /^online$/ }).waitFor();

    await env.hub.stop();
    try {
      await waitConnection(dana, "reconnecting");
      await dana.locator('li.person[data-user="erin"][data-status="unknown"]').waitFor();
      assert.match(await row.locator(".person-status").textContent(), /unknown/);
      // Meanwhile erin leaves: what dana showed (online) is no longer true.
      await erinContext.close();
    } finally {
      // The hub comes back even when this fails: the next tests need it.
      await env.hub.start();
    }
    await waitConnection(dana, "connected");
    await row.locator(".person-status", { hasText: /^offline/ }).waitFor();
    assert.equal(await row.getAttribute("data-status"), "offline");
    void erin;
  });
});

/**
 * Runs before the page's scripts: records every Notification shown and
 * every permission request, and lets the test hide the tab
 * (document.visibilityState) as switching to another one does.
 */
function notificationSpy(fakePermission) {
  const Real = window.Notification;
  window.__shown = [];
  window.__permissionRequests = 0;
  class Spy {
    constructor(title, options = {}) {
      this.title = title;
      this.onclick = null;
      window.__shown.push(this);
      this.body = options.body;
      this.tag = options.tag;
    }
    close() {}
    static get permission() {
      return fakePermission ?? Real.permission;
    }
    static requestPermission() {
      window.__permissionRequests++;
      fakePermission = "granted";
      return Promise.resolve("granted");
    }
  }
  window.Notification = Spy;
  let hidden = false;
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (hidden ? "hidden" : "visible") });
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  window.__hide = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };
}

describe("desktop notifications", () => {
  env.test("permission is asked on the user's gesture only, never at load", async () => {
    const context = await newContext(env.browser, env.hub);
    // Not asked yet (headless Chromium would say "denied"): the spy says "default".
    await context.addInitScript(notificationSpy, "default");
    const page = await signIn(context, "frank", env.sockets);
    await page.reload();
    await waitConnection(page, "connected");
    assert.equal(await page.evaluate(() => window.__permissionRequests), 0, "no request at load");
    await page.locator("#bell").click();
    const enable = page.getByRole("button", { name: "Enable desktop notifications" });
    await enable.click();
    await page.waitForFunction(() => window.__permissionRequests === 1);
    // Granted: the button gives way to what is on.
    await page.locator("#desktop-notifications-state", { hasText: "on while this tab is hidden" }).waitFor();
    assert.equal(await enable.isVisible(), false);
    await page.keyboard.press("Escape");
  });

  env.test("a direct message, a mention and a call notify while the tab is hidden; nothing else does", async () => {
    const context = await newContext(env.browser, env.hub);
    await context.grantPermissions(["notifications"], { origin: env.hub.url });
    await context.addInitScript(notificationSpy, null);
    const gina = await signIn(context, "gina", env.sockets);
    const { page: hal } = await env.device("hal");
    const shown = () => gina.evaluate(() => window.__shown.map((n) => `${n.title} | ${n.body}`));

    // Granted: no button to press, and no notification while she looks.
    await gina.locator("#bell").click();
    await gina.locator("#desktop-notifications-state", { hasText: "on while this tab is hidden" }).waitFor();
    assert.equal(await gina.locator("#desktop-notifications").isVisible(), false);
    await gina.keyboard.press("Escape");

    const direct = await openDirect(hal, "gina");
    await send(hal, "visible: no notification");
    await gina.locator(`li.conversation[data-id="${direct}"]`).waitFor();
    await gina.waitForFunction(() => document.querySelector("#conversations")?.textContent?.includes("visible: no notification"));

    // A group, open on her page, so that a direct message arrives elsewhere.
    await hal.getByRole("button", { name: "New group" }).click();
    await hal.getByLabel("Group name").fill("Ops");
    await hal.getByLabel("Members (comma-separated ids)").fill("gina");
    await hal.getByLabel("Members (comma-separated ids)").press("Enter");
    await hal.locator("#group-dialog").waitFor({ state: "hidden" });
    await hal.locator("#conversation-title", { hasText: "Ops" }).waitFor();
    const group = await hal.locator("#conversation").getAttribute("data-id");
    await gina.locator(`li.conversation[data-id="${group}"]`).waitFor();
    await openConversation(gina, group);
    await gina.evaluate(() => window.__hide(true));

    await openConversation(hal, group);
    await send(hal, "an ordinary group message");
    await send(hal, "@gina can you check the deploy?");
    await gina.waitForFunction(() => window.__shown.length >= 1);
    await openConversation(hal, direct);
    await send(hal, "a direct message");
    await gina.waitForFunction(() => window.__shown.length >= 2);
    const row = await watchPerson(hal, "gina");
    await row.locator(".person-call").click();
    await gina.waitForFunction(() => window.__shown.length >= 3);
    await hal.locator("#call-hangup").click();

    assert.deepEqual(await shown(), [
      "hal mentioned you in Ops | @gina can you check the deploy?",
      "hal | a direct message",
      "hal is calling you | Incoming video call",
    ]);
    // Clicking the direct message's notification opens its conversation.
    await gina.locator('#call:is([data-state="idle"], [data-state="ended"])').waitFor({ state: "attached" });
    await gina.evaluate(() => window.__shown[1].onclick());
    await gina.locator(`#conversation[data-id="${direct}"]`).waitFor();
    // Visible again: nothing more.
    await gina.evaluate(() => window.__hide(false));
    await send(hal, "seen live");
    await gina.locator("#messages li.message", { hasText: "seen live" }).waitFor();
    assert.equal((await shown()).length, 3, "no notification while the tab is visible");
  });
});
