#!/usr/bin/env node
// Builds the web playground (web/) into dist/web: app.ts bundled by esbuild (ajv included, so
// the page checks parameters with the same validator as the edge), index.html and style.css
// copied. The edge serves dist/web at `/` (services/edge/http/routes/web.ts).
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/web');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(root, 'web/app.ts')],
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: true,
  outfile: path.join(out, 'app.js'),
  logLevel: 'warning',
});
for (const file of ['index.html', 'style.css']) copyFileSync(path.join(root, 'web', file), path.join(out, file));
