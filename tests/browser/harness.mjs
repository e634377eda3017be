// The browser tests' harness: the hub (started from its binary on a test
// configuration, stopped and restarted on the same port and data), Chromium
// (Debian's, driven by playwright-core), one-WebSocket-per-page bookkeeping,
// the accessibility check and screenshots, and the few UI gestures every
// scenario repeats (sign in, open a conversation, send, read the messages).
//
//   const hub = await startHub();           // { url, port, stop(), start(), api() }
//   const browser = await launchBrowser();
//   const sockets = new SocketWatch();
//   const alice = await signIn(await newContext(browser, hub), "alice", sockets);
//   ...
//   await sockets.assertOnePerLivePage();   // after each test
//
// Environment: BROWSER_HUB_BIN (the hub binary; run.sh sets it), BROWSER_WEB_DIR
// (the built client, default <repo>/web/dist), CHROMIUM (default
// /usr/bin/chromium).

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, afterEach, before, test } from "node:test";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core"), "utf8");
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, "../..");
export const SCREENSHOT_DIR = path.join(REPO_ROOT, "target/browser-screenshots");

/** The publish API's key in the test configuration (every scope). */
export const API_KEY = "browser-test-key";
/** presence.grace_ms in the test configuration. */
export const GRACE_MS = 1500;
/**
 * presence.status_change_burst in the test configuration, refilled at 0.1 a
 * second: a user's next status change after that many is refused for ten
 * seconds, whatever the machine's speed.
 */
export const STATUS_CHANGE_BURST = 3;
/** calls.ring_timeout_ms in the test configuration: short, so that an unanswered call is missed soon. */
export const RING_TIMEOUT_MS = 6000;

/** The flags the issue names, exactly. */
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
/** How long a UI expectation waits by default (the machine has 2 busy cores). */
export const WAIT_MS = 15_000;

export function hubBinary() {
  const bin = process.env.BROWSER_HUB_BIN;
  return bin ? path.resolve(process.cwd(), bin) : path.join(REPO_ROOT, "target/release/switchboard");
}

export function webDir() {
  const dir = process.env.BROWSER_WEB_DIR;
  return dir ? path.resolve(process.cwd(), dir) : path.join(REPO_ROOT, "web/dist");
}

/** A TCP port free on loopback now, chosen up front so that a restarted hub listens where the pages left it. */
async function freePort() {
  const server = net.createServer();
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Hubs still running, killed if the test process exits without stopping them. */
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * Starts the hub on a fresh test configuration and resolves once it listens.
 * The hub keeps its port and data directory across stop()/start(), as a
 * hub restarted by its operator does. `config`: TOML appended to the file
 * (sections the file does not have, such as `[engine]`).
 */
export async function startHub({ config: extra = "" } = {}) {
  const bin = hubBinary();
  if (!existsSync(bin)) throw new Error(`hub binary not found: ${bin} (set BROWSER_HUB_BIN)`);
  const web = webDir();
  if (!existsSync(path.join(web, "index.html"))) {
    throw new Error(`the web client is not built: no ${web}/index.html (make web, or set BROWSER_WEB_DIR)`);
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), "sb-browser-"));
  const port = await freePort();
  const config = path.join(dir, "switchboard.toml");
  writeFileSync(
    config,
    [
      "# Written by tests/browser/harness.mjs for one test file.",
      `listen = ["127.0.0.1:${port}"]`,
      `data_dir = ${JSON.stringify(path.join(dir, "data"))}`,
      "dev_mode = true",
      "",
      "[server]",
      "shutdown_grace_ms = 1000",
      "",
      "[api]",
      `keys = [${JSON.stringify(API_KEY)}]`,
      "",
      "[log]",
      'level = "warn"',
      "",
      "[web]",
      `dir = ${JSON.stringify(web)}`,
      "",
      "[presence]",
      `grace_ms = ${GRACE_MS}`,
      "status_changes_per_sec = 0.1",
      `status_change_burst = ${STATUS_CHANGE_BURST}`,
      "",
      "[calls]",
      `ring_timeout_ms = ${RING_TIMEOUT_MS}`,
      "",
      extra,
    ].join("\n"),
  );

  const log = [];
  let child = null;
  let exited = null;

  const hub = {
    port,
    url: `http://127.0.0.1:${port}`,
    dir,
    /** The hub's recent output lines, for failure messages. */
    output: () => log.join("\n"),
    get running() {
      return child !== null;
    },
    /**
     * Starts the hub (again): same port, same data. A restart may find the
     * port still held for a moment by the process that just exited: it
     * tries again a few times then.
     */
    async start() {
      for (let attempt = 1; ; attempt++) {
        try {
          return await hub.startOnce();
        } catch (err) {
          const busy = /address already in use|AddrInUse/i.test(err.message);
          if (!busy || attempt >= 5) throw err;
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
      }
    },
    async startOnce() {
      if (child) throw new Error("hub already running");
      const proc = spawn(bin, ["serve", "--config", config], {
        cwd: dir,
        env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? "warn" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      child = proc;
      running.add(proc);
      const remember = (stream) => (line) => {
        log.push(`[${stream}] ${line}`);
        if (log.length > 300) log.shift();
      };
      createInterface({ input: proc.stderr }).on("line", remember("stderr"));
      const stdout = createInterface({ input: proc.stdout });
      exited = new Promise((resolve) => {
        proc.once("exit", (code, signal) => {
          running.delete(proc);
          if (child === proc) child = null;
          resolve({ code, signal });
        });
      });
      const ready = new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`hub did not print "listening on" within ${START_TIMEOUT_MS} ms`)),
          START_TIMEOUT_MS,
        );
        proc.once("error", (err) => {
          clearTimeout(timer);
          reject(err);
        });
        exited.then(({ code, signal }) => {
          clearTimeout(timer);
          reject(new Error(`hub exited before listening (code ${code}, signal ${signal})`));
        });
        stdout.on("line", (line) => {
          remember("stdout")(line);
          if (line.trim() === `listening on 127.0.0.1:${port}`) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      try {
        await ready;
      } catch (err) {
        proc.kill("SIGKILL");
        err.message += `\n--- hub output ---\n${hub.output()}`;
        throw err;
      }
    },
    /** SIGTERM, and waits for the exit (SIGKILL after STOP_TIMEOUT_MS). */
    async stop() {
      if (!child) return;
      const proc = child;
      const done = exited;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), STOP_TIMEOUT_MS);
      const status = await done;
      clearTimeout(timer);
      return status;
    },
    /** Stops the hub and removes its files. */
    async dispose() {
      await hub.stop();
      rmSync(dir, { recursive: true, force: true });
    },
    /** Calls the publish API with the test key: resolves with {status, body}. */
    async api(method, apiPath, body) {
      const res = await fetch(`${hub.url}${apiPath}`, {
        method,
        headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let json = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = text;
      }
      return { status: res.status, body: json };
    },
  };
  await hub.start();
  return hub;
}

/**
 * Debian's Chromium with the flags. playwright-core gives every
 * launch a fresh user-data directory of its own (removed when the browser
 * closes), so no run sees another's profile.
 */
export async function launchBrowser() {
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_FLAGS });
}

/** The two sizes every layout is tested at: a desktop, and a phone (an iPhone 14's CSS pixels). */
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/**
 * A new context (a device: its own cookies and storage) on the hub's
 * origin, camera and microphone allowed; `viewport` DESKTOP (the default)
 * or PHONE (then a touch screen, as a phone has).
 */
export async function newContext(browser, hub, { viewport = DESKTOP } = {}) {
  const phone = viewport.width < 700;
  const context = await browser.newContext({ baseURL: hub.url, viewport, hasTouch: phone, isMobile: phone });
  await context.grantPermissions(["camera", "microphone"], { origin: hub.url });
  context.setDefaultTimeout(WAIT_MS);
  return context;
}

/**
 * Records every page's WebSockets (Playwright's `websocket` events) and
 * holds each page to one: never two open at once, and exactly one, to
 * /socket.io/, open whenever a test ends. It also fails a page whose
 * console says the Content-Security-Policy refused something.
 */
export class SocketWatch {
  constructor() {
    /** @type {Map<import('playwright-core').Page, {label: string, open: Set<any>, urls: string[]}>} */
    this.pages = new Map();
    this.violations = [];
  }

  /** Starts recording `page` (call before it navigates). */
  watch(page, label) {
    const record = { label, open: new Set(), urls: [], failed: 0 };
    this.pages.set(page, record);
    page.on("websocket", (ws) => {
      record.urls.push(ws.url());
      record.open.add(ws);
      const { pathname } = new URL(ws.url());
      if (!pathname.startsWith("/socket.io/")) {
        this.violations.push(`${label}: a WebSocket to ${ws.url()}, not to /socket.io/`);
      }
      if (record.open.size > 1) {
        this.violations.push(
          `${label}: ${record.open.size} WebSockets open at once (${[...record.open].map((w) => w.url()).join(", ")})`,
        );
      }
      ws.on("close", () => record.open.delete(ws));
      ws.on("socketerror", () => record.failed++);
    });
    // A new document (a reload) ends the old one's WebSockets without a
    // `close` event; at its navigation request every socket open is the old
    // document's.
    page.on("request", (request) => {
      if (request.isNavigationRequest() && request.frame() === page.mainFrame()) record.open.clear();
    });
    page.on("requestfailed", (request) => {
      if (new URL(request.url()).pathname.startsWith("/socket.io/")) record.failed++;
    });
    // The hub serves the page with a strict Content-Security-Policy: anything
    // it refuses (an inline style or script) is a part of the page that does
    // not work for its users.
    page.on("console", (msg) => {
      if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) {
        this.violations.push(`${label}: ${msg.text()}`);
      }
    });
  }

  /** Throws unless every live page has exactly one open WebSocket to /socket.io/ (waiting for reconnections to settle) and none ever had two. */
  async assertOnePerLivePage(timeout = WAIT_MS) {
    const live = [...this.pages].filter(([page]) => !page.isClosed());
    await eventually(
      () => {
        for (const [, record] of live) {
          if (record.open.size !== 1) {
            throw new Error(
              `${record.label}: ${record.open.size} WebSockets open, expected 1 (all it opened: ${record.urls.join(", ") || "none"})`,
            );
          }
        }
      },
      { timeout },
    );
    // Each violation fails the test in which it happened, not every later one.
    const violations = this.violations.splice(0);
    if (violations.length) throw new Error(`one WebSocket per page, no CSP refusal:\n${violations.join("\n")}`);
  }

  /** How many of `page`'s connection attempts (WebSocket or polling request to /socket.io/) have failed so far. */
  failed(page) {
    return this.pages.get(page)?.failed ?? 0;
  }

  /** How many WebSockets `page` has opened so far. */
  opened(page) {
    return this.pages.get(page)?.urls.length ?? 0;
  }
}

/**
 * Retries `check` (which throws or rejects while the expectation does not
 * hold) every `interval` ms until it passes, or rethrows its last error after
 * `timeout` ms: Playwright's expect.poll, for playwright-core.
 */
export async function eventually(check, { timeout = WAIT_MS, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

/** Waits until the page's `#app` is in `state` (connecting|connected|reconnecting). */
export async function waitConnection(page, state, timeout = WAIT_MS) {
  await page.locator(`#app[data-connection="${state}"]`).waitFor({ state: "attached", timeout });
}

/**
 * Opens the hub's page in `context` as `name` through the dev sign-in form
 * and resolves with the page once its connection is up.
 */
export async function signIn(context, name, sockets) {
  const page = await context.newPage();
  sockets?.watch(page, `${name} (page ${sockets.pages.size + 1})`);
  page.on("pageerror", (err) => console.error(`# [${name}] page error: ${err.message}`));
  await page.goto("/", { waitUntil: "load" });
  await page.getByLabel("Your name").fill(name);
  await page.getByRole("button", { name: "Sign in" }).click();
  await waitConnection(page, "connected");
  // Attached: a phone's compact top bar does not show "Signed in as".
  await page.locator("#me", { hasText: name }).waitFor({ state: "attached" });
  return page;
}

/**
 * Shows the list of people and conversations: on a phone, going back from
 * an open conversation with its back control (a no-op on a desktop).
 */
export async function showList(page) {
  if (await page.locator("#back").isVisible()) await page.locator("#back").click();
  await page.locator(".sidebar").waitFor();
}

/** Watches `user` through the "Add a person" dialog, as a person would, and waits for their row. */
export async function watchPerson(page, user) {
  const row = page.locator(`li.person[data-user="${user}"]`);
  if ((await row.count()) === 0) {
    await showList(page);
    await page.getByRole("button", { name: "Add a person" }).click();
    await page.getByLabel("Their user id").fill(user);
    await page.getByLabel("Their user id").press("Enter");
    await page.locator("#watch-dialog").waitFor({ state: "hidden" });
  }
  await row.waitFor();
  return row;
}

/** Opens the direct conversation with `user` (creating it if need be); resolves with its id. */
export async function openDirect(page, user) {
  const row = await watchPerson(page, user);
  await showList(page);
  await row.locator(".person-message").click();
  return openConversationId(page);
}

/** Opens conversation `id` from the list; resolves when it is shown. */
export async function openConversation(page, id) {
  await showList(page);
  const item = page.locator(`li.conversation[data-id="${id}"]`);
  await item.locator("button").first().click();
  await page.locator(`#conversation[data-id="${id}"]`).waitFor();
}

/** The id of the conversation shown, once one is. */
export async function openConversationId(page) {
  const handle = await page.waitForFunction(() => {
    const id = document.querySelector("#conversation")?.getAttribute("data-id");
    return id ? id : null;
  });
  return handle.jsonValue();
}

/** Types `text` in the composer and presses Enter; resolves once it shows in the list (acked unless `{acked: false}`). */
export async function send(page, text, { acked = true } = {}) {
  const composer = page.locator("#composer-text");
  await composer.fill(text);
  await composer.press("Enter");
  await page.waitForFunction(
    ([want, acked]) =>
      [...document.querySelectorAll("#messages li.message")].some(
        (li) =>
          li.querySelector(".message-text")?.textContent === want &&
          (!acked || (li.getAttribute("data-pending") !== "true" && li.hasAttribute("data-seq"))),
      ),
    [text, acked],
  );
}

/** The messages of the open conversation, in the order shown: {text, seq, sender, clientId, pending}. */
export async function messages(page) {
  return page.$$eval("#messages li.message", (items) =>
    items.map((li) => ({
      text: li.querySelector(".message-text")?.textContent ?? "",
      seq: li.hasAttribute("data-seq") ? Number(li.getAttribute("data-seq")) : null,
      sender: li.getAttribute("data-sender"),
      clientId: li.getAttribute("data-client-id"),
      pending: li.getAttribute("data-pending") === "true",
    })),
  );
}

/**
 * Throws unless `list` (from messages()) is a clean conversation: every
 * message acked, seqs strictly increasing (so none shown twice, none out of
 * order), no client id twice.
 */
export function assertCleanLog(list, who) {
  const problems = [];
  const clientIds = new Set();
  list.forEach((m, i) => {
    if (m.pending || m.seq === null) problems.push(`#${i} "${m.text}" is still pending`);
    if (i > 0 && !(m.seq > list[i - 1].seq)) problems.push(`#${i} "${m.text}" seq ${m.seq} after seq ${list[i - 1].seq}`);
    if (m.clientId && clientIds.has(m.clientId)) problems.push(`#${i} "${m.text}" client id ${m.clientId} shown twice`);
    clientIds.add(m.clientId);
  });
  if (problems.length) {
    throw new Error(`${who}'s messages:\n  ${problems.join("\n  ")}\n  shown: ${JSON.stringify(list.map((m) => [m.seq, m.text]))}`);
  }
}

/**
 * Runs axe-core in the page and throws, listing them, if any violation is
 * serious or critical; saves a screenshot as SCREENSHOT_DIR/<name>.png either way.
 */
export async function checkScreen(page, name) {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, `${name}.png`) });
  // Not page.addScriptTag: it adds an inline <script>, which the page's
  // Content-Security-Policy (script-src 'self') rightly refuses. Code that the
  // test evaluates through the DevTools protocol is not subject to it.
  if (!(await page.evaluate(() => typeof window.axe === "object"))) {
    await page.evaluate(AXE_SOURCE);
  }
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => `${n.target.join(" ")}: ${n.failureSummary?.split("\n").join(" ")}`),
    }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of violations.filter((v) => !bad.includes(v))) {
    console.log(`# axe (${name}, ${v.impact}, not failing): ${v.id}: ${v.help} (${v.nodes.slice(0, 3).join("; ")})`);
  }
  if (bad.length) {
    throw new Error(
      `axe on the ${name} screen: ${bad.length} serious/critical violation(s):\n` +
        bad.map((v) => `- [${v.impact}] ${v.id}: ${v.help}\n    ${v.nodes.join("\n    ")}`).join("\n"),
    );
  }
}

/**
 * The hooks of one test file: a hub and a browser for the file, the
 * WebSocket check after every test, and `env.device(name)` to open a signed-in
 * page in a new context (a device). `env.test` is node:test's `test`, plus a
 * screenshot of every live page into SCREENSHOT_DIR/failures/ and the hub's
 * last output lines when it fails.
 */
export function setupFile() {
  const env = {
    hub: null,
    browser: null,
    sockets: new SocketWatch(),
    /** A new device of `name`: {context, page}, signed in and connected (`{viewport}`: see newContext). */
    async device(name, options) {
      const context = await newContext(env.browser, env.hub, options);
      const page = await signIn(context, name, env.sockets);
      return { context, page };
    },
    test(name, fn) {
      return test(name, async (t) => {
        try {
          await fn(t);
        } catch (err) {
          await env.saveFailure(name);
          if (err && typeof err === "object" && typeof err.message === "string") {
            err.message += `\n--- hub output (last lines) ---\n${env.hub?.output().split("\n").slice(-30).join("\n")}`;
          }
          throw err;
        }
      });
    },
    async saveFailure(name) {
      const dir = path.join(SCREENSHOT_DIR, "failures");
      mkdirSync(dir, { recursive: true });
      const slug = name.replace(/[^A-Za-z0-9]+/g, "-").slice(0, 60);
      for (const [page, record] of env.sockets.pages) {
        if (page.isClosed()) continue;
        const who = record.label.replace(/[^A-Za-z0-9]+/g, "-");
        await page.screenshot({ path: path.join(dir, `${slug}--${who}.png`), timeout: 5000 }).catch(() => {});
      }
    },
  };
  before(async () => {
    env.hub = await startHub();
    env.browser = await launchBrowser();
  });
  afterEach(async () => {
    await env.sockets.assertOnePerLivePage();
  });
  after(async () => {
    await env.browser?.close();
    await env.hub?.dispose();
  });
  return env;
}
