// A node killed with SIGKILL loses nothing: three Switchboard nodes of one
// cluster behind HAProxy (tests/lb/haproxy.cfg, as lb.test.mjs has them),
// official socket.io-client clients connected to the proxy only, and one
// node killed outright while events flow (no goodbye to the cluster, no
// session closed: its clients' TCP connections are simply cut).
//
// - A room: WebSocket-only, polling-only and upgrading clients spread over
//   the three nodes; a publisher on a node that survives sends N numbered
//   events to the room at a steady pace, and the node holding a third of
//   the clients is killed half-way. Every client ends with exactly 1..N,
//   in order, each once; the killed node's clients reconnected by
//   themselves through the proxy to the surviving nodes and were recovered
//   there (`socket.recovered`, the same socket id: connection state
//   recovery reads their sessions and the events they missed from Redis).
// - Chat: three users in a group conversation of /chat, each sending from
//   a device on another node (one on the node that is killed, with a burst
//   of sends on the wire), as an application does: a send whose ack does
//   not come (the node died with it) is sent again with the same client_id
//   when the device is back.
//   Every device ends with every message once, each sender's in the order
//   sent, and the seqs complete; a device that came back not recovered
//   would fill the gap from `history` (by seq) as an application does, and
//   the test says which happened — with recovery on, each is recovered.
//
// Printed (test diagnostics): how many clients moved and the time from the
// SIGKILL until the last of them was recovered on another node.
//
// The clients reconnect as an application would configure them for a
// quick come-back (RETRY below: first attempt after 200 ms ± 50 %, then
// doubling up to 1 s). HAProxy marks the dead node down after two failed
// checks of /readyz (500 ms apart); meanwhile a reconnection sent to it is
// refused and sent to another node at once (`option redispatch 1`).
//
// Needs TEST_REDIS_URL, TEST_POSTGRES_URL and HAProxy, as lb.test.mjs;
// skipped without them, failing under CI. Run with
// SWITCHBOARD_SOCKETIO_RECOVERY_WINDOW_MS=0 in the environment (recovery
// off on the nodes), both tests fail: nobody comes back recovered (the
// room's clients come back as new sockets, out of the room; the chat
// devices fill the gap from the history).

import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { performance } from "node:perf_hooks";
import { after, afterEach, before, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { io } from "socket.io-client";
import { clusterEnv, clusterSkip, createDatabase } from "./cluster.mjs";
import { token } from "./esn.mjs";
import { Clients, Recorder, ack, connected, once, stopServer } from "./helpers.mjs";
import { haproxySkip, sessionsOf, startHaproxy, stopAll, until, untilServer } from "./lb.mjs";
import { startServer } from "./server.mjs";

const skip = clusterSkip() || haproxySkip();
const CONFIG = "tests/interop/faults.toml";
const KEY = `sbfaults-${process.pid}-${Date.now()}`;
/** The node killed (its index; HAProxy's server `n3`). */
const VICTIM = 2;
/** How the clients reconnect: quickly, as an application would ask. */
const RETRY = { reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 1000, randomizationFactor: 0.5 };
/** Bound on a client's way back after the kill (it takes about 0.3 s). */
const BACK_MS = 30_000;
/** Bound on every client having everything once the senders are done. */
const DRAIN_MS = 30_000;

const KINDS = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"], withCredentials: true },
  upgrade: { withCredentials: true },
};

let nodes = [];
let lb;
let env;
let clients;

before(async () => {
  if (skip) return;
  env = { ...clusterEnv(createDatabase(), KEY) };
  // One after the other: the first migrates the shared database.
  for (let i = 0; i < 3; i++) nodes.push(await startServer({ config: CONFIG, env }));
  lb = await startHaproxy(nodes);
});

afterEach(() => clients?.closeAll());

after(async () => {
  clients?.closeAll();
  // The killed node is not there to stop (kill() resolves with its exit).
  await stopAll(lb, nodes.map((node) => () => (node.killed ? node.kill() : stopServer(node))));
});

/**
 * Kills the victim with SIGKILL; returns the time it was sent
 * (performance.now()).
 */
async function killVictim() {
  const node = nodes[VICTIM];
  node.killed = true;
  const at = performance.now();
  const status = await node.kill();
  assert.deepEqual(status, { code: null, signal: "SIGKILL" });
  return at;
}

/** The victim started again on its address, and marked up by HAProxy. */
async function reviveVictim() {
  const { port } = nodes[VICTIM];
  nodes[VICTIM] = await startServer({ config: CONFIG, env, args: ["--listen", `127.0.0.1:${port}`] });
  await untilServer(lb.url, `n${VICTIM + 1}`, "UP");
}

/** Waits until no node holds a session (counting who goes where needs a quiet start). */
async function quiet() {
  clients = new Clients(lb.url);
  await until(async () => (await sessionsOf(nodes)).every((n) => n === 0), 10_000, "no session left");
}

/**
 * A client through the proxy, opened by `open()`, connected (and upgraded
 * when `upgrade`); its node is the one whose session count went up. It
 * records its disconnections and its connections after the first
 * (reconnections: when, whether recovered, and `missed()` then: how much
 * it had missed).
 */
async function placed(name, open, upgrade = false, missed = () => 0) {
  const before = await sessionsOf(nodes);
  const socket = clients.track(open());
  const upgraded = upgrade ? once(socket.io.engine, "upgrade") : null;
  await connected(socket);
  await upgraded;
  const now = await sessionsOf(nodes);
  const grew = now.map((n, i) => n - before[i]);
  const node = grew.indexOf(1);
  assert.ok(node >= 0 && grew.filter((d) => d !== 0).length === 1, `${name}: sessions ${before} -> ${now}`);
  return {
    name,
    node,
    socket,
    id: socket.id,
    engineId: socket.io.engine.id,
    gone: new Recorder(socket, "disconnect", (reason) => reason),
    back: new Recorder(socket, "connect", () => ({ at: performance.now(), recovered: socket.recovered, missed: missed() })),
  };
}

/**
 * Each client of the killed node: cut as by a network failure (never a
 * Socket.IO DISCONNECT, after which it would stay away), back once through
 * the proxy, recovered (the same socket); the others did not move.
 * Returns, for each that moved, the milliseconds from the kill until it was
 * back, and what it had missed then.
 */
function checkMoves(all, killedAt) {
  const times = [];
  for (const c of all) {
    if (c.node !== VICTIM) {
      assert.deepEqual(c.gone.items, [], `${c.name} (node ${c.node}) was not disconnected`);
      assert.equal(c.socket.io.engine.id, c.engineId, c.name);
      continue;
    }
    assert.equal(c.gone.items.length, 1, `${c.name}: ${c.gone.items}`);
    assert.ok(["transport close", "transport error"].includes(c.gone.items[0]), `${c.name}: ${c.gone.items[0]}`);
    assert.equal(c.back.items.length, 1, c.name);
    assert.equal(c.back.items[0].recovered, true, `${c.name} came back recovered`);
    assert.equal(c.socket.id, c.id, `${c.name} kept its socket id`);
    assert.ok(c.socket.connected, c.name);
    times.push({ name: c.name, ms: Math.round(c.back.items[0].at - killedAt), missed: c.back.items[0].missed });
  }
  return times;
}

/**
 * The survivors now hold, between them, the sessions they held before plus
 * one per client that moved: the killed node's clients came back through
 * the proxy to them (and nothing else is left over).
 */
async function checkSurvivorsHold(before, moved) {
  const survivors = (counts) => counts.reduce((sum, n, i) => (i === VICTIM ? sum : sum + n), 0);
  const want = survivors(before) + moved;
  await until(async () => survivors(await sessionsOf(nodes)) === want, 10_000, `${want} sessions on the survivors`);
}

function summary(times, what) {
  const sorted = [...times].sort((a, b) => a.ms - b.ms);
  const each = sorted.map((c) => `${c.name} ${c.ms} ms, ${c.missed} ${what} missed`).join("; ");
  return `${times.length} clients moved; SIGKILL → last one recovered on another node: ${sorted.at(-1).ms} ms (${each})`;
}

/** 1, 2, …, n */
const upTo = (n) => Array.from({ length: n }, (_, i) => i + 1);

/** Events the publisher sends to the room. */
const N = 400;
/** The event after whose ack the node is killed. */
const KILL_AT = 150;
/** The last events wait until every moved client is back (so that some arrive live after a recovery, however slow the machine). */
const TAIL = 20;
/** Pause between two events: the kill lands mid-stream and the stream goes on during the way back. */
const PACE_MS = 8;

test("SIGKILL of a node mid-stream: every client of the room gets 1..N in order, once; the killed node's clients are recovered on the others", { skip, timeout: 180_000 }, async (t) => {
  await quiet();
  /** Events acked to the publisher so far. */
  let published = 0;
  // The publisher: a client of node 0 itself (it survives).
  const from = await connected(clients.track(io(nodes[0].url, { forceNew: true, reconnection: false, transports: ["websocket"] })));
  // Round robin, interleaved: each node gets two clients of each kind.
  const members = [];
  for (let round = 1; round <= 2; round++) {
    for (const kind of Object.keys(KINDS)) {
      for (let i = 1; i <= 3; i++) {
        const name = `${kind}${round}.${i}`;
        const open = () => io(`${lb.url}/`, { forceNew: true, ...RETRY, ...KINDS[kind] });
        const m = await placed(name, open, kind === "upgrade", () => published - m.news.items.length);
        m.kind = kind;
        m.news = new Recorder(m.socket, "news", (n) => n);
        m.markers = new Recorder(m.socket, "marker", (n) => n);
        assert.deepEqual(await ack(m.socket, "join", "faults"), { ok: true });
        members.push(m);
      }
    }
  }
  for (const kind of Object.keys(KINDS)) {
    const on = members.filter((m) => m.kind === kind).map((m) => m.node).sort();
    assert.deepEqual(on, [0, 0, 1, 1, 2, 2], `${kind} clients by node`);
  }
  const moving = members.filter((m) => m.node === VICTIM);
  const held = await sessionsOf(nodes);

  let killedAt;
  let allBack;
  for (let n = 1; n <= N; n++) {
    if (n === N - TAIL + 1) await allBack;
    const reply = await ack(from, "broadcast", { event: "news", data: n, rooms: ["faults"] });
    assert.equal(reply.ok, true, JSON.stringify(reply));
    published = n;
    if (n === KILL_AT) {
      killedAt = await killVictim();
      allBack = Promise.all(moving.map((m) => m.back.waitFor(1, BACK_MS)));
      // Awaited before the tail; a failure meanwhile is not unhandled.
      allBack.catch(() => {});
    }
    // The pace of the stream (not a wait for anything).
    await delay(PACE_MS);
  }
  // Every client of the killed node is back (allBack), recovered.
  const times = checkMoves(members, killedAt);
  assert.equal(times.length, 6);
  // The kill landed mid-stream: each came back having missed events, which
  // the recovery replayed (the check below says each arrived once).
  for (const c of times) assert.ok(c.missed > 0, `${c.name} missed ${c.missed}`);

  // One publisher, in order on every node: whoever has the marker has
  // everything that was sent before it.
  assert.equal((await ack(from, "broadcast", { event: "marker", data: "end", rooms: ["faults"] })).ok, true);
  for (const m of members) await m.markers.waitUntil((xs) => xs.includes("end"), `the end for ${m.name}`, DRAIN_MS);
  for (const m of members) assert.deepEqual(m.news.items, upTo(N), `${m.name} (node ${m.node}, moved: ${m.node === VICTIM}) got 1..${N} in order, once`);
  await checkSurvivorsHold(held, moving.length);
  t.diagnostic(`room: ${summary(times, "events")}; ${N} events, the kill after event ${KILL_AT}`);
});

/** Messages each sender sends to the group. */
const PER_SENDER = 40;
/** Once this many sends (of all senders) were acked, the sender on the node to kill sends a burst, and the node is killed. */
const KILL_AFTER_ACKS = 60;
/** Sends in that burst. */
const BURST = 4;
/** Pause between two sends of one sender. */
const SEND_PACE_MS = 20;
/** Bound on one attempt of a send (a longer wait: the ack is lost, send again). */
const SEND_ACK_MS = 5_000;

test("chat in a group across nodes while one is killed: every device ends with every message by seq, once", { skip, timeout: 180_000 }, async (t) => {
  if (nodes[VICTIM].killed) await reviveVictim();
  await quiet();
  /** The group conversation's id, once created. */
  let conv;
  const inConv = (m) => m.conversation === conv;
  /** The seq acked for each client_id sent. */
  const acks = new Map();

  /** A device of `user` through the proxy; what /chat sent it, in order. */
  const device = async (user, kind, n) => {
    const open = () => io(`${lb.url}/chat`, { forceNew: true, ...RETRY, ...KINDS[kind], auth: { token: token(user) } });
    const d = await placed(`${user}.${n}/${kind}`, open, false, () => acks.size - d.messages.items.filter(inConv).length);
    d.user = user;
    d.messages = new Recorder(d.socket, "message", (m) => m);
    // What the device holds: every message that arrived, and what it
    // fetched from the history (see below).
    d.view = new EventEmitter();
    d.socket.on("message", (m) => d.view.emit("message", m));
    d.holds = new Recorder(d.view, "message", (m) => m);
    d.joined = new Recorder(d.socket, "conversation:joined", (x) => x.conversation.id);
    d.filled = [];
    return d;
  };
  const devices = [];
  /** A device of `user` on node `i` (others made on the way are kept: more devices of the user). */
  const deviceOn = async (user, kind, i) => {
    for (let tries = 1; tries <= 3; tries++) {
      const d = await device(user, kind, devices.length + 1);
      devices.push(d);
      if (d.node === i) return d;
    }
    assert.fail(`no device of ${user} reached node ${i}`);
  };
  const senders = [
    await deviceOn("alice", "websocket", 0),
    await deviceOn("bob", "polling", 1),
    await deviceOn("carol", "websocket", VICTIM),
  ];
  // Second devices, wherever the proxy puts them.
  for (const [user, kind] of [
    ["alice", "polling"],
    ["bob", "websocket"],
    ["carol", "polling"],
  ]) {
    devices.push(await device(user, kind, devices.length + 1));
  }
  assert.ok(devices.filter((d) => d.node === VICTIM).length >= 1);

  const created = await ack(senders[0].socket, "conversation:create", { name: "faults", members: ["bob", "carol"] });
  assert.equal(created.ok, true, JSON.stringify(created));
  conv = created.conversation.id;
  for (const d of devices) await d.joined.waitUntil((ids) => ids.includes(conv), `${d.name} joined`);

  // As an application: back without recovery, a device fetches what it
  // missed from the history, after the last seq it holds.
  const seqsOf = (d) => new Set(d.holds.items.filter(inConv).map((m) => m.seq));
  for (const d of devices) {
    d.socket.on("connect", () => {
      if (d.socket.recovered) return;
      d.filling = (async () => {
        const have = seqsOf(d);
        let after = 0;
        while (have.has(after + 1)) after++;
        for (;;) {
          const page = await ack(d.socket, "history", { conversation: conv, after, limit: 100 });
          assert.equal(page.ok, true, JSON.stringify(page));
          d.filled.push(...page.messages);
          for (const m of page.messages) d.view.emit("message", { ...m, conversation: conv });
          if (!page.has_more || page.messages.length === 0) break;
          after = page.messages.at(-1).seq;
        }
      })();
      d.filling.catch(() => {});
    });
  }

  // Each sender's sends, one after the other, as an application: a send
  // whose ack is lost (its node died, or the connection did) is sent again
  // with the same client_id once the device is back.
  let acked = 0;
  let killedAt;
  let resent = 0;
  let duplicates = 0;
  const sendSurely = async (d, payload) => {
    for (let attempt = 1; ; attempt++) {
      if (!d.socket.connected) await once(d.socket, "connect", BACK_MS);
      let reply;
      try {
        reply = await d.socket.timeout(SEND_ACK_MS).emitWithAck("message", payload);
      } catch (err) {
        // "operation has timed out" or "socket has been disconnected".
        if (attempt >= 5) throw err;
        resent++;
        continue;
      }
      assert.equal(reply.ok, true, `${d.name}: ${JSON.stringify(reply)}`);
      if (reply.duplicate) duplicates++;
      return reply;
    }
  };
  /** Each sender's client_ids, in the order sent. */
  const order = new Map(senders.map((d) => [d, []]));
  const run = async (d, count, tag) => {
    for (let k = 1; k <= count; ) {
      // The sender on the node to kill, once enough is acked, sends a
      // burst at once (a user typing fast), and the node is killed with the
      // burst on the wire: none of its acks can have come back.
      const burst = d.node === VICTIM && killedAt === undefined && acked >= KILL_AFTER_ACKS ? BURST : 1;
      const sends = [];
      for (let j = 0; j < burst && k <= count; j++, k++) {
        const clientId = `${d.user}-${tag}${k}`;
        order.get(d).push(clientId);
        const payload = { conversation: conv, client_id: clientId, text: `${d.user} ${tag}${k}` };
        // sendSurely emits at once (before its first await).
        const sent = sendSurely(d, payload).then((reply) => {
          acks.set(clientId, reply.seq);
          acked++;
        });
        sends.push(sent);
      }
      if (burst > 1) killedAt = await killVictim();
      await Promise.all(sends);
      // The pace of the conversation (not a wait for anything).
      await delay(SEND_PACE_MS);
    }
  };
  await Promise.all(senders.map((d) => run(d, PER_SENDER, "")));
  assert.ok(killedAt !== undefined, "the node was killed mid-conversation");
  assert.ok(resent >= 1, "the burst on the killed node was sent again");
  // Each device's messages stored in the order it sent them.
  for (const [d, ids] of order) {
    const seqs = ids.map((id) => acks.get(id));
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), `${d.name}'s messages stored in the order sent`);
  }
  // Once more from each sender, now that everybody is back: the last
  // message from every surviving node.
  await Promise.all(senders.map((d) => run(d, 1, "end")));
  const total = senders.length * (PER_SENDER + 1);
  // Every send stored once: the seqs given are 1..total.
  assert.equal(acks.size, total);
  assert.deepEqual([...acks.values()].sort((a, b) => a - b), upTo(total));

  for (const d of devices) {
    const missing = () => {
      const have = seqsOf(d);
      return upTo(total).filter((s) => !have.has(s));
    };
    await d.holds.waitUntil(() => missing().length === 0, `every message on ${d.name}`, DRAIN_MS).catch((err) => {
      err.message += `: missing seqs ${missing()} (node ${d.node}, back ${JSON.stringify(d.back.items)}, ${d.filled.length} from history)`;
      throw err;
    });
    await d.filling;
  }
  const recovered = [];
  for (const d of devices) {
    const live = d.messages.items.filter(inConv);
    // Each once: nothing twice, live or from the history.
    const seqs = live.map((m) => m.seq);
    assert.equal(new Set(seqs).size, seqs.length, `${d.name} (node ${d.node}) got a message twice: ${seqs}`);
    // By seq, the whole conversation, each message its sender's.
    const all = new Map([...d.filled, ...live].map((m) => [m.seq, m]));
    assert.deepEqual([...all.keys()].sort((a, b) => a - b), upTo(total), d.name);
    for (const [clientId, seq] of acks) assert.equal(all.get(seq).client_id, clientId, `${d.name}: seq ${seq}`);
    // Each sender's messages in the order sent.
    for (const s of senders) {
      const from = live.filter((m) => m.sender === s.user).map((m) => m.seq);
      assert.deepEqual(from, [...from].sort((a, b) => a - b), `${d.name}: ${s.user}'s messages in order`);
    }
    if (d.node === VICTIM) {
      recovered.push(`${d.name}: ${d.back.items.map((b) => (b.recovered ? "recovered" : `not recovered, ${d.filled.length} from history`)).join(", ")}`);
    }
  }
  t.diagnostic(`chat: ${recovered.join("; ")}; ${resent} sends sent again, ${duplicates} acked as duplicates`);
  const times = checkMoves(devices, killedAt);
  // Messages were sent while they were away.
  assert.ok(times.reduce((sum, c) => sum + c.missed, 0) > 0, JSON.stringify(times));
  t.diagnostic(`chat: ${summary(times, "messages")}; ${total} messages from ${senders.length} senders, the kill after ${KILL_AFTER_ACKS} acks, with a burst of ${BURST} sends on the wire`);
});
