// Presence in the browser: alice watches bob; he comes online, sets himself
// away then busy, and once his page is closed alice sees him offline, not
// before the hub's grace period is over.

import assert from "node:assert/strict";
import { describe } from "node:test";
import { GRACE_MS, watchPerson, setupFile } from "./harness.mjs";

const env = setupFile();

describe("presence", () => {
  env.test("online, away, busy, then offline after the grace period", async () => {
    const alice = (await env.device("alice")).page;
    const row = await watchPerson(alice, "bob");
    await alice.locator('li.person[data-user="bob"][data-status="offline"]').waitFor();
    assert.equal(await row.locator(".presence-dot").count(), 1, "bob's row has its status dot");

    const bob = (await env.device("bob")).page;
    await alice.locator('li.person[data-user="bob"][data-status="online"]').waitFor();

    const status = bob.getByLabel("Status");
    assert.equal(await status.evaluate((el) => el.id), "status-select");
    await status.selectOption("away");
    await alice.locator('li.person[data-user="bob"][data-status="away"]').waitFor();
    await status.selectOption("busy");
    await alice.locator('li.person[data-user="bob"][data-status="busy"]').waitFor();

    const closed = Date.now();
    await bob.close();
    await alice.locator('li.person[data-user="bob"][data-status="offline"]').waitFor({ timeout: GRACE_MS + 15_000 });
    const after = Date.now() - closed;
    assert.ok(after >= GRACE_MS - 100, `offline ${after} ms after the page closed, the grace period is ${GRACE_MS} ms`);
  });
});
