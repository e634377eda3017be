// Video calls in the browser: alice calls bob, he accepts, both peer
// connections reach `connected` and each remote <video> plays frames, then a
// hang-up ends it on both sides; a declined call ends at once, and so does one
// hung up while the answer still waits for the camera; a call the
// caller hangs up while it rings, and one nobody answers, leave bob a
// missed-call notification.

import assert from "node:assert/strict";
import { before, describe } from "node:test";
import { RING_TIMEOUT_MS, setupFile, watchPerson } from "./harness.mjs";

const env = setupFile();

const ENDED = '#call:is([data-state="idle"], [data-state="ended"])';
/** A decline or hang-up ends the call on both sides within this, well under the ring timeout (so not by it). */
const ENDS_WITHIN_MS = 5000;
assert.ok(ENDS_WITHIN_MS < RING_TIMEOUT_MS);

/** The bell's unread count as shown (0 when the badge is hidden). */
async function unread(page) {
  const badge = page.locator("#bell-count");
  if (!(await badge.isVisible())) return 0;
  return Number((await badge.textContent())?.trim());
}

/**
 * The end of a call may be announced in a dialog over the page: close it, as
 * a person would, rather than wait for it to go by itself.
 */
async function dismissEnded(page) {
  const close = page.locator('#call[data-state="ended"]').getByRole("button", { name: "Close" });
  if (await close.isVisible()) await close.click();
}

/** Alice starts a video call to bob from her People list; resolves once bob's page rings. */
async function ring(alice, bob) {
  await dismissEnded(alice);
  await dismissEnded(bob);
  const row = await watchPerson(alice, "bob");
  await alice.locator('li.person[data-user="bob"][data-status="online"]').waitFor();
  await row.locator(".person-call").click();
  await alice.locator('#call[data-state="outgoing"]').waitFor({ state: "attached" });
  await bob.locator('#call[data-state="ringing"]').waitFor({ state: "attached" });
  await bob.locator("#incoming-call").waitFor();
}

/** Waits until every RTCPeerConnection of the page is `connected` and its remote video plays. */
async function waitMedia(page) {
  await page.waitForFunction(() => {
    const states = window.__switchboard.peerStates();
    return states.length > 0 && states.every((s) => s === "connected");
  });
  const remote = "#call-tiles .call-tile.remote video";
  await page.waitForFunction((sel) => document.querySelector(sel)?.videoWidth > 0, remote);
  const t = await page.locator(remote).evaluate((v) => v.currentTime);
  await page.waitForFunction(([sel, t0]) => document.querySelector(sel).currentTime > t0 + 0.5, [remote, t]);
}

/** Opens the bell's panel and waits for a missed call from alice among the unread. */
async function missedCallListed(page, count) {
  const panel = page.locator("#notifications-panel");
  await dismissEnded(page);
  if (!(await panel.isVisible())) await page.locator("#bell").click();
  await panel.waitFor();
  const missed = page.locator('li.notification[data-read="false"]', {
    has: page.locator(".notification-title", { hasText: "Missed call" }),
  });
  await missed.nth(count - 1).waitFor();
  assert.equal(await missed.count(), count);
  assert.match((await missed.first().locator(".notification-body").textContent()) ?? "", /alice/);
  await page.locator("#bell").click();
  await panel.waitFor({ state: "hidden" });
}

describe("calls", () => {
  let alice, bob;

  before(async () => {
    alice = (await env.device("alice")).page;
    bob = (await env.device("bob")).page;
  });

  env.test("a video call connects, both remote videos play, and hangs up", async () => {
    await ring(alice, bob);
    await bob.locator("#call-accept").click();
    for (const page of [alice, bob]) {
      await page.locator('#call[data-state="connected"]').waitFor({ state: "attached", timeout: 30_000 });
      await page.locator("#local-video").waitFor();
      await page.locator("#call-tiles .call-tile.remote video").waitFor();
    }
    await Promise.all([waitMedia(alice), waitMedia(bob)]);
    // The local preview is the page's own camera.
    await alice.waitForFunction(() => document.querySelector("#local-video")?.videoWidth > 0);

    await alice.locator("#call-hangup").click();
    for (const page of [alice, bob]) {
      await page.locator(ENDED).waitFor({ state: "attached" });
      await page.waitForFunction(() => window.__switchboard.peerStates().every((s) => s !== "connected"));
    }
    await bob.locator("#incoming-call").waitFor({ state: "hidden" });
  });

  env.test("bob declines: the call ends on both sides at once", async () => {
    await ring(alice, bob);
    await bob.locator("#call-decline").click();
    for (const page of [alice, bob]) {
      await page.locator(ENDED).waitFor({ state: "attached", timeout: ENDS_WITHIN_MS });
    }
    await bob.locator("#incoming-call").waitFor({ state: "hidden" });
  });

  env.test("bob accepts, then hangs up while his camera is still opening: the call ends, never connects", async () => {
    // Bob's getUserMedia waits until the test lets it go (a slow camera, or a
    // permission prompt left open).
    await bob.evaluate(() => {
      const media = navigator.mediaDevices;
      const real = media.getUserMedia.bind(media);
      window.__realGetUserMedia = real;
      window.__cameraAsked = false;
      media.getUserMedia = (constraints) =>
        new Promise((resolve, reject) => {
          window.__cameraAsked = true;
          window.__openCamera = () => real(constraints).then(resolve, reject);
        });
    });
    try {
      await ring(alice, bob);
      await bob.locator("#call-accept").click();
      await bob.waitForFunction(() => window.__cameraAsked === true);
      await bob.locator('#call[data-state="connecting"]').waitFor({ state: "attached" });
      await bob.locator("#call-hangup").click();
      await bob.locator(ENDED).waitFor({ state: "attached" });
      // The camera opens only now, after the hang-up.
      await bob.evaluate(() => window.__openCamera());
      // Alice hears of it (bob declined) and her call never connects.
      await alice.locator(ENDED).waitFor({ state: "attached", timeout: ENDS_WITHIN_MS });
      await bob.waitForFunction(() => document.querySelector("#local-video").srcObject === null);
      for (const page of [alice, bob]) {
        assert.match((await page.locator("#call").getAttribute("data-state")) ?? "", /^(idle|ended)$/);
        assert.deepEqual(await page.evaluate(() => window.__switchboard.peerStates()), [], "no peer connection");
      }
    } finally {
      await bob.evaluate(() => {
        navigator.mediaDevices.getUserMedia = window.__realGetUserMedia;
      });
    }
  });

  env.test("the caller hangs up while it rings: bob gets a missed-call notification", async (t) => {
    const before = await unread(bob);
    await ring(alice, bob);
    const hungUp = Date.now();
    await alice.locator("#call-hangup").click();
    // Bob's ringing stops because alice hung up, well before the ring timeout.
    for (const page of [alice, bob]) {
      await page.locator(ENDED).waitFor({ state: "attached", timeout: ENDS_WITHIN_MS });
    }
    t.diagnostic(`bob's ringing stopped ${Date.now() - hungUp} ms after alice hung up`);
    await bob.locator("#incoming-call").waitFor({ state: "hidden" });
    await bob.locator("#bell-count", { hasText: new RegExp(`^${before + 1}$`) }).waitFor();
    await missedCallListed(bob, 1);
  });

  env.test("nobody answers: the ringing stops after the ring timeout and bob gets a missed-call notification", async () => {
    const before = await unread(bob);
    const started = Date.now();
    await ring(alice, bob);
    for (const page of [alice, bob]) {
      await page.locator(ENDED).waitFor({ state: "attached", timeout: RING_TIMEOUT_MS + 15_000 });
    }
    assert.ok(Date.now() - started >= RING_TIMEOUT_MS - 100, "not before the ring timeout");
    await bob.locator("#incoming-call").waitFor({ state: "hidden" });
    await bob.locator("#bell-count", { hasText: new RegExp(`^${before + 1}$`) }).waitFor();
    await missedCallListed(bob, 2);
  });
});
