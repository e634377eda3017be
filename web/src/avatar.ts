// Avatars drawn from a user id alone: initials on a colour derived from the
// id (a hash to a hue), so that the same person has the same colour on every
// page and device, with white initials at a contrast of at least 4.5:1.

import { el } from "./dom";

/** Colours already worked out, by user id (a conversation repeats its few senders). */
const colours = new Map<string, string>();

/** FNV-1a over the id's UTF-16 code units: small, stable across browsers. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** [r, g, b] in 0..1 of an HSL colour (h in degrees, s and l in 0..1). */
function hslToRgb(h: number, s: number, l: number): [number, number, number] {
  const c = (1 - Math.abs(2 * l - 1)) * s;
  const x = c * (1 - Math.abs(((h / 60) % 2) - 1));
  const m = l - c / 2;
  const [r, g, b] = h < 60 ? [c, x, 0] : h < 120 ? [x, c, 0] : h < 180 ? [0, c, x] : h < 240 ? [0, x, c] : h < 300 ? [x, 0, c] : [c, 0, x];
  return [r + m, g + m, b + m];
}

/** WCAG relative luminance of an sRGB colour. */
export function luminance([r, g, b]: [number, number, number]): number {
  const lin = (v: number) => (v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

/**
 * The avatar colour of `user`, as `rgb(…)`: the hue from the id's hash, the
 * lightness lowered until white text on it reaches 4.5:1 (a yellow needs a
 * darker shade than a blue for the same contrast).
 */
export function avatarColour(user: string): string {
  let colour = colours.get(user);
  if (colour) return colour;
  const h = hash(user);
  const hue = h % 360;
  const saturation = 0.45 + ((h >>> 9) % 20) / 100;
  let lightness = 0.42;
  let rgb = hslToRgb(hue, saturation, lightness);
  // White's luminance is 1: (1 + 0.05) / (L + 0.05) >= 4.5 once L <= 0.1833.
  while (luminance(rgb) > 0.18 && lightness > 0.1) {
    lightness -= 0.02;
    rgb = hslToRgb(hue, saturation, lightness);
  }
  colour = `rgb(${rgb.map((v) => Math.round(v * 255)).join(", ")})`;
  colours.set(user, colour);
  return colour;
}

/** Up to two initials of a user id: "alice" → "A", "jean-luc.picard" → "JP". */
export function initials(user: string): string {
  const parts = user.split(/[._\-\s]+/).filter(Boolean);
  const letters = parts.length > 1 ? [parts[0], parts[parts.length - 1]].map((p) => [...p][0]) : [...user].slice(0, 1);
  return letters.join("").toUpperCase() || "?";
}

/**
 * An avatar `<span>` for `user`: decorative (aria-hidden), since the name is
 * always said beside it; its title names the user for a pointer's hover.
 * The colour is set through the CSSOM, which the page's CSP (style-src 'self') allows.
 */
export function avatar(user: string, className = "avatar"): HTMLSpanElement {
  const node = el("span", { class: className, "aria-hidden": "true", title: user, "data-user": user }, [initials(user)]);
  node.style.backgroundColor = avatarColour(user);
  return node;
}
