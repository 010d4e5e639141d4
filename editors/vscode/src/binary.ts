// Which `scanmint` binary to run: the `scanmint.path` setting, then the one bundled in a
// platform-specific VSIX (bin/scanmint), then PATH. Each candidate is tried with `--version`, so a
// missing, non-executable or foreign program is reported instead of the language client's
// generic connection error. No `vscode` import: unit-testable.
import { execFile } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export type Source = 'setting' | 'bundled' | 'PATH';

export interface Candidate {
  source: Source;
  /** Absolute path, or the bare name when PATH holds no `scanmint`. */
  command: string;
}

export interface Found extends Candidate {
  /** First line of `scanmint --version`. */
  version: string;
}

export interface Resolution {
  found?: Found;
  /** The candidates tried before `found` (or all of them), and why each did not work. */
  failures: (Candidate & { reason: string })[];
}

const EXE = process.platform === 'win32' ? 'scanmint.exe' : 'scanmint';

function isExecutableFile(p: string): boolean {
  try {
    if (!statSync(p).isFile()) return false;
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first executable `scanmint` on PATH. */
function onPath(pathEnv: string | undefined): string | undefined {
  for (const dir of (pathEnv ?? '').split(delimiter)) {
    if (dir && isExecutableFile(join(dir, EXE))) return join(dir, EXE);
  }
  return undefined;
}

export function binaryCandidates(opts: { setting?: string; extensionPath: string; pathEnv: string | undefined }): Candidate[] {
  const list: Candidate[] = [];
  if (opts.setting) list.push({ source: 'setting', command: opts.setting });
  list.push({ source: 'bundled', command: join(opts.extensionPath, 'bin', EXE) });
  list.push({ source: 'PATH', command: onPath(opts.pathEnv) ?? EXE });
  return list;
}

/** Why CANDIDATE cannot be used, or its version line. */
function probe(c: Candidate, timeoutMs: number): Promise<{ version?: string; reason?: string }> {
  if (c.source === 'PATH' && c.command === EXE) return Promise.resolve({ reason: `\`${EXE}\` not found on PATH` });
  let st;
  try {
    st = statSync(c.command);
  } catch {
    return Promise.resolve({ reason: `${c.command} does not exist` });
  }
  if (!st.isFile()) return Promise.resolve({ reason: `${c.command} is not a file` });
  try {
    accessSync(c.command, constants.X_OK);
  } catch {
    return Promise.resolve({ reason: `${c.command} is not executable` });
  }
  return new Promise((resolve) => {
    execFile(c.command, ['--version'], { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout) => {
      const line = (stdout ?? '').split('\n')[0].trim();
      if (err) resolve({ reason: `\`${c.command} --version\` failed: ${err.code ?? err.signal ?? err.message}` });
      else if (!/^scanmint\b/.test(line)) resolve({ reason: `${c.command} is not scanmint (\`--version\` says ${JSON.stringify(line.slice(0, 60))})` });
      else resolve({ version: line });
    });
  });
}

/** The first candidate that runs and says it is scanmint. */
export async function resolveBinary(candidates: Candidate[], timeoutMs = 10_000): Promise<Resolution> {
  const failures: Resolution['failures'] = [];
  for (const c of candidates) {
    const r = await probe(c, timeoutMs);
    if (r.version) return { found: { ...c, version: r.version }, failures };
    failures.push({ ...c, reason: r.reason ?? 'unknown' });
  }
  return { failures };
}
