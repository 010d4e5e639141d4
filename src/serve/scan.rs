//! Finding literal Cortex keys in the files a scanner reads (`cortex.env`, `.env*`, CI YAML, ...).
//!
//! A literal key in a file is a long-lived secret waiting to leak; references such as
//! `${{ secrets.CORTEX_API_KEY }}` or `$CORTEX_API_KEY` are fine and are not reported.

use std::path::{Path, PathBuf};

/// The first line of a `cortex.env` that scanmint manages itself: a variable, not a `#` comment
/// (whether the CLI reads comments in that file is undocumented; `KEY=VALUE` lines it reads).
pub const MANAGED_MARKER: &str = "SCANMINT_MANAGED=1";

/// At most this much of a file or buffer is scanned: a hostile repository's huge file costs a
/// bounded amount of work. A literal key past the first MiB is not reported.
pub const SCAN_CAP: usize = 1 << 20;
/// At most this much of one line is looked at (settings lines are short).
const LINE_CAP: usize = 16 << 10;
/// The longest setting name we look for (`"CORTEX_API_KEY"` with its quotes).
const MAX_NAME: usize = 16;

/// The managed file's setting names, in order, after the marker.
const MANAGED_NAMES: [&str; 3] = ["CORTEX_API_BASE_URL", "CORTEX_API_KEY_ID", "CORTEX_API_KEY"];

/// The key id in `text` if it has exactly the shape scanmint writes to a managed `cortex.env`
/// (the marker, then the three settings, nothing else). The caller still checks that the id
/// is one of its own keys: a person's file that only imitates the marker is scanned.
pub fn managed_key_id(text: &str) -> Option<i64> {
    let mut lines = text.lines();
    if lines.next()? != MANAGED_MARKER {
        return None;
    }
    let mut id = None;
    for name in MANAGED_NAMES {
        let value = lines.next()?.strip_prefix(name)?.strip_prefix('=')?;
        if name == "CORTEX_API_KEY_ID" {
            id = Some(value.parse::<i64>().ok()?);
        }
    }
    if lines.next().is_some() {
        return None;
    }
    id
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn capped(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

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

/// Find literal keys in the first [`SCAN_CAP`] bytes of `text`, in time linear in that.
/// (Whether a file is scanmint's own managed file is the caller's decision: see
/// [`managed_key_id`].)
pub fn find_literal_keys(text: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (n, line) in capped(text, SCAN_CAP).lines().enumerate() {
        if let Some((name, start, end)) = literal_on_line(capped(line, LINE_CAP)) {
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
    // Find the setting name, then the separator after it. The name is looked at no further
    // than the longest name we know: every candidate costs a bounded amount of work, so the
    // whole line is linear (it was quadratic on a long run of name characters).
    for (idx, _) in line.match_indices(['C', 'a', 'A', '-', '"', '\'']) {
        let rest = &line[idx..];
        let Some(name_len) = rest
            .bytes()
            .take(MAX_NAME + 1)
            .position(|c| {
                !(c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'"' || c == b'\'')
            })
            .or((rest.len() <= MAX_NAME).then_some(rest.len()))
        else {
            continue;
        };
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
    fn only_the_exact_managed_shape_is_recognised_and_lines_are_counted() {
        let managed = format!(
            "{MANAGED_MARKER}\nCORTEX_API_BASE_URL=https://x\nCORTEX_API_KEY_ID=42\nCORTEX_API_KEY=Abc123def456ghi789\n"
        );
        assert_eq!(managed_key_id(&managed), Some(42));
        assert_eq!(
            find_literal_keys(&managed).len(),
            1,
            "the scan itself skips nothing"
        );
        // Finding 8 (issue 12): a person's file whose first line imitates the marker.
        let imitation = format!("{MANAGED_MARKER}\nCORTEX_API_KEY=Abc123def456ghi789\n");
        assert_eq!(managed_key_id(&imitation), None);
        assert_eq!(managed_key_id(&format!("{managed}EXTRA=1\n")), None);
        let f = find_literal_keys("A=1\n\nCORTEX_API_KEY=Abc123def456ghi789\n");
        assert_eq!(f[0].line, 2);
    }

    /// Finding 5 (issue 12): a 4 MiB line of name characters took minutes (quadratic); now it
    /// is linear and capped. A debug build scans the capped MiB in well under a second.
    #[test]
    fn a_huge_line_is_scanned_in_bounded_time() {
        for fill in ["a", "C", "CORTEX_API_KEY", "-a", "\"a"] {
            let line = fill.repeat((4 << 20) / fill.len());
            let started = std::time::Instant::now();
            assert!(find_literal_keys(&line).is_empty());
            let took = started.elapsed();
            assert!(
                took < std::time::Duration::from_secs(1),
                "{fill:?}: {took:?}"
            );
        }
        // A key on a line that fits the caps is still found.
        let text = format!("{}\nCORTEX_API_KEY=Abc123def456ghi789\n", "x".repeat(1000));
        assert_eq!(find_literal_keys(&text).len(), 1);
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
