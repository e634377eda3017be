// Group calls: alice calls the group "Team" (bob and carol) from its
// header's Call button; both ring with who calls and for which group; once
// both answered (alice muted before carol joined: carol sees it), everyone
// has two remote tiles, every peer connection is connected and media flows
// on each; carol leaving takes her tile away on
// both other pages while their call goes on. A group larger than the hub's
// calls.max_participants cannot be called, and the page says why.

import assert from "node:assert/strict";
import { before, describe } from "node:test";
import { checkScreen, eventually, openConversation, setupFile } from "./harness.mjs";

const env = setupFile();

/** calls.max_participants in the browser tests' hub configuration (the default). */
const MAX_PARTICIPANTS = 8;
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

/**
 * Creates a group as `page`'s user through the page's own /chat socket (the
 * group form's look is not what this file tests) and opens it; resolves
 * with its id.
 */
async function createGroup(page, name, members) {
  const id = await page.evaluate(
    async ([name, members]) => {
      const chat = window.__switchboard.manager.nsps["/chat"];
      const ack = await chat.timeout(10_000).emitWithAck("conversation:create", { name, members });
      if (!ack.ok) throw new Error(JSON.stringify(ack));
      return ack.conversation.id;
    },
    [name, members],
  );
  await page.locator(`li.conversation[data-id="${id}"]`).waitFor();
  await openConversation(page, id);
  return id;
}

const probe = (page) => page.evaluate(() => window.__switchboard.callProbe());

/** Waits until the page has `count` peer connections, all connected, and media arriving on each. */
async function inCallWith(page, count) {
  await page.waitForFunction((n) => {
    const states = window.__switchboard.peerStates();
    return states.length === n && states.every((s) => s === "connected");
  }, count, { timeout: 30_000 });
  const before = await probe(page);
  await eventually(async () => {
    const now = await probe(page);
    assert.equal(now.length, count);
    for (const p of now) {
      const then = before.find((b) => b.user === p.user)?.bytesReceived ?? 0;
      assert.ok(p.bytesReceived > then + 10_000, `${p.user}: ${then} -> ${p.bytesReceived} bytes`);
    }
  }, { timeout: 20_000 });
}

/** The users whose remote tiles the page shows, sorted. */
async function tiles(page) {
  const users = await page.locator("#call-tiles .call-tile.remote").evaluateAll((ts) => ts.map((t) => t.dataset.user));
  return users.sort();
}

describe("group calls", () => {
  let alice, bob, carol;

  before(async () => {
    alice = (await env.device("alice")).page;
    bob = (await env.device("bob")).page;
    carol = (await env.device("carol")).page;
  });

  env.test("alice calls a group: three in a mesh, two tiles each, a leaver's tile goes", async () => {
    await createGroup(alice, "Team", ["bob", "carol"]);
    const call = alice.locator("#conversation").getByRole("button", { name: /^Call/ });
    // The Call button is on screen beside the title, at both sizes.
    for (const size of [PHONE, DESKTOP]) {
      await alice.setViewportSize(size);
      const box = await call.boundingBox();
      const title = await alice.locator("#conversation-title").boundingBox();
      assert.ok(
        box && box.x >= 0 && box.x + box.width <= size.width && Math.abs(box.y + box.height / 2 - (title.y + title.height / 2)) < 24,
        `Call at ${size.width}: ${JSON.stringify(box)}, the title at ${JSON.stringify(title)}`,
      );
      await checkScreen(alice, `group-conversation-${size.width}`);
    }
    await call.click();
    await alice.locator('#call[data-state="outgoing"]').waitFor({ state: "attached" });
    for (const [page, other] of [
      [bob, "carol"],
      [carol, "bob"],
    ]) {
      await page.locator('#call[data-state="ringing"]').waitFor({ state: "attached" });
      // Who calls, with whom, and for which group.
      await page.locator("#call-info", { hasText: /alice is calling Team/ }).waitFor();
      assert.match(await page.locator("#call-info").textContent(), new RegExp(`you and ${other}`));
    }
    // Ringing on a phone: the whole screen, Accept and Decline within reach at the bottom.
    await carol.setViewportSize(PHONE);
    for (const id of ["#call-accept", "#call-decline"]) {
      const box = await carol.locator(id).boundingBox();
      assert.ok(box && box.y > PHONE.height / 2 && box.y + box.height <= PHONE.height && box.x + box.width <= PHONE.width, `${id}: ${JSON.stringify(box)}`);
    }
    await checkScreen(carol, "call-ringing-phone");
    await carol.setViewportSize(DESKTOP);
    await bob.locator("#call-accept").click();
    await bob.locator('#call[data-state="connected"]').waitFor({ state: "attached", timeout: 30_000 });
    // Alice mutes before carol joins: carol, joining late, sees it too.
    await alice.locator("#call-mute").click();
    await bob.locator('#call-tiles .call-tile[data-user="alice"] .tile-muted').waitFor();
    await carol.locator("#call-accept").click();
    await carol.locator('#call-tiles .call-tile[data-user="alice"] .tile-muted').waitFor({ timeout: 30_000 });
    assert.equal(await carol.locator('#call-tiles .call-tile[data-user="bob"] .tile-muted').isVisible(), false);

    await Promise.all([inCallWith(alice, 2), inCallWith(bob, 2), inCallWith(carol, 2)]);
    assert.deepEqual(await tiles(alice), ["bob", "carol"]);
    assert.deepEqual(await tiles(bob), ["alice", "carol"]);
    assert.deepEqual(await tiles(carol), ["alice", "bob"]);
    // Each remote tile plays its video.
    for (const page of [alice, bob, carol]) {
      await page.waitForFunction(() => [...document.querySelectorAll("#call-tiles .call-tile.remote video")].every((v) => v.videoWidth > 0));
    }
    // On a phone, the three tiles and the controls fit the screen.
    await bob.setViewportSize(PHONE);
    for (const selector of ["#call-tiles .call-tile >> nth=0", "#call-tiles .call-tile >> nth=1", "#local-tile", "#call-hangup"]) {
      const box = await bob.locator(selector).boundingBox();
      assert.ok(box && box.y >= 0 && box.y + box.height <= PHONE.height && box.x + box.width <= PHONE.width, `${selector}: ${JSON.stringify(box)}`);
    }
    await checkScreen(bob, "call-group-phone");
    await bob.setViewportSize(DESKTOP);
    await checkScreen(bob, "call-group-desktop");

    await carol.locator("#call-hangup").click();
    for (const page of [alice, bob]) {
      await page.locator('#call-tiles .call-tile[data-user="carol"]').waitFor({ state: "detached" });
      await page.locator("#call-info", { hasText: "carol left the call." }).waitFor();
    }
    await carol.locator('#call:is([data-state="idle"], [data-state="ended"])').waitFor({ state: "attached" });
    // Alice and bob go on.
    await Promise.all([inCallWith(alice, 1), inCallWith(bob, 1)]);
    assert.equal(await alice.locator("#call").getAttribute("data-state"), "connected");

    await alice.locator("#call-hangup").click();
    await bob.locator('#call:is([data-state="idle"], [data-state="ended"])').waitFor({ state: "attached" });
  });

  env.test("a group larger than a call takes: the Call button is disabled, and the page says why", async () => {
    const others = Array.from({ length: MAX_PARTICIPANTS }, (_, i) => `member${i + 1}`);
    await alice.locator('#call:is([data-state="idle"], [data-state="ended"])').waitFor({ state: "attached" });
    const close = alice.locator("#call-close");
    if (await close.isVisible()) await close.click();
    await createGroup(alice, "Everyone", others);
    const call = alice.locator("#conversation").getByRole("button", { name: /^Call/ });
    await call.waitFor();
    assert.equal(await call.isDisabled(), true);
    await alice.locator("#conversation-call-note", { hasText: `up to ${MAX_PARTICIPANTS} people; this group has ${MAX_PARTICIPANTS + 1}` }).waitFor();

    // A group that fits can be called.
    await createGroup(alice, "Pair", ["bob"]);
    await alice.locator("#conversation-call-note").waitFor({ state: "hidden" });
    assert.equal(await call.isDisabled(), false);
  });
});
