// The notifications bell (/notifications): the unread count the hub
// announces, the drop-down list (merged by id, newest first, the newest 200
// kept, fetched again at every (re)connection), marking one or all read, and
// reads made on the user's other devices; and desktop notifications while
// the tab is hidden (DesktopNotifications).

import type { Connection } from "./connection";
import type { Notification } from "./contract";
import { byId, el, formatTime, reconcile, show } from "./dom";

/** How many notifications the page keeps (the newest), and lists. */
const MAX_KEPT = 200;

export class Notifications {
  private readonly items = new Map<number, Notification>();
  private readonly nodes = new Map<string, HTMLLIElement>();
  private unread = 0;
  private readonly bell = byId<HTMLButtonElement>("bell");
  private readonly panel = byId("notifications-panel");

  /** Opens the conversation a `chat:mention` is about (set by main). */
  openConversation: (id: number) => void = () => {};

  constructor(private readonly conn: Connection) {
    const socket = conn.notifications;
    socket.on("connect", () => void this.refresh());
    socket.on("unread", (e) => this.setUnread(e.count));
    socket.on("notification", (e) => {
      this.add([e.notification]);
      this.setUnread(e.unread);
    });
    socket.on("notification:read", (e) => {
      if ("all" in e) for (const n of this.items.values()) n.read = true;
      else
        for (const id of e.ids) {
          const n = this.items.get(id);
          if (n) n.read = true;
        }
      this.render();
    });

    this.bell.addEventListener("click", () => this.toggle(this.panel.hidden));
    byId("notifications-read-all").addEventListener("click", () => void this.readAll());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !this.panel.hidden) {
        this.toggle(false);
        this.bell.focus();
      }
    });
    document.addEventListener("click", (event) => {
      const target = event.target as Node;
      if (!this.panel.hidden && !this.panel.contains(target) && !this.bell.contains(target)) this.toggle(false);
    });
    this.render();
  }

  private toggle(open: boolean): void {
    show(this.panel, open);
    this.bell.setAttribute("aria-expanded", String(open));
    if (open) void this.refresh();
  }

  /** The newest page, merged by id: notifications that arrived meanwhile stay, none twice. */
  private async refresh(): Promise<void> {
    try {
      const ack = await this.conn.request(this.conn.notifications, "list", { limit: 50 });
      this.add(ack.notifications);
      this.render();
    } catch {
      // Opening the bell again or the next reconnection retries.
    }
  }

  /**
   * Merges by id, then keeps only the newest MAX_KEPT: a page left open for
   * weeks (or flooded by a publisher) does not grow without end. The badge
   * is the hub's count, not the length of this list.
   */
  private add(list: Notification[]): void {
    for (const n of list) this.items.set(n.id, n);
    if (this.items.size <= MAX_KEPT) return;
    const ids = [...this.items.keys()].sort((a, b) => b - a);
    for (const id of ids.slice(MAX_KEPT)) this.items.delete(id);
  }

  private setUnread(count: number): void {
    this.unread = count;
    this.render();
  }

  private async markRead(id: number): Promise<void> {
    try {
      const ack = await this.conn.request(this.conn.notifications, "read", { ids: [id] });
      for (const marked of ack.ids) {
        const n = this.items.get(marked);
        if (n) n.read = true;
      }
      const n = this.items.get(id);
      if (n) n.read = true;
      this.render();
    } catch {
      // The button stays: it can be pressed again.
    }
  }

  private async readAll(): Promise<void> {
    try {
      await this.conn.request(this.conn.notifications, "read_all");
      for (const n of this.items.values()) n.read = true;
      this.render();
    } catch {
      // Likewise.
    }
  }

  private render(): void {
    const count = byId("bell-count");
    count.textContent = String(this.unread);
    show(count, this.unread > 0);
    this.bell.setAttribute("aria-label", `Notifications, ${this.unread} unread`);
    const items = [...this.items.values()].sort((a, b) => b.id - a.id);
    show(byId("notifications-empty"), items.length === 0);
    byId<HTMLButtonElement>("notifications-read-all").disabled = this.unread === 0 && items.every((n) => n.read);
    reconcile(
      byId("notifications-list"),
      this.nodes,
      items,
      (n) => String(n.id),
      (n) => {
        const li = el("li", { class: "notification", "data-id": n.id, "data-type": n.type }, [
          el("div", { class: "notification-main" }, [
            el("p", { class: "notification-title", text: n.title }),
            el("p", { class: "notification-body", text: n.body }),
            el("time", { class: "notification-time", text: formatTime(n.created_at) }),
          ]),
        ]);
        const conversation = mentionedIn(n);
        if (conversation !== null) {
          const open = el("button", { type: "button", class: "notification-open link", text: "Open" });
          open.addEventListener("click", () => {
            this.toggle(false);
            this.openConversation(conversation);
            if (!n.read) void this.markRead(n.id);
          });
          li.querySelector(".notification-main")!.append(open);
        }
        return li;
      },
      (li, n) => {
        li.dataset.read = String(n.read);
        const existing = li.querySelector(".notification-read");
        if (n.read) existing?.remove();
        else if (!existing) {
          const button = el("button", { type: "button", class: "notification-read link", text: "Mark read" });
          button.addEventListener("click", () => void this.markRead(n.id));
          li.append(button);
        }
      },
    );
  }
}

/** The conversation a `chat:mention` notification points at, if any. */
function mentionedIn(n: Notification): number | null {
  const data = n.data as { conversation?: unknown } | null;
  return n.type === "chat:mention" && data && typeof data.conversation === "number" ? data.conversation : null;
}

/** What a desktop notification is about, for DesktopNotifications.show(). */
interface Alert {
  title: string;
  body: string;
  /** One notification per tag at a time: a newer one replaces it. */
  tag: string;
  /** What clicking it opens (after focusing the tab). */
  open?: () => void;
}

/**
 * Desktop notifications (the Notification API) while the tab is hidden: a
 * direct message, a mention of the user in a group, an incoming call.
 * Permission is asked only when the user presses "Enable desktop
 * notifications" in the notifications panel, never at load. Clicking one
 * focuses the tab and opens what it is about.
 */
export class DesktopNotifications {
  private readonly button = byId<HTMLButtonElement>("desktop-notifications");
  private readonly state = byId("desktop-notifications-state");

  constructor(private readonly me: string) {
    this.button.addEventListener("click", () => void this.enable());
    this.render();
  }

  private supported(): boolean {
    return typeof window.Notification === "function";
  }

  private async enable(): Promise<void> {
    if (!this.supported()) return;
    try {
      await Notification.requestPermission();
    } catch {
      // An old browser's callback form, or refused: render() says which.
    }
    this.render();
  }

  private render(): void {
    const permission = this.supported() ? Notification.permission : null;
    show(this.button, permission === "default");
    this.state.textContent =
      permission === null
        ? "This browser has no desktop notifications."
        : permission === "granted"
          ? "Desktop notifications are on while this tab is hidden."
          : permission === "denied"
            ? "Desktop notifications are blocked in this browser's site settings."
            : "";
  }

  /** A message arrived (`kind`: its conversation's, when the page knows it). */
  message(m: { conversation: number; sender: string; text: string | null; mentions: string[] }, kind: string | undefined, name: string, open: () => void): void {
    if (m.sender === this.me) return;
    const mention = m.mentions.includes(this.me);
    if (kind !== "direct" && !mention) return;
    this.show({
      title: kind === "direct" ? m.sender : `${m.sender} mentioned you in ${name}`,
      body: m.text ?? "",
      tag: `conversation:${m.conversation}`,
      open,
    });
  }

  /** Someone is calling the user. */
  ringing(from: string, kind: string): void {
    this.show({ title: `${from} is calling you`, body: `Incoming ${kind} call`, tag: "call" });
  }

  private show(alert: Alert): void {
    if (document.visibilityState !== "hidden" || !this.supported() || Notification.permission !== "granted") return;
    try {
      const n = new Notification(alert.title, { body: alert.body, tag: alert.tag });
      n.onclick = () => {
        window.focus();
        n.close();
        alert.open?.();
      };
    } catch {
      // Where only a service worker may show notifications (Chrome on
      // Android): the tab title's unread count still says it.
    }
  }
}
