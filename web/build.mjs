#!/usr/bin/env node
// Builds the operator's page into dist/web (served by `tapas serve` at /):
// one ES module (app.js) and one stylesheet (app.css) bundled by esbuild from
// web/src and the libraries in node_modules, plus index.html and the icon.
// Nothing is fetched: everything comes from this tree and node_modules.
import { copyFileSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const web = dirname(fileURLToPath(import.meta.url));
const final = join(web, '..', 'dist', 'web');
// Built aside and swapped in at the end, so that a daemon starting meanwhile finds the old page or the new one, whole.
const out = `${final}.build-${process.pid}`;

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(web, 'src', 'main.tsx') },
  outdir: out,
  bundle: true,
  format: 'esm',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: 'linked',
  legalComments: 'eof',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  // src/model's format rules run in the browser as they do in the API: node:net's two checks and Buffer's byteLength, shimmed.
  alias: { 'node:net': join(web, 'src', 'shims', 'net.ts') },
  inject: [join(web, 'src', 'shims', 'buffer.ts')],
  logLevel: 'warning',
});
for (const file of ['index.html', 'favicon.svg']) copyFileSync(join(web, file), join(out, file));
writeFileSync(join(out, '.stamp'), `${new Date().toISOString()}\n`);
rmSync(final, { recursive: true, force: true });
renameSync(out, final);
