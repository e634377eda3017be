// Vite: builds index.html and src/ into dist/ (hashed files under assets/,
// served by the hub with long cache lifetimes). `npm run dev` proxies the
// hub's Socket.IO endpoint and /dev/token, /dev/mode to SWITCHBOARD_URL
// (default http://127.0.0.1:3000).
import { defineConfig } from "vite";

const hub = process.env.SWITCHBOARD_URL ?? "http://127.0.0.1:3000";

export default defineConfig({
  build: {
    outDir: "dist",
    assetsDir: "assets",
    target: "es2020",
    // No inline polyfill script: the hub's Content-Security-Policy allows scripts from 'self' only.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    proxy: {
      "/socket.io": { target: hub, ws: true },
      "/dev": hub,
    },
  },
});
