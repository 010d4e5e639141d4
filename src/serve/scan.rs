//! Finding literal Cortex keys in the files a scanner reads (`cortex.env`, `.env*`, CI YAML, ...).
//!
//! A literal key in a file is a long-lived secret waiting to leak; references such as
//! `${{ secrets.CORTEX_API_KEY }}` or `$CORTEX_API_KEY` are fine and are not reported.

use std::path::{Path, PathBuf};

/// The first line of a `cortex.env` that scanmint manages itself.
pub const MANAGED_MARKER: &str =
    "# managed by scanmint: rewritten on every rotation, deleted on logout; do not edit";

/// A literal key on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 0-based line.
    pub line: u32,
    /// Byte columns of the value on that line (UTF-16 columns are computed by the LSP layer).
    pub start: u32,
    pub end: u32,
    /// The setting that holds it (`CORTEX_API_KEY`, `api-key`, `--api-key`).
    pub name: String,
}

/// Whether scanners (and so we) read this file, by its place in a workspace.
pub fn is_scanned_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let grandparent = path
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let yaml = name.ends_with(".yml") || name.ends_with(".yaml");
    name == "cortex.env"
        || name == ".cortex.yaml"
        || name == ".cortex.yml"
        || name == ".env"
        || name.starts_with(".env.")
        || (name == "settings.json" && parent == ".vscode")
        || (yaml && parent == "workflows" && grandparent == ".github")
        || name == ".gitlab-ci.yml"
        || name == "azure-pipelines.yml"
        || name == "bitbucket-pipelines.yml"
        || (name == "config.yml" && parent == ".circleci")
}

/// The directories of a workspace folder where scanned files live (watched non-recursively,
/// so a large tree costs nothing).
pub fn watched_dirs(root: &Path) -> Vec<PathBuf> {
    [
        root.to_path_buf(),
        root.join(".vscode"),
        root.join(".github/workflows"),
        root.join(".circleci"),
    ]
    .into_iter()
    .filter(|d| d.is_dir())
    .collect()
}

/// Setting names that carry the secret (never the key id).
fn is_key_name(name: &str) -> bool {
    let n = name.trim_matches(|c| c == '"' || c == '\'');
    n == "CORTEX_API_KEY"
        || n.eq_ignore_ascii_case("api-key")
        || n.eq_ignore_ascii_case("api_key")
        || n == "--api-key"
}

/// Find literal keys in `text`. Files scanmint manages are skipped.
pub fn find_literal_keys(text: &str) -> Vec<Finding> {
    if text
        .lines()
        .next()
        .is_some_and(|l| l.trim() == MANAGED_MARKER)
    {
        return Vec::new();
    }
    let mut findings = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if let Some((name, start, end)) = literal_on_line(line) {
            findings.push(Finding {
                line: n as u32,
                start: start as u32,
                end: end as u32,
                name,
            });
        }
    }
    findings
}

/// `NAME=value`, `export NAME=value`, `NAME: value`, `"NAME": "value"`, `--api-key value`,
/// `--api-key=value`, `- CORTEX_API_KEY=value` (YAML lists).
fn literal_on_line(line: &str) -> Option<(String, usize, usize)> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('#') || trimmed.starts_with("//") {
        return None;
    }
    // Find the setting name, then the separator after it.
    for (idx, _) in line.match_indices(['C', 'a', 'A', '-', '"', '\'']) {
        let rest = &line[idx..];
        let name_len = rest
            .find(|c: char| {
                !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '"' || c == '\'')
            })
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if !is_key_name(name) {
            continue;
        }
        // A name must start at a word boundary.
        if idx > 0 && line[..idx].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let after = &rest[name_len..];
        let sep_len = after.len() - after.trim_start_matches([' ', '\t']).len();
        let after_ws = &after[sep_len..];
        let value_off = if let Some(v) = after_ws.strip_prefix(['=', ':']) {
            after_ws.len() - v.len()
        } else if name == "--api-key" && sep_len > 0 {
            0
        } else {
            continue;
        };
        let value_region = &after_ws[value_off..];
        let lead = value_region.len() - value_region.trim_start().len();
        let raw = value_region.trim_start();
        let value = first_token(raw);
        if !is_literal(value) {
            return None;
        }
        let start = idx + name_len + sep_len + value_off + lead;
        let inner = value.trim_matches(|c| c == '"' || c == '\'');
        let quote = value.len() - value.trim_start_matches(['"', '\'']).len();
        return Some((
            name.trim_matches(|c| c == '"' || c == '\'').to_string(),
            start + quote,
            start + quote + inner.len(),
        ));
    }
    None
}

/// The value up to the end of its quotes, or to whitespace, a comma or a comment.
fn first_token(s: &str) -> &str {
    if let Some(q) = s.chars().next().filter(|c| *c == '"' || *c == '\'')
        && let Some(end) = s[1..].find(q)
    {
        return &s[..end + 2];
    }
    let end = s
        .find(|c: char| c.is_whitespace() || c == ',' || c == '#')
        .unwrap_or(s.len());
    &s[..end]
}

fn is_literal(value: &str) -> bool {
    let v = value.trim_matches(|c| c == '"' || c == '\'');
    if v.len() < 8
        || v.starts_with('$')
        || v.starts_with("{{")
        || v.starts_with('%')
        || v.starts_with('<')
    {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    let placeholder = [
        "changeme",
        "placeholder",
        "your_",
        "your-",
        "example",
        "xxxx",
        "redacted",
        "secret_here",
    ];
    if placeholder.iter().any(|p| lower.contains(p)) {
        return false;
    }
    let first = v.chars().next().unwrap_or_default();
    !v.chars().all(|c| c == first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_literals_in_every_shape() {
        let cases = [
            ("CORTEX_API_KEY=Abc123def456ghi789", "CORTEX_API_KEY"),
            (
                "export CORTEX_API_KEY=\"Abc123def456ghi789\"",
                "CORTEX_API_KEY",
            ),
            ("  CORTEX_API_KEY: Abc123def456ghi789", "CORTEX_API_KEY"),
            (
                "    \"CORTEX_API_KEY\": \"Abc123def456ghi789\",",
                "CORTEX_API_KEY",
            ),
            (
                "      - CORTEX_API_KEY=Abc123def456ghi789",
                "CORTEX_API_KEY",
            ),
            (
                "run: cortexcli --api-key Abc123def456ghi789 code scan",
                "--api-key",
            ),
            ("run: cortexcli --api-key=Abc123def456ghi789", "--api-key"),
            ("api-key: Abc123def456ghi789", "api-key"),
        ];
        for (line, name) in cases {
            let f = find_literal_keys(line);
            assert_eq!(f.len(), 1, "{line}");
            assert_eq!(f[0].name, name, "{line}");
            assert_eq!(
                &line[f[0].start as usize..f[0].end as usize],
                "Abc123def456ghi789",
                "{line}"
            );
        }
    }

    #[test]
    fn references_ids_placeholders_and_comments_are_fine() {
        for line in [
            "CORTEX_API_KEY=${{ secrets.CORTEX_API_KEY }}",
            "CORTEX_API_KEY: ${{ secrets.KEY }}",
            "CORTEX_API_KEY=$CORTEX_API_KEY",
            "CORTEX_API_KEY=${KEY}",
            "CORTEX_API_KEY_ID=12345678901",
            "CORTEX_API_KEY=",
            "CORTEX_API_KEY=<your key>",
            "CORTEX_API_KEY=changeme-please",
            "# CORTEX_API_KEY=Abc123def456ghi789",
            "MY_CORTEX_API_KEY=Abc123def456ghi789",
            "CORTEX_API_KEY=xxxxxxxxxxxxxxxx",
        ] {
            assert!(find_literal_keys(line).is_empty(), "{line}");
        }
    }

    #[test]
    fn managed_files_are_skipped_and_lines_are_counted() {
        let managed = format!("{MANAGED_MARKER}\nCORTEX_API_KEY=Abc123def456ghi789\n");
        assert!(find_literal_keys(&managed).is_empty());
        let f = find_literal_keys("A=1\n\nCORTEX_API_KEY=Abc123def456ghi789\n");
        assert_eq!(f[0].line, 2);
    }

    #[test]
    fn scanned_files_by_place() {
        for p in [
            "w/cortex.env",
            "w/.env",
            "w/.env.local",
            "w/.vscode/settings.json",
            "w/.github/workflows/ci.yml",
            "w/.cortex.yaml",
        ] {
            assert!(is_scanned_file(Path::new(p)), "{p}");
        }
        for p in [
            "w/settings.json",
            "w/src/main.rs",
            "w/workflows/ci.yml",
            "w/environment",
        ] {
            assert!(!is_scanned_file(Path::new(p)), "{p}");
        }
    }
}
