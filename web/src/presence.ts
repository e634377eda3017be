// Who is online (/presence): the people list with status dots, the user's
// own status (#status-select), the watch of everyone listed (members of the
// user's conversations and people added by hand), watched again with a fresh
// snapshot at every (re)connection.

import type { Connection } from "./connection";
import { byId, el, formatTime, reconcile } from "./dom";

export type Status = "online" | "away" | "busy" | "offline";

interface PresenceInfo {
  user: string;
  status: Status;
  devices: number;
  last_seen: number | null;
}

/** What the people list's buttons do, provided by the chat and call screens. */
export interface PresenceHooks {
  message(user: string): void;
  call(user: string): void;
}

const MAX_WATCH_PER_EVENT = 500;
const USER_ID = /^[A-Za-z0-9._@-]{1,256}$/;

export class Presence {
  private readonly people = new Map<string, PresenceInfo>();
  private readonly nodes = new Map<string, HTMLLIElement>();
  private readonly select = byId<HTMLSelectElement>("status-select");
  hooks: PresenceHooks = { message: () => {}, call: () => {} };

  constructor(
    private readonly conn: Connection,
    private readonly me: string,
  ) {
    const socket = conn.presence;
    socket.on("connect", () => void this.onConnect());
    socket.on("presence", (p: PresenceInfo) => this.apply(p));

    this.select.addEventListener("change", () => void this.setStatus(this.select.value as Status));

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
      this.watch([user]);
    });
    input.addEventListener("input", () => input.setCustomValidity(""));
    this.render();
  }

  /** Lists and watches these users (those not listed yet). */
  watch(users: string[]): void {
    const fresh = [...new Set(users)].filter((u) => u !== this.me && !this.people.has(u));
    if (fresh.length === 0) return;
    for (const user of fresh) this.people.set(user, { user, status: "offline", devices: 0, last_seen: null });
    this.render();
    if (this.conn.presence.connected) void this.sendWatch(fresh);
  }

  /** Every (re)connection: the watch is per socket, so watch everyone again and take the snapshot. */
  private async onConnect(): Promise<void> {
    this.conn
      .request(this.conn.presence, "watch", { users: [this.me] })
      .then((ack) => {
        const own = (ack.presence as PresenceInfo[])[0];
        if (own && own.status !== "offline") this.select.value = own.status;
      })
      .catch(() => {});
    await this.sendWatch([...this.people.keys()]);
  }

  private async sendWatch(users: string[]): Promise<void> {
    for (let i = 0; i < users.length; i += MAX_WATCH_PER_EVENT) {
      try {
        const ack = await this.conn.request(this.conn.presence, "watch", { users: users.slice(i, i + MAX_WATCH_PER_EVENT) });
        for (const p of ack.presence as PresenceInfo[]) this.apply(p);
      } catch {
        // The next reconnection watches again.
      }
    }
  }

  private apply(p: PresenceInfo): void {
    if (p.user === this.me) {
      if (p.status !== "offline" && this.select.value !== p.status) this.select.value = p.status;
      return;
    }
    if (!this.people.has(p.user)) return;
    this.people.set(p.user, p);
    this.render();
  }

  private async setStatus(status: Status): Promise<void> {
    try {
      const ack = await this.conn.request(this.conn.presence, "status", { status });
      this.apply(ack.presence as PresenceInfo);
    } catch {
      // Not stored: the select shows what the hub has at the next event or reconnection.
    }
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
        li.dataset.status = p.status;
        li.querySelector(".person-status")!.textContent =
          p.status === "offline" && p.last_seen ? `offline · seen ${formatTime(p.last_seen)}` : p.status;
      },
    );
  }
}
