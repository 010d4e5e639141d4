// Which binary the extension runs (setting, bundled, PATH) and why a candidate is passed over.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { binaryCandidates, resolveBinary } from '../src/binary';

const root = mkdtempSync(join(tmpdir(), 'scanmint-binary-test-'));

/** A fake `scanmint` that prints a version (or fails), in DIR/NAME. */
function fake(dir: string, { version = 'scanmint 0.1.0', exit = 0, mode = 0o755, name = 'scanmint' } = {}): string {
  mkdirSync(dir, { recursive: true });
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\necho '${version}'\nexit ${exit}\n`);
  chmodSync(p, mode);
  return p;
}

const ext = join(root, 'ext');
const bundled = fake(join(ext, 'bin'), { version: 'scanmint 0.1.0 (bundled)' });
const onPath = fake(join(root, 'pathdir'));
const pathEnv = [join(root, 'empty'), join(root, 'pathdir')].join(':');

test('order: the scanmint.path setting, then the bundled binary, then PATH', () => {
  const c = binaryCandidates({ setting: '/opt/x/scanmint', extensionPath: ext, pathEnv });
  assert.deepEqual(
    c.map((x) => [x.source, x.command]),
    [
      ['setting', '/opt/x/scanmint'],
      ['bundled', bundled],
      ['PATH', onPath],
    ],
  );
  assert.deepEqual(
    binaryCandidates({ extensionPath: ext, pathEnv: '' }).map((x) => x.source),
    ['bundled', 'PATH'],
  );
});

test('the setting wins when it works', async () => {
  const mine = fake(join(root, 'mine'));
  const r = await resolveBinary(binaryCandidates({ setting: mine, extensionPath: ext, pathEnv }));
  assert.equal(r.found?.command, mine);
  assert.equal(r.found?.source, 'setting');
  assert.deepEqual(r.failures, []);
});

test('a broken setting falls back to the bundled binary and says why', async () => {
  const broken = fake(join(root, 'broken'), { exit: 3 });
  const r = await resolveBinary(
    binaryCandidates({ setting: join(root, 'nope', 'scanmint'), extensionPath: ext, pathEnv }),
  );
  assert.equal(r.found?.command, bundled);
  assert.equal(r.found?.version, 'scanmint 0.1.0 (bundled)');
  assert.equal(r.failures[0].source, 'setting');
  assert.match(r.failures[0].reason, /does not exist/);
  const r2 = await resolveBinary(binaryCandidates({ setting: broken, extensionPath: ext, pathEnv }));
  assert.equal(r2.found?.source, 'bundled');
  assert.match(r2.failures[0].reason, /exit|3/);
});

test('no bundled binary: PATH', async () => {
  const r = await resolveBinary(binaryCandidates({ extensionPath: join(root, 'no-ext'), pathEnv }));
  assert.equal(r.found?.command, onPath);
  assert.equal(r.found?.source, 'PATH');
});

test('a non-executable or foreign program is not used', async () => {
  const ext2 = join(root, 'ext2');
  fake(join(ext2, 'bin'), { mode: 0o644 });
  const other = fake(join(root, 'other'), { version: 'something else 1.0' });
  const r = await resolveBinary(binaryCandidates({ setting: other, extensionPath: ext2, pathEnv: join(root, 'empty') }));
  assert.equal(r.found, undefined);
  assert.deepEqual(
    r.failures.map((f) => f.source),
    ['setting', 'bundled', 'PATH'],
  );
  assert.match(r.failures[0].reason, /not scanmint/);
  assert.match(r.failures[1].reason, /not executable/);
  assert.match(r.failures[2].reason, /not found on PATH/);
});

test('PATH skips directories and non-executables named scanmint', () => {
  const d = join(root, 'p1');
  mkdirSync(join(d, 'scanmint'), { recursive: true });
  fake(join(root, 'p2'), { mode: 0o644 });
  const good = fake(join(root, 'p3'));
  const c = binaryCandidates({ extensionPath: join(root, 'no-ext'), pathEnv: [d, join(root, 'p2'), '', join(root, 'p3')].join(':') });
  assert.equal(c.find((x) => x.source === 'PATH')?.command, good);
});
