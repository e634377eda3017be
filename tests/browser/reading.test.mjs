// The open conversation reads like a chat, at a desktop's 1280x800 and a
// phone's 390x844: messages grouped by sender (name and avatar once per
// group), day separators, a "New messages" divider at the first unread,
// mentions (the reader's own more strongly), right-to-left text laid out
// right to left, read marks drawn once per member and moving as they read,
// avatars with the same initials and colour on every page (and readable),
// search in the loaded messages, and the place in a conversation kept
// across a reload.

import assert from "node:assert/strict";
import { before, describe } from "node:test";
import { checkScreen, eventually, messages, openConversation, send, setupFile } from "./harness.mjs";

// The place test writes 300 messages at once: over the default 20 a second.
process.env.SWITCHBOARD_CHAT_MESSAGES_PER_SEC = "0";
process.env.SWITCHBOARD_LIMITS_EVENTS_PER_SEC = "0";

const env = setupFile();

const SIZES = [
  ["desktop", { width: 1280, height: 800 }],
  ["phone", { width: 390, height: 844 }],
];

/** A device of `name` at `viewport`. */
async function device(name, viewport) {
  const { context, page } = await env.device(name);
  await page.setViewportSize(viewport);
  return { context, page };
}

/** Creates a group through `page`'s socket (not the form: another helper owns it); resolves with its id once listed. */
async function group(page, name, members) {
  const id = await page.evaluate(
    async ([name, members]) => {
      const chat = window.__switchboard.manager.socket("/chat");
      const ack = await chat.timeout(10_000).emitWithAck("conversation:create", { name, members });
      if (!ack.ok) throw new Error(JSON.stringify(ack));
      return ack.conversation.id;
    },
    [name, members],
  );
  // Attached, not visible: a phone shows the list only on its list screen.
  await page.locator(`li.conversation[data-id="${id}"]`).waitFor({ state: "attached" });
  return String(id);
}

/** Sends `texts` from `page`'s socket into `conversation`, in order, each acked. */
async function post(page, conversation, texts) {
  await page.evaluate(
    async ([conversation, texts]) => {
      const chat = window.__switchboard.manager.socket("/chat");
      for (const text of texts) {
        const ack = await chat.timeout(10_000).emitWithAck("message", { conversation, client_id: crypto.randomUUID(), text });
        if (!ack.ok) throw new Error(JSON.stringify(ack));
      }
    },
    [Number(conversation), texts],
  );
}

const li = (page, text) => page.locator("#messages li.message", { hasText: text });

/** WCAG contrast of two `rgb(…)` colours. */
function contrast(a, b) {
  const lum = (rgb) => {
    const [r, g, bl] = rgb.match(/\d+(\.\d+)?/g).slice(0, 3).map((v) => Number(v) / 255);
    const lin = (v) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(bl);
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

for (const [size, viewport] of SIZES) {
  describe(`reading a conversation (${size} ${viewport.width}x${viewport.height})`, () => {
    // Users of their own per size: the two runs share the hub.
    const a = `ann-${size}`;
    const b = `ben-${size}`;
    const c = `cleo-${size}`;
    let ann, ben, cleo, conv;

    before(async () => {
      ann = (await device(a, viewport)).page;
      ben = (await device(b, viewport)).page;
      cleo = (await device(c, viewport)).page;
      conv = await group(ann, `Reading ${size}`, [b, c]);
    });

    env.test("grouped by sender, a day separator, avatars the same on every page and readable", async () => {
      await post(ann, conv, ["First from ann", "Second from ann", "Third from ann"]);
      await post(ben, conv, ["Ben answers"]);
      await post(ann, conv, ["Ann again"]);
      for (const page of [ann, ben, cleo]) {
        await openConversation(page, conv);
        await li(page, "Ann again").waitFor();
      }
      const shape = await cleo.$$eval("#messages li.message", (items) => {
        const shown = (node) => {
          if (!node || !node.checkVisibility({ visibilityProperty: true })) return false;
          const rect = node.getBoundingClientRect();
          return rect.width > 1 && rect.height > 1;
        };
        return items.map((li) => ({
          text: li.querySelector(".message-text").textContent,
          continued: li.classList.contains("continued"),
          senderShown: shown(li.querySelector(".message-sender")),
          avatarShown: shown(li.querySelector(".message-avatar")),
          day: li.querySelector(".day-separator")?.textContent ?? null,
        }));
      });
      assert.deepEqual(
        shape.map((m) => [m.text, m.continued, m.senderShown, m.avatarShown]),
        [
          ["First from ann", false, true, true],
          ["Second from ann", true, false, false],
          ["Third from ann", true, false, false],
          ["Ben answers", false, true, true],
          ["Ann again", false, true, true],
        ],
        "name and avatar once per group of one sender",
      );
      assert.deepEqual(shape.map((m) => m.day), ["Today", null, null, null, null], "one day separator, before the first");

      // Ann's avatar: her initial, the same colour on ben's and cleo's pages, white on it readable.
      const look = (page) =>
        li(page, "First from ann").locator(".message-avatar").evaluate((node) => ({
          text: node.textContent,
          bg: getComputedStyle(node).backgroundColor,
          fg: getComputedStyle(node).color,
        }));
      const [onBen, onCleo] = [await look(ben), await look(cleo)];
      assert.equal(onBen.text, a.split("-").map((part) => part[0].toUpperCase()).join(""), "initials of the user id");
      assert.deepEqual(onBen, onCleo, "the same avatar on two pages");
      assert.ok(contrast(onBen.bg, onBen.fg) >= 4.5, `initials contrast ${contrast(onBen.bg, onBen.fg).toFixed(2)}`);
      const benColour = await li(cleo, "Ben answers").locator(".message-avatar").evaluate((n) => getComputedStyle(n).backgroundColor);
      assert.notEqual(benColour, onBen.bg, "another user, another colour");
      await checkScreen(cleo, `reading-${size}`);
    });

    env.test("a day long past is labelled by its date, yesterday's as Yesterday", async () => {
      // The page's clock a day (then a week) ahead: today's messages are yesterday's (then a date's) to it.
      const context = await env.browser.newContext({ baseURL: env.hub.url, viewport });
      const page = await context.newPage();
      env.sockets.watch(page, `${c} (clock ahead)`);
      await page.goto("/");
      await page.getByLabel("Your name").fill(c);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.locator('#app[data-connection="connected"]').waitFor();
      await page.clock.setFixedTime(Date.now() + 24 * 3600_000);
      await openConversation(page, conv);
      await li(page, "First from ann").locator(".day-separator", { hasText: /^Yesterday$/ }).waitFor();
      await openConversation(page, await group(page, `Later ${size}`, [a]));
      await page.clock.setFixedTime(Date.now() + 8 * 24 * 3600_000);
      await openConversation(page, conv);
      const label = await li(page, "First from ann").locator(".day-separator").textContent();
      const expected = new Date().toLocaleDateString("en-US", { weekday: "long", month: "long", day: "numeric" });
      assert.equal(label, expected, "a date for a day more than a day ago");
      await context.close();
    });

    env.test("mentions: the reader's own stands out, another's is marked", async () => {
      await post(ann, conv, [`Hi @${b} and @${c}, see @nobody`]);
      const msg = li(ben, "see @nobody");
      await msg.waitFor();
      assert.equal(await msg.locator(".mention-me").textContent(), `@${b}`);
      assert.deepEqual(await msg.locator(".mention:not(.mention-me)").allTextContents(), [`@${c}`], "a member named, not a stranger");
      assert.match((await msg.getAttribute("class")) ?? "", /mentions-me/);
      const onCleo = li(cleo, "see @nobody");
      await onCleo.waitFor();
      assert.equal(await onCleo.locator(".mention-me").textContent(), `@${c}`);
      const [own, other] = [await msg.locator(".mention-me").evaluate((n) => getComputedStyle(n).backgroundColor), await msg.locator(".mention:not(.mention-me)").evaluate((n) => getComputedStyle(n).backgroundColor)];
      assert.notEqual(own, other, "the reader's own mention looks different");
      // Built as text: markup in a message stays text.
      await post(ann, conv, ["<b>not bold</b> @" + b]);
      await li(ben, "<b>not bold</b>").waitFor();
      assert.equal(await li(ben, "<b>not bold</b>").locator("b").count(), 0);
    });

    env.test("right-to-left text is laid out right to left (dir=auto), left-to-right text is not", async () => {
      const arabic = "مرحبا بكم في المحادثة";
      await post(ben, conv, [arabic]);
      await li(ann, arabic).waitFor();
      const dir = (text) => li(ann, text).locator(".message-text").evaluate((p) => ({ attr: p.getAttribute("dir"), computed: getComputedStyle(p).direction, align: getComputedStyle(p).textAlign }));
      assert.deepEqual(await dir(arabic), { attr: "auto", computed: "rtl", align: "start" });
      assert.equal((await dir("Ann again")).computed, "ltr");
      // Its text hugs the right edge of its bubble.
      const [textBox, bubbleBox] = [await li(ann, arabic).locator(".message-text").boundingBox(), await li(ann, arabic).locator(".message-bubble").boundingBox()];
      const range = await li(ann, arabic).locator(".message-text").evaluate((p) => {
        const r = document.createRange();
        r.selectNodeContents(p);
        const rect = r.getBoundingClientRect();
        return { left: rect.left, right: rect.right };
      });
      assert.ok(Math.abs(range.right - textBox.x - textBox.width) < 2 && range.right <= bubbleBox.x + bubbleBox.width, "right-aligned");
      assert.equal(await ann.locator("#composer-text").getAttribute("dir"), "auto", "the composer too");
    });

    env.test("read marks: once per member, at the latest message each has read, moving as they read", async () => {
      await openConversation(ann, conv);
      // Ben and cleo have the conversation open; at the bottom of it (a phone's
      // screen opened them at their first unread), they read what comes.
      for (const page of [ben, cleo]) {
        await page.locator("#messages").evaluate((box) => {
          box.scrollTop = box.scrollHeight;
        });
      }
      await send(ann, `Marks one ${size}`);
      const marks = () =>
        ann.$$eval("#messages .message-receipt .receipt-avatar", (nodes) =>
          nodes.map((n) => [n.dataset.user, n.closest("li")?.querySelector(".message-text")?.textContent ?? n.parentElement.parentElement.outerHTML]).sort(),
        );
      const want = (text) => [[b, text], [c, text]];
      await eventually(async () => assert.deepEqual(await marks(), want(`Marks one ${size}`)));
      // Cleo leaves the conversation (opens another); ben keeps reading.
      const other = await group(cleo, `Elsewhere ${size}`, [a]);
      await openConversation(cleo, other);
      await send(ann, `Marks two ${size}`);
      await eventually(async () =>
        assert.deepEqual(await marks(), [[b, `Marks two ${size}`], [c, `Marks one ${size}`]], "each member once, where they stopped"),
      );
      const seen = await li(ann, `Marks two ${size}`).locator(".message-receipt").textContent();
      assert.match(seen, new RegExp(`Seen by ${b}`));
      // Cleo comes back: her mark moves down; still one each.
      await openConversation(cleo, conv);
      await eventually(async () => assert.deepEqual(await marks(), want(`Marks two ${size}`)));
      assert.equal(await ann.locator("#messages .message-receipt").count(), 1, "one row of marks in the whole list");
      // A page that opens the conversation after the receipts were sent
      // (a reload: no live `read` event comes) shows the same marks.
      await ann.reload();
      await li(ann, `Marks two ${size}`).waitFor();
      await eventually(async () => assert.deepEqual(await marks(), want(`Marks two ${size}`), "the marks after a reload"));
    });

    env.test("'New messages' divider at the first unread message when opened", async () => {
      const other = await group(cleo, `Divider ${size}`, [a]);
      // Cleo looks elsewhere while ann writes three.
      await openConversation(cleo, other);
      await post(ann, conv, [`Unread one ${size}`, `Unread two ${size}`, `Unread three ${size}`]);
      await cleo.locator(`li.conversation[data-id="${conv}"] .unread-badge`, { hasText: /^\s*3\s*$/ }).waitFor({ state: "attached" });
      await openConversation(cleo, conv);
      await li(cleo, `Unread three ${size}`).waitFor();
      const dividers = cleo.locator("#messages .new-divider");
      assert.equal(await dividers.count(), 1);
      assert.equal(await dividers.textContent(), "New messages");
      const first = await cleo.locator("#messages li.message:has(.new-divider) .message-text").textContent();
      assert.equal(first, `Unread one ${size}`);
      // Opened with nothing unread: no divider.
      await openConversation(cleo, other);
      await openConversation(cleo, conv);
      await li(cleo, `Unread three ${size}`).waitFor();
      assert.equal(await cleo.locator("#messages .new-divider").count(), 0);
    });

    env.test("more unread than a page: the conversation opens at the first unread, its divider in view", async () => {
      const backlog = await group(ann, `Backlog ${size}`, [c]);
      const texts = Array.from({ length: 150 }, (_, i) => `Backlog ${String(i + 1).padStart(3, "0")} ${size}`);
      await post(ann, backlog, texts);
      await cleo.locator(`li.conversation[data-id="${backlog}"] .unread-badge`, { hasText: /^\s*150\s*$/ }).waitFor({ state: "attached" });
      await openConversation(cleo, backlog);
      const firstUnread = cleo.locator("#messages li.message:has(.new-divider)");
      await firstUnread.waitFor();
      assert.equal(await firstUnread.locator(".message-text").textContent(), texts[0]);
      // The divider is on screen, near the top of the list.
      const box = await cleo.locator("#messages").boundingBox();
      const divider = await cleo.locator("#messages .new-divider").boundingBox();
      assert.ok(divider.y >= box.y && divider.y + divider.height <= box.y + box.height / 2, `divider at ${divider.y - box.y} px of ${box.height}`);
      // The newest is not drawn yet; the jump button goes there.
      assert.equal(await li(cleo, texts[149]).count(), 0);
      await cleo.locator("#jump-newest").click();
      await li(cleo, texts[149]).waitFor();
    });

    env.test("search finds the loaded messages, counts, steps, Escape closes", async () => {
      await openConversation(ann, conv);
      await ann.locator("#search-toggle").click();
      const input = ann.locator("#message-search-text");
      await input.fill("ann");
      const count = ann.locator("#message-search-count");
      // "First from ann", "Second from ann", "Third from ann", the mention "@ann…": no; count what the page holds.
      const expected = await ann.$$eval("#messages .message-text:not(.deleted)", (ps) =>
        ps.reduce((n, p) => n + (p.textContent.toLowerCase().split("ann").length - 1), 0),
      );
      assert.ok(expected >= 3);
      await count.filter({ hasText: `${expected} of ${expected}` }).waitFor();
      assert.equal(await ann.evaluate(() => CSS.highlights.get("search").size + CSS.highlights.get("search-current").size), expected);
      await input.press("Enter");
      await count.filter({ hasText: `1 of ${expected}` }).waitFor();
      await input.press("Shift+Enter");
      await count.filter({ hasText: `${expected} of ${expected}` }).waitFor();
      await ann.locator("#message-search-next").click();
      await count.filter({ hasText: `1 of ${expected}` }).waitFor();
      assert.match((await ann.locator("li.message[data-search-current]").textContent()) ?? "", /First from ann/);
      await input.fill("no such words here");
      await count.filter({ hasText: "No match" }).waitFor();
      await input.press("Escape");
      await ann.locator("#message-search").waitFor({ state: "hidden" });
      assert.equal(await ann.evaluate(() => CSS.highlights.get("search")?.size ?? 0), 0);
    });

    env.test("a reload comes back at the same place in the conversation", async () => {
      const long = await group(ann, `Long ${size}`, [b]);
      await post(ann, long, Array.from({ length: 300 }, (_, i) => `Line ${i + 1} ${"of a longer conversation ".repeat(i % 3)}`));
      await openConversation(ben, long);
      // 300 unread: it opens at the first; ben jumps to the newest.
      await ben.locator("#messages li.message:has(.new-divider)").waitFor();
      await ben.locator("#jump-newest").click();
      await li(ben, "Line 300").waitFor();
      // Up to line 230 or so: inside the newest page, far from its edges.
      await ben.locator('#messages li.message[data-seq="230"]').evaluate((node) => {
        node.parentElement.scrollTop = node.offsetTop - 37;
      });
      const place = () =>
        ben.evaluate(() => {
          const box = document.querySelector("#messages");
          const top = [...box.querySelectorAll("li.message[data-seq]")].find((n) => n.offsetTop + n.offsetHeight > box.scrollTop);
          const text = top.querySelector(".message-text");
          return { seq: Number(top.dataset.seq), offset: text.getBoundingClientRect().top - box.getBoundingClientRect().top };
        });
      const before = await place();
      // The place is saved as the user scrolls (throttled): wait for it to be.
      await ben.waitForFunction(
        ([id, seq]) => Object.keys(sessionStorage).some((k) => k.endsWith(`.${id}`) && sessionStorage.getItem(k).includes(`"seq":${seq}`)),
        [long, before.seq],
      );
      await ben.reload();
      await ben.locator('#app[data-connection="connected"]').waitFor();
      // Which conversation opens after a reload is the page frame's part; the place in it is this one's.
      if ((await ben.locator(`#conversation[data-id="${long}"]`).count()) === 0) await openConversation(ben, long);
      await ben.locator(`#messages li.message[data-seq="${before.seq}"]`).waitFor();
      await ben.waitForFunction(() => document.querySelector("#messages").scrollTop > 0);
      const after = await place();
      assert.equal(after.seq, before.seq, "the same message at the top");
      assert.ok(Math.abs(after.offset - before.offset) <= 2, `at the same offset (${before.offset} then ${after.offset} px)`);
      const list = await messages(ben);
      assert.ok(list[0].seq < before.seq && list[list.length - 1].seq === 300, "loaded around it");
    });
  });
}
