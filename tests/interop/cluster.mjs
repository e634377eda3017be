// What the cluster interop tests share: the test Redis and PostgreSQL
// (TEST_REDIS_URL and TEST_POSTGRES_URL, set by tests/redis/with-redis.sh
// and tests/postgres/with-postgres.sh, which `make interop` runs), and the
// nodes of one cluster on them.
//
// Without those servers a cluster test file is skipped, except under CI,
// where it fails.

import { execFileSync } from "node:child_process";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, afterEach, before } from "node:test";
import { createClient } from "redis";
import { Server } from "socket.io";
import { io } from "socket.io-client";
import { Clients, Recorder, ack, connected, stopServer } from "./helpers.mjs";
import { startServer } from "./server.mjs";

export const REDIS = process.env.TEST_REDIS_URL;
/** Two namespaces with the test kit, `/secure` for signed-in users. */
export const CLUSTER_CONFIG = "tests/interop/cluster.toml";
export const POSTGRES = process.env.TEST_POSTGRES_URL;

/** The `skip` option of a cluster test: false, or why it cannot run. */
export function clusterSkip() {
  const missing = !REDIS || !POSTGRES;
  if (missing && process.env.CI) {
    throw new Error(
      "CI must run the cluster interop tests: run them under tests/redis/with-redis.sh and tests/postgres/with-postgres.sh",
    );
  }
  return missing ? "TEST_REDIS_URL or TEST_POSTGRES_URL not set" : false;
}

/** A fresh database on the test PostgreSQL server; returns its URL. */
export function createDatabase() {
  const database = `sb_interop_${process.pid}_${Date.now()}`;
  execFileSync("psql", [POSTGRES, "-q", "-c", `CREATE DATABASE ${database}`]);
  return POSTGRES.replace(/\/[^/]*$/, `/${database}`);
}

/**
 * What a node of one cluster needs in its environment: the test Redis
 * under `keyPrefix` (a run's own: nothing else on the test Redis hears
 * it) and the database `store`.
 */
export function clusterEnv(store, keyPrefix) {
  return {
    SWITCHBOARD_CLUSTER_REDIS_URL: REDIS,
    SWITCHBOARD_STORE_URL: store,
    SWITCHBOARD_CLUSTER_KEY_PREFIX: keyPrefix,
  };
}

/**
 * Starts `n` nodes of one cluster (`config`, from the repo root: it names
 * no store or Redis) on a fresh database, with `env` besides. One after
 * the other: the first migrates the shared database.
 */
export async function startNodes(n, { config = CLUSTER_CONFIG, keyPrefix, env = {} }) {
  const nodeEnv = { ...clusterEnv(createDatabase(), keyPrefix), ...env };
  const nodes = [];
  for (let i = 0; i < n; i++) nodes.push(await startServer({ config, env: nodeEnv }));
  // Another node of the same cluster can be started with it (and more).
  for (const node of nodes) node.env = nodeEnv;
  return nodes;
}

/**
 * The setup of a test file of two Switchboard nodes and a Node node (call
 * it once at the top level, as useServer): registers the hooks that start
 * two nodes of one cluster under `keyPrefix` (startNodes, with `env`) and
 * a Node socket.io 4 node on the same Redis, its adapter made by
 * `adapter(pub, sub)` and its clients acking `join` (`{ok: true}`) as the
 * test kit does (`before`); close the test's clients (`afterEach`); stop
 * everything and check the Switchboard nodes' exits (`after`). `setup`,
 * if given, runs last in that `before` (with the context): a file's own
 * root-level `before` may run alongside it. Nothing starts when `skip`
 * (see clusterSkip). Returns a context whose fields `before` sets:
 *
 * - `nodes`: the Switchboard nodes; `nodeIo` and `nodeUrl`: the Node node.
 * - `redis`: the Node node's publishing client (to `duplicate()`).
 * - `member(name, url, nsp, opts)`: a member (below) of the current test.
 * - `connectRedis()`: one more client of the test Redis, quit after the file.
 */
export function useCluster({ skip, keyPrefix, env, adapter, setup }) {
  const redis = [];
  let clients;
  const cluster = {
    nodes: [],
    member: (name, url, nsp, opts) => member(clients, name, url, nsp, opts),
    async connectRedis() {
      const client = redis[0].duplicate();
      redis.push(client);
      await client.connect();
      return client;
    },
  };
  before(async () => {
    if (skip) return;
    cluster.nodes = await startNodes(2, { keyPrefix, env });
    const pub = createClient({ url: REDIS });
    redis.push(pub, pub.duplicate());
    await Promise.all(redis.map((c) => c.connect()));
    cluster.redis = pub;
    const http = createServer();
    cluster.nodeIo = new Server(http, { adapter: adapter(...redis) });
    cluster.nodeIo.on("connection", (socket) => {
      socket.on("join", (room, reply) => {
        socket.join(room);
        reply({ ok: true });
      });
    });
    await new Promise((resolve) => http.listen(0, "127.0.0.1", resolve));
    cluster.nodeUrl = `http://127.0.0.1:${http.address().port}`;
    clients = new Clients(cluster.nodes[0].url);
    await setup?.(cluster);
  });
  afterEach(() => clients?.closeAll());
  after(async () => {
    clients?.closeAll();
    cluster.nodeIo?.close();
    await Promise.all(redis.map((c) => c.quit().catch(() => {})));
    for (const node of cluster.nodes) await stopServer(node);
  });
  return cluster;
}

/**
 * A client of `url` in `nsp`, tracked by `clients`, recording `news`,
 * `bin`, `marker` and its disconnection; it acks `ask` with its name and
 * what it was asked.
 */
export async function member(clients, name, url, nsp = "/", opts = {}) {
  const socket = clients.track(
    io(url + nsp, { forceNew: true, reconnection: false, transports: ["websocket"], ...opts }),
  );
  await connected(socket);
  socket.on("ask", (n, reply) => reply({ from: name, n }));
  return {
    name,
    socket,
    news: new Recorder(socket, "news", (...args) => args),
    bin: new Recorder(socket, "bin", (...args) => args),
    markers: new Recorder(socket, "marker", (n) => n),
    gone: new Recorder(socket, "disconnect", (reason) => reason),
  };
}

/** Has member `m` join `room` (the test kit's, or a Node node's, `join`). */
export async function join(m, room) {
  assert.deepEqual(await ack(m.socket, "join", room), { ok: true });
}

let markerId = 0;

/**
 * Runs `emit(id)`, then marks the end with `marker`: a function of the id,
 * or an emitter (`marker.emit("marker", id)`), which must publish on the
 * connection `emit` did, so that a client holding the marker holds all the
 * emit meant for it. Returns who received `news` with `id`, how many times.
 */
export async function round(members, marker, emit) {
  const id = ++markerId;
  await emit(id);
  await (typeof marker === "function" ? marker(id) : marker.emit("marker", id));
  const got = {};
  await Promise.all(
    members.map(async (m) => {
      await m.markers.waitUntil((items) => items.includes(id), `marker ${id} for ${m.name}`);
      const times = m.news.items.filter(([data]) => data?.id === id).length;
      if (times) got[m.name] = times;
    }),
  );
  return got;
}
