// The page's frame: which screen a phone shows (the list of people and
// conversations, or one conversation with a back control: #app[data-view]),
// the address of each conversation (#/c/<id>: opening one pushes a history
// entry, back and forward move between them, a reload opens it again), the
// "Add a person" and "New group" dialogs, and the height of the visible
// viewport, so that the composer stays above a phone's on-screen keyboard.

import type { Chat } from "./chat";
import type { Connection } from "./connection";
import { byId } from "./dom";

/** The address of conversation `id`, in the fragment (the hub serves one page). */
const ROUTE = /^#\/c\/(\d{1,15})$/;

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
