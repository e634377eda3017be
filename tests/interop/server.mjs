// Starts the Switchboard binary for one test file.
//
//   const server = await startServer();   // { url, port, stop(), output() }
//   ...
//   await server.stop();
//
// The binary is `$INTEROP_SERVER_BIN` (a relative path is taken from the current
// directory) or, by default, `target/release/switchboard` in the repo root.
// It runs from the repo root with `serve --config tests/interop/interop.toml`;
// the config listens on port 0 and the server prints exactly one line
// `listening on 127.0.0.1:PORT` on stdout, which gives the port.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, "../..");
export const CONFIG = "tests/interop/interop.toml";

const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 5_000;
const PROBE_TIMEOUT_MS = 5_000;

export function serverBinary() {
  const fromEnv = process.env.INTEROP_SERVER_BIN;
  return fromEnv
    ? path.resolve(process.cwd(), fromEnv)
    : path.join(REPO_ROOT, "target/release/switchboard");
}

/** Servers still running, killed if the test process exits without stop(). */
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * Spawns the server and resolves once it listens.
 * @param {{env?: Record<string,string>, args?: string[], config?: string}} [options]
 *   extra environment (e.g. SWITCHBOARD_ENGINE_PING_INTERVAL_MS) and arguments;
 *   `config`: another configuration file, from the repo root (default CONFIG);
 *   `command`: another server instead ([program, ...args], run from the repo
 *   root; it must print the same `listening on` line), e.g. a reference
 *   Node.js server.
 */
export async function startServer(options = {}) {
  const bin = serverBinary();
  if (!options.command && !existsSync(bin)) {
    throw new Error(
      `server binary not found: ${bin} (build it with ` +
        "`cargo build --release -p switchboard` or set INTEROP_SERVER_BIN)",
    );
  }
  // Each server its own data folder: servers start in parallel, and each
  // creates and migrates its SQLite store there.
  const dataDir = mkdtempSync(path.join(os.tmpdir(), "sb-interop-"));
  const [program, ...programArgs] = options.command ?? [
    bin,
    "serve",
    "--config",
    options.config ?? CONFIG,
    ...(options.args ?? []),
  ];
  const child = spawn(program, programArgs, {
    cwd: REPO_ROOT,
    env: { ...process.env, SWITCHBOARD_DATA_DIR: dataDir, ...(options.env ?? {}) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);

  // Keep the last lines of output for error messages; always drain stderr so
  // that a chatty server never blocks on a full pipe.
  const log = [];
  const remember = (stream) => (line) => {
    log.push(`[${stream}] ${line}`);
    if (log.length > 200) log.shift();
  };
  createInterface({ input: child.stderr }).on("line", remember("stderr"));
  const stdout = createInterface({ input: child.stdout });

  const exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      running.delete(child);
      rmSync(dataDir, { recursive: true, force: true });
      resolve({ code, signal });
    });
  });
  const output = () => log.join("\n");

  let port;
  try {
    port = await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`server did not print "listening on" within ${START_TIMEOUT_MS} ms`)),
        START_TIMEOUT_MS,
      );
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`server exited before listening (code ${code}, signal ${signal})`));
      });
      stdout.on("line", (line) => {
        remember("stdout")(line);
        const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(line.trim());
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
    });
  } catch (err) {
    child.kill("SIGKILL");
    await exited;
    err.message += `\n--- server output ---\n${output()}`;
    throw err;
  }

  // Fail fast (in the file's `before` hook) if the server listens but does
  // not answer: ask for an unknown session, which creates nothing.
  try {
    const res = await fetch(`http://127.0.0.1:${port}/socket.io/?EIO=4&transport=polling&sid=interop-probe`, {
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    const body = await res.text();
    if (res.status !== 400 || !body.includes('"code":1')) {
      throw new Error(`unexpected answer to an unknown sid: ${res.status} ${body.slice(0, 200)}`);
    }
  } catch (err) {
    child.kill("SIGKILL");
    await exited;
    throw new Error(`server on port ${port} does not answer HTTP: ${err.message}\n--- server output ---\n${output()}`);
  }

  let stopping;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    /** Its process id (to freeze it with SIGSTOP). */
    pid: child.pid,
    /** The server's recent stdout/stderr lines, for diagnostics. */
    output,
    /** Whether the process is still alive. */
    get alive() {
      return child.exitCode === null && child.signalCode === null;
    },
    /**
     * SIGKILL at once, as a crash or the kernel's OOM killer would: no
     * goodbye to the cluster, no session closed. Resolves with the exit status.
     */
    kill() {
      stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
        return exited;
      })();
      return stopping;
    },
    /** SIGTERM, then SIGKILL if it has not exited after 5 s; resolves with the exit status. */
    stop() {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return exited;
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
        const status = await exited;
        clearTimeout(timer);
        return status;
      })();
      return stopping;
    },
  };
}
