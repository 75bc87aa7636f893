// One build: src/index.js -> dist/herald.js (minified ES2020, one file, no runtime dependencies).
import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { readFileSync } from "node:fs";

await build({
  entryPoints: ["src/index.js"],
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022"],
  outfile: "dist/herald.js",
  legalComments: "none",
});
const raw = readFileSync("dist/herald.js");
console.log(`dist/herald.js: ${raw.length} bytes, ${gzipSync(raw, { level: 9 }).length} gzipped`);
