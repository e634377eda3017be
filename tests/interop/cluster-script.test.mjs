// `make cluster` (scripts/cluster.sh) as a newcomer runs it: Redis,
// PostgreSQL, three nodes and HAProxy start (the script's own throwaway
// servers), it prints the URL to open, and through that URL the web
// client's page loads, dev mode's sign-in signs tokens, and two users'
// socket.io-client connections (polling, then upgraded: sticky) exchange a
// chat message whichever nodes they landed on. Ctrl-C (SIGINT to the
// process group, as a terminal sends it) stops everything: nothing listens
// any more on the proxy's, the nodes', Redis's or PostgreSQL's port, and
// the script's files are gone.
//
// Needs what the script installs when missing (Redis, PostgreSQL and
// HAProxy, with apt-get as root: skipped without them, failing under CI),
// the release binary and the built web client (`make interop` builds both).
// The script starts Redis and PostgreSQL of its own, whatever
// TEST_REDIS_URL and TEST_POSTGRES_URL say.

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import path from "node:path";
import { createInterface } from "node:readline";
import { after, test } from "node:test";
import { Manager } from "socket.io-client";
import { Clients, connected, once, withTimeout } from "./helpers.mjs";
import { haproxySkip } from "./lb.mjs";
import { REPO_ROOT, serverBinary } from "./server.mjs";

const INDEX = path.join(REPO_ROOT, "web/dist/index.html");
function webSkip() {
  if (existsSync(INDEX)) return false;
  if (process.env.CI) throw new Error("CI must run the cluster script's test: build the web client (make web)");
  return "the web client is not built (make web)";
}
/** The script installs Redis and PostgreSQL when missing, as root only. */
function servicesSkip() {
  let redis = true;
  try {
    execFileSync("sh", ["-c", "command -v redis-server"], { stdio: "ignore" });
  } catch {
    redis = false;
  }
  if ((redis && existsSync("/usr/lib/postgresql")) || process.getuid?.() === 0) return false;
  if (process.env.CI) throw new Error("CI must run the cluster script's test: Redis or PostgreSQL is missing");
  return "Redis or PostgreSQL not installed (the script installs them as root)";
}
const skip = servicesSkip() || haproxySkip() || webSkip();

/** Everything the script starts, Redis and PostgreSQL's initdb included. */
const START_TIMEOUT_MS = 60_000;

let script;
const clients = new Clients("");
after(() => {
  clients.closeAll();
  if (script?.exitCode === null) process.kill(-script.pid, "SIGKILL");
});

/** Whether nothing listens at `addr` (host:port) any more. */
function refused(addr) {
  const [host, port] = addr.split(":");
  return new Promise((resolve) => {
    const socket = connect(Number(port), host);
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
}

/** A token for `user` from dev mode's sign-in, through `url`. */
async function signIn(url, user) {
  const res = await fetch(`${url}/dev/token`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()).token;
}

test("make cluster prints a URL through which the web client and socket.io-client work, and Ctrl-C stops it all", { skip, timeout: 120_000 }, async () => {
  const env = { ...process.env, CLUSTER_PORT: "0" };
  delete env.SB_CLUSTER_SERVICES;
  // Its own process group, as in a terminal: SIGINT reaches every process.
  script = spawn(path.join(REPO_ROOT, "scripts/cluster.sh"), [serverBinary()], {
    cwd: REPO_ROOT,
    env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log = [];
  createInterface({ input: script.stderr }).on("line", (line) => log.push(line));
  const printed = [];
  const lines = createInterface({ input: script.stdout });
  const exited = new Promise((resolve) => script.once("exit", (code, signal) => resolve({ code, signal })));
  const found = (regex) =>
    new Promise((resolve, reject) => {
      lines.on("line", (line) => {
        printed.push(line);
        const m = regex.exec(line);
        if (m) resolve(m[1]);
      });
      exited.then((status) => reject(new Error(`the script exited: ${JSON.stringify(status)}\n${log.join("\n")}`)));
    });
  const url = (await withTimeout(found(/Open (http:\/\/127\.0\.0\.1:\d+)\/ in a browser/), START_TIMEOUT_MS, "the URL")).trim();
  const nodes = /nodes: +((?:127\.0\.0\.1:\d+ ?)+)/.exec(printed.join("\n"))?.[1];
  const files = /logs: +(\S+)\//.exec(printed.join("\n"))?.[1];
  assert.ok(nodes && files, printed.join("\n"));
  assert.equal(nodes.trim().split(" ").length, 3, nodes);

  // The web client's page, as built.
  const page = await fetch(`${url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type"), /^text\/html/);
  assert.equal(await page.text(), readFileSync(INDEX, "utf8"));

  // Two users signed in by name, each on a Manager of its own, as two
  // browsers: polling first, then the upgrade, through the proxy.
  const [alice, bob] = await Promise.all(
    ["alice", "bob"].map(async (user) => {
      const manager = clients.trackManager(new Manager(url, { withCredentials: true, reconnection: false }));
      const chat = clients.track(manager.socket("/chat", { auth: { token: await signIn(url, user) } }));
      await connected(chat);
      if (manager.engine.transport.name !== "websocket") await once(manager.engine, "upgrade");
      return chat;
    }),
  );
  const delivered = once(bob, "message");
  const sent = await alice.timeout(5_000).emitWithAck("message", { to: "bob", client_id: "hello-1", text: "hi bob" });
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const [message] = await delivered;
  assert.equal(message.text, "hi bob");
  assert.equal(message.sender, "alice");
  clients.closeAll();

  // Ctrl-C: a clean exit, and nothing left behind.
  process.kill(-script.pid, "SIGINT");
  assert.deepEqual(await withTimeout(exited, 30_000, "the script's exit"), { code: 0, signal: null }, log.join("\n"));
  // HAProxy, the nodes, and the Redis and PostgreSQL the script started.
  const services = log.join("\n").match(/^with-(?:redis|postgres): .* on (127\.0\.0\.1:\d+)$/gm) ?? [];
  assert.equal(services.length, 2, log.join("\n"));
  const addrs = [url.replace("http://", ""), ...nodes.trim().split(" "), ...services.map((l) => l.split(" on ")[1])];
  for (const addr of addrs) assert.ok(await refused(addr), `${addr} still listens`);
  assert.equal(existsSync(files), false, `${files} is still there`);
});
