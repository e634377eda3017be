// The runner of the docs/EVENTS.md examples (the format is described in
// that file, "How the examples are written (and run)"): parse every
// ```example block, then run one against a fresh server.
//
//   const examples = parseExamples(markdownText);   // [{name, section, line, steps}]
//   await runExample(example);                       // rejects on the first wrong step
//
// events-doc.test.mjs runs every example of docs/EVENTS.md as a node:test
// test, and tests this runner on deliberately wrong examples.

import { isDeepStrictEqual } from "node:util";
import { API_KEY, startEsn, token } from "./esn.mjs";
import { WAIT_MS, connected, withTimeout } from "./helpers.mjs";

/** How long a `silent` step lets events on their way arrive first. */
export const SILENT_SETTLE_MS = 200;

/** The step kinds, each with the keys it may have. */
const STEP_KEYS = {
  emit: ["as", "ns", "emit", "args", "ack"],
  receive: ["as", "ns", "receive", "data"],
  silent: ["as", "ns", "silent"],
  connect: ["as", "ns", "connect"],
  disconnect: ["as", "disconnect"],
  http: ["http", "body", "status", "response"],
};

function kindOf(step) {
  const kinds = Object.keys(STEP_KEYS).filter((k) => k in step);
  if (kinds.length !== 1) {
    throw new Error(`a step is one of ${Object.keys(STEP_KEYS).join(", ")}: ${JSON.stringify(step)}`);
  }
  const kind = kinds[0];
  const extra = Object.keys(step).filter((k) => !STEP_KEYS[kind].includes(k));
  if (extra.length) throw new Error(`unknown key(s) ${extra.join(", ")} in a ${kind} step`);
  if (kind !== "http" && typeof step.as !== "string") throw new Error(`a ${kind} step needs "as": "user/device"`);
  if (kind !== "http" && kind !== "disconnect" && typeof step.ns !== "string") {
    throw new Error(`a ${kind} step needs "ns"`);
  }
  if (kind === "emit" && !("ack" in step)) throw new Error(`an emit step needs "ack" (the pattern of its ack)`);
  if (kind === "receive" && !("data" in step)) throw new Error(`a receive step needs "data"`);
  if (kind === "connect" && step.connect !== true) throw new Error(`"connect" is true`);
  if (kind === "disconnect" && step.disconnect !== true) throw new Error(`"disconnect" is true`);
  if (kind === "emit" && "args" in step && !Array.isArray(step.args)) throw new Error(`"args" is an array`);
  return kind;
}

/**
 * Every ```example block of `markdown`, in order: its `name` (section,
 * subsection, position in the section, line), `section` (the `## `
 * heading), `line` (1-based, of the opening fence) and `steps` (each with
 * its `line` and `kind`). A block that does not parse keeps its `error`,
 * so that running it fails with it.
 */
export function parseExamples(markdown, file = "EVENTS.md") {
  const lines = markdown.split("\n");
  const examples = [];
  let section = "(no section)";
  let subsection = null;
  let position = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^(\s*)(`{3,}|~{3,})\s*(\S*)/.exec(line);
    if (!fence) {
      const heading = /^(#{2,3})\s+(.*\S)\s*$/.exec(line);
      if (heading?.[1] === "##") {
        section = heading[2];
        subsection = null;
        position = 0;
      } else if (heading?.[1] === "###") {
        subsection = heading[2];
      }
      continue;
    }
    // A fenced block: skip to its end; keep it if it is an example.
    const [, , marks, info] = fence;
    const start = i;
    const body = [];
    for (i++; i < lines.length && !lines[i].trim().startsWith(marks); i++) {
      body.push({ text: lines[i], line: i + 1 });
    }
    if (info !== "example") continue;
    position++;
    const where = subsection ? `${section} › ${subsection}` : section;
    const example = {
      name: `${where} — example ${position} (${file}:${start + 1})`,
      section,
      line: start + 1,
      steps: [],
    };
    try {
      if (i >= lines.length) throw new Error("the block is not closed");
      for (const { text, line: at } of body) {
        if (!text.trim()) continue;
        let step;
        try {
          step = JSON.parse(text);
        } catch (err) {
          throw new Error(`line ${at}: not JSON (${err.message})`);
        }
        if (step === null || typeof step !== "object" || Array.isArray(step)) {
          throw new Error(`line ${at}: a step is a JSON object`);
        }
        try {
          example.steps.push({ ...step, kind: kindOf(step), line: at });
        } catch (err) {
          throw new Error(`line ${at}: ${err.message}`);
        }
      }
      if (!example.steps.length) throw new Error("an example has at least one step");
    } catch (err) {
      example.error = err.message;
    }
    examples.push(example);
  }
  return examples;
}

const show = (value) => (value === undefined ? "nothing" : JSON.stringify(value));

/**
 * Matches `value` to `pattern` (see EVENTS.md), binding `$name`s into
 * `vars`; returns null, or what differs (with its path).
 */
export function match(pattern, value, vars, path = "") {
  const here = path || "(the value)";
  if (typeof pattern === "string" && pattern === "*") {
    return value === undefined ? `${here}: expected something, got nothing` : null;
  }
  if (typeof pattern === "string" && /^\$[A-Za-z_][A-Za-z0-9_]*$/.test(pattern)) {
    if (value === undefined) return `${here}: expected ${pattern}, got nothing`;
    if (!(pattern in vars)) {
      vars[pattern] = value;
      return null;
    }
    return isDeepStrictEqual(vars[pattern], value)
      ? null
      : `${here}: expected ${pattern} = ${show(vars[pattern])}, got ${show(value)}`;
  }
  if (Array.isArray(pattern)) {
    if (!Array.isArray(value)) return `${here}: expected an array, got ${show(value)}`;
    if (value.length !== pattern.length) {
      return `${here}: expected ${pattern.length} items, got ${value.length}: ${show(value)}`;
    }
    for (let i = 0; i < pattern.length; i++) {
      const differs = match(pattern[i], value[i], vars, `${path}[${i}]`);
      if (differs) return differs;
    }
    return null;
  }
  if (pattern !== null && typeof pattern === "object") {
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return `${here}: expected an object, got ${show(value)}`;
    }
    for (const key of Object.keys(pattern)) {
      const differs = match(pattern[key], value[key], vars, path ? `${path}.${key}` : key);
      if (differs) return differs;
    }
    return null;
  }
  return isDeepStrictEqual(pattern, value) ? null : `${here}: expected ${show(pattern)}, got ${show(value)}`;
}

/** `value` with every string "$name" replaced by what `vars` bound. */
export function substitute(value, vars) {
  if (typeof value === "string" && /^\$[A-Za-z_][A-Za-z0-9_]*$/.test(value)) {
    if (!(value in vars)) throw new Error(`${value} is not bound by an earlier step`);
    return vars[value];
  }
  if (Array.isArray(value)) return value.map((v) => substitute(v, vars));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, vars)]));
  }
  return value;
}

/** What one socket received, in order; each event is taken at most once. */
class Inbox {
  constructor(socket) {
    this.events = [];
    this.waiters = new Set();
    socket.onAny((event, ...args) => {
      this.events.push({ event, args, taken: false });
      for (const wake of this.waiters) wake();
    });
  }

  untaken(event) {
    return this.events.find((e) => !e.taken && e.event === event);
  }

  /** The next `event` not taken yet, waiting for it (at most `ms`). */
  async take(event, ms = WAIT_MS) {
    let found = this.untaken(event);
    if (!found) {
      let wake;
      const arrived = new Promise((resolve) => {
        wake = () => {
          const next = this.untaken(event);
          if (next) resolve(next);
        };
        this.waiters.add(wake);
      });
      try {
        found = await withTimeout(arrived, ms, `"${event}"`);
      } catch {
        const got = this.events.filter((e) => !e.taken).map((e) => e.event);
        throw new Error(`no "${event}" within ${ms} ms (not taken yet: ${show(got)})`);
      } finally {
        this.waiters.delete(wake);
      }
    }
    found.taken = true;
    return found;
  }
}

/** Runs `example` against a fresh server; rejects at the first wrong step. */
export async function runExample(example, { env } = {}) {
  if (example.error) throw new Error(example.error);
  const esn = await startEsn({ env });
  const vars = {};
  const devices = new Map(); // "user/device" -> {device, sockets: Map(ns -> {socket, inbox})}
  const deviceOf = (name) => {
    let entry = devices.get(name);
    if (!entry) {
      const user = name.split("/")[0];
      if (!user) throw new Error(`"${name}" names no user ("user/device")`);
      entry = { user, device: esn.device(user), sockets: new Map() };
      devices.set(name, entry);
    }
    return entry;
  };
  const open = async (name, ns) => {
    const entry = deviceOf(name);
    if (entry.closed) {
      // Back after a disconnect: a new connection, as after a page reload.
      entry.device = esn.device(entry.user);
      entry.sockets = new Map();
      entry.closed = false;
    }
    if (entry.sockets.has(ns)) throw new Error(`${name} is already connected to ${ns}`);
    const socket = entry.device.manager.socket(ns, { auth: { token: token(entry.user) } });
    const inbox = new Inbox(socket);
    entry.sockets.set(ns, { socket, inbox });
    socket.connect();
    try {
      await connected(socket);
    } catch (err) {
      throw new Error(`${name} could not connect to ${ns}: ${err.message} ${show(err.data)}`);
    }
  };
  const socketOf = (step) => {
    const entry = devices.get(step.as)?.sockets.get(step.ns);
    if (!entry) throw new Error(`${step.as} is not connected to ${step.ns}`);
    return entry;
  };
  try {
    // Every device connected to every namespace it is mentioned with, in
    // order of first mention, but where its first step there is `connect`.
    const first = new Map();
    for (const step of example.steps) {
      if (step.kind === "http" || step.kind === "disconnect") continue;
      const key = JSON.stringify([step.as, step.ns]);
      if (!first.has(key)) first.set(key, step);
    }
    for (const step of first.values()) {
      if (step.kind !== "connect") await open(step.as, step.ns);
    }
    for (const step of example.steps) {
      try {
        await runStep(step);
      } catch (err) {
        err.message = `line ${step.line} (${step.kind}${step.as ? ` as ${step.as}` : ""}): ${err.message}`;
        throw err;
      }
    }
  } finally {
    await esn.stop();
  }

  async function runStep(step) {
    switch (step.kind) {
      case "connect":
        return open(step.as, step.ns);
      case "disconnect": {
        const entry = devices.get(step.as);
        if (!entry) throw new Error(`${step.as} is not connected`);
        entry.device.close();
        entry.closed = true;
        return;
      }
      case "emit": {
        const { socket } = socketOf(step);
        const args = substitute(step.args ?? [], vars);
        let ack;
        try {
          ack = await socket.timeout(WAIT_MS).emitWithAck(step.emit, ...args);
        } catch {
          throw new Error(`no ack to "${step.emit}" within ${WAIT_MS} ms`);
        }
        const differs = match(step.ack, ack, vars);
        if (differs) throw new Error(`ack of "${step.emit}": ${differs}\n  the ack: ${show(ack)}`);
        return;
      }
      case "receive": {
        const { inbox } = socketOf(step);
        const got = await inbox.take(step.receive);
        const differs = match(step.data, got.args[0], vars);
        if (differs) throw new Error(`"${step.receive}": ${differs}\n  received: ${show(got.args[0])}`);
        return;
      }
      case "silent": {
        const { inbox } = socketOf(step);
        await new Promise((resolve) => setTimeout(resolve, SILENT_SETTLE_MS));
        const got = inbox.untaken(step.silent);
        if (got) throw new Error(`expected no "${step.silent}", got ${show(got.args[0])}`);
        return;
      }
      case "http": {
        const m = /^([A-Z]+)\s+(\/\S*)$/.exec(step.http);
        if (!m) throw new Error(`"http" is "METHOD /path": ${show(step.http)}`);
        const body = "body" in step ? JSON.stringify(substitute(step.body, vars)) : undefined;
        const res = await fetch(`${esn.url}${m[2]}`, {
          method: m[1],
          headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
          body,
        });
        const text = await res.text();
        let reply;
        try {
          reply = text ? JSON.parse(text) : undefined;
        } catch {
          reply = text;
        }
        if ("status" in step && res.status !== step.status) {
          throw new Error(`${step.http}: status ${res.status}, expected ${step.status}: ${text.slice(0, 300)}`);
        }
        if ("response" in step) {
          const differs = match(step.response, reply, vars);
          if (differs) throw new Error(`${step.http}: ${differs}\n  the response: ${show(reply)}`);
        }
        return;
      }
    }
  }
}
