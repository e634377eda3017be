// Tiny DOM helpers shared by every screen: element creation that only ever
// sets text through textContent (never HTML from strings), and lookups by id
// that fail loudly when index.html and the code disagree.

type Attrs = Record<string, string | number | boolean | null | undefined>;
type Child = Node | string | null | undefined | false;

/** Creates `<tag>` with attributes (`false`/`null` skipped, `true` as "") and children (strings become text nodes). */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  children: Child[] = [],
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "class") node.className = String(value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** The element with this id, of the expected type; throws if index.html lacks it. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from index.html`);
  return node as T;
}

/** Sets or removes an attribute from a boolean or a value. */
export function setAttr(node: Element, name: string, value: string | boolean | null): void {
  if (value === false || value === null) node.removeAttribute(name);
  else node.setAttribute(name, value === true ? "" : value);
}

/** Shows or hides through the `hidden` attribute (what the tests and screen readers see). */
export function show(node: HTMLElement, visible: boolean): void {
  node.hidden = !visible;
}

/** A short local time for a Unix-ms timestamp. */
export function formatTime(ms: number): string {
  const date = new Date(ms);
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  return sameDay
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/**
 * Makes `parent`'s children the nodes of `items`, in order, reusing the node
 * kept for each key (so focus, scroll and running media survive an update)
 * and creating the missing ones. Nodes whose key is gone are removed.
 */
export function reconcile<T, N extends HTMLElement>(
  parent: HTMLElement,
  cache: Map<string, N>,
  items: T[],
  key: (item: T) => string,
  create: (item: T) => N,
  update: (node: N, item: T) => void,
): void {
  const wanted = new Set<string>();
  let cursor: ChildNode | null = parent.firstChild;
  for (const item of items) {
    const k = key(item);
    wanted.add(k);
    let node = cache.get(k);
    if (!node) {
      node = create(item);
      cache.set(k, node);
    }
    update(node, item);
    if (node === cursor) cursor = cursor.nextSibling;
    else parent.insertBefore(node, cursor);
  }
  while (cursor) {
    const next: ChildNode | null = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
  for (const k of [...cache.keys()]) if (!wanted.has(k)) cache.delete(k);
}

/** A random id for a message's client_id (crypto.randomUUID needs a secure context; plain http on a LAN address is not one). */
export function randomId(): string {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
