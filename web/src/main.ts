// Boot: who the user is (a development sign-in by name through the hub's
// POST /dev/token, or in production the token the host application puts in
// the URL fragment, #token=<JWT>), kept in sessionStorage so that a reload
// stays signed in; then the one connection and the four screens.

import "./style.css";
import { Calls } from "./calls";
import { Chat } from "./chat";
import { Connection, TOKEN_REFUSALS } from "./connection";
import { byId, show } from "./dom";
import { DesktopNotifications, Notifications } from "./notifications";
import { Presence } from "./presence";
import { Shell } from "./shell";

interface Session {
  token: string;
  user: string;
  /** Minted by /dev/token: it can be minted again when it expires. */
  dev: boolean;
}

const STORAGE_KEY = "switchboard.session";
const USER_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** The shortest time between two development tokens minted after refusals. */
const MINT_EVERY_MS = 10_000;

/** The JWT's claims (not verified: the hub does that; the page only reads `sub` and `exp`). */
function claims(token: string): { sub?: unknown; exp?: unknown } | null {
  try {
    const part = token.split(".")[1] ?? "";
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

function expired(token: string): boolean {
  const exp = claims(token)?.exp;
  return typeof exp === "number" && exp * 1000 < Date.now() + 5000;
}

/** Production: the host application opens the page as /#token=<JWT>; the token leaves the address bar at once. */
function fromFragment(): Session | null {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (!token) return null;
  history.replaceState(null, "", location.pathname + location.search);
  const sub = claims(token)?.sub;
  if (typeof sub !== "string" || !sub) return null;
  return { token, user: sub, dev: false };
}

function stored(): Session | null {
  try {
    const s = JSON.parse(sessionStorage.getItem(STORAGE_KEY) ?? "null") as Session | null;
    return s && typeof s.token === "string" && typeof s.user === "string" ? s : null;
  } catch {
    return null;
  }
}

function keep(session: Session): void {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
}

/** Development sign-in: the hub mints a token for any name while dev_mode is on. */
async function mint(user: string): Promise<Session> {
  let res: Response;
  try {
    res = await fetch("/dev/token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ user }),
    });
  } catch {
    throw new Error("The hub cannot be reached.");
  }
  const body = (await res.json().catch(() => null)) as { token?: string; user?: string; error?: { message?: string } } | null;
  if (res.status === 404) {
    throw new Error("Sign-in by name exists only in development mode (dev_mode). In production, open this page from your application.");
  }
  if (!res.ok || !body?.token) throw new Error(body?.error?.message ?? `The hub answered ${res.status}.`);
  return { token: body.token, user: body.user ?? user, dev: true };
}

/**
 * Whether the hub signs names in here: GET /dev/mode answers 200 in every
 * mode (probing /dev/token itself would log a failed request in the
 * console on every fresh load). Unknown (unreachable): yes, so that the
 * form says what goes wrong when used.
 */
async function devMode(): Promise<boolean> {
  try {
    const res = await fetch("/dev/mode", { cache: "no-store" });
    const body = (await res.json()) as { sign_in_by_name?: unknown };
    return body.sign_in_by_name === true;
  } catch {
    return true;
  }
}

async function showSignIn(): Promise<void> {
  const dev = await devMode();
  show(byId("signin-screen"), true);
  show(byId("app"), false);
  // Production: the host application signs people in (#token=); no form.
  show(byId("signin-production"), !dev);
  show(byId("signin-intro"), dev);
  show(byId("signin"), dev);
  if (!dev) return;
  const form = byId<HTMLFormElement>("signin");
  const input = byId<HTMLInputElement>("signin-name");
  const error = byId("signin-error");
  input.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!USER_ID.test(name)) {
      error.textContent = "Use 1 to 64 letters, digits, dots, dashes or underscores.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
    error.textContent = "";
    const button = form.querySelector("button")!;
    button.disabled = true;
    try {
      const session = await mint(name);
      keep(session);
      start(session);
    } catch (err) {
      error.textContent = (err as Error).message;
      button.disabled = false;
    }
  });
}

function start(session: Session): void {
  show(byId("signin-screen"), false);
  show(byId("app"), true);
  byId("me").textContent = session.user;
  document.title = `${session.user} · Switchboard`;

  // One mint at a time (the four namespaces are refused together), and at
  // most one every MINT_EVERY_MS: a hub that refuses even fresh tokens is
  // not asked for one at every retry.
  let minting: Promise<boolean> | null = null;
  let lastMint = 0;
  const conn = new Connection(
    () => session.token,
    async (code) => {
      // Anything but the token (the hub busy, a clock skew, a key being
      // rotated in): the same token is tried again, later and later.
      if (!TOKEN_REFUSALS.has(code)) return "again";
      // The token is expired or not this hub's (a hub restarted with another
      // development secret). In production only the host application can
      // give a new one: signed out. In dev mode a new one is minted.
      if (!session.dev) {
        sessionStorage.removeItem(STORAGE_KEY);
        conn.end("Signed out: your session has ended. Open Switchboard from your application again.");
        return "stop";
      }
      if (!minting && Date.now() - lastMint >= MINT_EVERY_MS) {
        lastMint = Date.now();
        minting = mint(session.user)
          .then((fresh) => {
            session = { ...fresh, user: session.user };
            keep(session);
            return true;
          })
          .catch(() => false)
          .finally(() => {
            minting = null;
          });
      }
      return minting && (await minting) ? "renewed" : "again";
    },
  );
  conn.render();
  const presence = new Presence(conn, session.user);
  const chat = new Chat(conn, session.user, { watch: (users, kind) => presence.watch(users, kind) });
  const notifications = new Notifications(conn);
  notifications.openConversation = (id) => void chat.openById(id);
  const calls = new Calls(conn, session.user, () => chat.current());
  new Shell(conn, chat);
  // Desktop notifications while the tab is hidden: direct messages and
  // mentions (after the chat has taken the message in: it knows the
  // conversation then), and incoming calls.
  const desktop = new DesktopNotifications(session.user);
  conn.chat.on("message", (m) => {
    const conv = chat.conversation(m.conversation);
    desktop.message(m, conv?.kind, conv ? chat.name(conv) : "a conversation", () => void chat.openById(m.conversation));
  });
  conn.calls.on("call:ringing", (e) => desktop.ringing(e.from, e.kind));
  presence.hooks = {
    message: (user) => void chat.openDirect(user),
    call: (user) => void calls.start(user),
  };

  byId("signout").addEventListener("click", () => {
    sessionStorage.removeItem(STORAGE_KEY);
    conn.manager.engine?.close();
    location.reload();
  });

  // Read-only hooks for the browser tests.
  Object.defineProperty(window, "__switchboard", {
    value: Object.freeze({
      peerStates: () => calls.peerStates(),
      callProbe: () => calls.probe(),
      manager: conn.manager,
      user: session.user,
    }),
  });
}

async function boot(): Promise<void> {
  const session = fromFragment() ?? stored();
  if (session && expired(session.token)) {
    if (session.dev) {
      try {
        const fresh = await mint(session.user);
        keep(fresh);
        return start(fresh);
      } catch {
        return showSignIn();
      }
    }
    sessionStorage.removeItem(STORAGE_KEY);
    return showSignIn();
  }
  if (session) {
    keep(session);
    return start(session);
  }
  await showSignIn();
}

void boot();
