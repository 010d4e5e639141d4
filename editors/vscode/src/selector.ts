// The files a scanner reads, as VS Code globs: only these are sent to the daemon (didOpen and
// didChange), not every open file. Mirrors `is_scanned_file` in src/serve/scan.rs; the unit test
// checks every name listed there. No `vscode` import: unit-testable.

export const SCANNED_FILE_PATTERNS = [
  '**/cortex.env',
  '**/.cortex.{yaml,yml}',
  '**/.env',
  '**/.env.*',
  '**/.vscode/settings.json',
  '**/.github/workflows/*.{yml,yaml}',
  '**/.gitlab-ci.yml',
  '**/azure-pipelines.yml',
  '**/bitbucket-pipelines.yml',
  '**/.circleci/config.yml',
] as const;

/** A DocumentSelector (structurally): files on disk only; the daemon reads them by path. */
export function documentSelector(): { scheme: 'file'; pattern: string }[] {
  return SCANNED_FILE_PATTERNS.map((pattern) => ({ scheme: 'file', pattern }));
}
