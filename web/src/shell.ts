// The page's frame: which screen a phone shows (the list of people and
// conversations, or one conversation with a back control: #app[data-view]),
// the address of each conversation (#/c/<id>: opening one pushes a history
// entry, back and forward move between them, a reload opens it again), the
// "Add a person" and "New group" dialogs, the command palette (Ctrl+K or
// Cmd+K: jump to a conversation or a person, or run a command), and the
// height of the visible
// viewport, so that the composer stays above a phone's on-screen keyboard.

import type { Chat } from "./chat";
import type { Connection } from "./connection";
import { byId, el } from "./dom";

/** The address of conversation `id`, in the fragment (the hub serves one page). */
const ROUTE = /^#\/c\/(\d{1,15})$/;

/** One line of the command palette. */
interface Choice {
  label: string;
  kind: string;
  run: () => void;
}

/** The most lines the palette lists. */
const PALETTE_MAX = 12;

/** What history.state holds for an entry this page pushed (back within the page is then possible). */
interface Entry {
  switchboard: true;
}

function conversationIn(hash: string): number | null {
  const match = ROUTE.exec(hash);
  return match ? Number(match[1]) : null;
}

export class Shell {
  private readonly app = byId("app");
  /** Set while a conversation is opened from the address (back, forward, reload): no new history entry for it. */
  private fromAddress = false;

  constructor(
    conn: Connection,
    private readonly chat: Chat,
  ) {
    chat.onOpened = (id) => this.opened(id);
    window.addEventListener("popstate", () => void this.follow());
    byId("back").addEventListener("click", () => this.back());

    this.dialog("watch-dialog", "open-watch", "watch-name");
    this.dialog("group-dialog", "open-new-group", "group-name");

    this.trackViewport();
    this.palette();

    // A reload (or a shared link) names a conversation: open it once the
    // chat knows the user's conversations.
    if (conversationIn(location.hash) !== null) {
      this.app.dataset.view = "conversation";
      const first = () => {
        conn.chat.off("connect", first);
        void this.follow();
      };
      conn.chat.on("connect", first);
    }
  }

  /** A conversation was shown: the phone shows it, and the address names it (a new history entry unless the address led here). */
  private opened(id: number): void {
    this.app.dataset.view = "conversation";
    for (const dialog of document.querySelectorAll<HTMLDialogElement>("dialog[open]")) dialog.close();
    // Closing a dialog gives focus back to its opener: the composer keeps it.
    byId("composer-text").focus();
    const hash = `#/c/${id}`;
    if (this.fromAddress || location.hash === hash) return;
    const entry: Entry = { switchboard: true };
    history.pushState(entry, "", hash);
  }

  /** Shows what the address names: a conversation, or the list. */
  private async follow(): Promise<void> {
    const id = conversationIn(location.hash);
    if (id === null) {
      this.app.dataset.view = "list";
      return;
    }
    this.fromAddress = true;
    try {
      await this.chat.openById(id);
    } finally {
      this.fromAddress = false;
    }
    // Not one of the user's conversations (left, or a mistyped address): the list.
    if (!this.chat.conversation(id) && conversationIn(location.hash) === id) {
      history.replaceState(null, "", location.pathname + location.search);
      this.app.dataset.view = "list";
    }
  }

  /** The back control: the previous entry when this page pushed one (so the browser's back agrees), the list otherwise. */
  private back(): void {
    if ((history.state as Entry | null)?.switchboard) {
      history.back();
      return;
    }
    history.pushState(null, "", location.pathname + location.search);
    this.app.dataset.view = "list";
  }

  /**
   * A modal dialog opened by a button: Escape and Cancel close it, and
   * focus goes back to the button (unless something else took it meanwhile).
   */
  private dialog(dialogId: string, openerId: string, firstId: string): void {
    const dialog = byId<HTMLDialogElement>(dialogId);
    const opener = byId<HTMLButtonElement>(openerId);
    opener.addEventListener("click", () => {
      dialog.showModal();
      byId(firstId).focus();
    });
    dialog.querySelector(".dialog-cancel")?.addEventListener("click", () => dialog.close());
    // A click on the backdrop (outside the card) closes it too.
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
    dialog.addEventListener("close", () => {
      if (!document.activeElement || document.activeElement === document.body || dialog.contains(document.activeElement)) opener.focus();
    });
  }

  /**
   * The command palette: Ctrl+K (Cmd+K) anywhere opens it; typing filters
   * the conversations, the people listed and the commands; arrows move,
   * Enter runs, Escape closes (focus back where it was).
   */
  private palette(): void {
    const dialog = byId<HTMLDialogElement>("palette");
    const input = byId<HTMLInputElement>("palette-input");
    const list = byId<HTMLUListElement>("palette-list");
    let choices: Choice[] = [];
    let selected = 0;
    let before: HTMLElement | null = null;

    const all = (): Choice[] => {
      const out: Choice[] = [];
      for (const li of document.querySelectorAll<HTMLLIElement>("li.conversation[data-id]")) {
        const id = Number(li.dataset.id);
        const label = li.querySelector(".conversation-name")?.textContent ?? "";
        out.push({ label, kind: "Conversation", run: () => void this.chat.openById(id) });
      }
      for (const li of document.querySelectorAll<HTMLLIElement>("li.person[data-user]")) {
        const user = li.dataset.user ?? "";
        out.push({ label: user, kind: "Message", run: () => void this.chat.openDirect(user) });
      }
      out.push({ label: "New group", kind: "Command", run: () => byId("open-new-group").click() });
      out.push({ label: "Add a person", kind: "Command", run: () => byId("open-watch").click() });
      return out;
    };
    const render = () => {
      const query = input.value.trim().toLowerCase();
      choices = all()
        .filter((c) => c.label.toLowerCase().includes(query))
        .slice(0, PALETTE_MAX);
      selected = Math.min(selected, Math.max(0, choices.length - 1));
      list.replaceChildren(
        ...choices.map((c, i) => {
          const li = el("li", { id: `palette-${i}`, class: "palette-item", role: "option", "aria-selected": String(i === selected) }, [
            el("span", { text: c.label }),
            el("span", { class: "palette-kind", text: c.kind }),
          ]);
          li.addEventListener("click", () => choose(i));
          return li;
        }),
      );
      if (choices.length) input.setAttribute("aria-activedescendant", `palette-${selected}`);
      else input.removeAttribute("aria-activedescendant");
    };
    const choose = (i: number) => {
      const choice = choices[i];
      if (!choice) return;
      before = null; // what it runs takes the focus
      dialog.close();
      choice.run();
    };

    document.addEventListener("keydown", (event) => {
      if (event.key.toLowerCase() !== "k" || !(event.ctrlKey || event.metaKey) || event.altKey || event.shiftKey) return;
      event.preventDefault();
      if (dialog.open) return dialog.close();
      if (document.querySelector("dialog[open]")) return;
      before = document.activeElement instanceof HTMLElement ? document.activeElement : null;
      input.value = "";
      selected = 0;
      render();
      dialog.showModal();
      input.focus();
    });
    input.addEventListener("input", () => {
      selected = 0;
      render();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        const step = event.key === "ArrowDown" ? 1 : -1;
        selected = choices.length ? (selected + step + choices.length) % choices.length : 0;
        render();
        document.getElementById(`palette-${selected}`)?.scrollIntoView({ block: "nearest" });
      } else if (event.key === "Enter") {
        event.preventDefault();
        choose(selected);
      }
    });
    dialog.addEventListener("click", (event) => {
      if (event.target === dialog) dialog.close();
    });
    dialog.addEventListener("close", () => {
      before?.focus();
      before = null;
    });
  }

  /**
   * The page is as tall as the visible viewport: where the browser does not
   * resize the layout for the on-screen keyboard (interactive-widget is
   * Chromium's), the VisualViewport API says how much is left, and the
   * composer at the bottom stays in sight.
   */
  private trackViewport(): void {
    const vv = window.visualViewport;
    if (!vv) return;
    const fit = () => {
      // Pinch-zoomed: the visible part is smaller, the page is not.
      if (vv.scale > 1.01) return;
      document.documentElement.style.setProperty("--app-height", `${Math.round(vv.height)}px`);
    };
    vv.addEventListener("resize", fit);
    fit();
  }
}
