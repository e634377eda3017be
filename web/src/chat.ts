// The chat screen (/chat): the conversations list with unread badges, the
// open conversation's messages (kept per conversation by seq, so a message
// is never shown twice and always in order), history on scroll, sends that
// survive a cut (a client_id per message, resent until acked), typing and
// read marks, and the catch-up after a reconnection.

import type { Connection } from "./connection";
import { AckError } from "./connection";
import type { Message, Summary } from "./contract";
import { byId, el, formatTime, randomId, reconcile, show } from "./dom";
import type { WatchKind } from "./presence";

// The hub's types, from the generated contract: what the page stores is what
// the hub sends.
export type { Message };
/** A conversation as this user sees it (the hub's `Summary`). */
export type Conversation = Summary;

/** What the page keeps of one conversation. */
interface ConvState {
  conv: Conversation;
  /** Messages by seq: one entry per seq, whatever delivered it (live, history, catch-up). */
  messages: Map<number, Message>;
  /** Whether its history was fetched (then the catch-up after a reconnect fetches what follows). */
  loaded: boolean;
  hasMoreBefore: boolean;
  loadingOlder: boolean;
  syncing: boolean;
  resync: boolean;
  /** Other members' read marks (from `read` receipts). */
  receipts: Map<string, number>;
  /** Who is typing here, with the safety-net timer that clears each. */
  typing: Map<string, number>;
  /** The highest seq this page sent a read mark for. */
  readSent: number;
}

/** A message sent from this page and not acked yet. */
interface Pending {
  clientId: string;
  conversation: number;
  text: string;
  ts: number;
}

/** What the chat screen needs from the rest of the page. */
export interface ChatHooks {
  /** Members of the user's conversations are watched on /presence (see presence.ts's WatchKind). */
  watch(users: string[], kind: WatchKind): void;
}

const PAGE = 50;
/** The hub's `chat.max_text_chars` default: the longest text it takes, in characters (code points). */
const MAX_TEXT_CHARS = 4000;
const TYPING_RENEW_MS = 3000;
const TYPING_CLEAR_MS = 6000;

export class Chat {
  private readonly convs = new Map<number, ConvState>();
  /** Sends not acked yet, in the order written (a Map keeps insertion order). */
  private readonly pending = new Map<string, Pending>();
  private sending = false;
  private sendGeneration = 0;
  private openId: number | null = null;
  private typingSentAt = 0;
  private lastInputAt = 0;
  private typingConv: number | null = null;
  private connectedOnce = false;

  private readonly list = byId<HTMLUListElement>("conversations");
  private readonly messagesEl = byId<HTMLOListElement>("messages");
  private readonly composer = byId<HTMLFormElement>("composer");
  private readonly text = byId<HTMLTextAreaElement>("composer-text");
  private readonly convNodes = new Map<string, HTMLLIElement>();
  private readonly messageNodes = new Map<string, HTMLLIElement>();

  /** Called whenever a conversation is shown (by the user, a link or the page's address): the shell routes on it. */
  onOpened: (id: number) => void = () => {};

  /** What the page knows of conversation `id` (its kind, name, members), if anything. */
  conversation(id: number): Conversation | undefined {
    return this.convs.get(id)?.conv;
  }

  constructor(
    private readonly conn: Connection,
    private readonly me: string,
    private readonly hooks: ChatHooks,
  ) {
    const chat = conn.chat;
    chat.on("connect", () => void this.onConnect());
    chat.on("message", (m: Message) => this.onMessage(m));
    chat.on("message:updated", (m: Message) => this.onUpdated(m));
    chat.on("message:deleted", (m: Message) => this.onUpdated(m));
    chat.on("conversation:joined", (e: { conversation: Conversation }) => this.upsert(e.conversation));
    chat.on("conversation:member_added", (e: { conversation: number; users: string[] }) => {
      const st = this.convs.get(e.conversation);
      if (!st) return void this.refreshConversations();
      st.conv.members = [...new Set([...st.conv.members, ...e.users])].sort();
      st.conv.member_count = st.conv.members.length;
      this.watchMembers(st, e.users);
      this.renderAll();
    });
    const gone = (e: { conversation: number; user: string }) => this.onMemberGone(e.conversation, e.user);
    chat.on("conversation:member_left", gone);
    chat.on("conversation:member_removed", gone);
    chat.on("read", (e: { conversation: number; user: string; seq: number; unread?: number }) => this.onRead(e));
    chat.on("typing", (e: { conversation: number; user: string; typing: boolean }) => this.onTyping(e));

    this.composer.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendFromComposer();
    });
    this.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.sendFromComposer();
      }
    });
    this.text.addEventListener("input", () => this.onComposerInput());
    this.text.addEventListener("blur", () => this.stopTyping());
    this.messagesEl.addEventListener("scroll", () => {
      if (this.messagesEl.scrollTop < 80) void this.loadOlder();
      this.maybeMarkRead();
    });
    document.addEventListener("visibilitychange", () => this.maybeMarkRead());
    window.addEventListener("focus", () => this.maybeMarkRead());

    byId<HTMLFormElement>("new-group").addEventListener("submit", (event) => {
      event.preventDefault();
      void this.createGroup();
    });
    this.renderOpen();
  }

  // --- connection -------------------------------------------------------

  /** Every (re)connection: the list again, then what each loaded conversation missed, then the sends not acked. */
  private async onConnect(): Promise<void> {
    const reconnect = this.connectedOnce;
    this.connectedOnce = true;
    // Typing indicators from before the cut may never get their `false`.
    for (const st of this.convs.values()) this.clearTyping(st);
    this.typingSentAt = 0;
    this.restartSends();
    await this.refreshConversations();
    if (reconnect) for (const st of this.convs.values()) if (st.loaded) void this.syncAfter(st);
    if (this.openId !== null) {
      const st = this.convs.get(this.openId);
      if (st && !st.loaded) void this.loadNewest(st);
    }
  }

  /** The user's conversations, all pages, merged into what the page has. */
  async refreshConversations(): Promise<void> {
    let before: string | undefined = undefined;
    for (let page = 0; page < 20; page++) {
      let ack;
      try {
        ack = await this.conn.request(this.conn.chat, "conversations", before === undefined ? { limit: 100 } : { limit: 100, before });
      } catch {
        return;
      }
      for (const conv of ack.conversations) this.upsert(conv, false);
      if (!ack.has_more || ack.next === undefined || ack.next === null) break;
      before = ack.next;
    }
    this.renderAll();
  }

  // --- conversations ----------------------------------------------------

  private upsert(conv: Conversation, render = true): ConvState {
    let st = this.convs.get(conv.id);
    if (!st) {
      st = {
        conv,
        messages: new Map(),
        loaded: false,
        hasMoreBefore: true,
        loadingOlder: false,
        syncing: false,
        resync: false,
        receipts: new Map(),
        typing: new Map(),
        readSent: 0,
      };
      this.convs.set(conv.id, st);
    } else {
      // Counters only move forward: a list answered before a live message must not undo it.
      const old = st.conv;
      st.conv = {
        ...conv,
        last_seq: Math.max(old.last_seq, conv.last_seq),
        last_read_seq: Math.max(old.last_read_seq, conv.last_read_seq),
        last_activity: Math.max(old.last_activity, conv.last_activity),
        last_message: (conv.last_message?.seq ?? 0) >= (old.last_message?.seq ?? 0) ? conv.last_message : old.last_message,
      };
      if (conv.members.length < conv.member_count && old.members.length > conv.members.length) st.conv.members = old.members;
    }
    this.watchMembers(st, st.conv.members);
    if (render) this.renderAll();
    return st;
  }

  /**
   * Lists `users` of `st` on /presence: a direct partner always; a group's
   * members push others out only while it is open (being put into big
   * groups must not crowd out the people the user chose).
   */
  private watchMembers(st: ConvState, users: string[]): void {
    const others = users.filter((u) => u !== this.me);
    const kind: WatchKind = st.conv.kind === "direct" ? "pin" : this.openId === st.conv.id ? "open" : "fill";
    this.hooks.watch(others, kind);
  }

  private onMemberGone(id: number, user: string): void {
    const st = this.convs.get(id);
    if (!st) return;
    if (user === this.me) {
      this.convs.delete(id);
      if (this.openId === id) this.openId = null;
    } else {
      st.conv.members = st.conv.members.filter((u) => u !== user);
      st.conv.member_count = Math.max(0, st.conv.member_count - 1);
    }
    this.renderAll();
  }

  /** Opens the direct conversation with `user`, creating it if need be. */
  async openDirect(user: string): Promise<void> {
    for (const st of this.convs.values()) {
      const m = st.conv.members;
      if (st.conv.kind === "direct" && m.includes(user) && (user === this.me || m.includes(this.me))) {
        return this.open(st.conv.id);
      }
    }
    try {
      const ack = await this.conn.request(this.conn.chat, "conversation:create", { direct: user });
      const st = this.upsert(ack.conversation);
      this.open(st.conv.id);
    } catch (err) {
      this.showError(`Could not open the conversation with ${user}: ${(err as Error).message}`);
    }
  }

  private async createGroup(): Promise<void> {
    const nameInput = byId<HTMLInputElement>("group-name");
    const membersInput = byId<HTMLInputElement>("group-members");
    const error = byId("new-group-error");
    const name = nameInput.value.trim();
    const members = [...new Set(membersInput.value.split(",").map((s) => s.trim()).filter((s) => s && s !== this.me))];
    if (!name) {
      error.textContent = "Give the group a name.";
      nameInput.focus();
      return;
    }
    error.textContent = "";
    try {
      const ack = await this.conn.request(this.conn.chat, "conversation:create", { name, members });
      nameInput.value = "";
      membersInput.value = "";
      const st = this.upsert(ack.conversation);
      this.open(st.conv.id);
    } catch (err) {
      error.textContent = `Could not create the group: ${(err as Error).message}`;
    }
  }

  /** Opens a conversation by id, listing the conversations again first if this page does not know it yet. */
  async openById(id: number): Promise<void> {
    if (!this.convs.has(id)) await this.refreshConversations();
    this.open(id);
  }

  /** Shows a conversation: its newest page the first time, what it missed otherwise. */
  open(id: number): void {
    const st = this.convs.get(id);
    if (!st) return;
    if (this.openId !== id) {
      this.stopTyping();
      this.openId = id;
      this.messageNodes.clear();
      this.messagesEl.replaceChildren();
      this.watchMembers(st, st.conv.members);
    }
    this.renderAll();
    if (!st.loaded) void this.loadNewest(st);
    else {
      this.scrollToBottom();
      void this.syncAfter(st);
    }
    this.text.focus();
    this.onOpened(id);
  }

  private async loadNewest(st: ConvState): Promise<void> {
    try {
      const ack = await this.conn.request(this.conn.chat, "history", { conversation: st.conv.id, limit: PAGE });
      // Live messages held from before may leave a gap below the page: the
      // page is the start (older ones come back on scroll, newer ones by syncAfter).
      st.messages.clear();
      this.addMessages(st, ack.messages);
      st.hasMoreBefore = Boolean(ack.has_more);
      st.loaded = true;
    } catch (err) {
      return this.showError(`Could not load the conversation: ${(err as Error).message}`);
    }
    if (this.openId === st.conv.id) {
      this.renderMessages();
      this.scrollToBottom();
      this.fillViewport(st);
      this.maybeMarkRead();
    }
    // Anything that arrived between the page and now (or a gap) is fetched.
    void this.syncAfter(st);
  }

  /** Older history: the page before the oldest seq shown, keeping what the user looks at in place. */
  private async loadOlder(): Promise<void> {
    const st = this.openId === null ? undefined : this.convs.get(this.openId);
    if (!st || !st.loaded || !st.hasMoreBefore || st.loadingOlder) return;
    const oldest = Math.min(...st.messages.keys());
    if (!Number.isFinite(oldest) || oldest <= 1) {
      st.hasMoreBefore = false;
      return;
    }
    st.loadingOlder = true;
    try {
      const ack = await this.conn.request(this.conn.chat, "history", { conversation: st.conv.id, before: oldest, limit: PAGE });
      this.addMessages(st, ack.messages);
      st.hasMoreBefore = Boolean(ack.has_more);
    } catch {
      // Scrolling up again retries.
    } finally {
      st.loadingOlder = false;
    }
    if (this.openId !== st.conv.id) return;
    const box = this.messagesEl;
    const fromBottom = box.scrollHeight - box.scrollTop;
    this.renderMessages();
    box.scrollTop = box.scrollHeight - fromBottom;
    this.fillViewport(st);
  }

  /** A page that does not fill the list cannot be scrolled up: load more until it does. */
  private fillViewport(st: ConvState): void {
    const box = this.messagesEl;
    if (st.hasMoreBefore && box.scrollHeight <= box.clientHeight + 80) void this.loadOlder();
  }

  /**
   * Fetches every message after the last seq held without a gap, page by
   * page until `has_more` is false: the catch-up after a reconnect, and the
   * repair when a live message skips seqs.
   */
  private async syncAfter(st: ConvState): Promise<void> {
    if (st.syncing) {
      st.resync = true;
      return;
    }
    st.syncing = true;
    try {
      do {
        st.resync = false;
        let after = this.contiguousTop(st);
        for (let page = 0; page < 1000; page++) {
          const ack = await this.conn.request(this.conn.chat, "history", { conversation: st.conv.id, after, limit: 100 });
          const messages = ack.messages;
          this.addMessages(st, messages);
          if (!ack.has_more || messages.length === 0) break;
          after = messages[messages.length - 1].seq;
        }
      } while (st.resync);
    } catch {
      // The next reconnect (or live message with a gap) tries again.
    } finally {
      st.syncing = false;
    }
    this.afterChange(st);
  }

  /** The highest seq such that every seq from the oldest held up to it is held. */
  private contiguousTop(st: ConvState): number {
    if (st.messages.size === 0) return 0;
    let seq = Math.min(...st.messages.keys());
    while (st.messages.has(seq + 1)) seq++;
    return seq;
  }

  // --- messages ---------------------------------------------------------

  private addMessages(st: ConvState, messages: Message[]): void {
    for (const m of messages) this.store(st, m);
  }

  /** Keeps one message by seq; settles the pending send it answers. */
  private store(st: ConvState, m: Message): void {
    st.messages.set(m.seq, m);
    if (m.sender === this.me && this.pending.has(m.client_id)) this.pending.delete(m.client_id);
    const c = st.conv;
    if (m.seq > c.last_seq) c.last_seq = m.seq;
    if (m.seq >= (c.last_message?.seq ?? 0)) c.last_message = m;
    if (m.ts > c.last_activity) c.last_activity = m.ts;
    // Sending moves the sender's read mark to the message (any device of theirs).
    if (m.sender === this.me && m.seq > c.last_read_seq) c.last_read_seq = m.seq;
    c.unread = Math.max(0, c.last_seq - c.last_read_seq);
  }

  private onMessage(m: Message): void {
    const st = this.convs.get(m.conversation);
    if (!st) {
      // A conversation this page has not heard of yet (its `conversation:joined` was missed).
      void this.refreshConversations();
      return;
    }
    const gap = st.loaded && st.messages.size > 0 && m.seq > this.contiguousTop(st) + 1;
    const fresh = !st.messages.has(m.seq);
    this.store(st, m);
    this.clearTypingOf(st, m.sender);
    if (gap) void this.syncAfter(st);
    // Screen readers hear of messages elsewhere; the open one is a role="log" (read out by itself).
    if (fresh && m.sender !== this.me && m.conversation !== this.openId) {
      byId("announcer").textContent = `New message from ${m.sender} in ${this.name(st.conv)}: ${st.conv.unread} unread`;
    }
    this.afterChange(st, m.sender === this.me);
  }

  private onUpdated(m: Message): void {
    const st = this.convs.get(m.conversation);
    if (!st) return;
    // Only a message held is replaced: an edit of an old one not loaded must
    // not sit beside the loaded window (a hole before it would make every
    // catch-up fetch the whole history); it shows when scrolled back to.
    if (st.messages.has(m.seq)) st.messages.set(m.seq, m);
    if (st.conv.last_message?.seq === m.seq) st.conv.last_message = m;
    this.afterChange(st);
  }

  private onRead(e: { conversation: number; user: string; seq: number; unread?: number }): void {
    const st = this.convs.get(e.conversation);
    if (!st) return;
    if (e.user === this.me) {
      // One of the user's devices read: the badge drops everywhere.
      st.conv.last_read_seq = Math.max(st.conv.last_read_seq, e.seq);
      st.conv.unread = typeof e.unread === "number" ? e.unread : Math.max(0, st.conv.last_seq - st.conv.last_read_seq);
    } else {
      st.receipts.set(e.user, Math.max(st.receipts.get(e.user) ?? 0, e.seq));
    }
    this.afterChange(st);
  }

  /** Re-renders after a change to `st`, keeping the reader at the bottom if they were there. */
  private afterChange(st: ConvState, own = false): void {
    if (this.openId === st.conv.id) {
      const stick = own || this.atBottom();
      this.renderMessages();
      if (stick) this.scrollToBottom();
      this.maybeMarkRead();
    }
    this.renderConversations();
  }

  // --- sending ----------------------------------------------------------

  private sendFromComposer(): void {
    const text = this.text.value;
    if (this.openId === null || !text.trim()) return;
    // The hub refuses a longer text for good: say so while it is still in the composer.
    const length = [...text].length;
    if (length > MAX_TEXT_CHARS) {
      this.showError(`Too long to send: ${length} characters, at most ${MAX_TEXT_CHARS}.`);
      return;
    }
    this.text.value = "";
    this.stopTyping();
    const p: Pending = { clientId: randomId(), conversation: this.openId, text, ts: Date.now() };
    this.pending.set(p.clientId, p);
    const st = this.convs.get(p.conversation);
    if (st) this.afterChange(st, true);
    this.pump();
  }

  /**
   * Sends the oldest pending message, then the next once it is acked: one
   * at a time, so that a send the hub refuses for now (rate_limited,
   * unavailable, no ack in time) and sends again keeps its place — the
   * messages are stored in the order written. Each carries its client_id:
   * the hub stores it once however often it arrives. While disconnected
   * nothing is sent; `connect` starts again from the oldest.
   */
  private pump(): void {
    if (this.sending || !this.conn.chat.connected) return;
    const p = this.pending.values().next().value as Pending | undefined;
    if (!p) return;
    this.sending = true;
    const generation = this.sendGeneration;
    // A callback from before a reconnection (its send restarted since) is ignored.
    const current = () => generation === this.sendGeneration;
    this.conn
      .request(this.conn.chat, "message", { conversation: p.conversation, client_id: p.clientId, text: p.text }, 8000)
      .then((ack) => {
        if (!current()) return;
        const st = this.convs.get(ack.conversation);
        // The ack may come before the `message` event: the message is known from it.
        if (st && this.pending.has(p.clientId) && !st.messages.has(ack.seq)) {
          this.store(st, {
            id: ack.id,
            conversation: ack.conversation,
            seq: ack.seq,
            sender: this.me,
            client_id: p.clientId,
            text: p.text,
            reply_to: null,
            mentions: [],
            ts: ack.ts,
            edited_at: null,
            deleted: false,
          });
        }
        this.pending.delete(p.clientId);
        this.sending = false;
        if (st) this.afterChange(st);
        this.pump();
      })
      .catch((err: AckError) => {
        if (!current()) return;
        if (err.code === "timeout" || err.code === "unavailable" || err.code === "rate_limited") {
          window.setTimeout(() => {
            if (!current()) return;
            this.sending = false;
            this.pump();
          }, err.code === "timeout" ? 0 : 1000);
          return;
        }
        this.pending.delete(p.clientId);
        this.sending = false;
        this.showError(`Not sent: ${err.message}`);
        // Refused for good: the text goes back to the composer (unless the user writes something else there now).
        if (this.openId === p.conversation && !this.text.value) this.text.value = p.text;
        const st = this.convs.get(p.conversation);
        if (st) this.afterChange(st);
        this.pump();
      });
  }

  /** At a (re)connection: whatever was in flight is sent again, from the oldest. */
  private restartSends(): void {
    this.sendGeneration++;
    this.sending = false;
    this.pump();
  }

  // --- typing -----------------------------------------------------------

  private onComposerInput(): void {
    if (this.openId === null) return;
    if (!this.text.value.trim()) return this.stopTyping();
    const now = Date.now();
    this.lastInputAt = now;
    if (this.typingConv === this.openId && now - this.typingSentAt < TYPING_RENEW_MS) return;
    this.startTyping(this.openId);
  }

  /**
   * Sends `typing: true`. The hub relays a start at most once a second per
   * user and conversation: one refused right after a stop (a message just
   * sent) is sent again a second later while the user still types.
   */
  private startTyping(conversation: number): void {
    // Not queued while disconnected: a stale start would show the user typing after the reconnection.
    if (!this.conn.chat.connected) return;
    this.typingSentAt = Date.now();
    this.typingConv = conversation;
    this.conn
      .request(this.conn.chat, "typing", { conversation, typing: true }, 5000)
      .then((ack) => {
        if (ack.relayed !== false) return;
        window.setTimeout(() => {
          if (this.typingConv === conversation && Date.now() - this.lastInputAt < TYPING_RENEW_MS && this.text.value.trim()) {
            this.startTyping(conversation);
          }
        }, 1100);
      })
      .catch(() => {});
  }

  private stopTyping(): void {
    if (this.typingConv === null) return;
    const conversation = this.typingConv;
    this.typingConv = null;
    this.typingSentAt = 0;
    // A disconnected device's start is stopped by the hub itself.
    if (!this.conn.chat.connected) return;
    this.conn.request(this.conn.chat, "typing", { conversation, typing: false }, 5000).catch(() => {});
  }

  private onTyping(e: { conversation: number; user: string; typing: boolean }): void {
    const st = this.convs.get(e.conversation);
    if (!st || e.user === this.me) return;
    this.clearTypingOf(st, e.user, false);
    if (e.typing) {
      // A safety net: a start not renewed is dropped even if its `false` never comes.
      st.typing.set(
        e.user,
        window.setTimeout(() => this.clearTypingOf(st, e.user), TYPING_CLEAR_MS),
      );
    }
    this.renderTyping();
  }

  private clearTypingOf(st: ConvState, user: string, render = true): void {
    const timer = st.typing.get(user);
    if (timer === undefined) return;
    clearTimeout(timer);
    st.typing.delete(user);
    if (render) this.renderTyping();
  }

  private clearTyping(st: ConvState): void {
    for (const timer of st.typing.values()) clearTimeout(timer);
    st.typing.clear();
    this.renderTyping();
  }

  // --- read marks -------------------------------------------------------

  /** The open conversation's newest message is on screen and the page is seen: mark it read. */
  private maybeMarkRead(): void {
    if (this.openId === null || document.visibilityState !== "visible" || !this.conn.chat.connected) return;
    const st = this.convs.get(this.openId);
    if (!st || !st.loaded || st.messages.size === 0 || !this.atBottom()) return;
    const newest = Math.max(...st.messages.keys());
    if (newest <= st.conv.last_read_seq || newest <= st.readSent) return;
    st.readSent = newest;
    this.conn
      .request(this.conn.chat, "read", { conversation: st.conv.id, seq: newest })
      .then((ack) => {
        st.conv.last_read_seq = Math.max(st.conv.last_read_seq, ack.seq);
        st.conv.unread = Math.max(0, st.conv.last_seq - st.conv.last_read_seq);
        this.renderConversations();
      })
      .catch(() => {
        st.readSent = 0;
      });
  }

  // --- rendering --------------------------------------------------------

  private renderAll(): void {
    this.renderConversations();
    this.renderOpen();
    this.renderMessages();
  }

  name(conv: Conversation): string {
    if (conv.kind === "group") return conv.name ?? "Group";
    return conv.members.find((u) => u !== this.me) ?? this.me;
  }

  private renderConversations(): void {
    const items = [...this.convs.values()].sort((a, b) => b.conv.last_activity - a.conv.last_activity || b.conv.id - a.conv.id);
    show(byId("conversations-empty"), items.length === 0);
    const unread = items.reduce((sum, st) => sum + st.conv.unread, 0);
    const title = `${unread ? `(${unread}) ` : ""}${this.me} · Switchboard`;
    if (document.title !== title) document.title = title;
    reconcile(
      this.list,
      this.convNodes,
      items,
      (st) => String(st.conv.id),
      (st) => {
        const id = st.conv.id;
        const button = el("button", { type: "button", class: "conversation-button" }, [
          el("span", { class: "conversation-name" }),
          el("span", { class: "unread-badge badge" }),
          el("span", { class: "conversation-preview" }),
        ]);
        button.addEventListener("click", () => this.open(id));
        return el("li", { class: "conversation", "data-id": id }, [button]);
      },
      (li, st) => {
        const c = st.conv;
        const name = this.name(c);
        const label = c.kind === "group" ? `${name} (${c.member_count})` : name;
        li.querySelector(".conversation-name")!.textContent = label;
        const badge = li.querySelector<HTMLElement>(".unread-badge")!;
        badge.textContent = String(c.unread);
        badge.hidden = c.unread === 0;
        badge.setAttribute("aria-label", `${c.unread} unread`);
        const last = c.last_message;
        li.querySelector(".conversation-preview")!.textContent = last
          ? `${last.sender === this.me ? "You" : last.sender}: ${last.deleted ? "message deleted" : (last.text ?? "")}`
          : c.kind === "group" ? c.members.join(", ") : "No messages yet";
        const button = li.querySelector("button")!;
        if (c.id === this.openId) button.setAttribute("aria-current", "true");
        else button.removeAttribute("aria-current");
      },
    );
  }

  private renderOpen(): void {
    const st = this.openId === null ? undefined : this.convs.get(this.openId);
    const section = byId("conversation");
    const title = byId("conversation-title");
    if (st) {
      section.dataset.id = String(st.conv.id);
      title.textContent = st.conv.kind === "group" ? `${this.name(st.conv)} · ${st.conv.members.join(", ")}` : this.name(st.conv);
    } else {
      delete section.dataset.id;
      title.textContent = "No conversation open";
    }
    show(byId("no-conversation"), !st);
    show(this.messagesEl, Boolean(st));
    this.text.disabled = !st;
    this.composer.querySelector("button")!.disabled = !st;
    this.renderTyping();
  }

  private renderTyping(): void {
    const st = this.openId === null ? undefined : this.convs.get(this.openId);
    const users = st ? [...st.typing.keys()] : [];
    const node = byId("typing");
    const text =
      users.length === 0 ? "" : users.length === 1 ? `${users[0]} is typing…` : `${users.slice(0, -1).join(", ")} and ${users[users.length - 1]} are typing…`;
    if (node.textContent !== text) node.textContent = text;
  }

  private renderMessages(): void {
    const st = this.openId === null ? undefined : this.convs.get(this.openId);
    if (!st) {
      this.messagesEl.replaceChildren();
      this.messageNodes.clear();
      return;
    }
    type Item = { m: Message; pending: boolean };
    const items: Item[] = [...st.messages.values()].sort((a, b) => a.seq - b.seq).map((m) => ({ m, pending: false }));
    for (const p of this.pending.values()) {
      if (p.conversation !== st.conv.id) continue;
      items.push({
        pending: true,
        m: {
          id: 0,
          conversation: p.conversation,
          seq: 0,
          sender: this.me,
          client_id: p.clientId,
          text: p.text,
          reply_to: null,
          mentions: [],
          ts: p.ts,
          edited_at: null,
          deleted: false,
        },
      });
    }
    const receipts = [...st.receipts.entries()];
    reconcile(
      this.messagesEl,
      this.messageNodes,
      items,
      // The sender's client_id names one message: the pending line becomes the acked one in place.
      ({ m }) => (m.client_id ? `c:${m.sender}\u0000${m.client_id}` : `s:${m.seq}`),
      ({ m }) =>
        // role="none": inside the role="log" list an li is not a list item (axe: listitem).
        el("li", { class: m.sender === this.me ? "message own" : "message", role: "none" }, [
          el("div", { class: "message-meta" }, [el("span", { class: "message-sender" }), el("time", { class: "message-time" })]),
          el("p", { class: "message-text" }),
          el("span", { class: "message-receipt" }),
        ]),
      (li, { m, pending }) => {
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
        const sender = li.querySelector(".message-sender")!;
        sender.textContent = m.sender === this.me ? "You" : m.sender;
        const time = li.querySelector<HTMLTimeElement>(".message-time")!;
        time.textContent = pending ? "Sending…" : formatTime(m.ts) + (m.edited_at ? " · edited" : "");
        time.dateTime = new Date(m.ts).toISOString();
        const text = li.querySelector(".message-text")!;
        text.textContent = m.deleted || m.text === null ? "This message was deleted." : m.text;
        text.classList.toggle("deleted", m.deleted);
        const receipt = li.querySelector<HTMLElement>(".message-receipt")!;
        const seenBy = m.sender === this.me && !pending ? receipts.filter(([, seq]) => seq >= m.seq).map(([u]) => u) : [];
        receipt.textContent = seenBy.length ? `Seen by ${seenBy.join(", ")}` : "";
        receipt.hidden = seenBy.length === 0;
        if (seenBy.length) li.dataset.read = "true";
        else delete li.dataset.read;
      },
    );
  }

  private atBottom(): boolean {
    const box = this.messagesEl;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
  }

  private scrollToBottom(): void {
    this.messagesEl.scrollTop = this.messagesEl.scrollHeight;
  }

  private showError(text: string): void {
    const node = byId("chat-error");
    node.textContent = text;
    window.setTimeout(() => {
      if (node.textContent === text) node.textContent = "";
    }, 8000);
  }
}
