// The chat screen (/chat): the conversations list with unread badges, the
// open conversation's messages — a window of at most about WINDOW of them,
// by seq (so a message is never shown twice and always in order), paged in
// at either end as the user scrolls and dropped at the other, drawn node by
// node by messages.ts — the place in each conversation kept across reloads,
// sends that survive a cut (a client_id per message, resent until acked),
// typing and read marks, and the catch-up after a reconnection.

import type { Connection } from "./connection";
import { AckError } from "./connection";
import type { Message, Summary } from "./contract";
import { byId, el, randomId, reconcile, show } from "./dom";
import { MessageView } from "./messages";
import type { WatchKind } from "./presence";
import { MessageSearch } from "./search";

// The hub's types, from the generated contract: what the page stores is what
// the hub sends.
export type { Message };
/** A conversation as this user sees it (the hub's `Summary`). */
export type Conversation = Summary;

/** What the page keeps of one conversation. */
interface ConvState {
  conv: Conversation;
  /**
   * The window of messages held, by seq: one entry per seq, whatever
   * delivered it (live, history, catch-up); contiguous, at most about
   * WINDOW, and only for the open conversation.
   */
  messages: Map<number, Message>;
  /** Whether its window was fetched (then the catch-up after a reconnect fetches what follows). */
  loaded: boolean;
  /** Older messages than the window's exist on the hub. */
  hasMoreBefore: boolean;
  /** The window ends at the conversation's newest message: live ones are shown (else counted). */
  atNewest: boolean;
  /** Live messages that arrived while the window was away from the newest. */
  liveUnseen: number;
  /** The first unread seq when the conversation was opened (0: none), where "New messages" shows. */
  dividerSeq: number;
  /** Bumped by every new window: an answer for an older one is dropped. */
  generation: number;
  loadingOlder: boolean;
  loadingNewer: boolean;
  syncing: boolean;
  resync: boolean;
  /** Other members' read marks (from `read` receipts, and from their own messages: a send moves the sender's mark). */
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

/** Messages per history request (the hub's `chat.max_page` default is 100). */
const PAGE = 100;
/** Messages held and drawn for the open conversation: enough for several screens either way, few enough for a phone. */
const WINDOW = 500;
/** How close to an edge of the list (px, or a screen if more) the next page is fetched. */
const EDGE_PX = 400;
/** Where the first unread message goes when a conversation opens on it: this far below the top. */
const DIVIDER_OFFSET = 24;
/** Where the first unread message's text goes when a conversation opens there: below the top by room for the divider and the sender's line. */
const FIRST_UNREAD_OFFSET = 72;
/** The place in a conversation is remembered at most this often while scrolling. */
const ANCHOR_SAVE_MS = 250;
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
  private anchorTimer: number | null = null;
  /** See atBottom(). */
  private stuck = true;

  private readonly list = byId<HTMLUListElement>("conversations");
  private readonly messagesEl = byId<HTMLOListElement>("messages");
  private readonly composer = byId<HTMLFormElement>("composer");
  private readonly text = byId<HTMLTextAreaElement>("composer-text");
  private readonly convNodes = new Map<string, HTMLLIElement>();
  private readonly view: MessageView;
  private readonly search: MessageSearch;
  /** "N new messages ↓": back to the newest. */
  private readonly jump = el("button", { type: "button", id: "jump-newest", hidden: true });

  /**
   * The open conversation, for the other screens (calls): its id, members
   * and whether it is a direct one; null when none is open.
   */
  current(): { id: number; members: string[]; direct: boolean } | null {
    const st = this.openId === null ? undefined : this.convs.get(this.openId);
    return st ? { id: st.conv.id, members: [...st.conv.members], direct: st.conv.kind === "direct" } : null;
  }

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
    this.view = new MessageView(this.messagesEl, me);
    this.search = new MessageSearch(this.messagesEl);
    // Built here rather than in index.html: they belong to the list they work on.
    byId("conversation-title").after(this.search.button);
    this.messagesEl.before(this.search.bar);
    this.messagesEl.after(this.jump);
    this.text.dir = "auto";
    this.jump.addEventListener("click", () => {
      const st = this.openId === null ? undefined : this.convs.get(this.openId);
      if (!st) return;
      if (st.atNewest) this.scrollToBottom();
      else void this.jumpToNewest(st);
      this.text.focus();
    });
    byId("conversation").addEventListener("keydown", (event) => {
      if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "f" && this.openId !== null) {
        event.preventDefault();
        this.search.open();
      }
    });
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
    this.messagesEl.addEventListener("scroll", () => this.onScroll(), { passive: true });
    // The list resized (the window, a phone's keyboard, the list shown again): a reader at the bottom stays there.
    new ResizeObserver(() => {
      if (this.stuck && this.openId !== null) this.scrollToBottom();
    }).observe(this.messagesEl);
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
      if (st && !st.loaded) void this.load(st);
      // Receipts sent while the page was cut off.
      if (st && reconnect) void this.fetchMembers(st);
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
        atNewest: true,
        liveUnseen: 0,
        dividerSeq: 0,
        generation: 0,
        loadingOlder: false,
        loadingNewer: false,
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
      if (this.openId === id) {
        this.openId = null;
        this.view.reset();
        this.search.close();
        this.renderJump();
      }
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

  /**
   * Shows a conversation: where the user left it in this tab (the anchor
   * kept in sessionStorage), else at its newest page (the first unread at
   * the top if the unread ones are more than a screen). The conversation left is
   * unloaded: only the open one holds a window of messages.
   */
  open(id: number): void {
    const st = this.convs.get(id);
    if (!st) return;
    if (this.openId !== id) {
      this.stopTyping();
      const previous = this.openId === null ? undefined : this.convs.get(this.openId);
      if (previous) this.unload(previous);
      this.openId = id;
      this.view.reset();
      this.search.close();
      st.dividerSeq = st.conv.last_read_seq < st.conv.last_seq ? st.conv.last_read_seq + 1 : 0;
      this.view.dividerSeq = st.dividerSeq;
      this.watchMembers(st, st.conv.members);
      this.renderAll();
      void this.load(st);
      void this.fetchMembers(st);
    } else this.renderAll();
    this.text.focus();
    this.onOpened(id);
  }

  /**
   * Every member and their read mark, asked when a conversation is shown
   * (and again after a reconnection): receipts sent before this page
   * opened it came as events it never saw, and a long group's listed
   * members are only its first `chat.max_listed_members` (a group call
   * rings them all).
   */
  private async fetchMembers(st: ConvState): Promise<void> {
    let ack;
    try {
      ack = await this.conn.request(this.conn.chat, "conversation:members", { conversation: st.conv.id });
    } catch {
      return; // the marks that come live still show; the next open asks again
    }
    st.conv.members = ack.members;
    st.conv.member_count = ack.member_count;
    for (const [user, seq] of Object.entries(ack.reads)) {
      if (user !== this.me) st.receipts.set(user, Math.max(st.receipts.get(user) ?? 0, seq));
    }
    if (this.openId !== st.conv.id) return;
    this.watchMembers(st, st.conv.members);
    if (st.loaded) this.inPlace(() => this.view.setMarks(st.receipts, st.atNewest));
    this.renderAll();
  }

  /** Forgets a conversation's window (its counters stay): memory is held for the open conversation only. */
  private unload(st: ConvState): void {
    st.messages.clear();
    st.loaded = false;
    st.atNewest = true;
    st.hasMoreBefore = true;
    st.liveUnseen = 0;
    st.generation++;
  }

  private async load(st: ConvState): Promise<void> {
    const anchor = this.readAnchor(st.conv.id);
    if (anchor && anchor.seq <= st.conv.last_seq) return this.loadAround(st, anchor.seq, anchor.offset);
    // More unread than the newest page holds: open at the first unread (its
    // divider near the top), as a reader expects to go on from there.
    if (st.dividerSeq && st.conv.last_seq - st.dividerSeq >= PAGE) return this.loadAround(st, st.dividerSeq, FIRST_UNREAD_OFFSET);
    return this.loadNewest(st);
  }

  /** Whether `st` is still the conversation shown by the load that started at `generation`. */
  private stillOpen(st: ConvState, generation: number): boolean {
    return this.openId === st.conv.id && st.generation === generation;
  }

  /** The newest page: the window ends at the conversation's newest message. */
  private async loadNewest(st: ConvState): Promise<void> {
    const generation = ++st.generation;
    let ack;
    try {
      ack = await this.conn.request(this.conn.chat, "history", { conversation: st.conv.id, limit: PAGE });
    } catch (err) {
      return this.showError(`Could not load the conversation: ${(err as Error).message}`);
    }
    if (!this.stillOpen(st, generation)) return;
    this.setWindow(st, ack.messages, Boolean(ack.has_more), true);
    const divider = st.dividerSeq ? this.view.node(st.dividerSeq) : undefined;
    // The first unread at the top if the unread ones are more than a screen, else the newest at the bottom.
    if (divider && this.view.root.scrollHeight - divider.offsetTop > this.view.root.clientHeight) {
      this.view.root.scrollTop = divider.offsetTop - DIVIDER_OFFSET;
      this.stuck = this.measureBottom();
    } else this.scrollToBottom();
    this.afterLoad(st);
    // Anything that arrived between the page and now (or a gap) is fetched.
    void this.syncAfter(st);
  }

  /** A window around `seq` (a remembered place, the first unread), `seq` put `offset` px below the list's top. */
  private async loadAround(st: ConvState, seq: number, offset: number): Promise<void> {
    const generation = ++st.generation;
    const conversation = st.conv.id;
    let older, newer;
    try {
      [older, newer] = await Promise.all([
        this.conn.request(this.conn.chat, "history", { conversation, before: seq + 1, limit: PAGE }),
        this.conn.request(this.conn.chat, "history", { conversation, after: seq, limit: PAGE }),
      ]);
    } catch (err) {
      return this.showError(`Could not load the conversation: ${(err as Error).message}`);
    }
    if (!this.stillOpen(st, generation)) return;
    this.setWindow(st, [...older.messages, ...newer.messages], Boolean(older.has_more), !newer.has_more);
    const held = [...st.messages.keys()].filter((s) => s <= seq);
    const target = this.view.node(held.length ? Math.max(...held) : seq);
    if (target) {
      const box = this.view.root;
      const text = target.querySelector(".message-text") ?? target;
      box.scrollTop += text.getBoundingClientRect().top - box.getBoundingClientRect().top - offset;
      this.stuck = this.measureBottom();
    } else this.scrollToBottom();
    this.afterLoad(st);
    if (st.atNewest) void this.syncAfter(st);
  }

  /** Replaces the window of `st` by `messages` and draws it. */
  private setWindow(st: ConvState, messages: Message[], hasMoreBefore: boolean, atNewest: boolean): void {
    st.messages.clear();
    st.liveUnseen = 0;
    for (const m of messages) this.hold(st, m);
    st.hasMoreBefore = hasMoreBefore;
    st.atNewest = atNewest;
    st.loaded = true;
    this.view.reset();
    this.view.put(messages);
    if (atNewest) for (const p of this.pending.values()) if (p.conversation === st.conv.id) this.view.putPending(this.pendingMessage(p));
    this.view.setMarks(st.receipts, st.atNewest);
  }

  private afterLoad(st: ConvState): void {
    this.fillViewport(st);
    this.maybeMarkRead();
    this.renderJump();
    this.search.refresh();
  }

  /** Goes to the newest message (the jump button, a send from far up). */
  private jumpToNewest(st: ConvState): Promise<void> {
    this.forgetAnchor(st.conv.id);
    st.dividerSeq = 0;
    this.view.dividerSeq = 0;
    return this.loadNewest(st);
  }

  /** Older history: the page before the oldest seq held, keeping what the user looks at in place; the newest end is dropped past the window. */
  private async loadOlder(): Promise<void> {
    const st = this.openId === null ? undefined : this.convs.get(this.openId);
    if (!st || !st.loaded || !st.hasMoreBefore || st.loadingOlder) return;
    const oldest = this.view.first();
    if (oldest === undefined || oldest <= 1) {
      st.hasMoreBefore = false;
      return;
    }
    const generation = st.generation;
    st.loadingOlder = true;
    let ack;
    try {
      ack = await this.conn.request(this.conn.chat, "history", { conversation: st.conv.id, before: oldest, limit: PAGE });
    } catch {
      // Scrolling up again retries.
      return;
    } finally {
      st.loadingOlder = false;
    }
    if (!this.stillOpen(st, generation)) return;
    const fresh = ack.messages.filter((m) => !st.messages.has(m.seq));
    for (const m of fresh) this.hold(st, m);
    st.hasMoreBefore = Boolean(ack.has_more);
    this.keepPlace(() => {
      this.view.put(fresh);
      this.trim(st, "newest");
      this.view.setMarks(st.receipts, st.atNewest);
    });
    this.renderJump();
    this.search.refresh();
    this.fillViewport(st);
  }

  /** Newer history, when the window does not reach the newest: the page after the newest seq held; the oldest end is dropped past the window. */
  private async loadNewer(): Promise<void> {
    const st = this.openId === null ? undefined : this.convs.get(this.openId);
    if (!st || !st.loaded || st.atNewest || st.loadingNewer) return;
    const newest = this.view.last();
    if (newest === undefined) return;
    const generation = st.generation;
    st.loadingNewer = true;
    let ack;
    try {
      ack = await this.conn.request(this.conn.chat, "history", { conversation: st.conv.id, after: newest, limit: PAGE });
    } catch {
      return;
    } finally {
      st.loadingNewer = false;
    }
    if (!this.stillOpen(st, generation)) return;
    const fresh = ack.messages.filter((m) => !st.messages.has(m.seq));
    for (const m of fresh) this.hold(st, m);
    if (!ack.has_more) {
      st.atNewest = true;
      st.liveUnseen = 0;
    }
    this.keepPlace(() => {
      this.view.put(fresh);
      if (st.atNewest) for (const p of this.pending.values()) if (p.conversation === st.conv.id) this.view.putPending(this.pendingMessage(p));
      this.trim(st, "oldest");
      this.view.setMarks(st.receipts, st.atNewest);
    });
    this.renderJump();
    this.search.refresh();
    this.maybeMarkRead();
    if (st.atNewest) void this.syncAfter(st);
  }

  /** Drops messages from one end of the window until it holds WINDOW. */
  private trim(st: ConvState, end: "oldest" | "newest"): void {
    const over = st.messages.size - WINDOW;
    if (over <= 0) return;
    for (const seq of this.view.drop(over, end)) st.messages.delete(seq);
    if (end === "oldest") st.hasMoreBefore = true;
    else {
      st.atNewest = false;
      this.view.dropAllPending();
    }
  }

  /**
   * Runs a change of the list without moving what the user looks at: the
   * first message in view keeps its distance from the list's top (the
   * browser's own scroll anchoring is off on the list, see style.css).
   */
  private keepPlace(change: () => void): void {
    const box = this.view.root;
    // The text read, not its li: the li may gain or lose a day separator or its name line as its neighbours change.
    const anchor = this.topVisible();
    const mark = anchor?.querySelector(".message-text") ?? anchor;
    const before = mark?.getBoundingClientRect().top ?? 0;
    change();
    if (mark?.isConnected) box.scrollTop += mark.getBoundingClientRect().top - before;
    this.stuck = this.measureBottom();
  }

  /** Runs a change in the list that may move heights: a reader at the bottom stays there, any other keeps their place. */
  private inPlace(change: () => void): void {
    if (this.atBottom()) {
      change();
      this.scrollToBottom();
    } else this.keepPlace(change);
  }

  /** The first message whose bottom is below the list's top edge. */
  private topVisible(): HTMLLIElement | undefined {
    const box = this.view.root;
    const top = box.scrollTop;
    // Binary search over the children (in document order, so by offsetTop).
    const children = box.children;
    let lo = 0;
    let hi = children.length - 1;
    let found: HTMLLIElement | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const li = children[mid] as HTMLLIElement;
      if (li.offsetTop + li.offsetHeight > top) {
        found = li;
        hi = mid - 1;
      } else lo = mid + 1;
    }
    return found;
  }

  /** A window that does not fill the list cannot be scrolled: more pages until it does. */
  private fillViewport(st: ConvState): void {
    const box = this.view.root;
    if (box.scrollHeight > box.clientHeight + EDGE_PX) return;
    if (st.hasMoreBefore) void this.loadOlder();
    else if (!st.atNewest) void this.loadNewer();
  }

  /** Scrolling: pages in at either edge, read marks, the remembered place, the jump button. */
  private onScroll(): void {
    const box = this.view.root;
    const st = this.openId === null ? undefined : this.convs.get(this.openId);
    if (!st || !st.loaded) return;
    this.stuck = this.measureBottom();
    const edge = Math.max(EDGE_PX, box.clientHeight);
    if (box.scrollTop < edge) void this.loadOlder();
    if (box.scrollHeight - box.scrollTop - box.clientHeight < edge) void this.loadNewer();
    this.maybeMarkRead();
    this.renderJump();
    this.saveAnchorSoon();
  }

  // --- the place in a conversation, kept across reloads ---------------------

  private anchorKey(id: number): string {
    return `switchboard.place.${this.me}.${id}`;
  }

  private readAnchor(id: number): { seq: number; offset: number } | null {
    try {
      const value = JSON.parse(sessionStorage.getItem(this.anchorKey(id)) ?? "null") as { seq?: unknown; offset?: unknown } | null;
      if (value && typeof value.seq === "number" && typeof value.offset === "number") return { seq: value.seq, offset: value.offset };
    } catch {
      // A value this page cannot read is no place.
    }
    return null;
  }

  private forgetAnchor(id: number): void {
    sessionStorage.removeItem(this.anchorKey(id));
  }

  /** Remembers the place at most every ANCHOR_SAVE_MS while the user scrolls (and once after the last scroll). */
  private saveAnchorSoon(): void {
    if (this.anchorTimer !== null) return;
    this.anchorTimer = window.setTimeout(() => {
      this.anchorTimer = null;
      this.saveAnchor();
    }, ANCHOR_SAVE_MS);
  }

  /**
   * The message at the top of the view and how far below the list's top it
   * starts; at the newest, scrolled to the bottom, there is no place to
   * keep: the newest is where an opening goes anyway.
   */
  private saveAnchor(): void {
    const st = this.openId === null ? undefined : this.convs.get(this.openId);
    if (!st || !st.loaded) return;
    if (st.atNewest && this.atBottom()) return this.forgetAnchor(st.conv.id);
    const box = this.view.root;
    let li: Element | null | undefined = this.topVisible();
    while (li && !(li as HTMLElement).dataset.seq) li = li.nextElementSibling;
    if (!li) return;
    const seq = Number((li as HTMLElement).dataset.seq);
    // Where its text starts below the list's top (see keepPlace).
    const text = li.querySelector(".message-text") ?? li;
    const offset = text.getBoundingClientRect().top - box.getBoundingClientRect().top;
    sessionStorage.setItem(this.anchorKey(st.conv.id), JSON.stringify({ seq, offset }));
  }

  /**
   * Fetches every message after the last seq held without a gap, page by
   * page until `has_more` is false: the catch-up after a reconnect, and the
   * repair when a live message skips seqs. Only while the window reaches
   * the newest; past WINDOW, a reader scrolled up keeps the older end and
   * the rest is counted, not shown.
   */
  private async syncAfter(st: ConvState): Promise<void> {
    if (!st.loaded || !st.atNewest) return;
    if (st.syncing) {
      st.resync = true;
      return;
    }
    const generation = st.generation;
    st.syncing = true;
    try {
      do {
        st.resync = false;
        let after = this.contiguousTop(st);
        for (let page = 0; page < 1000; page++) {
          const ack = await this.conn.request(this.conn.chat, "history", { conversation: st.conv.id, after, limit: 100 });
          if (!this.stillOpen(st, generation) || !st.atNewest) return;
          const messages = ack.messages;
          for (const m of messages) this.count(st, m);
          this.showNew(st, messages);
          if (!ack.has_more || messages.length === 0 || !st.atNewest) break;
          after = messages[messages.length - 1].seq;
        }
      } while (st.resync && st.atNewest);
    } catch {
      // The next reconnect (or live message with a gap) tries again.
    } finally {
      st.syncing = false;
    }
    this.renderConversations();
  }

  /** The highest seq such that every seq from the oldest held up to it is held. */
  private contiguousTop(st: ConvState): number {
    let seq = this.view.first();
    if (seq === undefined) return 0;
    while (st.messages.has(seq + 1)) seq++;
    return seq;
  }

  // --- messages ---------------------------------------------------------

  /** Keeps `m` in the window of `st`; its sender has read up to it (a send moves the sender's mark). */
  private hold(st: ConvState, m: Message): void {
    st.messages.set(m.seq, m);
    if (m.sender !== this.me) st.receipts.set(m.sender, Math.max(st.receipts.get(m.sender) ?? 0, m.seq));
  }

  /** The conversation's counters after `m`, and the pending send it answers settled. */
  private count(st: ConvState, m: Message): void {
    if (m.sender === this.me && this.pending.has(m.client_id)) this.pending.delete(m.client_id);
    const c = st.conv;
    if (m.seq > c.last_seq) c.last_seq = m.seq;
    if (m.seq >= (c.last_message?.seq ?? 0)) c.last_message = m;
    if (m.ts > c.last_activity) c.last_activity = m.ts;
    // Sending moves the sender's read mark to the message (any device of theirs).
    if (m.sender === this.me && m.seq > c.last_read_seq) c.last_read_seq = m.seq;
    c.unread = Math.max(0, c.last_seq - c.last_read_seq);
  }

  /**
   * Shows messages that belong at the newest end of the open window (live,
   * catch-up, an acked send), holding the reader at the bottom if they were
   * there (or `own`: they just sent), else keeping their place. Past
   * WINDOW + PAGE, the oldest end goes when the reader is at the bottom; the
   * newest end when they read further up (then the list is no longer at the
   * newest: what comes is counted).
   */
  private showNew(st: ConvState, messages: Message[], own = false): void {
    if (this.openId !== st.conv.id || !st.loaded) return;
    for (const m of messages) this.hold(st, m);
    const stick = own || this.atBottom();
    if (stick) {
      this.view.put(messages);
      if (st.messages.size > WINDOW + PAGE) this.trim(st, "oldest");
      this.view.setMarks(st.receipts, st.atNewest);
      this.scrollToBottom();
    } else {
      this.keepPlace(() => {
        this.view.put(messages);
        if (st.messages.size > WINDOW + PAGE) this.trim(st, "newest");
        this.view.setMarks(st.receipts, st.atNewest);
      });
    }
    this.renderJump();
    if (this.search.isOpen()) this.search.refresh();
    this.maybeMarkRead();
  }

  private onMessage(m: Message): void {
    const st = this.convs.get(m.conversation);
    if (!st) {
      // A conversation this page has not heard of yet (its `conversation:joined` was missed).
      void this.refreshConversations();
      return;
    }
    const newest = this.view.last() ?? 0;
    const open = this.openId === st.conv.id && st.loaded;
    const fresh = m.seq > st.conv.last_seq;
    this.count(st, m);
    this.clearTypingOf(st, m.sender);
    if (open) {
      if (st.messages.has(m.seq) || st.atNewest) {
        const gap = st.messages.size > 0 && m.seq > this.contiguousTop(st) + 1;
        this.showNew(st, [m], m.sender === this.me);
        if (gap) void this.syncAfter(st);
      } else if (m.seq > newest) {
        // The window is further up: counted for the jump button, not shown.
        if (fresh) st.liveUnseen++;
        if (m.sender !== this.me) st.receipts.set(m.sender, Math.max(st.receipts.get(m.sender) ?? 0, m.seq));
        this.renderJump();
      }
    }
    // Screen readers hear of messages elsewhere; the open one is a role="log" (read out by itself).
    if (fresh && m.sender !== this.me && m.conversation !== this.openId) {
      byId("announcer").textContent = `New message from ${m.sender} in ${this.name(st.conv)}: ${st.conv.unread} unread`;
    }
    this.renderConversations();
  }

  private onUpdated(m: Message): void {
    const st = this.convs.get(m.conversation);
    if (!st) return;
    // Only a message held is replaced: an edit of an old one not loaded must
    // not sit beside the loaded window (a hole before it would make every
    // catch-up fetch the whole history); it shows when scrolled back to.
    if (st.messages.has(m.seq)) {
      st.messages.set(m.seq, m);
      if (this.openId === st.conv.id) this.inPlace(() => this.view.put([m]));
      if (this.search.isOpen()) this.search.refresh();
    }
    if (st.conv.last_message?.seq === m.seq) st.conv.last_message = m;
    this.renderConversations();
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
      if (this.openId === st.conv.id && st.loaded) {
        // A row of marks appears or goes: the reader stays where they are.
        this.inPlace(() => this.view.setMarks(st.receipts, st.atNewest));
      }
    }
    this.renderConversations();
  }

  /** The jump button: shown while the window is away from the newest (counting what arrived meanwhile) or the reader is far up. */
  private renderJump(): void {
    const st = this.openId === null ? undefined : this.convs.get(this.openId);
    const box = this.view.root;
    const far = box.scrollHeight - box.scrollTop - box.clientHeight > 2 * box.clientHeight;
    const visible = Boolean(st && st.loaded && (!st.atNewest || far));
    const n = st?.liveUnseen ?? 0;
    const label = n > 0 ? `${n} new message${n === 1 ? "" : "s"} ↓` : "Jump to newest ↓";
    if (this.jump.textContent !== label) this.jump.textContent = label;
    if (this.jump.hidden === visible) this.jump.hidden = !visible;
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
    if (st && st.loaded) {
      // Written far up: the list goes to the newest, where the send shows.
      if (!st.atNewest) void this.jumpToNewest(st);
      else {
        this.view.putPending(this.pendingMessage(p));
        this.scrollToBottom();
        this.renderJump();
      }
    }
    this.pump();
  }

  /** A pending send as the message it will be (seq 0 until acked). */
  private pendingMessage(p: Pending): Message {
    return {
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
    };
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
          const m: Message = { ...this.pendingMessage(p), id: ack.id, seq: ack.seq, ts: ack.ts };
          this.count(st, m);
          if (this.openId === st.conv.id && st.loaded && st.atNewest) this.showNew(st, [m]);
        }
        this.pending.delete(p.clientId);
        this.sending = false;
        if (st) this.renderConversations();
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
        this.view.dropPending(p.clientId);
        this.renderConversations();
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

  /** The page is seen: the open conversation is marked read up to the last message on screen. */
  private maybeMarkRead(): void {
    if (this.openId === null || document.visibilityState !== "visible" || !this.conn.chat.connected) return;
    const st = this.convs.get(this.openId);
    if (!st || !st.loaded || st.messages.size === 0) return;
    const newest = this.atBottom() ? this.view.last() : this.bottomVisibleSeq();
    if (newest === undefined || newest <= st.conv.last_read_seq || newest <= st.readSent) return;
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
    show(this.search.button, Boolean(st));
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

  /** The seq of the last message whose top is on screen. */
  private bottomVisibleSeq(): number | undefined {
    const box = this.view.root;
    const bottom = box.scrollTop + box.clientHeight;
    const children = box.children;
    let lo = 0;
    let hi = children.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if ((children[mid] as HTMLElement).offsetTop < bottom) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    for (let i = found; i >= 0; i--) {
      const seq = (children[i] as HTMLElement).dataset.seq;
      if (seq) return Number(seq);
    }
    return undefined;
  }

  /**
   * Whether the reader is at the bottom of the list, as of their last
   * scroll: content or a size changing under them (a row of read marks, the
   * list hidden and shown, a phone's keyboard) must not unstick them.
   */
  private atBottom(): boolean {
    return this.stuck;
  }

  private measureBottom(): boolean {
    const box = this.messagesEl;
    return box.scrollHeight - box.scrollTop - box.clientHeight < 48;
  }

  private scrollToBottom(): void {
    this.messagesEl.scrollTop = this.messagesEl.scrollHeight;
    this.stuck = true;
  }

  private showError(text: string): void {
    const node = byId("chat-error");
    node.textContent = text;
    window.setTimeout(() => {
      if (node.textContent === text) node.textContent = "";
    }, 8000);
  }
}
