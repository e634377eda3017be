// The open conversation's message list in the DOM, changed node by node: a
// message is inserted where its seq puts it (a page of older ones prepended
// at once), updated in place, or dropped when the window moves; only the
// inserted node and its next neighbour are re-decorated (grouping by sender,
// the day separator, the "New messages" divider), and read marks move from
// one message to another without touching the rest. It holds no history of
// its own: chat.ts decides which window of seqs is shown.

import { avatar } from "./avatar";
import type { Message } from "./contract";
import { el } from "./dom";

/** One line of the list: a stored message, or a send not acked yet (seq 0). */
export interface Item {
  m: Message;
  pending: boolean;
}

/** Messages of one sender closer than this in time read as one group. */
const GROUP_MS = 5 * 60_000;

/** The local day of a Unix-ms time, as a comparable key. */
function dayKey(ms: number): string {
  return new Date(ms).toDateString();
}

/** "Today", "Yesterday", or the date (the year only when it is not this one). */
export function dayLabel(ms: number, now = new Date()): string {
  const day = new Date(ms);
  if (day.toDateString() === now.toDateString()) return "Today";
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (day.toDateString() === yesterday.toDateString()) return "Yesterday";
  const options: Intl.DateTimeFormatOptions = { weekday: "long", month: "long", day: "numeric" };
  if (day.getFullYear() !== now.getFullYear()) options.year = "numeric";
  return day.toLocaleDateString([], options);
}

// Formatters made once: toLocale*String builds one per call, a measurable
// part of drawing a page of a hundred messages.
const CLOCK = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
const FULL = new Intl.DateTimeFormat([], { dateStyle: "full", timeStyle: "short" });

function clock(ms: number): string {
  return CLOCK.format(ms);
}

const MENTION = /@([A-Za-z0-9._-]+)/g;

/**
 * Fills `p` with `text`, each `@user` the hub found it mentions (a member
 * named so) in a span of its own, the user's own name marked more strongly:
 * text nodes only, never HTML from the text.
 */
function setText(p: HTMLElement, text: string, mentions: Set<string>, me: string): void {
  const parts: Node[] = [];
  let last = 0;
  for (const match of text.matchAll(MENTION)) {
    const user = match[1].replace(/[.]+$/, "");
    if (!mentions.has(user)) continue;
    const start = match.index ?? 0;
    if (start > last) parts.push(document.createTextNode(text.slice(last, start)));
    const end = start + 1 + user.length;
    parts.push(el("span", { class: user === me ? "mention mention-me" : "mention" }, [text.slice(start, end)]));
    last = end;
  }
  if (last === 0) {
    if (p.childNodes.length !== 1 || p.textContent !== text) p.textContent = text;
    return;
  }
  if (last < text.length) parts.push(document.createTextNode(text.slice(last)));
  p.replaceChildren(...parts);
}

export class MessageView {
  /** Seqs shown, ascending (pending sends follow them, outside this list). */
  private readonly seqs: number[] = [];
  private readonly bySeq = new Map<number, HTMLLIElement>();
  /** Pending sends' nodes by client_id. */
  private readonly byClient = new Map<string, HTMLLIElement>();
  private readonly items = new WeakMap<HTMLLIElement, Item>();
  /** Where each member's read mark is drawn now. */
  private readonly markAt = new Map<string, HTMLLIElement>();
  /** The first unread seq when the conversation was opened (0: none): the "New messages" divider goes there. */
  dividerSeq = 0;

  constructor(
    readonly root: HTMLOListElement,
    private readonly me: string,
  ) {}

  get size(): number {
    return this.root.childElementCount;
  }

  first(): number | undefined {
    return this.seqs[0];
  }

  last(): number | undefined {
    return this.seqs[this.seqs.length - 1];
  }

  node(seq: number): HTMLLIElement | undefined {
    return this.bySeq.get(seq);
  }

  /** Empties the list (another conversation, or a jump elsewhere in this one). */
  reset(): void {
    this.root.replaceChildren();
    this.seqs.length = 0;
    this.bySeq.clear();
    this.byClient.clear();
    this.markAt.clear();
  }

  /** The index in `seqs` of the first seq >= `seq`. */
  private lowerBound(seq: number): number {
    let lo = 0;
    let hi = this.seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.seqs[mid] < seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Shows stored messages (any order): new ones inserted where their seq
   * goes — a run older than everything shown is prepended in one go — and
   * those shown updated in place. A pending send they answer becomes the
   * stored message, in place.
   */
  put(messages: Message[]): void {
    if (messages.length === 0) return;
    const sorted = [...messages].sort((a, b) => a.seq - b.seq);
    const touched: HTMLLIElement[] = [];
    const first = this.first();
    const fresh = sorted.filter((m) => !this.bySeq.has(m.seq));
    if (first !== undefined && fresh.length > 1 && fresh[fresh.length - 1].seq < first && fresh.length === sorted.length) {
      // A page of older history: one fragment, one insertion.
      const fragment = document.createDocumentFragment();
      for (const m of fresh) {
        const li = this.create({ m, pending: false });
        fragment.append(li);
        this.bySeq.set(m.seq, li);
        touched.push(li);
      }
      this.seqs.unshift(...fresh.map((m) => m.seq));
      const next = this.bySeq.get(first);
      this.root.prepend(fragment);
      if (next) touched.push(next);
    } else {
      for (const m of sorted) {
        const li = this.bySeq.get(m.seq);
        if (li) {
          this.update(li, { m, pending: false });
          continue;
        }
        let node = m.sender === this.me ? this.byClient.get(m.client_id) : undefined;
        if (node) {
          this.byClient.delete(m.client_id);
          node.remove();
          this.update(node, { m, pending: false });
        } else node = this.create({ m, pending: false });
        const at = this.lowerBound(m.seq);
        const before = at < this.seqs.length ? this.bySeq.get(this.seqs[at])! : this.firstPending();
        this.root.insertBefore(node, before ?? null);
        this.seqs.splice(at, 0, m.seq);
        this.bySeq.set(m.seq, node);
        touched.push(node);
        const after = node.nextElementSibling as HTMLLIElement | null;
        if (after) touched.push(after);
      }
    }
    for (const li of new Set(touched)) this.decorate(li);
  }

  private firstPending(): HTMLLIElement | null {
    for (const li of this.byClient.values()) {
      // byClient keeps insertion order: the first is the oldest pending, shown first.
      return li;
    }
    return null;
  }

  /** Shows a send not acked yet, after everything stored. */
  putPending(m: Message): void {
    if (this.byClient.has(m.client_id)) return;
    const li = this.create({ m, pending: true });
    this.byClient.set(m.client_id, li);
    this.root.append(li);
    this.decorate(li);
  }

  /** Drops a pending send (refused for good). */
  dropPending(clientId: string): void {
    const li = this.byClient.get(clientId);
    if (!li) return;
    this.byClient.delete(clientId);
    const next = li.nextElementSibling as HTMLLIElement | null;
    li.remove();
    if (next) this.decorate(next);
  }

  /** Takes every pending send off the list (it moved away from the newest end, where they belong; they are still sent). */
  dropAllPending(): void {
    for (const li of this.byClient.values()) li.remove();
    this.byClient.clear();
  }

  /** Removes the `count` oldest (`"oldest"`) or newest stored messages from the list. */
  drop(count: number, end: "oldest" | "newest"): number[] {
    const n = Math.min(count, this.seqs.length);
    const gone = end === "oldest" ? this.seqs.splice(0, n) : this.seqs.splice(this.seqs.length - n, n);
    for (const seq of gone) {
      const li = this.bySeq.get(seq);
      this.bySeq.delete(seq);
      if (!li) continue;
      for (const [user, at] of this.markAt) if (at === li) this.markAt.delete(user);
      li.remove();
    }
    // The new first one starts a day and a group of its own now.
    const head = this.root.firstElementChild as HTMLLIElement | null;
    if (end === "oldest" && head) this.decorate(head);
    return gone;
  }

  private create(item: Item): HTMLLIElement {
    const own = item.m.sender === this.me;
    // role="none": inside the role="log" list an li is not a list item (axe: listitem).
    const li = el("li", { class: own ? "message own" : "message", role: "none" }, [
      el("div", { class: "message-row" }, [
        own ? null : avatar(item.m.sender, "avatar message-avatar"),
        el("div", { class: "message-bubble" }, [
          el("div", { class: "message-meta" }, [el("span", { class: "message-sender" }), el("time", { class: "message-time" })]),
          el("p", { class: "message-text", dir: "auto" }),
        ]),
      ]),
    ]);
    this.update(li, item);
    return li;
  }

  /** Sets what one message shows (text, time, state) from its item. */
  private update(li: HTMLLIElement, item: Item): void {
    const { m, pending } = item;
    this.items.set(li, item);
    li.dataset.conversation = String(m.conversation);
    li.dataset.clientId = m.client_id;
    li.dataset.sender = m.sender;
    if (pending) {
      delete li.dataset.seq;
      li.dataset.pending = "true";
    } else {
      li.dataset.seq = String(m.seq);
      delete li.dataset.pending;
    }
    li.querySelector(".message-sender")!.textContent = m.sender === this.me ? "You" : m.sender;
    const time = li.querySelector<HTMLTimeElement>(".message-time")!;
    time.textContent = pending ? "Sending…" : clock(m.ts) + (m.edited_at ? " · edited" : "");
    time.dateTime = new Date(m.ts).toISOString();
    li.title = FULL.format(m.ts);
    const text = li.querySelector<HTMLElement>(".message-text")!;
    const deleted = m.deleted || m.text === null;
    if (deleted) text.textContent = "This message was deleted.";
    else setText(text, m.text ?? "", new Set(m.mentions), this.me);
    text.classList.toggle("deleted", deleted);
    li.classList.toggle("mentions-me", !deleted && m.mentions.includes(this.me) && m.sender !== this.me);
  }

  /**
   * Grouping, day separator and divider of `li`, from the message before
   * it: a new day gets a separator; a message of the same sender within
   * GROUP_MS of the previous one (same day, no divider between) is
   * `continued` (its name, avatar and time are not repeated; the time shows
   * on hover).
   */
  private decorate(li: HTMLLIElement): void {
    const item = this.items.get(li);
    if (!item) return;
    const prevLi = li.previousElementSibling as HTMLLIElement | null;
    const prev = prevLi ? this.items.get(prevLi) : undefined;
    const newDay = !prev || dayKey(prev.m.ts) !== dayKey(item.m.ts);
    const divider = !item.pending && this.dividerSeq > 0 && item.m.seq === this.dividerSeq;
    const continued =
      !!prev && !newDay && !divider && prev.m.sender === item.m.sender && item.m.ts - prev.m.ts < GROUP_MS;
    li.classList.toggle("continued", continued);
    this.separator(li, "day-separator", newDay ? dayLabel(item.m.ts) : null);
    this.separator(li, "new-divider", divider ? "New messages" : null);
  }

  /** Adds, updates or removes one of `li`'s separators (created only where one shows: fewer nodes). */
  private separator(li: HTMLLIElement, className: string, label: string | null): void {
    let node = li.querySelector<HTMLElement>(`:scope > .${className}`);
    if (label === null) {
      node?.remove();
      return;
    }
    if (!node) {
      node = el("div", { class: className, role: "separator" }, [el("span")]);
      // The day first, then the divider, then the message.
      const row = li.querySelector(":scope > .message-row");
      const before = className === "day-separator" ? li.firstElementChild : row;
      li.insertBefore(node, before);
    }
    node.setAttribute("aria-label", label);
    const span = node.firstElementChild!;
    if (span.textContent !== label) span.textContent = label;
  }

  /** Redraws the "New messages" divider after `dividerSeq` changed. */
  redecorate(seq: number): void {
    const li = this.bySeq.get(seq);
    if (li) this.decorate(li);
  }

  /**
   * Draws each member's read mark once, under the latest message shown that
   * they have read (a mark beyond the newest shown is drawn only when the
   * list reaches the conversation's newest message: `atNewest`). Only the
   * messages whose marks changed are touched.
   */
  setMarks(marks: Map<string, number>, atNewest: boolean): void {
    const last = this.last();
    const wanted = new Map<string, HTMLLIElement>();
    if (last !== undefined) {
      for (const [user, seq] of marks) {
        if (user === this.me) continue;
        if (seq > last && !atNewest) continue;
        const at = this.lowerBound(seq + 1) - 1;
        if (at < 0) continue;
        wanted.set(user, this.bySeq.get(this.seqs[at])!);
      }
    }
    const changed = new Set<HTMLLIElement>();
    for (const [user, li] of this.markAt) if (wanted.get(user) !== li) changed.add(li);
    for (const [user, li] of wanted) if (this.markAt.get(user) !== li) changed.add(li);
    this.markAt.clear();
    for (const [user, li] of wanted) this.markAt.set(user, li);
    for (const li of changed) this.drawMarks(li);
    // data-read: an own message some other member has read (the mark is at it or beyond).
    const readUpTo = Math.max(0, ...[...marks].filter(([u]) => u !== this.me).map(([, s]) => s));
    for (const li of this.root.querySelectorAll<HTMLLIElement>("li.message.own[data-seq]")) {
      const read = Number(li.dataset.seq) <= readUpTo;
      if (read !== (li.dataset.read === "true")) {
        if (read) li.dataset.read = "true";
        else delete li.dataset.read;
      }
    }
  }

  private drawMarks(li: HTMLLIElement): void {
    const users = [...this.markAt].filter(([, at]) => at === li).map(([u]) => u).sort();
    let row = li.querySelector<HTMLElement>(":scope > .message-receipt");
    if (users.length === 0) {
      row?.remove();
      return;
    }
    if (!row) {
      row = el("div", { class: "message-receipt" });
      li.append(row);
    }
    row.replaceChildren(
      el("span", { class: "sr-only" }, [`Seen by ${users.join(", ")}`]),
      ...users.map((u) => avatar(u, "avatar receipt-avatar")),
    );
  }
}
