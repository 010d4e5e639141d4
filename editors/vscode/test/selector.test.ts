// The document selector: exactly the files src/serve/scan.rs scans reach the daemon.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { minimatch } from 'minimatch';
import { SCANNED_FILE_PATTERNS, documentSelector } from '../src/selector';

// VS Code globs match dot files; minimatch does with `dot`.
const selected = (p: string) => SCANNED_FILE_PATTERNS.some((g) => minimatch(p, g, { dot: true }));

test('the files a scanner reads are sent to the daemon', () => {
  for (const p of [
    '/w/cortex.env',
    '/w/.cortex.yaml',
    '/w/.cortex.yml',
    '/w/.env',
    '/w/.env.local',
    '/w/.env.production',
    '/w/.vscode/settings.json',
    '/w/.github/workflows/ci.yml',
    '/w/.github/workflows/release.yaml',
    '/w/.gitlab-ci.yml',
    '/w/azure-pipelines.yml',
    '/w/bitbucket-pipelines.yml',
    '/w/.circleci/config.yml',
    '/w/sub/dir/.env',
  ]) {
    assert.ok(selected(p), p);
  }
});

test('other files are not', () => {
  for (const p of [
    '/w/settings.json',
    '/w/src/main.rs',
    '/w/workflows/ci.yml',
    '/w/environment',
    '/w/README.md',
    '/w/.envrc',
    '/w/config.yml',
    '/w/.github/ci.yml',
    '/w/.github/workflows/notes.md',
  ]) {
    assert.ok(!selected(p), p);
  }
});

// The server decides what it scans (src/serve/scan.rs, is_scanned_file); every file name it names
// must reach it, or a literal key in an open, unsaved buffer goes unreported.
test('every file name src/serve/scan.rs scans is selected', () => {
  const rust = readFileSync(new URL('../../../../src/serve/scan.rs', import.meta.url), 'utf8');
  const body = rust.slice(rust.indexOf('pub fn is_scanned_file'), rust.indexOf('pub fn watched_dirs'));
  const names = [...body.matchAll(/name == "([^"]+)"(?:\s*&&\s*parent == "([^"]+)")?/g)];
  const prefixes = [...body.matchAll(/name\.starts_with\("([^"]+)"\)/g)];
  assert.ok(names.length >= 5, `found only ${names.length} names in is_scanned_file`);
  for (const [, name, parent] of names) {
    const p = parent ? `/w/${parent}/${name}` : `/w/${name}`;
    assert.ok(selected(p), `${p} is scanned by the server but not selected`);
  }
  for (const [, prefix] of prefixes) assert.ok(selected(`/w/${prefix}local`), prefix);
});

test('documentSelector: file scheme only, one filter per pattern', () => {
  const sel = documentSelector();
  assert.equal(sel.length, SCANNED_FILE_PATTERNS.length);
  for (const f of sel) assert.equal(f.scheme, 'file');
});
