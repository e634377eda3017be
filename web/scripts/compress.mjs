// Writes precompressed copies (.gz and .br, best levels) beside every
// compressible file of dist/ over 1 KB, for the hub's static-file service to
// send to browsers that accept them; prints the bundle's gzipped size.
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

const dist = new URL("../dist/", import.meta.url).pathname;
const COMPRESSIBLE = /\.(js|css|html|svg)$/;
const MIN_BYTES = 1024;

async function* files(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else yield path;
  }
}

let raw = 0;
let gzipped = 0;
for await (const path of files(dist)) {
  if (!COMPRESSIBLE.test(path)) continue;
  const data = await readFile(path);
  const gz = gzipSync(data, { level: 9 });
  if (/\.(js|css|html)$/.test(path)) {
    raw += data.length;
    gzipped += gz.length;
  }
  if ((await stat(path)).size < MIN_BYTES) continue;
  const br = brotliCompressSync(data, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: constants.BROTLI_MAX_QUALITY,
      [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
      [constants.BROTLI_PARAM_SIZE_HINT]: data.length,
    },
  });
  await writeFile(`${path}.gz`, gz);
  await writeFile(`${path}.br`, br);
  console.log(`${relative(dist, path)}: ${data.length} B, gzip ${gz.length} B, brotli ${br.length} B`);
}
console.log(`bundle (JS + CSS + HTML): ${(raw / 1024).toFixed(1)} KB, gzipped ${(gzipped / 1024).toFixed(1)} KB`);
