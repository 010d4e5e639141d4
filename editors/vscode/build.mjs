// Bundles the extension (dist/extension.js) and, with --tests, the unit tests (out/test/*.mjs).
import * as esbuild from 'esbuild';
import { copyFileSync, existsSync, readdirSync } from 'node:fs';

const production = process.argv.includes('--production');
const tests = process.argv.includes('--tests');

await esbuild.build({
  entryPoints: ['src/extension.ts'],
  outfile: 'dist/extension.js',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['vscode'],
  minify: production,
  sourcemap: !production,
  logLevel: 'warning',
});

// The packaged extension carries the licence texts of the repository root (git-ignored copies).
if (production) {
  for (const f of ['LICENSE-MIT', 'LICENSE-APACHE']) {
    const src = new URL(`../../${f}`, import.meta.url);
    if (existsSync(src)) copyFileSync(src, f);
    else console.warn(`build: ../../${f} is missing; the package will lack it`);
  }
}

if (tests) {
  await esbuild.build({
    entryPoints: readdirSync('test').filter((f) => f.endsWith('.test.ts')).map((f) => `test/${f}`),
    outdir: 'out/test',
    outExtension: { '.js': '.mjs' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    logLevel: 'warning',
  });
}
