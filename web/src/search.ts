// Search in the open conversation's loaded messages: a small bar (opened by
// the header's search button or Ctrl+F inside the conversation) with the
// count ("3 of 12"), next and previous (Enter, Shift+Enter, the buttons),
// Escape to close. Matches are painted with the CSS Custom Highlight API
// (ranges over the text nodes): the messages' DOM is never rewritten for it.

import { el } from "./dom";

/** A match: its range and the message it is in. */
interface Match {
  range: Range;
  li: HTMLElement;
}

export class MessageSearch {
  readonly button: HTMLButtonElement;
  readonly bar: HTMLFormElement;
  private readonly input: HTMLInputElement;
  private readonly count: HTMLElement;
  private matches: Match[] = [];
  private index = -1;
  private refreshTimer: number | null = null;

  constructor(private readonly list: HTMLElement) {
    this.button = el("button", { type: "button", id: "search-toggle", class: "link", "aria-expanded": "false", "aria-controls": "message-search" }, ["Search"]);
    this.input = el("input", { id: "message-search-text", type: "search", autocomplete: "off", placeholder: "Search loaded messages" });
    this.count = el("span", { id: "message-search-count", role: "status" });
    const prev = el("button", { type: "button", class: "link", id: "message-search-prev", "aria-label": "Previous match" }, ["↑"]);
    const next = el("button", { type: "button", class: "link", id: "message-search-next", "aria-label": "Next match" }, ["↓"]);
    const close = el("button", { type: "button", class: "link", id: "message-search-close", "aria-label": "Close search" }, ["✕"]);
    this.bar = el("form", { id: "message-search", role: "search", hidden: true }, [
      el("label", { for: "message-search-text", class: "sr-only" }, ["Search in this conversation"]),
      this.input,
      this.count,
      prev,
      next,
      close,
    ]);
    this.button.addEventListener("click", () => (this.isOpen() ? this.close() : this.open()));
    this.input.addEventListener("input", () => this.run(true));
    this.bar.addEventListener("submit", (event) => {
      event.preventDefault();
      this.step(1);
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && event.shiftKey) {
        event.preventDefault();
        this.step(-1);
      }
    });
    this.bar.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this.close();
        this.button.focus();
      }
    });
    prev.addEventListener("click", () => this.step(-1));
    next.addEventListener("click", () => this.step(1));
    close.addEventListener("click", () => {
      this.close();
      this.button.focus();
    });
  }

  isOpen(): boolean {
    return !this.bar.hidden;
  }

  open(): void {
    this.bar.hidden = false;
    this.button.setAttribute("aria-expanded", "true");
    this.input.focus();
    this.input.select();
    this.run(true);
  }

  close(): void {
    if (this.bar.hidden) return;
    this.bar.hidden = true;
    this.button.setAttribute("aria-expanded", "false");
    this.matches = [];
    this.index = -1;
    this.paint();
  }

  /** The loaded messages changed: the matches are found again (soon, once for a burst of changes), the current one kept if it still is one. */
  refresh(): void {
    if (!this.isOpen() || this.refreshTimer !== null) return;
    this.refreshTimer = window.setTimeout(() => {
      this.refreshTimer = null;
      if (this.isOpen()) this.run(false);
    }, 100);
  }

  /** Finds every match of the query in the loaded messages' texts; `jump`: goes to the newest one. */
  private run(jump: boolean): void {
    const query = this.input.value.trim().toLocaleLowerCase();
    const current = this.matches[this.index];
    this.matches = [];
    if (query) {
      for (const p of this.list.querySelectorAll<HTMLElement>("li.message .message-text:not(.deleted)")) {
        this.find(p, query);
      }
    }
    if (jump || !current) this.index = this.matches.length - 1;
    else {
      const same = this.matches.findIndex((m) => m.li === current.li && m.range.startOffset === current.range.startOffset);
      this.index = same >= 0 ? same : Math.min(this.index, this.matches.length - 1);
    }
    this.paint();
    if (jump) this.reveal();
  }

  /** The matches in one text, whose text nodes (a mention is a span of its own) are read as one string. */
  private find(p: HTMLElement, query: string): void {
    const nodes: Text[] = [];
    const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) nodes.push(n as Text);
    const text = nodes.map((n) => n.data).join("").toLocaleLowerCase();
    const li = p.closest("li") as HTMLElement;
    const at = (offset: number): [Text, number] => {
      for (const node of nodes) {
        if (offset <= node.data.length) return [node, offset];
        offset -= node.data.length;
      }
      const last = nodes[nodes.length - 1];
      return [last, last.data.length];
    };
    for (let i = text.indexOf(query); i >= 0; i = text.indexOf(query, i + query.length)) {
      const range = new Range();
      range.setStart(...at(i));
      range.setEnd(...at(i + query.length));
      this.matches.push({ range, li });
    }
  }

  private step(delta: number): void {
    if (this.matches.length === 0) return;
    this.index = (this.index + delta + this.matches.length) % this.matches.length;
    this.paint();
    this.reveal();
  }

  private reveal(): void {
    this.matches[this.index]?.li.scrollIntoView({ block: "center" });
  }

  /** The highlights and the count. */
  private paint(): void {
    const query = this.input.value.trim();
    const n = this.matches.length;
    this.count.textContent = !this.isOpen() || !query ? "" : n === 0 ? "No match" : `${this.index + 1} of ${n}`;
    for (const li of this.list.querySelectorAll("li.message[data-search-current]")) li.removeAttribute("data-search-current");
    const current = this.matches[this.index];
    if (current) current.li.setAttribute("data-search-current", "true");
    // Custom highlights: Chromium 105+, Safari 17.2+, Firefox 140+; without them the count and the current message's outline still work.
    if (typeof CSS === "undefined" || !("highlights" in CSS)) return;
    const others = this.matches.filter((_, i) => i !== this.index).map((m) => m.range);
    CSS.highlights.set("search", new Highlight(...others));
    if (current) CSS.highlights.set("search-current", new Highlight(current.range));
    else CSS.highlights.delete("search-current");
  }
}
