// The page's one connection to the hub: a single socket.io-client Manager (so
// one WebSocket) with a socket per ESN namespace, the connection state shown
// in #app[data-connection] and the "Reconnecting…" banner, and the request
// helper every feature uses for acked events. Every socket is typed by the
// contract the hub generates (./contract.ts), so a payload or an ack field
// that drifted from the hub's is a compile error here.

import { Manager, type Socket } from "socket.io-client";
import type {
  CallsClientToServerEvents,
  CallsServerToClientEvents,
  ChatClientToServerEvents,
  ChatServerToClientEvents,
  NotificationsClientToServerEvents,
  NotificationsServerToClientEvents,
  PresenceClientToServerEvents,
  PresenceServerToClientEvents,
} from "./contract";
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

/** A successful ack of a namespace the contract does not describe yet (docs/EVENTS.md). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyAck = { ok: true } & Record<string, any>;

export type ChatSocket = Socket<ChatServerToClientEvents, ChatClientToServerEvents>;
export type CallsSocket = Socket<CallsServerToClientEvents, CallsClientToServerEvents>;
export type NotificationsSocket = Socket<NotificationsServerToClientEvents, NotificationsClientToServerEvents>;
export type PresenceSocket = Socket<PresenceServerToClientEvents, PresenceClientToServerEvents>;

/** The events a socket emits, from its type (`Socket<Listen, Emit>`). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type EmitOf<S> = S extends Socket<any, infer C> ? C : never;
type Params<F> = F extends (...args: infer A) => void ? A : never;
/** Whether `F` is an untyped namespace's `(...args: any[]) => void`. */
type Untyped<F> = number extends Params<F>["length"] ? true : false;

/**
 * What `request` takes after the event: the payload (none for an event that
 * takes none, anything on an untyped socket), then a timeout.
 */
export type RequestArgs<F> =
  Untyped<F> extends true
    ? [payload?: unknown, timeoutMs?: number]
    : Params<F> extends [infer P, unknown]
      ? [payload: P, timeoutMs?: number]
      : [payload?: undefined, timeoutMs?: number];

/** What `request` resolves with: the event's `{ok: true, …fields}` ack. */
export type Acked<F> =
  Untyped<F> extends true
    ? AnyAck
    : Params<F> extends [...unknown[], (reply: infer R) => void]
      ? Extract<R, { ok: true }>
      : never;

/** The first retry of a refused socket, and the longest wait between retries. */
const REFUSED_RETRY_MS = 1000;
const REFUSED_RETRY_MAX_MS = 30_000;

/** The hub's reason for refusing a socket: its CONNECT_ERROR's `data.code` (hub/src/auth.rs), else "unknown". */
export function refusalCode(error: Error): string {
  const data = (error as Error & { data?: { code?: unknown } }).data;
  return typeof data?.code === "string" ? data.code : "unknown";
}

/** Refusals a new token cures: the one sent is missing, expired or not the hub's (docs/EVENTS.md, auth). */
export const TOKEN_REFUSALS = new Set(["token_expired", "invalid_token", "missing_token"]);

/** What to do after a refusal: give up, try with a new token, or try the same again later. */
export type Verdict = "stop" | "renewed" | "again";

export class Connection {
  readonly manager: Manager;
  readonly notifications: NotificationsSocket;
  readonly chat: ChatSocket;
  readonly presence: PresenceSocket;
  readonly calls: CallsSocket;
  state: ConnectionState = "connecting";
  private everConnected = false;
  private readonly stateListeners: Array<(state: ConnectionState) => void> = [];

  /**
   * `token()` is asked at every (re)connection, so a token renewed after an
   * auth refusal is the one the next attempt sends. `onRefused` runs when a
   * namespace refuses the socket (socket.io-client does not retry that by
   * itself) with the hub's reason (`error.data.code`, e.g. `token_expired`,
   * see refusalCode); it may renew the token, and says what next: "stop",
   * "renewed" (a new token: tried in a second), or "again" (the same
   * token, after a delay doubling at each refusal in a row: 1 s, 2 s, …
   * 30 s, so that a hub that keeps refusing is not hammered).
   */
  constructor(token: () => string, onRefused: (code: string, error: Error) => Promise<Verdict>) {
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
      let refusals = 0;
      socket.on("connect", () => {
        refusals = 0;
        update();
      });
      socket.on("disconnect", update);
      socket.on("connect_error", async (error: Error) => {
        update();
        // A refusal by the namespace (not a transport error: the Manager
        // retries those) leaves the socket inactive.
        if (socket.active) return;
        const backoff = Math.min(REFUSED_RETRY_MAX_MS, REFUSED_RETRY_MS * 2 ** Math.min(refusals, 10));
        refusals++;
        const verdict = await onRefused(refusalCode(error), error);
        if (verdict === "stop") return;
        setTimeout(() => socket.connect(), verdict === "renewed" ? REFUSED_RETRY_MS : backoff);
      });
    }
    this.manager.on("reconnect_attempt", update);
    this.manager.on("close", update);
  }

  sockets(): Socket[] {
    // Their event maps do not matter here (connection events only).
    return [
      this.notifications as unknown as Socket,
      this.chat as unknown as Socket,
      this.presence as unknown as Socket,
      this.calls as unknown as Socket,
    ];
  }

  onState(listener: (state: ConnectionState) => void): void {
    this.stateListeners.push(listener);
  }

  /**
   * Emits an acked event; resolves with the ack when `ok`, rejects with an
   * AckError otherwise (code `timeout` when no ack came in time). On a typed
   * socket the payload is checked against the event's and the ack has its
   * fields' types.
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  request<S extends Socket<any, any>, E extends keyof EmitOf<S> & string>(
    socket: S,
    event: E,
    ...[payload, timeoutMs = 10_000]: RequestArgs<EmitOf<S>[E]>
  ): Promise<Acked<EmitOf<S>[E]>> {
    return new Promise((resolve, reject) => {
      const done = (err: Error | null, ack?: { ok?: boolean; error?: { code?: string; message?: string } }) => {
        if (err) return reject(new AckError("timeout", `${event}: no answer from the hub`));
        if (ack && ack.ok === true) return resolve(ack as Acked<EmitOf<S>[E]>);
        reject(new AckError(ack?.error?.code ?? "unknown", ack?.error?.message ?? `${event} failed`));
      };
      // The types were checked at the call; emit itself is not generic.
      const timed = (socket as unknown as Socket).timeout(timeoutMs);
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
