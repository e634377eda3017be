// A call's controls, in one connected call between alice and bob: mute and
// the camera turned off show on the other side's tile (told through the hub)
// while the sender's track is disabled or removed; a shared screen replaces
// the outgoing video track and the camera comes back when sharing stops
// (also when the browser ends it); the timer counts; another microphone
// replaces the sent track; a network change restarts ICE (new credentials)
// and media keeps flowing; and the call screen passes axe at a desktop's
// and a phone's size, full screen on the phone.
//
// Headless Chromium has no screen to pick: getDisplayMedia is replaced in
// alice's page by a canvas.captureStream() track (what the page does with
// the track is what is tested, not the browser's picker).

import assert from "node:assert/strict";
import { copyFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { before, describe } from "node:test";
import { REPO_ROOT, SCREENSHOT_DIR, checkScreen, eventually, setupFile, watchPerson } from "./harness.mjs";

const env = setupFile();

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

/** What each of the page's peer connections sends and receives (calls.ts's probe()). */
const probe = (page) => page.evaluate(() => window.__switchboard.callProbe());

/** The tile that `viewer` shows for `user`. */
const tile = (viewer, user) => viewer.locator(`#call-tiles .call-tile[data-user="${user}"]`);

/** Waits until every peer connection of the page is connected. */
async function allConnected(page, count = 1) {
  await page.waitForFunction((n) => {
    const states = window.__switchboard.peerStates();
    return states.length === n && states.every((s) => s === "connected");
  }, count);
}

/** Waits until each of the page's peers has received more bytes than in `before` (a probe()). */
async function mediaFlows(page, before) {
  await eventually(async () => {
    const now = await probe(page);
    for (const [i, p] of now.entries()) {
      assert.ok(p.bytesReceived > (before?.[i]?.bytesReceived ?? 0) + 10_000, `${p.user}: ${p.bytesReceived} bytes received`);
    }
  });
}

/** The sender of `kind` of the page's only peer. */
async function sender(page, kind) {
  const [peer] = await probe(page);
  return peer.senders.find((s) => s.kind === kind);
}

describe("call controls", () => {
  let alice, bob;

  before(async () => {
    alice = (await env.device("alice")).page;
    bob = (await env.device("bob")).page;
    const row = await watchPerson(alice, "bob");
    await alice.locator('li.person[data-user="bob"][data-status="online"]').waitFor();
    await row.locator(".person-call").click();
    await bob.locator('#call[data-state="ringing"]').waitFor({ state: "attached" });
    await bob.locator("#call-accept").click();
    await Promise.all([allConnected(alice), allConnected(bob)]);
    await Promise.all([mediaFlows(alice), mediaFlows(bob)]);
  });

  env.test("mute shows on the other side, and the microphone's track is disabled", async () => {
    await tile(bob, "alice").locator(".tile-muted").waitFor({ state: "hidden" });
    await alice.getByRole("button", { name: "Mute", exact: true }).click();
    await tile(bob, "alice").locator(".tile-muted").waitFor();
    assert.equal(await tile(bob, "alice").getAttribute("data-audio"), "false");
    assert.equal((await sender(alice, "audio")).enabled, false, "the sender's track is disabled");
    await alice.locator('#local-tile .tile-muted').waitFor();

    await alice.getByRole("button", { name: "Unmute" }).click();
    await tile(bob, "alice").locator(".tile-muted").waitFor({ state: "hidden" });
    assert.equal((await sender(alice, "audio")).enabled, true);
  });

  env.test("camera off shows initials on the other side, and nothing is sent; on again, video comes back", async () => {
    const camera = await sender(alice, "video");
    assert.equal(camera.readyState, "live");
    await alice.getByRole("button", { name: "Camera off" }).click();
    await tile(bob, "alice").and(bob.locator('[data-video="false"]')).waitFor();
    await tile(bob, "alice").locator(".tile-avatar", { hasText: "AL" }).waitFor();
    assert.equal((await sender(alice, "video")).id, null, "no video track is sent");

    await alice.getByRole("button", { name: "Camera on" }).click();
    await tile(bob, "alice").and(bob.locator('[data-video="true"]')).waitFor();
    await tile(bob, "alice").locator(".tile-avatar").waitFor({ state: "hidden" });
    const again = await sender(alice, "video");
    assert.equal(again.readyState, "live");
    assert.notEqual(again.id, null);
    // Bob's tile plays alice's video.
    await bob.waitForFunction(() => document.querySelector('#call-tiles [data-user="alice"] video')?.videoWidth > 0);
  });

  env.test("a shared screen replaces the outgoing video, and the camera comes back when the browser stops it", async () => {
    await alice.evaluate(() => {
      navigator.mediaDevices.getDisplayMedia = async () => {
        const canvas = document.createElement("canvas");
        // A wide strip: on the other side its shape tells it from the camera (4:3).
        canvas.width = 800;
        canvas.height = 200;
        const ctx = canvas.getContext("2d");
        let frame = 0;
        window.__screenTimer = setInterval(() => {
          ctx.fillStyle = frame++ % 2 ? "#0b57d0" : "#146c2e";
          ctx.fillRect(0, 0, 800, 200);
        }, 50);
        const stream = canvas.captureStream(10);
        window.__screenTrack = stream.getVideoTracks()[0];
        return stream;
      };
    });
    const camera = await sender(alice, "video");
    await alice.getByRole("button", { name: "Share screen" }).click();
    await tile(bob, "alice").locator(".tile-sharing").waitFor();
    const screenId = await alice.evaluate(() => window.__screenTrack.id);
    assert.equal((await sender(alice, "video")).id, screenId, "the screen's track is sent");
    assert.notEqual(screenId, camera.id);
    // Bob sees the wide screen, not the camera (the size may be scaled down, not the shape).
    // (Functions, not strings: the page's CSP refuses eval.)
    const shapeBetween = ([low, high]) => {
      const v = document.querySelector('#call-tiles [data-user="alice"] video');
      const ratio = v && v.videoHeight > 0 ? v.videoWidth / v.videoHeight : 0;
      return ratio > low && ratio < high;
    };
    await bob.waitForFunction(shapeBetween, [3, 100]);

    // The browser's own "Stop sharing" ends the track (an `ended` event, no stop() of ours).
    await alice.evaluate(() => {
      clearInterval(window.__screenTimer);
      window.__screenTrack.dispatchEvent(new Event("ended"));
    });
    await tile(bob, "alice").locator(".tile-sharing").waitFor({ state: "hidden" });
    await alice.getByRole("button", { name: "Share screen" }).waitFor();
    const back = await sender(alice, "video");
    assert.equal(back.id, camera.id, "the camera's track is sent again");
    assert.equal(back.readyState, "live");
    await bob.waitForFunction(shapeBetween, [0, 2]);
  });

  env.test("the call timer counts from the connection", async () => {
    const timer = alice.locator("#call-timer");
    await timer.waitFor();
    const first = await timer.textContent();
    assert.match(first, /^\d\d:\d\d$/);
    const seconds = (t) => Number(t.slice(0, 2)) * 60 + Number(t.slice(3));
    await alice.waitForFunction((s0) => {
      const t = document.querySelector("#call-timer").textContent;
      return Number(t.slice(0, 2)) * 60 + Number(t.slice(3)) > s0;
    }, seconds(first));
  });

  env.test("choosing another microphone and camera replaces the sent tracks", async () => {
    await alice.getByRole("button", { name: "Devices" }).click();
    const mic = alice.getByLabel("Microphone");
    await mic.waitFor();
    await alice.waitForFunction(() => document.querySelectorAll("#call-mic option").length > 0);
    const options = await mic.locator("option").evaluateAll((os) => os.map((o) => ({ value: o.value, label: o.textContent, selected: o.selected })));
    assert.ok(options.length >= 2, `Chromium's fake devices offer several microphones: ${JSON.stringify(options)}`);
    const before = await sender(alice, "audio");
    const other = options.find((o) => !o.selected && o.label !== before.label);
    assert.ok(other, `a microphone other than ${before.label}`);
    await mic.selectOption(other.value);
    await eventually(async () => {
      const now = await sender(alice, "audio");
      assert.notEqual(now.id, before.id);
      assert.equal(now.label, other.label);
      assert.equal(now.readyState, "live");
    });

    const cams = await alice.locator("#call-cam option").evaluateAll((os) => os.map((o) => ({ value: o.value, label: o.textContent, selected: o.selected })));
    const cameraBefore = await sender(alice, "video");
    const otherCam = cams.find((o) => !o.selected && o.label !== cameraBefore.label);
    if (otherCam) {
      await alice.getByLabel("Camera", { exact: true }).selectOption(otherCam.value);
      await eventually(async () => assert.equal((await sender(alice, "video")).label, otherCam.label));
    }
    // The call goes on: bob still receives.
    await mediaFlows(bob, await probe(bob));
    await alice.getByRole("button", { name: "Devices" }).click();
  });

  env.test("a network change restarts ICE: new credentials, connected again, media flows", async () => {
    const [a0] = await probe(alice);
    const [b0] = await probe(bob);
    assert.ok(a0.localUfrag && b0.remoteUfrag === a0.localUfrag);
    await alice.evaluate(() => window.dispatchEvent(new Event("online")));
    await eventually(async () => {
      const [a] = await probe(alice);
      const [b] = await probe(bob);
      assert.notEqual(a.localUfrag, a0.localUfrag, "alice's ICE credentials changed");
      assert.equal(b.remoteUfrag, a.localUfrag, "bob has alice's new credentials");
      assert.notEqual(b.localUfrag, b0.localUfrag, "bob answered with new credentials");
      assert.equal(a.remoteUfrag, b.localUfrag);
    });
    await Promise.all([allConnected(alice), allConnected(bob)]);
    await Promise.all([mediaFlows(alice, await probe(alice)), mediaFlows(bob, await probe(bob))]);
    assert.equal(await alice.locator("#call").getAttribute("data-state"), "connected");
  });

  env.test("the call screen: axe-clean at both sizes, full screen with its controls on a phone", async () => {
    await alice.setViewportSize(DESKTOP);
    await checkScreen(alice, "call-desktop");
    await alice.setViewportSize(PHONE);
    // Layout settles on the next frame.
    await alice.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
    const card = await alice.locator(".call-card").boundingBox();
    assert.deepEqual(
      [card.x, card.y, Math.round(card.width), Math.round(card.height)],
      [0, 0, PHONE.width, PHONE.height],
      "the call covers the phone's screen",
    );
    const hangup = await alice.locator("#call-hangup").boundingBox();
    assert.ok(hangup.y + hangup.height <= PHONE.height && hangup.y > PHONE.height / 2, `Hang up at the bottom: ${JSON.stringify(hangup)}`);
    for (const id of ["#call-mute", "#call-camera", "#call-screen"]) {
      const box = await alice.locator(id).boundingBox();
      assert.ok(box.x >= 0 && box.x + box.width <= PHONE.width && box.y + box.height <= PHONE.height, `${id} on screen`);
    }
    await checkScreen(alice, "call-phone");
    if (process.env.UPDATE_SCREENSHOTS === "1") {
      const docs = path.join(REPO_ROOT, "docs/screenshots");
      mkdirSync(docs, { recursive: true });
      for (const name of ["call-desktop", "call-phone"]) copyFileSync(path.join(SCREENSHOT_DIR, `${name}.png`), path.join(docs, `${name}.png`));
    }
    await alice.setViewportSize(DESKTOP);
  });

  env.test("hanging up ends the call on both sides", async () => {
    await alice.locator("#call-hangup").click();
    for (const page of [alice, bob]) {
      await page.locator('#call:is([data-state="idle"], [data-state="ended"])').waitFor({ state: "attached" });
      await page.waitForFunction(() => window.__switchboard.peerStates().length === 0);
    }
    await bob.locator("#call-tiles .call-tile").waitFor({ state: "detached" });
  });
});
