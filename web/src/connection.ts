// The page's one connection to the hub: a single socket.io-client Manager (so
// one WebSocket) with a socket per ESN namespace, the connection state shown
// in #app[data-connection] and the "Reconnecting…" banner, and the request
// helper every feature uses for acked events.

import { Manager, type Socket } from "socket.io-client";
import { byId, show } from "./dom";

export type ConnectionState = "connecting" | "connected" | "reconnecting";

/** A `{ok: false, error}` ack (or a timeout) as an exception. */
export class AckError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** What every successful ack has; the rest depends on the event (docs/EVENTS.md). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Ack = { ok: true } & Record<string, any>;

export class Connection {
  readonly manager: Manager;
  readonly notifications: Socket;
  readonly chat: Socket;
  readonly presence: Socket;
  readonly calls: Socket;
  state: ConnectionState = "connecting";
  private everConnected = false;
  private readonly stateListeners: Array<(state: ConnectionState) => void> = [];

  /**
   * `token()` is asked at every (re)connection, so a token renewed after an
   * auth refusal is the one the next attempt sends. `onRefused` runs when a
   * namespace refuses the socket (socket.io-client does not retry that by
   * itself); it may renew the token and returns whether to try again.
   */
  constructor(token: () => string, onRefused: (error: Error) => Promise<boolean>) {
    this.manager = new Manager(location.origin, {
      // WebSocket first (one connection, no polling round trips); polling
      // only if the WebSocket cannot be opened at all.
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      reconnectionDelay: 500,
      reconnectionDelayMax: 4000,
    });
    const open = (nsp: string) =>
      this.manager.socket(nsp, { auth: (cb: (data: object) => void) => cb({ token: token() }) });
    this.notifications = open("/notifications");
    this.chat = open("/chat");
    this.presence = open("/presence");
    this.calls = open("/calls");

    const update = () => this.update();
    for (const socket of this.sockets()) {
      socket.on("connect", update);
      socket.on("disconnect", update);
      socket.on("connect_error", async (error: Error) => {
        update();
        // A refusal by the namespace (not a transport error: the Manager
        // retries those) leaves the socket inactive.
        if (socket.active) return;
        if (await onRefused(error)) setTimeout(() => socket.connect(), 1000);
      });
    }
    this.manager.on("reconnect_attempt", update);
    this.manager.on("close", update);
  }

  sockets(): Socket[] {
    return [this.notifications, this.chat, this.presence, this.calls];
  }

  onState(listener: (state: ConnectionState) => void): void {
    this.stateListeners.push(listener);
  }

  /**
   * Emits an acked event; resolves with the ack when `ok`, rejects with an
   * AckError otherwise (code `timeout` when no ack came in time).
   */
  request(socket: Socket, event: string, payload?: unknown, timeoutMs = 10_000): Promise<Ack> {
    return new Promise((resolve, reject) => {
      const done = (err: Error | null, ack?: { ok?: boolean; error?: { code?: string; message?: string } }) => {
        if (err) return reject(new AckError("timeout", `${event}: no answer from the hub`));
        if (ack && ack.ok === true) return resolve(ack as Ack);
        reject(new AckError(ack?.error?.code ?? "unknown", ack?.error?.message ?? `${event} failed`));
      };
      const timed = socket.timeout(timeoutMs);
      if (payload === undefined) timed.emit(event, done);
      else timed.emit(event, payload, done);
    });
  }

  private update(): void {
    const all = this.sockets().every((s) => s.connected);
    if (all) this.everConnected = true;
    const state: ConnectionState = all ? "connected" : this.everConnected ? "reconnecting" : "connecting";
    if (state === this.state && this.rendered) return;
    this.state = state;
    this.render();
    for (const listener of this.stateListeners) listener(state);
  }

  private rendered = false;
  /** Set when the hub refused the token for good: shown instead of "Reconnecting…". */
  private ended: string | null = null;

  /** The hub will not take this page's token any more (production: only the host application can give a new one). */
  end(message: string): void {
    this.ended = message;
    this.render();
  }

  /** #app[data-connection] and the #connection-status banner. */
  render(): void {
    this.rendered = true;
    byId("app").dataset.connection = this.state;
    const status = byId("connection-status");
    status.textContent =
      this.ended ?? (this.state === "reconnecting" ? "Reconnecting…" : this.state === "connecting" ? "Connecting…" : "");
    show(status, this.ended !== null || this.state !== "connected");
  }
}
