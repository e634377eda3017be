// Notifications in the browser: one published through the publish API shows
// in the bell with its unread count on both of alice's devices, and reading
// it (one, or all) on one device clears it on the other.

import assert from "node:assert/strict";
import { before, describe } from "node:test";
import { setupFile } from "./harness.mjs";

const env = setupFile();

/** Waits until the page's bell says `count` unread (the badge hidden at 0). */
async function waitUnread(page, count) {
  const badge = page.locator("#bell-count");
  if (count === 0) {
    await badge.waitFor({ state: "hidden" });
  } else {
    await page.locator("#bell-count", { hasText: new RegExp(`^\\s*${count}\\s*$`) }).waitFor();
  }
  await page.locator(`#bell[aria-label="Notifications, ${count} unread"]`).waitFor({ state: "attached" });
}

/** Opens the page's notifications panel unless it is open. */
/** Asserts notification `id` is shown read and offers no enabled "Mark read" (the button is gone or disabled). */
async function noEnabledMarkRead(page, id) {
  const item = page.locator(`li.notification[data-id="${id}"][data-read="true"]`);
  await item.waitFor();
  assert.equal(await item.locator(".notification-read:enabled").count(), 0, "no enabled 'Mark read' once read");
}

async function openPanel(page) {
  const panel = page.locator("#notifications-panel");
  if (!(await panel.isVisible())) await page.locator("#bell").click();
  await panel.waitFor();
}

async function publish(title, body) {
  const res = await env.hub.api("POST", "/api/v1/notifications", {
    users: ["alice"],
    type: "invoice:paid",
    title,
    body,
    data: { invoice: 42 },
  });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.body.stored, 1);
}

describe("notifications", () => {
  let phone, laptop;

  before(async () => {
    laptop = (await env.device("alice")).page;
    phone = (await env.device("alice")).page;
    for (const page of [laptop, phone]) await waitUnread(page, 0);
  });

  env.test("a published notification shows in the bell on both devices; reading it on one clears it on the other", async () => {
    await publish("Invoice paid", "Invoice 42 was paid");
    for (const page of [laptop, phone]) await waitUnread(page, 1);

    // The panel opens from the bell and closes again.
    await laptop.locator("#bell").click();
    await laptop.locator("#notifications-panel").waitFor();
    const item = laptop.locator('#notifications-list li.notification[data-read="false"]', { hasText: "Invoice paid" });
    await item.waitFor();
    assert.equal((await item.locator(".notification-title").textContent())?.trim(), "Invoice paid");
    assert.equal((await item.locator(".notification-body").textContent())?.trim(), "Invoice 42 was paid");
    const id = await item.getAttribute("data-id");
    assert.ok(id, "the item has its data-id");

    await item.locator(".notification-read").click();
    await laptop.locator(`li.notification[data-id="${id}"][data-read="true"]`).waitFor();
    await waitUnread(laptop, 0);
    // Read: no enabled "Mark read" on it any more.
    await noEnabledMarkRead(laptop, id);

    // The other device: cleared without touching it.
    await waitUnread(phone, 0);
    await openPanel(phone);
    await phone.locator(`li.notification[data-id="${id}"][data-read="true"]`).waitFor();
    await noEnabledMarkRead(phone, id);

    await laptop.locator("#bell").click();
    await laptop.locator("#notifications-panel").waitFor({ state: "hidden" });
  });

  env.test("'Mark all read' on one device clears them all on the other", async () => {
    await publish("Build failed", "main is red");
    await publish("Review requested", "bob asked for your review");
    for (const page of [laptop, phone]) await waitUnread(page, 2);

    await openPanel(phone);
    await phone.locator('li.notification[data-read="false"]', { hasText: "Review requested" }).waitFor();
    await phone.locator("#notifications-read-all").click();
    for (const page of [phone, laptop]) await waitUnread(page, 0);

    await openPanel(laptop);
    for (const title of ["Invoice paid", "Build failed", "Review requested"]) {
      await laptop.locator('li.notification[data-read="true"]', { hasText: title }).waitFor();
    }
    assert.equal(await laptop.locator('li.notification[data-read="false"]').count(), 0, "nothing unread is listed");
    // Newest first.
    const titles = await laptop.locator("li.notification .notification-title").allTextContents();
    assert.deepEqual(titles.map((t) => t.trim()), ["Review requested", "Build failed", "Invoice paid"]);
  });

  env.test("a flood of notifications: the list keeps the newest 200, the badge counts them all", async () => {
    const { page } = await env.device("nina");
    await openPanel(page);
    const total = 230;
    for (let i = 1; i <= total; i++) {
      const res = await env.hub.api("POST", "/api/v1/notifications", { users: ["nina"], type: "build", title: `Build ${i}`, body: "failed" });
      assert.equal(res.status, 200, JSON.stringify(res.body));
    }
    await waitUnread(page, total);
    await page.locator("li.notification .notification-title", { hasText: new RegExp(`^Build ${total}$`) }).waitFor();
    const titles = (await page.locator("li.notification .notification-title").allTextContents()).map((t) => t.trim());
    assert.equal(titles.length, 200, "the newest 200 listed");
    assert.equal(titles[0], `Build ${total}`);
    assert.equal(titles[199], `Build ${total - 199}`);
  });
});
