// Who is online (/presence): the people list with status dots, the user's
// own status (#status-select), the watch of everyone listed (people added by
// hand and direct-conversation partners first, then members of the open
// conversation, then of the others while there is room: at most MAX_LISTED,
// the least recently used dropped and unwatched), watched again with a fresh
// snapshot at every (re)connection. Of the presences of a user it receives
// (events, acks, snapshots), it keeps the one with the highest `version`:
// they may arrive out of order (docs/EVENTS.md, /presence). While the page
// is disconnected nobody's presence is known: each person shows as
// "unknown" (greyed) until the next connection's snapshot says otherwise.

import type { AckError, Connection } from "./connection";
import type { ChosenStatus, UserPresence } from "./contract";
import { byId, el, formatTime, reconcile } from "./dom";


/** A user's presence, as the hub sends it (the contract's `UserPresence`). */
type PresenceInfo = UserPresence;

/** What the people list's buttons do, provided by the chat and call screens. */
export interface PresenceHooks {
  message(user: string): void;
  call(user: string): void;
}

/**
 * How many people the page lists and watches at most. The hub refuses a
 * socket more than `presence.max_watch` (500; the page also watches the
 * user) — whole batches at once, which left everyone offline for good; and
 * nobody reads a 500-person list. Past it the least recently used go.
 */
export const MAX_LISTED = 200;
/** The hub's default `presence.max_watch`: users one socket may watch, and one `watch` may carry. */
const HUB_MAX_WATCH = 500;
const USER_ID = /^[A-Za-z0-9._@-]{1,256}$/;

/**
 * Why someone is listed, which says who goes first when the list is full:
 * "pin" (added by hand, a direct-conversation partner) stays over the rest;
 * "open" (a member of the conversation open now) may push others out;
 * "fill" (a member of another conversation) is listed only while there is room.
 */
export type WatchKind = "pin" | "open" | "fill";

export class Presence {
  private readonly people = new Map<string, PresenceInfo>();
  /** For each person listed: pinned or not, and when last asked for (the order of eviction). */
  private readonly rank = new Map<string, { pinned: boolean; used: number }>();
  private clock = 0;
  /** How many users the hub says this socket watches (from the last ack). */
  private watching = 0;
  /** The version of the user's own presence shown in #status-select. */
  private ownVersion = 0;
  /** The user's own status as the hub last said it, while online. */
  private ownStatus: string | null = null;
  private readonly nodes = new Map<string, HTMLLIElement>();
  /** Who has a presence from the current connection (the others show as unknown). */
  private readonly fresh = new Set<string>();
  private readonly select = byId<HTMLSelectElement>("status-select");
  hooks: PresenceHooks = { message: () => {}, call: () => {} };

  constructor(
    private readonly conn: Connection,
    private readonly me: string,
  ) {
    const socket = conn.presence;
    socket.on("connect", () => void this.onConnect());
    socket.on("presence", (p: PresenceInfo) => this.apply(p));
    socket.on("disconnect", () => {
      // What was shown may change unseen from now on: not shown as if known.
      this.fresh.clear();
      this.render();
    });

    this.select.addEventListener("change", () => void this.setStatus(this.select.value as ChosenStatus));

    const form = byId<HTMLFormElement>("watch-form");
    const input = byId<HTMLInputElement>("watch-name");
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const user = input.value.trim();
      if (!USER_ID.test(user) || user === this.me) {
        input.setCustomValidity(user === this.me ? "That is you." : "A user id: letters, digits, dot, dash or underscore.");
        input.reportValidity();
        return;
      }
      input.setCustomValidity("");
      input.value = "";
      this.watch([user], "pin");
      // Added: the dialog it sits in closes (focus goes back to its opener).
      form.closest("dialog")?.close();
    });
    input.addEventListener("input", () => input.setCustomValidity(""));
    this.render();
  }

  /** Lists and watches these users (see WatchKind), dropping the least recently used past MAX_LISTED. */
  watch(users: string[], kind: WatchKind = "fill"): void {
    const fresh: string[] = [];
    for (const user of new Set(users)) {
      if (user === this.me || !USER_ID.test(user)) continue;
      const known = this.rank.get(user);
      if (known) {
        if (kind !== "fill") known.used = ++this.clock;
        if (kind === "pin") known.pinned = true;
        continue;
      }
      if (kind === "fill" && this.people.size >= MAX_LISTED) continue;
      this.rank.set(user, { pinned: kind === "pin", used: ++this.clock });
      // Version 0: whatever the hub sends about them is newer.
      this.people.set(user, { user, status: "offline", devices: 0, last_seen: null, version: 0 });
      fresh.push(user);
    }
    if (fresh.length === 0) return;
    const evicted = this.evict(this.people.size - MAX_LISTED);
    const added = fresh.filter((u) => this.people.has(u));
    this.render();
    if (!this.conn.presence.connected) return;
    const gone = evicted.filter((u) => !fresh.includes(u));
    if (gone.length) void this.sendUnwatch(gone);
    if (added.length) void this.sendWatch(added);
  }

  /** Drops the `count` least wanted (not pinned first, then the least recently used); returns them. */
  private evict(count: number): string[] {
    if (count <= 0) return [];
    const order = [...this.rank.entries()].sort(([, a], [, b]) => Number(a.pinned) - Number(b.pinned) || a.used - b.used);
    const gone = order.slice(0, count).map(([user]) => user);
    for (const user of gone) {
      this.rank.delete(user);
      this.people.delete(user);
      this.fresh.delete(user);
    }
    return gone;
  }

  /** Every (re)connection: the watch is per socket, so watch everyone again and take the snapshot. */
  private async onConnect(): Promise<void> {
    this.watching = 0;
    // A new connection starts afresh: its snapshots are the truth now,
    // whatever versions the previous one (or a hub since restarted) gave.
    this.ownVersion = 0;
    for (const p of this.people.values()) p.version = 0;
    this.conn
      .request(this.conn.presence, "watch", { users: [this.me] })
      .then((ack) => {
        const own = ack.presence[0];
        if (own) this.apply(own);
      })
      .catch(() => {});
    await this.sendWatch([...this.people.keys()]);
  }

  /**
   * Watches `users` in batches that fit what the hub still allows; a batch
   * refused `too_many_watched` (the hub's limit lower than ours) drops as
   * many of the oldest listed and is sent once more.
   */
  private async sendWatch(users: string[]): Promise<void> {
    let rest = users.filter((u) => this.people.has(u));
    let retried = false;
    while (rest.length > 0) {
      const room = Math.max(1, Math.min(HUB_MAX_WATCH, HUB_MAX_WATCH - 1 - this.watching));
      const batch = rest.slice(0, room);
      try {
        const ack = await this.conn.request(this.conn.presence, "watch", { users: batch });
        if (typeof ack.watching === "number") this.watching = ack.watching;
        for (const p of ack.presence) this.apply(p);
        rest = rest.slice(batch.length).filter((u) => this.people.has(u));
      } catch (err) {
        if ((err as AckError).code !== "too_many_watched" || retried) return; // the next reconnection watches again
        retried = true;
        const gone = this.evict(batch.length).filter((u) => !batch.includes(u));
        this.render();
        if (gone.length) await this.sendUnwatch(gone);
        rest = rest.filter((u) => this.people.has(u));
      }
    }
  }

  private async sendUnwatch(users: string[]): Promise<void> {
    try {
      const ack = await this.conn.request(this.conn.presence, "unwatch", { users });
      if (typeof ack.watching === "number") this.watching = ack.watching;
    } catch {
      // Their events are ignored anyway (apply() skips whoever is not listed).
    }
  }

  /** Shows `p` unless what is shown of its user is as new already (a higher or equal `version`). */
  private apply(p: PresenceInfo): void {
    if (p.user === this.me) {
      if (p.version <= this.ownVersion) return;
      this.ownVersion = p.version;
      if (p.status !== "offline") this.ownStatus = p.status;
      this.showOwnStatus();
      return;
    }
    const known = this.people.get(p.user);
    if (!known) return;
    const newer = p.version > known.version;
    // The first word of this connection about them makes them known again,
    // even when it says what was shown before.
    if (!newer && this.fresh.has(p.user)) return;
    this.fresh.add(p.user);
    if (newer) this.people.set(p.user, p);
    this.render();
  }

  private async setStatus(status: ChosenStatus): Promise<void> {
    try {
      const ack = await this.conn.request(this.conn.presence, "status", { status });
      this.apply(ack.presence);
    } catch {
      // Refused (rate_limited: more changes than the hub allows a user) or
      // not stored: nothing changed, and no event will say so, so the
      // select goes back to the status the hub holds.
      this.showOwnStatus();
    }
  }

  private showOwnStatus(): void {
    if (this.ownStatus !== null && this.select.value !== this.ownStatus) this.select.value = this.ownStatus;
  }

  private render(): void {
    const items = [...this.people.values()].sort((a, b) => a.user.localeCompare(b.user));
    reconcile(
      byId("people"),
      this.nodes,
      items,
      (p) => p.user,
      (p) => {
        const message = el("button", { type: "button", class: "person-message", text: "Message" });
        message.addEventListener("click", () => this.hooks.message(p.user));
        const call = el("button", { type: "button", class: "person-call", text: "Video call" });
        call.addEventListener("click", () => this.hooks.call(p.user));
        return el("li", { class: "person", "data-user": p.user }, [
          el("span", { class: "presence-dot", "aria-hidden": "true" }),
          el("span", { class: "person-who" }, [
            el("span", { class: "person-name", text: p.user }),
            el("span", { class: "person-status" }),
          ]),
          el("span", { class: "person-actions" }, [message, call]),
        ]);
      },
      (li, p) => {
        const known = this.fresh.has(p.user);
        li.dataset.status = known ? p.status : "unknown";
        li.querySelector(".person-status")!.textContent = !known
          ? "unknown"
          : p.status === "offline" && p.last_seen
            ? `offline · seen ${formatTime(p.last_seen)}`
            : p.status;
      },
    );
  }
}
