// Presence in the browser: alice watches bob; he comes online, sets himself
// away then busy, and once his page is closed alice sees him offline, not
// before the hub's grace period is over; a status change the hub refuses
// (more than a user may make) leaves the select on the status others see; a
// user put into huge groups still sees the people she chose (the list, and
// the watch, stay bounded).

import assert from "node:assert/strict";
import { describe } from "node:test";
import { GRACE_MS, STATUS_CHANGE_BURST, watchPerson, setupFile } from "./harness.mjs";

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

  env.test("a status change refused as too many leaves the select on the status the others see", async () => {
    const alice = (await env.device("alice")).page;
    await watchPerson(alice, "dave");
    const dave = (await env.device("dave")).page;
    const status = dave.getByLabel("Status");
    const chosen = ["away", "busy", "away", "busy", "away"].slice(0, STATUS_CHANGE_BURST);
    for (const s of chosen) {
      await status.selectOption(s);
      await alice.locator(`li.person[data-user="dave"][data-status="${s}"]`).waitFor();
    }
    const held = chosen.at(-1);
    const refused = held === "away" ? "busy" : "away";
    // Past the burst: the hub answers rate_limited and nothing changes.
    await status.selectOption(refused);
    await dave.waitForFunction((want) => document.getElementById("status-select").value === want, held);
    assert.equal(await alice.locator('li.person[data-user="dave"]').getAttribute("data-status"), held);
  });

  env.test("put into two 256-member groups, alice still sees the person she adds come online; the list stays bounded", async () => {
    const alice = (await env.device("alice")).page;
    const mallory = (await env.device("mallory")).page;
    // Within the hub's limits (256 members a group, 512 members added in a
    // burst), mallory puts alice in two full groups: 509 people to list.
    const groups = await mallory.evaluate(async () => {
      const chat = window.__switchboard.manager.socket("/chat");
      const ids = [];
      for (const g of ["a", "b"]) {
        const members = ["alice", ...Array.from({ length: 254 }, (_, i) => `crowd-${g}-${i}`)];
        const ack = await chat.timeout(10_000).emitWithAck("conversation:create", { name: `Crowd ${g}`, members });
        if (!ack.ok) throw new Error(JSON.stringify(ack));
        ids.push(ack.conversation.id);
      }
      return ids;
    });
    for (const id of groups) await alice.locator(`li.conversation[data-id="${id}"]`).waitFor();
    const listed = await alice.locator("li.person").count();
    assert.ok(listed <= 200, `${listed} people listed`);

    // Alice adds carol by hand; carol comes online: alice sees it.
    await watchPerson(alice, "carol");
    const carol = (await env.device("carol")).page;
    await alice.locator('li.person[data-user="carol"][data-status="online"]').waitFor();
    // And still after a reconnection (everyone listed is watched again).
    await alice.evaluate(() => window.__switchboard.manager.engine.close());
    await alice.locator('#app[data-connection="connected"]').waitFor({ state: "attached" });
    await carol.getByLabel("Status").selectOption("busy");
    await alice.locator('li.person[data-user="carol"][data-status="busy"]').waitFor();
    assert.ok((await alice.locator("li.person").count()) <= 200);
    await carol.close();
    await mallory.close();
  });
});
