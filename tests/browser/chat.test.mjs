// Chat in the browser: two users (alice, bob) in two contexts and a second
// device of alice; a message reaches the other side and the sender's second
// device, read marks, the typing indicator, a page cut off while the other
// user writes, the hub restarted mid-conversation, and history loaded on
// scroll by a device that opens a long conversation. The tests run in order
// on the same pages, as one conversation goes on.

import assert from "node:assert/strict";
import { before, describe } from "node:test";
import {
  WAIT_MS,
  assertCleanLog,
  eventually,
  messages,
  openConversation,
  openDirect,
  send,
  setupFile,
  showList,
  waitConnection,
  watchPerson,
} from "./harness.mjs";

const env = setupFile();

/** The (seq, text) pairs of a page's messages, for comparing two pages. */
const shown = async (page) => (await messages(page)).map((m) => [m.seq, m.text]);

/** Waits until `page` shows a message with `text`, acked. */
async function waitMessage(page, text, timeout = WAIT_MS) {
  await page.waitForFunction(
    (want) =>
      [...document.querySelectorAll("#messages li.message")].some(
        (li) => li.querySelector(".message-text")?.textContent === want && li.hasAttribute("data-seq"),
      ),
    text,
    { timeout },
  );
}

/** Creates a group through the "New group" dialog, as a person would, and opens it; resolves with its id. */
async function createGroup(page, name, members) {
  await showList(page);
  await page.getByRole("button", { name: "New group" }).click();
  await page.getByLabel("Group name").fill(name);
  await page.getByLabel("Members (comma-separated ids)").fill(members);
  // Enter in the last field creates it.
  await page.getByLabel("Members (comma-separated ids)").press("Enter");
  await page.locator("#group-dialog").waitFor({ state: "hidden" });
  const item = page.locator("li.conversation", { has: page.locator(".conversation-name", { hasText: name }) });
  await item.waitFor();
  const id = await item.getAttribute("data-id");
  assert.ok(id, "the group's list item has its data-id");
  if ((await page.locator(`#conversation[data-id="${id}"]`).count()) === 0) await openConversation(page, id);
  return id;
}

describe("chat", () => {
  let alice, alice2, bob;
  let direct, group;

  before(async () => {
    alice = (await env.device("alice")).page;
    alice2 = (await env.device("alice")).page;
    bob = await env.device("bob");
  });

  env.test("a message appears on the other side and on the sender's second device", async () => {
    direct = await openDirect(alice, "bob");
    await send(alice, "Hello bob");

    // Bob has not opened it: the conversation is listed with one unread.
    const item = bob.page.locator(`li.conversation[data-id="${direct}"]`);
    await item.locator(".unread-badge", { hasText: /^\s*1\s*$/ }).waitFor();

    await openConversation(bob.page, direct);
    await waitMessage(bob.page, "Hello bob");
    await item.locator(".unread-badge").waitFor({ state: "hidden" });

    await openConversation(alice2, direct);
    await waitMessage(alice2, "Hello bob");

    const mine = (await messages(alice)).filter((m) => m.text === "Hello bob");
    assert.equal(mine.length, 1, "alice's page shows her message once");
    for (const [who, page] of [["bob", bob.page], ["alice's 2nd device", alice2]]) {
      const theirs = (await messages(page)).filter((m) => m.text === "Hello bob");
      assert.equal(theirs.length, 1, `${who} shows the message once`);
      assert.equal(theirs[0].seq, mine[0].seq, `${who} shows it with the seq alice's page has`);
      assert.equal(theirs[0].sender, "alice");
      assert.equal(theirs[0].clientId, mine[0].clientId);
    }
    // With the conversation open on every page, the next one arrives live.
    await send(alice, "Are you there?");
    await waitMessage(bob.page, "Are you there?");
    await waitMessage(alice2, "Are you there?");
    for (const page of [bob.page, alice2]) assert.deepEqual(await shown(page), await shown(alice));

    const senderName = await bob.page
      .locator("#messages li.message", { hasText: "Hello bob" })
      .locator(".message-sender")
      .textContent();
    assert.match(senderName ?? "", /alice/);
  });

  env.test("read marks: alice's message shows 'Seen by bob' once bob opens the conversation", async () => {
    // A new group, so that bob has not read anything of it yet.
    group = await createGroup(alice, "Launch", "bob");
    await openConversation(alice2, group);

    await send(alice, "Ready for launch?");
    await waitMessage(alice2, "Ready for launch?");
    // Bob's list has it, unread: he has not seen it, and alice's pages say so.
    await bob.page
      .locator(`li.conversation[data-id="${group}"] .unread-badge`, { hasText: /^\s*1\s*$/ })
      .waitFor();
    for (const page of [alice, alice2]) {
      const li = page.locator("#messages li.message", { hasText: "Ready for launch?" });
      assert.notEqual(await li.getAttribute("data-read"), "true", "not seen before bob opens it");
      const receipt = li.locator(".message-receipt");
      if (await receipt.count()) assert.doesNotMatch((await receipt.textContent()) ?? "", /Seen by/);
    }

    await openConversation(bob.page, group);
    await waitMessage(bob.page, "Ready for launch?");
    for (const page of [alice, alice2]) {
      const li = page.locator('#messages li.message[data-read="true"]', { hasText: "Ready for launch?" });
      await li.locator(".message-receipt", { hasText: /Seen by bob/ }).waitFor();
    }
  });

  env.test("typing shows 'bob is typing…' and then clears", async () => {
    const composer = bob.page.locator("#composer-text");
    await composer.click();
    await composer.pressSequentially("Almost ready", { delay: 30 });
    for (const page of [alice, alice2]) {
      await page.locator("#typing", { hasText: "bob is typing…" }).waitFor();
    }
    await composer.press("Enter");
    await waitMessage(alice, "Almost ready");
    for (const page of [alice, alice2]) {
      await page.waitForFunction(() => (document.querySelector("#typing")?.textContent ?? "").trim() === "");
    }
    // Shift+Enter is a new line, not a send.
    await composer.pressSequentially("line one");
    await composer.press("Shift+Enter");
    await composer.pressSequentially("line two");
    assert.equal(await composer.inputValue(), "line one\nline two");
    await composer.press("Enter");
    await waitMessage(alice, "line one\nline two");

    // Typing again right after a send (the hub relays one start a second per
    // user and conversation) still shows; erasing the text clears it.
    await composer.pressSequentially("And one more thing", { delay: 80 });
    await alice.locator("#typing", { hasText: "bob is typing…" }).waitFor();
    await composer.fill("");
    await alice.waitForFunction(() => (document.querySelector("#typing")?.textContent ?? "").trim() === "");
  });

  env.test("a page that loses its connection shows 'Reconnecting…', comes back by itself and shows what it missed, each once, in order", async () => {
    await bob.page.evaluate(() => {
      window.__notReloaded = true;
    });
    const before = await shown(bob.page);
    const sockets = env.sockets.opened(bob.page);
    await bob.context.setOffline(true);
    await bob.page.evaluate(() => window.__switchboard.manager.engine.close());
    await waitConnection(bob.page, "reconnecting");
    await bob.page.locator("#connection-status", { hasText: "Reconnecting…" }).waitFor();

    const texts = [1, 2, 3, 4, 5].map((i) => `While you were away ${i}`);
    for (const text of texts) await send(alice, text);
    // One in the other conversation, not open on bob's page: its unread
    // badge must say so once he is back.
    await openConversation(alice2, direct);
    await send(alice2, "Ping while you are away");
    await openConversation(alice2, group);
    // And a notification he can only learn of once back (the unread count).
    const published = await env.hub.api("POST", "/api/v1/notifications", {
      users: ["bob"],
      type: "note",
      title: "Published while bob was away",
    });
    assert.equal(published.status, 200);
    // Bob's page keeps trying while it is offline; one try at least fails
    // before the network comes back.
    const failed = env.sockets.failed(bob.page);
    await eventually(() => assert.ok(env.sockets.failed(bob.page) > failed, "a reconnection attempt failed while offline"));

    await bob.context.setOffline(false);
    await waitConnection(bob.page, "connected", 30_000);
    await bob.page.locator("#connection-status").waitFor({ state: "hidden" });
    for (const text of texts) await waitMessage(bob.page, text);
    await bob.page.locator("#bell-count", { hasText: /^\s*1\s*$/ }).waitFor();
    await bob.page
      .locator(`li.conversation[data-id="${direct}"] .unread-badge`, { hasText: /^\s*1\s*$/ })
      .waitFor();

    assert.equal(await bob.page.evaluate(() => window.__notReloaded), true, "the page came back without a reload");
    assert.ok(env.sockets.opened(bob.page) > sockets, "bob's page opened a new WebSocket by itself");
    const after = await messages(bob.page);
    assertCleanLog(after, "bob");
    for (const text of texts) {
      assert.equal(after.filter((m) => m.text === text).length, 1, `"${text}" shown once`);
    }
    const order = after.filter((m) => texts.includes(m.text)).map((m) => m.text);
    assert.deepEqual(order, texts, "in the order alice sent them");
    assert.deepEqual(
      after.slice(0, before.length).map((m) => [m.seq, m.text]),
      before,
      "what bob had is still there, unchanged",
    );
    assert.deepEqual(await shown(bob.page), await shown(alice), "bob's page shows what alice's shows");
  });

  env.test("the hub restarted mid-conversation: every page reconnects by itself, nothing lost or doubled", async () => {
    for (const page of [alice, alice2, bob.page]) {
      await page.evaluate(() => {
        window.__notReloaded = true;
      });
    }
    await send(bob.page, "Before the restart");
    await waitMessage(alice, "Before the restart");

    const sockets = new Map([alice, alice2, bob.page].map((page) => [page, env.sockets.opened(page)]));
    await env.hub.stop();
    for (const page of [alice, alice2, bob.page]) {
      await waitConnection(page, "reconnecting");
      await page.locator("#connection-status", { hasText: "Reconnecting…" }).waitFor();
    }
    // Alice writes while the hub is down: the page lets her, and the message
    // must then go out once the hub is back, once.
    const composer = alice.locator("#composer-text");
    assert.equal(await composer.isEditable(), true, "the composer stays editable while the hub is down");
    const offline = "Written while the hub was down";
    await composer.fill(offline);
    await composer.press("Enter");
    await alice.locator("#messages li.message", { hasText: offline }).waitFor();

    await env.hub.start();
    for (const page of [alice, alice2, bob.page]) {
      await waitConnection(page, "connected", 30_000);
      await page.locator("#connection-status").waitFor({ state: "hidden" });
    }
    // The restarted hub knows nothing of who watches whom: the pages watch
    // again, so alice sees bob as he is and as he changes.
    await watchPerson(alice, "bob");
    await alice.locator('li.person[data-user="bob"][data-status="online"]').waitFor();
    await bob.page.getByLabel("Status").selectOption("away");
    await alice.locator('li.person[data-user="bob"][data-status="away"]').waitFor();
    await bob.page.getByLabel("Status").selectOption("online");
    await alice.locator('li.person[data-user="bob"][data-status="online"]').waitFor();

    await send(alice, "After the restart");
    const expected = ["Before the restart", offline, "After the restart"];
    for (const page of [alice, alice2, bob.page]) {
      for (const text of expected) await waitMessage(page, text);
    }

    const reference = await shown(alice);
    for (const [who, page] of [["alice", alice], ["alice's 2nd device", alice2], ["bob", bob.page]]) {
      assert.equal(await page.evaluate(() => window.__notReloaded), true, `${who}'s page came back without a reload`);
      assert.ok(env.sockets.opened(page) > sockets.get(page), `${who}'s page opened a new WebSocket by itself`);
      const list = await messages(page);
      assertCleanLog(list, who);
      for (const text of expected) {
        assert.equal(list.filter((m) => m.text === text).length, 1, `${who}: "${text}" shown once`);
      }
      assert.deepEqual(
        list.filter((m) => expected.includes(m.text)).map((m) => m.text),
        expected,
        `${who}: in the order they were written`,
      );
      assert.deepEqual(list.map((m) => [m.seq, m.text]), reference, `${who} shows what alice's page shows`);
    }
  });
  env.test("history loads on scroll: every older message once, in order", async () => {
    // More than one history page can hold (the hub answers at most 100).
    const total = 101;
    const history = await createGroup(alice, "History", "bob");
    // Written through alice's composer form, in the page (a hundred
    // Playwright round trips would be most of this file's time).
    await alice.evaluate((total) => {
      const text = document.querySelector("#composer-text");
      const form = document.querySelector("#composer");
      for (let i = 1; i <= total; i++) {
        text.value = `History ${i}`;
        text.dispatchEvent(new Event("input", { bubbles: true }));
        form.requestSubmit();
      }
    }, total);
    await waitMessage(alice, `History ${total}`);

    // A new device of alice's (she wrote them: nothing unread, so it opens
    // at the newest) has none of them in hand.
    const later = (await env.device("alice")).page;
    await later.locator(`li.conversation[data-id="${history}"]`).waitFor();
    await openConversation(later, history);
    await waitMessage(later, `History ${total}`);
    const first = await messages(later);
    assert.ok(!first.some((m) => m.text === "History 1"), "the oldest is not loaded before scrolling up");

    // Scroll to the top, again each time older messages come in, until the
    // first one shows.
    await eventually(
      async () => {
        await later.locator("#messages").evaluate((el) => {
          el.scrollTop = 0;
        });
        const shown = await messages(later);
        assert.ok(shown.some((m) => m.text === "History 1"), `oldest shown: ${shown[0]?.text}`);
      },
      { timeout: 30_000, interval: 300 },
    );
    const all = await messages(later);
    assertCleanLog(all, "alice's new device");
    assert.deepEqual(
      all.map((m) => m.text),
      Array.from({ length: total }, (_, i) => `History ${i + 1}`),
    );
    assert.deepEqual(all.map((m) => m.seq), Array.from({ length: total }, (_, i) => i + 1));
  });

  env.test("an edit of an old message not loaded stays out of the loaded page; the next live message arrives alone", async () => {
    const history = await alice.locator('li.conversation', { has: alice.locator(".conversation-name", { hasText: "History" }) }).getAttribute("data-id");
    const total = 101;
    const later = (await env.device("alice")).page;
    await later.locator(`li.conversation[data-id="${history}"]`).waitFor();
    await openConversation(later, history);
    await waitMessage(later, `History ${total}`);
    const loaded = await messages(later);
    assert.ok(loaded[0].seq > 1, "the first page is the newest, not the whole history");

    // Alice edits the oldest message (not loaded on her newest device), then the newest (loaded).
    await alice.evaluate(async ([conversation, total]) => {
      const chat = window.__switchboard.manager.socket("/chat");
      for (const [seq, text] of [[1, "History 1 (edited)"], [total, `History ${total} (edited)`]]) {
        const ack = await chat.timeout(10_000).emitWithAck("message:edit", { conversation, seq, text });
        if (!ack.ok) throw new Error(JSON.stringify(ack));
      }
    }, [Number(history), total]);
    // The edits arrive in order: once the second shows, the first was handled.
    await waitMessage(later, `History ${total} (edited)`);
    const afterEdit = await messages(later);
    assert.ok(!afterEdit.some((m) => m.seq === 1), "seq 1 is not shown beside the newest page");
    assert.deepEqual(afterEdit.map((m) => m.seq), loaded.map((m) => m.seq));

    // A live message: it comes alone, the page does not fetch the whole history.
    await send(alice, "After the edits");
    await waitMessage(later, "After the edits");
    const afterLive = await messages(later);
    assertCleanLog(afterLive, "alice's newest device");
    assert.deepEqual(afterLive.map((m) => m.seq), [...loaded.map((m) => m.seq), total + 1]);
  });

  env.test("a text over 4000 characters is not sent: the composer keeps it and says why", async () => {
    const long = "x".repeat(4001);
    const composer = alice.locator("#composer-text");
    await composer.fill(long);
    await composer.press("Enter");
    await alice.locator("#chat-error", { hasText: /4000/ }).waitFor();
    assert.equal(await composer.inputValue(), long, "the text is still in the composer");
    assert.equal(await alice.locator('#messages li.message[data-pending="true"]').count(), 0, "nothing pending");
    await composer.fill("");
  });
});
